//! The address-space side of monitoring: what the core asks of an access check.
use super::scheme::{Action, Filter};
use super::target::Pid;
use std::error::Error;

use super::region::{AddrRange, Region};

/// The target a call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRef {
    /// Index of the target in its context.
    pub idx: usize,
    pub pid: Pid,
    /// Region bounds changed (split, merge, ops update or commit) since this target's previous
    /// prepare, so an implementation that mirrors the regions in the kernel must rewrite its
    /// table before preparing. Never set on a step that also checks: the core changes regions
    /// only between a check and the next prepare.
    pub layout_changed: bool,
}

/// What one sample found for a region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Not accessed (also: no sample was in flight, or the process is gone).
    #[default]
    None,
    Accessed,
    /// The sampled page could not be measured (its Accessed bit cannot be cleared); counts as
    /// not accessed, and is reported apart.
    Unmeasured,
}

/// One target's part of a [`SampleStep`].
pub struct TargetStep<'a> {
    pub target: TargetRef,
    /// The regions. Each `sampling_addr` is the page of the sample in flight: what a check
    /// reports on.
    pub regions: &'a [Region],
    /// When preparing: the page each region's next sample checks, chosen by the core (page
    /// aligned, random in the region); ops may move it elsewhere inside the same region.
    pub next: &'a mut [u64],
    /// When checking: what the sample in flight found, per region (all `None` on entry).
    pub found: &'a mut [Access],
    /// Set by ops when the process is gone: its regions read not accessed.
    pub gone: &'a mut bool,
    /// When preparing: a seed from the core's random stream for any other page ops may pick
    /// (so runs stay reproducible from one seed).
    pub seed: u64,
}

/// One sampling step over every target of a context: check the sample in flight, prepare the
/// next, or both at once, which an access check can then do in one pass.
pub trait SampleTargets {
    fn check(&self) -> bool;
    fn prepare(&self) -> bool;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Target `i` (`i < len()`).
    fn target(&mut self, i: usize) -> TargetStep<'_>;
}

/// The [`SampleTargets`] type the core hands to [`Operations::sample`].
pub type SampleStep<'a> = dyn SampleTargets + 'a;

/// One target's regions and step buffers, owned: for driving an [`Operations`] without a
/// `MonitorContext` (tests and benchmarks of an access check).
#[derive(Clone, Debug)]
pub struct OwnedTarget {
    pub target: TargetRef,
    pub regions: Vec<Region>,
    pub next: Vec<u64>,
    pub found: Vec<Access>,
    pub gone: bool,
    pub seed: u64,
}

impl OwnedTarget {
    /// Target `idx` (process `pid`) with `regions`, each to be sampled next at its
    /// `sampling_addr`.
    pub fn new(idx: usize, pid: Pid, regions: Vec<Region>) -> Self {
        let n = regions.len();
        OwnedTarget {
            target: TargetRef {
                idx,
                pid,
                layout_changed: true,
            },
            next: regions.iter().map(|r| r.sampling_addr).collect(),
            found: vec![Access::None; n],
            regions,
            gone: false,
            seed: 0,
        }
    }
}

/// Owned targets, for driving an [`Operations`] one step at a time ([`OwnedTargets::step`]).
pub struct OwnedTargets {
    pub targets: Vec<OwnedTarget>,
}

impl OwnedTargets {
    pub fn new(targets: Vec<OwnedTarget>) -> Self {
        OwnedTargets { targets }
    }

    /// Runs one step of `ops` over the targets, as the core would: results into `found`,
    /// and after a prepare the prepared pages become the regions' `sampling_addr`, and
    /// `layout_changed` is cleared.
    pub fn step(
        &mut self,
        ops: &mut dyn Operations,
        check: bool,
        prepare: bool,
    ) -> Result<(), OpsError> {
        for t in &mut self.targets {
            t.found.iter_mut().for_each(|f| *f = Access::None);
            t.gone = false;
        }
        ops.sample(&mut Steps {
            check,
            prepare,
            targets: &mut self.targets,
        })?;
        if prepare {
            for t in &mut self.targets {
                for (r, &p) in t.regions.iter_mut().zip(&t.next) {
                    r.sampling_addr = p;
                }
                t.target.layout_changed = false;
            }
        }
        Ok(())
    }
}

/// A target whose step buffers a [`Steps`] lends to the operations.
pub(crate) trait StepTarget {
    /// Target `idx`'s regions and buffers for one step.
    fn step(&mut self, idx: usize) -> TargetStep<'_>;
}

impl StepTarget for OwnedTarget {
    fn step(&mut self, _idx: usize) -> TargetStep<'_> {
        TargetStep {
            target: self.target,
            regions: &self.regions,
            next: &mut self.next,
            found: &mut self.found,
            gone: &mut self.gone,
            seed: self.seed,
        }
    }
}

/// Targets as one sampling step: what the core (and [`OwnedTargets`]) pass to
/// [`Operations::sample`].
pub(crate) struct Steps<'a, T> {
    pub check: bool,
    pub prepare: bool,
    pub targets: &'a mut [T],
}

impl<T: StepTarget> SampleTargets for Steps<'_, T> {
    fn check(&self) -> bool {
        self.check
    }

    fn prepare(&self) -> bool {
        self.prepare
    }

    fn len(&self) -> usize {
        self.targets.len()
    }

    fn target(&mut self, i: usize) -> TargetStep<'_> {
        self.targets[i].step(i)
    }
}

/// A failed call into [`Operations`].
///
/// The core treats the two kinds differently: [`OpsError::TargetGone`] affects one target (its
/// regions read "not accessed", as in the kernel when `damon_get_mm()` fails), while
/// [`OpsError::Failed`] stops the kdamond, with the error as its exit reason.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("process {pid} is gone")]
    TargetGone { pid: Pid },
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

impl OpsError {
    pub fn failed(
        context: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        OpsError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// The address-space side of monitoring, like the kernel's `struct damon_operations`.
pub trait Operations: Send + 'static {
    /// vaddr: the target's memory mappings, sorted, non-overlapping (the core derives the three
    /// regions). `Err(TargetGone)` when the process is gone.
    fn mappings(&mut self, pid: Pid) -> Result<Vec<AddrRange>, OpsError>;

    /// Whether the process still exists; a kdamond none of whose targets is valid stops.
    fn target_valid(&mut self, pid: Pid) -> bool;

    /// One sample step over all targets (see [`SampleTargets`]): when `step.check()`, report
    /// in `found` what the sample in flight found; when `step.prepare()`, prepare the next
    /// sample at the `next` pages (clearing their Accessed bits), which the core makes the
    /// regions' `sampling_addr` afterwards. A check and a prepare in one step let an
    /// implementation read the old pages and set up the new ones in a single pass.
    ///
    /// A target whose process is gone sets `gone`; any other error stops the kdamond.
    fn sample(&mut self, step: &mut SampleStep<'_>) -> Result<(), OpsError>;

    /// Applies DAMOS `action` to `range` of process `pid` and returns the bytes it was applied
    /// to: the whole range or 0, as the kernel's madvise-based actions. By default nothing is
    /// applied.
    fn apply_scheme(&mut self, pid: Pid, range: AddrRange, action: Action) -> u64 {
        let _ = (pid, range, action);
        0
    }

    /// Bytes of the folios mapped in `range` of process `pid` that the folio filters let
    /// through (`stat` with such filters: vaddr's `damos_va_stat()`); `core_allowed`: a core
    /// filter allowed the region, so every folio passes. By default nothing is counted.
    fn filter_passed(
        &mut self,
        pid: Pid,
        range: AddrRange,
        filters: &[Filter],
        core_allowed: bool,
    ) -> u64 {
        let _ = (pid, range, filters, core_allowed);
        0
    }

    /// The kdamond is stopping.
    fn cleanup(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Chain;

    #[test]
    fn failed_shows_its_context_and_the_chain_its_source() {
        let err = OpsError::failed(
            "reading page tables of pid 7",
            std::io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(err.to_string(), "reading page tables of pid 7");
        assert_eq!(
            Chain(&err).to_string(),
            "reading page tables of pid 7: Operation not permitted (os error 1)"
        );
        assert_eq!(
            Chain(&OpsError::TargetGone { pid: Pid(3) }).to_string(),
            "process 3 is gone"
        );
    }
}
