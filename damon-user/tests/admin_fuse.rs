//! The admin tree served over FUSE, driven as users and tools drive the kernel's tree: the
//! seed's shell example verbatim, damo-style single `write()`s and their errno, concurrent
//! writers, whole-tree reads, and the server's lifecycle (drop, external `umount`, SIGTERM,
//! SIGKILL then `umount -l`).
//!
//! Needs root (mount(2) of FUSE). Without root each test prints why it did nothing; as root
//! they run and fail on any error. Every mount is undone by a guard, also on failure.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use damon_user::admin::fake::FakeBackend;
use damon_user::admin::{MountGuard, mount_background};

/// Env var that turns the ignored helper tests into servers for the lifecycle tests.
const SERVE_ENV: &str = "DAMON_ADMIN_TEST_SERVE";
const RUN_ENV: &str = "DAMON_ADMIN_TEST_RUN";

fn is_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    // Straight to the stderr handle: the harness captures eprintln!, which would hide the skip
    // in a passing run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: mounting FUSE needs root; run the tests as root to exercise it"
    );
    false
}

fn mounted(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.as_ref()))
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A temp directory with our tree mounted on it; unmounted before the directory goes.
struct Mounted {
    guard: Option<MountGuard>,
    fake: FakeBackend,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fake = FakeBackend::new();
        let guard = mount_background(tmp.path(), Arc::new(fake.clone())).expect("mount");
        let dir = guard.mountpoint().to_path_buf();
        assert!(mounted(&dir), "{} not in mountinfo", dir.display());
        Self {
            guard: Some(guard),
            fake,
            dir,
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

impl Drop for Mounted {
    fn drop(&mut self) {
        drop(self.guard.take());
        if mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Write as damo does: `open(O_WRONLY|O_CREAT|O_TRUNC)` then one `write()`. Returns the
/// errno of whichever failed.
fn damo_write(path: &Path, value: &str) -> Result<(), i32> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    let n = f
        .write(value.as_bytes())
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    assert_eq!(n, value.len(), "short write to {}", path.display());
    Ok(())
}

/// A `sleep 30` under a name of its own, so `pidof` finds exactly it.
struct Workload {
    child: Child,
    name: String,
    _bin: tempfile::TempDir,
}

impl Workload {
    fn start() -> Self {
        let bin = tempfile::tempdir().expect("tempdir");
        // Unique per workload: tests run concurrently and `pidof` must find one process.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("damon-wl-{}-{n}", std::process::id());
        let exe = bin.path().join(&name);
        fs::copy("/usr/bin/sleep", &exe)
            .or_else(|_| fs::copy("/bin/sleep", &exe))
            .expect("copy sleep");
        let child = Command::new(&exe)
            .arg("30")
            .spawn()
            .expect("spawn workload");
        Self {
            child,
            name,
            _bin: bin,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn seed_example_verbatim() {
    if !is_root("seed_example_verbatim") {
        return;
    }
    let m = Mounted::new();
    let workload = Workload::start();
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
    assert_eq!(
        started[0].1.contexts[0].spec.targets[0].pid,
        workload.child.id() as i32
    );
    assert_eq!(
        m.read("kdamonds/0/contexts/0/targets/0/pid_target"),
        format!("{}\n", workload.child.id())
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
fn errno_through_the_mount() {
    if !is_root("errno_through_the_mount") {
        return;
    }
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
    let workload = Workload::start();
    let ctx = "kdamonds/0/contexts/0";
    damo_write(&m.path(&format!("{ctx}/targets/nr_targets")), "1").unwrap();
    damo_write(
        &m.path(&format!("{ctx}/targets/0/pid_target")),
        &workload.child.id().to_string(),
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
fn whole_tree_reads_and_modes() {
    if !is_root("whole_tree_reads_and_modes") {
        return;
    }
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
fn concurrent_writers() {
    if !is_root("concurrent_writers") {
        return;
    }
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
fn unmounted_when_the_guard_drops() {
    if !is_root("unmounted_when_the_guard_drops") {
        return;
    }
    let mut m = Mounted::new();
    // A reader holding a file open does not keep the mount behind.
    let _open = fs::File::open(m.path("kdamonds/nr_kdamonds")).expect("open");
    let guard = m.guard.take().expect("guard");
    guard.unmount().expect("unmount");
    assert!(!mounted(&m.dir), "still mounted");
}

#[test]
fn external_umount_stops_the_server() {
    if !is_root("external_umount_stops_the_server") {
        return;
    }
    let m = Mounted::new();
    assert!(m.guard.as_ref().unwrap().is_serving());
    let status = Command::new("umount").arg(&m.dir).status().expect("umount");
    assert!(status.success());
    wait_until("the server to stop", Duration::from_secs(10), || {
        !m.guard.as_ref().unwrap().is_serving()
    });
    assert!(!mounted(&m.dir));
}

/// A server process started by a lifecycle test; killed and its mount removed if the test
/// fails before it ends.
struct Server {
    child: Child,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    fn spawn(helper: &str, env: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().canonicalize().expect("canonicalize");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                helper,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env, &dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn server");
        wait_until("the server to mount", Duration::from_secs(20), || {
            mounted(&dir)
        });
        Self {
            child,
            dir,
            _tmp: tmp,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: the pid is our child's, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

#[test]
fn sigkill_leaves_a_broken_mount_that_umount_l_recovers() {
    if !is_root("sigkill_leaves_a_broken_mount_that_umount_l_recovers") {
        return;
    }
    let mut server = Server::spawn("serve_helper", SERVE_ENV);
    assert_eq!(
        fs::read_to_string(server.dir.join("kdamonds/nr_kdamonds")).expect("read"),
        "0\n"
    );
    server.signal(libc::SIGKILL);
    server.wait();
    let err = fs::metadata(server.dir.join("kdamonds")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    assert!(mounted(&server.dir), "the broken mount should remain");
    let status = Command::new("umount")
        .arg("-l")
        .arg(&server.dir)
        .status()
        .expect("umount -l");
    assert!(status.success());
    assert!(!mounted(&server.dir));
    assert!(
        fs::read_dir(&server.dir)
            .expect("plain dir again")
            .next()
            .is_none()
    );
}

#[test]
fn damon_fs_exits_cleanly_on_sigterm_and_sigint() {
    if !is_root("damon_fs_exits_cleanly_on_sigterm_and_sigint") {
        return;
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut server = Server::spawn("run_helper", RUN_ENV);
        // In use by a reader: still unmounted (lazily) and the server exits.
        let _open = fs::File::open(server.dir.join("kdamonds/nr_kdamonds")).expect("open");
        server.signal(sig);
        let status = server.wait();
        assert!(status.success(), "signal {sig}: {status}");
        assert!(!mounted(&server.dir), "signal {sig}: still mounted");
    }
}

#[test]
fn damon_fs_exits_cleanly_on_external_umount() {
    if !is_root("damon_fs_exits_cleanly_on_external_umount") {
        return;
    }
    let mut server = Server::spawn("run_helper", RUN_ENV);
    let status = Command::new("umount")
        .arg(&server.dir)
        .status()
        .expect("umount");
    assert!(status.success());
    let status = server.wait();
    assert!(status.success(), "{status}");
    assert!(!mounted(&server.dir));
}

/// Not a test: the server process of the SIGKILL test (mount, then serve until killed).
#[test]
#[ignore = "helper process of sigkill_leaves_a_broken_mount_that_umount_l_recovers"]
fn serve_helper() {
    let Some(dir) = std::env::var_os(SERVE_ENV) else {
        eprintln!("serve_helper only runs as a child of the lifecycle tests");
        return;
    };
    let _guard = mount_background(Path::new(&dir), Arc::new(FakeBackend::new())).expect("mount");
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

/// Not a test: `damon fs` (cmd::fs::run) in a process of its own for the lifecycle tests.
#[test]
#[ignore = "helper process of the damon_fs_* tests"]
fn run_helper() {
    let Some(dir) = std::env::var_os(RUN_ENV) else {
        eprintln!("run_helper only runs as a child of the lifecycle tests");
        return;
    };
    let args = damon_user::cmd::fs::Args {
        mountpoint: PathBuf::from(dir),
        allow_other: false,
    };
    damon_user::cmd::fs::run(args, Arc::new(FakeBackend::new())).expect("damon fs");
}
