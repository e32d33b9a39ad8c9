//! Three regions on real and crafted mappings, and following mapping changes.
use damon_user::core::Pid;
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::vaddr::three_regions;
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, MonitorContext, OpsId, PAGE_SIZE, Region, TargetSpec,
    read_proc_maps,
};

const MIB: u64 = 1 << 20;

#[test]
fn three_regions_of_own_process_cut_the_two_biggest_gaps() {
    let maps = read_proc_maps(Pid(std::process::id() as i32)).expect("own maps");
    let three = three_regions(&maps).expect("a real process has heap/mmap/stack gaps");
    for w in three.windows(2) {
        assert!(w[0].start < w[0].end && w[0].end < w[1].start, "{three:?}");
    }
    for r in &three {
        assert_eq!(r.start % PAGE_SIZE, 0);
        assert_eq!(r.end % PAGE_SIZE, 0);
    }
    // Every mapping lies in one of the three regions.
    for m in &maps {
        assert!(
            three.iter().any(|r| r.start <= m.start && m.end <= r.end),
            "{m} outside {three:?}"
        );
    }
    // The two excluded gaps are at least as big as any other gap.
    let excluded = [
        AddrRange::new(three[0].end, three[1].start),
        AddrRange::new(three[1].end, three[2].start),
    ];
    let smaller = excluded[0].size().min(excluded[1].size());
    for w in maps.windows(2) {
        let gap = AddrRange::new(w[0].end, w[1].start);
        if !excluded.contains(&gap) {
            assert!(
                gap.size() <= smaller,
                "gap {gap} bigger than excluded {excluded:?}"
            );
        }
    }
    // Our stack is monitored.
    let local = 0u8;
    let stack_addr = &local as *const u8 as u64;
    assert!(three.iter().any(|r| r.contains(stack_addr)));
}

const TEXT: AddrRange = AddrRange {
    start: 0x40_0000,
    end: 0x50_0000,
};
const HEAP_START: u64 = 0x100_0000;
const MMAP_START: u64 = 0x7f00_0000_0000;
const STACK: AddrRange = AddrRange {
    start: 0x7ffd_0000_0000,
    end: 0x7ffd_0002_1000,
};

/// sample 5 ms, aggregation 100 ms (20 samples), update 1.05 s (210 samples): the update never
/// falls on an aggregation, so its effect can be seen alone.
fn attrs() -> Attrs {
    Attrs {
        update_us: 1_050_000,
        ..Attrs::default()
    }
}

fn run(ctx: &mut MonitorContext, ops: &mut SimMemory, samples: u64) {
    for _ in 0..samples {
        ctx.sample(ops, 0).expect("sim");
    }
}

/// Process 10 with `mappings`, every page accessed at every sample, monitored up to the sample
/// before the first ops update (sample 210): surviving regions then have last_nr_accesses 20
/// and a growing age, so fresh ones (0 and 0) stand out after the update.
fn all_hot_until_the_update(seed: u64, mappings: Vec<AddrRange>) -> (SimMemory, MonitorContext) {
    let mut sim = SimMemory::new(seed);
    sim.add_process(10, mappings);
    sim.set_hot_areas(10, vec![HotArea::new(0, u64::MAX, 1.0)]);
    let spec = ContextSpec {
        ops: OpsId::Vaddr,
        attrs: attrs(),
        targets: vec![TargetSpec::vaddr(10)],
    };
    let mut ctx = MonitorContext::new(0, spec, seed, 0).expect("valid");
    run(&mut ctx, &mut sim, 209);
    (sim, ctx)
}

fn covers(regions: &[Region], range: AddrRange) -> bool {
    regions
        .iter()
        .any(|r| r.start <= range.start && range.end <= r.end)
}

/// Regions before and after the update keep `last_nr_accesses` and `age` when they survive
/// (compared by start or end), and fresh ones start from zero.
fn assert_counters_follow(before: &[Region], after: &[Region], fresh: &[AddrRange]) {
    for a in after {
        let is_fresh = fresh.iter().any(|f| f.start <= a.start && a.end <= f.end);
        if is_fresh {
            assert_eq!((a.last_nr_accesses, a.age), (0, 0), "fresh {a:?}");
            assert!(a.nr_accesses <= 1, "counted one sample at most: {a:?}");
            continue;
        }
        let old = before
            .iter()
            .find(|b| b.start == a.start || b.end == a.end)
            .unwrap_or_else(|| panic!("{a:?} has no predecessor"));
        assert_eq!(
            (a.last_nr_accesses, a.age),
            (old.last_nr_accesses, old.age),
            "{a:?} from {old:?}"
        );
    }
}

#[test]
fn heap_growth_and_new_mapping_keep_counters_and_add_fresh_regions() {
    let heap = AddrRange::new(HEAP_START, HEAP_START + 32 * MIB);
    let mmap = AddrRange::new(MMAP_START, MMAP_START + 16 * MIB);
    let (mut sim, mut ctx) = all_hot_until_the_update(11, vec![TEXT, heap, mmap, STACK]);
    let before = ctx.regions(0).expect("t").to_vec();
    let mapped = |r: &&Region| {
        [heap, mmap]
            .iter()
            .any(|m| m.start <= r.start && r.end <= m.end)
    };
    assert!(before.iter().filter(mapped).count() >= 5);
    assert!(
        before
            .iter()
            .filter(mapped)
            .all(|r| r.last_nr_accesses == 20 && r.age > 0)
    );

    // Grow the heap by 4 MiB and map 1 MiB in the middle of the heap↔mmap gap: the two biggest
    // gaps are now heap↔new and new↔mmap, so the three regions become [text, heap end),
    // [new mapping), [mmap, stack end).
    let grown_heap = AddrRange::new(HEAP_START, HEAP_START + 36 * MIB);
    let new_map = AddrRange::new(0x3f00_0000_0000, 0x3f00_0010_0000);
    sim.set_mappings(10, vec![TEXT, grown_heap, new_map, mmap, STACK]);
    run(&mut ctx, &mut sim, 1); // sample 210: the ops update
    let after = ctx.regions(0).expect("t").to_vec();

    assert_eq!(after[0].start, TEXT.start);
    assert!(covers(&after, new_map));
    assert_eq!(after.last().map(|r| r.end), Some(STACK.end));
    for w in after.windows(2) {
        assert!(w[0].start < w[0].end && w[0].end <= w[1].start);
    }
    // Fresh: the new mapping's region and the former mmap↔stack gap, now inside a range.
    let old_gap = AddrRange::new(mmap.end, STACK.start);
    assert!(covers(&after, old_gap));
    assert_counters_follow(&before, &after, &[new_map, old_gap]);
    // The heap's last region was stretched over the growth, keeping its counters.
    let old_heap_last = before
        .iter()
        .rfind(|r| r.end <= heap.end)
        .expect("heap regions");
    let stretched = after
        .iter()
        .find(|r| r.start == old_heap_last.start)
        .expect("same start");
    assert_eq!(stretched.end, grown_heap.end);
    assert_eq!(stretched.last_nr_accesses, 20);
    // Regions away from the changes are untouched.
    let same_bounds = |r: &Region| after.iter().any(|a| a.range() == r.range());
    let untouched = before.iter().filter(|r| same_bounds(r)).count();
    assert_eq!(
        untouched,
        before.len() - 1,
        "only the heap's last region moved"
    );
}

#[test]
fn unmapping_a_middle_part_trims_regions_and_fills_the_old_gap() {
    let heap = AddrRange::new(HEAP_START, HEAP_START + 32 * MIB);
    // A 1.5 TiB mmap area whose gap to the stack (500 GiB) is the second biggest; unmapping
    // 1.375 TiB in its middle makes that hole the second biggest gap instead.
    let mmap = AddrRange::new(0x7e00_0000_0000, 0x7f80_0000_0000);
    let (mut sim, mut ctx) = all_hot_until_the_update(12, vec![TEXT, heap, mmap, STACK]);
    let before = ctx.regions(0).expect("t").to_vec();

    let low = AddrRange::new(mmap.start, 0x7e10_0000_0000);
    let high = AddrRange::new(0x7f70_0000_0000, mmap.end);
    sim.set_mappings(10, vec![TEXT, heap, low, high, STACK]);
    run(&mut ctx, &mut sim, 1);
    let after = ctx.regions(0).expect("t").to_vec();

    // Three regions now: [text, heap end), [low), [high, stack end): nothing in the hole, the
    // regions across its edges trimmed, and the former mmap↔stack gap filled with a fresh one.
    let hole = AddrRange::new(low.end, high.start);
    assert!(
        after.iter().all(|r| !r.range().intersects(&hole)),
        "{after:?}"
    );
    assert!(after.iter().any(|r| r.end == low.end));
    assert!(after.iter().any(|r| r.start == high.start));
    let old_gap = AddrRange::new(mmap.end, STACK.start);
    assert!(covers(&after, old_gap));
    assert_counters_follow(&before, &after, &[old_gap]);
    for w in after.windows(2) {
        assert!(w[0].start < w[0].end && w[0].end <= w[1].start);
    }
}
