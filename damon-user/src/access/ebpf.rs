//! The eBPF access check.
//!
//! One sample step of a kdamond is one run of the `sample` program over every target: it
//! reads the Accessed bit and fault stamp of each region's page in flight (the check), and
//! walks each region's next page (the prepare). Then, per target, at most one
//! `process_madvise(MADV_COLD)` clears the Accessed bits of the prepared pages that were
//! young (the whole 2 MiB for a page in a huge page). Tables are shared with the programs by
//! mmap, so a step makes one `bpf` system call, plus one `process_madvise` per target that
//! had young pages; none when every prepared page is already old.
//!
//! A page whose Accessed bit MADV_COLD cannot clear (mapped by another process, not on an LRU
//! list yet, mlocked, part of a PTE-mapped large folio) would read hot forever. The program
//! sees that in the page's `struct page` and tries up to three other pages of the region;
//! when none can be measured, the region's sample is reported [`Access::Unmeasured`] instead
//! of accessed. A fault on the sampled page (or anywhere in its region, with
//! [`FaultScope::Region`]) while the sample is in flight counts as an access.
use crate::core::Pid;
use crate::core::scheme::{Action, Filter};
use std::{collections::HashMap, os::fd::AsRawFd, os::fd::OwnedFd};

use damon_common::{
    CHECK_FAULTED, CHECK_UNMEASURED, CHECK_YOUNG, FOLIO_LARGE, HPAGE_PMD_SIZE, MAX_REGIONS,
    PAGE_SIZE, SAMPLE_MOVED, SAMPLE_PMD_LEAF, SAMPLE_PUD_LEAF, SAMPLE_UNMEASURABLE, SAMPLE_YOUNG,
};

use super::mkold::{Mkold, coalesce};
use crate::{
    bpf::{
        BpfError, KernelLayout, MonitorPrograms, PerfSampler, ProgramOptions, Step, TargetState,
        sys::{self, MAX_RW_COUNT},
    },
    core::{Access, AddrRange, Operations, OpsError, SampleStep, TargetStep, read_proc_maps},
};

/// Refused ranges a target holds before its buffer grows (refusals are rare: mlocked or
/// hugetlb mappings, ranges unmapped meanwhile).
const REFUSED_CAPACITY: usize = 64;

/// Which faults count as an access to a region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultScope {
    /// Only a fault on the sampled page (or its huge page): DAMON's semantics.
    #[default]
    SampledPage,
    /// Any fault in the region.
    Region,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct EbpfOpsOptions {
    pub fault_scope: FaultScope,
    /// Also attribute sampled data addresses from this perf event.
    pub perf_sampler: Option<PerfSampler>,
}

/// Counters of what the access check did, for tests, benchmarks and `--verbose` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfOpsStats {
    /// Runs of the sampling program.
    pub runs: u64,
    /// Samples prepared (regions, over all targets).
    pub samples: u64,
    /// `process_madvise` calls, and the ranges they advised.
    pub mkold_calls: u64,
    pub mkold_ranges: u64,
    /// Ranges the kernel refused to advise (the sample then reads unmeasured).
    pub mkold_skipped: u64,
    /// Samples moved to another page of their region because the chosen one could not be
    /// measured.
    pub moved: u64,
    /// Samples for which no page of the region could be measured.
    pub unmeasurable: u64,
    /// Accesses known only from a page fault.
    pub fault_hits: u64,
}

struct Target {
    slot: u32,
    /// Keeps the kernel's `struct pid` alive for the programs, and names the process to
    /// `process_madvise` without the races of a pid.
    pidfd: OwnedFd,
    /// Regions in the slot's table.
    nr_regions: usize,
    /// Its address space at the last run.
    state: TargetState,
    /// Ranges the last mkold could not advise: samples there read unmeasured at the check.
    refused: Vec<AddrRange>,
    /// The step that last saw this target, to forget targets a commit removed.
    seen: u64,
}

/// Where a young page's Accessed bit is cleared: the page, its huge page, or the whole large
/// folio it is in (`folio`: the sampling program's `pending_folio` word; MADV_COLD ages a
/// whole folio without splitting it). In a region that read cold for two aggregations, also
/// the 2 MiB around it within its mapping: a page young in a cold region was last cleared long
/// ago (or never: memory touched once at start-up), and so are its neighbours; clearing them
/// together costs one TLB flush instead of one per later sample, and pages that are cold
/// anyway are what MADV_COLD's deactivation is meant for.
fn clear_range(page: u64, flags: u8, folio: u32, cold: bool, vmas: &[AddrRange]) -> AddrRange {
    // The page's own unit, whole: cutting a huge page or a large folio would split it.
    let own = if flags & SAMPLE_PMD_LEAF != 0 {
        let start = page & !(HPAGE_PMD_SIZE - 1);
        AddrRange::new(start, start + HPAGE_PMD_SIZE)
    } else if folio & FOLIO_LARGE != 0 {
        let (order, index) = ((folio >> 16) & 0xff, u64::from(folio & 0xffff));
        let start = page.saturating_sub(index * PAGE_SIZE);
        AddrRange::new(start, start.saturating_add(PAGE_SIZE << order))
    } else {
        AddrRange::new(page, page + PAGE_SIZE)
    };
    if !cold {
        return own;
    }
    // The widening stays inside the page's mapping, and is skipped when that is not known.
    // (It may still cut a large folio not aligned to 2 MiB: file folios, mremapped memory.)
    let Some(v) = vmas
        .get(vmas.partition_point(|v| v.end <= page))
        .filter(|v| v.contains(page))
    else {
        return own;
    };
    AddrRange::new(
        own.start.min((page & !(HPAGE_PMD_SIZE - 1)).max(v.start)),
        own.end
            .max((page | (HPAGE_PMD_SIZE - 1)).saturating_add(1).min(v.end)),
    )
}

/// `MADV_COLLAPSE` (Linux 6.1): libc defines it for glibc targets only, and the guests' damon
/// is built for musl.
const MADV_COLLAPSE: i32 = 25;

/// The advice that carries out `action` on another process, for the actions
/// `process_madvise` allows there; `None` for the others (they apply nothing).
fn madvise_advice(action: Action) -> Option<i32> {
    match action {
        Action::Pageout => Some(libc::MADV_PAGEOUT),
        Action::Cold | Action::LruDeprio => Some(libc::MADV_COLD),
        Action::Willneed => Some(libc::MADV_WILLNEED),
        Action::Collapse => Some(MADV_COLLAPSE),
        _ => None,
    }
}

/// `Operations` backed by the eBPF programs. One per kdamond.
pub struct EbpfOps {
    progs: MonitorPrograms,
    targets: HashMap<Pid, Target>,
    /// Per process: its mappings at the last ops update (sorted), which bound clear ranges.
    vmas: HashMap<Pid, Vec<AddrRange>>,
    stats: EbpfOpsStats,
    steps: u64,
    /// Reused buffers: the sampling loop allocates nothing per sample.
    checked: Vec<u8>,
    ranges: Vec<AddrRange>,
    mkold: Mkold,
}

fn failed(
    what: impl Into<String>,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> OpsError {
    OpsError::failed(what, e)
}

impl EbpfOps {
    /// Loads the programs for the kernel described by `layout` and validates the layout
    /// against our own pages.
    pub fn new(opts: EbpfOpsOptions, layout: &KernelLayout) -> Result<Self, OpsError> {
        let popts = ProgramOptions {
            fault_tracepoint: true,
            fault_in_region_is_access: opts.fault_scope == FaultScope::Region,
            perf_sampler: opts.perf_sampler,
        };
        let mut progs = MonitorPrograms::load(Some(layout), popts)
            .map_err(|e| failed("loading the eBPF programs", e))?;
        log::debug!("eBPF programs loaded");
        progs
            .validate_layout()
            .map_err(|e| failed("validating the kernel layout", e))?;
        log::debug!("kernel layout validated");
        Ok(Self {
            progs,
            targets: HashMap::new(),
            vmas: HashMap::new(),
            stats: EbpfOpsStats::default(),
            steps: 0,
            checked: vec![0; MAX_REGIONS as usize],
            // At most one clear range per region of a target: sized once, never grown.
            ranges: Vec::with_capacity(MAX_REGIONS as usize),
            mkold: Mkold::default(),
        })
    }

    pub fn stats(&self) -> EbpfOpsStats {
        self.stats
    }

    pub fn programs(&self) -> &MonitorPrograms {
        &self.progs
    }

    /// The target entry of `pid`, registered on first use.
    fn target(&mut self, pid: Pid) -> Result<&mut Target, OpsError> {
        if !self.targets.contains_key(&pid) {
            let pidfd = sys::pidfd_open(pid).map_err(|e| match e.io_error.raw_os_error() {
                Some(libc::ESRCH) => OpsError::TargetGone { pid },
                _ => failed(format!("opening process {pid}"), e),
            })?;
            let slot = self
                .progs
                .add_target(pid, pidfd.as_raw_fd())
                .map_err(|e| failed(format!("registering process {pid}"), e))?;
            self.targets.insert(
                pid,
                Target {
                    slot,
                    pidfd,
                    nr_regions: 0,
                    state: TargetState::Unknown,
                    // At most one refused range per call: a few calls' worth up front.
                    refused: Vec::with_capacity(REFUSED_CAPACITY),
                    seen: self.steps,
                },
            );
        }
        self.targets
            .get_mut(&pid)
            .ok_or(OpsError::TargetGone { pid })
    }

    /// Writes what the run needs of one target: its regions when they changed, its next
    /// pages. Returns whether the target takes part in the run.
    fn stage(&mut self, t: &mut TargetStep<'_>, prepare: bool) -> Result<bool, OpsError> {
        let pid = t.target.pid;
        if t.regions.len() > MAX_REGIONS as usize {
            return Err(failed(
                format!("process {pid}"),
                BpfError::TooManyRegions {
                    count: t.regions.len(),
                },
            ));
        }
        let target = match self.target(pid) {
            Ok(target) => target,
            Err(OpsError::TargetGone { .. }) => {
                *t.gone = true;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let slot = target.slot;
        if prepare {
            if t.target.layout_changed || target.nr_regions != t.regions.len() {
                target.nr_regions = t.regions.len();
                let bounds = t.regions.iter().map(crate::core::Region::range);
                self.progs
                    .set_regions(slot, bounds)
                    .map_err(|e| failed(format!("process {pid}"), e))?;
            }
            let pages = t.next.iter().map(|&p| p & !(PAGE_SIZE - 1));
            self.progs
                .set_next(slot, t.seed, pages)
                .map_err(|e| failed(format!("process {pid}"), e))?;
        }
        Ok(true)
    }

    /// Reads one target's results after the run: what the check found, and the pages
    /// prepared, whose young ones it advises cold.
    fn finish(
        &mut self,
        t: &mut TargetStep<'_>,
        check: bool,
        prepare: bool,
    ) -> Result<(), OpsError> {
        let pid = t.target.pid;
        let Some(target) = self.targets.get_mut(&pid) else {
            return Ok(());
        };
        let slot = target.slot;
        target.state = self.progs.state(slot);
        if matches!(target.state, TargetState::NoMm | TargetState::Reaped) {
            *t.gone = true;
            return Ok(());
        }
        let n = t.regions.len().min(MAX_REGIONS as usize);
        if check {
            let buf = &mut self.checked[..n];
            self.progs
                .checked(slot, buf)
                .map_err(|e| failed(format!("process {pid}"), e))?;
            for ((found, &flags), r) in t.found.iter_mut().zip(buf.iter()).zip(t.regions) {
                let refused = target
                    .refused
                    .iter()
                    .any(|range| range.contains(r.sampling_addr));
                *found = if flags & CHECK_UNMEASURED != 0 || refused {
                    Access::Unmeasured
                } else if flags & (CHECK_YOUNG | CHECK_FAULTED) != 0 {
                    if flags & CHECK_YOUNG == 0 {
                        self.stats.fault_hits += 1;
                    }
                    Access::Accessed
                } else {
                    Access::None
                };
            }
            target.refused.clear();
        }
        if prepare {
            self.ranges.clear();
            let vmas = self.vmas.get(&pid).map(Vec::as_slice).unwrap_or_default();
            for (i, (next, r)) in t.next.iter_mut().zip(t.regions).enumerate().take(n) {
                let (page, flags, folio) = self
                    .progs
                    .pending(slot, i)
                    .map_err(|e| failed(format!("process {pid}"), e))?;
                *next = page;
                self.stats.samples += 1;
                self.stats.moved += u64::from(flags & SAMPLE_MOVED != 0);
                if flags & SAMPLE_UNMEASURABLE != 0 {
                    self.stats.unmeasurable += 1;
                    continue;
                }
                if flags & SAMPLE_YOUNG == 0 || flags & SAMPLE_PUD_LEAF != 0 {
                    continue; // already old: nothing to clear
                }
                let cold = r.nr_accesses == 0 && r.last_nr_accesses == 0;
                self.ranges
                    .push(clear_range(page, flags, folio, cold, vmas));
            }
            if !self.ranges.is_empty() {
                coalesce(&mut self.ranges);
                let refused = self
                    .mkold
                    .advise(&target.pidfd, &self.ranges, &mut target.refused)
                    .map_err(|e| match e.io_error.raw_os_error() {
                        Some(libc::ESRCH) => OpsError::TargetGone { pid },
                        _ => failed(format!("clearing accessed bits of process {pid}"), e),
                    });
                match refused {
                    Ok(calls) => {
                        self.stats.mkold_calls += calls;
                        self.stats.mkold_ranges += self.ranges.len() as u64;
                        self.stats.mkold_skipped += target.refused.len() as u64;
                    }
                    Err(OpsError::TargetGone { .. }) => *t.gone = true,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl Operations for EbpfOps {
    fn mappings(&mut self, pid: Pid) -> Result<Vec<AddrRange>, OpsError> {
        let mut maps = read_proc_maps(pid)?;
        maps.sort_unstable();
        self.vmas.insert(pid, maps.clone());
        Ok(maps)
    }

    fn target_valid(&mut self, pid: Pid) -> bool {
        match self.targets.get(&pid) {
            // Valid until reaped, as the kernel's: a zombie (no mm) stays a target whose
            // regions read not accessed.
            Some(t) => t.state != TargetState::Reaped,
            None => crate::core::process_alive(pid),
        }
    }

    fn sample(&mut self, step: &mut SampleStep<'_>) -> Result<(), OpsError> {
        let (check, prepare) = (step.check(), step.prepare());
        self.steps += 1;
        let mut any = false;
        for i in 0..step.len() {
            let mut t = step.target(i);
            if let Some(target) = self.targets.get_mut(&t.target.pid) {
                target.seen = self.steps;
            }
            if t.regions.is_empty() {
                continue;
            }
            any |= self.stage(&mut t, prepare)?;
            if let Some(target) = self.targets.get_mut(&t.target.pid) {
                target.seen = self.steps;
            }
        }
        // Targets a commit removed: their slots go back.
        let steps = self.steps;
        if self.targets.values().any(|t| t.seen != steps) {
            let stale: Vec<Pid> = self
                .targets
                .iter()
                .filter(|(_, t)| t.seen != steps)
                .map(|(&pid, _)| pid)
                .collect();
            for pid in stale {
                let _ = self.progs.remove_target(pid);
                self.targets.remove(&pid);
                self.vmas.remove(&pid);
            }
        }
        if !any {
            return Ok(());
        }
        self.progs
            .run(Step { check, prepare })
            .map_err(|e| failed("running the eBPF access check", e))?;
        self.stats.runs += 1;
        for i in 0..step.len() {
            let mut t = step.target(i);
            if t.regions.is_empty() || *t.gone {
                continue;
            }
            self.finish(&mut t, check, prepare)?;
        }
        Ok(())
    }

    /// DAMOS actions through `process_madvise` on the target's pidfd (never a pid that may
    /// have been reused): one range per call, so a range with a hole or a refused mapping
    /// applies nothing, as the kernel's madvise-based actions (`sz_applied` is all or nothing).
    fn apply_scheme(&mut self, pid: Pid, range: AddrRange, action: Action) -> u64 {
        let Some(advice) = madvise_advice(action) else {
            return 0;
        };
        let Some(target) = self.targets.get(&pid) else {
            return 0;
        };
        if matches!(target.state, TargetState::NoMm | TargetState::Reaped) {
            return 0;
        }
        // One call advises at most MAX_RW_COUNT bytes: a larger region takes several.
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(MAX_RW_COUNT);
            let iov = [libc::iovec {
                iov_base: at as *mut _,
                iov_len: len as usize,
            }];
            match sys::process_madvise(&target.pidfd, &iov, advice) {
                Ok(done) if done as u64 == len => at += len,
                Ok(_) => return 0,
                Err(e) => {
                    log::debug!("DAMOS {action} on process {pid} {range}: {}", e.io_error);
                    return 0;
                }
            }
        }
        range.size()
    }

    fn filter_passed(
        &mut self,
        pid: Pid,
        range: AddrRange,
        filters: &[Filter],
        core_allowed: bool,
    ) -> u64 {
        let target = match self.targets.get(&pid) {
            Some(t) if !matches!(t.state, TargetState::NoMm | TargetState::Reaped) => t,
            _ => return 0,
        };
        let alive = || !sys::pidfd_exited(&target.pidfd);
        super::folios::filter_passed(pid, range, filters, core_allowed, &alive).unwrap_or_else(
            |e| {
                log::debug!("DAMOS stat filters on process {pid} {range}: {e}");
                0
            },
        )
    }

    fn cleanup(&mut self) {
        log::debug!("access check: {:?}", self.stats);
        if let Some((time, runs)) = self.progs.sample_run_stats() {
            log::debug!(
                "sampling program: {runs} runs, {:.2} us each",
                time.as_secs_f64() * 1e6 / runs as f64
            );
        }
        for pid in self.targets.keys().copied().collect::<Vec<_>>() {
            let _ = self.progs.remove_target(pid);
        }
        self.targets.clear();
    }
}
