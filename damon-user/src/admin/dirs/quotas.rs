//! `schemes/N/quotas/` (with `weights/` and `goals/`) and `schemes/N/watermarks/`.
//!
//! The quotas go to the kdamond at `on`/`commit` (see `core::scheme`), which limits and tunes
//! the schemes with them, and so do the watermarks (`core::scheme::wmark`).

use crate::admin::error::AdminError;
use crate::admin::node::{
    Access, Dir, Numbered, OnError, line, store_int, store_keyword, store_uint, store_ul,
};
use crate::core::scheme::{GoalMetric, WmarkMetric};

/// `quotas/goals/M/`; metric `user_input` by default (the kernel's zeroed allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaGoalDir {
    pub metric: GoalMetric,
    pub target_value: u64,
    pub current_value: u64,
    pub nid: i32,
}

impl Default for QuotaGoalDir {
    fn default() -> Self {
        Self {
            metric: GoalMetric::UserInput,
            target_value: 0,
            current_value: 0,
            nid: 0,
        }
    }
}

impl Dir for QuotaGoalDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["target_metric", "target_value", "current_value", "nid"]
            .map(|f| (f, Access::ReadWrite))
            .to_vec()
    }
    fn show(&self, name: &str) -> String {
        match name {
            "target_metric" => line(self.metric),
            "target_value" => line(self.target_value),
            "current_value" => line(self.current_value),
            _ => line(self.nid),
        }
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        match name {
            "target_metric" => self.metric = store_keyword(name, input, GoalMetric::NAMES)?,
            "target_value" => self.target_value = store_ul(name, input, OnError::AsIs)?,
            "current_value" => self.current_value = store_ul(name, input, OnError::AsIs)?,
            _ => self.nid = store_int(name, input, OnError::AsIs)?,
        }
        Ok(())
    }
}

/// `quotas/weights/`, in permil.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightsDir {
    pub sz_permil: u32,
    pub nr_accesses_permil: u32,
    pub age_permil: u32,
}

impl Dir for WeightsDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["sz_permil", "nr_accesses_permil", "age_permil"]
            .map(|f| (f, Access::ReadWrite))
            .to_vec()
    }
    fn show(&self, name: &str) -> String {
        line(match name {
            "sz_permil" => self.sz_permil,
            "nr_accesses_permil" => self.nr_accesses_permil,
            _ => self.age_permil,
        })
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        let v = store_uint(name, input, OnError::Einval)?;
        match name {
            "sz_permil" => self.sz_permil = v,
            "nr_accesses_permil" => self.nr_accesses_permil = v,
            _ => self.age_permil = v,
        }
        Ok(())
    }
}

/// `schemes/N/quotas/`.
pub struct QuotasDir {
    pub ms: u64,
    pub bytes: u64,
    pub reset_interval_ms: u64,
    /// Read-only; filled by `update_schemes_effective_quotas`.
    pub effective_bytes: u64,
    pub weights: WeightsDir,
    pub goals: Numbered<QuotaGoalDir>,
}

impl Default for QuotasDir {
    fn default() -> Self {
        Self {
            ms: 0,
            bytes: 0,
            reset_interval_ms: 0,
            effective_bytes: 0,
            weights: WeightsDir::default(),
            goals: Numbered::new("nr_goals", QuotaGoalDir::default),
        }
    }
}

impl Dir for QuotasDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![
            ("ms", Access::ReadWrite),
            ("bytes", Access::ReadWrite),
            ("reset_interval_ms", Access::ReadWrite),
            ("effective_bytes", Access::ReadOnly),
        ]
    }
    fn dirs(&self) -> Vec<String> {
        vec!["weights".into(), "goals".into()]
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        match name {
            "weights" => Some(&self.weights),
            "goals" => Some(&self.goals),
            _ => None,
        }
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        match name {
            "weights" => Some(&mut self.weights),
            "goals" => Some(&mut self.goals),
            _ => None,
        }
    }
    fn show(&self, name: &str) -> String {
        line(match name {
            "ms" => self.ms,
            "bytes" => self.bytes,
            "reset_interval_ms" => self.reset_interval_ms,
            _ => self.effective_bytes,
        })
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        let v = store_ul(name, input, OnError::Einval)?;
        match name {
            "ms" => self.ms = v,
            "bytes" => self.bytes = v,
            _ => self.reset_interval_ms = v,
        }
        Ok(())
    }
}

/// `schemes/N/watermarks/`; metric `none` (always active) by default.
pub struct WatermarksDir {
    pub metric: WmarkMetric,
    pub interval_us: u64,
    pub high: u64,
    pub mid: u64,
    pub low: u64,
}

impl Default for WatermarksDir {
    fn default() -> Self {
        Self {
            metric: WmarkMetric::None,
            interval_us: 0,
            high: 0,
            mid: 0,
            low: 0,
        }
    }
}

impl Dir for WatermarksDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["metric", "interval_us", "high", "mid", "low"]
            .map(|f| (f, Access::ReadWrite))
            .to_vec()
    }
    fn show(&self, name: &str) -> String {
        match name {
            "metric" => line(self.metric.as_str()),
            "interval_us" => line(self.interval_us),
            "high" => line(self.high),
            "mid" => line(self.mid),
            _ => line(self.low),
        }
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        if name == "metric" {
            self.metric = store_keyword(name, input, WmarkMetric::NAMES)?;
            return Ok(());
        }
        let v = store_ul(name, input, OnError::Einval)?;
        match name {
            "interval_us" => self.interval_us = v,
            "high" => self.high = v,
            "mid" => self.mid = v,
            _ => self.low = v,
        }
        Ok(())
    }
}
