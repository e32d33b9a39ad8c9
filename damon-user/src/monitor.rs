//! The production kdamond backend of the admin tree: `state on` starts a core kdamond whose
//! access check is the eBPF one.
use std::sync::mpsc;

use damon_common::MAX_REGIONS;

use crate::{
    admin::{
        BackendError, ContextConfig, KdamondBackend, KdamondConfig, LiveRegion, RunningKdamond,
    },
    bpf::{KernelLayout, LayoutError, LayoutOrigin},
    core::{
        AddrRange, Attrs, ContextSpec, CoreError, KdamondHandle, OpsError, OpsKind, Snapshot,
        TargetSpec, start_kdamond,
    },
    ops::{EbpfOps, EbpfOpsOptions},
};

/// Runs kdamonds with [`EbpfOps`].
#[derive(Clone, Copy, Debug, Default)]
pub struct EbpfBackend {
    pub options: EbpfOpsOptions,
}

fn spec_of(cfg: &KdamondConfig) -> Result<ContextSpec, BackendError> {
    let ctx: &ContextConfig = cfg
        .contexts
        .first()
        .ok_or_else(|| BackendError::new("the kdamond has no context (nr_contexts is 0)"))?;
    let ops: OpsKind = ctx
        .operations
        .parse()
        .map_err(|e: crate::core::CoreError| BackendError::new(e.to_string()))?;
    let spec = ContextSpec {
        ops,
        attrs: Attrs {
            sample_us: ctx.sample_us,
            aggr_us: ctx.aggr_us,
            update_us: ctx.update_us,
            min_nr_regions: ctx.min_nr_regions,
            max_nr_regions: ctx.max_nr_regions,
        },
        targets: ctx
            .targets
            .iter()
            .map(|t| TargetSpec {
                pid: t.pid,
                ranges: t
                    .regions
                    .iter()
                    .map(|&(start, end)| AddrRange { start, end })
                    .collect(),
            })
            .collect(),
    };
    check_spec(&spec).map_err(|e| BackendError::new(e.to_string()))?;
    Ok(spec)
}

/// The largest `max_nr_regions` the eBPF tables allow: they hold `MAX_REGIONS` regions per
/// target, and splitting can reach 1.5 x max.
pub const MAX_NR_REGIONS_LIMIT: u64 = MAX_REGIONS as u64 * 2 / 3;

/// A context this monitor cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error(
        "max_nr_regions {max} is above {MAX_NR_REGIONS_LIMIT}: the eBPF tables hold {MAX_REGIONS} regions per target and splitting can reach 1.5 x max"
    )]
    TooManyRegions { max: u64 },
    #[error(
        "target pid {pid} has {count} address ranges; the eBPF tables hold {MAX_REGIONS} regions per target"
    )]
    TooManyRanges { pid: i32, count: usize },
}

/// The kernel's validation of `spec`, plus the limits of the eBPF access check.
pub fn check_spec(spec: &ContextSpec) -> Result<(), SpecError> {
    spec.validate()?;
    if spec.attrs.max_nr_regions > MAX_NR_REGIONS_LIMIT {
        return Err(SpecError::TooManyRegions {
            max: spec.attrs.max_nr_regions,
        });
    }
    // Each range starts as at least one region.
    if let Some(t) = spec
        .targets
        .iter()
        .find(|t| t.ranges.len() > MAX_REGIONS as usize)
    {
        return Err(SpecError::TooManyRanges {
            pid: t.pid,
            count: t.ranges.len(),
        });
    }
    Ok(())
}

/// Why a kdamond with the eBPF access check could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("probing the kernel layout")]
    Layout(#[source] LayoutError),
    #[error("setting up the eBPF access check")]
    Ops(#[source] OpsError),
    #[error("starting the kdamond")]
    Core(#[source] CoreError),
}

/// The eBPF access check for the running kernel: the layout from this boot's cache (probed on
/// the first run), validated when the programs load; a cached layout that fails validation is
/// probed afresh once.
pub fn ebpf_ops(options: EbpfOpsOptions) -> Result<EbpfOps, StartError> {
    let found = KernelLayout::find(false).map_err(StartError::Layout)?;
    match EbpfOps::new(options, &found.layout) {
        Err(e) if found.origin == LayoutOrigin::Cached => {
            log::info!("the cached kernel layout failed validation ({e}); probing it again");
            let found = KernelLayout::find(true).map_err(StartError::Layout)?;
            EbpfOps::new(options, &found.layout).map_err(StartError::Ops)
        }
        r => r.map_err(StartError::Ops),
    }
}

/// Starts kdamond `kdamond_idx` on `spec` with the eBPF access check: what `damon record`,
/// `damon top` and the admin tree's `state on` all run. `seed` makes the sampled pages
/// reproducible; `None` takes one from the clock.
pub fn start_ebpf_kdamond(
    kdamond_idx: usize,
    spec: ContextSpec,
    options: EbpfOpsOptions,
    sink: mpsc::Sender<Snapshot>,
    seed: Option<u64>,
) -> Result<KdamondHandle, StartError> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    check_spec(&spec)?;
    let ops = ebpf_ops(options)?;
    start_kdamond(kdamond_idx, spec, Box::new(ops), sink, seed).map_err(StartError::Core)
}

impl KdamondBackend for EbpfBackend {
    fn start(
        &self,
        kdamond_idx: usize,
        cfg: &KdamondConfig,
    ) -> Result<Box<dyn RunningKdamond>, BackendError> {
        let spec = spec_of(cfg)?;
        // Snapshots are not consumed: the tree reads live regions on request. A closed
        // channel is ignored by the kdamond.
        let (tx, _) = mpsc::channel();
        let attrs = spec.attrs;
        let handle = start_ebpf_kdamond(kdamond_idx, spec, self.options, tx, None)
            .map_err(|e| BackendError::new(crate::core::ops::error_chain(&e)))?;
        Ok(Box::new(Running { handle, attrs }))
    }
}

struct Running {
    handle: KdamondHandle,
    attrs: Attrs,
}

impl RunningKdamond for Running {
    fn pid(&self) -> i32 {
        self.handle.tid()
    }

    fn is_running(&self) -> bool {
        self.handle.is_running()
    }

    fn stop(&mut self) {
        self.handle.stop();
    }

    fn commit(&mut self, cfg: &KdamondConfig) -> Result<(), BackendError> {
        let spec = spec_of(cfg)?;
        let attrs = spec.attrs;
        self.handle
            .commit(spec)
            .map_err(|e| BackendError::new(e.to_string()))?;
        self.attrs = attrs;
        Ok(())
    }

    fn regions_now(&self) -> Result<Vec<Vec<LiveRegion>>, BackendError> {
        let live = self
            .handle
            .regions_now()
            .map_err(|e| BackendError::new(e.to_string()))?;
        Ok(live
            .into_iter()
            .map(|t| {
                t.regions
                    .into_iter()
                    .map(|r| LiveRegion {
                        start: r.start,
                        end: r.end,
                        nr_accesses: r.last_nr_accesses,
                        nr_accesses_bp: r.nr_accesses_bp,
                        age: r.age,
                    })
                    .collect()
            })
            .collect())
    }

    fn sample_us(&self) -> u64 {
        self.attrs.sample_us
    }

    fn aggr_us(&self) -> u64 {
        self.attrs.aggr_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max_nr_regions: u64, nr_ranges: u64) -> ContextSpec {
        let ranges = (0..nr_ranges)
            .map(|i| AddrRange::new((2 * i + 1) << 12, (2 * i + 2) << 12))
            .collect();
        ContextSpec {
            ops: OpsKind::Fvaddr,
            attrs: Attrs {
                max_nr_regions,
                ..Attrs::default()
            },
            targets: vec![TargetSpec::fvaddr(42, ranges)],
        }
    }

    #[test]
    fn the_ebpf_tables_bound_regions_and_ranges() {
        check_spec(&spec(MAX_NR_REGIONS_LIMIT, MAX_REGIONS as u64)).expect("at the limits");
        let err = check_spec(&spec(MAX_NR_REGIONS_LIMIT + 1, 1)).expect_err("max_nr_regions");
        assert!(
            err.to_string()
                .contains(&format!("max_nr_regions {}", MAX_NR_REGIONS_LIMIT + 1)),
            "{err}"
        );
        let err = check_spec(&spec(1000, MAX_REGIONS as u64 + 1)).expect_err("ranges");
        assert!(
            err.to_string()
                .contains(&format!("pid 42 has {} address ranges", MAX_REGIONS + 1)),
            "{err}"
        );
    }
}
