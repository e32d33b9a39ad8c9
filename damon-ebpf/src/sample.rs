//! The access check: one run of `sample` checks the sample in flight of every target and
//! prepares the next one, so a sample of a kdamond is one `BPF_PROG_TEST_RUN`.
//!
//! Per target: find its address space from the `struct pid` user space registered (pid →
//! thread-group leader → `mm` → `pgd`, so an exec or an exit is seen at once); check: read the
//! Accessed bit of each region's page in flight and its fault stamp; prepare: walk each
//! region's next page and decide whether it can be measured. A page that is young and that
//! `process_madvise(MADV_COLD)` cannot age (see `clearable`) would read hot forever, so the
//! prepare tries other pages of the region, and marks the sample unmeasurable when none can
//! be measured.
//!
//! Run lock-free through `BPF_PROG_TEST_RUN` (under RCU): memory-safe, but racy with munmap;
//! a racing sample is just a wrong sample.
use aya_ebpf::helpers::{bpf_get_current_task, generated::bpf_loop};
use damon_common::{
    CHECK_FAULTED, CHECK_READ_ERR, CHECK_UNMEASURED, CHECK_YOUNG, FOLIO_LARGE, KernelInfo,
    MAX_REGIONS, MAX_TARGETS, NR_CANDIDATES, PAGE_SIZE, PID_SELF, REGION_INDEX_MASK, SAMPLE_MOVED,
    SAMPLE_PMD_LEAF, SAMPLE_PRESENT, SAMPLE_PUD_LEAF, SAMPLE_READ_ERR, SAMPLE_UNMEASURABLE,
    SAMPLE_YOUNG, STEP_CHECK, STEP_PREPARE, TARGET_ALIVE, TARGET_NO_MM, TARGET_READ_ERR,
    TARGET_REAPED,
};

use crate::{
    maps::{CONTROL, SLOTS},
    pagetable::{Leaf, Walker, leaf_pfn, read_i32, read_u64, reread},
};

/// `raw_tp`, run through `BPF_PROG_TEST_RUN`; what it does is in `CONTROL`. Returns 0, or a
/// negative value when the control block is missing.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn sample(_ctx: *mut core::ffi::c_void) -> i32 {
    let Some(ctl) = CONTROL.get_ptr_mut(0) else {
        return -1;
    };
    let mut unused = 0u64;
    unsafe {
        bpf_loop(
            MAX_TARGETS,
            sample_slot as *mut core::ffi::c_void,
            &mut unused as *mut u64 as *mut core::ffi::c_void,
            0,
        );
        (*ctl).runs = (*ctl).runs.wrapping_add(1);
    }
    0
}

/// State of one slot's run, on the stack of `sample_slot` and handed to the per-region
/// callbacks. Only scalars: map values are looked up again in each callback (an inlined
/// array access), which the verifier follows more easily than spilled pointers.
#[repr(C)]
struct SlotRun {
    slot: u32,
    generation: u32,
    base: u64,
    pgd: u64,
    five_level: u64,
    vmemmap_base: u64,
    page_size: u64,
    page_flags: u64,
    page_compound_head: u64,
    page_mapcount: u64,
    folio_large_mapcount: u64,
    folio_entire_mapcount: u64,
    folio_order: u64,
    pg_lru: u64,
    pg_head: u64,
    pg_unevictable: u64,
}

/// `bpf_loop` callback over the slots: an open-coded loop over thousands of regions inside a
/// loop over slots would exceed the verifier's complexity limit.
#[inline(never)]
extern "C" fn sample_slot(i: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let i = i & (MAX_TARGETS - 1);
    let (Some(ctl), Some(s)) = (CONTROL.get_ptr_mut(0), SLOTS.get_ptr_mut(i)) else {
        return 1;
    };
    let (ctl, s) = unsafe { (&mut *ctl, &mut *s) };
    if ctl.active & (1 << i) == 0 {
        return 0;
    }
    let k: KernelInfo = ctl.kernel;
    let pid = ctl.pid[i as usize];
    let task = if pid == PID_SELF {
        unsafe { bpf_get_current_task() }
    } else {
        match read_u64(pid + (k.pid_tasks_tgid as u64 & 0xfff)) {
            None => return end_slot(s, TARGET_READ_ERR),
            Some(0) => return end_slot(s, TARGET_REAPED),
            Some(node) => node - (k.task_pid_links_tgid as u64 & 0xffff),
        }
    };
    let mm = match read_u64(task + (k.task_mm as u64 & 0xffff)) {
        None => return end_slot(s, TARGET_READ_ERR),
        Some(0) => return end_slot(s, TARGET_NO_MM),
        Some(mm) => mm,
    };
    let Some(pgd) = read_u64(mm + (k.mm_pgd as u64 & 0xffff)) else {
        return end_slot(s, TARGET_READ_ERR);
    };
    let nr = if s.nr_regions > MAX_REGIONS {
        MAX_REGIONS
    } else {
        s.nr_regions
    };
    let step = ctl.step;
    let mut run = SlotRun {
        slot: i,
        generation: s.generation,
        base: k.page_offset_base,
        pgd,
        five_level: (k.pgtable_levels == 5) as u64,
        vmemmap_base: k.vmemmap_base,
        page_size: k.page_size as u64 & 0xfff,
        page_flags: k.page_flags as u64 & 0xfff,
        page_compound_head: k.page_compound_head as u64 & 0xfff,
        page_mapcount: k.page_mapcount as u64 & 0xfff,
        folio_large_mapcount: k.folio_large_mapcount as u64 & 0xfff,
        folio_entire_mapcount: k.folio_entire_mapcount as u64 & 0xfff,
        folio_order: k.folio_order as u64 & 0xfff,
        pg_lru: k.pg_lru as u64 & 63,
        pg_head: k.pg_head as u64 & 63,
        pg_unevictable: k.pg_unevictable as u64 & 63,
    };
    if step & STEP_CHECK != 0 && s.in_flight != 0 {
        Walker::reset(&mut s.scratch);
        let ctx = &mut run as *mut SlotRun as *mut core::ffi::c_void;
        unsafe { bpf_loop(nr, check_region as *mut core::ffi::c_void, ctx, 0) };
        s.in_flight = 0;
    }
    if step & STEP_PREPARE != 0 {
        // The new generation first: a fault from here on belongs to the new sample.
        s.generation = s.generation.wrapping_add(1);
        run.generation = s.generation;
        Walker::reset(&mut s.scratch);
        s.scratch[REGION_DONE] = 0;
        let ctx = &mut run as *mut SlotRun as *mut core::ffi::c_void;
        unsafe {
            bpf_loop(
                nr * NR_CANDIDATES,
                prepare_candidate as *mut core::ffi::c_void,
                ctx,
                0,
            )
        };
        s.in_flight = 1;
    }
    end_slot(s, TARGET_ALIVE)
}

#[inline(always)]
fn end_slot(s: &mut damon_common::Slot, state: u32) -> i64 {
    s.state = state;
    s.runs = s.runs.wrapping_add(1);
    if state != TARGET_ALIVE {
        // Nothing can be in flight in an address space that is gone.
        s.in_flight = 0;
    }
    0
}

/// `bpf_loop` callback: checks region `k` of the slot.
#[inline(never)]
extern "C" fn check_region(k: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let run = unsafe { &mut *(ctx as *mut SlotRun) };
    let Some(s) = SLOTS.get_ptr_mut(run.slot) else {
        return 1;
    };
    let s = unsafe { &mut *s };
    let idx = (k & REGION_INDEX_MASK) as usize;
    let mut flags = 0u8;
    let pending = s.pending_flags[idx];
    if pending & SAMPLE_UNMEASURABLE != 0 {
        flags |= CHECK_UNMEASURED;
    } else if pending & SAMPLE_PRESENT == 0 {
        // Absent when prepared: only a fault can have made it present by an access, and the
        // stamp below tells. (A page the kernel mapped around another fault, without one of
        // its own, was not accessed: its Accessed bit would say otherwise on some kernels.)
    } else {
        let pmd_leaf = pending & SAMPLE_PMD_LEAF != 0;
        let ptr = s.pending_leaf[idx];
        let found = if ptr != 0 {
            reread(ptr, pmd_leaf)
        } else {
            None
        };
        let leaf_flags = match found {
            Some(f) => f,
            None => {
                let mut w = walker(run, &s.scratch);
                let f = w.walk(s.pending[idx]).flags;
                w.store(&mut s.scratch);
                f
            }
        };
        if leaf_flags & SAMPLE_YOUNG != 0 {
            flags |= CHECK_YOUNG;
        }
        if leaf_flags & SAMPLE_READ_ERR != 0 {
            flags |= CHECK_READ_ERR;
        }
    }
    // The fault programs stamp a region with the generation of the sample they saw faulted.
    if s.fault_gen[idx] == run.generation {
        flags |= CHECK_FAULTED;
    }
    s.check[idx] = flags;
    0
}

/// `bpf_loop` callback over (region, candidate) pairs, `k = region * NR_CANDIDATES +
/// candidate`: candidate 0 is the page user space chose; the others, tried only while no
/// page of the region could be measured, are drawn from the per-sample seed. One walk per
/// call keeps the callback small: verifiers that follow every path of a callback (Linux 7.x)
/// would otherwise go through all four walks' combinations.
#[inline(never)]
extern "C" fn prepare_candidate(k: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let run = unsafe { &mut *(ctx as *mut SlotRun) };
    let c = k & (NR_CANDIDATES - 1);
    let Some(s) = SLOTS.get_ptr_mut(run.slot) else {
        return 1;
    };
    let s = unsafe { &mut *s };
    if c != 0 && s.scratch[REGION_DONE] != 0 {
        return 0;
    }
    let region = k / NR_CANDIDATES;
    let idx = (region & REGION_INDEX_MASK) as usize;
    let addr = if c == 0 {
        s.next[idx]
    } else {
        let (start, end) = (s.start[idx], s.end[idx]);
        let pages = end.saturating_sub(start) / PAGE_SIZE;
        if pages <= 1 {
            s.scratch[REGION_DONE] = 1;
            return 0;
        }
        start + hash(s.seed, u64::from(k)) % pages * PAGE_SIZE
    };
    let mut w = walker(run, &s.scratch);
    let leaf = w.walk(addr);
    w.store(&mut s.scratch);
    let (ok, folio) = match measurable(run, &leaf) {
        Some(folio) => (true, folio),
        None => (false, 0),
    };
    if c == 0 {
        // The page asked for, unmeasurable unless an alternative replaces it.
        s.pending[idx] = addr;
        s.pending_folio[idx] = folio;
        s.pending_leaf[idx] = leaf.leaf_ptr;
        s.pending_flags[idx] = if ok {
            leaf.flags
        } else {
            leaf.flags | SAMPLE_UNMEASURABLE
        };
        if region == 0 {
            s.leaf0 = leaf.entry;
        }
        s.scratch[REGION_DONE] = ok as u64;
    } else if ok {
        s.pending[idx] = addr;
        s.pending_folio[idx] = folio;
        s.pending_leaf[idx] = leaf.leaf_ptr;
        s.pending_flags[idx] = leaf.flags | SAMPLE_MOVED;
        s.scratch[REGION_DONE] = 1;
    }
    0
}

/// `Slot::scratch` word: the region being prepared found a page it can measure.
const REGION_DONE: usize = 4;

/// The page-table walker of this slot, its cache read from the map.
#[inline(always)]
fn walker(run: &SlotRun, scratch: &[u64; 8]) -> Walker {
    Walker::load(run.base, run.pgd, run.five_level != 0, scratch)
}

/// splitmix64: cheap, well mixed, and the same on both sides (user space can recompute it).
#[inline(always)]
fn hash(seed: u64, x: u64) -> u64 {
    let mut z = seed.wrapping_add(x.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether a sample of this page tells an access: an absent or old page does (a fault or the
/// Accessed bit will show the next access); a young one only if MADV_COLD can clear its bit.
/// `Some(folio)`: measurable, with `Slot::pending_folio`'s word for it (0 but for a young
/// page in a large folio mapped by PTEs).
#[inline(always)]
fn measurable(run: &SlotRun, leaf: &Leaf) -> Option<u32> {
    if leaf.flags & SAMPLE_READ_ERR != 0 {
        return None;
    }
    if leaf.flags & SAMPLE_PRESENT == 0 || leaf.flags & SAMPLE_YOUNG == 0 {
        return Some(0);
    }
    if leaf.flags & SAMPLE_PUD_LEAF != 0 {
        return None; // hugetlb or DAX: MADV_COLD refuses them
    }
    clearable(run, leaf)
}

/// Whether `process_madvise(MADV_COLD)` clears the Accessed bit of this young page, following
/// mm/madvise.c (`madvise_cold_or_pageout_pte_range`): it skips folios mapped by more than
/// one mapping, folios not on an LRU list (still in a per-CPU batch, or without one: the zero
/// page, kernel pages), and it would split a large folio mapped by PTEs, so such a sample is
/// not taken. For a PMD-mapped transparent huge page it needs the folio mapped once.
#[inline(always)]
fn clearable(run: &SlotRun, leaf: &Leaf) -> Option<u32> {
    let page = run.vmemmap_base + leaf_pfn(leaf) * run.page_size;
    let flags = read_u64(page + run.page_flags)?;
    if leaf.flags & SAMPLE_PMD_LEAF != 0 {
        if flags & (1 << run.pg_lru) == 0 || flags & (1 << run.pg_unevictable) != 0 {
            return None;
        }
        // `page` is the folio's head. Raw mapcounts start at -1.
        let off = if run.folio_large_mapcount != 0 {
            run.folio_large_mapcount
        } else {
            run.folio_entire_mapcount
        };
        return match read_i32(page + off) {
            Some(m) if m <= 0 => Some(0),
            _ => None,
        };
    }
    let compound_head = read_u64(page + run.page_compound_head)?;
    if flags & (1 << run.pg_head) == 0 && compound_head & 1 == 0 {
        // A small folio: on an LRU list, evictable, mapped once.
        if flags & (1 << run.pg_lru) == 0 || flags & (1 << run.pg_unevictable) != 0 {
            return None;
        }
        return match read_i32(page + run.page_mapcount) {
            Some(0) => Some(0),
            _ => None,
        };
    }
    large_folio(run, page, flags, compound_head)
}

/// A young page in a large folio mapped by PTEs: MADV_COLD over the whole folio clears the
/// Accessed bits of all its pages without splitting it (Linux 6.9+, kernels with
/// `_large_mapcount`), if the folio is on an LRU list, evictable, and mapped by one process
/// (at most once per page). Returns the `Slot::pending_folio` word.
#[inline(always)]
fn large_folio(run: &SlotRun, page: u64, flags: u64, compound_head: u64) -> Option<u32> {
    if run.folio_order == 0 || run.folio_large_mapcount == 0 {
        return None;
    }
    let (head, head_flags) = if flags & (1 << run.pg_head) != 0 {
        (page, flags)
    } else {
        let head = compound_head - 1;
        (head, read_u64(head + run.page_flags)?)
    };
    if head_flags & (1 << run.pg_lru) == 0 || head_flags & (1 << run.pg_unevictable) != 0 {
        return None;
    }
    let order = read_u64(head + run.folio_order)? & 0xff;
    if order == 0 || order > 9 {
        return None;
    }
    // MADV_COLD ages a folio whole only when every page of it is mapped exactly once by
    // this mapping (`folio_mapcount == folio_nr_pages`); any other count makes it split the
    // folio. Raw mapcounts start at -1.
    let mapped = read_i32(head + run.folio_large_mapcount)?;
    if mapped < 0 || mapped as u64 + 1 != 1 << order {
        return None;
    }
    let index = page.wrapping_sub(head) / run.page_size.max(1);
    if index >= 1 << order {
        return None;
    }
    Some(FOLIO_LARGE | (order as u32) << 16 | index as u32)
}
