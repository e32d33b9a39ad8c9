//! A closed terminal or ssh session (SIGHUP) ends `record`, `top` and `fs` as Ctrl-C does: the
//! file is finished, the terminal restored, the tree unmounted. Each command runs on a
//! pseudo-terminal it controls, and the test hangs up for real by closing the master.
use std::{process::Command, time::Duration};

use damon_tests::{FsServer, Pty, Workload, damon_bin};
use damon_user::record::{FileKind, RecordFormat, read_record_file};

fn workload() -> Workload {
    Workload::start(&["hotcold", "--hot-mib", "8", "--cold-mib", "8"])
        .expect("workload")
        .0
}

fn snapshots(path: &std::path::Path) -> (FileKind, usize) {
    let (kind, records) = read_record_file(path).expect("a readable record file");
    (kind, records.iter().map(|r| r.snapshots.len()).sum())
}

#[test]
#[ignore = "needs root"]
fn record_finishes_its_file_when_the_terminal_hangs_up() {
    let w = workload();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("hup.data");
    let mut pty = Pty::open().expect("pty");
    let mut cmd = Command::new(damon_bin());
    cmd.args(["record", "-p", &w.pid().to_string(), "-o"])
        .arg(&out);
    let mut rec = pty.spawn(cmd).expect("damon record");
    // Its progress line on the terminal shows it records.
    assert!(
        pty.read_until(Duration::from_secs(20), |o| {
            String::from_utf8_lossy(o).contains("] 10 snapshots")
        }),
        "no progress on the terminal:\n{}",
        String::from_utf8_lossy(pty.output())
    );
    let (kind, before) = snapshots(&out);
    assert_eq!(kind, FileKind::Journal, "a journal while it records");
    pty.hang_up();
    let status = rec.wait_for(Duration::from_secs(20)).expect("exit");
    assert!(
        status.success(),
        "damon record after a hangup: {status} (killed by the signal, or failed)"
    );
    let (kind, after) = snapshots(&out);
    assert_eq!(
        kind,
        FileKind::Damo(RecordFormat::JsonCompressed),
        "finished"
    );
    assert!(
        after >= before,
        "{after} snapshots, {before} before the hangup"
    );
}

#[test]
#[ignore = "needs root"]
fn top_restores_the_terminal_on_sighup() {
    let w = workload();
    let mut pty = Pty::open().expect("pty");
    let mut cmd = Command::new(damon_bin());
    cmd.args(["top", "-p", &w.pid().to_string()]);
    let mut top = pty.spawn(cmd).expect("damon top");
    let enter = b"\x1b[?1049h";
    let leave = b"\x1b[?1049l";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    assert!(
        pty.read_until(Duration::from_secs(20), |o| {
            find(o, enter).is_some() && String::from_utf8_lossy(o).contains("pid")
        }),
        "top never drew:\n{}",
        String::from_utf8_lossy(pty.output())
    );
    // SIGHUP as the kernel sends it on a hangup, with the terminal still there to see the
    // restore.
    top.signal(libc::SIGHUP);
    let status = pty
        .read_until_exit(&mut top, Duration::from_secs(20))
        .expect("exit");
    assert!(status.success(), "damon top after SIGHUP: {status}");
    let out = pty.output();
    let entered = find(out, enter).unwrap();
    assert!(
        find(&out[entered..], leave).is_some(),
        "the alternate screen was not left"
    );

    // A real hangup: the terminal is gone, its writes fail; top still ends cleanly.
    let mut cmd = Command::new(damon_bin());
    cmd.args(["top", "-p", &w.pid().to_string()]);
    let mut pty = Pty::open().expect("pty");
    let mut top = pty.spawn(cmd).expect("damon top");
    assert!(pty.read_until(Duration::from_secs(20), |o| find(o, enter).is_some()));
    pty.hang_up();
    let status = top.wait_for(Duration::from_secs(20)).expect("exit");
    assert!(status.success(), "damon top after a hangup: {status}");
}

#[test]
#[ignore = "needs root"]
fn fs_unmounts_on_sighup() {
    let mut fs = FsServer::start().expect("damon fs");
    fs.signal(libc::SIGHUP);
    let status = fs.wait(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "damon fs after SIGHUP: {status}");
    assert!(!fs.mounted(), "mount left after SIGHUP");
}
