//! `kdamonds/` and `kdamonds/N/`: the `state` keywords that start, stop and query a
//! kdamond through the [`KdamondBackend`], and the `pid` of its worker.

use std::time::{Duration, Instant};

use super::context::ContextDir;
use super::scheme::TriedRegionsDir;
use crate::admin::backend::{KdamondBackend, KdamondConfig, RunningKdamond};
use crate::admin::config;
use crate::admin::error::AdminError;
use crate::admin::node::{
    Access, Dir, MAX_DIRS, Numbered, OnError, line, store_keyword, store_uint,
};

/// The `state` keywords, in the kernel's order (`damon_sysfs_cmd_strs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    On,
    Off,
    Commit,
    CommitSchemesQuotaGoals,
    UpdateSchemesStats,
    UpdateSchemesTriedBytes,
    UpdateSchemesTriedRegions,
    ClearSchemesTriedRegions,
    UpdateSchemesEffectiveQuotas,
    UpdateTunedIntervals,
}

pub const COMMANDS: [(Command, &str); 10] = [
    (Command::On, "on"),
    (Command::Off, "off"),
    (Command::Commit, "commit"),
    (
        Command::CommitSchemesQuotaGoals,
        "commit_schemes_quota_goals",
    ),
    (Command::UpdateSchemesStats, "update_schemes_stats"),
    (
        Command::UpdateSchemesTriedBytes,
        "update_schemes_tried_bytes",
    ),
    (
        Command::UpdateSchemesTriedRegions,
        "update_schemes_tried_regions",
    ),
    (
        Command::ClearSchemesTriedRegions,
        "clear_schemes_tried_regions",
    ),
    (
        Command::UpdateSchemesEffectiveQuotas,
        "update_schemes_effective_quotas",
    ),
    (Command::UpdateTunedIntervals, "update_tuned_intervals"),
];

/// `kdamonds/N/`.
pub struct KdamondDir {
    /// Non-zero: refresh stats, tuned intervals and effective quotas every this many ms.
    pub refresh_ms: u32,
    pub contexts: Numbered<ContextDir>,
    /// The last started kdamond, kept after it stops so its results stay readable and `off`
    /// can tell "stopped" from "never started" (the kernel keeps `damon_ctx` likewise).
    running: Option<Box<dyn RunningKdamond>>,
    last_refresh: Option<Instant>,
}

impl Default for KdamondDir {
    fn default() -> Self {
        Self {
            refresh_ms: 0,
            contexts: Numbered::new("nr_contexts", ContextDir::default).with_max(1),
            running: None,
            last_refresh: None,
        }
    }
}

impl KdamondDir {
    /// Whether the kdamond's worker is running now (false once it stopped by itself).
    pub fn is_running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.is_running())
    }

    /// Handle a write to `state`. A failed command changes nothing.
    pub fn handle_state(
        &mut self,
        idx: usize,
        input: &[u8],
        backend: &dyn KdamondBackend,
    ) -> Result<(), AdminError> {
        match store_keyword("state", input, &COMMANDS)? {
            Command::On => self.turn_on(idx, backend),
            Command::Off => self.turn_off(idx),
            Command::Commit => self.commit(idx),
            Command::CommitSchemesQuotaGoals => self.commit_quota_goals(idx),
            Command::UpdateSchemesStats => self.update_stats(idx),
            Command::UpdateSchemesTriedBytes => self.update_tried_regions(idx, true),
            Command::UpdateSchemesTriedRegions => self.update_tried_regions(idx, false),
            Command::ClearSchemesTriedRegions => {
                self.clear_tried_regions();
                Ok(())
            }
            Command::UpdateSchemesEffectiveQuotas => self.update_effective_quotas(idx),
            Command::UpdateTunedIntervals => self.update_tuned_intervals(idx),
        }
    }

    /// The staged context, for commands that need exactly one (the kernel's
    /// `contexts->nr != 1` checks).
    fn only_context(&self, idx: usize) -> Result<&ContextDir, AdminError> {
        match self.contexts.items.as_slice() {
            [ctx] => Ok(ctx),
            other => Err(AdminError::InvalidConfig {
                kdamond: idx,
                reason: format!("nr_contexts is {}, must be 1", other.len()),
            }),
        }
    }

    fn build_config(&self, idx: usize) -> Result<KdamondConfig, AdminError> {
        let ctx = self.only_context(idx)?;
        let ctx = config::build_context(ctx).map_err(|e| match e.errno {
            libc::ENOMEM => AdminError::OutOfMemory {
                file: format!("kdamond {idx}"),
                reason: e.reason,
            },
            _ => AdminError::InvalidConfig {
                kdamond: idx,
                reason: e.reason,
            },
        })?;
        Ok(KdamondConfig {
            contexts: vec![ctx],
        })
    }

    fn running_handle(&mut self, idx: usize) -> Result<&mut Box<dyn RunningKdamond>, AdminError> {
        match self.running.as_mut() {
            Some(r) if r.is_running() => Ok(r),
            _ => Err(AdminError::NotRunning { kdamond: idx }),
        }
    }

    fn turn_on(&mut self, idx: usize, backend: &dyn KdamondBackend) -> Result<(), AdminError> {
        if self.is_running() {
            return Err(AdminError::Busy {
                reason: format!("kdamond {idx} is already running"),
            });
        }
        let cfg = self.build_config(idx)?;
        let handle = backend
            .start(idx, &cfg)
            .map_err(|source| AdminError::Backend {
                kdamond: idx,
                source,
            })?;
        self.running = Some(handle);
        self.last_refresh = None;
        Ok(())
    }

    fn turn_off(&mut self, idx: usize) -> Result<(), AdminError> {
        match self.running.as_mut() {
            None => Err(AdminError::NeverStarted { kdamond: idx }),
            Some(r) if !r.is_running() => Err(AdminError::AlreadyStopped { kdamond: idx }),
            Some(r) => {
                r.stop();
                Ok(())
            }
        }
    }

    fn commit(&mut self, idx: usize) -> Result<(), AdminError> {
        self.running_handle(idx)?;
        let cfg = self.build_config(idx)?;
        self.running_handle(idx)?
            .commit(&cfg)
            .map_err(|source| AdminError::Backend {
                kdamond: idx,
                source,
            })?;
        Ok(())
    }

    /// Staged scheme directories paired with the running schemes of the same index; running
    /// schemes past the staged count are skipped, as in the kernel.
    fn staged_schemes_mut(&mut self) -> impl Iterator<Item = &mut super::scheme::SchemeDir> {
        self.contexts
            .items
            .first_mut()
            .into_iter()
            .flat_map(|ctx| ctx.schemes.items.iter_mut())
    }

    fn backend_error(idx: usize) -> impl FnOnce(super::super::BackendError) -> AdminError {
        move |source| AdminError::Backend {
            kdamond: idx,
            source,
        }
    }

    /// `update_schemes_stats`: the running totals of every scheme, by index; running schemes
    /// past the staged count are skipped, as in the kernel.
    fn update_stats(&mut self, idx: usize) -> Result<(), AdminError> {
        let now = self
            .running_handle(idx)?
            .schemes_now()
            .map_err(Self::backend_error(idx))?;
        for (staged, stats) in self.staged_schemes_mut().zip(now.stats) {
            staged.stats = stats.into();
        }
        Ok(())
    }

    /// `update_schemes_tried_regions` / `_bytes`: every scheme's regions are cleared first,
    /// then filled with what its next pass applies it to.
    fn update_tried_regions(&mut self, idx: usize, bytes_only: bool) -> Result<(), AdminError> {
        self.running_handle(idx)?;
        self.clear_tried_regions();
        let walked = self
            .running_handle(idx)?
            .walk_schemes()
            .map_err(Self::backend_error(idx))?;
        for (staged, tried) in self.staged_schemes_mut().zip(walked) {
            staged.tried_regions = TriedRegionsDir::of(&tried, bytes_only);
        }
        Ok(())
    }

    fn clear_tried_regions(&mut self) {
        for scheme in self.staged_schemes_mut() {
            scheme.tried_regions = Default::default();
        }
    }

    /// `update_schemes_effective_quotas`: each scheme's effective size quota now.
    fn update_effective_quotas(&mut self, idx: usize) -> Result<(), AdminError> {
        let now = self
            .running_handle(idx)?
            .schemes_now()
            .map_err(Self::backend_error(idx))?;
        for (staged, esz) in self.staged_schemes_mut().zip(now.effective_bytes) {
            staged.quotas.effective_bytes = esz;
        }
        Ok(())
    }

    /// `commit_schemes_quota_goals`: the staged goals of every scheme, to the running ones.
    fn commit_quota_goals(&mut self, idx: usize) -> Result<(), AdminError> {
        self.running_handle(idx)?;
        let goals = config::quota_goals(self.only_context(idx)?);
        self.running_handle(idx)?
            .commit_quota_goals(goals)
            .map_err(Self::backend_error(idx))
    }

    fn update_tuned_intervals(&mut self, idx: usize) -> Result<(), AdminError> {
        let handle = self.running_handle(idx)?;
        let (sample_us, aggr_us) = (handle.sample_us(), handle.aggr_us());
        let ctx = self
            .contexts
            .items
            .first_mut()
            .ok_or(AdminError::InvalidConfig {
                kdamond: idx,
                reason: "nr_contexts is 0".into(),
            })?;
        ctx.attrs.intervals.sample_us = sample_us;
        ctx.attrs.intervals.aggr_us = aggr_us;
        Ok(())
    }

    /// Whether `refresh_ms` asks for a refresh at `now`: set, running, and a period past the
    /// last one.
    pub fn refresh_due(&self, now: Instant) -> bool {
        if self.refresh_ms == 0 || !self.is_running() {
            return false;
        }
        let period = Duration::from_millis(u64::from(self.refresh_ms));
        self.last_refresh
            .is_none_or(|t| now.duration_since(t) >= period)
    }

    /// `refresh_ms`: refresh stats, tuned intervals and effective quotas when due (the
    /// kernel's `damon_sysfs_repeat_call_fn()`). Errors are ignored: a kdamond that stopped
    /// simply is not refreshed.
    pub fn refresh_if_due(&mut self, idx: usize, now: Instant) {
        if !self.refresh_due(now) {
            return;
        }
        self.last_refresh = Some(now);
        let _ = self.update_tuned_intervals(idx);
        let _ = self.update_stats(idx);
        let _ = self.update_effective_quotas(idx);
    }
}

impl Dir for KdamondDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![
            ("state", Access::ReadWrite),
            ("pid", Access::ReadOnly),
            ("refresh_ms", Access::ReadWrite),
        ]
    }
    fn dirs(&self) -> Vec<String> {
        vec!["contexts".into()]
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        (name == "contexts").then_some(&self.contexts as &dyn Dir)
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        (name == "contexts").then_some(&mut self.contexts as &mut dyn Dir)
    }
    fn show(&self, name: &str) -> String {
        match name {
            "state" => line(if self.is_running() { "on" } else { "off" }),
            "pid" => line(match &self.running {
                Some(r) if r.is_running() => r.pid(),
                _ => -1,
            }),
            _ => line(self.refresh_ms),
        }
    }
    /// Plain stores only; `state` needs the backend and goes through
    /// [`handle_state`](Self::handle_state).
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        self.refresh_ms = store_uint(name, input, OnError::AsIs)?;
        Ok(())
    }
}

/// `kdamonds/`.
pub struct KdamondsDir {
    pub kdamonds: Numbered<KdamondDir>,
}

impl Default for KdamondsDir {
    fn default() -> Self {
        Self {
            kdamonds: Numbered::new("nr_kdamonds", KdamondDir::default),
        }
    }
}

impl Dir for KdamondsDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        self.kdamonds.files()
    }
    fn dirs(&self) -> Vec<String> {
        self.kdamonds.dirs()
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        self.kdamonds.dir(name)
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        self.kdamonds.dir_mut(name)
    }
    fn show(&self, name: &str) -> String {
        self.kdamonds.show(name)
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        self.store_nr(name, input, MAX_DIRS)
    }
    /// `nr_kdamonds`: EBUSY while any kdamond runs, as the kernel's
    /// `damon_sysfs_kdamonds_busy()`, checked after the number parsed and before the
    /// directories are allocated (ENOMEM past the tree's limit).
    fn store_nr(&mut self, name: &str, input: &[u8], room: usize) -> Result<(), AdminError> {
        let nr = self.kdamonds.parse_count(input)?;
        if let Some(i) = self.kdamonds.items.iter().position(KdamondDir::is_running) {
            return Err(AdminError::Busy {
                reason: format!("{name}: kdamond {i} is running"),
            });
        }
        self.kdamonds.check_room(nr, room)?;
        self.kdamonds.recreate(nr);
        Ok(())
    }
    fn nr_dirs(&self) -> usize {
        self.kdamonds.nr_dirs()
    }
}
