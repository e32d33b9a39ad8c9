//! The kernel selftest `damon_nr_regions.py`, on simulated memory: a workload with N distinct
//! access areas (10 MiB each, even ones accessed, odd ones idle, like `access_memory_even`)
//! monitored with given `[min, max]_nr_regions`; the number of regions must stay within the
//! bounds, and lowering max online must shrink it.
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::{AddrRange, Attrs, ContextSpec, MonitorContext, OpsId, TargetSpec};

const MIB: u64 = 1 << 20;
const PID: i32 = 100;

/// A process like `access_memory_even <n> 10MiB`: a small text+heap, `n` adjacent 10 MiB areas
/// in the mmap area, a stack.
fn access_memory_even(n: u64, seed: u64) -> SimMemory {
    let sim = SimMemory::new(seed);
    let areas_start = 0x7f00_0000_0000u64;
    sim.add_process(
        PID,
        vec![
            AddrRange::new(0x40_0000, 0x42_0000),
            AddrRange::new(0x100_0000, 0x102_1000),
            AddrRange::new(areas_start, areas_start + n * 10 * MIB),
            AddrRange::new(0x7ffd_0000_0000, 0x7ffd_0002_1000),
        ],
    );
    let hot = (0..n)
        .filter(|i| i % 2 == 0)
        .map(|i| {
            let start = areas_start + i * 10 * MIB;
            HotArea::new(start, start + 10 * MIB, 1.0)
        })
        .collect();
    sim.set_hot_areas(PID, hot);
    sim
}

fn spec(min: u64, max: u64) -> ContextSpec {
    ContextSpec {
        ops: OpsId::Vaddr,
        attrs: Attrs {
            min_nr_regions: min,
            max_nr_regions: max,
            ..Attrs::damo_defaults()
        },
        targets: vec![TargetSpec::vaddr(PID)],
    }
}

/// Runs `aggregations` aggregation intervals; returns the region count of every snapshot
/// (after merge) and after every sample (after split and update).
fn run(
    ctx: &mut MonitorContext,
    sim: &mut SimMemory,
    aggregations: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut reported = Vec::new();
    let mut live = Vec::new();
    while reported.len() < aggregations {
        if let Some(snap) = ctx.sample(sim, 0).expect("sim") {
            reported.push(snap.targets[0].regions.len());
        }
        live.push(ctx.nr_regions());
    }
    (reported, live)
}

fn check_bounds(real: u64, min: u64, max: u64) {
    for seed in 0..3 {
        let mut sim = access_memory_even(real, seed);
        let mut ctx = MonitorContext::new(0, spec(min, max), seed, 0).expect("valid");
        let (reported, live) = run(&mut ctx, &mut sim, 50);
        let name = format!("{real}/{min}/{max} real/min/max nr_regions, seed {seed}");
        let (lo, hi) = (reported.iter().min(), reported.iter().max());
        assert!(
            lo >= Some(&(min as usize)) && hi <= Some(&(max as usize)),
            "{name}: reported {reported:?}"
        );
        let (lo, hi) = (live.iter().min(), live.iter().max());
        assert!(
            lo >= Some(&(min as usize)) && hi <= Some(&(max as usize)),
            "{name}: live {lo:?}..{hi:?}"
        );
    }
}

#[test]
fn bounds_3_10() {
    for real in [10, 20, 100] {
        check_bounds(real, 3, 10);
    }
}

#[test]
fn bounds_15_20() {
    for real in [10, 20, 100] {
        check_bounds(real, 15, 20);
    }
}

/// The kernel selftest's own cases: min above the real count, max below it.
#[test]
fn kernel_selftest_cases() {
    check_bounds(10, 20, 100);
    check_bounds(15, 3, 10);
}

#[test]
fn lowering_max_online_shrinks_the_count() {
    let mut sim = access_memory_even(14, 7);
    let mut ctx = MonitorContext::new(0, spec(10, 1000), 7, 0).expect("valid");
    // "wait until the real regions are found": 3 s of 100 ms aggregations.
    let (reported, _) = run(&mut ctx, &mut sim, 30);
    let found = *reported.last().expect("snapshots");
    assert!(
        found > 7,
        "the 14 areas need more than 7 regions: {reported:?}"
    );

    let mut online = spec(3, 7);
    online.attrs.update_us = 100_000;
    ctx.commit(online, 0).expect("valid");
    // "wait for next merge operation is executed": 0.3 s.
    let (reported, _) = run(&mut ctx, &mut sim, 3);
    assert!(
        reported.iter().all(|&n| n <= 7),
        "after commit: {reported:?}"
    );
    assert!(ctx.nr_regions() <= 7, "{}", ctx.nr_regions());
}
