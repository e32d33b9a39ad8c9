//! A monitoring target: a process ([`TargetSpec`] as asked, [`LiveTarget`] as served), and
//! the per-target state the engine keeps between samples: its regions, the pages of its next
//! sample, what the last check found.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::attrs::OpsId;
use super::error::CoreError;
use super::ops::{Access, TargetRef};
use super::region::{AddrRange, Region};
use super::vaddr::{apply_ranges, initial_regions, three_regions};

/// A process id: the thread-group id of a monitored process. The kernel's `pid_t`; a target's
/// is positive ([`TargetSpec`] validation refuses others), and the eBPF tables key targets by
/// it as the kernel's `u32` tgid ([`Pid::tgid_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pid(pub i32);

impl Pid {
    /// The raw `pid_t`.
    pub fn get(self) -> i32 {
        self.0
    }

    /// The key of this process in the programs' tables, which hold the kernel's `u32` tgid;
    /// `None` for a pid no process can have (zero or negative).
    pub fn tgid_key(self) -> Option<u32> {
        u32::try_from(self.0).ok().filter(|&k| k > 0)
    }

    /// This process: the monitor itself.
    pub fn this() -> Self {
        Pid(std::process::id() as i32)
    }
}

impl From<i32> for Pid {
    fn from(pid: i32) -> Self {
        Pid(pid)
    }
}

impl PartialEq<i32> for Pid {
    fn eq(&self, other: &i32) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A pid as given on a command line: a positive whole number.
impl FromStr for Pid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(Pid(pid)),
            _ => Err(format!(
                "{s:?} is not a process id (a positive whole number)"
            )),
        }
    }
}

/// One monitoring target: a process, and for `fvaddr` the ranges to monitor in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    pub pid: Pid,
    /// Used only by `fvaddr`: non-empty, sorted and non-overlapping once rounded outward to pages.
    pub ranges: Vec<AddrRange>,
}

impl TargetSpec {
    /// A `vaddr` target: regions follow the process's mappings.
    pub fn vaddr(pid: impl Into<Pid>) -> Self {
        Self {
            pid: pid.into(),
            ranges: Vec::new(),
        }
    }

    /// An `fvaddr` target monitoring exactly `ranges` of the process.
    pub fn fvaddr(pid: impl Into<Pid>, ranges: Vec<AddrRange>) -> Self {
        Self {
            pid: pid.into(),
            ranges,
        }
    }

    /// The ranges rounded outward to pages, as the regions of an `fvaddr` target start out.
    pub fn aligned_ranges(&self) -> Vec<AddrRange> {
        self.ranges
            .iter()
            .map(AddrRange::page_aligned_outward)
            .collect()
    }

    pub(super) fn validate(&self, ops: OpsId) -> Result<(), CoreError> {
        if self.pid.get() <= 0 {
            return Err(CoreError::InvalidPid { pid: self.pid });
        }
        if ops != OpsId::Fvaddr {
            return Ok(());
        }
        if self.ranges.is_empty() {
            return Err(CoreError::NoRanges { pid: self.pid });
        }
        // Empty as given, or once rounded (a range in the last page of the address space).
        if let Some(range) = self
            .ranges
            .iter()
            .find(|r| r.is_empty() || r.page_aligned_outward().is_empty())
        {
            return Err(CoreError::EmptyRange {
                pid: self.pid,
                range: *range,
            });
        }
        // Rounding can make ranges that were apart in bytes share a page: check after it.
        let aligned = self.aligned_ranges();
        if let Some(pair) = aligned.windows(2).find(|w| w[0].end > w[1].start) {
            return Err(CoreError::OverlappingRanges {
                pid: self.pid,
                prev: pair[0],
                next: pair[1],
            });
        }
        Ok(())
    }
}

/// The current regions of one target, as served by `regions_now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTarget {
    pub target_idx: usize,
    pub pid: Pid,
    pub regions: Vec<Region>,
}

/// One target inside the engine.
pub(super) struct Target {
    pub(super) pid: Pid,
    pub(super) regions: Vec<Region>,
    /// vaddr: the initial regions are still to be built, at the next prepare.
    pub(super) needs_init: bool,
    /// Region bounds changed since the last completed check (see [`TargetRef::layout_changed`]).
    pub(super) layout_changed: bool,
    /// The last step found the process gone: its regions read not accessed.
    pub(super) gone: bool,
    /// Per region: the page of its next sample, while a step prepares it.
    pub(super) next: Vec<u64>,
    /// Per region: what the last check found.
    pub(super) found: Vec<Access>,
    /// Seed of the alternative pages the operations may sample instead of `next`.
    pub(super) seed: u64,
}

impl Target {
    pub(super) fn new(spec: &TargetSpec, ops: OpsId) -> Self {
        let mut target = Target {
            pid: spec.pid,
            regions: Vec::new(),
            needs_init: ops == OpsId::Vaddr,
            layout_changed: true,
            gone: false,
            next: Vec::new(),
            found: Vec::new(),
            seed: 0,
        };
        if ops == OpsId::Fvaddr {
            target.set_fixed_ranges(&spec.aligned_ranges());
        }
        target
    }

    /// fvaddr: the user's ranges are the regions, keeping the counters of regions that survive.
    pub(super) fn set_fixed_ranges(&mut self, ranges: &[AddrRange]) {
        self.layout_changed |= apply_ranges(&mut self.regions, ranges);
        self.needs_init = false;
    }

    /// vaddr: builds the initial regions from the mappings, or, once regions exist, applies the
    /// new three regions to them. With fewer than two gaps nothing changes (retried at the next
    /// update).
    pub(super) fn follow_mappings(&mut self, mut mappings: Vec<AddrRange>, min_nr_regions: u64) {
        mappings.sort_unstable_by_key(|m| m.start);
        let Some(three) = three_regions(&mappings) else {
            return;
        };
        if self.regions.is_empty() {
            self.regions = initial_regions(&three, min_nr_regions);
            self.layout_changed = true;
        } else {
            self.layout_changed |= apply_ranges(&mut self.regions, &three);
        }
    }

    pub(super) fn target_ref(&self, idx: usize) -> TargetRef {
        TargetRef {
            idx,
            pid: self.pid,
            layout_changed: self.layout_changed,
        }
    }
}

impl AsMut<Vec<Region>> for Target {
    fn as_mut(&mut self) -> &mut Vec<Region> {
        &mut self.regions
    }
}
