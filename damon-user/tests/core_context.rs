//! The steppable engine: timing in samples, target lifecycle, layout flags, commit.
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, CoreError, MonitorContext, OpsId, PAGE_SIZE, TargetSpec,
};

const MIB: u64 = 1 << 20;
const TEXT: AddrRange = AddrRange {
    start: 0x40_0000,
    end: 0x50_0000,
};
const HEAP: AddrRange = AddrRange {
    start: 0x100_0000,
    end: 0x100_0000 + 16 * MIB,
};
const MMAP: AddrRange = AddrRange {
    start: 0x7f00_0000_0000,
    end: 0x7f00_0000_0000 + 8 * MIB,
};
const STACK: AddrRange = AddrRange {
    start: 0x7ffd_0000_0000,
    end: 0x7ffd_0002_1000,
};

fn sim_process(seed: u64, pid: i32) -> SimMemory {
    let sim = SimMemory::new(seed);
    sim.add_process(pid, vec![TEXT, HEAP, MMAP, STACK]);
    sim
}

fn vaddr_spec(attrs: Attrs, pids: &[i32]) -> ContextSpec {
    ContextSpec {
        ops: OpsId::Vaddr,
        attrs,
        targets: pids.iter().map(|&pid| TargetSpec::vaddr(pid)).collect(),
    }
}

#[test]
fn aggregation_and_update_are_counted_in_samples() {
    let attrs = Attrs {
        sample_us: 5_000,
        aggr_us: 100_000,
        update_us: 1_000_000,
        ..Attrs::default()
    };
    let mut sim = sim_process(1, 10);
    let mut ctx = MonitorContext::new(0, vaddr_spec(attrs, &[10]), 1, 1_000).expect("valid");
    let mut aggregations = Vec::new();
    for sample in 1..=400u64 {
        if let Some(snap) = ctx.sample(&mut sim, sample * 5_000_000).expect("sim") {
            aggregations.push(sample);
            assert_eq!(snap.end_ns, sample * 5_000_000);
            let expected_start = if sample == 20 {
                1_000
            } else {
                (sample - 20) * 5_000_000
            };
            assert_eq!(snap.start_ns, expected_start);
            assert_eq!(snap.intervals, attrs.intervals());
            assert_eq!(snap.targets.len(), 1);
            assert_eq!(snap.targets[0].pid, 10);
        }
    }
    assert_eq!(aggregations, (1..=20).map(|i| i * 20).collect::<Vec<_>>());
    // One read at init, then one per 200 samples.
    assert_eq!(sim.stats().mapping_reads, 1 + 2);
    assert_eq!(ctx.passed_samples(), 400);
}

#[test]
fn initial_regions_split_to_min_nr_regions() {
    let mut sim = sim_process(2, 10);
    let mut ctx = MonitorContext::new(0, vaddr_spec(Attrs::default(), &[10]), 2, 0).expect("valid");
    assert_eq!(
        ctx.nr_regions(),
        0,
        "vaddr regions are built at the first prepare"
    );
    ctx.prepare(&mut sim).expect("sim");
    let regions = ctx.regions(0).expect("target 0");
    assert!(
        (10..=12).contains(&regions.len()),
        "{} regions",
        regions.len()
    );
    assert_eq!(regions[0].start, TEXT.start);
    assert_eq!(regions.last().map(|r| r.end), Some(STACK.end));
    for r in regions {
        assert!(r.sampling_addr >= r.start && r.sampling_addr < r.end);
        assert_eq!(r.sampling_addr % PAGE_SIZE, 0);
    }
    let total = (HEAP.end - TEXT.start) + MMAP.size() + STACK.size();
    assert_eq!(ctx.sz_limit(), total / 10);
}

#[test]
fn fvaddr_regions_are_the_user_ranges() {
    let ranges = vec![
        AddrRange::new(HEAP.start + 10, HEAP.start + 3 * PAGE_SIZE),
        AddrRange::new(MMAP.start, MMAP.start + MIB),
    ];
    let spec = ContextSpec {
        ops: OpsId::Fvaddr,
        attrs: Attrs::default(),
        targets: vec![TargetSpec::fvaddr(10, ranges)],
    };
    let mut sim = sim_process(3, 10);
    let mut ctx = MonitorContext::new(0, spec, 3, 0).expect("valid");
    let bounds: Vec<(u64, u64)> = ctx
        .regions(0)
        .expect("target")
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    assert_eq!(
        bounds,
        vec![
            (HEAP.start, HEAP.start + 3 * PAGE_SIZE),
            (MMAP.start, MMAP.start + MIB)
        ]
    );
    for sample in 0..500 {
        ctx.sample(&mut sim, sample).expect("sim");
    }
    assert_eq!(sim.stats().mapping_reads, 0, "fvaddr never reads mappings");
    for r in ctx.regions(0).expect("target") {
        assert!(
            (r.start >= HEAP.start && r.end <= HEAP.start + 3 * PAGE_SIZE)
                || (r.start >= MMAP.start && r.end <= MMAP.start + MIB)
        );
    }
}

#[test]
fn layout_changed_is_set_only_after_bounds_change() {
    let attrs = Attrs {
        aggr_us: 50_000, // 10 samples
        ..Attrs::default()
    };
    let mut sim = sim_process(4, 10);
    let mut ctx = MonitorContext::new(0, vaddr_spec(attrs, &[10]), 4, 0).expect("valid");
    ctx.sample(&mut sim, 0).expect("sim");
    assert_eq!(sim.stats().layout_changes, 1, "the first prepare");
    for _ in 1..10 {
        ctx.sample(&mut sim, 0).expect("sim");
    }
    assert_eq!(
        sim.stats().layout_changes,
        1,
        "no change within the interval"
    );
    // The aggregation at sample 10 split regions (11 <= 1000 / 2): flagged in the prepare
    // that follows it, which sample 11 makes before its check.
    ctx.sample(&mut sim, 0).expect("sim");
    assert_eq!(sim.stats().layout_changes, 2);
}

#[test]
fn target_without_two_gaps_gets_regions_at_the_next_update() {
    let attrs = Attrs {
        update_us: 100_000, // 20 samples
        ..Attrs::default()
    };
    let sim = SimMemory::new(5);
    sim.add_process(10, vec![HEAP, MMAP]);
    let mut ops = sim.clone();
    let mut ctx = MonitorContext::new(0, vaddr_spec(attrs, &[10]), 5, 0).expect("valid");
    for _ in 0..19 {
        ctx.sample(&mut ops, 0).expect("sim");
    }
    assert_eq!(ctx.nr_regions(), 0);
    assert_eq!(sim.stats().prepares, 0, "no regions, no access checks");
    sim.set_mappings(10, vec![TEXT, HEAP, MMAP, STACK]);
    ctx.sample(&mut ops, 0).expect("sim"); // sample 20: the update
    assert!(ctx.nr_regions() >= 10, "{}", ctx.nr_regions());
}

#[test]
fn gone_target_reads_not_accessed_and_invalidates() {
    let sim = sim_process(6, 10);
    sim.set_hot_areas(10, vec![HotArea::new(HEAP.start, HEAP.end, 1.0)]);
    let mut ops = sim.clone();
    let mut ctx = MonitorContext::new(0, vaddr_spec(Attrs::default(), &[10]), 6, 0).expect("valid");
    for _ in 0..5 {
        ctx.sample(&mut ops, 0).expect("sim");
    }
    let hot_before: u32 = ctx
        .regions(0)
        .expect("t")
        .iter()
        .map(|r| r.nr_accesses)
        .sum();
    assert!(hot_before > 0);
    sim.remove_process(10);
    assert!(!ctx.any_target_valid(&mut ops));
    for _ in 0..5 {
        ctx.sample(&mut ops, 0).expect("gone is not an error");
    }
    let hot_after: u32 = ctx
        .regions(0)
        .expect("t")
        .iter()
        .map(|r| r.nr_accesses)
        .sum();
    assert_eq!(hot_before, hot_after, "no access counted after the exit");
}

#[test]
fn commit_rescales_counters_and_keeps_regions() {
    let sim = sim_process(7, 10);
    sim.set_hot_areas(10, vec![HotArea::new(HEAP.start, HEAP.end, 1.0)]);
    let mut ops = sim.clone();
    let attrs = Attrs::default(); // max_nr_accesses 20
    let mut ctx = MonitorContext::new(0, vaddr_spec(attrs, &[10]), 7, 0).expect("valid");
    for _ in 0..20 * 5 + 3 {
        ctx.sample(&mut ops, 0).expect("sim");
    }
    let before = ctx.regions(0).expect("t").to_vec();
    let new_attrs = Attrs {
        aggr_us: 200_000, // max_nr_accesses 40, age halves
        ..attrs
    };
    ctx.commit(vaddr_spec(new_attrs, &[10]), 99).expect("valid");
    let after = ctx.regions(0).expect("t");
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        assert_eq!((a.start, a.end), (b.start, b.end));
        assert_eq!(a.nr_accesses, 0, "partial interval dropped");
        assert_eq!(a.last_nr_accesses, b.last_nr_accesses * 2);
        assert_eq!(a.nr_accesses_bp, a.last_nr_accesses * 10_000);
        assert_eq!(a.age, b.age / 2);
    }
    assert!(after.iter().any(|r| r.last_nr_accesses == 40));
    assert_eq!(*ctx.attrs(), new_attrs);
    // The aggregation interval restarted at the commit: 40 samples from now.
    let mut next = None;
    for i in 1..=40 {
        if let Some(snap) = ctx.sample(&mut ops, 1_000 + i).expect("sim") {
            next = Some((i, snap.start_ns));
            break;
        }
    }
    assert_eq!(next, Some((40, 99)));
}

#[test]
fn commit_matches_targets_by_index() {
    let sim = sim_process(8, 10);
    sim.add_process(11, vec![TEXT, HEAP, MMAP, STACK]);
    sim.add_process(12, vec![TEXT, HEAP, MMAP, STACK]);
    let mut ops = sim.clone();
    let attrs = Attrs::default();
    let mut ctx = MonitorContext::new(0, vaddr_spec(attrs, &[10, 11]), 8, 0).expect("valid");
    for _ in 0..25 {
        ctx.sample(&mut ops, 0).expect("sim");
    }
    let kept = ctx.regions(0).expect("t0").to_vec();

    // Invalid: nothing changes.
    let bad = vaddr_spec(
        Attrs {
            min_nr_regions: 1,
            ..attrs
        },
        &[10],
    );
    assert!(matches!(
        ctx.commit(bad, 0),
        Err(CoreError::MinNrRegionsTooSmall { min: 1 })
    ));
    assert_eq!(ctx.nr_targets(), 2);

    // Target 0 keeps its pid and regions, target 1 is replaced, target 2 is new.
    ctx.commit(vaddr_spec(attrs, &[10, 12, 11]), 0)
        .expect("valid");
    assert_eq!(ctx.pids().collect::<Vec<_>>(), vec![10, 12, 11]);
    assert_eq!(ctx.regions(0).expect("t0"), kept.as_slice());
    assert!(ctx.regions(1).expect("t1").is_empty());
    ctx.prepare(&mut ops).expect("sim");
    assert!(ctx.regions(1).expect("t1").len() >= 10);
    assert!(ctx.regions(2).expect("t2").len() >= 10);

    ctx.commit(vaddr_spec(attrs, &[10]), 0).expect("valid");
    assert_eq!(ctx.nr_targets(), 1);
    assert_eq!(ctx.live_targets()[0].pid, 10);
}

#[test]
fn extreme_but_valid_inputs_do_not_overflow() {
    // Two fvaddr targets each spanning most of the address space, an aggregation interval of
    // u64::MAX samples: sizes and sample counters saturate instead of overflowing.
    let huge = AddrRange::new(PAGE_SIZE, u64::MAX - 2 * PAGE_SIZE);
    let spec = ContextSpec {
        ops: OpsId::Fvaddr,
        attrs: Attrs {
            sample_us: 1,
            aggr_us: u64::MAX,
            update_us: u64::MAX,
            min_nr_regions: 3,
            max_nr_regions: u64::MAX,
            intervals_goal: damon_user::core::IntervalsGoal::OFF,
        },
        targets: vec![
            TargetSpec::fvaddr(10, vec![huge]),
            TargetSpec::fvaddr(11, vec![huge]),
        ],
    };
    let sim = sim_process(9, 10);
    sim.add_process(11, vec![huge]);
    sim.set_hot_areas(10, vec![HotArea::new(0, u64::MAX, 1.0)]);
    let mut ops = sim.clone();
    let mut ctx = MonitorContext::new(0, spec.clone(), 9, 0).expect("valid");
    assert_eq!(ctx.sz_limit(), u64::MAX / 3);
    for _ in 0..10 {
        assert!(ctx.sample(&mut ops, 0).expect("sim").is_none());
    }
    let mut smaller = spec;
    smaller.attrs.aggr_us = 2;
    ctx.commit(smaller, 0).expect("valid");
    assert!(ctx.sample(&mut ops, 0).expect("sim").is_none());
    let snap = ctx.sample(&mut ops, 0).expect("sim").expect("aggregated");
    assert!(snap.targets.iter().all(|t| !t.regions.is_empty()));
}

#[test]
fn commit_of_fvaddr_ranges_keeps_counters_of_surviving_regions() {
    let sim = sim_process(10, 10);
    sim.set_hot_areas(10, vec![HotArea::new(HEAP.start, HEAP.end, 1.0)]);
    let mut ops = sim.clone();
    let first = AddrRange::new(HEAP.start, HEAP.start + 4 * MIB);
    let spec = |ranges: Vec<AddrRange>| ContextSpec {
        ops: OpsId::Fvaddr,
        attrs: Attrs::default(),
        targets: vec![TargetSpec::fvaddr(10, ranges)],
    };
    let mut ctx = MonitorContext::new(0, spec(vec![first]), 10, 0).expect("valid");
    for _ in 0..20 * 3 {
        ctx.sample(&mut ops, 0).expect("sim");
    }
    let before = ctx.regions(0).expect("t").to_vec();
    assert!(before.iter().all(|r| r.last_nr_accesses == 20));

    // Keep the first MiB, add a range in the mmap area.
    let kept = AddrRange::new(HEAP.start, HEAP.start + MIB);
    let added = AddrRange::new(MMAP.start, MMAP.start + MIB);
    ctx.commit(spec(vec![kept, added]), 0).expect("valid");
    let after = ctx.regions(0).expect("t");
    assert_eq!(after.first().map(|r| r.start), Some(kept.start));
    assert_eq!(after.last().map(|r| r.range()), Some(added));
    assert_eq!(after.last().map(|r| r.last_nr_accesses), Some(0), "fresh");
    for r in &after[..after.len() - 1] {
        assert!(r.end <= kept.end);
        assert_eq!(r.last_nr_accesses, 20, "survivor {r:?}");
    }
}
