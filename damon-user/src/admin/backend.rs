//! The seam between the admin tree and the monitor that runs kdamonds.
//!
//! The tree only stages values; `on` and `commit` turn the staged files of a kdamond into a
//! [`KdamondConfig`] (validated as the kernel's `damon_sysfs_build_ctx()` does) and hand it to
//! a [`KdamondBackend`]. The production backend runs the eBPF monitor; [`super::fake`] is a
//! stand-in for tests.
//!
//! Keyword strings (`operations`, `action`, metrics, filter types) are passed as the kernel's
//! own words so this contract does not depend on the tree's internal enums.

/// What `on` starts, built from the staged files of one kdamond directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdamondConfig {
    /// Exactly one context today: the kernel (and so the tree) refuses `on` with
    /// `nr_contexts` other than 1.
    pub contexts: Vec<ContextConfig>,
}

/// One monitoring context: `contexts/N/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextConfig {
    /// `"vaddr"` or `"fvaddr"`: the operation sets this build supports.
    pub operations: String,
    pub sample_us: u64,
    pub aggr_us: u64,
    pub update_us: u64,
    /// Auto-tuning goal of the intervals (`intervals/intervals_goal/`); `aggrs == 0` disables it.
    pub intervals_goal: IntervalsGoalConfig,
    pub min_nr_regions: u64,
    pub max_nr_regions: u64,
    pub targets: Vec<TargetConfig>,
    pub schemes: Vec<SchemeConfig>,
}

/// `monitoring_attrs/intervals/intervals_goal/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalsGoalConfig {
    pub access_bp: u64,
    pub aggrs: u64,
    pub min_sample_us: u64,
    pub max_sample_us: u64,
}

/// One monitoring target: `targets/N/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetConfig {
    /// The monitored process; the tree checked it existed when the config was built.
    pub pid: i32,
    /// Initial monitoring regions `[start, end)`, sorted and not overlapping; empty means
    /// "all mapped memory", as the kernel.
    pub regions: Vec<(u64, u64)>,
}

/// `[min, max]`, both inclusive, as DAMOS access patterns are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    pub fn contains(&self, v: u64) -> bool {
        self.min <= v && v <= self.max
    }
}

/// `schemes/N/access_pattern/`: size in bytes, `nr_accesses` in samples per aggregation,
/// age in aggregation intervals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessPatternConfig {
    pub sz: Range,
    pub nr_accesses: Range,
    pub age: Range,
}

/// One DAMON-based operation scheme: `schemes/N/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemeConfig {
    /// The kernel's action word; this build only applies `"stat"`.
    pub action: String,
    pub access_pattern: AccessPatternConfig,
    pub quotas: QuotasConfig,
}

/// `schemes/N/quotas/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotasConfig {
    pub ms: u64,
    pub bytes: u64,
    pub reset_interval_ms: u64,
    pub weight_sz_permil: u32,
    pub weight_nr_accesses_permil: u32,
    pub weight_age_permil: u32,
    pub goals: Vec<QuotaGoalConfig>,
}

/// `schemes/N/quotas/goals/M/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaGoalConfig {
    pub target_metric: String,
    pub target_value: u64,
    pub current_value: u64,
    pub nid: i32,
}

/// One region of a running context as it is now (the kdamond's current view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveRegion {
    pub start: u64,
    pub end: u64,
    /// Samples that found the region accessed in the last complete aggregation interval.
    pub nr_accesses: u32,
    /// The moving average of `nr_accesses`, times 10 000 (the kernel's `nr_accesses_bp`);
    /// snapshots report `nr_accesses_bp / 10000`, as the kernel's tried_regions do.
    pub nr_accesses_bp: u32,
    /// Aggregation intervals the access rate has stayed about the same.
    pub age: u32,
}

/// Why the monitor refused or failed an operation. Reported to the writer as EINVAL; the
/// message is logged.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
}

impl BackendError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Starts kdamonds. Implemented by the production monitor and by [`super::fake::FakeBackend`].
pub trait KdamondBackend: Send + Sync {
    /// Start kdamond `kdamond_idx` with `cfg` (already validated by the tree). Called with the
    /// tree lock held, like the kernel's `damon_start()` under `damon_sysfs_lock`.
    fn start(
        &self,
        kdamond_idx: usize,
        cfg: &KdamondConfig,
    ) -> Result<Box<dyn RunningKdamond>, BackendError>;
}

/// A started kdamond. Kept by the tree after it stops, so that `off` can tell "stopped"
/// (EPERM) from "never started" (EINVAL), as the kernel keeps its `damon_ctx`; dropped when a
/// new `on` replaces it or its kdamond directory is removed (a drop must stop the worker).
pub trait RunningKdamond: Send {
    /// Thread id of the kdamond's worker thread: a real task, `ps`-able, whose
    /// `/proc/<pid>/stat` damo reads.
    fn pid(&self) -> i32;
    /// False once stopped by [`stop`](Self::stop) or by itself (all targets exited).
    fn is_running(&self) -> bool;
    /// Stop the worker and wait for it; results stay readable from the tree.
    fn stop(&mut self);
    /// Apply a new configuration to the running kdamond (the `commit` keyword). On error the
    /// running configuration must be unchanged.
    fn commit(&mut self, cfg: &KdamondConfig) -> Result<(), BackendError>;
    /// The current regions of each target of context 0, in target order.
    fn regions_now(&self) -> Result<Vec<Vec<LiveRegion>>, BackendError>;
    /// The sampling interval in force now (it changes when intervals auto-tuning is on):
    /// what `update_tuned_intervals` writes back into `sample_us`.
    fn sample_us(&self) -> u64;
    /// The aggregation interval in force now, written back into `aggr_us`.
    fn aggr_us(&self) -> u64;
}
