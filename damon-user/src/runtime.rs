//! The composition root: a core kdamond ([`crate::core`]) driven by the eBPF access check
//! ([`crate::access`]), the limits checked before one starts ([`check_spec`], [`check_target`]),
//! and the admin tree's production backend ([`EbpfBackend`]). `damon record`, `damon top` and
//! `damon fs` all start kdamonds through here.
use crate::core::Pid;
use std::sync::mpsc;

use damon_common::{MAX_REGIONS, MAX_TARGETS};

use crate::core::scheme::{QuotaGoal, TriedRegion};
use crate::{
    access::{EbpfOps, EbpfOpsOptions},
    admin::{BackendError, ContextConfig, KdamondBackend, KdamondConfig, RunningKdamond},
    bpf::{LayoutError, LayoutOrigin, calibrate},
    core::{
        ContextSpec, CoreError, KdamondHandle, OpsError, OpsId, ProcessKind, Scheme, SchemesNow,
        Snapshot, process_kind, read_proc_maps, start_kdamond,
    },
    error::Chain,
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
    check_spec(&ctx.spec).map_err(|e| BackendError::new(e.to_string()))?;
    Ok(ctx.spec.clone())
}

/// The schemes of the config's context.
fn schemes_of(cfg: &KdamondConfig) -> Vec<Scheme> {
    cfg.contexts
        .first()
        .map(|c| c.schemes.clone())
        .unwrap_or_default()
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
        "{count} address ranges for target {target} (pid {pid}); the eBPF tables hold {MAX_REGIONS} regions per target"
    )]
    TooManyRanges {
        target: usize,
        pid: Pid,
        count: usize,
    },
    #[error("{count} targets; one kdamond can monitor at most {MAX_TARGETS} processes")]
    TooManyTargets { count: usize },
    #[error(
        "process {pid} is the target of both target {first} and target {second}; a kdamond monitors a process once"
    )]
    DuplicatePid {
        pid: Pid,
        first: usize,
        second: usize,
    },
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
    if let Some((target, t)) = spec
        .targets
        .iter()
        .enumerate()
        .find(|(_, t)| t.ranges.len() > MAX_REGIONS as usize)
    {
        return Err(SpecError::TooManyRanges {
            target,
            pid: t.pid,
            count: t.ranges.len(),
        });
    }
    if spec.targets.len() > MAX_TARGETS as usize {
        return Err(SpecError::TooManyTargets {
            count: spec.targets.len(),
        });
    }
    // The programs know a process by its pid: two targets of one process would share one
    // table and skew each other.
    for (second, t) in spec.targets.iter().enumerate() {
        if let Some(first) = spec.targets[..second].iter().position(|o| o.pid == t.pid) {
            return Err(SpecError::DuplicatePid {
                pid: t.pid,
                first,
                second,
            });
        }
    }
    Ok(())
}

/// A process that cannot be a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no process {pid}")]
    Gone { pid: Pid },
    #[error("process {pid} ({comm}) is a kernel thread: it has no address space to monitor")]
    KernelThread { pid: Pid, comm: String },
    #[error("process {pid} ({comm}) has exited: it has no address space left to monitor")]
    Exited { pid: Pid, comm: String },
    #[error("cannot monitor process {pid} ({comm})")]
    Unreadable {
        pid: Pid,
        comm: String,
        #[source]
        source: OpsError,
    },
}

/// Refuses, before anything starts, a process that cannot be monitored: no such process, a
/// kernel thread or an exited one (no address space), or one whose mappings we may not read
/// (vaddr needs them).
pub fn check_target(pid: Pid, ops: OpsId) -> Result<(), TargetError> {
    match process_kind(pid) {
        ProcessKind::Gone => Err(TargetError::Gone { pid }),
        ProcessKind::KernelThread { comm } => Err(TargetError::KernelThread { pid, comm }),
        ProcessKind::Zombie { comm } => Err(TargetError::Exited { pid, comm }),
        ProcessKind::User { comm } => match ops {
            OpsId::Vaddr => read_proc_maps(pid)
                .map(|_| ())
                .map_err(|source| TargetError::Unreadable { pid, comm, source }),
            _ => Ok(()),
        },
    }
}

/// Why a kdamond with the eBPF access check could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Target(#[from] TargetError),
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
    let found = calibrate::find(false).map_err(StartError::Layout)?;
    log::debug!(
        "kernel layout {:?} in {:.1} ms",
        found.origin,
        found.took.as_secs_f64() * 1e3
    );
    match EbpfOps::new(options, &found.layout) {
        Err(e) if found.origin == LayoutOrigin::Cached => {
            log::info!(
                "the eBPF access check did not start with the cached kernel layout ({}); probing the layout again",
                Chain(&e)
            );
            let found = calibrate::find(true).map_err(StartError::Layout)?;
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
    for t in &spec.targets {
        check_target(t.pid, spec.ops)?;
    }
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
        let handle = start_ebpf_kdamond(kdamond_idx, spec, self.options, tx, None)
            .map_err(|e| BackendError::new(Chain(&e).to_string()))?;
        handle
            .set_schemes(schemes_of(cfg))
            .map_err(BackendError::from)?;
        Ok(Box::new(Running { handle }))
    }
}

struct Running {
    handle: KdamondHandle,
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
        self.handle.commit(spec).map_err(BackendError::from)?;
        self.handle
            .set_schemes(schemes_of(cfg))
            .map_err(BackendError::from)
    }

    fn schemes_now(&self) -> Result<SchemesNow, BackendError> {
        self.handle.schemes_now().map_err(BackendError::from)
    }

    fn walk_schemes(&self) -> Result<Vec<Vec<TriedRegion>>, BackendError> {
        self.handle.walk_schemes().map_err(BackendError::from)
    }

    fn commit_quota_goals(&mut self, goals: Vec<Vec<QuotaGoal>>) -> Result<(), BackendError> {
        self.handle
            .commit_quota_goals(goals)
            .map_err(BackendError::from)
    }

    fn sample_us(&self) -> u64 {
        self.handle.intervals_now().0
    }

    fn aggr_us(&self) -> u64 {
        self.handle.intervals_now().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AddrRange, Attrs, TargetSpec};

    fn spec(max_nr_regions: u64, nr_ranges: u64) -> ContextSpec {
        let ranges = (0..nr_ranges)
            .map(|i| AddrRange::new((2 * i + 1) << 12, (2 * i + 2) << 12))
            .collect();
        ContextSpec {
            ops: OpsId::Fvaddr,
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
            err.to_string().contains(&format!(
                "{} address ranges for target 0 (pid 42)",
                MAX_REGIONS + 1
            )),
            "{err}"
        );
    }

    #[test]
    fn targets_are_bounded_and_distinct() {
        let mut s = spec(1000, 1);
        s.targets = (0..MAX_TARGETS as i32)
            .map(|p| TargetSpec::fvaddr(p + 100, vec![AddrRange::new(0x1000, 0x2000)]))
            .collect();
        check_spec(&s).expect("at the limit");
        s.targets.push(TargetSpec::fvaddr(
            999,
            vec![AddrRange::new(0x1000, 0x2000)],
        ));
        let err = check_spec(&s).expect_err("one too many");
        assert!(err.to_string().starts_with("33 targets"), "{err}");
        s.targets.truncate(3);
        s.targets[2].pid = s.targets[0].pid;
        let err = check_spec(&s).expect_err("duplicate");
        assert!(
            err.to_string()
                .contains("process 100 is the target of both target 0 and target 2"),
            "{err}"
        );
    }
}
