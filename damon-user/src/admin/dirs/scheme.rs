//! `schemes/N/`: one DAMON-based operation scheme, its access pattern and its results
//! (`stats/`, `tried_regions/`).

use super::filters::{FilterDir, Layer};
use super::quotas::{QuotasDir, WatermarksDir};
use crate::admin::error::AdminError;
use crate::admin::node::{
    Access, Dir, Numbered, OnError, UlRangeDir, child_index, line, store_int, store_keyword,
    store_ul,
};
use crate::core::scheme::{Action, SchemeStats, TriedRegion as Tried};

/// `access_pattern/`: three `[min, max]` ranges, all `0, 0` by default as in the kernel.
pub struct AccessPatternDir {
    pub sz: UlRangeDir,
    pub nr_accesses: UlRangeDir,
    pub age: UlRangeDir,
}

impl Default for AccessPatternDir {
    fn default() -> Self {
        let zero = UlRangeDir { min: 0, max: 0 };
        Self {
            sz: zero,
            nr_accesses: zero,
            age: zero,
        }
    }
}

impl Dir for AccessPatternDir {
    fn dirs(&self) -> Vec<String> {
        ["sz", "nr_accesses", "age"].map(String::from).to_vec()
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        match name {
            "sz" => Some(&self.sz),
            "nr_accesses" => Some(&self.nr_accesses),
            "age" => Some(&self.age),
            _ => None,
        }
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        match name {
            "sz" => Some(&mut self.sz),
            "nr_accesses" => Some(&mut self.nr_accesses),
            "age" => Some(&mut self.age),
            _ => None,
        }
    }
}

/// `stats/`: read-only, filled by `update_schemes_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsDir {
    pub nr_tried: u64,
    pub sz_tried: u64,
    pub nr_applied: u64,
    pub sz_applied: u64,
    pub sz_ops_filter_passed: u64,
    pub qt_exceeds: u64,
}

impl From<SchemeStats> for StatsDir {
    fn from(s: SchemeStats) -> Self {
        StatsDir {
            nr_tried: s.nr_tried,
            sz_tried: s.sz_tried,
            nr_applied: s.nr_applied,
            sz_applied: s.sz_applied,
            sz_ops_filter_passed: s.sz_ops_filter_passed,
            qt_exceeds: s.qt_exceeds,
        }
    }
}

const STATS_FILES: [&str; 6] = [
    "nr_tried",
    "sz_tried",
    "nr_applied",
    "sz_applied",
    "sz_ops_filter_passed",
    "qt_exceeds",
];

impl Dir for StatsDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        STATS_FILES.map(|f| (f, Access::ReadOnly)).to_vec()
    }
    fn show(&self, name: &str) -> String {
        line(match name {
            "nr_tried" => self.nr_tried,
            "sz_tried" => self.sz_tried,
            "nr_applied" => self.nr_applied,
            "sz_applied" => self.sz_applied,
            "sz_ops_filter_passed" => self.sz_ops_filter_passed,
            _ => self.qt_exceeds,
        })
    }
}

/// `tried_regions/N/`: one region the scheme's access pattern matched in the last snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriedRegionDir {
    pub start: u64,
    pub end: u64,
    pub nr_accesses: u32,
    pub age: u32,
    pub sz_filter_passed: u64,
}

impl Dir for TriedRegionDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["start", "end", "nr_accesses", "age", "sz_filter_passed"]
            .map(|f| (f, Access::ReadOnly))
            .to_vec()
    }
    fn show(&self, name: &str) -> String {
        match name {
            "start" => line(self.start),
            "end" => line(self.end),
            "nr_accesses" => line(self.nr_accesses),
            "age" => line(self.age),
            _ => line(self.sz_filter_passed),
        }
    }
}

/// `tried_regions/`: read-only, filled by `update_schemes_tried_regions` (regions and
/// `total_bytes`) or `update_schemes_tried_bytes` (only `total_bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriedRegionsDir {
    pub total_bytes: u64,
    pub regions: Vec<TriedRegionDir>,
}

impl TriedRegionsDir {
    /// The directory of `tried`; `bytes_only` keeps only `total_bytes`
    /// (`update_schemes_tried_bytes`).
    pub fn of(tried: &[Tried], bytes_only: bool) -> Self {
        let regions = if bytes_only { &[][..] } else { tried };
        TriedRegionsDir {
            total_bytes: tried.iter().map(|r| r.range.size()).sum(),
            regions: regions
                .iter()
                .map(|r| TriedRegionDir {
                    start: r.range.start,
                    end: r.range.end,
                    nr_accesses: r.nr_accesses,
                    age: r.age,
                    sz_filter_passed: r.sz_filter_passed,
                })
                .collect(),
        }
    }
}

impl Dir for TriedRegionsDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![("total_bytes", Access::ReadOnly)]
    }
    fn dirs(&self) -> Vec<String> {
        (0..self.regions.len()).map(|i| i.to_string()).collect()
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        child_index(name)
            .and_then(|i| self.regions.get(i))
            .map(|r| r as &dyn Dir)
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        child_index(name)
            .and_then(|i| self.regions.get_mut(i))
            .map(|r| r as &mut dyn Dir)
    }
    fn show(&self, _: &str) -> String {
        line(self.total_bytes)
    }
}

/// `schemes/N/`. Defaults as the kernel's `damon_sysfs_scheme_alloc(DAMOS_STAT, 0,
/// NUMA_NO_NODE)`.
pub struct SchemeDir {
    pub action: Action,
    pub target_nid: i32,
    pub apply_interval_us: u64,
    pub access_pattern: AccessPatternDir,
    pub quotas: QuotasDir,
    pub watermarks: WatermarksDir,
    pub filters: Numbered<FilterDir>,
    pub core_filters: Numbered<FilterDir>,
    pub ops_filters: Numbered<FilterDir>,
    pub stats: StatsDir,
    pub tried_regions: TriedRegionsDir,
}

impl Default for SchemeDir {
    fn default() -> Self {
        Self {
            action: Action::Stat,
            target_nid: -1,
            apply_interval_us: 0,
            access_pattern: AccessPatternDir::default(),
            quotas: QuotasDir::default(),
            watermarks: WatermarksDir::default(),
            filters: Numbered::new("nr_filters", || FilterDir::new(Layer::Both)),
            core_filters: Numbered::new("nr_filters", || FilterDir::new(Layer::Core)),
            ops_filters: Numbered::new("nr_filters", || FilterDir::new(Layer::Ops)),
            stats: StatsDir::default(),
            tried_regions: TriedRegionsDir::default(),
        }
    }
}

const SCHEME_DIRS: [&str; 8] = [
    "access_pattern",
    "quotas",
    "watermarks",
    "filters",
    "core_filters",
    "ops_filters",
    "stats",
    "tried_regions",
];

impl Dir for SchemeDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        ["action", "target_nid", "apply_interval_us"]
            .map(|f| (f, Access::ReadWrite))
            .to_vec()
    }
    fn dirs(&self) -> Vec<String> {
        SCHEME_DIRS.map(String::from).to_vec()
    }
    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        match name {
            "access_pattern" => Some(&self.access_pattern),
            "quotas" => Some(&self.quotas),
            "watermarks" => Some(&self.watermarks),
            "filters" => Some(&self.filters),
            "core_filters" => Some(&self.core_filters),
            "ops_filters" => Some(&self.ops_filters),
            "stats" => Some(&self.stats),
            "tried_regions" => Some(&self.tried_regions),
            _ => None,
        }
    }
    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        match name {
            "access_pattern" => Some(&mut self.access_pattern),
            "quotas" => Some(&mut self.quotas),
            "watermarks" => Some(&mut self.watermarks),
            "filters" => Some(&mut self.filters),
            "core_filters" => Some(&mut self.core_filters),
            "ops_filters" => Some(&mut self.ops_filters),
            "stats" => Some(&mut self.stats),
            "tried_regions" => Some(&mut self.tried_regions),
            _ => None,
        }
    }
    fn show(&self, name: &str) -> String {
        match name {
            "action" => line(self.action),
            "target_nid" => line(self.target_nid),
            _ => line(self.apply_interval_us),
        }
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        match name {
            "action" => self.action = store_keyword(name, input, Action::NAMES)?,
            "target_nid" => self.target_nid = store_int(name, input, OnError::AsIs)?,
            _ => self.apply_interval_us = store_ul(name, input, OnError::Einval)?,
        }
        Ok(())
    }
}
