//! Regions of a virtual address space: the "three regions" derived from a process's mappings,
//! their initial even split, and applying new ranges to existing regions.
use super::region::{AddrRange, PAGE_SIZE, Region, align_down, align_up};

/// The three ranges worth monitoring in an address space: everything except the two biggest
/// gaps between mappings (`__damon_va_three_regions()`). Normally the gaps are heap↔mmap area
/// and mmap area↔stack, which are huge and never accessed.
///
/// `mappings` must be sorted by start. `None` when there are fewer than two non-empty gaps: the
/// kernel then leaves the target without regions and retries at the next ops update.
pub fn three_regions(mappings: &[AddrRange]) -> Option<[AddrRange; 3]> {
    let first = mappings.first()?;
    let mut prev_end = first.end;
    let mut last_end = first.end;
    let (mut big, mut second) = (AddrRange::new(0, 0), AddrRange::new(0, 0));
    for m in &mappings[1..] {
        let gap = AddrRange::new(prev_end, m.start);
        // Strictly bigger: on ties the lower gap wins, as in the kernel.
        if gap.size() > big.size() {
            second = big;
            big = gap;
        } else if gap.size() > second.size() {
            second = gap;
        }
        prev_end = prev_end.max(m.end);
        last_end = last_end.max(m.end);
    }
    if big.is_empty() || second.is_empty() {
        return None;
    }
    let (low, high) = if big.start <= second.start {
        (big, second)
    } else {
        (second, big)
    };
    Some([
        AddrRange::new(align_up(first.start), align_up(low.start)),
        AddrRange::new(align_up(low.end), align_up(high.start)),
        AddrRange::new(align_up(high.end), align_up(last_end)),
    ])
}

/// `max(total / min_nr_regions, PAGE_SIZE)`: the size of the pieces of the initial split, and the
/// largest region merge may build (`sz_limit`).
pub fn region_size_limit(total: u64, min_nr_regions: u64) -> u64 {
    (total / min_nr_regions.max(1)).max(PAGE_SIZE)
}

/// The initial regions of a target (`__damon_va_init_regions()`): each range is cut into
/// `size / sz` equal, page-aligned pieces (the last piece takes the rest), where
/// `sz = max(total / min_nr_regions, PAGE_SIZE)`, so that the target starts with about
/// `min_nr_regions` regions. A range smaller than `sz` stays one region. Empty ranges are skipped.
pub fn initial_regions(ranges: &[AddrRange], min_nr_regions: u64) -> Vec<Region> {
    let total = ranges
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.size()));
    let sz = region_size_limit(total, min_nr_regions);
    let mut regions = Vec::new();
    for range in ranges.iter().filter(|r| !r.is_empty()) {
        let pieces = (range.size() / sz).max(1);
        let piece = align_down(range.size() / pieces);
        if piece == 0 {
            regions.push(Region::new(range.start, range.end));
            continue;
        }
        let mut start = range.start;
        for _ in 1..pieces {
            regions.push(Region::new(start, start + piece));
            start += piece;
        }
        regions.push(Region::new(start, range.end));
    }
    regions
}

/// Makes `regions` cover exactly `ranges` (`damon_set_regions()`), keeping what is known:
/// regions intersecting no range are dropped; a range no region intersects gets a fresh region;
/// otherwise the first and last intersecting regions are stretched or trimmed to the range
/// (keeping their counters) and holes between intersecting regions get fresh regions.
///
/// `regions` and `ranges` must be sorted and non-overlapping; range bounds are rounded outward to
/// pages. Returns whether any region bound changed.
pub fn apply_ranges(regions: &mut Vec<Region>, ranges: &[AddrRange]) -> bool {
    let old = std::mem::take(regions);
    let mut next = 0usize;
    for range in ranges.iter().filter(|r| !r.is_empty()) {
        let aligned = range.page_aligned_outward();
        let run_start = regions.len();
        // Regions starting before the range's end and not consumed by an earlier range intersect
        // this one: any other would intersect no range at all and is dropped.
        while next < old.len() && old[next].start < range.end {
            if old[next].range().intersects(range) {
                regions.push(old[next]);
            }
            next += 1;
        }
        if regions.len() == run_start {
            regions.push(Region::new(aligned.start, aligned.end));
            continue;
        }
        regions[run_start].start = aligned.start;
        if let Some(last) = regions.last_mut() {
            last.end = aligned.end;
        }
        fill_holes(regions, run_start);
    }
    old.len() != regions.len()
        || old
            .iter()
            .zip(regions.iter())
            .any(|(a, b)| (a.start, a.end) != (b.start, b.end))
}

/// Inserts fresh regions into the gaps between `regions[from..]`.
fn fill_holes(regions: &mut Vec<Region>, from: usize) {
    let run: Vec<Region> = regions.drain(from..).collect();
    let mut prev_end: Option<u64> = None;
    for r in run {
        if let Some(end) = prev_end.filter(|&end| end < r.start) {
            regions.push(Region::new(end, r.start));
        }
        prev_end = Some(r.end);
        regions.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE;
    const MIB: u64 = 1 << 20;

    fn r(start: u64, end: u64) -> AddrRange {
        AddrRange::new(start, end)
    }

    fn bounds(regions: &[Region]) -> Vec<(u64, u64)> {
        regions.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn three_regions_cut_the_two_biggest_gaps() {
        let maps = [
            r(0x40_0000, 0x40_1000),     // text
            r(0x40_2000, 0x40_4000),     // 1 page gap
            r(0x100_0000, 0x110_0000),   // heap, after a big gap
            r(0x7f00_0000, 0x7f10_0000), // mmap area, after the biggest gap
            r(0x7f10_0000, 0x7f20_0000), // adjacent: empty gap
            r(0x7fff_0000, 0x7fff_8000), // stack, after the second biggest gap
        ];
        let three = three_regions(&maps).expect("two gaps");
        assert_eq!(
            three,
            [
                r(0x40_0000, 0x110_0000),
                r(0x7f00_0000, 0x7f20_0000),
                r(0x7fff_0000, 0x7fff_8000)
            ]
        );
    }

    #[test]
    fn three_regions_need_two_gaps() {
        assert_eq!(three_regions(&[]), None);
        assert_eq!(three_regions(&[r(0, 0x1000)]), None);
        assert_eq!(three_regions(&[r(0, 0x1000), r(0x5000, 0x6000)]), None);
        // Adjacent mappings make empty gaps, which do not count.
        assert_eq!(
            three_regions(&[r(0, 0x1000), r(0x1000, 0x2000), r(0x9000, 0xa000)]),
            None
        );
        assert!(three_regions(&[r(0, 0x1000), r(0x2000, 0x3000), r(0x9000, 0xa000)]).is_some());
    }

    #[test]
    fn three_regions_round_up_to_pages_and_ties_keep_the_lower_gap() {
        let maps = [
            r(0x1000, 0x1800),
            r(0x4000, 0x5000),
            r(0x8000, 0x9000),
            r(0xc000, 0xc100),
        ];
        // Three gaps of 0x2800, 0x3000, 0x3000: the two 0x3000 ones win.
        let three = three_regions(&maps).expect("gaps");
        assert_eq!(
            three,
            [r(0x1000, 0x5000), r(0x8000, 0x9000), r(0xc000, 0xd000)]
        );
        // Three equal gaps: the two lowest win.
        let maps = [
            r(0x1000, 0x2000),
            r(0x5000, 0x6000),
            r(0x9000, 0xa000),
            r(0xd000, 0xd100),
        ];
        assert_eq!(
            three_regions(&maps),
            Some([r(0x1000, 0x2000), r(0x5000, 0x6000), r(0x9000, 0xe000)])
        );
    }

    #[test]
    fn initial_split_reaches_min_nr_regions() {
        let ranges = [
            r(0, 10 * MIB),
            r(20 * MIB, 20 * MIB + 3 * P),
            r(30 * MIB, 40 * MIB),
        ];
        let regions = initial_regions(&ranges, 10);
        // sz = (20 MiB + 3 pages) / 10; each 10 MiB range gets 4 pieces, the tiny one stays.
        assert_eq!(regions.len(), 4 + 1 + 4);
        for w in regions.windows(2) {
            assert!(w[0].end <= w[1].start);
        }
        let first: Vec<u64> = regions[..4].iter().map(Region::size).collect();
        assert_eq!(
            first,
            vec![2560 * 1024, 2560 * 1024, 2560 * 1024, 2560 * 1024]
        );
        assert_eq!(regions[4].range(), ranges[1]);
        assert!(regions.iter().all(|r| r.start % P == 0 && r.end % P == 0));

        // Uneven: 11 pages into 3 pieces of 3 pages, the last takes 5.
        let regions = initial_regions(&[r(0, 11 * P), r(20 * P, 21 * P), r(30 * P, 31 * P)], 4);
        assert_eq!(
            bounds(&regions),
            vec![
                (0, 3 * P),
                (3 * P, 6 * P),
                (6 * P, 11 * P),
                (20 * P, 21 * P),
                (30 * P, 31 * P)
            ]
        );
    }

    fn counted(start: u64, end: u64, nr: u32) -> Region {
        Region {
            nr_accesses: nr,
            last_nr_accesses: nr,
            nr_accesses_bp: nr * 10_000,
            age: nr,
            ..Region::new(start, end)
        }
    }

    #[test]
    fn apply_ranges_unmap_middle_part() {
        let mut regions = vec![
            counted(0, 4 * P, 1),
            counted(4 * P, 8 * P, 2),
            counted(8 * P, 12 * P, 3),
        ];
        // Pages 5..7 unmapped: the region spanning the new gap is trimmed to the left range and
        // the first region of the right range is stretched down to it; all keep their counters.
        let changed = apply_ranges(&mut regions, &[r(0, 5 * P), r(7 * P, 12 * P)]);
        assert!(changed);
        assert_eq!(
            bounds(&regions),
            vec![(0, 4 * P), (4 * P, 5 * P), (7 * P, 12 * P)]
        );
        let nr: Vec<u32> = regions.iter().map(|r| r.nr_accesses).collect();
        assert_eq!(nr, vec![1, 2, 3]);
    }

    #[test]
    fn apply_ranges_fills_holes_with_fresh_regions() {
        let mut regions = vec![
            counted(0, 4 * P, 1),
            counted(4 * P, 6 * P, 2),
            counted(8 * P, 12 * P, 3),
        ];
        // The gap 6..8 got mapped: one range now covers all.
        assert!(apply_ranges(&mut regions, &[r(0, 12 * P)]));
        assert_eq!(
            bounds(&regions),
            vec![(0, 4 * P), (4 * P, 6 * P), (6 * P, 8 * P), (8 * P, 12 * P)]
        );
        let nr: Vec<u32> = regions.iter().map(|r| r.nr_accesses).collect();
        assert_eq!(nr, vec![1, 2, 0, 3]);
        assert_eq!(regions[2], Region::new(6 * P, 8 * P));
    }

    #[test]
    fn apply_ranges_grow_and_new_mapping() {
        let mut regions = vec![counted(0, 4 * P, 1), counted(10 * P, 12 * P, 2)];
        // The first range grows (heap), a new mapping appears between, the second shrinks.
        let ranges = [r(0, 6 * P), r(7 * P, 8 * P), r(10 * P, 11 * P)];
        assert!(apply_ranges(&mut regions, &ranges));
        assert_eq!(
            bounds(&regions),
            vec![(0, 6 * P), (7 * P, 8 * P), (10 * P, 11 * P)]
        );
        let nr: Vec<u32> = regions.iter().map(|r| r.nr_accesses).collect();
        assert_eq!(nr, vec![1, 0, 2]);
        // Applying the same ranges again changes nothing.
        assert!(!apply_ranges(&mut regions, &ranges));
    }

    #[test]
    fn apply_ranges_drops_regions_outside_and_rounds() {
        let mut regions = vec![
            counted(0, P, 1),
            counted(5 * P, 6 * P, 2),
            counted(9 * P, 10 * P, 3),
        ];
        apply_ranges(&mut regions, &[r(5 * P + 10, 6 * P + 10)]);
        assert_eq!(bounds(&regions), vec![(5 * P, 7 * P)]);
        assert_eq!(regions[0].nr_accesses, 2);
        apply_ranges(&mut regions, &[]);
        assert!(regions.is_empty());
    }
}
