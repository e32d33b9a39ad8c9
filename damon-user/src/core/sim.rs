//! A simulated memory implementing [`Operations`], for tests and benchmarks: processes with
//! configurable mappings and hot areas, accessed at random with given per-sample probabilities,
//! reproducibly from a seed.
//!
//! Clones share one state, so a test can keep a clone to change mappings or end a process while
//! a kdamond thread uses another.
use super::scheme::Action;
use super::target::Pid;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::ops::{Access, Operations, OpsError, SampleStep};
use super::region::AddrRange;

/// An address range whose pages are each accessed during a sample interval with `probability`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HotArea {
    pub range: AddrRange,
    /// 0.0 (never) to 1.0 (every sample); values outside are clamped.
    pub probability: f64,
}

impl HotArea {
    pub fn new(start: u64, end: u64, probability: f64) -> Self {
        Self {
            range: AddrRange::new(start, end),
            probability,
        }
    }
}

/// What the simulation saw of the core's calls, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub prepares: u64,
    pub checks: u64,
    /// `prepare_access_checks` and `check_accesses` calls with [`TargetRef::layout_changed`](super::ops::TargetRef::layout_changed) set.
    pub layout_changes: u64,
    /// `mappings` calls.
    pub mapping_reads: u64,
    /// DAMOS actions applied (`apply_scheme` calls), and their bytes.
    pub actions: u64,
    pub action_bytes: u64,
}

#[derive(Clone, Debug, Default)]
struct SimProcess {
    mappings: Vec<AddrRange>,
    /// Sorted by start, non-overlapping.
    hot: Vec<HotArea>,
}

struct SimState {
    rng: SmallRng,
    processes: BTreeMap<Pid, SimProcess>,
    stats: SimStats,
}

/// The simulated memory. See the module documentation.
#[derive(Clone)]
pub struct SimMemory {
    state: Arc<Mutex<SimState>>,
}

impl SimMemory {
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(SimState {
                rng: SmallRng::seed_from_u64(seed),
                processes: BTreeMap::new(),
                stats: SimStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A test that panicked while holding the lock left consistent data: keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts (or replaces) process `pid` with `mappings` and no hot area.
    pub fn add_process(&self, pid: impl Into<Pid>, mappings: Vec<AddrRange>) {
        let pid = pid.into();
        let process = SimProcess {
            mappings,
            hot: Vec::new(),
        };
        self.lock().processes.insert(pid, process);
    }

    /// Changes the mappings of `pid` (mmap, munmap, brk); no effect if the process is gone.
    pub fn set_mappings(&self, pid: impl Into<Pid>, mappings: Vec<AddrRange>) {
        let pid = pid.into();
        if let Some(p) = self.lock().processes.get_mut(&pid) {
            p.mappings = mappings;
        }
    }

    /// Sets the hot areas of `pid`; pages outside every hot area are never accessed.
    pub fn set_hot_areas(&self, pid: impl Into<Pid>, mut hot: Vec<HotArea>) {
        let pid = pid.into();
        hot.sort_by_key(|h| h.range.start);
        if let Some(p) = self.lock().processes.get_mut(&pid) {
            p.hot = hot;
        }
    }

    /// The process exits.
    pub fn remove_process(&self, pid: impl Into<Pid>) {
        let pid = pid.into();
        self.lock().processes.remove(&pid);
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }
}

/// Access probability of the page at `addr`: that of the hot area holding it, if it is mapped.
fn probability(process: &SimProcess, addr: u64) -> f64 {
    let mapped = process.mappings.iter().any(|m| m.contains(addr));
    let idx = process.hot.partition_point(|h| h.range.start <= addr);
    match idx.checked_sub(1).map(|i| &process.hot[i]) {
        Some(h) if mapped && h.range.contains(addr) => h.probability.clamp(0.0, 1.0),
        _ => 0.0,
    }
}

impl Operations for SimMemory {
    fn mappings(&mut self, pid: Pid) -> Result<Vec<AddrRange>, OpsError> {
        let mut state = self.lock();
        state.stats.mapping_reads += 1;
        match state.processes.get(&pid) {
            Some(p) => Ok(p.mappings.clone()),
            None => Err(OpsError::TargetGone { pid }),
        }
    }

    fn target_valid(&mut self, pid: Pid) -> bool {
        self.lock().processes.contains_key(&pid)
    }

    /// An action on a live process applies to the whole range when it is all mapped, and to
    /// nothing otherwise (madvise's `ENOMEM` for a range with holes).
    fn apply_scheme(&mut self, pid: Pid, range: AddrRange, _action: Action) -> u64 {
        let mut state = self.lock();
        let Some(p) = state.processes.get(&pid) else {
            return 0;
        };
        let mut mapped = 0;
        for m in &p.mappings {
            mapped += m
                .end
                .min(range.end)
                .saturating_sub(m.start.max(range.start));
        }
        state.stats.actions += 1;
        if mapped < range.size() {
            return 0;
        }
        state.stats.action_bytes += range.size();
        range.size()
    }

    /// Each sampled page is found accessed with its hot area's probability: the chance that the
    /// workload touched it during the interval since its Accessed bit was cleared.
    fn sample(&mut self, step: &mut SampleStep<'_>) -> Result<(), OpsError> {
        let mut state = self.lock();
        let state = &mut *state;
        let (check, prepare) = (step.check(), step.prepare());
        for i in 0..step.len() {
            let t = step.target(i);
            if t.regions.is_empty() {
                continue;
            }
            state.stats.prepares += u64::from(prepare);
            state.stats.layout_changes += u64::from(t.target.layout_changed);
            let Some(process) = state.processes.get(&t.target.pid) else {
                *t.gone = true;
                continue;
            };
            if check {
                state.stats.checks += 1;
                for (r, found) in t.regions.iter().zip(t.found.iter_mut()) {
                    let p = probability(process, r.sampling_addr);
                    if p > 0.0 && state.rng.random::<f64>() < p {
                        *found = Access::Accessed;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ops::{SampleTargets, TargetRef, TargetStep};
    use crate::core::region::Region;

    /// One check of 64 regions of 16 KiB, sampled at their first page.
    fn run(seed: u64) -> Vec<bool> {
        let mut sim = SimMemory::new(seed);
        sim.add_process(1, vec![AddrRange::new(0, 0x10_0000)]);
        sim.set_hot_areas(1, vec![HotArea::new(0, 0x8_0000, 0.5)]);
        let regions: Vec<Region> = (0..64u64)
            .map(|i| Region {
                sampling_addr: i * 0x4000,
                ..Region::new(i * 0x4000, (i + 1) * 0x4000)
            })
            .collect();
        let mut found = vec![Access::None; regions.len()];
        let mut next = vec![0; regions.len()];
        let mut gone = false;
        struct One<'a>(TargetStep<'a>);
        impl SampleTargets for One<'_> {
            fn check(&self) -> bool {
                true
            }
            fn prepare(&self) -> bool {
                false
            }
            fn len(&self) -> usize {
                1
            }
            fn target(&mut self, _: usize) -> TargetStep<'_> {
                TargetStep {
                    target: self.0.target,
                    regions: self.0.regions,
                    next: self.0.next,
                    found: self.0.found,
                    gone: self.0.gone,
                    seed: 0,
                }
            }
        }
        let mut step = One(TargetStep {
            target: TargetRef {
                idx: 0,
                pid: Pid(1),
                layout_changed: false,
            },
            regions: &regions,
            next: &mut next,
            found: &mut found,
            gone: &mut gone,
            seed: 0,
        });
        sim.sample(&mut step).expect("process exists");
        assert!(!gone);
        found.iter().map(|&f| f == Access::Accessed).collect()
    }

    #[test]
    fn accesses_follow_hot_areas_reproducibly() {
        let a = run(3);
        assert_eq!(a, run(3));
        assert!(a[32..].iter().all(|&x| !x), "cold half never accessed");
        let hot = a[..32].iter().filter(|&&x| x).count();
        assert!((6..=26).contains(&hot), "about half of 32: {hot}");
    }

    #[test]
    fn removed_process_is_gone() {
        let mut sim = SimMemory::new(0);
        sim.add_process(5, vec![AddrRange::new(0, 0x1000)]);
        assert!(sim.target_valid(Pid(5)));
        sim.clone().remove_process(5);
        assert!(!sim.target_valid(Pid(5)));
        assert!(matches!(
            sim.mappings(Pid(5)),
            Err(OpsError::TargetGone { pid: Pid(5) })
        ));
    }
}
