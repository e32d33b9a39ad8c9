//! The admin tree served over FUSE, driving real kdamonds with the eBPF access check.
use std::{process::Command, time::Duration};

use damon_tests::{FsServer, Workload, damo, field, parse_range, wait_until};

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
    std::thread::sleep(Duration::from_millis(2500));
    fs.write("kdamonds/0/state", "update_schemes_tried_regions")
        .expect("update_schemes_tried_regions");
    let tried = format!("{CTX}/schemes/0/tried_regions");
    let n = std::fs::read_dir(fs.path().join(&tried))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .map(|e| e.file_type().unwrap().is_dir())
                .unwrap_or(false)
        })
        .count();
    assert!(n > 0, "no tried regions");
    let (mut hot_bytes, mut hot_hot_bytes) = (0u64, 0u64);
    for i in 0..n {
        let get = |f: &str| -> u64 {
            fs.read(&format!("{tried}/{i}/{f}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let (s, e, acc) = (get("start"), get("end"), get("nr_accesses"));
        let overlap = e.min(hot.1).saturating_sub(s.max(hot.0));
        hot_bytes += overlap;
        if acc * 10 >= 20 * 8 {
            hot_hot_bytes += overlap; // >= 80% of max_nr_accesses (20 at the default intervals)
        }
    }
    assert!(hot_bytes > 0, "tried regions do not cover the hot buffer");
    assert!(
        hot_hot_bytes * 10 >= hot_bytes * 8,
        "only {hot_hot_bytes} of {hot_bytes} hot-buffer bytes read hot"
    );
    let total: u64 = fs
        .read(&format!("{tried}/total_bytes"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(total >= hot_bytes);

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
    let (w, _) =
        Workload::start(&["hotcold", "--hot-mib", "16", "--cold-mib", "32"]).expect("workload");
    let fs = FsServer::start().expect("damon fs");
    // Only inside a new, private mount namespace does our tree appear at the kernel's path;
    // the real /sys/kernel/mm/damon is never touched.
    let script = format!(
        "set -e; mount --bind {mnt} /sys/kernel/mm/damon/admin; D={damo}; \
         $D start --ops vaddr --target_pid {pid}; sleep 2; \
         $D report access; \
         $D tune --ops vaddr --target_pid {pid} --monitoring_intervals 5ms 200ms 1s; sleep 1; \
         $D stop; echo DAMO-OK",
        mnt = fs.path().display(),
        damo = std::path::Path::new(&damo).display(),
        pid = w.pid()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("damo said:\n{stdout}\n{stderr}");
    assert!(
        out.status.success() && stdout.contains("DAMO-OK"),
        "damo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("nr_regions") || stdout.contains("heatmap") || stdout.contains("access"),
        "damo report access printed nothing useful:\n{stdout}"
    );
    assert_eq!(
        fs.read("kdamonds/0/state").unwrap().trim(),
        "off",
        "damo stop turned the kdamond off"
    );
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
