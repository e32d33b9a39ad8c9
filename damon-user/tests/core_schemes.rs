//! DAMOS in the engine: when schemes are applied, what their quotas let through, what their
//! stats count, and how goals tune them, over the simulated memory.
use damon_user::core::scheme::{
    AccessPattern, Action, Bounds, GoalMetric, QuotaGoal, Quotas, Scheme,
};
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::{
    Access, AddrRange, Attrs, ContextSpec, MonitorContext, Operations, OpsError, OpsId, Pid,
    SampleStep, TargetSpec,
};

const MIB: u64 = 1 << 20;
const PID: i32 = 7;
const HEAP: AddrRange = AddrRange {
    start: 0x1000_0000,
    end: 0x1000_0000 + 64 * MIB,
};
/// 5 ms samples, 100 ms aggregations.
const SAMPLE_NS: u64 = 5_000_000;

fn context(sim: &SimMemory) -> MonitorContext {
    sim.add_process(PID, vec![HEAP]);
    sim.set_hot_areas(
        PID,
        vec![HotArea::new(HEAP.start, HEAP.start + 16 * MIB, 1.0)],
    );
    let spec = ContextSpec {
        ops: OpsId::Fvaddr,
        attrs: Attrs {
            min_nr_regions: 10,
            ..Attrs::default()
        },
        targets: vec![TargetSpec::fvaddr(PID, vec![HEAP])],
    };
    MonitorContext::new(0, spec, 3, 0).expect("valid spec")
}

fn any_region(action: Action) -> Scheme {
    Scheme::new(action, AccessPattern::ANY)
}

/// Runs `samples` samples from sample `from`; returns the sample count reached.
fn run(ctx: &mut MonitorContext, sim: &mut SimMemory, from: u64, samples: u64) -> u64 {
    for s in from..from + samples {
        ctx.sample(sim, (s + 1) * SAMPLE_NS).expect("sim sample");
    }
    from + samples
}

#[test]
fn a_scheme_applies_once_per_apply_interval_and_counts_running_totals() {
    let mut sim = SimMemory::new(1);
    let mut ctx = context(&sim);
    let every_10ms = Scheme {
        apply_interval_us: 10_000,
        ..any_region(Action::Stat)
    };
    ctx.set_schemes(vec![every_10ms, any_region(Action::Stat)]);
    let n = run(&mut ctx, &mut sim, 0, 200);
    let stats = ctx.scheme_stats();
    // 100 passes against 10, each over all the memory.
    assert_eq!(stats[0].sz_tried, 100 * HEAP.size(), "{stats:?}");
    assert!(stats[0].nr_tried >= 9 * stats[1].nr_tried, "{stats:?}");
    // Every pass tries all memory: the bytes are running totals.
    assert_eq!(stats[1].sz_tried, 10 * HEAP.size(), "{stats:?}");
    assert_eq!(
        (stats[1].nr_applied, stats[1].sz_applied),
        (0, 0),
        "stat applies nothing"
    );
    run(&mut ctx, &mut sim, n, 20);
    assert_eq!(ctx.scheme_stats()[1].sz_tried, 11 * HEAP.size());
}

#[test]
fn a_size_quota_limits_each_window_and_counts_exhausted_ones() {
    let mut sim = SimMemory::new(2);
    let mut ctx = context(&sim);
    let quota = Scheme {
        quotas: Quotas {
            bytes: MIB,
            reset_interval_ms: 100,
            ..Quotas::default()
        },
        ..any_region(Action::Cold)
    };
    ctx.set_schemes(vec![quota]);
    let mut n = run(&mut ctx, &mut sim, 0, 20);
    for pass in 1..=10u64 {
        ctx.start_walk();
        n = run(&mut ctx, &mut sim, n, 20);
        let walked = ctx.take_walk().expect("the walk ended with the pass");
        let bytes: u64 = walked[0].iter().map(|r| r.range.size()).sum();
        assert_eq!(bytes, MIB, "pass {pass}: exactly the quota is tried");
    }
    let stats = ctx.scheme_stats()[0];
    assert_eq!(stats.sz_tried, 11 * MIB);
    assert_eq!(
        stats.sz_applied,
        11 * MIB,
        "the simulated action applies to all"
    );
    assert_eq!(ctx.effective_quotas(), vec![MIB]);
    // Each new window saw the previous one exhausted.
    assert_eq!(stats.qt_exceeds, 10, "{stats:?}");
    assert_eq!(sim.stats().action_bytes, 11 * MIB);
}

#[test]
fn quota_windows_resume_after_what_the_last_one_charged() {
    let mut sim = SimMemory::new(3);
    let mut ctx = context(&sim);
    let quota = Scheme {
        quotas: Quotas {
            bytes: 4 * MIB,
            reset_interval_ms: 100,
            ..Quotas::default()
        },
        ..any_region(Action::Stat)
    };
    ctx.set_schemes(vec![quota]);
    let mut n = run(&mut ctx, &mut sim, 0, 20);
    let mut starts = Vec::new();
    for _ in 0..3 {
        ctx.start_walk();
        n = run(&mut ctx, &mut sim, n, 20);
        let walked = ctx.take_walk().expect("walk done");
        starts.push(walked[0].first().expect("regions tried").range.start);
    }
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "each window starts after the last: {starts:#x?}"
    );
}

#[test]
fn actions_other_than_stat_reset_the_age_of_what_they_touch() {
    let mut sim = SimMemory::new(4);
    let mut ctx = context(&sim);
    ctx.set_schemes(vec![any_region(Action::Pageout)]);
    run(&mut ctx, &mut sim, 0, 200);
    let regions = ctx.regions(0).expect("target 0");
    // Applied at every aggregation right before its reset: no region ages past 1.
    assert!(regions.iter().all(|r| r.age <= 1), "{regions:?}");
    let mut sim2 = SimMemory::new(4);
    let mut stat = context(&sim2);
    stat.set_schemes(vec![any_region(Action::Stat)]);
    run(&mut stat, &mut sim2, 0, 200);
    let aged = stat.regions(0).expect("target 0");
    assert!(aged.iter().any(|r| r.age > 5), "stat keeps ages: {aged:?}");
}

#[test]
fn a_user_input_goal_tunes_the_effective_quota() {
    let mut sim = SimMemory::new(5);
    let mut ctx = context(&sim);
    let goal = |current_value| QuotaGoal {
        metric: GoalMetric::UserInput,
        target_value: 10_000,
        current_value,
        nid: 0,
    };
    let tuned = Scheme {
        quotas: Quotas {
            reset_interval_ms: 100,
            goals: vec![goal(0)],
            ..Quotas::default()
        },
        ..any_region(Action::Stat)
    };
    ctx.set_schemes(vec![tuned]);
    // Under-achieving (score 0): the quota doubles every window, 2 bytes in the first.
    let mut n = run(&mut ctx, &mut sim, 0, 20 * 5);
    assert_eq!(ctx.effective_quotas(), vec![32]);
    // Over-achieving by half: it halves, down to 1.
    ctx.commit_quota_goals(vec![vec![goal(15_000)]]);
    n = run(&mut ctx, &mut sim, n, 20 * 6);
    assert_eq!(ctx.effective_quotas(), vec![1]);
    ctx.commit_quota_goals(vec![vec![goal(5_000)]]);
    run(&mut ctx, &mut sim, n, 20 * 6);
    assert_eq!(ctx.effective_quotas(), vec![11]);
}

#[test]
fn a_pattern_selects_by_access_rate() {
    let mut sim = SimMemory::new(6);
    let mut ctx = context(&sim);
    let hot = Scheme {
        pattern: AccessPattern {
            nr_accesses: Bounds { min: 15, max: 20 },
            ..any_region(Action::Stat).pattern
        },
        ..any_region(Action::Stat)
    };
    ctx.set_schemes(vec![hot]);
    let n = run(&mut ctx, &mut sim, 0, 200);
    ctx.start_walk();
    run(&mut ctx, &mut sim, n, 20);
    let walked = ctx.take_walk().expect("walk done");
    let bytes: u64 = walked[0].iter().map(|r| r.range.size()).sum();
    // The hot 16 MiB, give or take the regions' edges.
    assert!(
        (14 * MIB..=18 * MIB).contains(&bytes),
        "{} MiB tried",
        bytes / MIB
    );
    assert!(
        walked[0]
            .iter()
            .all(|r| r.range.start < HEAP.start + 18 * MIB)
    );
}

/// The simulated memory, except that samples in `unmeasurable` cannot be measured.
struct PartlyUnmeasurable {
    sim: SimMemory,
    unmeasurable: AddrRange,
}

impl Operations for PartlyUnmeasurable {
    fn mappings(&mut self, pid: Pid) -> Result<Vec<AddrRange>, OpsError> {
        self.sim.mappings(pid)
    }

    fn target_valid(&mut self, pid: Pid) -> bool {
        self.sim.target_valid(pid)
    }

    fn sample(&mut self, step: &mut SampleStep<'_>) -> Result<(), OpsError> {
        self.sim.sample(step)?;
        if step.check() {
            for i in 0..step.len() {
                let t = step.target(i);
                for (r, found) in t.regions.iter().zip(t.found.iter_mut()) {
                    if self.unmeasurable.contains(r.sampling_addr) {
                        *found = Access::Unmeasured;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_scheme(&mut self, pid: Pid, range: AddrRange, action: Action) -> u64 {
        self.sim.apply_scheme(pid, range, action)
    }
}

#[test]
fn no_scheme_acts_on_memory_it_could_not_measure() {
    let sim = SimMemory::new(7);
    let mut ctx = context(&sim);
    // The cold part's second half reads "unmeasured": as idle as the rest by its counts.
    let unmeasurable = AddrRange::new(HEAP.start + 40 * MIB, HEAP.end);
    let mut ops = PartlyUnmeasurable { sim, unmeasurable };
    let idle = Scheme {
        pattern: AccessPattern {
            nr_accesses: Bounds { min: 0, max: 0 },
            ..any_region(Action::Pageout).pattern
        },
        ..any_region(Action::Pageout)
    };
    ctx.set_schemes(vec![idle]);
    for s in 0..200u64 {
        ctx.sample(&mut ops, (s + 1) * SAMPLE_NS).expect("sample");
    }
    ctx.start_walk();
    for s in 200..220u64 {
        ctx.sample(&mut ops, (s + 1) * SAMPLE_NS).expect("sample");
    }
    let walked = ctx.take_walk().expect("walk done");
    let tried: u64 = walked[0].iter().map(|r| r.range.size()).sum();
    assert!(
        tried >= 20 * MIB,
        "the measured idle part is paged out: {tried}"
    );
    assert!(
        walked[0].iter().all(|r| !r
            .range
            .intersects(&AddrRange::new(unmeasurable.start + 2 * MIB, HEAP.end))),
        "a region read unmeasured was acted on: {walked:#x?}"
    );
}

#[test]
fn adjacent_admitted_regions_are_acted_on_in_one_call() {
    let mut sim = SimMemory::new(4);
    let mut ctx = context(&sim);
    ctx.set_schemes(vec![any_region(Action::Pageout)]);
    // The first pass sees the one initial region; the second the regions it was split into.
    run(&mut ctx, &mut sim, 0, 20);
    let (first, calls) = (ctx.scheme_stats()[0], sim.stats().actions);
    run(&mut ctx, &mut sim, 20, 20);
    let regions = ctx.scheme_stats()[0].nr_applied - first.nr_applied;
    assert!(regions >= 2, "every region applied: {regions}");
    // The heap is one mapping whose regions all match: one call over all of it.
    assert_eq!(sim.stats().actions - calls, 1);
    assert_eq!(sim.stats().action_bytes, 2 * HEAP.size());
    // Regions the pattern leaves out split the calls: only the cold part (the first 16 MiB
    // are hot) is admitted, still in one call.
    let cold = Scheme {
        pattern: AccessPattern {
            nr_accesses: Bounds { min: 0, max: 0 },
            ..any_region(Action::Pageout).pattern
        },
        ..any_region(Action::Pageout)
    };
    ctx.set_schemes(vec![cold]);
    let (before, applied) = (sim.stats(), ctx.scheme_stats()[0]);
    run(&mut ctx, &mut sim, 40, 40);
    let (calls, bytes) = (
        sim.stats().actions - before.actions,
        sim.stats().action_bytes - before.action_bytes,
    );
    let stats = ctx.scheme_stats()[0];
    let regions = stats.nr_applied - applied.nr_applied;
    assert_eq!(bytes, stats.sz_applied - applied.sz_applied, "{stats:?}");
    assert!(
        calls >= 1 && calls < regions,
        "{calls} calls for {regions} regions"
    );
}

#[test]
fn a_region_with_a_hole_fails_alone_when_its_run_is_acted_on_together() {
    let mut sim = SimMemory::new(5);
    let mut ctx = context(&sim);
    ctx.set_schemes(vec![any_region(Action::Pageout)]);
    run(&mut ctx, &mut sim, 0, 40);
    // A page unmapped in the middle: the region holding it cannot apply (madvise's ENOMEM),
    // the others still do, one by one after the call over all of them failed.
    let hole = HEAP.start + 40 * MIB;
    sim.set_mappings(
        PID,
        vec![
            AddrRange::new(HEAP.start, hole),
            AddrRange::new(hole + 4096, HEAP.end),
        ],
    );
    let before = ctx.scheme_stats()[0];
    ctx.start_walk();
    run(&mut ctx, &mut sim, 40, 20);
    let walked = ctx.take_walk().expect("the walk ended with the pass");
    let with_hole = walked[0]
        .iter()
        .find(|r| r.range.start <= hole && hole < r.range.end)
        .expect("a region over the hole");
    let after = ctx.scheme_stats()[0];
    assert_eq!(after.nr_tried - before.nr_tried, walked[0].len() as u64);
    assert_eq!(
        after.nr_applied - before.nr_applied,
        walked[0].len() as u64 - 1,
        "{after:?}"
    );
    assert_eq!(
        after.sz_applied - before.sz_applied,
        HEAP.size() - with_hole.range.size()
    );
}

#[test]
fn watermarks_switch_a_scheme_between_high_mid_and_low() {
    use damon_user::core::scheme::{Watermarks, WmarkMetric};
    let mut sim = SimMemory::new(6);
    let mut ctx = context(&sim);
    ctx.set_schemes(vec![Scheme {
        wmarks: Watermarks {
            metric: WmarkMetric::FreeMemRate,
            interval_us: 1_000_000,
            high: 500,
            mid: 400,
            low: 100,
        },
        ..any_region(Action::Stat)
    }]);
    let mut n = 0;
    let mut pass_at = |ctx: &mut MonitorContext, sim: &mut SimMemory, rate: u64| {
        let wait = ctx.wmark_wait_us(&mut |_| rate);
        let before = ctx.scheme_stats()[0].nr_tried;
        n = run(ctx, sim, n, 20);
        (wait, ctx.scheme_stats()[0].nr_tried > before)
    };
    // Starts active; above high it is deactivated and waits its interval.
    assert_eq!(pass_at(&mut ctx, &mut sim, 450), (0, true));
    assert_eq!(pass_at(&mut ctx, &mut sim, 600), (1_000_000, false));
    // Between mid and high it stays inactive; below mid it is active again.
    assert_eq!(pass_at(&mut ctx, &mut sim, 450), (1_000_000, false));
    assert_eq!(pass_at(&mut ctx, &mut sim, 350), (0, true));
    assert_eq!(pass_at(&mut ctx, &mut sim, 450), (0, true));
    // Below low: inactive.
    assert_eq!(pass_at(&mut ctx, &mut sim, 99), (1_000_000, false));
}

#[test]
fn core_filters_select_regions_by_address_and_target() {
    use damon_user::core::scheme::{Filter, FilterKind};
    let mut sim = SimMemory::new(7);
    let mut ctx = context(&sim);
    let half = AddrRange::new(HEAP.start, HEAP.start + 32 * MIB);
    let addr = |allow| Filter {
        kind: FilterKind::Addr(half),
        matching: true,
        allow,
    };
    let tried = |ctx: &mut MonitorContext, sim: &mut SimMemory, n, filters: Vec<Filter>| {
        ctx.set_schemes(vec![Scheme {
            core_filters: filters,
            ..any_region(Action::Stat)
        }]);
        ctx.start_walk();
        let n = run(ctx, sim, n, 20);
        let walked = ctx.take_walk().expect("walk done");
        (n, walked[0].iter().map(|r| r.range).collect::<Vec<_>>())
    };
    let n = run(&mut ctx, &mut sim, 0, 40);
    // Reject the first half: only the second is tried; a region across the bound is split
    // there and its left piece judged (kept out), the right one left for the next pass.
    let (n, regions) = tried(&mut ctx, &mut sim, n, vec![addr(false)]);
    assert!(!regions.is_empty());
    assert!(regions.iter().all(|r| r.start >= half.end), "{regions:x?}");
    // Allow the first half as the last filter: the rest is rejected by default.
    let (n, regions) = tried(&mut ctx, &mut sim, n, vec![addr(true)]);
    assert!(!regions.is_empty());
    assert!(regions.iter().all(|r| r.end <= half.end), "{regions:x?}");
    // Not of target 0 is rejected: this target is 0, so everything passes; matching target 1
    // is rejected, nothing else matches: everything passes too; reject target 0: nothing.
    let target = |idx, matching| Filter {
        kind: FilterKind::Target(idx),
        matching,
        allow: false,
    };
    let (n, all) = tried(&mut ctx, &mut sim, n, vec![target(0, false)]);
    assert_eq!(all.iter().map(|r| r.size()).sum::<u64>(), HEAP.size());
    let (n, all) = tried(&mut ctx, &mut sim, n, vec![target(1, true)]);
    assert_eq!(all.iter().map(|r| r.size()).sum::<u64>(), HEAP.size());
    let (_, none) = tried(&mut ctx, &mut sim, n, vec![target(0, true)]);
    assert!(none.is_empty());
}
