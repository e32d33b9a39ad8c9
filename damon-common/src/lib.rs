//! The ABI between damon's eBPF programs and its user space.
//!
//! Everything here is `#[repr(C)]` with fixed-width fields and explicit padding, so the two
//! sides (compiled for `bpfel-unknown-none` and for the host) agree byte for byte. The const
//! asserts at the bottom pin the sizes: a change that moves a field fails to compile.
//!
//! Maps, one instance per loaded program set (one per kdamond):
//! - `TARGETS`: `HashMap<u32 /* tgid */, TargetSlot>`: the processes being monitored. A fault of
//!   any other process costs this one lookup. Written only when targets come and go.
//! - `CONTROL`: `Array<Control>`, one entry: the kernel layout, what the next run does, and
//!   which slots hold a target.
//! - `SLOTS`: `Array<Slot>`, one entry per target slot: its regions, the sample being prepared,
//!   the sample in flight, and what the last run found.
//! - `PROBE_OUT`: `Array<ProbeOut>`, one entry: what the start-up probe program read.
//!
//! `CONTROL`, `SLOTS` and `PROBE_OUT` are `BPF_F_MMAPABLE`: user space maps them once and
//! reads and writes them as memory, so the sampling loop makes no map system call. A sample of
//! every target of a kdamond is one `BPF_PROG_TEST_RUN` of the `sample` program, which checks
//! the sample in flight and prepares the next one in the same run.
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
/// Pages a prepare tries per region: the page user space chose, then alternatives drawn from
/// `Slot::seed`, until one can be measured (see [`SAMPLE_UNMEASURABLE`]).
pub const NR_CANDIDATES: u32 = 4;

/// `BPF_F_MMAPABLE`: an array map user space can mmap.
pub const BPF_F_MMAPABLE: u32 = 0x400;

/// Where a target's tables live (`TARGETS` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetSlot {
    /// Index into `SLOTS`, below `MAX_TARGETS`.
    pub slot: u32,
    /// `u32` rather than a bool so the struct has no implicit padding. Reserved, zero.
    pub flags: u32,
}

/// What the running kernel looks like to the programs: found by user space (BTF and
/// calibration) and written into `CONTROL` before the first run. Offsets are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelInfo {
    /// Virtual address of physical address 0 in the kernel's direct map.
    pub page_offset_base: u64,
    /// Virtual address of the `struct page` of frame 0.
    pub vmemmap_base: u64,
    /// 4 or 5.
    pub pgtable_levels: u32,
    /// `sizeof(struct page)`.
    pub page_size: u32,
    /// `offsetof(struct pid, tasks[PIDTYPE_TGID])`: the first task of a process's pid.
    pub pid_tasks_tgid: u32,
    /// `offsetof(struct task_struct, pid_links[PIDTYPE_TGID])`: to get from that list node
    /// back to its task.
    pub task_pid_links_tgid: u32,
    /// `offsetof(struct task_struct, mm)`.
    pub task_mm: u32,
    /// `offsetof(struct mm_struct, pgd)`.
    pub mm_pgd: u32,
    /// `struct page` (or `struct folio`) fields.
    pub page_flags: u32,
    pub page_compound_head: u32,
    pub page_mapcount: u32,
    /// `offsetof(struct folio, _large_mapcount)`; 0 on kernels without it (before 6.10),
    /// where `folio_entire_mapcount` decides for a PMD-mapped folio.
    pub folio_large_mapcount: u32,
    pub folio_entire_mapcount: u32,
    /// Bit numbers in `page.flags` (`enum pageflags`).
    pub pg_lru: u32,
    pub pg_head: u32,
    pub pg_unevictable: u32,
    /// `offsetof(struct folio, _flags_1)`, whose low byte is a large folio's order (Linux
    /// 6.6+); 0 when the kernel keeps the order elsewhere, and then samples in large folios
    /// mapped by PTEs stay unmeasurable.
    pub folio_order: u32,
}

/// `Slot::pending_folio`: the sample is in a large folio (the word is not 0).
pub const FOLIO_LARGE: u32 = 1 << 31;

/// `Control::step`: check the sample in flight.
pub const STEP_CHECK: u32 = 1 << 0;
/// `Control::step`: prepare the next sample at `Slot::next`.
pub const STEP_PREPARE: u32 = 1 << 1;

/// `Control::pid` value meaning "the calling task" (start-up validation walks our own pages).
pub const PID_SELF: u64 = 1;

/// One kdamond's control block (`CONTROL[0]`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Control {
    pub kernel: KernelInfo,
    /// `STEP_*` flags of the next run.
    pub step: u32,
    /// Bit `i` set: slot `i` holds a target.
    pub active: u32,
    /// Runs of the `sample` program completed (wrapping).
    pub runs: u64,
    /// Any fault in a region counts as an access to it, not only one on the sampled page.
    pub fault_in_region: u32,
    pub _pad: u32,
    /// Per slot: the target's `struct pid *` (kept alive by user space's pidfd), or `PID_SELF`.
    pub pid: [u64; MAX_TARGETS as usize],
}

/// `Slot::state`: the target's address space was walked.
pub const TARGET_ALIVE: u32 = 1;
/// `Slot::state`: the process has no address space (it exited, or it is a kernel thread).
pub const TARGET_NO_MM: u32 = 2;
/// `Slot::state`: the process was reaped (its pid has no task).
pub const TARGET_REAPED: u32 = 3;
/// `Slot::state`: a kernel read failed before the walk (a racing exit).
pub const TARGET_READ_ERR: u32 = 4;

/// One target: its regions, the sample being prepared, the sample in flight, and what the
/// last run found. Written by user space (`regions`, `next`, `seed`, `nr_regions`), by the
/// `sample` program (`pending*`, `check`, `state`), and by the fault programs (`fault_*`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Slot {
    /// Regions in `start`/`end` and samples in `next`/`pending`.
    pub nr_regions: u32,
    /// Generation of the sample in flight: bumped by each prepare; a fault on a sampled page
    /// stamps it into `fault_gen`, so stamps never need clearing.
    pub generation: u32,
    /// Seed of the alternative pages a prepare may try (drawn by user space per sample).
    pub seed: u64,
    /// `TARGET_*` after the last run.
    pub state: u32,
    /// Runs that walked this slot (wrapping).
    pub runs: u32,
    /// Non-zero while a prepared sample waits for its check: a check of a slot with nothing
    /// in flight reports nothing.
    pub in_flight: u32,
    pub _pad: u32,
    /// The sampling program's working state across its per-region callbacks (the page-table
    /// walk's cache of the last GiB, whether the current region found a page it can measure).
    /// Kept in the map rather than on the stack: the verifier treats map memory as unknown
    /// values, so the callbacks' states converge at once instead of once per cached value.
    pub scratch: [u64; 8],
    /// Raw leaf entry (PTE or PMD) of sample 0 at the last prepare, for the start-up
    /// validation that compares its frame with `/proc/PID/pagemap`.
    pub leaf0: u64,
    /// Regions, sorted by address, `[start[i], end[i])`: the regions of the sample in flight.
    pub start: [u64; MAX_REGIONS as usize],
    pub end: [u64; MAX_REGIONS as usize],
    /// The page user space chose for each region's next sample.
    pub next: [u64; MAX_REGIONS as usize],
    /// The sample in flight: the page each region is sampled at (the program may have moved
    /// it from `next` to an alternative that can be measured).
    pub pending: [u64; MAX_REGIONS as usize],
    /// Address of the leaf entry (PTE, or PMD for a huge page) that mapped `pending[i]` when
    /// prepared, for a check in one read instead of a walk; 0 to walk. A table freed under a
    /// racing munmap makes the read return a stale value: one wrong sample, as with any
    /// lock-free walk.
    pub pending_leaf: [u64; MAX_REGIONS as usize],
    /// `SAMPLE_*` flags of `pending[i]` as the prepare found it.
    pub pending_flags: [u8; MAX_REGIONS as usize],
    /// `CHECK_*` flags: what the last check found for each region.
    pub check: [u8; MAX_REGIONS as usize],
    /// For a `pending[i]` in a large folio mapped by PTEs: `FOLIO_LARGE | order << 16 |` the
    /// page's index in the folio, so that user space clears the Accessed bits of the whole
    /// folio (MADV_COLD ages a whole folio without splitting it, since Linux 6.9); 0 otherwise.
    pub pending_folio: [u32; MAX_REGIONS as usize],
    /// Per region: the generation of the last sample whose page took a fault.
    pub fault_gen: [u32; MAX_REGIONS as usize],
    /// Per region: page faults since user space last zeroed them. u64 because the BPF target
    /// has only 64-bit atomics.
    pub fault_count: [u64; MAX_REGIONS as usize],
}

/// `Slot::pending_flags`: the page is present.
pub const SAMPLE_PRESENT: u8 = 1 << 0;
/// The page was young when prepared: user space clears its Accessed bit (MADV_COLD).
pub const SAMPLE_YOUNG: u8 = 1 << 1;
/// The page is mapped by a PMD leaf (a 2 MiB transparent huge page): advise all of it.
pub const SAMPLE_PMD_LEAF: u8 = 1 << 2;
/// The page is mapped by a PUD leaf (a 1 GiB page).
pub const SAMPLE_PUD_LEAF: u8 = 1 << 3;
/// No candidate page of the region could be measured: each was young and MADV_COLD cannot
/// clear it (mapped by several processes, not on an LRU list yet, mlocked, part of a large
/// folio mapped by PTEs, or without a `struct page`). The check reports the region
/// `CHECK_UNMEASURED` instead of reading its stale Accessed bit.
pub const SAMPLE_UNMEASURABLE: u8 = 1 << 4;
/// A kernel read faulted (a page table freed under a racing munmap).
pub const SAMPLE_READ_ERR: u8 = 1 << 5;
/// The page is not `next[i]` but an alternative.
pub const SAMPLE_MOVED: u8 = 1 << 6;

/// `Slot::check`: the sampled page's Accessed bit was set.
pub const CHECK_YOUNG: u8 = 1 << 0;
/// A fault on the sampled page (its huge page, or its region when faults anywhere in a region
/// count) happened while the sample was in flight.
pub const CHECK_FAULTED: u8 = 1 << 1;
/// The sample could not be measured (`SAMPLE_UNMEASURABLE`).
pub const CHECK_UNMEASURED: u8 = 1 << 2;
/// A kernel read faulted.
pub const CHECK_READ_ERR: u8 = 1 << 3;

/// `PROBE_OUT`: what the start-up `probe` program read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeOut {
    /// Bytes read (`PROBE_PEEK`), or the current task pointer in word 0 (`PROBE_CURRENT`).
    pub words: [u64; PROBE_WORDS],
}

/// Words one `probe` run reads.
pub const PROBE_WORDS: usize = 8;
/// `probe` argument 0: read `PROBE_WORDS` words of kernel memory at argument 1.
pub const PROBE_PEEK: u64 = 0;
/// `probe` argument 0: store the calling task's `task_struct` pointer.
pub const PROBE_CURRENT: u64 = 1;

/// Offset of `address` in the `exceptions:page_fault_user` tracepoint record.
pub const TP_PAGE_FAULT_ADDRESS_OFFSET: usize = 8;

/// Offset of `addr` in `struct bpf_perf_event_data` on x86_64 (after `pt_regs` and
/// `sample_period`).
pub const PERF_EVENT_DATA_ADDR_OFFSET: usize = 176;

/// Program names, shared so the loader never looks up a misspelt one.
pub mod programs {
    pub const SAMPLE: &str = "sample";
    pub const PROBE: &str = "probe";
    pub const PAGE_FAULT_USER: &str = "page_fault_user";
    pub const PERF_SAMPLE: &str = "perf_sample";
}

/// Map names.
pub mod maps {
    pub const TARGETS: &str = "TARGETS";
    pub const CONTROL: &str = "CONTROL";
    pub const SLOTS: &str = "SLOTS";
    pub const PROBE_OUT: &str = "PROBE_OUT";
}

const _: () = assert!(MAX_REGIONS.is_power_of_two());
const _: () = assert!(NR_CANDIDATES.is_power_of_two()); // the sample program masks with it
const _: () = assert!(1 << (REGION_SEARCH_STEPS - 1) == MAX_REGIONS);
const _: () = assert!(MAX_TARGETS <= 32); // `Control::active` is a u32 bitmap
const _: () = assert!(core::mem::size_of::<TargetSlot>() == 8);
const _: () = assert!(core::mem::size_of::<KernelInfo>() == 80);
const _: () = assert!(core::mem::size_of::<Control>() == 80 + 24 + 8 * MAX_TARGETS as usize);
const _: () = assert!(core::mem::size_of::<Slot>() == 104 + 58 * MAX_REGIONS as usize);
const _: () = assert!(core::mem::size_of::<Slot>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<ProbeOut>() == 64);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), made of integers and integer arrays, with explicit
    // padding fields, so every bit pattern is valid and there are no implicit holes.
    unsafe impl aya::Pod for TargetSlot {}
    unsafe impl aya::Pod for Control {}
    unsafe impl aya::Pod for Slot {}
    unsafe impl aya::Pod for ProbeOut {}
}
