//! `contexts/N/`: operations, monitoring attributes and targets of one monitoring context
//! (its schemes are in [`super::scheme`]).

use super::scheme::SchemeDir;
use crate::admin::error::AdminError;
use crate::admin::node::{
    Access, Dir, Numbered, OnError, UlRangeDir, keyword, line, store_int, store_keyword, store_ul,
};
use crate::core::OpsId;

/// `intervals/intervals_goal/`: the auto-tuning goal, all zero (off) by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalsGoalDir {
    pub access_bp: u64,
    pub aggrs: u64,
    pub min_sample_us: u64,
    pub max_sample_us: u64,
}

impl Dir for IntervalsGoalDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["access_bp", "aggrs", "min_sample_us", "max_sample_us"]
            .map(|f| (f, Access::ReadWrite))
            .to_vec()
    }
    fn show(&self, name: &str) -> String {
        line(match name {
            "access_bp" => self.access_bp,
            "aggrs" => self.aggrs,
            "min_sample_us" => self.min_sample_us,
            _ => self.max_sample_us,
        })
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        let v = store_ul(name, input, OnError::AsIs)?;
        match name {
            "access_bp" => self.access_bp = v,
            "aggrs" => self.aggrs = v,
            "min_sample_us" => self.min_sample_us = v,
            _ => self.max_sample_us = v,
        }
        Ok(())
    }
}

/// `monitoring_attrs/intervals/`, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalsDir {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub update_us: u64,
    pub goal: IntervalsGoalDir,
}

impl Default for IntervalsDir {
    /// The kernel's defaults: 5 ms sampling, 100 ms aggregation, 60 s operations update.
    fn default() -> Self {
        Self {
            sample_us: 5_000,
            aggr_us: 100_000,
            update_us: 60_000_000,
            goal: IntervalsGoalDir::default(),
        }
    }
}

impl Dir for IntervalsDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["sample_us", "aggr_us", "update_us"]
            .map(|f| (f, Access::ReadWrite))
            .to_vec()
    }
    fn dirs(&self) -> Vec<String> {
        vec!["intervals_goal".into()]
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        (name == "intervals_goal").then_some(&self.goal as &dyn Dir)
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        (name == "intervals_goal").then_some(&mut self.goal as &mut dyn Dir)
    }
    fn show(&self, name: &str) -> String {
        line(match name {
            "sample_us" => self.sample_us,
            "aggr_us" => self.aggr_us,
            _ => self.update_us,
        })
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        let v = store_ul(name, input, OnError::AsIs)?;
        match name {
            "sample_us" => self.sample_us = v,
            "aggr_us" => self.aggr_us = v,
            _ => self.update_us = v,
        }
        Ok(())
    }
}

/// `monitoring_attrs/`.
pub struct MonitoringAttrsDir {
    pub intervals: IntervalsDir,
    pub nr_regions: UlRangeDir,
}

impl Default for MonitoringAttrsDir {
    fn default() -> Self {
        Self {
            intervals: IntervalsDir::default(),
            nr_regions: UlRangeDir { min: 10, max: 1000 },
        }
    }
}

impl Dir for MonitoringAttrsDir {
    fn dirs(&self) -> Vec<String> {
        vec!["intervals".into(), "nr_regions".into()]
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        match name {
            "intervals" => Some(&self.intervals),
            "nr_regions" => Some(&self.nr_regions),
            _ => None,
        }
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        match name {
            "intervals" => Some(&mut self.intervals),
            "nr_regions" => Some(&mut self.nr_regions),
            _ => None,
        }
    }
}

/// `targets/N/regions/M/`: an initial monitoring region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionDir {
    pub start: u64,
    pub end: u64,
}

impl Dir for RegionDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![("start", Access::ReadWrite), ("end", Access::ReadWrite)]
    }
    fn show(&self, name: &str) -> String {
        line(if name == "start" {
            self.start
        } else {
            self.end
        })
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        let v = store_ul(name, input, OnError::AsIs)?;
        if name == "start" {
            self.start = v;
        } else {
            self.end = v;
        }
        Ok(())
    }
}

/// `targets/N/`: a monitored process and its optional initial regions.
pub struct TargetDir {
    pub pid: i32,
    pub regions: Numbered<RegionDir>,
}

impl Default for TargetDir {
    fn default() -> Self {
        Self {
            pid: 0,
            regions: Numbered::new("nr_regions", RegionDir::default),
        }
    }
}

impl Dir for TargetDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![("pid_target", Access::ReadWrite)]
    }
    fn dirs(&self) -> Vec<String> {
        vec!["regions".into()]
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        (name == "regions").then_some(&self.regions as &dyn Dir)
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        (name == "regions").then_some(&mut self.regions as &mut dyn Dir)
    }
    fn show(&self, _: &str) -> String {
        line(self.pid)
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        self.pid = store_int(name, input, OnError::Einval)?;
        Ok(())
    }
}

/// `contexts/N/`.
pub struct ContextDir {
    pub operations: OpsId,
    /// Scale of addresses for paddr (6.18); only 1 is meaningful for virtual addresses.
    pub addr_unit: u64,
    pub attrs: MonitoringAttrsDir,
    pub targets: Numbered<TargetDir>,
    pub schemes: Numbered<SchemeDir>,
}

impl Default for ContextDir {
    fn default() -> Self {
        Self {
            operations: OpsId::Vaddr,
            addr_unit: 1,
            attrs: MonitoringAttrsDir::default(),
            targets: Numbered::new("nr_targets", TargetDir::default),
            schemes: Numbered::new("nr_schemes", SchemeDir::default),
        }
    }
}

impl Dir for ContextDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![
            ("avail_operations", Access::ReadOnly),
            ("operations", Access::ReadWrite),
            ("addr_unit", Access::ReadWrite),
        ]
    }
    fn dirs(&self) -> Vec<String> {
        ["monitoring_attrs", "targets", "schemes"]
            .map(String::from)
            .to_vec()
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        match name {
            "monitoring_attrs" => Some(&self.attrs),
            "targets" => Some(&self.targets),
            "schemes" => Some(&self.schemes),
            _ => None,
        }
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        match name {
            "monitoring_attrs" => Some(&mut self.attrs),
            "targets" => Some(&mut self.targets),
            "schemes" => Some(&mut self.schemes),
            _ => None,
        }
    }
    fn show(&self, name: &str) -> String {
        match name {
            "avail_operations" => OpsId::SUPPORTED
                .iter()
                .map(|&ops| line(keyword(ops, &OpsId::NAMES)))
                .collect(),
            "operations" => line(keyword(self.operations, &OpsId::NAMES)),
            _ => line(self.addr_unit),
        }
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        match name {
            "operations" => self.operations = store_keyword(name, input, &OpsId::NAMES)?,
            _ => self.addr_unit = store_ul(name, input, OnError::AsIs)?,
        }
        Ok(())
    }
}
