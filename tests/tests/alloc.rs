//! The sampling loop allocates nothing per sample: a counting global allocator around steps
//! of the eBPF access check (and of the core that drives it) against a real process.
//!
//! Allocations are counted per thread: the steps run on the test's thread as they run on a
//! kdamond's. Other threads of the process are not the sampling loop: the thread that
//! forwards the programs' log records allocates when it formats one, and the record of the
//! layout probe at start-up can reach it while the steps run.
use damon_user::core::{AddrRange, Pid};
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use damon_tests::{Workload, field, parse_range};
use damon_user::{
    access::EbpfOpsOptions,
    core::{
        Attrs, ContextSpec, MonitorContext, OpsId, OwnedTarget, OwnedTargets, Region, TargetSpec,
    },
    runtime::ebpf_ops,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread's allocations while its locals are torn down are not counted.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made so far by the calling thread.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
#[ignore = "needs root"]
fn a_sample_step_allocates_nothing() {
    let (w, ready) =
        Workload::start(&["hotcold", "--hot-mib", "8", "--cold-mib", "24"]).expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let cold = parse_range(field(&ready, "cold").unwrap()).unwrap();
    let mut ops = ebpf_ops(EbpfOpsOptions::default()).expect("eBPF access check");

    // The access check alone: 64 regions over both buffers.
    let regions: Vec<Region> = [hot, cold]
        .iter()
        .flat_map(|&AddrRange { start: s, end: e }| {
            let step = (e - s) / 32;
            (0..32).map(move |i| Region::new(s + i * step, s + (i + 1) * step))
        })
        .collect();
    let mut targets = OwnedTargets::new(vec![OwnedTarget::new(0, Pid(w.pid()), regions)]);
    let a0 = allocations();
    targets.step(&mut ops, false, true).expect("first prepare");
    // The count works: registering the target allocates.
    assert!(allocations() > a0, "the allocator counts nothing");
    for _ in 0..3 {
        targets.step(&mut ops, true, true).expect("warm-up");
    }
    let before = allocations();
    for k in 0..200u64 {
        let t = &mut targets.targets[0];
        for (r, next) in t.regions.iter().zip(t.next.iter_mut()) {
            *next = r.start + (k * 7919 % ((r.end - r.start) / 4096)) * 4096;
        }
        targets.step(&mut ops, true, true).expect("step");
    }
    assert_eq!(
        allocations() - before,
        0,
        "heap allocations in 200 steps of the access check"
    );

    // The core driving it: samples within an aggregation interval (an aggregation, every 20
    // samples, builds its snapshot and may allocate).
    let spec = ContextSpec {
        ops: OpsId::Vaddr,
        attrs: Attrs {
            aggr_us: 1 << 40,
            update_us: 1 << 40,
            ..Attrs::damo_defaults()
        },
        targets: vec![TargetSpec {
            pid: Pid(w.pid()),
            ranges: vec![],
        }],
    };
    let mut ctx = MonitorContext::new(0, spec, 1, 0).expect("context");
    for _ in 0..5 {
        ctx.sample(&mut ops, 0).expect("warm-up");
    }
    let before = allocations();
    for _ in 0..200 {
        ctx.sample(&mut ops, 0).expect("sample");
    }
    assert_eq!(
        allocations() - before,
        0,
        "heap allocations in 200 samples of the core with the eBPF access check"
    );
}
