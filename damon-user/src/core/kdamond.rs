//! The kdamond: a thread that drives one [`MonitorContext`] in real time, and the handle that
//! starts, queries, changes and stops it.
//!
//! The thread sleeps between a sample's prepare and check by waiting on its command channel, so
//! `stop` and `regions_now` are served at once; `commit` waits for the end of the sample, since
//! changing regions between prepare and check would leave the operations checking pages that
//! no longer belong to the regions they were prepared for.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::attrs::ContextSpec;
use super::context::MonitorContext;
use super::error::CoreError;
use super::ops::Operations;
use super::scheme::{self, QuotaGoal, Scheme, SchemeStats, TriedRegion};
use super::snapshot::Snapshot;
use super::target::LiveTarget;

/// Nanoseconds of `CLOCK_MONOTONIC`, the clock of snapshot timestamps.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

enum Command {
    Stop,
    Commit(ContextSpec, SyncSender<Result<(), CoreError>>),
    Regions(SyncSender<Vec<LiveTarget>>),
    SetSchemes(Vec<Scheme>, SyncSender<()>),
    Schemes(SyncSender<SchemesNow>),
    QuotaGoals(Vec<Vec<QuotaGoal>>, SyncSender<()>),
    Walk(SyncSender<Vec<Vec<TriedRegion>>>),
}

/// What a kdamond's schemes have done: per scheme, its running stats and the effective size
/// quota of its current charge window (0: unlimited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemesNow {
    pub stats: Vec<SchemeStats>,
    pub effective_bytes: Vec<u64>,
}

/// Why a kdamond stopped by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KdamondExit {
    /// It was started without targets.
    NoTargets,
    /// Every target exited: monitoring is over, nothing went wrong.
    TargetsExited,
    /// The access check failed: the error and its causes.
    Failed(String),
}

impl std::fmt::Display for KdamondExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KdamondExit::NoTargets => f.write_str("no targets to monitor"),
            KdamondExit::TargetsExited => f.write_str("all targets exited"),
            KdamondExit::Failed(e) => f.write_str(e),
        }
    }
}

/// State the thread publishes to its handle.
struct Shared {
    running: AtomicBool,
    exit: Mutex<Option<KdamondExit>>,
    /// The sample and aggregation intervals in force (they move under an intervals goal).
    sample_us: AtomicU64,
    aggr_us: AtomicU64,
}

/// Marks the kdamond stopped when its thread ends, even by a panic.
struct RunningGuard(Arc<Shared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            set_exit(
                &self.0,
                KdamondExit::Failed("kdamond thread panicked".to_owned()),
            );
        }
        self.0.running.store(false, Ordering::Release);
    }
}

fn set_exit(shared: &Shared, exit: KdamondExit) {
    *shared.exit.lock().unwrap_or_else(PoisonError::into_inner) = Some(exit);
}

/// A running (or stopped) kdamond. Dropping it stops the kdamond and joins its thread.
pub struct KdamondHandle {
    tid: i32,
    commands: Sender<Command>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a kdamond: validates `spec`, checks that every target process exists, spawns a thread
/// named `kdamond.{kdamond_idx}`, and returns once the thread runs and its tid is known.
///
/// The kdamond sends one [`Snapshot`] per aggregation interval to `sink`; a closed sink is
/// ignored, and the channel is unbounded, so the sampling loop never blocks on a slow reader.
/// `seed` makes the sampled pages and split points reproducible.
pub fn start_kdamond(
    kdamond_idx: usize,
    spec: ContextSpec,
    mut ops: Box<dyn Operations>,
    sink: Sender<Snapshot>,
    seed: u64,
) -> Result<KdamondHandle, CoreError> {
    let ctx = MonitorContext::new(kdamond_idx, spec, seed, monotonic_ns())?;
    if let Some(pid) = ctx.pids().find(|&pid| !ops.target_valid(pid)) {
        return Err(CoreError::NoSuchProcess { pid });
    }
    let name = format!("kdamond.{kdamond_idx}");
    let shared = Arc::new(Shared {
        running: AtomicBool::new(true),
        exit: Mutex::new(None),
        sample_us: AtomicU64::new(ctx.attrs().sample_us),
        aggr_us: AtomicU64::new(ctx.attrs().aggr_us),
    });
    let (commands, command_rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::sync_channel(1);
    let thread_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let guard = RunningGuard(thread_shared);
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            if tid_tx.send(tid).is_err() {
                return;
            }
            Kdamond {
                ctx,
                ops,
                sink,
                commands: command_rx,
                walk: None,
            }
            .run(&guard.0);
        })
        .map_err(|source| CoreError::Spawn {
            name: name.clone(),
            source,
        })?;
    let tid = match tid_rx.recv() {
        Ok(tid) => tid,
        Err(_) => {
            // Joining only collects the thread's panic, which the error reports.
            let _ = thread.join();
            return Err(CoreError::ThreadStart { name });
        }
    };
    Ok(KdamondHandle {
        tid,
        commands,
        shared,
        thread: Some(thread),
    })
}

impl KdamondHandle {
    /// The kernel thread id of the kdamond thread: a real task, visible in `/proc/<tid>/stat`.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The sample and aggregation intervals in force, in microseconds: those set, or, under
    /// an intervals goal, the latest tuned ones.
    pub fn intervals_now(&self) -> (u64, u64) {
        (
            self.shared.sample_us.load(Ordering::Relaxed),
            self.shared.aggr_us.load(Ordering::Relaxed),
        )
    }

    /// False once the kdamond stopped, by itself or by [`stop`](Self::stop).
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Stops the kdamond and joins its thread: within about one sample interval, as the thread
    /// sleeps on its command channel. Idempotent.
    pub fn stop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("kdamond thread (tid {}) panicked", self.tid);
        }
    }

    /// Applies `spec` to the running kdamond, rescaling counters to new attributes. Validated
    /// here first and its pids checked by the kdamond: on error the running context is
    /// unchanged. Returns once applied, which happens at the end of the current sample, so it
    /// can take up to one sample interval.
    pub fn commit(&self, spec: ContextSpec) -> Result<(), CoreError> {
        spec.validate()?;
        self.ask(|reply| Command::Commit(spec, reply))?
    }

    /// The current regions of every target, counters (including `nr_accesses_bp`) as of the end
    /// of the latest sample. Served without waiting for the sample to end.
    pub fn regions_now(&self) -> Result<Vec<LiveTarget>, CoreError> {
        self.ask(Command::Regions)
    }

    /// Sets the schemes (DAMOS) the kdamond applies; a scheme at an index that had one keeps
    /// its stats and quota state, as the kernel's commit does.
    pub fn set_schemes(&self, schemes: Vec<Scheme>) -> Result<(), CoreError> {
        self.ask(|reply| Command::SetSchemes(schemes, reply))
    }

    /// The schemes' running stats and effective quotas now.
    pub fn schemes_now(&self) -> Result<SchemesNow, CoreError> {
        self.ask(Command::Schemes)
    }

    /// New quota goals for each scheme (`commit_schemes_quota_goals`).
    pub fn commit_quota_goals(&self, goals: Vec<Vec<QuotaGoal>>) -> Result<(), CoreError> {
        self.ask(|reply| Command::QuotaGoals(goals, reply))
    }

    /// The regions each scheme is applied to in its next due pass (`damos_walk()`): waits
    /// until every scheme has had one, up to its apply interval.
    pub fn walk_schemes(&self) -> Result<Vec<Vec<TriedRegion>>, CoreError> {
        self.ask(Command::Walk)
    }

    /// Why the kdamond stopped by itself; `None` while it runs or when [`stop`](Self::stop)
    /// stopped it.
    pub fn exit_reason(&self) -> Option<String> {
        self.exit().map(|e| e.to_string())
    }

    /// Why the kdamond stopped by itself, as a value; `None` while it runs or when
    /// [`stop`](Self::stop) stopped it.
    pub fn exit(&self) -> Option<KdamondExit> {
        if self.is_running() {
            return None;
        }
        self.shared
            .exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends the command `make` builds around a reply channel, and waits for the reply.
    fn ask<T>(&self, make: impl FnOnce(SyncSender<T>) -> Command) -> Result<T, CoreError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.request(make(reply_tx))?;
        // The kdamond dropped the request: it stopped first, or (a walk) every scheme is
        // inactive.
        reply_rx.recv().map_err(|_| CoreError::Canceled)
    }

    fn request(&self, command: Command) -> Result<(), CoreError> {
        if !self.is_running() {
            return Err(CoreError::NotRunning);
        }
        self.commands
            .send(command)
            .map_err(|_| CoreError::NotRunning)
    }
}

impl Drop for KdamondHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread's side.
struct Kdamond {
    ctx: MonitorContext,
    ops: Box<dyn Operations>,
    sink: Sender<Snapshot>,
    commands: Receiver<Command>,
    /// Who waits for the tried-regions walk in progress.
    walk: Option<SyncSender<Vec<Vec<TriedRegion>>>>,
}

/// How the wait for the end of a sample interval ended.
enum Wait {
    Elapsed,
    Stop,
}

impl Kdamond {
    fn run(mut self, shared: &Shared) {
        let exit = self.monitor(shared);
        self.ops.cleanup();
        if let Some(exit) = exit {
            log::info!("kdamond.{} stopped: {exit}", self.ctx.kdamond_idx());
            set_exit(shared, exit);
        }
    }

    /// The loop; returns why it stopped by itself, or `None` when told to stop.
    fn monitor(&mut self, shared: &Shared) -> Option<KdamondExit> {
        let mut pending = Vec::new();
        let mut first = true;
        loop {
            if !self.ctx.any_target_valid(self.ops.as_mut()) {
                return Some(if self.ctx.nr_targets() == 0 {
                    KdamondExit::NoTargets
                } else {
                    KdamondExit::TargetsExited
                });
            }
            // Watermarks: while every scheme is inactive nothing is sampled; the kdamond
            // checks again after the shortest interval, serving requests meanwhile.
            let mut free_mem_rate = None;
            let pause = self.ctx.wmark_wait_us(&mut |m| {
                *free_mem_rate.get_or_insert_with(|| scheme::wmark::metric_value(m))
            });
            if pause > 0 {
                self.ctx.discard_sample();
                self.ctx.cancel_walk();
                // Dropping the reply tells the waiting writer the walk was cancelled.
                self.walk = None;
                let until = Instant::now().checked_add(Duration::from_micros(pause));
                if let Wait::Stop = self.wait(until, &mut pending) {
                    return None;
                }
                for command in pending.drain(..) {
                    self.serve(command);
                }
                continue;
            }
            if !self.ctx.is_prepared() {
                if let Err(err) = self.ctx.prepare(self.ops.as_mut()) {
                    return Some(KdamondExit::Failed(crate::error::Chain(&err).to_string()));
                }
                if first {
                    first = false;
                    log::debug!(
                        "kdamond.{}: first sample at {} ns",
                        self.ctx.kdamond_idx(),
                        monotonic_ns()
                    );
                }
            }
            // A check comes one whole sample interval after the step that prepared it, as in
            // the kernel (its kdamond sleeps the interval after preparing): a window shortened
            // by the step's own time would miss accesses of a workload that touches its memory
            // about once per interval. An aggregation takes `aggr/sample` times (interval +
            // step).
            let sample = Duration::from_micros(self.ctx.attrs().sample_us);
            if let Wait::Stop = self.wait(Instant::now().checked_add(sample), &mut pending) {
                return None;
            }
            // A commit may change the regions: check without preparing the next sample, which
            // is then prepared on the committed regions.
            let result = if pending.is_empty() {
                self.ctx.sample(self.ops.as_mut(), monotonic_ns())
            } else {
                self.ctx.sample_and_pause(self.ops.as_mut(), monotonic_ns())
            };
            match result {
                Ok(Some(snapshot)) => {
                    let _ = self.sink.send(snapshot);
                    // A tuning happens at the end of an aggregation.
                    self.publish_intervals(shared);
                }
                Ok(None) => {}
                Err(err) => {
                    return Some(KdamondExit::Failed(crate::error::Chain(&err).to_string()));
                }
            }
            let committed = !pending.is_empty();
            for command in pending.drain(..) {
                self.serve(command);
            }
            self.finish_walk();
            if committed {
                // A commit may have changed either interval.
                self.publish_intervals(shared);
            }
        }
    }

    fn publish_intervals(&self, shared: &Shared) {
        let a = self.ctx.attrs();
        shared.sample_us.store(a.sample_us, Ordering::Relaxed);
        shared.aggr_us.store(a.aggr_us, Ordering::Relaxed);
    }

    /// Sleeps until `deadline`, serving `regions_now` and queueing commits for after the sample;
    /// returns early on stop or when the handle is gone.
    fn wait(&mut self, deadline: Option<Instant>, pending: &mut Vec<Command>) -> Wait {
        // No deadline for an interval beyond `Instant`'s range: wait for a command only.
        loop {
            let timeout = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            match self.commands.recv_timeout(timeout) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return Wait::Stop,
                // Reading regions is harmless mid-sample: their counters only change at check.
                Ok(command @ Command::Regions(_)) => self.serve(command),
                // Nor do the schemes' settings, stats and walks: the passes run at the check.
                Ok(
                    command @ (Command::SetSchemes(..)
                    | Command::Schemes(_)
                    | Command::QuotaGoals(..)
                    | Command::Walk(_)),
                ) => {
                    self.serve(command);
                    self.finish_walk();
                }
                Ok(command) => pending.push(command),
                Err(RecvTimeoutError::Timeout) => return Wait::Elapsed,
            }
        }
    }

    fn serve(&mut self, command: Command) {
        match command {
            Command::Stop => {}
            Command::Commit(spec, reply) => {
                let result = match spec.targets.iter().find(|t| !self.ops.target_valid(t.pid)) {
                    Some(t) => Err(CoreError::NoSuchProcess { pid: t.pid }),
                    None => self.ctx.commit(spec, monotonic_ns()),
                };
                let _ = reply.send(result);
            }
            Command::Regions(reply) => {
                let _ = reply.send(self.ctx.live_targets());
            }
            Command::SetSchemes(schemes, reply) => {
                self.ctx.set_schemes(schemes);
                let _ = reply.send(());
            }
            Command::Schemes(reply) => {
                let _ = reply.send(SchemesNow {
                    stats: self.ctx.scheme_stats(),
                    effective_bytes: self.ctx.effective_quotas(),
                });
            }
            Command::QuotaGoals(goals, reply) => {
                self.ctx.commit_quota_goals(goals);
                let _ = reply.send(());
            }
            Command::Walk(reply) => {
                self.ctx.start_walk();
                self.walk = Some(reply);
            }
        }
    }

    /// Answers the walk in progress once every scheme has had its pass.
    fn finish_walk(&mut self) {
        if self.walk.is_some()
            && let Some(regions) = self.ctx.take_walk()
            && let Some(reply) = self.walk.take()
        {
            let _ = reply.send(regions);
        }
    }
}
