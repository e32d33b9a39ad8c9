//! Costs of the monitoring core: one aggregation step (merge + split) and the per-region
//! bookkeeping of a sample (prepare + check) with operations that do nothing, so only the core's
//! own work is measured.
//!
//! Run: `cargo bench -p damon-user --bench core -- --warm-up-time 1 --measurement-time 3`
use damon_user::core::Pid;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use damon_user::core::aggregate::{merge_regions, split_pieces, split_regions_of};
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, MonitorContext, Operations, OpsError, OpsId, PAGE_SIZE, Region,
    SampleStep, TargetSpec,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SIZES: [u64; 2] = [1_000, 10_000];
const REGION_PAGES: u64 = 16;

/// `n` adjacent regions of 16 pages with random counters of a 20-sample aggregation.
fn regions(n: u64, rng: &mut SmallRng) -> Vec<Region> {
    (0..n)
        .map(|i| {
            let nr = rng.random_range(0..=20u32);
            Region {
                nr_accesses: nr,
                nr_accesses_bp: nr * 10_000,
                last_nr_accesses: rng.random_range(0..=20u32),
                age: rng.random_range(0..100u32),
                ..Region::new(
                    i * REGION_PAGES * PAGE_SIZE,
                    (i + 1) * REGION_PAGES * PAGE_SIZE,
                )
            }
        })
        .collect()
}

/// Merge with the default threshold (20 / 10) and `sz_limit` (total / 10), then split as the
/// kdamond does; `max_nr_regions` leaves room for both to run in full.
fn aggregation_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregation_step");
    for n in SIZES {
        let mut rng = SmallRng::seed_from_u64(n);
        let input = vec![regions(n, &mut rng)];
        let sz_limit = n * REGION_PAGES * PAGE_SIZE / 10;
        let max_nr_regions = 4 * n;
        let mut scratch = Vec::new();
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched_ref(
                || input.clone(),
                |targets| {
                    merge_regions(targets, 2, 20, sz_limit, max_nr_regions);
                    let nr = targets[0].len() as u64;
                    if let Some(nr_subs) = split_pieces(nr, 0, max_nr_regions) {
                        split_regions_of(&mut targets[0], nr_subs, &mut rng, &mut scratch);
                    }
                    black_box(targets[0].len())
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// Operations that find nothing accessed and do no work.
struct NoopOps;

impl Operations for NoopOps {
    fn mappings(&mut self, _pid: Pid) -> Result<Vec<AddrRange>, OpsError> {
        Ok(Vec::new())
    }

    fn target_valid(&mut self, _pid: Pid) -> bool {
        true
    }

    fn sample(&mut self, step: &mut SampleStep<'_>) -> Result<(), OpsError> {
        for i in 0..step.len() {
            black_box(step.target(i).regions);
        }
        Ok(())
    }
}

/// One sample over `n` regions: an fvaddr target of `n` separate ranges, with an aggregation
/// interval so long that no aggregation falls in the measurement.
fn sample_bookkeeping(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample_check_and_prepare");
    for n in SIZES {
        let step = (REGION_PAGES + 1) * PAGE_SIZE;
        let ranges = (0..n)
            .map(|i| AddrRange::new(i * step, i * step + REGION_PAGES * PAGE_SIZE))
            .collect();
        let spec = ContextSpec {
            ops: OpsId::Fvaddr,
            attrs: Attrs {
                sample_us: 1,
                aggr_us: 1 << 40,
                update_us: 1 << 40,
                min_nr_regions: 3,
                max_nr_regions: 2 * n,
                intervals_goal: damon_user::core::IntervalsGoal::OFF,
            },
            targets: vec![TargetSpec::fvaddr(1, ranges)],
        };
        let mut ctx = MonitorContext::new(0, spec, 1, 0).expect("valid spec");
        let mut ops = NoopOps;
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(ctx.sample(&mut ops, 0).expect("noop")))
        });
    }
    group.finish();
}

criterion_group!(benches, aggregation_step, sample_bookkeeping);
criterion_main!(benches);
