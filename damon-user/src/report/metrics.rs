//! DAMON's derived quantities ("What DAMON reports" in the algorithm reference).
use crate::core::Intervals;

/// `nr_accesses` as a percentage of the samples in an aggregation, `aggr / sample`; computed
/// in floating point as damo does, so 3 of 20 samples is 15%, not 15.something truncated.
pub fn access_percent(nr_accesses: u32, intervals: &Intervals) -> f64 {
    let max = intervals.aggr_us as f64 / intervals.sample_us.max(1) as f64;
    nr_accesses as f64 * 100.0 / max
}

/// Access frequency: `nr_accesses` per second of aggregation.
pub fn access_hz(nr_accesses: u32, intervals: &Intervals) -> f64 {
    nr_accesses as f64 * 1e6 / intervals.aggr_us.max(1) as f64
}

/// How long the region has kept its access rate: `age` aggregation intervals.
pub fn age_us(age: u32, intervals: &Intervals) -> u64 {
    u64::from(age).saturating_mul(intervals.aggr_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Intervals = Intervals {
        sample_us: 5_000,
        aggr_us: 100_000,
        update_us: 1_000_000,
        goal: crate::core::IntervalsGoal::OFF,
    };

    #[test]
    fn derived_quantities() {
        assert_eq!(access_percent(20, &I), 100.0);
        assert_eq!(access_percent(3, &I), 15.0);
        assert_eq!(access_hz(3, &I), 30.0);
        assert_eq!(age_us(12, &I), 1_200_000);
    }
}
