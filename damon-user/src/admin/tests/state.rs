//! The `state` keywords, `pid`, snapshots and locking, against the fake backend.

use crate::core::{AddrRange, OpsId, scheme::Action};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::super::tree::Admin;
use super::*;

/// A process that lives until killed: a monitoring target we own.
struct Workload(Child);

impl Workload {
    fn start() -> Self {
        Workload(
            Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("spawn sleep"),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One kdamond monitoring `pid` with one catch-all stat scheme, staged but off.
fn staged(pid: i32) -> (Tree, FakeBackend) {
    let (mut t, fake) = tree();
    one_context(&mut t);
    set(&mut t, &format!("{C}/targets/nr_targets"), "1");
    set(
        &mut t,
        &format!("{C}/targets/0/pid_target"),
        &pid.to_string(),
    );
    set(&mut t, &format!("{C}/schemes/nr_schemes"), "1");
    for range in ["sz", "nr_accesses", "age"] {
        set(
            &mut t,
            &format!("{S}/access_pattern/{range}/max"),
            &u64::MAX.to_string(),
        );
    }
    (t, fake)
}

fn state(t: &mut Tree, keyword: &str) -> Result<(), AdminError> {
    write(t, &format!("{K}/state"), keyword)
}

fn state_errno(t: &mut Tree, keyword: &str) -> i32 {
    write_errno(t, &format!("{K}/state"), keyword)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn on_off_state_and_pid() {
    let w = Workload::start();
    let (mut t, fake) = staged(w.pid());
    assert_eq!(read(&t, &format!("{K}/state")), "off\n");
    assert_eq!(read(&t, &format!("{K}/pid")), "-1\n");
    state(&mut t, "on\n").unwrap();
    assert_eq!(read(&t, &format!("{K}/state")), "on\n");
    let pid: i32 = read(&t, &format!("{K}/pid")).trim().parse().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    let started = fake.started();
    assert_eq!(started.len(), 1);
    let ctx = &started[0].1.contexts[0];
    let (spec, attrs) = (&ctx.spec, &ctx.spec.attrs);
    assert_eq!(spec.ops, OpsId::Vaddr);
    assert_eq!(
        (attrs.sample_us, attrs.aggr_us, attrs.update_us),
        (5000, 100_000, 60_000_000)
    );
    assert_eq!((attrs.min_nr_regions, attrs.max_nr_regions), (10, 1000));
    assert_eq!(spec.targets[0].pid, w.pid());
    assert_eq!(ctx.schemes[0].action, Action::Stat);

    assert_eq!(state_errno(&mut t, "on"), libc::EBUSY);
    assert_eq!(
        write_errno(&mut t, "kdamonds/nr_kdamonds", "1"),
        libc::EBUSY
    );
    // The count is parsed before the busy check, as in the kernel.
    assert_eq!(
        write_errno(&mut t, "kdamonds/nr_kdamonds", "abc"),
        libc::EINVAL
    );
    assert_eq!(read(&t, "kdamonds/nr_kdamonds"), "1\n");

    state(&mut t, "off").unwrap();
    assert_eq!(read(&t, &format!("{K}/state")), "off\n");
    assert_eq!(read(&t, &format!("{K}/pid")), "-1\n");
    assert_eq!(state_errno(&mut t, "off"), libc::EPERM);
    // Stopped, it can start again, and nr_kdamonds is writable again.
    state(&mut t, "on").unwrap();
    state(&mut t, "off").unwrap();
    set(&mut t, "kdamonds/nr_kdamonds", "1");
    assert_eq!(state_errno(&mut t, "off"), libc::EINVAL);
}

#[test]
fn unknown_keywords() {
    let (mut t, _) = staged(std::process::id() as i32);
    for bad in ["", "On", "on ", "start", "on\n\n", "update_schemes_stat"] {
        assert_eq!(state_errno(&mut t, bad), libc::EINVAL, "{bad:?}");
    }
    assert_eq!(read(&t, &format!("{K}/state")), "off\n");
}

#[test]
fn keywords_that_need_a_running_kdamond() {
    let (mut t, _) = staged(std::process::id() as i32);
    let needs_running = [
        "commit",
        "commit_schemes_quota_goals",
        "update_schemes_stats",
        "update_schemes_tried_bytes",
        "update_schemes_tried_regions",
        "update_schemes_effective_quotas",
        "update_tuned_intervals",
    ];
    // Never started, then stopped.
    for round in 0..2 {
        for keyword in needs_running {
            assert_eq!(
                state_errno(&mut t, keyword),
                libc::EINVAL,
                "{keyword} ({round})"
            );
        }
        state(&mut t, "clear_schemes_tried_regions").unwrap();
        state(&mut t, "on").unwrap();
        state(&mut t, "off").unwrap();
    }
}

/// The actions `process_madvise` can carry out on another process start; the schemes reach
/// the backend with them.
#[test]
fn on_takes_the_actions_this_build_applies() {
    let me = std::process::id() as i32;
    for (word, action) in [
        ("stat", Action::Stat),
        ("pageout", Action::Pageout),
        ("cold", Action::Cold),
        ("lru_deprio", Action::LruDeprio),
        ("willneed", Action::Willneed),
        ("collapse", Action::Collapse),
    ] {
        let (mut t, fake) = staged(me);
        set(&mut t, &format!("{S}/action"), word);
        state(&mut t, "on").unwrap_or_else(|e| panic!("{word}: {e}"));
        let started = fake.started();
        assert_eq!(started[0].1.contexts[0].schemes[0].action, action, "{word}");
        state(&mut t, "off").unwrap();
    }
}

/// `on` refuses every invalid configuration with EINVAL, and starts nothing.
#[test]
fn on_validates_the_staged_files() {
    let me = std::process::id() as i32;
    let cases: Vec<(&str, Vec<(String, &str)>)> = vec![
        ("paddr", vec![(format!("{C}/operations"), "paddr")]),
        ("addr_unit", vec![(format!("{C}/addr_unit"), "2")]),
        (
            "min_nr_regions < 3",
            vec![(format!("{C}/monitoring_attrs/nr_regions/min"), "2")],
        ),
        (
            "min > max",
            vec![
                (format!("{C}/monitoring_attrs/nr_regions/min"), "100"),
                (format!("{C}/monitoring_attrs/nr_regions/max"), "99"),
            ],
        ),
        (
            "sample > aggr",
            vec![(
                format!("{C}/monitoring_attrs/intervals/sample_us"),
                "200000",
            )],
        ),
        (
            "intervals goal",
            vec![
                (
                    format!("{C}/monitoring_attrs/intervals/intervals_goal/aggrs"),
                    "3",
                ),
                (
                    format!("{C}/monitoring_attrs/intervals/intervals_goal/min_sample_us"),
                    "10",
                ),
            ],
        ),
        ("pid 0", vec![(format!("{C}/targets/0/pid_target"), "0")]),
        (
            "no such pid",
            vec![(format!("{C}/targets/0/pid_target"), "2147483647")],
        ),
        (
            "start after end",
            vec![
                (format!("{C}/targets/0/regions/nr_regions"), "1"),
                (format!("{C}/targets/0/regions/0/start"), "0x2000"),
                (format!("{C}/targets/0/regions/0/end"), "0x1000"),
            ],
        ),
        (
            "overlap",
            vec![
                (format!("{C}/targets/0/regions/nr_regions"), "2"),
                (format!("{C}/targets/0/regions/0/start"), "0x1000"),
                (format!("{C}/targets/0/regions/0/end"), "0x3000"),
                (format!("{C}/targets/0/regions/1/start"), "0x2000"),
                (format!("{C}/targets/0/regions/1/end"), "0x4000"),
            ],
        ),
        (
            "unsorted",
            vec![
                (format!("{C}/targets/0/regions/nr_regions"), "2"),
                (format!("{C}/targets/0/regions/0/start"), "0x5000"),
                (format!("{C}/targets/0/regions/0/end"), "0x6000"),
                (format!("{C}/targets/0/regions/1/start"), "0x1000"),
                (format!("{C}/targets/0/regions/1/end"), "0x2000"),
            ],
        ),
        ("hugepage", vec![(format!("{S}/action"), "hugepage")]),
        ("lru_prio", vec![(format!("{S}/action"), "lru_prio")]),
        (
            "migrate_cold",
            vec![(format!("{S}/action"), "migrate_cold")],
        ),
        (
            "young filter on stat",
            vec![
                (format!("{S}/ops_filters/nr_filters"), "1"),
                (format!("{S}/ops_filters/0/type"), "young"),
            ],
        ),
        (
            "memcg quota goal",
            vec![
                (format!("{S}/quotas/goals/nr_goals"), "1"),
                (
                    format!("{S}/quotas/goals/0/target_metric"),
                    "node_memcg_used_bp",
                ),
                (format!("{S}/quotas/goals/0/target_value"), "5000"),
            ],
        ),
        (
            "no context",
            vec![(format!("{K}/contexts/nr_contexts"), "0")],
        ),
    ];
    for (what, writes) in cases {
        let (mut t, fake) = staged(me);
        for (path, value) in &writes {
            set(&mut t, path, value);
        }
        assert_eq!(state_errno(&mut t, "on"), libc::EINVAL, "{what}");
        assert_eq!(read(&t, &format!("{K}/state")), "off\n", "{what}");
        assert!(fake.started().is_empty(), "{what}");
        // Never started: off is EINVAL.
        assert_eq!(state_errno(&mut t, "off"), libc::EINVAL, "{what}");
    }
    // Adjacent regions and fvaddr are fine.
    let (mut t, fake) = staged(me);
    set(&mut t, &format!("{C}/operations"), "fvaddr");
    set(&mut t, &format!("{C}/targets/0/regions/nr_regions"), "2");
    for (path, value) in [
        ("0/start", "0x1000"),
        ("0/end", "0x2000"),
        ("1/start", "0x2000"),
        ("1/end", "0x3000"),
    ] {
        set(&mut t, &format!("{C}/targets/0/regions/{path}"), value);
    }
    state(&mut t, "on").unwrap();
    let ctx = &fake.started()[0].1.contexts[0];
    assert_eq!(ctx.spec.ops, OpsId::Fvaddr);
    assert_eq!(
        ctx.spec.targets[0].ranges,
        vec![
            AddrRange::new(0x1000, 0x2000),
            AddrRange::new(0x2000, 0x3000)
        ]
    );
}

#[test]
fn backend_failure_is_einval_and_changes_nothing() {
    let (mut t, fake) = staged(std::process::id() as i32);
    fake.fail_start(Some("no eBPF today"));
    let err = state(&mut t, "on").unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    let text = crate::error::Chain(&err).to_string();
    assert_eq!(text, "kdamond 0: no eBPF today");
    assert_eq!(read(&t, &format!("{K}/state")), "off\n");
    fake.fail_start(None);
    state(&mut t, "on").unwrap();
}

#[test]
fn commit_applies_staged_files_or_nothing() {
    let (mut t, fake) = staged(std::process::id() as i32);
    state(&mut t, "on").unwrap();
    set(
        &mut t,
        &format!("{C}/monitoring_attrs/intervals/aggr_us"),
        "200000",
    );
    state(&mut t, "commit").unwrap();
    assert_eq!(fake.committed().len(), 1);
    assert_eq!(fake.committed()[0].contexts[0].spec.attrs.aggr_us, 200_000);

    // Invalid staged files: EINVAL, nothing committed, the kdamond keeps running.
    set(&mut t, &format!("{C}/monitoring_attrs/nr_regions/min"), "1");
    assert_eq!(state_errno(&mut t, "commit"), libc::EINVAL);
    assert_eq!(fake.committed().len(), 1);
    assert_eq!(read(&t, &format!("{K}/state")), "on\n");
    set(
        &mut t,
        &format!("{C}/monitoring_attrs/nr_regions/min"),
        "10",
    );

    fake.fail_commit(Some("cannot rescale"));
    assert_eq!(state_errno(&mut t, "commit"), libc::EINVAL);
    fake.fail_commit(None);
    state(&mut t, "commit").unwrap();
    assert_eq!(fake.committed().len(), 2);
}

/// Snapshots use the running schemes: a staged pattern counts only after `commit`.
#[test]
fn tried_regions_and_stats_of_the_stat_scheme() {
    let (mut t, fake) = staged(std::process::id() as i32);
    // Two schemes: catch-all, and hot regions only (nr_accesses >= 10).
    set(&mut t, &format!("{C}/schemes/nr_schemes"), "2");
    for scheme in ["0", "1"] {
        for range in ["sz", "nr_accesses", "age"] {
            set(
                &mut t,
                &format!("{C}/schemes/{scheme}/access_pattern/{range}/max"),
                "0xffffffffffffffff",
            );
        }
    }
    let hot = format!("{C}/schemes/1");
    set(
        &mut t,
        &format!("{hot}/access_pattern/nr_accesses/min"),
        "10",
    );
    fake.set_regions(vec![vec![
        region(0x1000, 0x3000, 0, 7),
        region(0x3000, 0x4000, 12, 2),
        region(0x4000, 0x8000, 20, 0),
    ]]);
    state(&mut t, "on").unwrap();

    state(&mut t, "update_schemes_tried_regions").unwrap();
    let tr = format!("{S}/tried_regions");
    assert_eq!(
        read(&t, &format!("{tr}/total_bytes")),
        format!("{}\n", 0x7000)
    );
    assert_eq!(read(&t, &format!("{tr}/0/start")), format!("{}\n", 0x1000));
    assert_eq!(read(&t, &format!("{tr}/0/end")), format!("{}\n", 0x3000));
    assert_eq!(read(&t, &format!("{tr}/0/age")), "7\n");
    assert_eq!(read(&t, &format!("{tr}/1/nr_accesses")), "12\n");
    assert_eq!(read(&t, &format!("{tr}/2/sz_filter_passed")), "0\n");
    assert_eq!(
        write_errno(&mut t, &format!("{tr}/0/start"), "1"),
        libc::EACCES
    );
    let hot_tr = format!("{hot}/tried_regions");
    assert_eq!(t.list(&super::split(&hot_tr)).unwrap().len(), 3); // total_bytes + 2 regions
    assert_eq!(
        read(&t, &format!("{hot_tr}/0/start")),
        format!("{}\n", 0x3000)
    );
    assert_eq!(
        read(&t, &format!("{hot_tr}/total_bytes")),
        format!("{}\n", 0x5000)
    );

    state(&mut t, "update_schemes_stats").unwrap();
    assert_eq!(read(&t, &format!("{S}/stats/nr_tried")), "3\n");
    assert_eq!(
        read(&t, &format!("{S}/stats/sz_tried")),
        format!("{}\n", 0x7000)
    );
    assert_eq!(read(&t, &format!("{hot}/stats/nr_tried")), "2\n");
    assert_eq!(read(&t, &format!("{hot}/stats/nr_applied")), "0\n");
    assert_eq!(
        write_errno(&mut t, &format!("{S}/stats/nr_tried"), "0"),
        libc::EACCES
    );

    // A staged change of the pattern is not used before commit.
    set(
        &mut t,
        &format!("{hot}/access_pattern/nr_accesses/min"),
        "15",
    );
    state(&mut t, "update_schemes_tried_regions").unwrap();
    assert_eq!(
        read(&t, &format!("{hot_tr}/total_bytes")),
        format!("{}\n", 0x5000)
    );
    state(&mut t, "commit").unwrap();
    state(&mut t, "update_schemes_tried_regions").unwrap();
    assert_eq!(
        read(&t, &format!("{hot_tr}/total_bytes")),
        format!("{}\n", 0x4000)
    );

    // tried_bytes: only total_bytes, region directories removed.
    state(&mut t, "update_schemes_tried_bytes").unwrap();
    assert_eq!(
        read(&t, &format!("{tr}/total_bytes")),
        format!("{}\n", 0x7000)
    );
    assert_eq!(t.list(&super::split(&tr)).unwrap().len(), 1);

    state(&mut t, "update_schemes_tried_regions").unwrap();
    state(&mut t, "clear_schemes_tried_regions").unwrap();
    assert_eq!(read(&t, &format!("{tr}/total_bytes")), "0\n");
    assert_eq!(t.list(&super::split(&tr)).unwrap().len(), 1);

    // Results stay readable after off.
    state(&mut t, "update_schemes_stats").unwrap();
    state(&mut t, "off").unwrap();
    assert_eq!(read(&t, &format!("{S}/stats/nr_tried")), "3\n");
}

#[test]
fn effective_quotas_and_tuned_intervals() {
    let (mut t, _) = staged(std::process::id() as i32);
    set(&mut t, &format!("{S}/quotas/bytes"), "4096");
    state(&mut t, "on").unwrap();
    state(&mut t, "update_schemes_effective_quotas").unwrap();
    assert_eq!(read(&t, &format!("{S}/quotas/effective_bytes")), "4096\n");

    let intervals = format!("{C}/monitoring_attrs/intervals");
    set(&mut t, &format!("{intervals}/sample_us"), "1");
    set(&mut t, &format!("{intervals}/aggr_us"), "2");
    state(&mut t, "update_tuned_intervals").unwrap();
    assert_eq!(read(&t, &format!("{intervals}/sample_us")), "5000\n");
    assert_eq!(read(&t, &format!("{intervals}/aggr_us")), "100000\n");
    state(&mut t, "commit_schemes_quota_goals").unwrap();
}

#[test]
fn kdamond_stops_when_its_targets_exit() {
    let mut w = Workload::start();
    let (mut t, _) = staged(w.pid());
    state(&mut t, "on").unwrap();
    assert_eq!(read(&t, &format!("{K}/state")), "on\n");
    w.kill();
    wait_until("the kdamond to stop", || {
        read(&t, &format!("{K}/state")) == "off\n"
    });
    assert_eq!(read(&t, &format!("{K}/pid")), "-1\n");
    assert_eq!(state_errno(&mut t, "off"), libc::EPERM);
    assert_eq!(state_errno(&mut t, "update_schemes_stats"), libc::EINVAL);
    // And nr_kdamonds is no longer busy.
    set(&mut t, "kdamonds/nr_kdamonds", "1");
}

#[test]
fn refresh_ms_updates_without_keywords() {
    let (mut t, fake) = staged(std::process::id() as i32);
    fake.set_regions(vec![vec![region(0, 0x1000, 1, 1)]]);
    state(&mut t, "on").unwrap();
    let now = Instant::now();
    t.refresh(now);
    assert_eq!(
        read(&t, &format!("{S}/stats/nr_tried")),
        "0\n",
        "refresh_ms 0"
    );
    set(&mut t, &format!("{K}/refresh_ms"), "100");
    t.refresh(now);
    assert_eq!(read(&t, &format!("{S}/stats/nr_tried")), "1\n");
    fake.set_regions(vec![vec![
        region(0, 0x1000, 1, 1),
        region(0x1000, 0x2000, 1, 1),
    ]]);
    t.refresh(now + Duration::from_millis(50));
    assert_eq!(
        read(&t, &format!("{S}/stats/nr_tried")),
        "1\n",
        "not due yet"
    );
    t.refresh(now + Duration::from_millis(100));
    assert_eq!(read(&t, &format!("{S}/stats/nr_tried")), "2\n");
}

/// Writers of `state`/`nr_*` that find the writers' lock (`damon_sysfs_lock`) held get
/// EBUSY; value stores do not take it and succeed.
#[test]
fn held_writers_lock_busy_for_state_and_nr_writers() {
    let fake = FakeBackend::new();
    let admin = Admin::new(Arc::new(fake));
    admin.write(&["kdamonds", "nr_kdamonds"], b"1").unwrap();
    admin
        .write(&["kdamonds", "0", "contexts", "nr_contexts"], b"1")
        .unwrap();
    let held = admin.try_lock_writers().expect("uncontended");
    for path in [
        &["kdamonds", "nr_kdamonds"][..],
        &["kdamonds", "0", "state"][..],
        &["kdamonds", "0", "contexts", "nr_contexts"][..],
    ] {
        let err = admin.write(path, b"on").unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY, "{path:?}");
    }
    admin.write(&["kdamonds", "0", "refresh_ms"], b"5").unwrap();
    assert_eq!(admin.read(&["kdamonds", "0", "refresh_ms"]).unwrap(), "5\n");
    drop(held);
    // Uncontended, the same writes succeed.
    admin.write(&["kdamonds", "nr_kdamonds"], b"1").unwrap();
}

/// Readers hold only the data lock: a `state`/`nr_*` writer meeting one waits for it instead
/// of failing.
#[test]
fn a_reader_holding_the_tree_makes_writers_wait_not_fail() {
    let fake = FakeBackend::new();
    let admin = Arc::new(Admin::new(Arc::new(fake)));
    let reader = admin.lock();
    let (tx, rx) = mpsc::channel();
    let writer = {
        let admin = admin.clone();
        thread::spawn(move || {
            let result = admin
                .write(&["kdamonds", "nr_kdamonds"], b"1")
                .map_err(|e| e.errno());
            tx.send(result).unwrap();
        })
    };
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "did not wait"
    );
    drop(reader);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(()));
    writer.join().unwrap();
    assert_eq!(admin.read(&["kdamonds", "nr_kdamonds"]).unwrap(), "1\n");
}

/// A sequential writer never sees EBUSY from the `refresh_ms` ticker, readers or lookups
/// running beside it when no refresh is due (the kernel's `refresh_ms` 0 default).
#[test]
fn no_spurious_busy_from_ticks_and_readers() {
    let fake = FakeBackend::new();
    let admin = Arc::new(Admin::new(Arc::new(fake)));
    admin.write(&["kdamonds", "nr_kdamonds"], b"1").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let (admin, stop) = (admin.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if i == 0 {
                        admin.refresh(Instant::now());
                    } else {
                        let _ = admin.list(&["kdamonds", "0"]);
                        let _ = admin.read(&["kdamonds", "0", "state"]);
                    }
                }
            })
        })
        .collect();
    let mut failures = 0;
    for n in 0..20_000u32 {
        let path = ["kdamonds", "0", "contexts", "nr_contexts"];
        if admin
            .write(&path, if n % 2 == 0 { b"1" } else { b"0" })
            .is_err()
        {
            failures += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    assert_eq!(
        failures, 0,
        "writes failed while only readers and ticks ran"
    );
}

/// Filters the kernel cannot set up make `on` fail with ENOMEM (`damon_sysfs_add_scheme_filters()`),
/// and change nothing.
#[test]
fn bad_filters_fail_with_enomem() {
    let me = std::process::id() as i32;
    let cases: Vec<(&str, Vec<(String, &str)>)> = vec![
        (
            "addr end before start",
            vec![
                (format!("{S}/core_filters/nr_filters"), "1"),
                (format!("{S}/core_filters/0/type"), "addr"),
                (format!("{S}/core_filters/0/addr_start"), "0x2000"),
                (format!("{S}/core_filters/0/addr_end"), "0x1000"),
            ],
        ),
        (
            "hugepage_size min above max",
            vec![
                (format!("{S}/ops_filters/nr_filters"), "1"),
                (format!("{S}/ops_filters/0/type"), "hugepage_size"),
                (format!("{S}/ops_filters/0/min"), "4096"),
                (format!("{S}/ops_filters/0/max"), "4095"),
            ],
        ),
        (
            "memcg that does not exist",
            vec![
                (format!("{S}/filters/nr_filters"), "1"),
                (format!("{S}/filters/0/type"), "memcg"),
                (format!("{S}/filters/0/memcg_path"), "/no/such/memcg"),
            ],
        ),
    ];
    for (what, writes) in cases {
        let (mut t, fake) = staged(me);
        for (path, value) in &writes {
            set(&mut t, path, value);
        }
        assert_eq!(state_errno(&mut t, "on"), libc::ENOMEM, "{what}");
        assert_eq!(read(&t, &format!("{K}/state")), "off\n", "{what}");
        assert!(fake.started().is_empty(), "{what}");
    }
}

/// Watermarks and filters reach the kdamond's scheme, filters by layer in the kernel's order
/// (`core_filters/`, `ops_filters/`, then `filters/`).
#[test]
fn watermarks_and_filters_are_passed_on() {
    use crate::core::scheme::{Filter, FilterKind, Watermarks, WmarkMetric};
    let me = std::process::id() as i32;
    let (mut t, fake) = staged(me);
    for (path, value) in [
        ("watermarks/metric", "free_mem_rate"),
        ("watermarks/interval_us", "5000000"),
        ("watermarks/high", "600"),
        ("watermarks/mid", "500"),
        ("watermarks/low", "50"),
        ("filters/nr_filters", "1"),
        ("filters/0/type", "target"),
        ("filters/0/matching", "Y"),
        ("filters/0/damon_target_idx", "0"),
        ("core_filters/nr_filters", "1"),
        ("core_filters/0/type", "addr"),
        ("core_filters/0/addr_start", "0x1fff"),
        ("core_filters/0/addr_end", "0x5000"),
        ("core_filters/0/allow", "Y"),
        ("ops_filters/nr_filters", "1"),
        ("ops_filters/0/type", "anon"),
        ("ops_filters/0/matching", "N"),
    ] {
        set(&mut t, &format!("{S}/{path}"), value);
    }
    state(&mut t, "on").unwrap();
    let scheme = &fake.started()[0].1.contexts[0].schemes[0];
    assert_eq!(
        scheme.wmarks,
        Watermarks {
            metric: WmarkMetric::FreeMemRate,
            interval_us: 5_000_000,
            high: 600,
            mid: 500,
            low: 50,
        }
    );
    assert_eq!(
        scheme.core_filters,
        vec![
            Filter {
                kind: FilterKind::Addr(AddrRange::new(0x1000, 0x5000)),
                matching: false,
                allow: true,
            },
            Filter {
                kind: FilterKind::Target(0),
                matching: true,
                allow: false,
            },
        ]
    );
    assert_eq!(
        scheme.ops_filters,
        vec![Filter {
            kind: FilterKind::Anon,
            matching: false,
            allow: false,
        }]
    );
}
