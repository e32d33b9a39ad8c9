//! The admin tree served over FUSE, driving real kdamonds with the eBPF access check.
use std::{path::Path, process::Command, time::Duration};

use damon_tests::{ChildGuard, FsServer, Workload, damo, field, parse_range, wait_until};
use damon_user::core::{AddrRange, RegionSnapshot, snapshot::weighted_rate};

const CTX: &str = "kdamonds/0/contexts/0";

#[test]
#[ignore = "needs root"]
fn seed_example_starts_a_kdamond_and_a_stat_scheme_sees_the_hot_buffer() {
    let (w, ready) =
        Workload::start(&["hotcold", "--hot-mib", "32", "--cold-mib", "64"]).expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let fs = FsServer::start().expect("damon fs");
    // The seed's example, verbatim but for the pid.
    let script = format!(
        "cd {} && echo 1 > kdamonds/nr_kdamonds && echo 1 > kdamonds/0/contexts/nr_contexts && \
         echo vaddr > kdamonds/0/contexts/0/operations && echo 1 > kdamonds/0/contexts/0/targets/nr_targets && \
         echo {} > kdamonds/0/contexts/0/targets/0/pid_target && echo on > kdamonds/0/state",
        fs.path().display(),
        w.pid()
    );
    let st = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .expect("sh");
    assert!(st.success(), "the seed's example failed: {st}");
    assert_eq!(fs.read("kdamonds/0/state").unwrap().trim(), "on");
    let pid: i32 = fs
        .read("kdamonds/0/pid")
        .unwrap()
        .trim()
        .parse()
        .expect("pid is a number");
    let comm = std::fs::read_to_string(format!("/proc/{}/task/{pid}/comm", fs.pid()))
        .expect("kdamond task");
    assert_eq!(comm.trim(), "kdamond.0");
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok(),
        "/proc/<pid>/stat of the kdamond"
    );

    // A catch-all stat scheme, committed to the running kdamond, then a snapshot.
    for (f, v) in [
        (format!("{CTX}/schemes/nr_schemes"), "1"),
        (format!("{CTX}/schemes/0/action"), "stat"),
        // The kernel's defaults of an access pattern are all 0; match everything instead.
        (
            format!("{CTX}/schemes/0/access_pattern/sz/max"),
            "18446744073709551615",
        ),
        (
            format!("{CTX}/schemes/0/access_pattern/nr_accesses/max"),
            "4294967295",
        ),
        (
            format!("{CTX}/schemes/0/access_pattern/age/max"),
            "4294967295",
        ),
        ("kdamonds/0/state".into(), "commit"),
    ] {
        fs.write(&f, v)
            .unwrap_or_else(|e| panic!("write {v} to {f}: errno {e}"));
    }
    let tried = format!("{CTX}/schemes/0/tried_regions");
    let number = |f: &str| -> u64 {
        fs.read(f)
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    // (start, end, nr_accesses) of each region the scheme tried, updated first.
    let tried_regions = || -> Vec<(u64, u64, u64)> {
        fs.write("kdamonds/0/state", "update_schemes_tried_regions")
            .expect("update_schemes_tried_regions");
        let n = std::fs::read_dir(fs.path().join(&tried))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
            .count();
        (0..n)
            .map(|i| {
                let get = |f: &str| number(&format!("{tried}/{i}/{f}"));
                (get("start"), get("end"), get("nr_accesses"))
            })
            .collect()
    };
    // Bytes of the hot buffer that regions cover, and those of them that read hot: at >= 80%
    // of max_nr_accesses (20 at the default intervals).
    let hot_bytes = |regions: &[(u64, u64, u64)]| -> (u64, u64) {
        let (mut covered, mut hot_covered) = (0, 0);
        for &(s, e, acc) in regions {
            let overlap = e.min(hot.end).saturating_sub(s.max(hot.start));
            covered += overlap;
            if acc * 10 >= 20 * 8 {
                hot_covered += overlap;
            }
        }
        (covered, hot_covered)
    };
    let mut regions = Vec::new();
    let waited = wait_until(
        "the hot buffer to read hot in the tried regions",
        Duration::from_secs(15),
        || {
            regions = tried_regions();
            let (covered, hot_covered) = hot_bytes(&regions);
            covered > 0 && hot_covered * 10 >= covered * 8
        },
    );
    let (covered, hot_covered) = hot_bytes(&regions);
    assert!(!regions.is_empty(), "no tried regions");
    assert!(covered > 0, "tried regions do not cover the hot buffer");
    assert!(
        hot_covered * 10 >= covered * 8,
        "only {hot_covered} of {covered} hot-buffer bytes read hot ({waited:?})"
    );
    assert_eq!(
        number(&format!("{tried}/total_bytes")),
        regions.iter().map(|&(s, e, _)| e - s).sum::<u64>(),
        "total_bytes is the size of the tried regions"
    );

    fs.write("kdamonds/0/state", "off").expect("off");
    assert_eq!(fs.read("kdamonds/0/state").unwrap().trim(), "off");
    assert_eq!(fs.read("kdamonds/0/pid").unwrap().trim(), "-1");
}

#[test]
#[ignore = "needs root"]
fn errno_rules_hold_through_the_mount() {
    let (w, _) =
        Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("workload");
    let fs = FsServer::start().expect("damon fs");
    assert_eq!(fs.write("kdamonds/nr_kdamonds", "abc"), Err(libc::EINVAL));
    fs.write("kdamonds/nr_kdamonds", "1").unwrap();
    assert_eq!(
        fs.write("kdamonds/0/contexts/nr_contexts", "2"),
        Err(libc::EINVAL)
    );
    fs.write("kdamonds/0/contexts/nr_contexts", "1").unwrap();
    fs.write(&format!("{CTX}/targets/nr_targets"), "1").unwrap();
    fs.write(&format!("{CTX}/targets/0/pid_target"), &w.pid().to_string())
        .unwrap();
    assert_eq!(fs.write("kdamonds/0/pid", "1"), Err(libc::EACCES));
    fs.write("kdamonds/0/state", "on").unwrap();
    assert_eq!(fs.write("kdamonds/nr_kdamonds", "1"), Err(libc::EBUSY));
    assert_eq!(fs.write("kdamonds/0/state", "on"), Err(libc::EBUSY));
    fs.write("kdamonds/0/state", "off").unwrap();
    assert_eq!(fs.write("kdamonds/0/state", "off"), Err(libc::EPERM));
}

#[test]
#[ignore = "needs root"]
fn a_kdamond_whose_target_exits_reads_off() {
    let (mut w, _) =
        Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("workload");
    let fs = FsServer::start().expect("damon fs");
    for (f, v) in [
        ("kdamonds/nr_kdamonds".to_string(), "1".to_string()),
        ("kdamonds/0/contexts/nr_contexts".into(), "1".into()),
        (format!("{CTX}/targets/nr_targets"), "1".into()),
        (format!("{CTX}/targets/0/pid_target"), w.pid().to_string()),
        ("kdamonds/0/state".into(), "on".into()),
    ] {
        fs.write(&f, &v).unwrap();
    }
    w.kill();
    wait_until(
        "state off after the target exited",
        Duration::from_secs(10),
        || {
            fs.read("kdamonds/0/state")
                .map(|s| s.trim() == "off")
                .unwrap_or(false)
        },
    )
    .unwrap();
}

#[test]
#[ignore = "needs root and damo (DAMON_TEST_DAMO)"]
fn damo_drives_the_tree_in_a_private_mount_namespace() {
    let damo = damo();
    let (w, ready) =
        Workload::start(&["hotcold", "--hot-mib", "16", "--cold-mib", "32"]).expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let fs = FsServer::start().expect("damon fs");
    let ns = AdminNamespace::new(fs.path());
    let pid = w.pid().to_string();
    ns.damo(&damo, &["start", "--ops", "vaddr", "--target_pid", &pid]);

    // damo's own report of the regions, until it shows the hot buffer hot.
    let mut report = String::new();
    let waited = wait_until(
        "damo to report the hot buffer hot",
        Duration::from_secs(15),
        || {
            report = ns.damo(&damo, &["report", "access", "--raw_number"]);
            damo_rate(&report, hot).is_some_and(|rate| rate >= 0.8)
        },
    );
    assert!(
        waited.is_ok(),
        "damo report access: the hot buffer {:#x}-{:#x} at {:?} of the maximum rate, expected \
         >= 0.8:\n{report}",
        hot.start,
        hot.end,
        damo_rate(&report, hot)
    );

    ns.damo(
        &damo,
        &[
            "tune",
            "--ops",
            "vaddr",
            "--target_pid",
            &pid,
            "--monitoring_intervals",
            "5ms",
            "200ms",
            "1s",
        ],
    );
    let intervals = format!("{CTX}/monitoring_attrs/intervals");
    for (file, value) in [
        ("sample_us", "5000"),
        ("aggr_us", "200000"),
        ("update_us", "1000000"),
    ] {
        assert_eq!(
            fs.read(&format!("{intervals}/{file}")).unwrap().trim(),
            value,
            "{file} after damo tune"
        );
    }
    assert_eq!(fs.read("kdamonds/0/state").unwrap().trim(), "on");

    ns.damo(&damo, &["stop"]);
    assert_eq!(
        fs.read("kdamonds/0/state").unwrap().trim(),
        "off",
        "damo stop turned the kdamond off"
    );
}

/// damo's proactive-reclaim command line against our tree: the scheme it writes starts, runs
/// and shows its stats in `damo report damon`; `damo report access` still reports regions.
/// Anonymous memory has no swap to go to here, so pageout applies (madvise succeeds) without
/// reclaiming it; the scheme's stats are what is checked.
#[test]
#[ignore = "needs root and damo (DAMON_TEST_DAMO)"]
fn damo_starts_a_pageout_scheme_and_reports_its_stats() {
    let damo = damo();
    let (w, _ready) =
        Workload::start(&["hotcold", "--hot-mib", "8", "--cold-mib", "32"]).expect("workload");
    let fs = FsServer::start().expect("damon fs");
    let ns = AdminNamespace::new(fs.path());
    let pid = w.pid().to_string();
    ns.damo(
        &damo,
        &[
            "start",
            "--ops",
            "vaddr",
            "--target_pid",
            &pid,
            "--damos_action",
            "pageout",
            "--damos_access_rate",
            "0%",
            "0%",
            "--damos_age",
            "2s",
            "max",
        ],
    );
    let scheme = format!("{CTX}/schemes/0");
    assert_eq!(
        fs.read(&format!("{scheme}/action")).unwrap().trim(),
        "pageout"
    );
    assert_eq!(
        fs.read(&format!("{scheme}/access_pattern/age/min"))
            .unwrap()
            .trim(),
        "20",
        "2 s in 100 ms aggregations"
    );
    let mut report = String::new();
    let waited = wait_until(
        "damo report damon to show the scheme applied",
        Duration::from_secs(20),
        || {
            report = ns.damo(&damo, &["report", "damon"]);
            applied_bytes(&report).is_some_and(|b| b > 0)
        },
    );
    assert!(waited.is_ok(), "damo report damon:\n{report}");
    println!("damo report damon:\n{report}");
    assert!(report.contains("pageout"), "{report}");
    let access = ns.damo(&damo, &["report", "access"]);
    assert!(access.contains("total size"), "{access}");
    ns.damo(&damo, &["stop"]);
    assert_eq!(fs.read("kdamonds/0/state").unwrap().trim(), "off");
}

/// The applied bytes of the first scheme in `damo report damon` (its `stats` line:
/// `... tried ... applied N B ...` or with units); `None` without it.
fn applied_bytes(report: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.contains("applied"))?;
    let after = line.split("applied").nth(1)?;
    let mut words = after.split_whitespace().skip_while(|w| w.ends_with(':'));
    let number: f64 = words.next()?.trim_end_matches(',').parse().ok()?;
    let unit = words.next().unwrap_or("B");
    let scale = match unit.trim_end_matches(',') {
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => 1,
    };
    Some((number * scale as f64) as u64)
}

/// A private mount namespace, held by a process of its own, in which our tree is bind-mounted
/// over the kernel's admin directory; commands run in it through `nsenter`. The real
/// /sys/kernel/mm/damon is never touched, and the namespace and its mount go with the
/// process.
struct AdminNamespace(ChildGuard);

impl AdminNamespace {
    fn new(tree: &Path) -> Self {
        let script =
            "mount --bind \"$1\" /sys/kernel/mm/damon/admin && echo MOUNTED && exec sleep 600";
        let mut unshare = Command::new("unshare");
        unshare
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(tree);
        let holder = ChildGuard::start_ready(unshare, "MOUNTED", Duration::from_secs(10))
            .expect("the bind mount in a new mount namespace");
        AdminNamespace(holder)
    }

    /// Runs damo with `args` in the namespace; its output. It must succeed.
    fn damo(&self, damo: &Path, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.0.pid().to_string(), "-m", "--"])
            .arg(damo)
            .args(args)
            .output()
            .expect("nsenter");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && !stdout.contains("failed"),
            "damo {args:?}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// The access rate (0 to 1) that `damo report access --raw_number` shows for `range`: its
/// region lines (`IDX addr START size SIZE access HZ age AGE`) weighed against its
/// `max access hz`. `None` when no region covers the range.
fn damo_rate(report: &str, range: AddrRange) -> Option<f64> {
    let max_hz: f64 = report
        .split_once("(max access hz ")?
        .1
        .split(')')
        .next()?
        .parse()
        .ok()?;
    let regions: Vec<RegionSnapshot> = report
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, "addr", start, "size", size, "access", hz, "age", _] = f[..] else {
                return None;
            };
            let start: u64 = start.parse().ok()?;
            Some(RegionSnapshot {
                start,
                end: start + size.parse::<u64>().ok()?,
                nr_accesses: hz.parse::<f64>().ok()?.round() as u32,
                age: 0,
                nr_unmeasured: 0,
            })
        })
        .collect();
    weighted_rate(&regions, range, max_hz.round() as u32)
}

/// `on` with targets this monitor cannot run fails with EINVAL at once and leaves the kdamond
/// off, instead of succeeding and then stopping silently: more than 32 targets, one process
/// named by two targets, a kernel thread.
#[test]
#[ignore = "needs root"]
fn on_refuses_targets_it_cannot_monitor() {
    let (w, _) =
        Workload::start(&["hotcold", "--hot-mib", "1", "--cold-mib", "1"]).expect("workload");
    let fs = FsServer::start().expect("damon fs");
    for (f, v) in [
        ("kdamonds/nr_kdamonds", "1"),
        ("kdamonds/0/contexts/nr_contexts", "1"),
        ("kdamonds/0/contexts/0/operations", "vaddr"),
    ] {
        fs.write(f, v).unwrap_or_else(|e| panic!("{f}: errno {e}"));
    }
    let pid = w.pid().to_string();
    let targets = |pids: &[&str]| {
        fs.write(
            &format!("{CTX}/targets/nr_targets"),
            &pids.len().to_string(),
        )
        .expect("nr_targets");
        for (i, p) in pids.iter().enumerate() {
            fs.write(&format!("{CTX}/targets/{i}/pid_target"), p)
                .expect("pid_target");
        }
    };
    let many: Vec<&str> = (0..33).map(|_| pid.as_str()).collect();
    for (what, pids) in [
        ("33 targets", many.as_slice()),
        ("the same pid twice", &[pid.as_str(), pid.as_str()][..]),
        ("a kernel thread", &["2"][..]),
    ] {
        targets(pids);
        assert_eq!(
            fs.write("kdamonds/0/state", "on"),
            Err(libc::EINVAL),
            "on with {what}"
        );
        assert_eq!(
            fs.read("kdamonds/0/state").unwrap().trim(),
            "off",
            "state after on with {what}"
        );
    }
    targets(&[pid.as_str()]);
    fs.write("kdamonds/0/state", "on")
        .expect("on with one good target");
    fs.write("kdamonds/0/state", "off").expect("off");
}

/// `open()` in Python asks every file whether it is a terminal (ioctl TCGETS): the tree
/// answers ENOTTY, as sysfs does, and logs nothing (it used to log three lines per open).
#[test]
#[ignore = "needs root"]
fn ioctls_get_enotty_and_are_not_logged() {
    use std::os::fd::AsRawFd;
    let mut fs = FsServer::start_logged().expect("damon fs");
    let file = std::fs::File::open(fs.path().join("kdamonds/nr_kdamonds")).expect("open");
    // SAFETY: TCGETS into a properly sized termios.
    let (rc, errno) = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        let rc = libc::ioctl(file.as_raw_fd(), libc::TCGETS, &mut t);
        (rc, std::io::Error::last_os_error().raw_os_error())
    };
    assert_eq!(
        (rc, errno),
        (-1, Some(libc::ENOTTY)),
        "TCGETS on a tree file"
    );
    drop(file);
    let path = fs.path().join("kdamonds/nr_kdamonds");
    let script = format!(
        "for _ in range(50):\n    assert open({:?}).read() == '0\\n'",
        path.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fs.terminate().expect("wait").success());
    let log = fs.log();
    assert!(
        !log.contains("Not Implemented") && !log.contains("WARN"),
        "the server logged:\n{log}"
    );
}

/// A count no memory can hold: the write fails with ENOMEM, as in the kernel, and the server
/// (which used to abort, leaving a broken mount) keeps serving.
#[test]
#[ignore = "needs root"]
fn a_huge_nr_write_fails_and_the_server_stays_up() {
    let mut fs = FsServer::start_logged().expect("damon fs");
    assert_eq!(
        fs.write("kdamonds/nr_kdamonds", "2147483647"),
        Err(libc::ENOMEM)
    );
    assert_eq!(fs.read("kdamonds/nr_kdamonds").expect("read").trim(), "0");
    fs.write("kdamonds/nr_kdamonds", "1").unwrap();
    fs.write("kdamonds/0/contexts/nr_contexts", "1").unwrap();
    for nr in ["targets/nr_targets", "schemes/nr_schemes"] {
        assert_eq!(
            fs.write(&format!("{CTX}/{nr}"), "2147483647"),
            Err(libc::ENOMEM),
            "{nr}"
        );
    }
    fs.write(&format!("{CTX}/targets/nr_targets"), "3").unwrap();
    assert_eq!(
        fs.read(&format!("{CTX}/targets/nr_targets"))
            .expect("read")
            .trim(),
        "3"
    );
    assert!(fs.terminate().expect("wait").success(), "{}", fs.log());
    assert!(!fs.mounted());
    let log = fs.log();
    assert!(
        log.contains("2147483647"),
        "the refusal names the value:\n{log}"
    );
}

/// The tree's intervals_goal files take effect at `on`: an idle process's intervals grow, and
/// `update_tuned_intervals` publishes them into sample_us / aggr_us; a goal the sample
/// interval is outside of is refused with EINVAL.
#[test]
#[ignore = "needs root"]
fn intervals_goal_tunes_and_update_tuned_intervals_publishes() {
    let (w, _) = Workload::start(&["sleeper", "--interval-us", "1000000"]).expect("sleeper");
    let fs = FsServer::start().expect("damon fs");
    let intervals = format!("{CTX}/monitoring_attrs/intervals");
    let goal = format!("{intervals}/intervals_goal");
    for (f, v) in [
        ("kdamonds/nr_kdamonds".to_string(), "1".to_string()),
        ("kdamonds/0/contexts/nr_contexts".into(), "1".into()),
        (format!("{CTX}/operations"), "vaddr".into()),
        (format!("{CTX}/targets/nr_targets"), "1".into()),
        (format!("{CTX}/targets/0/pid_target"), w.pid().to_string()),
        (format!("{goal}/access_bp"), "400".into()),
        (format!("{goal}/aggrs"), "3".into()),
        (format!("{goal}/min_sample_us"), "5000".into()),
        (format!("{goal}/max_sample_us"), "10000000".into()),
        (format!("{intervals}/sample_us"), "1000".into()),
        (format!("{intervals}/aggr_us"), "20000".into()),
    ] {
        fs.write(&f, &v)
            .unwrap_or_else(|e| panic!("{f}: errno {e}"));
    }
    assert_eq!(
        fs.write("kdamonds/0/state", "on"),
        Err(libc::EINVAL),
        "a sample interval of 1 ms is outside the goal's 5 ms - 10 s"
    );
    fs.write(&format!("{intervals}/sample_us"), "5000").unwrap();
    fs.write(&format!("{intervals}/aggr_us"), "100000").unwrap();
    fs.write("kdamonds/0/state", "on").expect("on");
    let read = |f: &str| -> u64 {
        fs.read(&format!("{intervals}/{f}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    wait_until(
        "the tuned intervals to grow",
        Duration::from_secs(10),
        || {
            fs.write("kdamonds/0/state", "update_tuned_intervals")
                .expect("update_tuned_intervals");
            read("sample_us") >= 20_000
        },
    )
    .unwrap();
    assert_eq!(
        read("aggr_us"),
        read("sample_us") * 20,
        "the ratio of the intervals is kept"
    );
    fs.write("kdamonds/0/state", "off").expect("off");
}
