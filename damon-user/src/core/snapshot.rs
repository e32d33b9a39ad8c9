//! What one aggregation of a context produces: DAMON's output.
use serde::{Deserialize, Serialize};

use super::tune::IntervalsGoal;

/// The monitoring intervals in force when a snapshot was taken, in microseconds, and the
/// goal that tunes them, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intervals {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub update_us: u64,
    /// All zero when the intervals are fixed (and then left out of serialized forms).
    #[serde(default, skip_serializing_if = "IntervalsGoal::is_off")]
    pub goal: IntervalsGoal,
}

impl Intervals {
    /// `aggr / max(sample, 1)`: the value `nr_accesses` reaches for a region accessed at every
    /// sample.
    pub fn max_nr_accesses(&self) -> u32 {
        (self.aggr_us / self.sample_us.max(1)).min(u32::MAX as u64) as u32
    }
}

/// One region as reported at the end of an aggregation interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSnapshot {
    pub start: u64,
    pub end: u64,
    /// Samples that found the region accessed, `0..=max_nr_accesses`.
    pub nr_accesses: u32,
    /// Aggregation intervals the access rate has stayed about the same.
    pub age: u32,
    /// Samples that could not be measured (`0..=max_nr_accesses`): the region's sampled pages
    /// were young and their Accessed bit cannot be cleared from user space (pages shared
    /// with other processes, not on an LRU list yet, ...). They count as not accessed.
    #[serde(default)]
    pub nr_unmeasured: u32,
}

impl RegionSnapshot {
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
}

/// The regions of one target at the end of an aggregation interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSnapshot {
    /// Index of the target in its context.
    pub target_idx: usize,
    /// The monitored process.
    pub pid: i32,
    pub regions: Vec<RegionSnapshot>,
}

/// One aggregation of one context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub kdamond_idx: usize,
    pub context_idx: usize,
    /// Start and end of the aggregation interval, nanoseconds of `CLOCK_MONOTONIC`.
    pub start_ns: u64,
    pub end_ns: u64,
    pub intervals: Intervals,
    pub targets: Vec<TargetSnapshot>,
}
