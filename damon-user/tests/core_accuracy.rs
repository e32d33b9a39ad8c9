//! Accuracy of the adaptive regions on simulated memory with known hot areas among cold ones:
//! after enough aggregations the regions isolate each hot area and report its access rate.
//!
//! The aggregation interval is 40 samples (5 ms / 200 ms) rather than the default 20: merging
//! takes integer means, as in the kernel, which reads a 50 % area about half a count low per
//! merge; at 20 samples that bias alone approaches the 10 % tolerance.
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::snapshot::weighted_rate;
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, MonitorContext, OpsId, PAGE_SIZE, Snapshot, TargetSpec,
};

const MIB: u64 = 1 << 20;
const PID: i32 = 7;
const HEAP: u64 = 0x100_0000;

fn hot_areas() -> Vec<HotArea> {
    vec![
        HotArea::new(HEAP + 8 * MIB, HEAP + 9 * MIB, 1.0),
        HotArea::new(HEAP + 20 * MIB, HEAP + 24 * MIB, 0.5),
        HotArea::new(HEAP + 40 * MIB, HEAP + 42 * MIB, 0.8),
    ]
}

fn simulate(seed: u64, aggregations: usize) -> Vec<Snapshot> {
    let mut sim = SimMemory::new(seed);
    sim.add_process(
        PID,
        vec![
            AddrRange::new(0x40_0000, 0x50_0000),
            AddrRange::new(HEAP, HEAP + 64 * MIB),
            AddrRange::new(0x7f00_0000_0000, 0x7f00_0080_0000),
            AddrRange::new(0x7ffd_0000_0000, 0x7ffd_0002_1000),
        ],
    );
    sim.set_hot_areas(PID, hot_areas());
    let spec = ContextSpec {
        ops: OpsId::Vaddr,
        attrs: Attrs {
            aggr_us: 200_000,
            ..Attrs::damo_defaults()
        },
        targets: vec![TargetSpec::vaddr(PID)],
    };
    let mut ctx = MonitorContext::new(0, spec, seed, 0).expect("valid");
    let mut snapshots = Vec::new();
    while snapshots.len() < aggregations {
        if let Some(snap) = ctx.sample(&mut sim, 0).expect("sim") {
            snapshots.push(snap);
        }
    }
    snapshots
}

/// Distance from `addr` to the nearest region boundary of the snapshot, in pages.
fn boundary_error(snap: &Snapshot, addr: u64) -> u64 {
    snap.targets[0]
        .regions
        .iter()
        .flat_map(|r| [r.start, r.end])
        .map(|b| b.abs_diff(addr) / PAGE_SIZE)
        .min()
        .unwrap_or(u64::MAX)
}

/// Size-weighted access rate (nr_accesses / max_nr_accesses) over `area`, which the regions
/// must cover.
fn access_rate(snap: &Snapshot, area: AddrRange) -> f64 {
    weighted_rate(
        &snap.targets[0].regions,
        area,
        snap.intervals.max_nr_accesses(),
    )
    .unwrap_or_else(|| panic!("no region covers {area}"))
}

fn mean_rate(snapshots: &[Snapshot], area: AddrRange) -> f64 {
    snapshots.iter().map(|s| access_rate(s, area)).sum::<f64>() / snapshots.len() as f64
}

#[test]
fn regions_isolate_hot_areas_and_report_their_rates() {
    const SETTLE: usize = 300;
    const MEASURE: usize = 50;
    const MAX_EDGE_ERROR_PAGES: u64 = 8;
    for seed in 0..8 {
        let snapshots = simulate(seed, SETTLE + MEASURE);
        let measured = &snapshots[SETTLE..];
        for area in hot_areas() {
            // The median over the measured snapshots, so that one snapshot caught
            // mid-adaptation does not decide.
            for edge in [area.range.start, area.range.end] {
                let mut errors: Vec<u64> =
                    measured.iter().map(|s| boundary_error(s, edge)).collect();
                errors.sort_unstable();
                let median = errors[errors.len() / 2];
                assert!(
                    median <= MAX_EDGE_ERROR_PAGES,
                    "seed {seed}: edge {edge:#x} of {}: median error {median} pages",
                    area.range
                );
            }
            let rate = mean_rate(measured, area.range);
            let error = (rate - area.probability).abs() / area.probability;
            assert!(
                error <= 0.10,
                "seed {seed}: {} rate {rate:.3}, simulated {}",
                area.range,
                area.probability
            );
        }
        // And the cold memory between them reads cold.
        let cold = AddrRange::new(HEAP + 28 * MIB, HEAP + 36 * MIB);
        let rate = mean_rate(measured, cold);
        assert!(rate < 0.01, "seed {seed}: cold {cold} rate {rate:.3}");
    }
}
