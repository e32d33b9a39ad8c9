//! The seam between the admin tree and the monitor that runs kdamonds.
//!
//! The tree only stages values; `on` and `commit` turn the staged files of a kdamond into a
//! [`KdamondConfig`] (validated as the kernel's `damon_sysfs_build_ctx()` does) and hand it to
//! a [`KdamondBackend`]. The production backend runs the eBPF monitor; `admin::fake` is a
//! stand-in for tests.
//!
//! The config speaks the core's vocabulary ([`ContextSpec`], [`Scheme`]), so the backend
//! runs what the tree validated without translating it again.
use crate::core::scheme::{QuotaGoal, TriedRegion};
use crate::core::{ContextSpec, Scheme, SchemesNow};

/// What `on` starts, built from the staged files of one kdamond directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdamondConfig {
    /// Exactly one context today: the kernel (and so the tree) refuses `on` with
    /// `nr_contexts` other than 1.
    pub contexts: Vec<ContextConfig>,
}

/// One monitoring context, `contexts/N/`: what the core runs, and its schemes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextConfig {
    pub spec: ContextSpec,
    pub schemes: Vec<Scheme>,
}

/// Why the monitor refused or failed an operation. Reported to the writer as `errno`
/// (EINVAL unless said otherwise); the message is logged.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub message: String,
    pub errno: i32,
}

impl BackendError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            errno: libc::EINVAL,
        }
    }
}

impl From<crate::core::CoreError> for BackendError {
    /// A request the kdamond dropped is ECANCELED, as the kernel's `damon_call()`.
    fn from(e: crate::core::CoreError) -> Self {
        let errno = match e {
            crate::core::CoreError::Canceled => libc::ECANCELED,
            _ => libc::EINVAL,
        };
        Self {
            message: e.to_string(),
            errno,
        }
    }
}

/// Starts kdamonds. Implemented by the production monitor and, for tests, by `admin::fake::FakeBackend`.
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
    /// The schemes' running stats and effective quotas (`update_schemes_stats`,
    /// `update_schemes_effective_quotas`).
    fn schemes_now(&self) -> Result<SchemesNow, BackendError>;
    /// The regions each scheme is applied to in its next pass (`update_schemes_tried_*`).
    fn walk_schemes(&self) -> Result<Vec<Vec<TriedRegion>>, BackendError>;
    /// New quota goals for each scheme (`commit_schemes_quota_goals`).
    fn commit_quota_goals(&mut self, goals: Vec<Vec<QuotaGoal>>) -> Result<(), BackendError>;
    /// The sampling interval in force now (it changes when intervals auto-tuning is on):
    /// what `update_tuned_intervals` writes back into `sample_us`.
    fn sample_us(&self) -> u64;
    /// The aggregation interval in force now, written back into `aggr_us`.
    fn aggr_us(&self) -> u64;
}
