//! The access check: read the Accessed bit of every sampling address of a target by walking
//! its page tables read-only (`pgd` → `p4d` (5-level only) → `pud` → `pmd` → `pte`).
//!
//! Two ways to run the same walk on demand:
//! - `walk_task_vma`, an `iter/task_vma` program on a link filtered to the target's pid. The
//!   kernel holds the target's mmap lock while it runs, so page tables cannot be freed under us.
//! - `walk_test_run`, a `raw_tp` program run through `BPF_PROG_TEST_RUN` with (pgd, slot):
//!   cheaper, lock-free, memory-safe (probe reads only) but racy with munmap; a racing sample
//!   is just a wrong sample, flagged `WALK_READ_ERR` when a read faults.
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_loop};
use aya_log_ebpf::warn;
use damon_common::{
    MAX_REGIONS, REGION_INDEX_MASK, WALK_DIRTY, WALK_DONE, WALK_FAULTED, WALK_PMD_LEAF,
    WALK_PRESENT, WALK_PUD_LEAF, WALK_READ_ERR, WALK_YOUNG,
};

use crate::{
    globals,
    maps::{FAULT_GEN, SAMPLES, TARGETS, WALK_OUT},
};

const P_PRESENT: u64 = 1 << 0;
const P_ACCESSED: u64 = 1 << 5;
const P_DIRTY: u64 = 1 << 6;
/// PSE: the entry maps a huge page instead of pointing to a lower table.
const P_PSE: u64 = 1 << 7;
/// Physical address bits 12..51 of an entry.
const PFN_MASK: u64 = 0x000f_ffff_ffff_f000;

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_kernel(addr as *const u64).ok() }
}

#[inline(always)]
fn leaf_flags(e: u64) -> u8 {
    let mut f = WALK_DONE | WALK_PRESENT;
    if e & P_ACCESSED != 0 {
        f |= WALK_YOUNG;
    }
    if e & P_DIRTY != 0 {
        f |= WALK_DIRTY;
    }
    f
}

/// State of one walk, on the caller's stack and handed to the `bpf_loop` callback.
#[repr(C)]
struct Walk {
    pgd: u64,
    base: u64,
    slot: u32,
    young: u32,
    errors: u32,
    /// The PTE table of the last 2 MiB range: consecutive samples often share it.
    last_pmd_key: u64,
    last_pte_table: u64,
    last_upper_flags: u64,
    last_upper_entry: u64,
}

/// Walks the upper levels for `addr`. Returns the leaf flags when the mapping ends above the
/// PTE level (huge page, or not present), else 0 with `pte_table` set.
#[inline(always)]
fn walk_upper(w: &Walk, addr: u64, pte_table: &mut u64, leaf: &mut u64) -> u8 {
    let five = globals::five_level_paging();
    let top_shift = if five { 48 } else { 39 };
    let Some(mut e) = read_u64(w.pgd + ((addr >> top_shift) & 511) * 8) else {
        return WALK_DONE | WALK_READ_ERR;
    };
    if e & P_PRESENT == 0 {
        return WALK_DONE;
    }
    if five {
        let Some(p4d) = read_u64(w.base + (e & PFN_MASK) + ((addr >> 39) & 511) * 8) else {
            return WALK_DONE | WALK_READ_ERR;
        };
        e = p4d;
        if e & P_PRESENT == 0 {
            return WALK_DONE;
        }
    }
    let Some(pud) = read_u64(w.base + (e & PFN_MASK) + ((addr >> 30) & 511) * 8) else {
        return WALK_DONE | WALK_READ_ERR;
    };
    if pud & P_PRESENT == 0 {
        return WALK_DONE;
    }
    if pud & P_PSE != 0 {
        *leaf = pud;
        return leaf_flags(pud) | WALK_PUD_LEAF;
    }
    let Some(pmd) = read_u64(w.base + (pud & PFN_MASK) + ((addr >> 21) & 511) * 8) else {
        return WALK_DONE | WALK_READ_ERR;
    };
    if pmd & P_PRESENT == 0 {
        return WALK_DONE;
    }
    if pmd & P_PSE != 0 {
        *leaf = pmd;
        return leaf_flags(pmd) | WALK_PMD_LEAF;
    }
    *pte_table = w.base + (pmd & PFN_MASK);
    0
}

/// `bpf_loop` callback: walks sample `k`. An open-coded loop over thousands of samples would
/// exceed the verifier's complexity limit.
#[inline(never)]
extern "C" fn walk_one(k: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let idx = (k & REGION_INDEX_MASK) as usize;
    let Some(samples) = SAMPLES.get(w.slot) else {
        return 1;
    };
    let addr = samples.addr[idx];
    let key = addr >> 21;
    if key != w.last_pmd_key {
        w.last_pmd_key = key;
        let mut table = 0;
        let mut leaf = 0;
        w.last_upper_flags = walk_upper(w, addr, &mut table, &mut leaf) as u64;
        w.last_pte_table = table;
        w.last_upper_entry = leaf;
    }
    let (mut flags, leaf) = if w.last_pte_table != 0 {
        match read_u64(w.last_pte_table + ((addr >> 12) & 511) * 8) {
            Some(e) if e & P_PRESENT != 0 => (leaf_flags(e), e),
            Some(_) => (WALK_DONE, 0),
            None => (WALK_DONE | WALK_READ_ERR, 0),
        }
    } else {
        (w.last_upper_flags as u8, w.last_upper_entry)
    };
    if flags & WALK_YOUNG != 0 {
        w.young += 1;
    }
    if flags & WALK_READ_ERR != 0 {
        w.errors += 1;
    }
    // The fault programs stamp a region with the generation of the sample they saw faulted.
    if FAULT_GEN
        .get(w.slot)
        .is_some_and(|stamps| stamps[idx] == samples.generation)
    {
        flags |= WALK_FAULTED;
    }
    let Some(out) = WALK_OUT.get_ptr_mut(w.slot) else {
        return 1;
    };
    unsafe {
        (*out).walk[idx] = flags;
        if k == 0 {
            (*out).leaf0 = leaf;
        }
    }
    0
}

/// Walks all samples of `slot` and counts the completed walk in `WALK_OUT`.
#[inline(always)]
fn walk_slot(pgd: u64, slot: u32) -> i32 {
    let Some(samples) = SAMPLES.get(slot) else {
        return -1;
    };
    let nr = if samples.nr_samples > MAX_REGIONS {
        MAX_REGIONS
    } else {
        samples.nr_samples
    };
    let mut w = Walk {
        pgd,
        base: globals::page_offset_base(),
        slot,
        young: 0,
        errors: 0,
        last_pmd_key: u64::MAX,
        last_pte_table: 0,
        last_upper_flags: 0,
        last_upper_entry: 0,
    };
    let r = unsafe {
        bpf_loop(
            nr,
            walk_one as *mut core::ffi::c_void,
            &mut w as *mut Walk as *mut core::ffi::c_void,
            0,
        )
    };
    if r < 0 {
        return r as i32;
    }
    if let Some(out) = WALK_OUT.get_ptr_mut(slot) {
        unsafe {
            (*out).walks = (*out).walks.wrapping_add(1);
        }
    }
    w.young as i32
}

/// `iter/task_vma` on a link filtered to the target's pid. The iterator calls this once per
/// VMA of each thread; the first call (sequence number 0) walks every sample, the rest return
/// at once.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task_vma")]
pub fn walk_task_vma(ctx: *mut core::ffi::c_void) -> i32 {
    // struct bpf_iter__task_vma { meta; task; vma; }
    let task = unsafe { *(ctx as *const u64).add(1) };
    let vma = unsafe { *(ctx as *const u64).add(2) };
    if task == 0 || vma == 0 {
        return 0;
    }
    let Ok(tgid) =
        (unsafe { bpf_probe_read_kernel((task + globals::task_tgid_offset()) as *const u32) })
    else {
        return 0;
    };
    let Some(slot) = (unsafe { TARGETS.get(&tgid) }).map(|t| t.slot) else {
        return 0;
    };
    // Walk once per run of the iterator: at its first object. Every run is a fresh sample.
    let meta = unsafe { *(ctx as *const u64) };
    // struct bpf_iter_meta { seq; session_id; seq_num; }
    match unsafe { bpf_probe_read_kernel((meta + 16) as *const u64) } {
        Ok(0) => {}
        _ => return STOP_ITERATION,
    }
    let Ok(mm) =
        (unsafe { bpf_probe_read_kernel((task + globals::task_mm_offset()) as *const u64) })
    else {
        return 0;
    };
    if mm == 0 {
        return 0;
    }
    let Some(pgd) = read_u64(mm + globals::mm_pgd_offset()) else {
        return 0;
    };
    // No log here: this runs at every sample, and aya-log 0.3 has no in-kernel level filter.
    walk_slot(pgd, slot);
    // Non-zero ends the iteration here (user space sees EAGAIN from read): the other VMAs of
    // the target have nothing left to do, and visiting them costs more than the walk.
    STOP_ITERATION
}

/// The return value that makes the iterator stop after this object.
const STOP_ITERATION: i32 = 1;

/// `raw_tp`, run through `BPF_PROG_TEST_RUN` with args (pgd, slot). Returns the number of
/// young samples, or a negative error.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn walk_test_run(ctx: *mut core::ffi::c_void) -> i32 {
    let args = ctx as *const u64;
    let (pgd, slot) = unsafe { (*args, *args.add(1) as u32) };
    let young = walk_slot(pgd, slot);
    if young < 0 {
        warn!(&ctx_logger(ctx), "walk of slot {} failed: {}", slot, young);
    }
    young
}

/// aya-log needs an `EbpfContext`; these hand-written sections have only a raw pointer.
pub struct RawCtx(pub *mut core::ffi::c_void);
impl aya_ebpf::EbpfContext for RawCtx {
    fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.0
    }
}
#[inline(always)]
fn ctx_logger(ctx: *mut core::ffi::c_void) -> RawCtx {
    RawCtx(ctx)
}
