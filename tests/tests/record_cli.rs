//! `damon record` as a user runs it.
use std::{
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
    time::Duration,
};

use damon_tests::{ChildGuard, Workload, damo, damon_bin, monotonic_ns, process_state, wait_until};
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
    let records = read_records(&out).expect("parse");
    let snapshots: usize = records.iter().map(|r| r.snapshots.len()).sum();
    assert!(snapshots >= 5, "only {snapshots} snapshots of a 1.5 s run");
}

/// The first line of what `damon ARGS` wrote to stderr, which must have failed.
fn refusal(args: &[&str]) -> String {
    let out = Command::new(damon_bin())
        .args(args)
        .output()
        .expect("run damon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    err.lines().next().unwrap_or_default().to_string()
}

#[test]
fn bad_arguments_are_rejected_with_the_value_named() {
    for (args, expected) in [
        (
            &["--min-regions", "2"][..],
            "damon: min_nr_regions 2 is below 3",
        ),
        (
            &["--max-regions", "5000"],
            "damon: max_nr_regions 5000 is above 2730: the eBPF tables hold 4096 regions per \
             target and splitting can reach 1.5 x max",
        ),
        (
            &["--format", "xml"],
            "error: invalid value 'xml' for '--format <FORMAT>': unknown record format \"xml\", \
             expected \"json\" or \"json_compressed\"",
        ),
        (
            &["--ops", "paddr"],
            "error: invalid value 'paddr' for '--ops <OPS>': operations \"paddr\" are not \
             supported by this build",
        ),
        (
            &["--ops", "fvaddr", "--range", "0x2000-0x1000"],
            "error: invalid value '0x2000-0x1000' for '--range <START-END>': bad address range \
             \"0x2000-0x1000\": END must be above START",
        ),
        // `-d -3` would be refused as an unknown option before the value is looked at.
        (
            &["-d=-3"],
            "damon: --duration must be a positive number of seconds, not -3",
        ),
        (
            &["-d", "0"],
            "damon: --duration must be a positive number of seconds, not 0",
        ),
    ] {
        let args: Vec<&str> = ["record", "-p", "1"].iter().chain(args).copied().collect();
        assert_eq!(refusal(&args), expected, "{args:?}");
    }
    assert_eq!(
        refusal(&["record"]),
        "damon: nothing to monitor: give -p PID or -- COMMAND"
    );
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
            # Not a pipeline into `while`: its `exit` would only leave a subshell.
            for m in $(awk -v fs=$fs '$3 == fs { print $2 }' /proc/mounts | sort -r); do
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
    let child = ChildGuard(Command::new("true").spawn().expect("spawn"));
    let child_pid = child.pid();
    let zombie = child_pid.to_string();
    wait_until("the child to be a zombie", Duration::from_secs(5), || {
        process_state(child_pid) == Some('Z')
    })
    .unwrap();
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
    wait_until(
        &format!("5 snapshots in {}", out.display()),
        Duration::from_secs(30),
        || nr_snapshots(&out) >= 5,
    )
    .unwrap();
    let (first, inode) = (
        std::fs::read(&out).unwrap(),
        std::fs::metadata(&out).unwrap().ino(),
    );
    wait_until("the next flush", Duration::from_secs(10), || {
        std::fs::metadata(&out).is_ok_and(|m| m.len() > first.len() as u64)
    })
    .unwrap();
    let second = std::fs::read(&out).unwrap();
    assert_eq!(
        std::fs::metadata(&out).unwrap().ino(),
        inode,
        "the file was replaced"
    );
    assert!(
        second.starts_with(&first),
        "the file was rewritten, not appended to ({} then {} bytes)",
        first.len(),
        second.len()
    );

    // Not a wait: the kill lands 1.3 s after the flush just seen, so that with flushes at most
    // a second apart another one came between them.
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
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "an unprivileged check passed: {stdout}{stderr}"
    );
    // Root is the only thing missing: not the tracepoint, nor anything else.
    assert_eq!(
        stdout,
        "missing: root, or the capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_SYS_NICE \
         and CAP_SYS_ADMIN (run it with sudo)\n"
    );
    assert_eq!(stderr, "damon: 1 prerequisite(s) missing\n");
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
    for (args, expected) in [
        (
            &["--intervals-goal", "x", "3", "5ms", "10s"][..],
            "damon: --intervals-goal ACCESS_BP \"x\" is not basis points or a percentage (400, 4%)",
        ),
        (
            &["--intervals-goal", "4%", "0", "5ms", "10s"],
            "damon: --intervals-goal AGGRS must be at least 1 (0 would turn the tuning off)",
        ),
        (
            &["--intervals-goal", "4%", "3", "5ms", "soon"],
            "damon: --intervals-goal MAX_SAMPLE \"soon\" is not a duration (5000, 5ms, 10s)",
        ),
        (
            &["--intervals-goal", "4%", "3", "10s", "5ms"],
            "damon: intervals goal refused: the sample interval 5000 us must lie within its \
             bounds 10000000-5000 us",
        ),
        (
            &["--autotune", "--sample-us", "1000"],
            "damon: intervals goal refused: the sample interval 1000 us must lie within its \
             bounds 5000-10000000 us",
        ),
    ] {
        let args: Vec<&str> = ["record", "-p", "1"].iter().chain(args).copied().collect();
        assert_eq!(refusal(&args), expected, "{args:?}");
    }
}

/// `--follow-children`: a command that forks three workers is recorded with all its
/// processes, the workers from within an update interval (1 s) of their start, and the
/// recording goes on until the last of them exits.
#[test]
#[ignore = "needs root"]
fn record_follows_the_children_of_its_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("tree.data");
    let bin = damon_bin();
    // The workers start 1 s after the shell and end by themselves: nothing is left running
    // whatever happens here.
    let script = "W=\"$0 workload hotcold --hot-mib 2 --cold-mib 2 --duration 4\"; sleep 1; \
                  $W >/dev/null & $W >/dev/null & $W >/dev/null & wait";
    let t0 = std::time::Instant::now();
    let status = Command::new(&bin)
        .args(["record", "--follow-children", "-d", "20", "-o"])
        .arg(&out)
        .args(["--", "sh", "-c", script])
        .arg(&bin)
        .status()
        .expect("damon record");
    assert!(status.success(), "damon record exited with {status}");
    let took = t0.elapsed();
    assert!(
        took < std::time::Duration::from_secs(15),
        "the recording outlived its processes: {took:?}"
    );
    let records = read_records(&out).expect("a readable record file");
    let mut pids: Vec<i32> = records.iter().filter_map(|r| r.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        5,
        "the shell, its sleep and its three workers: {pids:?}"
    );
    let first_end = |r: &damon_user::record::Record| r.snapshots.first().map(|s| s.end_ns);
    let shell = records
        .iter()
        .filter_map(first_end)
        .min()
        .expect("snapshots");
    for r in &records {
        let Some(end) = first_end(r) else { continue };
        let late = end.saturating_sub(shell) as f64 / 1e9;
        println!(
            "process {:?}: first snapshot {late:.2} s after the first",
            r.pid
        );
        // Forked 1 s in; then one update interval (1 s), the recorder's 200 ms poll, and one
        // aggregation.
        assert!(late <= 2.5, "process {:?} joined {late:.2} s late", r.pid);
    }
    // The workers ran for 4 s: most of it is recorded.
    let longest = records.iter().map(|r| r.snapshots.len()).max().unwrap_or(0);
    assert!(longest >= 25, "{longest} snapshots");
}
