//! The admin tree served over FUSE, driven as users and tools drive the kernel's tree: the
//! seed's shell example verbatim, damo-style single `write()`s and their errno, concurrent
//! writers, whole-tree reads, and the server's lifecycle (drop, external `umount`, SIGTERM,
//! SIGINT, SIGKILL then `umount -l`). The tree is the library's, in this process on a fake
//! kdamond backend, except for the lifecycle of `damon fs` itself.
//!
//! Needs root (mount(2) of FUSE). Every mount is undone by a guard, also on failure.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use damon_tests::{
    ChildGuard, FsServer, UnmountGuard, mounted, wait_until, write_once as damo_write,
};
use damon_user::admin::fake::FakeBackend;
use damon_user::admin::{MountGuard, mount_background};

/// A temp directory with our tree mounted on it; unmounted before the directory goes.
struct Mounted {
    guard: Option<MountGuard>,
    fake: FakeBackend,
    dir: PathBuf,
    // Dropped after the guard, in this order: a mount the guard left, then the directory.
    _unmount: UnmountGuard,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fake = FakeBackend::new();
        let guard = mount_background(tmp.path(), Arc::new(fake.clone())).expect("mount");
        let dir = guard.mountpoint().to_path_buf();
        let unmount = UnmountGuard(dir.clone());
        assert!(mounted(&dir), "{} not in mountinfo", dir.display());
        Self {
            guard: Some(guard),
            fake,
            dir,
            _unmount: unmount,
            _tmp: tmp,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
}

/// A `sleep 30` under a name of its own, so `pidof` finds exactly it.
struct NamedSleep {
    child: ChildGuard,
    name: String,
    _bin: tempfile::TempDir,
}

impl NamedSleep {
    fn start() -> Self {
        let bin = tempfile::tempdir().expect("tempdir");
        // Unique per process: tests run concurrently and `pidof` must find one process.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("damon-wl-{}-{n}", std::process::id());
        let exe = bin.path().join(&name);
        fs::copy("/usr/bin/sleep", &exe)
            .or_else(|_| fs::copy("/bin/sleep", &exe))
            .expect("copy sleep");
        let child = ChildGuard(Command::new(&exe).arg("30").spawn().expect("spawn sleep"));
        Self {
            child,
            name,
            _bin: bin,
        }
    }

    fn pid(&self) -> i32 {
        self.child.pid()
    }
}

#[test]
#[ignore = "needs root"]
fn seed_example_verbatim() {
    let m = Mounted::new();
    let workload = NamedSleep::start();
    let script = format!(
        "set -e
cd {dir}
echo 1 > kdamonds/nr_kdamonds
echo 1 > kdamonds/0/contexts/nr_contexts
echo vaddr > kdamonds/0/contexts/0/operations
echo 1 > kdamonds/0/contexts/0/targets/nr_targets
echo $(pidof {workload}) > kdamonds/0/contexts/0/targets/0/pid_target
echo on > kdamonds/0/state
",
        dir = m.dir.display(),
        workload = workload.name
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.read("kdamonds/0/state"), "on\n");
    let pid: i32 = m.read("kdamonds/0/pid").trim().parse().expect("pid");
    assert!(pid > 0, "pid {pid}");
    assert!(
        Path::new(&format!("/proc/{pid}/stat")).exists(),
        "pid {pid} is no task"
    );
    let started = m.fake.started();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1.contexts[0].spec.targets[0].pid, workload.pid());
    assert_eq!(
        m.read("kdamonds/0/contexts/0/targets/0/pid_target"),
        format!("{}\n", workload.pid())
    );
    // `cat` sees exact content.
    let cat = Command::new("cat")
        .arg(m.path("kdamonds/0/contexts/0/avail_operations"))
        .output()
        .expect("cat");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "vaddr\nfvaddr\n");

    damo_write(&m.path("kdamonds/0/state"), "off").expect("off");
    assert_eq!(m.read("kdamonds/0/state"), "off\n");
    assert_eq!(m.read("kdamonds/0/pid"), "-1\n");
}

#[test]
#[ignore = "needs root"]
fn errno_through_the_mount() {
    let m = Mounted::new();
    let nr_kdamonds = m.path("kdamonds/nr_kdamonds");
    assert_eq!(damo_write(&nr_kdamonds, "abc"), Err(libc::EINVAL));
    assert_eq!(damo_write(&nr_kdamonds, "99999999999"), Err(libc::ERANGE));
    assert_eq!(damo_write(&nr_kdamonds, "-1"), Err(libc::EINVAL));
    assert_eq!(m.read("kdamonds/nr_kdamonds"), "0\n");
    damo_write(&nr_kdamonds, "1").expect("nr_kdamonds");
    let nr_contexts = m.path("kdamonds/0/contexts/nr_contexts");
    assert_eq!(damo_write(&nr_contexts, "2"), Err(libc::EINVAL));
    damo_write(&nr_contexts, "1").expect("nr_contexts");
    // Read-only files refuse a write open, even to root.
    assert_eq!(
        damo_write(&m.path("kdamonds/0/pid"), "1"),
        Err(libc::EACCES)
    );
    assert_eq!(
        damo_write(&m.path("kdamonds/0/contexts/0/avail_operations"), "paddr"),
        Err(libc::EACCES)
    );
    // No file can be created.
    assert_eq!(
        damo_write(&m.path("kdamonds/0/new_file"), "1"),
        Err(libc::EACCES)
    );
    assert_eq!(
        fs::create_dir(m.path("kdamonds/1"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(
        fs::remove_file(m.path("kdamonds/nr_kdamonds"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM)
    );
    assert_eq!(
        fs::read_to_string(m.path("kdamonds/7/state"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        damo_write(&m.path("kdamonds/0/contexts/0/operations"), "bogus"),
        Err(libc::EINVAL)
    );
    assert_eq!(
        damo_write(&m.path("kdamonds/0/state"), "off"),
        Err(libc::EINVAL)
    );
    assert_eq!(
        damo_write(&m.path("kdamonds/0/state"), "commit"),
        Err(libc::EINVAL)
    );

    // Running: nr_kdamonds is busy.
    let workload = NamedSleep::start();
    let ctx = "kdamonds/0/contexts/0";
    damo_write(&m.path(&format!("{ctx}/targets/nr_targets")), "1").unwrap();
    damo_write(
        &m.path(&format!("{ctx}/targets/0/pid_target")),
        &workload.pid().to_string(),
    )
    .unwrap();
    damo_write(&m.path("kdamonds/0/state"), "on").unwrap();
    assert_eq!(damo_write(&nr_kdamonds, "1"), Err(libc::EBUSY));
    assert_eq!(
        damo_write(&m.path("kdamonds/0/state"), "on"),
        Err(libc::EBUSY)
    );
    damo_write(&m.path("kdamonds/0/state"), "off").unwrap();
    assert_eq!(
        damo_write(&m.path("kdamonds/0/state"), "off"),
        Err(libc::EPERM)
    );
    damo_write(&nr_kdamonds, "1").unwrap();
}

/// Like damo's `read_files()`: list every directory and read every file; check modes.
#[test]
#[ignore = "needs root"]
fn whole_tree_reads_and_modes() {
    let m = Mounted::new();
    for (file, value) in [
        ("kdamonds/nr_kdamonds", "1"),
        ("kdamonds/0/contexts/nr_contexts", "1"),
        ("kdamonds/0/contexts/0/targets/nr_targets", "1"),
        ("kdamonds/0/contexts/0/schemes/nr_schemes", "1"),
        ("kdamonds/0/contexts/0/schemes/0/quotas/goals/nr_goals", "1"),
        (
            "kdamonds/0/contexts/0/schemes/0/ops_filters/nr_filters",
            "1",
        ),
    ] {
        damo_write(&m.path(file), value).unwrap_or_else(|e| panic!("{file}: errno {e}"));
    }
    fn walk(dir: &Path, files: &mut usize) {
        let meta = fs::metadata(dir).expect("dir metadata");
        assert_eq!(meta.permissions().mode(), 0o40755, "{}", dir.display());
        for entry in fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let meta = fs::metadata(&path).expect("metadata");
            if meta.is_dir() {
                walk(&path, files);
                continue;
            }
            let content = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            assert!(
                content.ends_with('\n') || content.is_empty(),
                "{}",
                path.display()
            );
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let p = path.to_string_lossy();
            let read_only = ["pid", "avail_operations", "effective_bytes", "total_bytes"]
                .contains(&name.as_str())
                || p.contains("/stats/")
                || p.contains("/tried_regions/");
            let mode = if read_only { 0o100400 } else { 0o100600 };
            assert_eq!(meta.permissions().mode(), mode, "{}", path.display());
            assert_eq!(meta.len(), 4096, "{}", path.display());
            *files += 1;
        }
    }
    let mut files = 0;
    walk(&m.dir, &mut files);
    // 1 kdamond, 1 context, 1 target, 1 scheme with 1 goal and 1 ops filter: exactly the
    // files of the ABI document's tree, no more, no fewer.
    assert_eq!(files, 66);
    assert_eq!(
        m.read("kdamonds/0/contexts/0/monitoring_attrs/intervals/update_us"),
        "60000000\n"
    );
}

/// Two processes' worth of writers on `nr_*` files: each write succeeds or fails with EBUSY
/// (the tree's try-lock), nothing else, and the tree stays consistent.
#[test]
#[ignore = "needs root"]
fn concurrent_writers() {
    let m = Mounted::new();
    damo_write(&m.path("kdamonds/nr_kdamonds"), "1").unwrap();
    damo_write(&m.path("kdamonds/0/contexts/nr_contexts"), "1").unwrap();
    let writers: Vec<_> = ["1", "3"]
        .into_iter()
        .map(|value| {
            let nr = m.path("kdamonds/0/contexts/0/targets/nr_targets");
            let plain = m.path("kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us");
            thread::spawn(move || {
                let mut busy = 0;
                for _ in 0..200 {
                    match damo_write(&nr, value) {
                        Ok(()) => {}
                        Err(libc::EBUSY) => busy += 1,
                        Err(e) => panic!("nr_targets <- {value}: errno {e}"),
                    }
                    // Plain values wait for the lock: never EBUSY.
                    damo_write(&plain, "200000").expect("aggr_us");
                }
                busy
            })
        })
        .collect();
    let busy: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    eprintln!("concurrent_writers: {busy} of 400 nr_targets writes met EBUSY");
    let nr: usize = m
        .read("kdamonds/0/contexts/0/targets/nr_targets")
        .trim()
        .parse()
        .unwrap();
    assert!(nr == 1 || nr == 3, "nr_targets {nr}");
    let targets = fs::read_dir(m.path("kdamonds/0/contexts/0/targets"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(targets, nr);
}

#[test]
#[ignore = "needs root"]
fn unmounted_when_the_guard_drops() {
    let mut m = Mounted::new();
    // A reader holding a file open does not keep the mount behind.
    let _open = fs::File::open(m.path("kdamonds/nr_kdamonds")).expect("open");
    let guard = m.guard.take().expect("guard");
    guard.unmount().expect("unmount");
    assert!(!mounted(&m.dir), "still mounted");
}

#[test]
#[ignore = "needs root"]
fn external_umount_stops_the_server() {
    let m = Mounted::new();
    assert!(m.guard.as_ref().unwrap().is_serving());
    let status = Command::new("umount").arg(&m.dir).status().expect("umount");
    assert!(status.success());
    wait_until("the server to stop", Duration::from_secs(10), || {
        !m.guard.as_ref().unwrap().is_serving()
    })
    .unwrap();
    assert!(!mounted(&m.dir));
}

/// A SIGKILLed server leaves a mount that fails every access with ENOTCONN; `umount -l`
/// removes it and the directory is a plain empty directory again.
#[test]
#[ignore = "needs root"]
fn sigkill_leaves_a_broken_mount_that_umount_l_recovers() {
    let mut server = FsServer::start().expect("damon fs");
    assert_eq!(server.read("kdamonds/nr_kdamonds").expect("read"), "0\n");
    server.kill();
    assert!(server.mounted(), "the broken mount should remain");
    let err = fs::metadata(server.path().join("kdamonds")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let status = Command::new("umount")
        .arg("-l")
        .arg(server.path())
        .status()
        .expect("umount -l");
    assert!(status.success());
    assert!(!server.mounted());
    assert!(
        fs::read_dir(server.path())
            .expect("plain dir again")
            .next()
            .is_none()
    );
}

#[test]
#[ignore = "needs root"]
fn damon_fs_exits_cleanly_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut server = FsServer::start().expect("damon fs");
        // In use by a reader: still unmounted (lazily) and the server exits.
        let _open = fs::File::open(server.path().join("kdamonds/nr_kdamonds")).expect("open");
        server.signal(sig);
        let status = server.wait(Duration::from_secs(20)).expect("exit");
        assert!(status.success(), "signal {sig}: {status}");
        assert!(!server.mounted(), "signal {sig}: still mounted");
    }
}

#[test]
#[ignore = "needs root"]
fn damon_fs_exits_cleanly_on_external_umount() {
    let mut server = FsServer::start().expect("damon fs");
    let status = Command::new("umount")
        .arg(server.path())
        .status()
        .expect("umount");
    assert!(status.success());
    let status = server.wait(Duration::from_secs(20)).expect("exit");
    assert!(status.success(), "{status}");
    assert!(!server.mounted());
}
