//! Rescaling region counters when a running context gets new attributes
//! (`damon_update_monitoring_results()`).
//!
//! `nr_accesses` counts samples per aggregation and `age` counts aggregations, so their meaning
//! depends on the intervals; a commit converts them so that the access rate and the age in time
//! stay what they were.
use super::attrs::Attrs;
use super::region::Region;

const BP: u64 = 10_000;

/// `(nr * 10000 / old_max) * new_max / 10000`: through basis points, as the kernel does, so the
/// result rounds the same way.
pub fn rescale_nr_accesses(nr: u32, old: &Attrs, new: &Attrs) -> u32 {
    let old_max = u64::from(old.max_nr_accesses().max(1));
    let new_max = u64::from(new.max_nr_accesses());
    let bp = u64::from(nr) * BP / old_max;
    (bp.saturating_mul(new_max) / BP).min(u64::from(u32::MAX)) as u32
}

/// `age * old_aggr / new_aggr`.
pub fn rescale_age(age: u32, old: &Attrs, new: &Attrs) -> u32 {
    let scaled = u128::from(age) * u128::from(old.aggr_us) / u128::from(new.aggr_us.max(1));
    scaled.min(u128::from(u32::MAX)) as u32
}

/// Converts one region's counters from `old` to `new` attributes. Mid-aggregation
/// (`aggregating`) the partial count of the interval is dropped and the previous interval's
/// result converted instead, as if the interval had just been reset.
pub fn rescale_region(r: &mut Region, old: &Attrs, new: &Attrs, aggregating: bool) {
    if aggregating {
        r.last_nr_accesses = rescale_nr_accesses(r.last_nr_accesses, old, new);
        r.nr_accesses_bp = bp_of(r.last_nr_accesses);
        r.nr_accesses = 0;
        r.nr_unmeasured = 0;
    } else {
        r.nr_accesses = rescale_nr_accesses(r.nr_accesses, old, new);
        r.nr_accesses_bp = bp_of(r.nr_accesses);
        r.nr_unmeasured = rescale_nr_accesses(r.nr_unmeasured, old, new);
    }
    r.age = rescale_age(r.age, old, new);
}

fn bp_of(nr: u32) -> u32 {
    (u64::from(nr) * BP).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(sample_us: u64, aggr_us: u64) -> Attrs {
        Attrs {
            sample_us,
            aggr_us,
            ..Attrs::default()
        }
    }

    #[test]
    fn nr_accesses_keep_their_rate() {
        let old = attrs(5_000, 100_000); // max 20
        let new = attrs(5_000, 200_000); // max 40
        assert_eq!(rescale_nr_accesses(10, &old, &new), 20);
        assert_eq!(rescale_nr_accesses(20, &new, &old), 10);
        // Rounds through basis points: 7/30 = 2333 bp, then 2333 * 20 / 10000 = 4.
        let thirty = attrs(10_000, 300_000);
        assert_eq!(rescale_nr_accesses(7, &thirty, &old), 4);
        assert_eq!(rescale_nr_accesses(0, &thirty, &old), 0);
    }

    #[test]
    fn age_keeps_its_time() {
        let old = attrs(5_000, 100_000);
        let new = attrs(5_000, 400_000);
        assert_eq!(rescale_age(10, &old, &new), 2);
        assert_eq!(rescale_age(3, &new, &old), 12);
    }

    #[test]
    fn mid_aggregation_converts_last_and_drops_partial_count() {
        let old = attrs(5_000, 100_000);
        let new = attrs(10_000, 100_000); // max 10
        let base = Region {
            nr_accesses: 6,
            nr_accesses_bp: 123_456,
            last_nr_accesses: 16,
            age: 5,
            ..Region::new(0, 4096)
        };
        let mut r = base;
        rescale_region(&mut r, &old, &new, true);
        assert_eq!(
            (r.nr_accesses, r.last_nr_accesses, r.nr_accesses_bp, r.age),
            (0, 8, 80_000, 5)
        );
        let mut r = base;
        rescale_region(&mut r, &old, &new, false);
        assert_eq!(
            (r.nr_accesses, r.last_nr_accesses, r.nr_accesses_bp, r.age),
            (3, 16, 30_000, 5)
        );
    }
}
