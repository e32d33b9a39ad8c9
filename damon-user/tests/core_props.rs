//! Property tests: for random access patterns and attributes, DAMON's region invariants hold
//! after every aggregation and every sample.
use damon_user::core::Pid;
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::vaddr::{apply_ranges, three_regions};
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, MonitorContext, OpsId, PAGE_SIZE, Region, TargetSpec,
};
use proptest::prelude::*;

const P: u64 = PAGE_SIZE;
const HEAP: u64 = 0x100_0000;
const MMAP: u64 = 0x7f00_0000_0000;

/// A process: text, heap, mmap area, stack, with hot areas in the heap and the mmap area.
#[derive(Clone, Debug)]
struct Process {
    heap_pages: u64,
    mmap_pages: u64,
    /// (in mmap area?, first page, pages, probability)
    hot: Vec<(bool, u64, u64, f64)>,
}

impl Process {
    fn mappings(&self) -> Vec<AddrRange> {
        vec![
            AddrRange::new(0x40_0000, 0x40_0000 + 16 * P),
            AddrRange::new(HEAP, HEAP + self.heap_pages * P),
            AddrRange::new(MMAP, MMAP + self.mmap_pages * P),
            AddrRange::new(0x7ffd_0000_0000, 0x7ffd_0000_0000 + 33 * P),
        ]
    }

    fn hot_areas(&self) -> Vec<HotArea> {
        let mut areas: Vec<HotArea> = Vec::new();
        for &(in_mmap, first, pages, p) in &self.hot {
            let (base, limit) = if in_mmap {
                (MMAP, self.mmap_pages)
            } else {
                (HEAP, self.heap_pages)
            };
            let first = first % limit;
            let end = (first + pages).min(limit);
            areas.push(HotArea::new(base + first * P, base + end * P, p));
        }
        // The simulation wants them disjoint: drop any overlapping an earlier one.
        let mut disjoint: Vec<HotArea> = Vec::new();
        for a in areas {
            if disjoint.iter().all(|d| !d.range.intersects(&a.range)) {
                disjoint.push(a);
            }
        }
        disjoint
    }
}

fn process() -> impl Strategy<Value = Process> {
    (
        64u64..8192,
        16u64..4096,
        prop::collection::vec((any::<bool>(), 0u64..8192, 1u64..2048, 0.0f64..=1.0), 0..8),
    )
        .prop_map(|(heap_pages, mmap_pages, hot)| Process {
            heap_pages,
            mmap_pages,
            hot,
        })
}

#[derive(Clone, Debug)]
struct Case {
    ops: OpsId,
    attrs: Attrs,
    processes: Vec<Process>,
    /// fvaddr: page ranges inside each heap, as sorted cut points.
    fixed_cuts: Vec<u64>,
    seed: u64,
    aggregations: usize,
}

impl Case {
    /// The ranges each target's regions must stay in.
    fn allowed(&self, idx: usize) -> Vec<AddrRange> {
        match self.ops {
            OpsId::Vaddr => three_regions(&self.processes[idx].mappings())
                .expect("the layout has two gaps")
                .to_vec(),
            OpsId::Fvaddr => self.fixed_ranges(idx),
            OpsId::Paddr => unreachable!("the strategy makes vaddr and fvaddr cases only"),
        }
    }

    /// Pairs of cut points make the ranges: [c0, c1), [c2, c3), ... clamped to the heap.
    fn fixed_ranges(&self, idx: usize) -> Vec<AddrRange> {
        let heap_pages = self.processes[idx].heap_pages;
        let mut cuts: Vec<u64> = self.fixed_cuts.iter().map(|c| c % heap_pages).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut ranges: Vec<AddrRange> = cuts
            .chunks_exact(2)
            .map(|c| AddrRange::new(HEAP + c[0] * P, HEAP + c[1] * P))
            .collect();
        if ranges.is_empty() {
            ranges.push(AddrRange::new(HEAP, HEAP + heap_pages * P));
        }
        ranges
    }

    /// Contiguous runs of monitored memory: merge cannot join regions across a gap.
    fn nr_runs(&self) -> u64 {
        match self.ops {
            OpsId::Vaddr => 3 * self.processes.len() as u64,
            OpsId::Fvaddr => (0..self.processes.len())
                .map(|i| self.fixed_ranges(i).len() as u64)
                .sum(),
            OpsId::Paddr => unreachable!("the strategy makes vaddr and fvaddr cases only"),
        }
    }

    fn spec(&self) -> ContextSpec {
        ContextSpec {
            ops: self.ops,
            attrs: self.attrs,
            targets: (0..self.processes.len())
                .map(|i| TargetSpec {
                    pid: Pid(i as i32 + 1),
                    ranges: if self.ops == OpsId::Fvaddr {
                        self.fixed_ranges(i)
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        }
    }
}

/// Random attributes for which the kernel's algorithm can keep `nr_regions <= max_nr_regions`:
/// after a merge at the highest threshold any two neighbours together exceed `sz_limit =
/// total / min_nr_regions`, so up to `2 * min + 1` regions per contiguous run can remain; a
/// smaller `max_nr_regions` is accepted by the kernel but not kept by it either.
fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(OpsId::Vaddr), Just(OpsId::Fvaddr)],
        prop::sample::select(vec![1_000u64, 5_000, 10_000]),
        1u64..=30,
        1u64..=100,
        3u64..=20,
        0u64..=200,
        prop::collection::vec(process(), 1..=2),
        prop::collection::vec(0u64..8192, 0..8),
        any::<u64>(),
        1usize..=15,
    )
        .prop_map(
            |(ops, sample_us, aggr_mult, update_mult, min, extra, processes, cuts, seed, aggrs)| {
                let mut case = Case {
                    ops,
                    attrs: Attrs {
                        sample_us,
                        aggr_us: sample_us * aggr_mult,
                        update_us: sample_us * update_mult,
                        min_nr_regions: min,
                        max_nr_regions: min,
                        intervals_goal: damon_user::core::IntervalsGoal::OFF,
                    },
                    processes,
                    fixed_cuts: cuts,
                    seed,
                    aggregations: aggrs,
                };
                case.attrs.max_nr_regions = 2 * min + 2 + case.nr_runs() + extra;
                case
            },
        )
}

fn check_regions(case: &Case, idx: usize, regions: &[Region], when: &str) {
    let allowed = case.allowed(idx);
    let max_nr_accesses = case.attrs.max_nr_accesses();
    let mut prev_end = 0;
    for r in regions {
        assert!(r.start < r.end, "{when}: empty {r:?}");
        assert!(
            prev_end <= r.start,
            "{when}: unsorted or overlapping at {r:?}"
        );
        assert_eq!(r.start % P, 0, "{when}: {r:?}");
        assert_eq!(r.end % P, 0, "{when}: {r:?}");
        assert!(
            allowed.iter().any(|a| a.start <= r.start && r.end <= a.end),
            "{when}: {r:?} outside {allowed:?}"
        );
        assert!(r.nr_accesses <= max_nr_accesses, "{when}: {r:?}");
        prev_end = r.end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn region_invariants_hold(case in case()) {
        let sim = SimMemory::new(case.seed);
        for (i, p) in case.processes.iter().enumerate() {
            let pid = i as i32 + 1;
            sim.add_process(pid, p.mappings());
            sim.set_hot_areas(pid, p.hot_areas());
        }
        let mut ops = sim.clone();
        let mut ctx = MonitorContext::new(0, case.spec(), case.seed, 0).expect("valid case");
        let max_nr_regions = case.attrs.max_nr_regions as usize;
        let mut aggregations = 0;
        while aggregations < case.aggregations {
            let snapshot = ctx.sample(&mut ops, 0).expect("sim");
            for idx in 0..case.processes.len() {
                let regions = ctx.regions(idx).expect("target");
                check_regions(&case, idx, regions, "after a sample");
            }
            prop_assert!(ctx.nr_regions() <= max_nr_regions, "live {}", ctx.nr_regions());
            let Some(snapshot) = snapshot else { continue };
            aggregations += 1;
            let mut total = 0;
            for (idx, t) in snapshot.targets.iter().enumerate() {
                let regions: Vec<Region> = t
                    .regions
                    .iter()
                    .map(|r| Region {
                        nr_accesses: r.nr_accesses,
                        age: r.age,
                        ..Region::new(r.start, r.end)
                    })
                    .collect();
                check_regions(&case, idx, &regions, "in a snapshot");
                prop_assert!(!regions.is_empty(), "target {idx} has regions");
                total += regions.len();
            }
            prop_assert!(total <= max_nr_regions, "reported {total} > {max_nr_regions}");
        }
    }

    /// Applying new ranges: the result covers exactly the ranges (rounded to pages), is sorted
    /// and page aligned, regions overlapping an old region keep its counters and the others
    /// are fresh.
    #[test]
    fn apply_ranges_covers_exactly_the_ranges(
        old_cuts in prop::collection::btree_set(0u64..512, 2..40),
        new_cuts in prop::collection::btree_set(0u64..512, 2..12),
    ) {
        let old_cuts: Vec<u64> = old_cuts.into_iter().collect();
        let mut regions: Vec<Region> = old_cuts
            .windows(2)
            .enumerate()
            .filter(|(i, _)| i % 3 != 2) // leave some holes
            .map(|(i, w)| Region {
                nr_accesses: i as u32 + 1,
                last_nr_accesses: i as u32 + 1,
                age: i as u32 + 1,
                ..Region::new(w[0] * P, w[1] * P)
            })
            .collect();
        let before = regions.clone();
        let new_cuts: Vec<u64> = new_cuts.into_iter().collect();
        let ranges: Vec<AddrRange> = new_cuts
            .chunks_exact(2)
            .map(|c| AddrRange::new(c[0] * P + 1, c[1] * P - 1))
            .collect();
        apply_ranges(&mut regions, &ranges);

        let mut covered: Vec<AddrRange> = Vec::new();
        for r in &regions {
            prop_assert!(r.start < r.end && r.start % P == 0 && r.end % P == 0);
            match covered.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                Some(last) => {
                    prop_assert!(last.end < r.start, "overlap at {r:?}");
                    covered.push(r.range());
                }
                None => covered.push(r.range()),
            }
        }
        let expected: Vec<AddrRange> = ranges.iter().map(AddrRange::page_aligned_outward).collect();
        prop_assert_eq!(covered, expected);
        // Every old region that intersects a new range survives exactly once (counters are
        // unique per old region), overlapping its old place; every other region is fresh.
        let mut survivors: Vec<u32> = Vec::new();
        for r in &regions {
            if r.nr_accesses == 0 {
                prop_assert_eq!((r.last_nr_accesses, r.age), (0, 0), "fresh {:?}", r);
                continue;
            }
            let old = before.iter().find(|b| b.nr_accesses == r.nr_accesses);
            prop_assert!(old.is_some_and(|o| o.range().intersects(&r.range())), "{:?}", r);
            prop_assert_eq!((r.last_nr_accesses, r.age), (r.nr_accesses, r.nr_accesses));
            survivors.push(r.nr_accesses);
        }
        let expected_survivors: Vec<u32> = before
            .iter()
            .filter(|b| ranges.iter().any(|range| b.range().intersects(range)))
            .map(|b| b.nr_accesses)
            .collect();
        prop_assert_eq!(survivors, expected_survivors);
    }
}
