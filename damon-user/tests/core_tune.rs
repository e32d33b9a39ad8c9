//! Intervals auto-tuning in the engine, on simulated memory: an idle process's sample interval
//! climbs to the goal's maximum, a busy one's falls to the minimum, a phase change pulls it
//! back, and the aggregation interval keeps its ratio throughout.
use damon_user::core::Pid;
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, CoreError, IntervalsGoal, MonitorContext, OpsId, Snapshot,
    TargetSpec,
};

const MIB: u64 = 1 << 20;
const PID: i32 = 9;
const HEAP: u64 = 0x100_0000;

fn sim(seed: u64) -> SimMemory {
    let sim = SimMemory::new(seed);
    sim.add_process(
        PID,
        vec![
            AddrRange::new(0x40_0000, 0x50_0000),
            AddrRange::new(HEAP, HEAP + 64 * MIB),
            AddrRange::new(0x7f00_0000_0000, 0x7f00_0080_0000),
            AddrRange::new(0x7ffd_0000_0000, 0x7ffd_0002_1000),
        ],
    );
    sim
}

fn context(sample_us: u64) -> MonitorContext {
    let spec = ContextSpec {
        ops: OpsId::Vaddr,
        attrs: Attrs {
            sample_us,
            aggr_us: sample_us * 20,
            intervals_goal: IntervalsGoal::AUTOTUNE,
            ..Attrs::damo_defaults()
        },
        targets: vec![TargetSpec {
            pid: Pid(PID),
            ranges: vec![],
        }],
    };
    MonitorContext::new(0, spec, 7, 0).expect("valid")
}

/// The sample interval of each of the next `n` aggregations.
fn run(ctx: &mut MonitorContext, sim: &mut SimMemory, n: usize) -> Vec<u64> {
    let mut seen: Vec<Snapshot> = Vec::new();
    while seen.len() < n {
        if let Some(s) = ctx.sample(sim, 0).expect("sim") {
            assert_eq!(
                s.intervals.aggr_us,
                s.intervals.sample_us * 20,
                "the ratio of the intervals is kept"
            );
            seen.push(s);
        }
    }
    seen.iter().map(|s| s.intervals.sample_us).collect()
}

#[test]
fn an_idle_process_climbs_to_the_maximum_by_doubling() {
    let mut sim = sim(1);
    let mut ctx = context(5_000);
    let samples = run(&mut ctx, &mut sim, 40);
    // Nothing accessed: every third aggregation doubles the interval (adaptation 2x), until
    // the goal's 10 s.
    let mut expected = Vec::new();
    let mut s = 5_000u64;
    for i in 0..40 {
        expected.push(s);
        if i % 3 == 2 {
            s = (s * 2).min(10_000_000);
        }
    }
    assert_eq!(samples, expected);
    assert_eq!(ctx.attrs().sample_us, 10_000_000);
}

#[test]
fn a_busy_process_falls_to_the_minimum_and_a_phase_change_pulls_it_back() {
    let mut sim = sim(2);
    sim.set_hot_areas(PID, vec![HotArea::new(HEAP, HEAP + 64 * MIB, 1.0)]);
    let mut ctx = context(1_280_000);
    let samples = run(&mut ctx, &mut sim, 40);
    assert!(
        samples.windows(2).all(|w| w[1] <= w[0]),
        "a busy process's interval never grows: {samples:?}"
    );
    assert_eq!(*samples.last().unwrap(), 5_000, "{samples:?}");
    // It goes quiet: the interval climbs again.
    sim.set_hot_areas(PID, vec![]);
    let samples = run(&mut ctx, &mut sim, 12);
    assert!(
        *samples.last().unwrap() >= 40_000,
        "quiet again, the interval grows: {samples:?}"
    );
    // Busy again: it falls back.
    sim.set_hot_areas(PID, vec![HotArea::new(HEAP, HEAP + 64 * MIB, 1.0)]);
    let before = ctx.attrs().sample_us;
    let samples = run(&mut ctx, &mut sim, 12);
    assert!(
        *samples.last().unwrap() < before,
        "busy again, the interval shrinks: {before} -> {samples:?}"
    );
}

#[test]
fn a_goal_the_sample_interval_is_outside_of_is_refused() {
    let spec = |sample_us, goal| ContextSpec {
        ops: OpsId::Vaddr,
        attrs: Attrs {
            sample_us,
            aggr_us: sample_us * 20,
            intervals_goal: goal,
            ..Attrs::damo_defaults()
        },
        targets: vec![],
    };
    let err = MonitorContext::new(0, spec(1_000, IntervalsGoal::AUTOTUNE), 0, 0)
        .err()
        .expect("1 ms is below the goal's 5 ms");
    assert!(
        matches!(
            err,
            CoreError::InvalidIntervalsGoal {
                sample_us: 1_000,
                ..
            }
        ),
        "{err}"
    );
    let inverted = IntervalsGoal {
        min_sample_us: 20_000,
        max_sample_us: 10_000,
        ..IntervalsGoal::AUTOTUNE
    };
    assert!(MonitorContext::new(0, spec(15_000, inverted), 0, 0).is_err());
    // A goal with aggrs 0 is off, whatever else it says.
    let off = IntervalsGoal {
        aggrs: 0,
        ..inverted
    };
    assert!(MonitorContext::new(0, spec(1_000, off), 0, 0).is_ok());
}
