//! What a `stat` scheme reports for one snapshot of a running context's regions.
//!
//! The kernel walks the regions a scheme's access pattern matches (`__damos_valid_target()`:
//! every bound inclusive, `nr_accesses` taken as `nr_accesses_bp / 10000`) and reports them
//! in `tried_regions/`. `stats/` here describe the same latest snapshot; the kernel's are
//! cumulative over every apply interval, which needs the monitor to apply schemes itself.

use super::backend::{AccessPatternConfig, LiveRegion};
use super::scheme::{Stats, TriedRegion, TriedRegions};

/// `nr_accesses` of a region as DAMOS sees it.
fn nr_accesses(r: &LiveRegion) -> u32 {
    r.nr_accesses_bp / 10_000
}

/// Whether the access pattern matches a region (the kernel's `__damos_valid_target()`).
pub fn matches(pattern: &AccessPatternConfig, r: &LiveRegion) -> bool {
    let sz = r.end.saturating_sub(r.start);
    pattern.sz.contains(sz)
        && pattern.nr_accesses.contains(u64::from(nr_accesses(r)))
        && pattern.age.contains(u64::from(r.age))
}

/// The regions of all targets, in target then address order, that `pattern` matches.
pub fn tried_regions(pattern: &AccessPatternConfig, targets: &[Vec<LiveRegion>]) -> TriedRegions {
    let regions: Vec<TriedRegion> = targets
        .iter()
        .flatten()
        .filter(|r| matches(pattern, r))
        .map(|r| TriedRegion {
            start: r.start,
            end: r.end,
            nr_accesses: nr_accesses(r),
            age: r.age,
            // Bytes that passed operations-layer filters; with none, the kernel's stat action
            // counts nothing here.
            sz_filter_passed: 0,
        })
        .collect();
    TriedRegions {
        total_bytes: regions.iter().map(|r| r.end.saturating_sub(r.start)).sum(),
        regions,
    }
}

/// Stats of a `stat` scheme over one snapshot. `stat` applies nothing, so, as in the
/// kernel's vaddr `damos_va_stat()`, `nr_applied`/`sz_applied` stay 0 and with no
/// operations-layer filter `sz_ops_filter_passed` is 0 too.
pub fn stat_stats(pattern: &AccessPatternConfig, targets: &[Vec<LiveRegion>]) -> Stats {
    let tried = tried_regions(pattern, targets);
    Stats {
        nr_tried: tried.regions.len() as u64,
        sz_tried: tried.total_bytes,
        ..Stats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::backend::Range;
    use crate::admin::tests::region;

    fn pattern(sz: (u64, u64), nr: (u64, u64), age: (u64, u64)) -> AccessPatternConfig {
        AccessPatternConfig {
            sz: Range {
                min: sz.0,
                max: sz.1,
            },
            nr_accesses: Range {
                min: nr.0,
                max: nr.1,
            },
            age: Range {
                min: age.0,
                max: age.1,
            },
        }
    }

    #[test]
    fn bounds_are_inclusive() {
        let p = pattern((4096, 8192), (2, 3), (1, 1));
        assert!(matches(&p, &region(0, 4096, 2, 1)));
        assert!(matches(&p, &region(0, 8192, 3, 1)));
        assert!(!matches(&p, &region(0, 4095, 2, 1)));
        assert!(!matches(&p, &region(0, 8193, 2, 1)));
        assert!(!matches(&p, &region(0, 4096, 1, 1)));
        assert!(!matches(&p, &region(0, 4096, 4, 1)));
        assert!(!matches(&p, &region(0, 4096, 2, 0)));
        assert!(!matches(&p, &region(0, 4096, 2, 2)));
    }

    #[test]
    fn nr_accesses_comes_from_the_moving_average() {
        let p = pattern((0, u64::MAX), (5, 5), (0, u64::MAX));
        let mut r = region(0, 4096, 0, 0);
        r.nr_accesses_bp = 59_999;
        assert!(matches(&p, &r));
        let tried = tried_regions(&p, &[vec![r]]);
        assert_eq!(tried.regions[0].nr_accesses, 5);
    }

    #[test]
    fn snapshot_over_targets() {
        let all = pattern((0, u64::MAX), (0, u64::MAX), (0, u64::MAX));
        let hot = pattern((0, u64::MAX), (10, u64::MAX), (0, u64::MAX));
        let targets = vec![
            vec![region(0x1000, 0x3000, 0, 4), region(0x3000, 0x4000, 20, 1)],
            vec![region(0x10000, 0x20000, 15, 2)],
        ];
        let tried = tried_regions(&all, &targets);
        assert_eq!(tried.regions.len(), 3);
        assert_eq!(tried.total_bytes, 0x2000 + 0x1000 + 0x10000);
        let tried = tried_regions(&hot, &targets);
        assert_eq!(
            tried.regions.iter().map(|r| r.start).collect::<Vec<_>>(),
            vec![0x3000, 0x10000]
        );
        let stats = stat_stats(&hot, &targets);
        assert_eq!((stats.nr_tried, stats.sz_tried), (2, 0x11000));
        assert_eq!((stats.nr_applied, stats.sz_applied), (0, 0));
    }
}
