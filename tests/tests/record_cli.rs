//! `damon record` as a user runs it.
use std::{
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use damon_tests::{ChildGuard, Workload, damo, damon_bin, monotonic_ns};
use damon_user::record::{FileKind, RecordFormat, read_record_file, read_records};

#[test]
#[ignore = "needs root"]
fn record_ends_with_a_valid_file_when_the_target_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run.data");
    let (w, _) = Workload::start(&[
        "hotcold",
        "--hot-mib",
        "4",
        "--cold-mib",
        "4",
        "--duration",
        "2",
    ])
    .expect("workload");
    let status = Command::new(damon_bin())
        .args(["record", "-p", &w.pid().to_string(), "-o"])
        .arg(&out)
        .args(["-d", "30"])
        .status()
        .expect("damon record");
    assert!(status.success(), "damon record exited with {status}");
    let records = read_records(&out).expect("a readable record file");
    let snapshots: usize = records.iter().map(|r| r.snapshots.len()).sum();
    assert!(snapshots >= 5, "only {snapshots} snapshots recorded");
    let mode = std::fs::metadata(&out)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600, "record file mode");
}

#[test]
#[ignore = "needs root"]
fn record_with_a_command_monitors_it_until_it_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("cmd.data");
    let bin = damon_bin();
    let status = Command::new(&bin)
        .args(["record", "--format", "json", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&bin)
        .args([
            "workload",
            "hotcold",
            "--hot-mib",
            "4",
            "--cold-mib",
            "4",
            "--duration",
            "1.5",
        ])
        .status()
        .expect("damon record");
    assert!(status.success());
    let text = std::fs::read_to_string(&out).expect("json record");
    assert!(
        text.trim_start().starts_with('['),
        "json format is a list of records"
    );
    assert!(!read_records(&out).expect("parse").is_empty());
}

#[test]
fn bad_arguments_are_rejected_with_the_value_named() {
    for (args, needle) in [
        (vec!["record", "-p", "1", "--min-regions", "2"], "2"),
        (vec!["record", "-p", "1", "--max-regions", "5000"], "5000"),
        (vec!["record", "-p", "1", "--format", "xml"], "xml"),
        (vec!["record", "-p", "1", "--ops", "paddr"], "paddr"),
        (
            vec![
                "record",
                "-p",
                "1",
                "--ops",
                "fvaddr",
                "--range",
                "0x2000-0x1000",
            ],
            "0x2000-0x1000",
        ),
        (vec!["record", "-p", "1", "-d", "-3"], "-3"),
        (vec!["record"], "nothing to monitor"),
    ] {
        let out = Command::new(damon_bin())
            .args(&args)
            .output()
            .expect("run damon");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: error does not name {needle:?}: {err}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn kernel_side_logs_reach_env_logger() {
    let (w, _) =
        Workload::start(&["hotcold", "--hot-mib", "1", "--cold-mib", "1"]).expect("workload");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(damon_bin())
        .args(["record", "-d", "0.3", "-p", &w.pid().to_string(), "-o"])
        .arg(dir.path().join("log.data"))
        .env("RUST_LOG", "damon_ebpf=debug")
        .output()
        .expect("damon record");
    assert!(
        out.status.success(),
        "damon record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // Finding a target's kernel pid reads our own task first; that program logs it.
    assert!(
        err.contains("damon_ebpf::probe") && err.contains("probe: current task"),
        "no aya-log record from the eBPF side:\n{err}"
    );
}

#[test]
fn every_subcommand_has_a_summary_and_examples() {
    for sub in [
        "record", "report", "top", "fs", "faults", "check", "workload", "demo",
    ] {
        let out = Command::new(damon_bin())
            .args([sub, "--help"])
            .output()
            .expect("damon --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help failed");
        let first = help.lines().next().unwrap_or_default();
        assert!(
            !first.is_empty() && !first.starts_with("Usage"),
            "{sub}: no one-line summary:\n{help}"
        );
        assert!(help.contains("EXAMPLES"), "{sub}: no examples:\n{help}");
    }
}

/// On a freshly booted machine tracefs is often not mounted: the check mounts it before
/// judging (as the loader would), instead of reporting the tracepoint missing. Run in a
/// private mount namespace whose tracefs and debugfs mounts are removed first; the machine's
/// own mounts are untouched.
#[test]
#[ignore = "needs root"]
fn check_mounts_tracefs_when_none_is_mounted() {
    let script = r#"
        for fs in tracefs debugfs; do
            awk -v fs=$fs '$3 == fs { print $2 }' /proc/mounts | sort -r | while read -r m; do
                umount -l "$m" || exit 10
            done
        done
        grep -qw tracefs /proc/mounts && exit 11
        "$DAMON" check || exit 12
        grep -qw tracefs /proc/mounts || exit 13
    "#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("DAMON", damon_bin())
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "{:?} (10: unmount failed, 11: tracefs still mounted, 12: damon check failed, 13: damon check mounted nothing)\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Targets that cannot be monitored are refused before anything starts, with a message that
/// names the process, and a non-zero exit.
#[test]
#[ignore = "needs root"]
fn unmonitorable_targets_are_refused_up_front() {
    let (w, _) =
        Workload::start(&["hotcold", "--hot-mib", "1", "--cold-mib", "1"]).expect("workload");
    let pid = w.pid().to_string();
    let mut many = vec!["record".to_string()];
    for _ in 0..33 {
        many.extend(["-p".to_string(), pid.clone()]);
    }
    let ranges: Vec<String> = (0..4097u64)
        .flat_map(|i| {
            [
                "--range".to_string(),
                format!("{:#x}-{:#x}", (2 * i + 1) << 12, (2 * i + 2) << 12),
            ]
        })
        .collect();
    let mut too_many_ranges = vec!["record", "-p", &pid, "--ops", "fvaddr"];
    too_many_ranges.extend(ranges.iter().map(String::as_str));
    // A zombie: exited, not reaped.
    let child = Command::new("true").spawn().expect("spawn");
    let zombie = child.id().to_string();
    let _reap = Reap(child);
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(format!("/proc/{zombie}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }) {
        assert!(
            t.elapsed().as_secs() < 5,
            "{zombie} did not become a zombie"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("refused.data");
    for (args, needle) in [
        (
            vec!["record", "-p", "2"],
            "process 2 (kthreadd) is a kernel thread".to_string(),
        ),
        (
            vec!["record", "-p", &zombie],
            format!("process {zombie} (true) has exited"),
        ),
        (
            vec!["record", "-p", &pid, "-p", &pid],
            format!("process {pid} is the target of both target 0 and target 1"),
        ),
        (
            many.iter().map(String::as_str).collect(),
            "33 targets; one kdamond can monitor at most 32".to_string(),
        ),
        (too_many_ranges, "4097 --range values".to_string()),
    ] {
        let out = Command::new(damon_bin())
            .args(&args)
            .arg("-o")
            .arg(&out_file)
            .args(["-d", "1"])
            .output()
            .expect("run damon");
        let err = String::from_utf8_lossy(&out.stderr);
        let shown: Vec<&str> = args.iter().take(6).copied().collect();
        assert!(!out.status.success(), "{shown:?}... succeeded: {err}");
        assert!(
            err.contains(&needle),
            "{shown:?}...: {needle:?} not in: {err}"
        );
        assert!(!err.contains("Recording"), "{shown:?}... started: {err}");
        assert!(!out_file.exists(), "{shown:?}... wrote a record");
    }
}

fn nr_snapshots(path: &std::path::Path) -> usize {
    read_records(path)
        .map(|r| r.iter().map(|r| r.snapshots.len()).sum())
        .unwrap_or(0)
}

/// While it records, the file only grows (each flush appends; the old recorder rewrote and
/// renamed it every few seconds); a SIGKILL loses less than a second and leaves no temporary
/// file; `--finish` turns what it left into a damo record file.
#[test]
#[ignore = "needs root and damo (DAMON_TEST_DAMO)"]
fn record_appends_while_it_runs_and_a_sigkill_loses_under_a_second() {
    let (w, _) = Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("w");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run.data");
    let mut rec = ChildGuard(
        Command::new(damon_bin())
            .args(["record", "-p", &w.pid().to_string(), "-o"])
            .arg(&out)
            .stderr(Stdio::null())
            .spawn()
            .expect("damon record"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while nr_snapshots(&out) < 5 {
        assert!(
            Instant::now() < deadline,
            "no snapshots in {}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (first, inode) = (
        std::fs::read(&out).unwrap(),
        std::fs::metadata(&out).unwrap().ino(),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let second = std::fs::read(&out).unwrap();
    assert_eq!(
        std::fs::metadata(&out).unwrap().ino(),
        inode,
        "the file was replaced"
    );
    assert!(
        second.len() > first.len() && second.starts_with(&first),
        "the file was rewritten, not appended to ({} then {} bytes)",
        first.len(),
        second.len()
    );

    std::thread::sleep(Duration::from_millis(1300));
    let killed_at = monotonic_ns();
    rec.signal(libc::SIGKILL);
    rec.wait_for(Duration::from_secs(10)).expect("killed");
    let (kind, records) = read_record_file(&out).expect("the file a killed run leaves");
    assert_eq!(kind, FileKind::Journal);
    let last_end = records
        .iter()
        .flat_map(|r| r.snapshots.iter().map(|s| s.end_ns))
        .max()
        .expect("snapshots");
    let lost_ms = killed_at.saturating_sub(last_end) / 1_000_000;
    assert!(
        lost_ms <= 1000,
        "the last {lost_ms} ms before the kill are lost"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["run.data"], "a temporary file was left");

    let status = Command::new(damon_bin())
        .args(["record", "--finish"])
        .arg(&out)
        .status()
        .expect("damon record --finish");
    assert!(status.success());
    let (kind, finished) = read_record_file(&out).expect("finished file");
    assert_eq!(kind, FileKind::Damo(RecordFormat::JsonCompressed));
    assert_eq!(finished, records, "--finish keeps every snapshot");
    let out = Command::new(damo())
        .args(["report", "access", "--input_file"])
        .arg(&out)
        .output()
        .expect("damo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("failed"),
        "damo cannot read the finished file: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child of ours, reaped on drop.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

/// Run without privilege, the monitor says it needs root, not that a tracepoint is missing
/// (tracefs is readable by root only, so what it holds cannot be judged).
#[test]
#[ignore = "needs root"]
fn an_unprivileged_run_says_it_needs_root() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(damon_bin())
        .arg("check")
        .output()
        .expect("setpriv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "an unprivileged check passed: {text}"
    );
    assert!(text.contains("root"), "does not say it needs root: {text}");
    assert!(
        !text.contains("tracepoint"),
        "blames the tracepoint: {text}"
    );
}

/// `--autotune` lengthens the intervals of a process that does nothing; the record keeps one
/// record with each snapshot's own sample interval.
#[test]
#[ignore = "needs root"]
fn record_with_autotune_lengthens_an_idle_process_intervals() {
    let (w, _) = Workload::start(&["sleeper", "--interval-us", "1000000"]).expect("sleeper");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tuned.data");
    let status = Command::new(damon_bin())
        .args(["record", "--autotune", "--format", "json", "-d", "4", "-p"])
        .arg(w.pid().to_string())
        .arg("-o")
        .arg(&out)
        .status()
        .expect("damon record");
    assert!(status.success());
    let records = read_records(&out).expect("read");
    assert_eq!(records.len(), 1, "one record for one target");
    let samples: Vec<u64> = records[0]
        .snapshots
        .iter()
        .map(|s| {
            s.sample_us
                .expect("a tuned snapshot has its sample interval")
        })
        .collect();
    assert_eq!(samples.first(), Some(&5_000), "{samples:?}");
    // Idle: doubled every 3 aggregations; in 4 s that is 5 -> 10 -> 20 -> 40 ms.
    assert!(
        samples.iter().max().is_some_and(|&m| m >= 20_000),
        "the interval did not grow: {samples:?}"
    );
    assert!(samples.windows(2).all(|w| w[1] >= w[0]), "{samples:?}");
}

#[test]
fn bad_intervals_goals_are_named() {
    for (args, needle) in [
        (vec!["--intervals-goal", "x", "3", "5ms", "10s"], "\"x\""),
        (
            vec!["--intervals-goal", "4%", "0", "5ms", "10s"],
            "AGGRS must be at least 1",
        ),
        (
            vec!["--intervals-goal", "4%", "3", "5ms", "soon"],
            "\"soon\"",
        ),
        (
            vec!["--intervals-goal", "4%", "3", "10s", "5ms"],
            "5000 us must lie within",
        ),
        (
            vec!["--autotune", "--sample-us", "1000"],
            "1000 us must lie within",
        ),
    ] {
        let out = Command::new(damon_bin())
            .args(["record", "-p", "1"])
            .args(&args)
            .output()
            .expect("run damon");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
    }
}
