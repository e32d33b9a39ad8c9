//! The monitoring engine of one context: the kdamond loop of DAMON as a state machine that is
//! stepped one sample at a time, with no threads or clocks of its own.
//!
//! A sample is two steps because the access check needs time to pass in between:
//! [`MonitorContext::prepare`] picks the pages to check and lets the operations clear their
//! Accessed bits; after the sample interval, [`MonitorContext::check`] reads them back, counts,
//! and, when due, ends the aggregation interval (merge, report, reset, split) and runs the ops
//! update. Time is counted in samples, as in the kernel.
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::aggregate::{
    merge_regions, reset_aggregated, split_pieces, split_regions_of, update_access_rate,
};
use super::attrs::{Attrs, ContextSpec, OpsKind, TargetSpec};
use super::commit::rescale_region;
use super::error::CoreError;
use super::ops::{Operations, OpsError, TargetRef};
use super::region::{AddrRange, PAGE_SIZE, Region};
use super::snapshot::{Snapshot, TargetSnapshot};
use super::vaddr::{apply_ranges, initial_regions, region_size_limit, three_regions};

/// The current regions of one target, as served by `regions_now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTarget {
    pub target_idx: usize,
    pub pid: i32,
    pub regions: Vec<Region>,
}

struct Target {
    pid: i32,
    regions: Vec<Region>,
    /// vaddr: the initial regions are still to be built, at the next prepare.
    needs_init: bool,
    /// Region bounds changed since the last completed check (see [`TargetRef::layout_changed`]).
    layout_changed: bool,
    /// The prepare of the current sample found the process gone: its regions read not accessed.
    gone: bool,
}

impl Target {
    fn new(spec: &TargetSpec, ops: OpsKind) -> Self {
        let mut target = Target {
            pid: spec.pid,
            regions: Vec::new(),
            needs_init: ops == OpsKind::Vaddr,
            layout_changed: true,
            gone: false,
        };
        if ops == OpsKind::Fvaddr {
            target.set_fixed_ranges(&spec.aligned_ranges());
        }
        target
    }

    /// fvaddr: the user's ranges are the regions, keeping the counters of regions that survive.
    fn set_fixed_ranges(&mut self, ranges: &[AddrRange]) {
        self.layout_changed |= apply_ranges(&mut self.regions, ranges);
        self.needs_init = false;
    }

    /// vaddr: builds the initial regions from the mappings, or, once regions exist, applies the
    /// new three regions to them. With fewer than two gaps nothing changes (retried at the next
    /// update).
    fn follow_mappings(&mut self, mut mappings: Vec<AddrRange>, min_nr_regions: u64) {
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

    fn target_ref(&self, idx: usize) -> TargetRef {
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

/// One context's monitoring state and algorithm. See the module documentation.
pub struct MonitorContext {
    kdamond_idx: usize,
    ops_kind: OpsKind,
    attrs: Attrs,
    targets: Vec<Target>,
    rng: SmallRng,
    passed_samples: u64,
    next_aggregation_sample: u64,
    next_update_sample: u64,
    /// Largest region a merge may build.
    sz_limit: u64,
    /// Region count at the previous split, for the 3-way rule.
    last_nr_regions: u64,
    aggr_start_ns: u64,
    /// Reused per-target buffer for `check_accesses`.
    accessed: Vec<bool>,
    /// Reused buffer for splitting.
    scratch: Vec<Region>,
}

/// A random page of `r`, the page its next sample checks.
fn random_page(rng: &mut SmallRng, r: &Region) -> u64 {
    let pages = (r.size() / PAGE_SIZE).max(1);
    r.start + rng.random_range(0..pages) * PAGE_SIZE
}

impl MonitorContext {
    /// Validates `spec` and sets up the context. `seed` seeds the random choices (sampled pages,
    /// split points) so runs are reproducible; `now_ns` starts the first aggregation interval.
    /// vaddr regions are built at the first [`prepare`](Self::prepare), fvaddr regions now.
    pub fn new(
        kdamond_idx: usize,
        spec: ContextSpec,
        seed: u64,
        now_ns: u64,
    ) -> Result<Self, CoreError> {
        spec.validate()?;
        let mut ctx = MonitorContext {
            kdamond_idx,
            ops_kind: spec.ops,
            attrs: spec.attrs,
            targets: spec
                .targets
                .iter()
                .map(|t| Target::new(t, spec.ops))
                .collect(),
            rng: SmallRng::seed_from_u64(seed),
            passed_samples: 0,
            next_aggregation_sample: spec.attrs.aggr_samples(),
            next_update_sample: spec.attrs.update_samples(),
            sz_limit: PAGE_SIZE,
            last_nr_regions: 0,
            aggr_start_ns: now_ns,
            accessed: Vec::new(),
            scratch: Vec::new(),
        };
        ctx.update_sz_limit();
        Ok(ctx)
    }

    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    pub fn ops_kind(&self) -> OpsKind {
        self.ops_kind
    }

    pub fn kdamond_idx(&self) -> usize {
        self.kdamond_idx
    }

    /// Samples taken since the start.
    pub fn passed_samples(&self) -> u64 {
        self.passed_samples
    }

    /// The largest region a merge may currently build.
    pub fn sz_limit(&self) -> u64 {
        self.sz_limit
    }

    pub fn nr_targets(&self) -> usize {
        self.targets.len()
    }

    pub fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.targets.iter().map(|t| t.pid)
    }

    /// Regions of all targets.
    pub fn nr_regions(&self) -> usize {
        self.targets.iter().map(|t| t.regions.len()).sum()
    }

    /// The regions of target `idx`, if it exists.
    pub fn regions(&self, idx: usize) -> Option<&[Region]> {
        self.targets.get(idx).map(|t| t.regions.as_slice())
    }

    /// A copy of every target's current regions, counters included.
    pub fn live_targets(&self) -> Vec<LiveTarget> {
        self.targets
            .iter()
            .enumerate()
            .map(|(target_idx, t)| LiveTarget {
                target_idx,
                pid: t.pid,
                regions: t.regions.clone(),
            })
            .collect()
    }

    /// Whether any target is still valid; a kdamond stops once none is (`kdamond_need_stop()`).
    pub fn any_target_valid(&self, ops: &mut dyn Operations) -> bool {
        self.targets.iter().any(|t| ops.target_valid(t.pid))
    }

    /// First half of a sample: builds pending initial regions, picks each region's sampling page
    /// and lets `ops` prepare the check. A target whose process is gone reads not accessed for
    /// this sample; any other ops error is returned.
    pub fn prepare(&mut self, ops: &mut dyn Operations) -> Result<(), OpsError> {
        self.init_pending(ops)?;
        for (idx, t) in self.targets.iter_mut().enumerate() {
            t.gone = false;
            if t.regions.is_empty() {
                continue;
            }
            for r in t.regions.iter_mut() {
                r.sampling_addr = random_page(&mut self.rng, r);
            }
            match ops.prepare_access_checks(&t.target_ref(idx), &mut t.regions) {
                Ok(()) => {}
                Err(OpsError::TargetGone { .. }) => t.gone = true,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Second half of a sample, after the sample interval: counts the accesses `ops` found, and
    /// when due ends the aggregation interval, returning its snapshot (which ends at `now_ns`),
    /// and runs the ops update.
    pub fn check(
        &mut self,
        ops: &mut dyn Operations,
        now_ns: u64,
    ) -> Result<Option<Snapshot>, OpsError> {
        self.passed_samples += 1;
        let max_nr_accesses = self.attrs.max_nr_accesses();
        for (idx, t) in self.targets.iter_mut().enumerate() {
            if t.regions.is_empty() {
                continue;
            }
            let accessed = &mut self.accessed;
            accessed.clear();
            accessed.resize(t.regions.len(), false);
            if !t.gone {
                match ops.check_accesses(&t.target_ref(idx), &t.regions, accessed) {
                    Ok(()) => t.layout_changed = false,
                    // The process died between prepare and check: nothing was accessed.
                    Err(OpsError::TargetGone { .. }) => accessed.fill(false),
                    Err(err) => return Err(err),
                }
            }
            for (r, &was_accessed) in t.regions.iter_mut().zip(accessed.iter()) {
                update_access_rate(r, was_accessed, max_nr_accesses);
            }
        }
        let snapshot = if self.passed_samples >= self.next_aggregation_sample {
            self.next_aggregation_sample = self
                .next_aggregation_sample
                .saturating_add(self.attrs.aggr_samples());
            Some(self.aggregate(now_ns))
        } else {
            None
        };
        if self.passed_samples >= self.next_update_sample {
            self.next_update_sample = self
                .next_update_sample
                .saturating_add(self.attrs.update_samples());
            self.update(ops)?;
        }
        Ok(snapshot)
    }

    /// [`prepare`](Self::prepare) then [`check`](Self::check) with no time between: for tests
    /// and simulations, where accesses do not depend on wall time.
    pub fn sample(
        &mut self,
        ops: &mut dyn Operations,
        now_ns: u64,
    ) -> Result<Option<Snapshot>, OpsError> {
        self.prepare(ops)?;
        self.check(ops, now_ns)
    }

    /// Applies a new spec to the running context (`damon_commit_ctx()`): targets are matched by
    /// index; one with the same pid keeps its regions (fvaddr ranges are applied to them), one
    /// with another pid starts afresh, since the old process's regions say nothing about the new
    /// one. If the attributes changed, counters are rescaled, the aggregation and update
    /// intervals restart, and so does the snapshot's interval, at `now_ns`. On error nothing
    /// changes.
    pub fn commit(&mut self, spec: ContextSpec, now_ns: u64) -> Result<(), CoreError> {
        spec.validate()?;
        let mut old = std::mem::take(&mut self.targets).into_iter();
        self.targets = spec
            .targets
            .iter()
            .map(|ts| match old.next() {
                Some(mut t) if t.pid == ts.pid => {
                    // vaddr keeps the regions; the next ops update fits them to the mappings.
                    if spec.ops == OpsKind::Fvaddr {
                        t.set_fixed_ranges(&ts.aligned_ranges());
                    }
                    t
                }
                _ => Target::new(ts, spec.ops),
            })
            .collect();
        if spec.attrs != self.attrs {
            // In the kernel's terms: between samples the context is always mid-aggregation, as
            // the next aggregation is scheduled as soon as one ends.
            let aggregating = self.passed_samples < self.next_aggregation_sample;
            for r in self.targets.iter_mut().flat_map(|t| t.regions.iter_mut()) {
                rescale_region(r, &self.attrs, &spec.attrs, aggregating);
            }
            self.next_aggregation_sample = self
                .passed_samples
                .saturating_add(spec.attrs.aggr_samples());
            self.next_update_sample = self
                .passed_samples
                .saturating_add(spec.attrs.update_samples());
            self.aggr_start_ns = now_ns;
            self.attrs = spec.attrs;
        }
        self.ops_kind = spec.ops;
        // The kernel only recomputes this at the next ops update; doing it now makes a new
        // min_nr_regions effective at once.
        self.update_sz_limit();
        Ok(())
    }

    fn update_sz_limit(&mut self) {
        // Saturating: fvaddr ranges are user input, and two targets may each span most of the
        // address space.
        let total = self
            .targets
            .iter()
            .flat_map(|t| t.regions.iter())
            .fold(0u64, |sum, r| sum.saturating_add(r.size()));
        self.sz_limit = region_size_limit(total, self.attrs.min_nr_regions);
    }

    /// vaddr `init`: the initial regions of targets that have none yet.
    fn init_pending(&mut self, ops: &mut dyn Operations) -> Result<(), OpsError> {
        let mut any = false;
        for t in self.targets.iter_mut().filter(|t| t.needs_init) {
            t.needs_init = false;
            match ops.mappings(t.pid) {
                Ok(mappings) => t.follow_mappings(mappings, self.attrs.min_nr_regions),
                Err(OpsError::TargetGone { .. }) => {}
                Err(err) => return Err(err),
            }
            any = true;
        }
        if any {
            self.update_sz_limit();
        }
        Ok(())
    }

    /// Ends an aggregation interval: merge (and age), report, reset, split.
    fn aggregate(&mut self, now_ns: u64) -> Snapshot {
        let max_nr_accesses = self.attrs.max_nr_accesses();
        let changed = merge_regions(
            &mut self.targets,
            max_nr_accesses / 10,
            max_nr_accesses,
            self.sz_limit,
            self.attrs.max_nr_regions,
        );
        for (t, changed) in self.targets.iter_mut().zip(changed) {
            t.layout_changed |= changed;
        }
        let snapshot = self.snapshot(now_ns);
        for t in self.targets.iter_mut() {
            reset_aggregated(&mut t.regions);
        }
        self.split();
        self.aggr_start_ns = now_ns;
        snapshot
    }

    fn split(&mut self) {
        let nr_regions = self.nr_regions() as u64;
        let Some(nr_subs) =
            split_pieces(nr_regions, self.last_nr_regions, self.attrs.max_nr_regions)
        else {
            return;
        };
        for t in self.targets.iter_mut() {
            t.layout_changed |=
                split_regions_of(&mut t.regions, nr_subs, &mut self.rng, &mut self.scratch);
        }
        self.last_nr_regions = nr_regions;
    }

    /// vaddr ops update: follow the mappings. fvaddr ranges never change.
    fn update(&mut self, ops: &mut dyn Operations) -> Result<(), OpsError> {
        if self.ops_kind != OpsKind::Vaddr {
            return Ok(());
        }
        for t in self.targets.iter_mut() {
            match ops.mappings(t.pid) {
                Ok(mappings) => t.follow_mappings(mappings, self.attrs.min_nr_regions),
                Err(OpsError::TargetGone { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        self.update_sz_limit();
        Ok(())
    }

    fn snapshot(&self, end_ns: u64) -> Snapshot {
        Snapshot {
            kdamond_idx: self.kdamond_idx,
            context_idx: 0,
            start_ns: self.aggr_start_ns,
            end_ns,
            intervals: self.attrs.intervals(),
            targets: self
                .targets
                .iter()
                .enumerate()
                .map(|(target_idx, t)| TargetSnapshot {
                    target_idx,
                    pid: t.pid,
                    regions: t.regions.iter().map(Region::snapshot).collect(),
                })
                .collect(),
        }
    }
}
