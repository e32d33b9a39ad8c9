//! The eBPF access check.
//!
//! Per sample and target:
//! - prepare: write the sampling addresses, walk (is each sampled page present, young, in a
//!   huge page?), mkold the young ones with `process_madvise(MADV_COLD)` (the whole 2 MiB for a
//!   huge page), walk again to find samples whose young bit did not clear, and move those to
//!   another page of their region once.
//! - check: walk; a region was accessed when its sampled page is young again, or when the
//!   page-fault tracepoint saw a fault on the sampled page (or anywhere in the region, with
//!   [`FaultScope::Region`]) since prepare.
//!
//! Residual bias: a page whose young bit cannot be cleared (shared with another process,
//! pinned in a per-CPU LRU batch) reads hot. Moving the sample once per sample makes that rare
//! for regions with ordinary private pages; a region made only of such pages (a shared
//! library's text) reads as accessed whenever it was sampled there.
use std::{collections::HashMap, os::fd::OwnedFd};

use damon_common::{
    HPAGE_PMD_SIZE, MAX_REGIONS, PAGE_SIZE, WALK_FAULTED, WALK_PMD_LEAF, WALK_PRESENT,
    WALK_PUD_LEAF, WALK_YOUNG, WalkOutput,
};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::mkold::{coalesce, mkold};
use crate::{
    bpf::{BpfError, KernelLayout, MonitorPrograms, PerfSampler, ProgramOptions, sys},
    core::{AddrRange, Operations, OpsError, Region, TargetRef, read_proc_maps},
};

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

/// Counters of what the access check did, for tests and `--verbose` output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfOpsStats {
    pub samples: u64,
    pub walks: u64,
    pub mkold_ranges: u64,
    pub mkold_skipped: u64,
    /// Samples whose young bit survived mkold and were moved to another page.
    pub resampled: u64,
    /// Accesses known only from a page fault.
    pub fault_hits: u64,
}

struct Target {
    slot: u32,
    pidfd: OwnedFd,
    /// This target's sample count: stamped with its sampling addresses into its slot, so
    /// a fault stamp equal to it was taken during the current sample of this target.
    generation: u32,
}

/// `Operations` backed by the eBPF programs. One per kdamond.
pub struct EbpfOps {
    progs: MonitorPrograms,
    targets: HashMap<i32, Target>,
    rng: SmallRng,
    stats: EbpfOpsStats,
    /// Reused buffers: the sampling loop allocates nothing per sample.
    addrs: Vec<u64>,
    ranges: Vec<(u64, u64)>,
}

fn failed(
    what: impl Into<String>,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> OpsError {
    OpsError::failed(what, e)
}

impl EbpfOps {
    /// Loads the programs (calibrating the kernel layout on first use in this process).
    pub fn new(opts: EbpfOpsOptions, seed: u64) -> Result<Self, OpsError> {
        let layout = KernelLayout::get().map_err(|e| failed("probing the kernel layout", e))?;
        let popts = ProgramOptions {
            fault_tracepoint: true,
            fault_in_region_is_access: opts.fault_scope == FaultScope::Region,
            perf_sampler: opts.perf_sampler,
        };
        let progs = MonitorPrograms::load(Some(&layout), popts)
            .map_err(|e| failed("loading the eBPF programs", e))?;
        Ok(Self {
            progs,
            targets: HashMap::new(),
            rng: SmallRng::seed_from_u64(seed),
            stats: EbpfOpsStats::default(),
            addrs: Vec::new(),
            ranges: Vec::new(),
        })
    }

    pub fn stats(&self) -> EbpfOpsStats {
        self.stats
    }

    pub fn programs(&self) -> &MonitorPrograms {
        &self.progs
    }

    /// Chooses how the page tables are walked (benchmarks compare the two).
    pub fn set_walk_path(&mut self, path: crate::bpf::WalkPath) {
        self.progs.set_walk_path(path);
    }

    fn target(&mut self, pid: i32) -> Result<&mut Target, OpsError> {
        if !self.targets.contains_key(&pid) {
            let pidfd = sys::pidfd_open(pid).map_err(|e| match e.io_error.raw_os_error() {
                Some(libc::ESRCH) => OpsError::TargetGone { pid },
                _ => failed(format!("opening process {pid}"), e),
            })?;
            let slot = self
                .progs
                .add_target(pid)
                .map_err(|e| failed(format!("registering process {pid}"), e))?;
            self.targets.insert(
                pid,
                Target {
                    slot,
                    pidfd,
                    generation: 0,
                },
            );
        }
        self.targets
            .get_mut(&pid)
            .ok_or(OpsError::TargetGone { pid })
    }

    fn bpf(pid: i32) -> impl Fn(BpfError) -> OpsError {
        move |e| match e {
            BpfError::Syscall(ref s) if s.io_error.raw_os_error() == Some(libc::ESRCH) => {
                OpsError::TargetGone { pid }
            }
            BpfError::NotWalked { .. } => OpsError::TargetGone { pid },
            e => failed(format!("eBPF access check of process {pid}"), e),
        }
    }

    /// Writes the sampling addresses of `regions` into `slot`, stamped with `generation`.
    fn write_samples(
        &mut self,
        slot: u32,
        generation: u32,
        pid: i32,
        regions: &[Region],
    ) -> Result<(), OpsError> {
        self.addrs.clear();
        self.addrs
            .extend(regions.iter().map(|r| r.sampling_addr & !(PAGE_SIZE - 1)));
        self.progs
            .set_samples(slot, generation, &self.addrs)
            .map_err(Self::bpf(pid))
    }

    fn walk(&mut self, pid: i32) -> Result<WalkOutput, OpsError> {
        self.stats.walks += 1;
        self.progs.walk(pid).map_err(Self::bpf(pid))
    }

    /// mkolds the young, present samples in `which`; returns how many ranges were advised.
    fn mkold_samples(
        &mut self,
        pid: i32,
        out: &WalkOutput,
        which: impl Iterator<Item = usize>,
    ) -> Result<usize, OpsError> {
        self.ranges.clear();
        for i in which {
            let w = out.walk[i];
            if w & WALK_PRESENT == 0 || w & WALK_YOUNG == 0 || w & WALK_PUD_LEAF != 0 {
                continue; // already old, or nothing to clear
            }
            let a = self.addrs[i];
            self.ranges.push(if w & WALK_PMD_LEAF != 0 {
                (a & !(HPAGE_PMD_SIZE - 1), HPAGE_PMD_SIZE)
            } else {
                (a, PAGE_SIZE)
            });
        }
        if self.ranges.is_empty() {
            return Ok(0);
        }
        coalesce(&mut self.ranges);
        let target = self.targets.get(&pid).ok_or(OpsError::TargetGone { pid })?;
        let skipped =
            mkold(&target.pidfd, &self.ranges).map_err(|e| match e.io_error.raw_os_error() {
                Some(libc::ESRCH) => OpsError::TargetGone { pid },
                _ => failed(format!("clearing accessed bits of process {pid}"), e),
            })?;
        self.stats.mkold_ranges += self.ranges.len() as u64;
        self.stats.mkold_skipped += skipped as u64;
        Ok(self.ranges.len())
    }
}

impl Operations for EbpfOps {
    fn mappings(&mut self, pid: i32) -> Result<Vec<AddrRange>, OpsError> {
        read_proc_maps(pid)
    }

    fn target_valid(&mut self, pid: i32) -> bool {
        match self.targets.get(&pid) {
            Some(t) => !sys::pidfd_exited(&t.pidfd),
            None => crate::core::process_alive(pid),
        }
    }

    fn prepare_access_checks(
        &mut self,
        t: &TargetRef,
        regions: &mut [Region],
    ) -> Result<(), OpsError> {
        let pid = t.pid;
        let target = self.target(pid)?;
        target.generation = target.generation.wrapping_add(1);
        let (slot, generation) = (target.slot, target.generation);
        let n = regions.len().min(MAX_REGIONS as usize);
        if regions.len() > n {
            log::warn!(
                "process {pid}: {} regions, only the first {n} are checked",
                regions.len()
            );
        }
        let regions = &mut regions[..n];
        if t.layout_changed {
            let bounds: Vec<(u64, u64)> = regions.iter().map(|r| (r.start, r.end)).collect();
            self.progs
                .set_regions(slot, &bounds)
                .map_err(Self::bpf(pid))?;
        }
        self.stats.samples += 1;
        self.write_samples(slot, generation, pid, regions)?;
        let before = self.walk(pid)?;
        if self.mkold_samples(pid, &before, 0..n)? == 0 {
            // Every sampled page is already old (or absent): nothing to verify, and the walk
            // in the kernel already describes these samples.
            return Ok(());
        }
        let after = self.walk(pid)?;
        // Young right after mkold: the bit could not be cleared (or the page was touched again
        // within microseconds). Move those samples once; pages touched again are hot anyway.
        let stuck: Vec<usize> = (0..n)
            .filter(|&i| {
                after.walk[i] & WALK_YOUNG != 0
                    && before.walk[i] & WALK_YOUNG != 0
                    && regions[i].end - regions[i].start > PAGE_SIZE
            })
            .collect();
        if !stuck.is_empty() {
            for &i in &stuck {
                let r = &mut regions[i];
                let pages = (r.end - r.start) / PAGE_SIZE;
                r.sampling_addr = r.start + self.rng.random_range(0..pages) * PAGE_SIZE;
            }
            self.stats.resampled += stuck.len() as u64;
            self.write_samples(slot, generation, pid, regions)?;
            let again = self.walk(pid)?;
            self.mkold_samples(pid, &again, stuck.into_iter())?;
        }
        // The last walk's flags stay in the kernel: the fault program reads there whether a
        // sample lies in a huge page.
        Ok(())
    }

    fn check_accesses(
        &mut self,
        t: &TargetRef,
        regions: &[Region],
        accessed: &mut [bool],
    ) -> Result<(), OpsError> {
        // The walk reports both signals: the young bit, and a fault stamped during this
        // target's current sample (`WALK_FAULTED`).
        let out = self.walk(t.pid)?;
        let n = regions.len().min(MAX_REGIONS as usize).min(accessed.len());
        for (acc, &walk) in accessed[..n].iter_mut().zip(&out.walk[..n]) {
            let young = walk & WALK_YOUNG != 0;
            let faulted = walk & WALK_FAULTED != 0;
            if faulted && !young {
                self.stats.fault_hits += 1;
            }
            *acc = young || faulted;
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        for pid in self.targets.keys().copied().collect::<Vec<_>>() {
            let _ = self.progs.remove_target(pid);
        }
        self.targets.clear();
    }
}
