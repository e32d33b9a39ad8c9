//! User page faults, and sampled data addresses, attributed to regions.
//!
//! A fault on a region is a certain access (first touch, copy-on-write, swap-in), and it covers
//! pages that were not present when sampled, which the page-table walk alone would miss.
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    macros::{perf_event, tracepoint},
    programs::{PerfEventContext, TracePointContext},
};
use core::intrinsics::{AtomicOrdering, atomic_xadd};
use damon_common::{
    HPAGE_PMD_SIZE, PAGE_SIZE, PERF_EVENT_DATA_ADDR_OFFSET, REGION_INDEX_MASK, SAMPLE_PMD_LEAF,
    TP_PAGE_FAULT_ADDRESS_OFFSET,
};

use crate::{
    maps::{CONTROL, SLOTS, TARGETS},
    regions::find_region,
};

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The only cost for the processes we do not monitor: this lookup.
    let Some(slot) = (unsafe { TARGETS.get(&tgid) }).map(|t| t.slot) else {
        return 0;
    };
    if let Ok(addr) = unsafe { ctx.read_at::<u64>(TP_PAGE_FAULT_ADDRESS_OFFSET) } {
        record_access(slot, addr);
    }
    0
}

/// Attached to a perf event that samples data addresses (a PMU with PEBS / IBS / SPE, or the
/// software page-fault event): attributes `bpf_perf_event_data.addr` like a fault.
#[perf_event]
pub fn perf_sample(ctx: PerfEventContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(slot) = (unsafe { TARGETS.get(&tgid) }).map(|t| t.slot) else {
        return 0;
    };
    let addr =
        unsafe { *((ctx.as_ptr() as *const u8).add(PERF_EVENT_DATA_ADDR_OFFSET) as *const u64) };
    record_access(slot, addr);
    0
}

#[inline(always)]
fn record_access(slot: u32, addr: u64) {
    let (Some(s), Some(ctl)) = (SLOTS.get_ptr_mut(slot), CONTROL.get(0)) else {
        return;
    };
    let s = unsafe { &mut *s };
    let Some(idx) = find_region(s, addr) else {
        return;
    };
    let idx = (idx & REGION_INDEX_MASK) as usize;
    // Faults of one process arrive on several CPUs at once. The result is unused, so this is a
    // plain BPF atomic add (XADD), available on every kernel with BPF. core's AtomicU64 has no
    // read-modify-write methods on the BPF target, hence the intrinsic.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut s.fault_count[idx], 1) };
    let sample = s.pending[idx];
    // The prepare tells whether the sample lies in a huge page: then a fault anywhere in its
    // 2 MiB is a fault on the sampled page.
    let span = if s.pending_flags[idx] & SAMPLE_PMD_LEAF != 0 {
        HPAGE_PMD_SIZE
    } else {
        PAGE_SIZE
    };
    if ctl.fault_in_region != 0 || addr & !(span - 1) == sample & !(span - 1) {
        s.fault_gen[idx] = s.generation;
    }
}
