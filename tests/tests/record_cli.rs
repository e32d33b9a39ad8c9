//! `damon record` as a user runs it.
use std::{
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use damon_tests::{ChildGuard, Workload, damon_bin, have_root, monotonic_ns};
use damon_user::record::{FileKind, RecordFormat, read_record_file, read_records};

#[test]
fn record_ends_with_a_valid_file_when_the_target_exits() {
    if !have_root("record_ends_with_a_valid_file_when_the_target_exits") {
        return;
    }
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
fn record_with_a_command_monitors_it_until_it_exits() {
    if !have_root("record_with_a_command_monitors_it_until_it_exits") {
        return;
    }
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
fn kernel_side_logs_reach_env_logger() {
    if !have_root("kernel_side_logs_reach_env_logger") {
        return;
    }
    let out = Command::new(damon_bin())
        .arg("check")
        .env("RUST_LOG", "damon_ebpf=debug")
        .output()
        .expect("damon check");
    assert!(
        out.status.success(),
        "damon check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // The start-up calibration finds damon's own page-table root; that program logs it.
    assert!(
        err.contains("damon_ebpf::probe") && err.contains("task_pgd: mm"),
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

fn nr_snapshots(path: &std::path::Path) -> usize {
    read_records(path)
        .map(|r| r.iter().map(|r| r.snapshots.len()).sum())
        .unwrap_or(0)
}

/// While it records, the file only grows (each flush appends; the old recorder rewrote and
/// renamed it every few seconds); a SIGKILL loses less than a second and leaves no temporary
/// file; `--finish` turns what it left into a damo record file.
#[test]
fn record_appends_while_it_runs_and_a_sigkill_loses_under_a_second() {
    if !have_root("record_appends_while_it_runs_and_a_sigkill_loses_under_a_second") {
        return;
    }
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
    if let Some(damo) = std::env::var_os("DAMON_TEST_DAMO").filter(|d| !d.is_empty()) {
        let out = Command::new(damo)
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
}
