//! The ABI between damon's eBPF programs and its user space.
//!
//! Everything here is `#[repr(C)]` with fixed-width fields and explicit padding, so the two
//! sides (compiled for `bpfel-unknown-none` and for the host) agree byte for byte. The const
//! asserts at the bottom pin the sizes: a change that moves a field fails to compile.
//!
//! Maps, one instance per loaded program set (one per kdamond):
//! - `TARGETS`: `HashMap<u32 /* tgid */, TargetSlot>`: the processes being monitored. A fault of
//!   any other process costs this one lookup.
//! - `REGIONS`: `Array<RegionTable>`, one entry per slot: the regions of the target.
//! - `SAMPLES`: `Array<SampleTable>`, one entry per slot: the sampling address of each region.
//! - `WALK_OUT`: `Array<WalkOutput>`, one entry per slot: what the last walk saw.
//! - `FAULT_GEN`, `FAULT_COUNTS`: `Array<[_; MAX_REGIONS]>`, one entry per slot: what the fault
//!   programs saw. The walk folds `FAULT_GEN` into its output (`WALK_FAULTED`), so the
//!   sampling loop reads one 4 KiB table per walk and never the stamps.
#![no_std]

/// Pages are 4 KiB on every architecture we run on (x86_64).
pub const PAGE_SIZE: u64 = 4096;
/// Size of a PMD-mapped transparent huge page.
pub const HPAGE_PMD_SIZE: u64 = 2 << 20;

/// Targets one program set can watch at once.
pub const MAX_TARGETS: u32 = 32;
/// Regions per target the programs can see. A power of two: indices are bounded with a mask
/// (`& REGION_INDEX_MASK`), the only bound the verifier reliably keeps through LLVM.
pub const MAX_REGIONS: u32 = 4096;
pub const REGION_INDEX_MASK: u32 = MAX_REGIONS - 1;
/// Steps of the in-kernel binary search: `log2(MAX_REGIONS)`, plus one to land exactly.
pub const REGION_SEARCH_STEPS: u32 = 13;

/// Where a target's tables live (`TARGETS` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetSlot {
    /// Index into the per-slot arrays, below `MAX_TARGETS`.
    pub slot: u32,
    /// `u32` rather than a bool so the struct has no implicit padding. Reserved, zero.
    pub flags: u32,
}

/// The regions of one target, sorted by address, `[start[i], end[i])`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RegionTable {
    /// Number of valid entries, at most `MAX_REGIONS`.
    pub nr_regions: u32,
    pub _pad: u32,
    pub start: [u64; MAX_REGIONS as usize],
    pub end: [u64; MAX_REGIONS as usize],
}

/// One sampling address per region, rewritten before every sample.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SampleTable {
    /// Sample generation: increases by one per sample; a fault on a sampled page stamps it into
    /// `FAULT_GEN`, so user space never has to clear the stamps (no race with the tracepoint).
    pub generation: u32,
    /// Number of valid entries in `addr`.
    pub nr_samples: u32,
    /// Page-aligned sampling address of region `i`.
    pub addr: [u64; MAX_REGIONS as usize],
}

/// What the last page-table walk of a target saw. Small on purpose: it is read after each of
/// the two or three walks of every sample.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkOutput {
    /// `WALK_*` flags of sample `i`. The fault program reads `WALK_PMD_LEAF` here to match
    /// faults anywhere in a sampled huge page.
    pub walk: [u8; MAX_REGIONS as usize],
    /// Raw leaf entry (PTE or PMD) of sample 0, for the start-up validation that compares its
    /// frame with `/proc/PID/pagemap`.
    pub leaf0: u64,
    /// Walks completed on this slot (wrapping): user space compares it before and after a run
    /// to tell a walk that did not happen (the target had no address space left) from one that
    /// found nothing young.
    pub walks: u32,
    pub _pad: u32,
}

/// Per region: the generation of the last sample whose sampled page took a fault. Read by the
/// walk, which reports a stamp equal to the current generation as `WALK_FAULTED`.
pub type FaultGen = [u32; MAX_REGIONS as usize];

/// Per region: page faults since the region table was last written (monotonic). u64 because
/// the BPF target has only 64-bit atomics.
pub type FaultCounts = [u64; MAX_REGIONS as usize];

/// Walk result flags (`WalkOutput::walk`).
pub const WALK_DONE: u8 = 1 << 0;
pub const WALK_PRESENT: u8 = 1 << 1;
pub const WALK_YOUNG: u8 = 1 << 2;
pub const WALK_DIRTY: u8 = 1 << 3;
/// The mapping ends in a PMD leaf (a 2 MiB transparent huge page).
pub const WALK_PMD_LEAF: u8 = 1 << 4;
/// The mapping ends in a PUD leaf (1 GiB page).
pub const WALK_PUD_LEAF: u8 = 1 << 5;
/// A page-table read faulted (a table freed under a racing munmap): a wrong sample, not a hot one.
pub const WALK_READ_ERR: u8 = 1 << 6;
/// A fault on the sample (its page, its huge page, or its region when faults anywhere in a
/// region count) was stamped with the slot's current sample generation.
pub const WALK_FAULTED: u8 = 1 << 7;

/// Offset of `address` in the `exceptions:page_fault_user` tracepoint record.
pub const TP_PAGE_FAULT_ADDRESS_OFFSET: usize = 8;

/// Offset of `addr` in `struct bpf_perf_event_data` on x86_64 (after `pt_regs` and
/// `sample_period`).
pub const PERF_EVENT_DATA_ADDR_OFFSET: usize = 176;

/// Bytes the `peek` program copies per call (start-up calibration only).
pub const PEEK_LEN: usize = 64;

/// Names of the read-only globals user space sets at load time. Keeping them as consts stops
/// the two sides drifting apart.
pub mod globals {
    /// `offsetof(struct task_struct, tgid)`, from BTF.
    pub const TASK_TGID_OFFSET: &str = "TASK_TGID_OFFSET";
    /// `offsetof(struct task_struct, mm)`, from BTF.
    pub const TASK_MM_OFFSET: &str = "TASK_MM_OFFSET";
    /// `offsetof(struct mm_struct, pgd)`, from BTF.
    pub const MM_PGD_OFFSET: &str = "MM_PGD_OFFSET";
    /// Base of the kernel's direct map, found by calibration.
    pub const PAGE_OFFSET_BASE: &str = "PAGE_OFFSET_BASE";
    /// 4 or 5.
    pub const PGTABLE_LEVELS: &str = "PGTABLE_LEVELS";
    /// Non-zero: any fault in a region counts as an access to it, not only a fault on the
    /// sampled page.
    pub const FAULT_IN_REGION_IS_ACCESS: &str = "FAULT_IN_REGION_IS_ACCESS";
}

/// Program names, shared so the loader never looks up a misspelt one.
pub mod programs {
    pub const PAGE_FAULT_USER: &str = "page_fault_user";
    pub const WALK_TASK_VMA: &str = "walk_task_vma";
    pub const WALK_TEST_RUN: &str = "walk_test_run";
    pub const PEEK: &str = "peek";
    pub const TASK_PGD: &str = "task_pgd";
    pub const PERF_SAMPLE: &str = "perf_sample";
}

/// Map names.
pub mod maps {
    pub const TARGETS: &str = "TARGETS";
    pub const REGIONS: &str = "REGIONS";
    pub const SAMPLES: &str = "SAMPLES";
    pub const WALK_OUT: &str = "WALK_OUT";
    pub const FAULT_GEN: &str = "FAULT_GEN";
    pub const FAULT_COUNTS: &str = "FAULT_COUNTS";
    pub const PEEK_OUT: &str = "PEEK_OUT";
    pub const PGD_OUT: &str = "PGD_OUT";
}

const _: () = assert!(MAX_REGIONS.is_power_of_two());
const _: () = assert!(1 << (REGION_SEARCH_STEPS - 1) == MAX_REGIONS);
const _: () = assert!(core::mem::size_of::<TargetSlot>() == 8);
const _: () = assert!(core::mem::size_of::<RegionTable>() == 8 + 16 * MAX_REGIONS as usize);
const _: () = assert!(core::mem::size_of::<SampleTable>() == 8 + 8 * MAX_REGIONS as usize);
const _: () = assert!(core::mem::size_of::<WalkOutput>() == MAX_REGIONS as usize + 16);
const _: () = assert!(core::mem::align_of::<WalkOutput>() == 8);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), made of integers and integer arrays, with explicit
    // padding fields, so every bit pattern is valid and there are no implicit holes.
    unsafe impl aya::Pod for TargetSlot {}
    unsafe impl aya::Pod for RegionTable {}
    unsafe impl aya::Pod for SampleTable {}
    unsafe impl aya::Pod for WalkOutput {}
}
