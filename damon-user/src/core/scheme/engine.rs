//! The scheme engine: when schemes are due, and one pass of the due ones over every region
//! (`kdamond_apply_schemes()`, `damos_apply_scheme()`), charging their quotas and counting
//! their stats.
use std::time::Instant;

use super::quota::{QuotaState, cold_score, hot_score};
use super::{Action, FilterKind, QuotaGoal, Scheme, SchemeStats, TriedRegion, WmarkMetric, wmark};
use crate::core::target::Target;
use crate::core::{AddrRange, Attrs, Operations, PAGE_SIZE, Pid, Region, region::align_down};

/// A scheme as a context runs it: the scheme, its apply timer, quota state and stats.
#[derive(Clone, Debug)]
pub(crate) struct SchemeRun {
    pub scheme: Scheme,
    pub stats: SchemeStats,
    /// The pass count at which the scheme is next due (`next_apply_sis`).
    next_apply_sample: u64,
    quota: QuotaState,
    walk: Walk,
    /// Regions admitted in this pass and not yet acted on: adjacent ones of a target are
    /// advised in one call (see [`Pending`]).
    pending: Option<Pending>,
    /// Where each queued region starts (kept between passes for its capacity).
    pending_starts: Vec<u64>,
    /// Whether the watermarks let the scheme run (`wmarks.activated`).
    active: bool,
    /// A core filter allowed the region being judged (`core_filters_allowed`).
    core_allowed: bool,
}

/// Adjacent admitted regions, acted on as one range. The kernel advises region by region,
/// and a large folio (a file's page cache is made of them, up to 2 MiB) that a range only
/// partly covers is skipped by `MADV_PAGEOUT`/`MADV_COLD`: every region boundary would keep
/// one resident. One call over the whole run cuts folios only at its two ends.
#[derive(Clone, Copy, Debug)]
struct Pending {
    pid: Pid,
    range: AddrRange,
}

/// A tried-regions walk (`damos_walk()`): the regions the next due pass applies the scheme to.
#[derive(Clone, Debug, Default)]
enum Walk {
    #[default]
    Off,
    Pending(Vec<TriedRegion>),
    Done(Vec<TriedRegion>),
}

/// Samples between applications: `(apply_interval ?: aggr) / sample` (0: every sample).
fn apply_samples(s: &Scheme, attrs: &Attrs) -> u64 {
    let us = if s.apply_interval_us == 0 {
        attrs.aggr_us
    } else {
        s.apply_interval_us
    };
    us / attrs.sample_us.max(1)
}

impl SchemeRun {
    /// A scheme started (or added by a commit) after `passed` samples.
    pub fn new(scheme: Scheme, passed: u64, attrs: &Attrs) -> Self {
        SchemeRun {
            next_apply_sample: passed + apply_samples(&scheme, attrs),
            scheme,
            stats: SchemeStats::default(),
            quota: QuotaState::default(),
            walk: Walk::Off,
            pending: None,
            pending_starts: Vec::new(),
            active: true,
            core_allowed: false,
        }
    }

    pub fn is_due(&self, passed: u64) -> bool {
        passed >= self.next_apply_sample
    }

    /// Checks the watermarks: how long to wait before the next check (0: active).
    pub fn wmark_wait_us(&mut self, metric: &mut dyn FnMut(WmarkMetric) -> u64) -> u64 {
        wmark::wait_us(&self.scheme.wmarks, &mut self.active, metric)
    }

    /// New attributes restart every apply timer (`damon_set_attrs()`).
    pub fn restart_timer(&mut self, passed: u64, attrs: &Attrs) {
        self.next_apply_sample = passed + apply_samples(&self.scheme, attrs);
    }

    /// The effective size quota of the current charge window (`effective_bytes`).
    pub fn effective_bytes(&self) -> u64 {
        self.quota.esz
    }

    /// A commit of the same scheme index: the new scheme keeps the stats and the quota's
    /// charge state, as the kernel's `damos_commit()`.
    pub fn recommit(&mut self, scheme: Scheme, passed: u64, attrs: &Attrs) {
        let timer_changed = scheme.apply_interval_us != self.scheme.apply_interval_us;
        self.scheme = scheme;
        // A committed scheme starts active, as a new one.
        self.active = true;
        if timer_changed {
            self.restart_timer(passed, attrs);
        }
    }

    /// `commit_schemes_quota_goals`: goals matched by index take the new metric and target,
    /// `current_value` only for `user_input`; extra goals go, new ones come.
    pub fn commit_goals(&mut self, goals: Vec<QuotaGoal>) {
        let old = std::mem::take(&mut self.scheme.quotas.goals);
        let mut old = old.into_iter();
        self.scheme.quotas.goals = goals
            .into_iter()
            .map(|mut g| {
                if let Some(o) = old.next()
                    && g.metric != super::GoalMetric::UserInput
                {
                    g.current_value = o.current_value;
                }
                g
            })
            .collect();
    }

    /// Starts a tried-regions walk: the next due pass records the regions it applies to.
    pub fn start_walk(&mut self) {
        self.walk = Walk::Pending(Vec::new());
    }

    /// The regions of a finished walk, which ends it; none while it runs or when none ran.
    pub fn take_walk(&mut self) -> Vec<TriedRegion> {
        match std::mem::take(&mut self.walk) {
            Walk::Done(regions) => regions,
            other => {
                self.walk = other;
                Vec::new()
            }
        }
    }

    /// The core layer of `damos_filter_out()`: whether the core filters keep region `ri` of
    /// target `t_idx` out. The first filter that matches decides; when none does, the default
    /// is to keep out if the last filter allows (only without ops filters). An `addr` filter
    /// splits a region that straddles its bound, judging the left piece.
    fn core_filtered_out(&mut self, t_idx: usize, t: &mut Target, ri: usize) -> bool {
        self.core_allowed = false;
        let filters = &self.scheme.core_filters;
        for f in filters {
            let has_type = match f.kind {
                FilterKind::Target(idx) => idx == t_idx,
                FilterKind::Addr(range) => {
                    let r = t.regions[ri];
                    if range.start <= r.start && r.end <= range.end {
                        true
                    } else if r.end <= range.start || range.end <= r.start {
                        false
                    } else if r.start < range.start {
                        split_at(t, ri, range.start);
                        false
                    } else {
                        split_at(t, ri, range.end);
                        true
                    }
                }
                _ => continue,
            };
            if has_type == f.matching {
                self.core_allowed = f.allow;
                return !f.allow;
            }
        }
        self.scheme.ops_filters.is_empty() && filters.last().is_some_and(|f| f.allow)
    }

    /// Queues an admitted region for the action, first acting on what is queued unless the
    /// region continues it.
    fn defer(&mut self, pid: Pid, range: AddrRange, ops: &mut dyn Operations) {
        if let Some(p) = &mut self.pending
            && p.pid == pid
            && p.range.end == range.start
        {
            p.range.end = range.end;
            self.pending_starts.push(range.start);
            return;
        }
        self.flush(ops);
        self.pending = Some(Pending { pid, range });
        self.pending_starts.clear();
        self.pending_starts.push(range.start);
    }

    /// Acts on the queued regions. The stats are the kernel's, per region: when the call over
    /// all of them fails (a region with a hole in its range: `ENOMEM` after advising every
    /// mapped part), each region is advised again alone to tell which ones apply.
    fn flush(&mut self, ops: &mut dyn Operations) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let t0 = Instant::now();
        let applied = ops.apply_scheme(p.pid, p.range, self.scheme.action);
        if applied > 0 {
            self.stats.nr_applied += self.pending_starts.len() as u64;
            self.stats.sz_applied += applied;
        } else if self.pending_starts.len() > 1 {
            let ends = self
                .pending_starts
                .iter()
                .skip(1)
                .copied()
                .chain([p.range.end]);
            for (start, end) in self.pending_starts.iter().copied().zip(ends) {
                let applied =
                    ops.apply_scheme(p.pid, AddrRange::new(start, end), self.scheme.action);
                if applied > 0 {
                    self.stats.nr_applied += 1;
                    self.stats.sz_applied += applied;
                }
            }
        }
        self.quota.total_charged_ns += t0.elapsed().as_nanos() as u64;
    }

    pub fn cancel_walk(&mut self) {
        self.walk = Walk::Off;
    }

    pub fn walk_pending(&self) -> bool {
        matches!(self.walk, Walk::Pending(_))
    }

    /// The score a region needs to be admitted under the quota (`damos_adjust_quota()`'s
    /// histogram): the highest score from which the matching regions' sizes reach `esz`.
    fn set_min_score(&mut self, targets: &[Target], attrs: &Attrs) {
        let mut hist = [0u64; super::quota::MAX_SCORE as usize + 1];
        let mut max_seen = 0;
        for r in targets.iter().flat_map(|t| t.regions.iter()) {
            if self.scheme.pattern.matches(r) {
                let score = self.score(r, attrs);
                hist[score as usize] += r.size();
                max_seen = max_seen.max(score);
            }
        }
        let mut sum = 0;
        let mut score = max_seen;
        loop {
            sum += hist[score as usize];
            if sum >= self.quota.esz || score == 0 {
                break;
            }
            score -= 1;
        }
        self.quota.min_score = score;
    }

    /// vaddr's `damon_va_scheme_score()`: pageout takes cold regions first; other actions
    /// have no priority (every region scores the maximum).
    fn score(&self, r: &Region, attrs: &Attrs) -> u32 {
        let q = &self.scheme.quotas;
        match self.scheme.action {
            Action::Pageout | Action::MigrateCold => cold_score(r, attrs, q),
            Action::MigrateHot => hot_score(r, attrs, q),
            _ => super::quota::MAX_SCORE,
        }
    }

    /// Skips what was charged before the resume point (`damos_skip_charged_region()`), as
    /// the kernel with its later fix (resume at the end of the last charged region). Returns
    /// true to skip `regions[*ri]`; may split it and move `*ri` to the right piece.
    fn skip_charged(&mut self, t_idx: usize, t: &mut Target, ri: &mut usize) -> bool {
        let Some((rt, addr)) = self.quota.resume else {
            return false;
        };
        if rt != t_idx {
            return true;
        }
        if *ri + 1 == t.regions.len() {
            self.quota.resume = None;
            return true;
        }
        let r = t.regions[*ri];
        if r.end <= addr {
            return true;
        }
        if r.start < addr {
            if r.size() <= PAGE_SIZE {
                return true;
            }
            let cut = align_down(addr - r.start).max(PAGE_SIZE);
            split_at(t, *ri, r.start + cut);
            *ri += 1;
        }
        self.quota.resume = None;
        false
    }
}

/// Splits region `ri` of `t` at `at`: the left piece keeps index `ri`, the right one follows,
/// both with the counters of the whole (`damon_split_region_at()`).
fn split_at(t: &mut Target, ri: usize, at: u64) {
    let mut right = t.regions[ri];
    right.start = at;
    right.sampling_addr = right.sampling_addr.max(at);
    let left = &mut t.regions[ri];
    left.end = at;
    if left.sampling_addr >= at {
        left.sampling_addr = left.start;
    }
    t.regions.insert(ri + 1, right);
    t.layout_changed = true;
}

/// Whether any scheme is due after `passed` samples.
pub(in crate::core) fn any_due(runs: &[SchemeRun], passed: u64) -> bool {
    runs.iter().any(|r| r.is_due(passed))
}

/// One pass of every due scheme over the regions of every target, in target and address
/// order (`kdamond_apply_schemes()`); `now_ns` times the charge windows.
pub(in crate::core) fn apply_schemes(
    runs: &mut [SchemeRun],
    targets: &mut [Target],
    attrs: &Attrs,
    passed: u64,
    now_ns: u64,
    ops: &mut dyn Operations,
) {
    // Whether a scheme is due cannot change before the timers restart at the end; an
    // inactive one is skipped, but its timer restarts.
    for run in runs.iter_mut().filter(|r| r.is_due(passed) && r.active) {
        run.quota
            .adjust(&mut run.scheme.quotas, now_ns, &mut run.stats.qt_exceeds);
        if run.quota.esz != 0 {
            run.set_min_score(targets, attrs);
        }
    }
    for (t_idx, t) in targets.iter_mut().enumerate() {
        let mut ri = 0;
        while ri < t.regions.len() {
            // The next region is the one after `ri` now: pieces split off during this
            // region's turn are not visited again in this pass.
            let after = t.regions.len() - ri - 1;
            for run in runs.iter_mut().filter(|r| r.is_due(passed) && r.active) {
                apply_one(run, t_idx, t, &mut ri, attrs, ops);
            }
            ri = t.regions.len() - after;
        }
    }
    for run in runs.iter_mut().filter(|r| r.is_due(passed)) {
        run.flush(ops);
        run.restart_timer(passed, attrs);
        if let Walk::Pending(regions) = std::mem::take(&mut run.walk) {
            run.walk = Walk::Done(regions);
        }
    }
}

/// `damos_apply_scheme()` of one scheme on region `*ri` of target `t`.
fn apply_one(
    run: &mut SchemeRun,
    t_idx: usize,
    t: &mut Target,
    ri: &mut usize,
    attrs: &Attrs,
    ops: &mut dyn Operations,
) {
    let esz = run.quota.esz;
    if esz != 0 && run.quota.charged_sz >= esz {
        return;
    }
    if run.skip_charged(t_idx, t, ri) {
        return;
    }
    let r = t.regions[*ri];
    if !run.scheme.pattern.matches(&r) {
        return;
    }
    // A region some of whose samples could not be measured may be in use: its reading of
    // "not accessed" is a default, not an observation. No action touches it (a kernel, which
    // always measures, never meets this); `stat`, which changes nothing, still counts it.
    if r.nr_unmeasured > 0 && run.scheme.action != Action::Stat {
        return;
    }
    if esz != 0 && run.score(&r, attrs) < run.quota.min_score {
        return;
    }
    let mut sz = r.size();
    if esz != 0 && run.quota.charged_sz + sz > esz {
        sz = align_down(esz - run.quota.charged_sz);
        if sz == 0 {
            run.stats.nr_tried += 1;
            return;
        }
        split_at(t, *ri, r.start + sz);
    }
    if run.core_filtered_out(t_idx, t, *ri) {
        return;
    }
    let r = t.regions[*ri];
    let mut sz_filter_passed = 0;
    if run.scheme.action != Action::Stat {
        run.defer(t.pid, r.range(), ops);
    } else if !run.scheme.ops_filters.is_empty() {
        sz_filter_passed =
            ops.filter_passed(t.pid, r.range(), &run.scheme.ops_filters, run.core_allowed);
        run.stats.sz_ops_filter_passed += sz_filter_passed;
    }
    if let Walk::Pending(tried) = &mut run.walk {
        tried.push(TriedRegion {
            sz_filter_passed,
            ..TriedRegion::from(&r)
        });
    }
    run.quota.charged_sz += sz;
    if esz != 0 && run.quota.charged_sz >= esz {
        run.quota.resume = Some((t_idx, r.end));
    }
    if run.scheme.action != Action::Stat {
        t.regions[*ri].age = 0;
    }
    run.stats.nr_tried += 1;
    run.stats.sz_tried += sz;
}
