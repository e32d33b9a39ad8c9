//! Intervals auto-tuning (Linux 6.15, `monitoring_attrs/intervals/intervals_goal/`): every
//! `aggrs` aggregations the sample interval is scaled so that the share of access events DAMON
//! observes approaches `access_bp` of the maximum; the aggregation interval follows, keeping
//! their ratio. A quiet process is then sampled rarely, a busy one often.
//!
//! The arithmetic is the kernel's (`damon_get_intervals_score()`,
//! `damon_feed_loop_next_input()`, `kdamond_tune_intervals()`), integer division included.
use serde::{Deserialize, Serialize};

use super::region::Region;

/// The goal of the tuning. All zero (the default) disables it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntervalsGoal {
    /// Aimed share of access events, in basis points of the maximum (every region accessed at
    /// every sample).
    pub access_bp: u64,
    /// Aggregations between two tunings; 0 disables tuning.
    pub aggrs: u64,
    /// Bounds of the tuned sample interval.
    pub min_sample_us: u64,
    pub max_sample_us: u64,
}

impl IntervalsGoal {
    /// No tuning: the intervals stay as set.
    pub const OFF: IntervalsGoal = IntervalsGoal {
        access_bp: 0,
        aggrs: 0,
        min_sample_us: 0,
        max_sample_us: 0,
    };

    /// What DAMON recommends, and damo's `--monitoring_intervals_autotune` and DAMON_STAT use:
    /// 4 % of the maximum access events, tuned every 3 aggregations, sample 5 ms to 10 s.
    pub const AUTOTUNE: IntervalsGoal = IntervalsGoal {
        access_bp: 400,
        aggrs: 3,
        min_sample_us: 5_000,
        max_sample_us: 10_000_000,
    };

    pub fn enabled(&self) -> bool {
        self.aggrs != 0
    }

    /// Not [`enabled`](Self::enabled) (for serde's `skip_serializing_if`).
    pub fn is_off(&self) -> bool {
        !self.enabled()
    }
}

/// The feedback loop of DAMON's tuners (`damon_feed_loop_next_input()`): the next input from
/// the last one and a score against a goal of 10 000. An input never drops below 10 000, so
/// the compensation never becomes zero.
pub fn feed_loop_next_input(last_input: u64, score: u64) -> u64 {
    const GOAL: u64 = 10_000;
    const MIN_INPUT: u64 = 10_000;
    if score == GOAL {
        return last_input;
    }
    if score >= GOAL * 2 {
        return MIN_INPUT;
    }
    let over_achieving = score > GOAL;
    let diff = score.abs_diff(GOAL);
    let compensation = if last_input < u64::MAX / diff {
        last_input * diff / GOAL
    } else {
        last_input / GOAL * diff
    };
    if over_achieving {
        last_input.saturating_sub(compensation).max(MIN_INPUT)
    } else {
        last_input.saturating_add(compensation)
    }
}

/// How the observed access events compare to the goal, in basis points of the goal
/// (`damon_get_intervals_score()`): 10 000 is on target.
pub fn score_bp<'a>(
    regions: impl IntoIterator<Item = &'a Region>,
    aggr_samples: u64,
    access_bp: u64,
) -> u64 {
    let (mut events, mut max_events) = (0u128, 0u128);
    for r in regions {
        let size = u128::from(r.size());
        max_events += size * u128::from(aggr_samples);
        events += size * u128::from(r.nr_accesses);
    }
    let target = (max_events * u128::from(access_bp) / 10_000).max(1);
    (events * 10_000 / target).min(u128::from(u64::MAX)) as u64
}

/// The factor to scale the sample interval by, in basis points
/// (`damon_get_intervals_adaptation_bp()`): from the feedback loop on an input of 10^8, so
/// 1..20 000; a shrink (below 10 000) is halved towards 10 000, as too rapid a reduction of
/// the intervals would lose what was being watched.
pub fn adaptation_bp(score_bp: u64) -> u64 {
    let a = feed_loop_next_input(100_000_000, score_bp) / 10_000;
    if a <= 10_000 { 5_000 + a / 2 } else { a }
}

/// The next sample interval (`kdamond_tune_intervals()`): scaled by `adaptation_bp`, then
/// clamped to the goal's bounds. `None` when the adaptation is exactly 1.
pub fn next_sample_us(sample_us: u64, adaptation_bp: u64, goal: &IntervalsGoal) -> Option<u64> {
    if adaptation_bp == 10_000 {
        return None;
    }
    let scaled = (u128::from(sample_us) * u128::from(adaptation_bp) / 10_000)
        .min(u128::from(u64::MAX)) as u64;
    Some(scaled.min(goal.max_sample_us).max(goal.min_sample_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(pages: u64, nr_accesses: u32) -> Region {
        Region {
            nr_accesses,
            ..Region::new(0, pages * 4096)
        }
    }

    #[test]
    fn feedback_follows_the_kernel() {
        // Hand-computed with the kernel's formula (goal 10 000).
        assert_eq!(
            feed_loop_next_input(100_000_000, 10_000),
            100_000_000,
            "on goal"
        );
        assert_eq!(
            feed_loop_next_input(100_000_000, 20_000),
            10_000,
            "twice the goal"
        );
        assert_eq!(
            feed_loop_next_input(100_000_000, 0),
            200_000_000,
            "nothing seen"
        );
        // score 5 000: under by 5 000 -> + 100e6 * 5000 / 10000 = 50e6.
        assert_eq!(feed_loop_next_input(100_000_000, 5_000), 150_000_000);
        // score 15 000: over by 5 000 -> - 50e6.
        assert_eq!(feed_loop_next_input(100_000_000, 15_000), 50_000_000);
        // Over-achieving never goes below the minimum input.
        assert_eq!(feed_loop_next_input(20_000, 19_999), 10_000);
        assert_eq!(feed_loop_next_input(u64::MAX, 0), u64::MAX, "saturates");
    }

    #[test]
    fn adaptation_doubles_when_idle_and_shrinks_gently() {
        assert_eq!(adaptation_bp(0), 20_000, "idle: twice as long");
        assert_eq!(adaptation_bp(10_000), 10_000, "on goal");
        // Over by half: 100e6 - 50e6 = 50e6 -> 5 000 bp -> 5 000 + 2 500.
        assert_eq!(adaptation_bp(15_000), 7_500);
        // Far over the goal: the input floors at 10 000 -> 1 bp -> 5 000.
        assert_eq!(adaptation_bp(40_000), 5_000, "never below half");
        assert_eq!(adaptation_bp(5_000), 15_000);
    }

    #[test]
    fn score_is_access_events_against_the_goal() {
        // 20 samples per aggregation, goal 4 % = 400 bp: target = 0.04 * 20 * size.
        let idle = [region(10, 0), region(30, 0)];
        assert_eq!(score_bp(&idle, 20, 400), 0);
        // A quarter of the size accessed at 4 of 20 samples: 20 % of the events over the
        // quarter, 5 % overall, 1.25 x the goal.
        let some = [region(10, 4), region(30, 0)];
        assert_eq!(score_bp(&some, 20, 400), 12_500);
        // Everything accessed always: 100 % / 4 % = 25 x the goal.
        let busy = [region(10, 20), region(30, 20)];
        assert_eq!(score_bp(&busy, 20, 400), 250_000);
        // No regions at all: no events against a target of at least one.
        assert_eq!(score_bp(&[], 20, 400), 0);
    }

    #[test]
    fn the_next_interval_is_clamped_to_the_goal() {
        let g = IntervalsGoal::AUTOTUNE;
        assert_eq!(next_sample_us(5_000, 20_000, &g), Some(10_000));
        assert_eq!(
            next_sample_us(8_000_000, 20_000, &g),
            Some(10_000_000),
            "max"
        );
        assert_eq!(next_sample_us(6_000, 5_000, &g), Some(5_000), "min");
        assert_eq!(next_sample_us(5_000, 10_000, &g), None, "unchanged");
        // An idle process climbs to the maximum: 5 ms doubled 11 times is 10.24 s, clamped.
        let mut s = 5_000;
        let mut steps = 0;
        while let Some(n) = next_sample_us(s, adaptation_bp(0), &g).filter(|&n| n != s) {
            s = n;
            steps += 1;
        }
        assert_eq!((s, steps), (10_000_000, 11));
    }
}
