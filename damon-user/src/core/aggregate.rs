//! Per-sample counting and the per-aggregation region adaptation: merge (with ageing and the
//! threshold escalation), reset and split. Pure functions over region vectors, one vector per
//! target, so they can be tested and benchmarked without a context.
use rand::Rng;

use super::region::{PAGE_SIZE, Region, align_down};

/// Basis points per access: `nr_accesses_bp` is `nr_accesses * BP`.
const BP: u64 = 10_000;

fn clamp_u32(value: u64) -> u32 {
    value.min(u32::MAX as u64) as u32
}

/// Records one sample of `r` (the kernel's `damon_update_region_access_rate()`):
/// `bp = bp - last * 10000 / max + (accessed ? 10000 : 0)`, a moving sum over the last
/// `max_nr_accesses` samples seeded with the previous aggregation's result.
///
/// Saturating where the kernel's `unsigned int` would wrap, should the sum ever hold less than
/// `last_nr_accesses` implies (e.g. counters set outside an aggregation interval).
pub fn update_access_rate(r: &mut Region, accessed: bool, max_nr_accesses: u32) {
    let window = u64::from(max_nr_accesses.max(1));
    let drop = u64::from(r.last_nr_accesses) * BP / window;
    let add = if accessed { BP } else { 0 };
    r.nr_accesses_bp = clamp_u32(u64::from(r.nr_accesses_bp).saturating_sub(drop) + add);
    if accessed {
        r.nr_accesses = r.nr_accesses.saturating_add(1);
    }
}

/// Ages `r` for the aggregation that just ended: reset when the access rate changed by more
/// than `thres` or went from zero to non-zero (or back), else one interval older.
fn age_region(r: &mut Region, thres: u32) {
    let changed = r.nr_accesses.abs_diff(r.last_nr_accesses) > thres
        || (r.nr_accesses == 0) != (r.last_nr_accesses == 0);
    r.age = if changed { 0 } else { r.age.saturating_add(1) };
}

/// Size-weighted mean of two values, integer division as in `damon_merge_two_regions()`.
/// 128-bit because a size (up to 2^57) times a counter (up to 2^32) overflows 64 bits.
fn weighted_mean(a: u32, sz_a: u64, b: u32, sz_b: u64) -> u32 {
    let sum = u128::from(a) * u128::from(sz_a) + u128::from(b) * u128::from(sz_b);
    let total = u128::from(sz_a) + u128::from(sz_b);
    if total == 0 {
        return a;
    }
    (sum / total).min(u128::from(u32::MAX)) as u32
}

/// Merges `r` into its left neighbour `l`, which keeps its `last_nr_accesses`.
fn merge_two(l: &mut Region, r: &Region) {
    let (sz_l, sz_r) = (l.size(), r.size());
    l.nr_accesses = weighted_mean(l.nr_accesses, sz_l, r.nr_accesses, sz_r);
    l.nr_accesses_bp = clamp_u32(u64::from(l.nr_accesses) * BP);
    l.age = weighted_mean(l.age, sz_l, r.age, sz_r);
    l.nr_unmeasured = weighted_mean(l.nr_unmeasured, sz_l, r.nr_unmeasured, sz_r);
    l.end = r.end;
}

/// One merge pass over one target's regions (`damon_merge_regions_of()`), ageing each region
/// first when `age` is set. Returns whether any two regions merged.
pub fn merge_regions_of(regions: &mut Vec<Region>, thres: u32, sz_limit: u64, age: bool) -> bool {
    let mut kept = 0usize;
    for i in 0..regions.len() {
        let mut r = regions[i];
        if age {
            age_region(&mut r, thres);
        }
        if kept > 0 {
            let prev = &mut regions[kept - 1];
            if prev.end == r.start
                && prev.nr_accesses.abs_diff(r.nr_accesses) <= thres
                && prev.size().saturating_add(r.size()) <= sz_limit
            {
                merge_two(prev, &r);
                continue;
            }
        }
        regions[kept] = r;
        kept += 1;
    }
    let merged = kept < regions.len();
    regions.truncate(kept);
    merged
}

/// The next threshold when a merge pass left too many regions: doubling, capped at `max_thres`.
pub fn next_merge_threshold(thres: u32, max_thres: u32) -> u32 {
    if thres < max_thres / 2 {
        (thres * 2).max(1)
    } else {
        max_thres
    }
}

/// Merges the regions of all targets (`kdamond_merge_regions()` as fixed in 2026): a first
/// pass with `thres` that also ages the regions, then further passes with an escalating
/// threshold while the context has more than `max_nr_regions` regions and the threshold has not
/// reached `max_thres`. Returns, per target, whether its regions changed.
pub fn merge_regions<T: AsMut<Vec<Region>>>(
    targets: &mut [T],
    thres: u32,
    max_thres: u32,
    sz_limit: u64,
    max_nr_regions: u64,
) -> Vec<bool> {
    let mut changed = vec![false; targets.len()];
    let mut thres = thres.min(max_thres);
    let mut first = true;
    loop {
        let mut nr_regions = 0u64;
        for (t, changed) in targets.iter_mut().zip(changed.iter_mut()) {
            let regions = t.as_mut();
            *changed |= merge_regions_of(regions, thres, sz_limit, first);
            nr_regions += regions.len() as u64;
        }
        first = false;
        if nr_regions <= max_nr_regions || thres >= max_thres {
            return changed;
        }
        thres = next_merge_threshold(thres, max_thres);
    }
}

/// Ends an aggregation interval for one target (`kdamond_reset_aggregated()`): the result moves
/// to `last_nr_accesses` and counting restarts.
///
/// `nr_accesses_bp` is re-anchored to `last_nr_accesses * 10000`, the value the moving sum has at
/// an aggregation's end when `max_nr_accesses` divides 10 000; re-anchoring keeps that true for
/// other ratios instead of letting the rounding remainder of every interval pile up.
pub fn reset_aggregated(regions: &mut [Region]) {
    for r in regions {
        r.last_nr_accesses = r.nr_accesses;
        r.nr_accesses = 0;
        r.nr_accesses_bp = clamp_u32(u64::from(r.last_nr_accesses) * BP);
        r.nr_unmeasured = 0;
    }
}

/// How many pieces split should cut each region into, or `None` to skip splitting
/// (`kdamond_split_regions()`): none above `max_nr_regions / 2`; three when the count did not
/// change since the last split and is below a third of the maximum, because the middle of a
/// region may behave differently from both ends; two otherwise.
pub fn split_pieces(nr_regions: u64, last_nr_regions: u64, max_nr_regions: u64) -> Option<usize> {
    if nr_regions > max_nr_regions / 2 {
        None
    } else if nr_regions == last_nr_regions && nr_regions < max_nr_regions / 3 {
        Some(3)
    } else {
        Some(2)
    }
}

/// Splits each region of one target into up to `nr_subs` pieces at random points
/// (`damon_split_regions_of()`). A cut falls at a random tenth (1..=9) of the piece being cut,
/// rounded down to a page; a 3-way split cuts the left piece again. The pieces copy the
/// counters. Regions of two pages or less are left alone. `scratch` is reused storage.
/// Returns whether any region was split.
pub fn split_regions_of(
    regions: &mut Vec<Region>,
    nr_subs: usize,
    rng: &mut impl Rng,
    scratch: &mut Vec<Region>,
) -> bool {
    scratch.clear();
    scratch.reserve(regions.len() * nr_subs);
    let mut any = false;
    for r in regions.iter() {
        // Cut points, right to left: each cut lands inside the piece left of the previous one.
        let mut cuts = [0u64; 2];
        let mut nr_cuts = 0;
        let mut sz = r.size();
        for _ in 1..nr_subs.min(cuts.len() + 1) {
            if sz <= 2 * PAGE_SIZE {
                break;
            }
            let tenths = rng.random_range(1..10u64);
            let sz_sub = align_down((u128::from(tenths) * u128::from(sz) / 10) as u64);
            if sz_sub == 0 || sz_sub >= sz {
                continue;
            }
            cuts[nr_cuts] = r.start + sz_sub;
            nr_cuts += 1;
            sz = sz_sub;
        }
        let mut start = r.start;
        for &cut in cuts[..nr_cuts].iter().rev() {
            scratch.push(Region {
                start,
                end: cut,
                ..*r
            });
            start = cut;
        }
        scratch.push(Region { start, ..*r });
        any |= nr_cuts > 0;
    }
    std::mem::swap(regions, scratch);
    any
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    const P: u64 = PAGE_SIZE;

    fn region(start_page: u64, end_page: u64, nr: u32, last: u32, age: u32) -> Region {
        Region {
            nr_accesses: nr,
            nr_accesses_bp: nr * 10_000,
            last_nr_accesses: last,
            age,
            ..Region::new(start_page * P, end_page * P)
        }
    }

    #[test]
    fn bp_formula_is_a_moving_sum() {
        // max 20: each sample drops last*10000/20 = 500*last.
        let mut r = region(0, 1, 0, 10, 0);
        r.nr_accesses_bp = 100_000;
        update_access_rate(&mut r, true, 20);
        assert_eq!(
            (r.nr_accesses, r.nr_accesses_bp),
            (1, 100_000 - 5_000 + 10_000)
        );
        update_access_rate(&mut r, false, 20);
        assert_eq!((r.nr_accesses, r.nr_accesses_bp), (1, 105_000 - 5_000));
        // Never wraps below zero.
        let mut r = region(0, 1, 0, 20, 0);
        r.nr_accesses_bp = 0;
        update_access_rate(&mut r, false, 20);
        assert_eq!(r.nr_accesses_bp, 0);
    }

    #[test]
    fn bp_equals_nr_accesses_at_aggregation_end() {
        for (max, pattern) in [(20u32, 0b1011u32), (30, 0b110), (7, 0b1)] {
            let mut r = region(0, 1, 0, 0, 0);
            for interval in 0..5 {
                for sample in 0..max {
                    let accessed = (pattern >> ((sample + interval) % 4)) & 1 == 1;
                    update_access_rate(&mut r, accessed, max);
                }
                assert!(r.nr_accesses_bp >= r.nr_accesses * 10_000);
                if 10_000 % max == 0 {
                    assert_eq!(r.nr_accesses_bp, r.nr_accesses * 10_000, "max {max}");
                }
                reset_aggregated(std::slice::from_mut(&mut r));
                assert_eq!(r.nr_accesses_bp, r.last_nr_accesses * 10_000);
                assert_eq!(r.nr_accesses, 0);
            }
        }
    }

    #[test]
    fn ageing_follows_rate_changes() {
        let mut regions = vec![
            region(0, 1, 5, 4, 3), // within thres: older
            region(2, 3, 9, 4, 3), // changed by 5 > 2: reset
            region(4, 5, 1, 0, 3), // zero to non-zero: reset
            region(6, 7, 0, 0, 3), // idle stays idle: older
            region(8, 9, 0, 2, 3), // non-zero to zero: reset
        ];
        assert!(!merge_regions_of(&mut regions, 2, u64::MAX, true));
        let ages: Vec<u32> = regions.iter().map(|r| r.age).collect();
        assert_eq!(ages, vec![4, 0, 0, 4, 0]);
    }

    #[test]
    fn merge_takes_size_weighted_means() {
        let mut regions = vec![region(0, 1, 10, 7, 4), region(1, 4, 12, 3, 0)];
        assert!(merge_regions_of(&mut regions, 2, u64::MAX, false));
        assert_eq!(regions.len(), 1);
        let m = regions[0];
        assert_eq!((m.start, m.end), (0, 4 * P));
        assert_eq!(m.nr_accesses, (10 + 12 * 3) / 4);
        assert_eq!(m.nr_accesses_bp, m.nr_accesses * 10_000);
        assert_eq!(m.age, 4 / 4);
        assert_eq!(m.last_nr_accesses, 7, "left one's last_nr_accesses");
    }

    #[test]
    fn merge_respects_threshold_adjacency_and_size_limit() {
        let mut regions = vec![
            region(0, 1, 0, 0, 0),
            region(1, 2, 3, 0, 0), // differs by 3 > 2
            region(3, 4, 3, 0, 0), // not adjacent
            region(4, 5, 4, 0, 0),
            region(5, 6, 5, 0, 0), // would exceed 2 pages
        ];
        merge_regions_of(&mut regions, 2, 2 * P, false);
        let bounds: Vec<(u64, u64)> = regions.iter().map(|r| (r.start / P, r.end / P)).collect();
        assert_eq!(bounds, vec![(0, 1), (1, 2), (3, 5), (5, 6)]);
    }

    #[test]
    fn merge_threshold_escalates_until_max() {
        let mut seq = vec![2];
        while *seq.last().unwrap() != 20 {
            seq.push(next_merge_threshold(*seq.last().unwrap(), 20));
        }
        assert_eq!(seq, vec![2, 4, 8, 16, 20]);
        assert_eq!(next_merge_threshold(0, 20), 1);
        assert_eq!(next_merge_threshold(0, 1), 1);
    }

    #[test]
    fn merge_escalates_only_while_too_many_regions_and_ages_once() {
        // Rates 0, 5, 10, 15, 20 alternate: thres 2 merges nothing, 4 nothing, 8 pairs...
        let rates = [0u32, 5, 10, 15, 20, 15, 10, 5];
        let build = || -> Vec<Vec<Region>> {
            vec![
                rates
                    .iter()
                    .enumerate()
                    .map(|(i, &nr)| region(i as u64, i as u64 + 1, nr, nr, 1))
                    .collect(),
            ]
        };
        let mut targets = build();
        merge_regions(&mut targets, 2, 20, u64::MAX, 8);
        assert_eq!(targets[0].len(), 8, "already within max_nr_regions");

        let mut targets = build();
        let changed = merge_regions(&mut targets, 2, 20, u64::MAX, 3);
        assert_eq!(changed, vec![true]);
        assert!(targets[0].len() <= 3, "{}", targets[0].len());
        // Unchanged rates: aged exactly once even though several passes ran.
        assert!(targets[0].iter().all(|r| r.age == 2), "{:?}", targets[0]);

        // Sizes block merging: stop at max_thres even above max_nr_regions.
        let mut targets = build();
        merge_regions(&mut targets, 2, 20, P, 3);
        assert_eq!(targets[0].len(), 8);
    }

    #[test]
    fn split_piece_rule() {
        assert_eq!(split_pieces(501, 10, 1000), None);
        assert_eq!(split_pieces(500, 10, 1000), Some(2));
        assert_eq!(split_pieces(300, 300, 1000), Some(3));
        assert_eq!(split_pieces(333, 333, 1000), Some(2));
        assert_eq!(split_pieces(332, 332, 1000), Some(3));
    }

    #[test]
    fn split_cuts_pages_and_copies_counters() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut scratch = Vec::new();
        let original = vec![
            region(0, 100, 7, 3, 5),
            region(200, 202, 1, 1, 1), // two pages: never split
        ];
        for nr_subs in [2usize, 3] {
            let mut regions = original.clone();
            assert!(split_regions_of(
                &mut regions,
                nr_subs,
                &mut rng,
                &mut scratch
            ));
            assert_eq!(regions.len(), nr_subs + 1, "{regions:?}");
            assert_eq!(regions[0].start, 0);
            assert_eq!(regions[nr_subs - 1].end, 100 * P);
            for w in regions.windows(2) {
                assert!(w[0].start < w[0].end && w[0].end <= w[1].start);
            }
            for r in &regions[..nr_subs] {
                assert_eq!(r.start % P, 0);
                assert_eq!(r.end % P, 0);
                assert_eq!(
                    (r.nr_accesses, r.nr_accesses_bp, r.last_nr_accesses, r.age),
                    (7, 70_000, 3, 5)
                );
            }
            assert_eq!(regions[nr_subs], original[1]);
        }
    }

    #[test]
    fn three_way_split_cuts_the_left_piece_again() {
        // A 3-way split of [0, 100 pages): first cut c1 in 10..=90 pages, second inside [0, c1).
        let mut rng = SmallRng::seed_from_u64(7);
        let mut scratch = Vec::new();
        for _ in 0..50 {
            let mut regions = vec![region(0, 100, 0, 0, 0)];
            split_regions_of(&mut regions, 3, &mut rng, &mut scratch);
            assert_eq!(regions.len(), 3);
            let c1 = regions[1].end / P;
            let c2 = regions[0].end / P;
            assert!((10..=90).contains(&c1), "{c1}");
            assert!(c2 >= 1 && c2 * 10 <= c1 * 9, "{c2} {c1}");
        }
    }
}
