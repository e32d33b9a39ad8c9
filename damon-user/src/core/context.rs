//! The monitoring engine of one context: the kdamond loop of DAMON as a state machine that is
//! stepped one sample at a time, with no threads or clocks of its own.
//!
//! A sample spans a sample interval: [`MonitorContext::prepare`] picks the pages to check and
//! lets the operations clear their Accessed bits; after the interval,
//! [`MonitorContext::sample`] has them read back, counts, and, when due, ends the aggregation
//! interval (merge, report, reset, split) and runs the ops update. Time is counted in samples,
//! as in the kernel.
//!
//! The check of one sample and the prepare of the next go to the operations as one step, so
//! an access check can do both in a single pass over the page tables. Only when the regions
//! are about to change (an aggregation, an ops update, a commit) does the step check alone;
//! the next one is then prepared on the new regions, as the kernel does.
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::aggregate::{
    merge_regions, reset_aggregated, split_pieces, split_regions_of, update_access_rate,
};
use super::attrs::{Attrs, ContextSpec, OpsId};
use super::commit::rescale_region;
use super::error::CoreError;
use super::ops::{Access, Operations, OpsError};
use super::region::{PAGE_SIZE, Region};
use super::sample;
use super::scheme::{self, QuotaGoal, Scheme, SchemeRun, SchemeStats, TriedRegion, WmarkMetric};
use super::snapshot::{Snapshot, TargetSnapshot};
use super::target::{LiveTarget, Pid, Target};
use super::tune;
use super::vaddr::region_size_limit;

/// One context's monitoring state and algorithm. See the module documentation.
pub struct MonitorContext {
    kdamond_idx: usize,
    ops_id: OpsId,
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
    /// A sample is in flight: prepared, not yet checked.
    prepared: bool,
    /// Aggregations until the intervals are tuned next (with an intervals goal).
    tune_countdown: u64,
    /// Reused buffer for splitting.
    scratch: Vec<Region>,
    /// DAMOS: the schemes, applied when due.
    schemes: Vec<SchemeRun>,
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
            ops_id: spec.ops,
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
            prepared: false,
            tune_countdown: spec.attrs.intervals_goal.aggrs,
            scratch: Vec::new(),
            schemes: Vec::new(),
        };
        ctx.update_sz_limit();
        Ok(ctx)
    }

    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    pub fn ops_id(&self) -> OpsId {
        self.ops_id
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

    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
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

    /// Whether a sample is in flight (prepared and not yet checked).
    pub fn is_prepared(&self) -> bool {
        self.prepared
    }

    /// Forgets the sample in flight: the next one is prepared anew (after a pause, so that a
    /// check never spans it).
    pub fn discard_sample(&mut self) {
        self.prepared = false;
    }

    /// Checks every scheme's watermarks (`kdamond_wait_activation()`): 0 when monitoring goes
    /// on (a scheme is active, or there is none), else how long to pause before checking
    /// again, in microseconds. `metric` gives a watermark metric's value now.
    pub fn wmark_wait_us(&mut self, metric: &mut dyn FnMut(WmarkMetric) -> u64) -> u64 {
        self.schemes
            .iter_mut()
            .map(|s| s.wmark_wait_us(metric))
            .min()
            .unwrap_or(0)
    }

    /// Ends every tried-regions walk unfinished: it is cancelled (all schemes inactive).
    pub fn cancel_walk(&mut self) {
        self.schemes.iter_mut().for_each(SchemeRun::cancel_walk);
    }

    /// Starts a sample: builds pending initial regions, picks each region's sampling page and
    /// lets `ops` prepare the check. Needed before the first sample interval, and again after
    /// [`sample`](Self::sample) returned with no sample in flight ([`is_prepared`] false).
    ///
    /// [`is_prepared`]: Self::is_prepared
    pub fn prepare(&mut self, ops: &mut dyn Operations) -> Result<(), OpsError> {
        self.init_pending(ops)?;
        self.step(ops, false, true)?;
        self.prepared = true;
        Ok(())
    }

    /// A sample interval has passed: checks the sample in flight and counts, prepares the next
    /// sample in the same step unless the regions are about to change, and, when due, ends the
    /// aggregation interval, returning its snapshot (which ends at `now_ns`), and runs the ops
    /// update. Without a sample in flight it prepares one first, with no time in between (for
    /// tests and simulations, where accesses do not depend on wall time).
    pub fn sample(
        &mut self,
        ops: &mut dyn Operations,
        now_ns: u64,
    ) -> Result<Option<Snapshot>, OpsError> {
        self.sample_then(ops, now_ns, true)
    }

    /// Like [`sample`](Self::sample), but leaves no sample in flight, so the regions can be
    /// changed (a commit) before [`prepare`](Self::prepare).
    pub fn sample_and_pause(
        &mut self,
        ops: &mut dyn Operations,
        now_ns: u64,
    ) -> Result<Option<Snapshot>, OpsError> {
        self.sample_then(ops, now_ns, false)
    }

    fn sample_then(
        &mut self,
        ops: &mut dyn Operations,
        now_ns: u64,
        may_prepare: bool,
    ) -> Result<Option<Snapshot>, OpsError> {
        if !self.prepared {
            self.prepare(ops)?;
        }
        self.passed_samples += 1;
        let aggregating = self.passed_samples >= self.next_aggregation_sample;
        let updating = self.passed_samples >= self.next_update_sample;
        // A scheme pass may split regions, as the merge and the ops update may.
        let schemes_due = scheme::any_due(&self.schemes, self.passed_samples);
        let prepare_next = may_prepare && !aggregating && !updating && !schemes_due;
        self.prepared = false;
        self.step(ops, true, prepare_next)?;
        self.prepared = prepare_next;
        let max_nr_accesses = self.attrs.max_nr_accesses();
        for t in self.targets.iter_mut() {
            for (r, &found) in t.regions.iter_mut().zip(t.found.iter()) {
                update_access_rate(r, found == Access::Accessed, max_nr_accesses);
                if found == Access::Unmeasured {
                    r.nr_unmeasured = r.nr_unmeasured.saturating_add(1);
                }
            }
        }
        if aggregating {
            self.merge();
        }
        if schemes_due {
            scheme::apply_schemes(
                &mut self.schemes,
                &mut self.targets,
                &self.attrs,
                self.passed_samples,
                now_ns,
                ops,
            );
        }
        let snapshot = if aggregating {
            self.next_aggregation_sample = self
                .passed_samples
                .saturating_add(self.attrs.aggr_samples());
            Some(self.aggregate(now_ns))
        } else {
            None
        };
        if updating {
            // From now, not from the due sample: a tuning may have just changed the interval.
            self.next_update_sample = self
                .passed_samples
                .saturating_add(self.attrs.update_samples());
            self.update(ops)?;
        }
        Ok(snapshot)
    }

    /// One call of [`Operations::sample`] over every target (see [`super::sample`]).
    fn step(
        &mut self,
        ops: &mut dyn Operations,
        check: bool,
        prepare: bool,
    ) -> Result<(), OpsError> {
        sample::step(&mut self.targets, &mut self.rng, ops, check, prepare)
    }

    /// Applies a new spec to the running context (`damon_commit_ctx()`): targets are matched by
    /// index; one with the same pid keeps its regions (fvaddr ranges are applied to them), one
    /// with another pid starts afresh, since the old process's regions say nothing about the new
    /// one. If the attributes changed, counters are rescaled, the aggregation and update
    /// intervals restart, and so does the snapshot's interval, at `now_ns`. On error nothing
    /// changes.
    pub fn commit(&mut self, spec: ContextSpec, now_ns: u64) -> Result<(), CoreError> {
        spec.validate()?;
        // The sample in flight was prepared on the old targets and regions.
        self.prepared = false;
        let mut old = std::mem::take(&mut self.targets).into_iter();
        self.targets = spec
            .targets
            .iter()
            .map(|ts| match old.next() {
                Some(mut t) if t.pid == ts.pid => {
                    // vaddr keeps the regions; the next ops update fits them to the mappings.
                    if spec.ops == OpsId::Fvaddr {
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
            self.set_attrs(spec.attrs, aggregating);
            self.tune_countdown = spec.attrs.intervals_goal.aggrs;
            self.aggr_start_ns = now_ns;
        }
        self.ops_id = spec.ops;
        // The kernel only recomputes this at the next ops update; doing it now makes a new
        // min_nr_regions effective at once.
        self.update_sz_limit();
        Ok(())
    }

    /// New attributes (`damon_set_attrs()`): counters rescaled to them (as if the aggregation
    /// had just been reset, when `aggregating`), and the next aggregation and ops update
    /// counted from now.
    fn set_attrs(&mut self, attrs: Attrs, aggregating: bool) {
        for r in self.targets.iter_mut().flat_map(|t| t.regions.iter_mut()) {
            rescale_region(r, &self.attrs, &attrs, aggregating);
        }
        self.next_aggregation_sample = self.passed_samples.saturating_add(attrs.aggr_samples());
        self.next_update_sample = self.passed_samples.saturating_add(attrs.update_samples());
        self.attrs = attrs;
        for run in &mut self.schemes {
            run.restart_timer(self.passed_samples, &self.attrs);
        }
    }

    /// Sets the schemes (DAMOS): the ones at an index that already had a scheme keep its
    /// stats and quota state, as the kernel's commit; new ones start now.
    pub fn set_schemes(&mut self, schemes: Vec<Scheme>) {
        let mut old = std::mem::take(&mut self.schemes).into_iter();
        self.schemes = schemes
            .into_iter()
            .map(|s| match old.next() {
                Some(mut run) => {
                    run.recommit(s, self.passed_samples, &self.attrs);
                    run
                }
                None => SchemeRun::new(s, self.passed_samples, &self.attrs),
            })
            .collect();
    }

    /// Each scheme's stats: running totals since it was set.
    pub fn scheme_stats(&self) -> Vec<SchemeStats> {
        self.schemes.iter().map(|r| r.stats).collect()
    }

    /// Each scheme's effective size quota in its current charge window (0: unlimited).
    pub fn effective_quotas(&self) -> Vec<u64> {
        self.schemes
            .iter()
            .map(SchemeRun::effective_bytes)
            .collect()
    }

    /// `commit_schemes_quota_goals`: new goals for each scheme, by index.
    pub fn commit_quota_goals(&mut self, goals: Vec<Vec<QuotaGoal>>) {
        for (run, goals) in self.schemes.iter_mut().zip(goals) {
            run.commit_goals(goals);
        }
    }

    /// Starts a tried-regions walk of every scheme (see [`take_walk`](Self::take_walk)).
    pub fn start_walk(&mut self) {
        self.schemes.iter_mut().for_each(SchemeRun::start_walk);
    }

    /// The regions each scheme was applied to in its first due pass since
    /// [`start_walk`](Self::start_walk), once no scheme's walk is pending (at once when none
    /// was started); `None` while one is.
    pub fn take_walk(&mut self) -> Option<Vec<Vec<TriedRegion>>> {
        if self.schemes.iter().any(SchemeRun::walk_pending) {
            return None;
        }
        Some(self.schemes.iter_mut().map(SchemeRun::take_walk).collect())
    }

    /// Intervals auto-tuning (`kdamond_tune_intervals()`), at the end of an aggregation:
    /// scales the sample interval by how far the access events of the aggregation that just
    /// ended are from the goal, and the aggregation interval with it.
    fn tune_intervals(&mut self) {
        let goal = self.attrs.intervals_goal;
        let aggr_samples = self.attrs.aggr_samples();
        let score = tune::score_bp(
            self.targets.iter().flat_map(|t| t.regions.iter()),
            aggr_samples,
            goal.access_bp,
        );
        let Some(sample_us) =
            tune::next_sample_us(self.attrs.sample_us, tune::adaptation_bp(score), &goal)
        else {
            return;
        };
        if sample_us == self.attrs.sample_us {
            return;
        }
        let attrs = Attrs {
            sample_us,
            aggr_us: sample_us.saturating_mul(aggr_samples),
            ..self.attrs
        };
        log::debug!(
            "kdamond.{}: intervals tuned to {} us / {} us (score {score} bp)",
            self.kdamond_idx,
            attrs.sample_us,
            attrs.aggr_us
        );
        // The aggregation just ended: counters are converted as they stand (the kernel
        // resets next_aggregation_sis before tuning for the same reason).
        self.set_attrs(attrs, false);
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
    /// The end of an aggregation interval, first half: merge (which ages the regions). The
    /// schemes then see the complete counts.
    fn merge(&mut self) {
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
    }

    /// The end of an aggregation interval, second half (after any scheme pass): report, tune
    /// the intervals, reset the counters, split.
    fn aggregate(&mut self, now_ns: u64) -> Snapshot {
        let snapshot = self.snapshot(now_ns);
        let goal = self.attrs.intervals_goal;
        if goal.enabled() {
            self.tune_countdown = self.tune_countdown.saturating_sub(1);
            if self.tune_countdown == 0 {
                self.tune_countdown = goal.aggrs;
                self.tune_intervals();
            }
        }
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
        if self.ops_id != OpsId::Vaddr {
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
