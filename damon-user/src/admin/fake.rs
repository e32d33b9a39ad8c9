//! A [`KdamondBackend`] that monitors nothing, for tests and demonstrations of the tree.
//!
//! Each started kdamond is a real thread (so `pid` names a real task, as damo expects) that
//! idles until `off`, or stops by itself once none of its target processes is alive, as a
//! vaddr kdamond does. Its regions are whatever the test sets with
//! [`FakeBackend::set_regions`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::backend::{BackendError, KdamondBackend, KdamondConfig, RunningKdamond};
use crate::core::scheme::{AccessPattern, QuotaGoal, Scheme, SchemeStats, TriedRegion};
use crate::core::{Region, SchemesNow};

#[derive(Default)]
struct Shared {
    regions: Vec<Vec<Region>>,
    fail_start: Option<String>,
    fail_commit: Option<String>,
    started: Vec<(usize, KdamondConfig)>,
    committed: Vec<KdamondConfig>,
}

/// The fake monitor. Cloning shares the state, so a test keeps a clone to steer and inspect
/// the backend it gave to the tree.
#[derive(Clone, Default)]
pub struct FakeBackend {
    shared: Arc<Mutex<Shared>>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The regions of every target from now on, one list per target: what schemes see.
    pub fn set_regions(&self, regions: Vec<Vec<Region>>) {
        self.shared().regions = regions;
    }

    /// Make the next `start` calls fail with `message` (`None`: succeed again).
    pub fn fail_start(&self, message: Option<&str>) {
        self.shared().fail_start = message.map(String::from);
    }

    /// Make the next `commit` calls fail with `message` (`None`: succeed again).
    pub fn fail_commit(&self, message: Option<&str>) {
        self.shared().fail_commit = message.map(String::from);
    }

    /// Every successful `start`: kdamond index and configuration.
    pub fn started(&self) -> Vec<(usize, KdamondConfig)> {
        self.shared().started.clone()
    }

    /// Every successful `commit`.
    pub fn committed(&self) -> Vec<KdamondConfig> {
        self.shared().committed.clone()
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

struct FakeKdamond {
    tid: i32,
    stop: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    sample_us: u64,
    aggr_us: u64,
    /// The schemes of the latest start or commit; they are evaluated over the regions set
    /// with [`FakeBackend::set_regions`], as if each update ran one pass of each.
    schemes: Vec<Scheme>,
}

impl KdamondBackend for FakeBackend {
    fn start(
        &self,
        kdamond_idx: usize,
        cfg: &KdamondConfig,
    ) -> Result<Box<dyn RunningKdamond>, BackendError> {
        if let Some(message) = self.shared().fail_start.clone() {
            return Err(BackendError::new(message));
        }
        let ctx = cfg
            .contexts
            .first()
            .ok_or_else(|| BackendError::new("no context"))?;
        let pids: Vec<crate::core::Pid> = ctx.spec.targets.iter().map(|t| t.pid).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(true));
        let (tid_tx, tid_rx) = mpsc::channel();
        let worker = {
            let (stop, running) = (stop.clone(), running.clone());
            thread::Builder::new()
                .name(format!("kdamond.{kdamond_idx}"))
                .spawn(move || {
                    let _ = tid_tx.send(gettid());
                    while !stop.load(Ordering::Acquire)
                        && pids.iter().any(|&p| crate::core::process_alive(p))
                    {
                        thread::sleep(Duration::from_millis(5));
                    }
                    running.store(false, Ordering::Release);
                })
                .map_err(|e| BackendError::new(format!("spawning the fake kdamond: {e}")))?
        };
        let tid = tid_rx
            .recv()
            .map_err(|_| BackendError::new("the fake kdamond died before reporting its tid"))?;
        self.shared().started.push((kdamond_idx, cfg.clone()));
        Ok(Box::new(FakeKdamond {
            tid,
            stop,
            running,
            worker: Some(worker),
            shared: self.shared.clone(),
            sample_us: ctx.spec.attrs.sample_us,
            aggr_us: ctx.spec.attrs.aggr_us,
            schemes: ctx.schemes.clone(),
        }))
    }
}

impl RunningKdamond for FakeKdamond {
    fn pid(&self) -> i32 {
        self.tid
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }

    fn commit(&mut self, cfg: &KdamondConfig) -> Result<(), BackendError> {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(message) = shared.fail_commit.clone() {
            return Err(BackendError::new(message));
        }
        if let Some(ctx) = cfg.contexts.first() {
            self.sample_us = ctx.spec.attrs.sample_us;
            self.aggr_us = ctx.spec.attrs.aggr_us;
            self.schemes = ctx.schemes.clone();
        }
        shared.committed.push(cfg.clone());
        Ok(())
    }

    /// Stats of one pass over the current regions (no quota), and each size quota as the
    /// effective one.
    fn schemes_now(&self) -> Result<SchemesNow, BackendError> {
        let walked = self.walk_schemes()?;
        Ok(SchemesNow {
            stats: walked.iter().map(|t| stat_stats(t)).collect(),
            effective_bytes: self.schemes.iter().map(|s| s.quotas.bytes).collect(),
        })
    }

    fn walk_schemes(&self) -> Result<Vec<Vec<TriedRegion>>, BackendError> {
        let regions = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .regions
            .clone();
        Ok(self
            .schemes
            .iter()
            .map(|s| tried_regions(&s.pattern, regions.iter().map(Vec::as_slice)))
            .collect())
    }

    fn commit_quota_goals(&mut self, goals: Vec<Vec<QuotaGoal>>) -> Result<(), BackendError> {
        for (s, g) in self.schemes.iter_mut().zip(goals) {
            s.quotas.goals = g;
        }
        Ok(())
    }

    fn sample_us(&self) -> u64 {
        self.sample_us
    }

    fn aggr_us(&self) -> u64 {
        self.aggr_us
    }
}

impl Drop for FakeKdamond {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The regions of all targets, in target then address order, that `pattern` selects.
fn tried_regions<'a>(
    pattern: &AccessPattern,
    targets: impl IntoIterator<Item = &'a [Region]>,
) -> Vec<TriedRegion> {
    targets
        .into_iter()
        .flatten()
        .filter(|r| pattern.matches(r))
        .map(TriedRegion::from)
        .collect()
}

/// Stats of a `stat` scheme over `tried`: it applies nothing, so, as in the kernel's vaddr
/// `damos_va_stat()`, `nr_applied` and `sz_applied` stay 0.
fn stat_stats(tried: &[TriedRegion]) -> SchemeStats {
    SchemeStats {
        nr_tried: tried.len() as u64,
        sz_tried: tried.iter().map(|r| r.range.size()).sum(),
        ..SchemeStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scheme::test_util::{pattern, region};

    #[test]
    fn stat_over_targets() {
        let all = pattern((0, u64::MAX), (0, u64::MAX), (0, u64::MAX));
        let hot = pattern((0, u64::MAX), (10, u64::MAX), (0, u64::MAX));
        let targets = [
            vec![region(0x1000, 0x3000, 0, 4), region(0x3000, 0x4000, 20, 1)],
            vec![region(0x10000, 0x20000, 15, 2)],
        ];
        let of = |p| tried_regions(p, targets.iter().map(Vec::as_slice));
        let tried = of(&all);
        assert_eq!(tried.len(), 3);
        assert_eq!(stat_stats(&tried).sz_tried, 0x2000 + 0x1000 + 0x10000);
        let tried = of(&hot);
        assert_eq!(
            tried.iter().map(|r| r.range.start).collect::<Vec<_>>(),
            vec![0x3000, 0x10000]
        );
        let stats = stat_stats(&tried);
        assert_eq!((stats.nr_tried, stats.sz_tried), (2, 0x11000));
        assert_eq!((stats.nr_applied, stats.sz_applied), (0, 0));
    }
}
