//! How failures read: the CLI's error line and the admin tree's log print an error's chain of
//! causes with each cause once, provoked here by real failures (a monitor without the
//! capabilities BPF needs, a corrupt record, a kernel whose BTF cannot be read).
use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use damon_tests::{ChildGuard, damon_bin, wait_until};

/// The line of `text` that starts with `prefix`; the test fails naming the whole text if there
/// is none.
/// Runs `cmd`, which must fail, and returns its `damon: ` error line.
fn failing_error_line(cmd: &mut Command) -> String {
    let run = cmd.stdin(Stdio::null()).output().expect("run damon");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{cmd:?} succeeded:\n{stderr}");
    line_with(&stderr, "damon: ").to_string()
}

fn line_with<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// `chain` names each of `layers` once, in this order, and no cause twice: its `": "`-separated
/// parts are all different.
fn assert_each_cause_once(chain: &str, layers: &[&str]) {
    let mut at = 0;
    for layer in layers {
        assert_eq!(chain.matches(layer).count(), 1, "{layer:?} in {chain}");
        let found = chain[at..]
            .find(layer)
            .unwrap_or_else(|| panic!("{layer:?} comes too early in {chain}"));
        at += found + layer.len();
    }
    let parts: Vec<&str> = chain.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is printed twice in {chain}"
        );
    }
}

/// `damon record` as root without any capability: euid 0 passes its prerequisite check, and
/// the kernel refuses the eBPF maps.
#[test]
#[ignore = "needs root"]
fn a_refused_monitor_start_prints_each_cause_once() {
    // With root's capabilities first: mounts tracefs when it is not, which the capability-less
    // run below needs and could not do itself.
    let check = Command::new(damon_bin())
        .arg("check")
        .output()
        .expect("damon check");
    assert!(
        check.status.success(),
        "damon check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("damon.data");
    let line = failing_error_line(
        Command::new("setpriv")
            .args(["--bounding-set=-all", "--inh-caps=-all"])
            .arg(damon_bin())
            .args(["record", "-d", "1", "-o"])
            .arg(&out)
            .args(["--", "sleep", "5"]),
    );
    assert_each_cause_once(
        &line,
        &[
            "damon: probing the kernel layout",
            "loading the calibration program",
            "loading the eBPF object failed",
            "failed to create map `",
            "Operation not permitted (os error 1)",
        ],
    );
}

/// A json_compressed record whose zlib data is corrupt: the file, the record's layer, and the
/// decompressor's error. Runs as any user.
#[test]
fn a_corrupt_record_prints_each_cause_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("corrupt.data");
    // A zlib header (damo's `file -b` sees "zlib compressed data"), then no valid deflate data.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .expect("create the record");
    f.write_all(b"\x78\x9c\xff\xff\xff\xff garbage")
        .expect("write the record");
    drop(f);
    let line = failing_error_line(
        Command::new(damon_bin())
            .args(["report", "raw", "-i"])
            .arg(&path),
    );
    assert_each_cause_once(
        &line,
        &[
            &format!("damon: {}", path.display()),
            "zlib data of json_compressed record is corrupt",
        ],
    );
    // The decompressor's own words follow, once: three layers in all.
    assert_eq!(line.split(": ").count(), 4, "{line}");
}

/// Waits until `pid`'s mount namespace has a mount at `dir`; fails with `log` when the process
/// exits first or 10 s pass.
fn wait_for_mount(server: &mut ChildGuard, dir: &Path, log: &Path) {
    let mountinfo = format!("/proc/{}/mountinfo", server.pid());
    let want = dir.to_str().expect("utf-8 mount point");
    let mounted = wait_until(
        &format!("damon fs to mount {want}"),
        Duration::from_secs(10),
        || {
            let exited = !matches!(server.0.try_wait(), Ok(None));
            exited
                || std::fs::read_to_string(&mountinfo)
                    .map(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(want)))
                    .unwrap_or(false)
        },
    );
    let exited = !matches!(server.0.try_wait(), Ok(None));
    if mounted.is_err() || exited {
        panic!(
            "damon fs did not mount {want} (exited: {exited}); its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// `echo on > state` for a kdamond that cannot start because the kernel's BTF cannot be read:
/// the server runs in a mount namespace of its own where /sys/kernel/btf and /run (the layout
/// cache) are empty tmpfs mounts, so the layout must be probed and its first read fails. The
/// namespace's mounts are private: nothing of it reaches the rest of the machine. The test
/// reaches the tree through /proc/PID/root, which resolves paths in the server's namespace.
#[test]
#[ignore = "needs root"]
fn a_refused_state_write_logs_each_cause_once() {
    let target = ChildGuard(
        Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep"),
    );
    let mount_point = tempfile::tempdir().expect("mount point");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut server = ChildGuard(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                "mount -t tmpfs none /sys/kernel/btf && mount -t tmpfs none /run && \
                 exec \"$0\" fs \"$1\"",
            )
            .arg(damon_bin())
            .arg(mount_point.path())
            .stdin(Stdio::null())
            .stderr(Stdio::from(log.reopen().expect("log file")))
            .spawn()
            .expect("unshare"),
    );
    wait_for_mount(&mut server, mount_point.path(), log.path());
    let tree: PathBuf = Path::new(&format!("/proc/{}/root", server.pid()))
        .join(mount_point.path().strip_prefix("/").expect("absolute path"));
    let pid = target.pid().to_string();
    for (file, value) in [
        ("kdamonds/nr_kdamonds", "1"),
        ("kdamonds/0/contexts/nr_contexts", "1"),
        ("kdamonds/0/contexts/0/targets/nr_targets", "1"),
        ("kdamonds/0/contexts/0/targets/0/pid_target", pid.as_str()),
    ] {
        std::fs::write(tree.join(file), value).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let on = std::fs::write(tree.join("kdamonds/0/state"), "on");
    assert_eq!(
        on.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EINVAL)),
        "{on:?}"
    );
    let prefix = "write \"on\" to kdamonds/0/state: ";
    let read_log = || std::fs::read_to_string(log.path()).expect("read the log");
    // On timeout the search below fails, showing the whole log.
    let _logged = wait_until("the refusal in the log", Duration::from_secs(5), || {
        read_log().contains(prefix)
    });
    let text = read_log();
    server.signal(libc::SIGTERM);
    let _ = server.wait_for(Duration::from_secs(10));
    let line = text
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, chain)| chain))
        .unwrap_or_else(|| panic!("no {prefix:?} in the log:\n{text}"));
    assert_each_cause_once(
        line,
        &[
            "kdamond 0",
            "probing the kernel layout",
            "reading the kernel's BTF",
            "cannot read /sys/kernel/btf/vmlinux",
            "No such file or directory (os error 2)",
        ],
    );
}
