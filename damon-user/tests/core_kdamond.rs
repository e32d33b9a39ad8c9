//! The kdamond thread: a named, real task; prompt stop; stopping by itself; commit and
//! regions_now served while it runs.
use damon_user::core::Pid;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use damon_user::core::kdamond::monotonic_ns;
use damon_user::core::sim::{HotArea, SimMemory};
use damon_user::core::{
    AddrRange, Attrs, ContextSpec, CoreError, KdamondHandle, Operations, OpsError, OpsId,
    SampleStep, Snapshot, TargetSpec, start_kdamond,
};

const MIB: u64 = 1 << 20;
const HEAP: AddrRange = AddrRange {
    start: 0x100_0000,
    end: 0x100_0000 + 16 * MIB,
};

fn sim(pid: i32) -> SimMemory {
    let sim = SimMemory::new(pid as u64);
    sim.add_process(
        pid,
        vec![
            AddrRange::new(0x40_0000, 0x50_0000),
            HEAP,
            AddrRange::new(0x7f00_0000_0000, 0x7f00_0080_0000),
            AddrRange::new(0x7ffd_0000_0000, 0x7ffd_0002_1000),
        ],
    );
    sim.set_hot_areas(pid, vec![HotArea::new(HEAP.start, HEAP.start + MIB, 1.0)]);
    sim
}

fn spec(attrs: Attrs, pid: i32) -> ContextSpec {
    ContextSpec {
        ops: OpsId::Vaddr,
        attrs,
        targets: vec![TargetSpec::vaddr(pid)],
    }
}

/// 1 ms samples, 10 ms aggregations: fast tests.
fn fast() -> Attrs {
    Attrs {
        sample_us: 1_000,
        aggr_us: 10_000,
        update_us: 100_000,
        ..Attrs::default()
    }
}

fn start(
    idx: usize,
    attrs: Attrs,
    sim: &SimMemory,
    pid: i32,
) -> (KdamondHandle, mpsc::Receiver<Snapshot>) {
    let (tx, rx) = mpsc::channel();
    let handle = start_kdamond(idx, spec(attrs, pid), Box::new(sim.clone()), tx, 42)
        .expect("kdamond starts");
    (handle, rx)
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// The state of thread `tid` of this process (`R`, `S`, ...), as its `stat` file shows it.
fn task_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn thread_is_a_named_real_task() {
    let sim = sim(100);
    let (mut handle, rx) = start(3, fast(), &sim, 100);
    let tid = handle.tid();
    assert_ne!(tid as u32, std::process::id(), "its own thread");
    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).expect("task exists");
    assert_eq!(comm, "kdamond.3\n");
    let stat =
        std::fs::read_to_string(format!("/proc/{tid}/stat")).expect("visible as /proc/<tid>");
    assert!(stat.starts_with(&format!("{tid} (kdamond.3) ")), "{stat}");
    // It produces snapshots, one per aggregation, for target 0 and pid 100.
    let snap = rx.recv_timeout(Duration::from_secs(5)).expect("a snapshot");
    assert_eq!((snap.kdamond_idx, snap.targets[0].pid), (3, Pid(100)));
    assert!(snap.end_ns > snap.start_ns);
    assert!(handle.is_running());
    handle.stop();
    assert!(!handle.is_running());
    assert_eq!(handle.exit_reason(), None, "stopped by stop()");
    handle.stop(); // idempotent
}

#[test]
fn stop_is_prompt() {
    let sim = sim(101);
    // Kernel default intervals: 5 ms samples.
    let (mut handle, rx) = start(0, Attrs::default(), &sim, 101);
    // Stopped in its sampling loop, past its first aggregation.
    rx.recv_timeout(Duration::from_secs(5))
        .expect("a first snapshot");
    let begin = Instant::now();
    handle.stop();
    let took = begin.elapsed();
    assert!(took < Duration::from_millis(50), "stop took {took:?}");
    assert!(!handle.is_running());

    // Even with the longest sample interval (beyond what an Instant can hold): the sleep is a
    // wait on the command channel.
    let slow = Attrs {
        sample_us: u64::MAX,
        aggr_us: u64::MAX,
        ..Attrs::default()
    };
    let (mut handle, _rx) = start(1, slow, &sim, 101);
    let tid = handle.tid();
    assert!(
        wait_until(Duration::from_secs(5), || task_state(tid) == Some('S')),
        "the kdamond never went to sleep: {:?}",
        task_state(tid)
    );
    let begin = Instant::now();
    handle.stop();
    assert!(
        begin.elapsed() < Duration::from_millis(100),
        "{:?}",
        begin.elapsed()
    );
}

#[test]
fn stops_by_itself_when_all_targets_exit() {
    let sim = sim(102);
    let (handle, rx) = start(0, fast(), &sim, 102);
    rx.recv_timeout(Duration::from_secs(5)).expect("running");
    sim.remove_process(102);
    assert!(wait_until(Duration::from_secs(2), || !handle.is_running()));
    assert_eq!(handle.exit_reason().as_deref(), Some("all targets exited"));
    assert_eq!(
        handle.exit(),
        Some(damon_user::core::KdamondExit::TargetsExited)
    );
    assert!(matches!(handle.regions_now(), Err(CoreError::NotRunning)));
    assert!(matches!(
        handle.commit(spec(fast(), 102)),
        Err(CoreError::NotRunning)
    ));
}

#[test]
fn regions_now_and_commit_are_served_while_running() {
    let sim = sim(103);
    let (handle, rx) = start(0, fast(), &sim, 103);
    rx.recv_timeout(Duration::from_secs(5)).expect("running");
    let live = handle.regions_now().expect("running");
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].target_idx, live[0].pid), (0, Pid(103)));
    assert!(live[0].regions.len() >= 10);
    // The hot MiB shows in the moving estimate of some region.
    assert!(live[0].regions.iter().any(|r| r.nr_accesses_bp > 0));

    // An invalid spec is refused and the kdamond keeps its attributes.
    let bad = Attrs {
        min_nr_regions: 20,
        max_nr_regions: 10,
        ..fast()
    };
    assert!(matches!(
        handle.commit(spec(bad, 103)),
        Err(CoreError::MinAboveMax { min: 20, max: 10 })
    ));
    assert!(matches!(
        handle.commit(spec(fast(), 999)),
        Err(CoreError::NoSuchProcess { pid: Pid(999) })
    ));
    let snap = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("still running");
    assert_eq!(snap.intervals, fast().intervals());

    // A valid one is applied before commit returns: it restarts the aggregation interval, so
    // the first snapshot with the new intervals starts within the commit call.
    let slower = Attrs {
        aggr_us: 20_000,
        ..fast()
    };
    let before = monotonic_ns();
    handle.commit(spec(slower, 103)).expect("applied");
    let after = monotonic_ns();
    let first_slow = loop {
        let snap = rx.recv_timeout(Duration::from_secs(5)).expect("running");
        if snap.intervals == slower.intervals() {
            break snap;
        }
        assert_eq!(snap.intervals, fast().intervals());
        assert!(snap.end_ns <= after, "old intervals after the commit");
    };
    assert!(
        (before..=after).contains(&first_slow.start_ns),
        "{before} <= {} <= {after}",
        first_slow.start_ns
    );
    assert!(
        first_slow.targets[0]
            .regions
            .iter()
            .all(|r| r.nr_accesses <= 20)
    );
}

#[test]
fn start_checks_spec_and_targets() {
    let sim = sim(104);
    let (tx, _rx) = mpsc::channel();
    let bad = spec(
        Attrs {
            sample_us: 200_000,
            ..Attrs::default()
        },
        104,
    );
    assert!(matches!(
        start_kdamond(0, bad, Box::new(sim.clone()), tx.clone(), 0),
        Err(CoreError::SampleAboveAggr { .. })
    ));
    assert!(matches!(
        start_kdamond(0, spec(fast(), 5), Box::new(sim), tx, 0),
        Err(CoreError::NoSuchProcess { pid: Pid(5) })
    ));
}

/// Operations whose access check fails: the kdamond stops with the error as its reason, and
/// the operations are cleaned up.
struct Failing {
    sim: SimMemory,
    cleaned: mpsc::Sender<()>,
}

impl Operations for Failing {
    fn mappings(&mut self, pid: Pid) -> Result<Vec<AddrRange>, OpsError> {
        self.sim.mappings(pid)
    }

    fn target_valid(&mut self, pid: Pid) -> bool {
        self.sim.target_valid(pid)
    }

    /// Prepares fine; the first check fails.
    fn sample(&mut self, step: &mut SampleStep<'_>) -> Result<(), OpsError> {
        if !step.check() || step.is_empty() {
            return Ok(());
        }
        Err(OpsError::failed(
            format!("walking page tables of pid {}", step.target(0).target.pid),
            std::io::Error::from_raw_os_error(libc::EPERM),
        ))
    }

    fn cleanup(&mut self) {
        let _ = self.cleaned.send(());
    }
}

#[test]
fn ops_failure_stops_with_its_error() {
    let (cleaned_tx, cleaned_rx) = mpsc::channel();
    let ops = Failing {
        sim: sim(105),
        cleaned: cleaned_tx,
    };
    let (tx, _rx) = mpsc::channel();
    let handle = start_kdamond(0, spec(fast(), 105), Box::new(ops), tx, 0).expect("starts");
    cleaned_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("cleanup called");
    assert!(wait_until(Duration::from_secs(2), || !handle.is_running()));
    assert!(
        matches!(
            handle.exit(),
            Some(damon_user::core::KdamondExit::Failed(_))
        ),
        "a failed access check is a failure: {:?}",
        handle.exit()
    );
    let reason = handle.exit_reason().expect("stopped by itself");
    assert!(
        reason.starts_with("walking page tables of pid 105: Operation not permitted"),
        "{reason}"
    );
}

#[test]
fn regions_now_does_not_wait_for_the_sample() {
    let sim = sim(107);
    let endless = Attrs {
        sample_us: u64::MAX,
        aggr_us: u64::MAX,
        ..Attrs::default()
    };
    let (mut handle, _rx) = start(0, endless, &sim, 107);
    let begin = Instant::now();
    let live = handle.regions_now().expect("running");
    assert!(
        begin.elapsed() < Duration::from_millis(100),
        "{:?}",
        begin.elapsed()
    );
    assert!(live[0].regions.len() >= 10, "built at the first prepare");
    handle.stop();
}

#[test]
fn handle_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<KdamondHandle>();
}

#[test]
fn dropping_the_handle_stops_the_thread() {
    let sim = sim(106);
    let (handle, _rx) = start(7, fast(), &sim, 106);
    let tid = handle.tid();
    drop(handle);
    // Joined: the task is gone (the kernel reaps it right after the join returns).
    let task = format!("/proc/self/task/{tid}");
    assert!(wait_until(Duration::from_secs(1), || std::fs::metadata(
        &task
    )
    .is_err()));
}

/// A scheme whose watermarks keep it inactive: the free memory rate (per mille) is never
/// above 1000, so `low` 1000 keeps it out unless all memory is free.
fn never_active() -> damon_user::core::scheme::Scheme {
    use damon_user::core::scheme::{AccessPattern, Action, Scheme, Watermarks, WmarkMetric};
    Scheme {
        wmarks: Watermarks {
            metric: WmarkMetric::FreeMemRate,
            interval_us: 20_000,
            high: 1000,
            mid: 1000,
            low: 1000,
        },
        ..Scheme::new(Action::Stat, AccessPattern::ANY)
    }
}

#[test]
fn inactive_watermarks_pause_monitoring_and_cancel_walks() {
    let pid = 4242;
    let sim = sim(pid);
    let (kd, rx) = start(0, fast(), &sim, pid);
    assert!(
        rx.recv_timeout(Duration::from_secs(5)).is_ok(),
        "monitoring runs"
    );
    kd.set_schemes(vec![never_active()]).expect("schemes");
    // At most the aggregation in progress ends; then nothing is sampled.
    std::thread::sleep(Duration::from_millis(50));
    let checks = sim.stats().checks;
    while rx.try_recv().is_ok() {}
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sim.stats().checks,
        checks,
        "sampling went on while inactive"
    );
    assert!(rx.try_recv().is_err(), "a snapshot while inactive");
    // Requests are still served; a walk is cancelled.
    assert_eq!(kd.schemes_now().expect("stats").stats[0].nr_tried, 0);
    assert!(matches!(kd.walk_schemes(), Err(CoreError::Canceled)));
    // A scheme without watermarks resumes monitoring.
    kd.set_schemes(vec![damon_user::core::scheme::Scheme {
        wmarks: Default::default(),
        ..never_active()
    }])
    .expect("schemes");
    assert!(
        rx.recv_timeout(Duration::from_secs(5)).is_ok(),
        "monitoring resumed"
    );
    assert!(kd.schemes_now().expect("stats").stats[0].nr_tried > 0);
}
