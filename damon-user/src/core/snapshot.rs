//! What one aggregation of a context produces: DAMON's output.
use super::target::Pid;
use serde::{Deserialize, Serialize};

use super::region::AddrRange;
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

    /// Bytes of `range` that this region covers; 0 when they do not meet.
    pub fn overlap(&self, range: AddrRange) -> u64 {
        self.end
            .min(range.end)
            .saturating_sub(self.start.max(range.start))
    }
}

/// The size-weighted access rate of the bytes of `range` that `regions` cover: each covered
/// byte counts `nr_accesses / max_nr_accesses` of the region it is in, so the result is 0 (no
/// sample found an access) to 1 (every sample did). `None` when the regions cover no byte of
/// `range`: memory that was not monitored does not read as idle. A `max_nr_accesses` of 0
/// counts as 1.
///
/// `max_nr_accesses` is that of the snapshot's intervals ([`Intervals::max_nr_accesses`]).
pub fn weighted_rate(
    regions: &[RegionSnapshot],
    range: AddrRange,
    max_nr_accesses: u32,
) -> Option<f64> {
    let max = f64::from(max_nr_accesses.max(1));
    let (mut sum, mut bytes) = (0.0, 0u64);
    for r in regions {
        let overlap = r.overlap(range);
        sum += overlap as f64 * f64::from(r.nr_accesses) / max;
        bytes += overlap;
    }
    (bytes > 0).then(|| sum / bytes as f64)
}

/// The working set size as DAMON and damo count it: the bytes of the regions that were found
/// accessed at least once in the aggregation interval (`nr_accesses > 0`).
pub fn working_set_bytes(regions: &[RegionSnapshot]) -> u64 {
    regions
        .iter()
        .filter(|r| r.nr_accesses > 0)
        .map(RegionSnapshot::size)
        .sum()
}

/// The regions of one target at the end of an aggregation interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSnapshot {
    /// Index of the target in its context.
    pub target_idx: usize,
    /// The monitored process.
    pub pid: Pid,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, end: u64, nr_accesses: u32) -> RegionSnapshot {
        RegionSnapshot {
            start,
            end,
            nr_accesses,
            age: 0,
            nr_unmeasured: 0,
        }
    }

    #[test]
    fn overlap_counts_the_shared_bytes() {
        let r = region(100, 200, 0);
        assert_eq!(r.overlap(AddrRange::new(0, 1000)), 100);
        assert_eq!(r.overlap(AddrRange::new(150, 1000)), 50);
        assert_eq!(r.overlap(AddrRange::new(120, 130)), 10);
        assert_eq!(r.overlap(AddrRange::new(200, 300)), 0, "adjacent");
        assert_eq!(r.overlap(AddrRange::new(0, 100)), 0, "adjacent");
        assert_eq!(r.overlap(AddrRange::new(500, 400)), 0, "inverted");
    }

    #[test]
    fn weighted_rate_weighs_the_covered_bytes_by_region() {
        // 0..100 at 20/20, 100..400 at 5/20, 400..500 not accessed.
        let regions = [region(0, 100, 20), region(100, 400, 5), region(400, 500, 0)];
        let rate = |s, e| weighted_rate(&regions, AddrRange::new(s, e), 20);
        assert_eq!(rate(0, 100), Some(1.0));
        assert_eq!(rate(400, 500), Some(0.0));
        // (100 * 1 + 300 * 0.25 + 100 * 0) / 500
        assert_eq!(rate(0, 500), Some(0.35));
        // Only part of a region: (50 * 1 + 50 * 0.25) / 100
        assert_eq!(rate(50, 150), Some(0.625));
        // Bytes no region covers are left out, not counted idle: 450..500 and 500..1000.
        assert_eq!(rate(450, 1000), Some(0.0));
        assert_eq!(rate(50, 1000), rate(50, 500));
        assert_eq!(rate(500, 1000), None, "nothing covered");
        assert_eq!(rate(300, 300), None, "empty range");
        assert_eq!(weighted_rate(&[], AddrRange::new(0, 100), 20), None);
    }

    #[test]
    fn weighted_rate_with_a_zero_maximum_counts_it_as_one() {
        let regions = [region(0, 100, 1), region(100, 200, 0)];
        assert_eq!(
            weighted_rate(&regions, AddrRange::new(0, 200), 0),
            Some(0.5)
        );
    }

    #[test]
    fn working_set_is_the_accessed_regions_bytes() {
        let regions = [
            region(0, 4096, 3),
            region(4096, 12288, 0),
            region(12288, 16384, 1),
        ];
        assert_eq!(working_set_bytes(&regions), 8192);
        assert_eq!(working_set_bytes(&regions[1..2]), 0);
        assert_eq!(working_set_bytes(&[]), 0);
    }
}
