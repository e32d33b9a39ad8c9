//! Helpers for the integration tests: workload and server processes, mounts, users and
//! files that clean up after themselves, and waits with a deadline.
//!
//! Tests that need root (BPF, mounts, other users) are `#[ignore = "needs root"]`: run as
//! root with `--include-ignored` (`cargo xtask test` does) they run and fail on any error;
//! without root they are listed as ignored, never as passed.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The `damon` binary built alongside the tests (`DAMON_BIN` overrides).
pub fn damon_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DAMON_BIN") {
        return p.into();
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/damon
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("damon"))
        .expect("target dir")
}

/// The damo executable `DAMON_TEST_DAMO` names (`cargo xtask test` installs damo and sets
/// it). The tests that use it are ignored with that reason; run without it, they fail.
pub fn damo() -> PathBuf {
    std::env::var_os("DAMON_TEST_DAMO")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("DAMON_TEST_DAMO must name a damo executable (`cargo xtask test` sets it)")
}

/// The Prometheus server `DAMON_TEST_PROMETHEUS` names (`cargo xtask test` installs Debian's
/// `prometheus` package and sets it). Run without it, the tests that use it fail.
pub fn prometheus() -> PathBuf {
    std::env::var_os("DAMON_TEST_PROMETHEUS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect(
            "DAMON_TEST_PROMETHEUS must name a prometheus executable (`cargo xtask test` sets it)",
        )
}

/// The promtool `DAMON_TEST_PROMTOOL` names (from the same package as [`prometheus`]).
pub fn promtool() -> PathBuf {
    std::env::var_os("DAMON_TEST_PROMTOOL")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("DAMON_TEST_PROMTOOL must name a promtool executable (`cargo xtask test` sets it)")
}

/// A running `damon workload`, killed and reaped on drop.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    /// Starts `damon workload ARGS` and waits for its first line of output.
    pub fn start(args: &[&str]) -> Result<(Self, String)> {
        let bin = damon_bin();
        let mut child = Command::new(&bin)
            .arg("workload")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("workload stdout")?);
        let mut w = Workload {
            child,
            stdin,
            stdout,
        };
        let line = w.read_line()?;
        Ok((w, line))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("workload closed its output");
        }
        Ok(line.trim().to_string())
    }

    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Kills the workload now and waits for it.
    pub fn kill(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses `0xSTART-0xEND`, as `damon report --address-range` does.
pub use damon_user::report::range::parse_address_range as parse_range;

/// The value of `key=` in a workload line like `READY pid=1 hot=0x1-0x2 cold=0x3-0x4`.
pub fn field<'a>(line: &'a str, key: &str) -> Result<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .with_context(|| format!("no {key}= in {line:?}"))
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of snapshot timestamps.
pub use damon_user::core::kdamond::monotonic_ns;

/// `AnonHugePages` of a process, in KiB.
pub fn anon_huge_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Calls `f` until it returns a value, for at most `limit`: that value, `f`'s error, or an
/// error naming `what` when the time ran out. It asks again after 10 ms, then less and less
/// often, down to every 100 ms.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = f()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Waits until `cond` holds, for at most `limit` (see [`poll`]).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    poll(what, limit, || Ok(cond().then_some(())))
}

/// The state of process `pid` (`R`, `S`, `Z`, ...) as `/proc/PID/stat` shows it; `None` when
/// there is no such process.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold anything: the state follows its last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    let dir = dir.to_string_lossy();
    Ok(std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.as_ref())))
}

/// Whether something is mounted on `dir` (exactly there, by `/proc/self/mountinfo`).
pub fn mounted(dir: &Path) -> bool {
    is_mount_point(dir).expect("reading /proc/self/mountinfo")
}

/// Lazily unmounts its directory on drop if something is still mounted there: what a failed
/// test, or a server that was killed, left behind.
pub struct UnmountGuard(pub PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        // Not `mounted`: no panic in a drop that may run while a failed test unwinds.
        if is_mount_point(&self.0).unwrap_or(true) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Writes `value` to `path` as damo does: `open(O_WRONLY|O_CREAT|O_TRUNC)`, then a single
/// `write()` that must take all of it. The errno of whichever failed.
pub fn write_once(path: &Path, value: &str) -> std::result::Result<(), i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(-1);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(errno)?;
    let n = f.write(value.as_bytes()).map_err(errno)?;
    assert_eq!(n, value.len(), "short write to {}", path.display());
    Ok(())
}

/// A `damon fs DIR` server process on a temporary directory. On drop: SIGTERM, wait, and a
/// lazy unmount if the mount outlived the server (a test that killed it, or a bug).
pub struct FsServer {
    child: ChildGuard,
    // Dropped in this order: the mount, then its directory.
    _unmount: UnmountGuard,
    dir: tempfile::TempDir,
    /// Where its stderr goes, for [`start_logged`](Self::start_logged) servers.
    log: Option<tempfile::NamedTempFile>,
}

impl FsServer {
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// A server whose stderr (its log) the test reads with [`log`](Self::log).
    pub fn start_logged() -> Result<Self> {
        Self::start_with(Some(tempfile::NamedTempFile::new().context("log file")?))
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f.path()).ok())
            .unwrap_or_default()
    }

    fn start_with(log: Option<tempfile::NamedTempFile>) -> Result<Self> {
        let dir = tempfile::tempdir().context("temporary mount point")?;
        let stderr = match &log {
            Some(f) => Stdio::from(f.reopen().context("log file")?),
            None => Stdio::inherit(),
        };
        let child = Command::new(damon_bin())
            .arg("fs")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting damon fs")?;
        let mut server = FsServer {
            child: ChildGuard(child),
            _unmount: UnmountGuard(dir.path().to_path_buf()),
            dir,
            log,
        };
        let what = format!("damon fs to mount {}", server.path().display());
        poll(&what, Duration::from_secs(10), || {
            if let Some(status) = server.child.0.try_wait()? {
                bail!("damon fs exited with {status} before mounting");
            }
            Ok(server.mounted().then_some(()))
        })?;
        Ok(server)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// Whether our directory is a mount point now.
    pub fn mounted(&self) -> bool {
        mounted(self.path())
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        self.child.signal(sig);
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(20))
    }

    /// Waits at most `limit` for the server to exit; its status.
    pub fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        self.child.wait_for(limit)
    }

    /// SIGKILL and wait, leaving the mount behind.
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Writes `value` to `rel` in the tree as damo does ([`write_once`]), returning the errno
    /// on failure.
    pub fn write(&self, rel: &str, value: &str) -> std::result::Result<(), i32> {
        write_once(&self.path().join(rel), value)
    }

    pub fn read(&self, rel: &str) -> Result<String> {
        std::fs::read_to_string(self.path().join(rel)).with_context(|| format!("reading {rel}"))
    }
}

impl Drop for FsServer {
    fn drop(&mut self) {
        // SIGTERM first, so that a running server unmounts as it does for a user; then the
        // fields: the child is reaped, a mount left behind is removed, then its directory.
        if matches!(self.child.0.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
    }
}

/// A system user created for a test (`useradd --system`), removed with its group on drop:
/// an unprivileged attacker whose actions are real, not simulated by root.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// A user with a name no one else uses (`damon-t-PID-N`), without a home or a shell.
    pub fn create() -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("damon-t-{}-{n}", std::process::id());
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .output()
            .context("running useradd")?;
        if !out.status.success() {
            bail!(
                "useradd {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // From here on, drop removes the user whatever fails.
        let mut user = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        let id = |flag: &str| -> Result<u32> {
            let out = Command::new("id").arg(flag).arg(&user.name).output()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .with_context(|| format!("id {flag} {}", user.name))
        };
        let (uid, gid) = (id("-u")?, id("-g")?);
        if uid == 0 || gid == 0 {
            bail!("{} got uid {uid} gid {gid}", user.name);
        }
        user.uid = uid;
        user.gid = gid;
        Ok(user)
    }

    /// `program args` run as this user (no supplementary groups); its output, or why it
    /// failed.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<std::process::Output> {
        use std::os::unix::process::CommandExt;
        Command::new(program)
            .args(args)
            .uid(self.uid)
            .gid(self.gid)
            .current_dir("/")
            .output()
            .with_context(|| format!("running {program} as {}", self.name))
    }

    /// `program args` started as this user, its output piped, not waited for.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<Child> {
        use std::os::unix::process::CommandExt;
        Command::new(program)
            .args(args)
            .uid(self.uid)
            .gid(self.gid)
            .current_dir("/")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {program} as {}", self.name))
    }

    /// Like [`run`](Self::run), and the command must succeed.
    pub fn must(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self.run(program, args)?;
        if !out.status.success() {
            bail!(
                "{program} {args:?} as {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Processes of the user would make userdel fail; the tests wait for theirs.
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

/// A temporary directory like /tmp: world-writable and sticky (mode 1777), where any user
/// can plant names but not remove others'. Removed with everything in it on drop.
pub fn sticky_dir() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().context("temporary directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
        .context("chmod 1777")?;
    Ok(dir)
}

/// A child process that is SIGKILLed and reaped on drop unless it already exited.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Starts `cmd` with its stdout piped and waits at most `limit` for its first line, which
    /// must be `ready`: how the command says that it is ready. What it writes later is read
    /// and dropped.
    pub fn start_ready(mut cmd: Command, ready: &str, limit: Duration) -> Result<Self> {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut child = ChildGuard(
            cmd.stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {name}"))?,
        );
        let mut stdout = BufReader::new(child.0.stdout.take().context("stdout")?);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(stdout.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(limit)
            .with_context(|| format!("{name} said nothing within {limit:?}"))?
            .with_context(|| format!("reading the output of {name}"))?;
        if line.trim_end() != ready {
            bail!("{name} said {line:?}, not {ready:?}");
        }
        Ok(child)
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits at most `limit` for it to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let what = format!("pid {} to exit", self.pid());
        poll(&what, limit, || Ok(self.0.try_wait()?))
    }
}

impl ChildGuard {
    /// Waits at most `limit` for it to exit, reading its piped stdout and stderr meanwhile.
    pub fn output(&mut self, limit: std::time::Duration) -> Result<std::process::Output> {
        use std::io::Read;
        fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        }
        let out = drain(self.0.stdout.take());
        let err = drain(self.0.stderr.take());
        let status = self.wait_for(limit)?;
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A pseudo-terminal: the test holds the master; a command started with
/// [`Pty::spawn`] gets the slave as its controlling terminal (it leads a new session), so
/// closing the master is a real hangup: the kernel sends it SIGHUP and its writes fail.
/// The test must keep reading ([`Pty::read_until`]): a terminal nobody reads blocks its
/// writers.
pub struct Pty {
    master: Option<std::fs::File>,
    output: Vec<u8>,
}

impl Pty {
    pub fn open() -> Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on a descriptor we own; checked results.
        let master = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("posix_openpt");
            }
            let master = std::fs::File::from_raw_fd(fd);
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(std::io::Error::last_os_error()).context("grantpt/unlockpt");
            }
            master
        };
        Ok(Pty {
            master: Some(master),
            output: Vec::new(),
        })
    }

    fn slave_path(&self) -> Result<PathBuf> {
        use std::os::fd::AsRawFd;
        let fd = self.master.as_ref().context("pty closed")?.as_raw_fd();
        let mut buf = [0 as libc::c_char; 128];
        // SAFETY: ptsname_r writes a NUL-terminated name into buf.
        if unsafe { libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("ptsname_r");
        }
        // SAFETY: NUL-terminated by ptsname_r.
        let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Ok(PathBuf::from(name.to_string_lossy().into_owned()))
    }

    /// Starts `cmd` on the terminal (stdin, stdout, stderr; 100x30).
    pub fn spawn(&mut self, mut cmd: Command) -> Result<ChildGuard> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(self.slave_path()?)
            .context("opening the pty slave")?;
        let ws = libc::winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        cmd.stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave);
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(ChildGuard(
            cmd.spawn().context("starting a command on the pty")?,
        ))
    }

    /// Reads what arrives within 20 ms.
    fn read_some(&mut self) {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let Some(master) = self.master.as_mut() else {
            std::thread::sleep(std::time::Duration::from_millis(20));
            return;
        };
        let mut pfd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 20) };
        let mut buf = [0u8; 4096];
        if ready > 0 {
            match master.read(&mut buf) {
                Ok(n) => self.output.extend_from_slice(&buf[..n]),
                // EIO: nobody holds the slave any more.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }

    /// Reads for at most `limit`, until `done(everything read so far)`; whether it was.
    pub fn read_until(
        &mut self,
        limit: std::time::Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if done(&self.output) {
                return true;
            }
            self.read_some();
        }
        done(&self.output)
    }

    /// Reads until `child` exits, at most `limit`; its exit status.
    pub fn read_until_exit(
        &mut self,
        child: &mut ChildGuard,
        limit: std::time::Duration,
    ) -> Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(s) = child.0.try_wait()? {
                self.read_some();
                return Ok(s);
            }
            if std::time::Instant::now() > deadline {
                bail!("pid {} still runs after {limit:?}", child.pid());
            }
            self.read_some();
        }
    }

    /// Everything the command wrote so far.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Hangs up: closes the master, as a closed terminal window or ssh connection does.
    pub fn hang_up(&mut self) {
        self.master.take();
    }
}
