//! Helpers for the integration tests: privilege checks and workload processes that clean up
//! after themselves.
use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// True when the test may use BPF. When not root it prints why the test is skipped; as root
/// (CI) it always returns true, so a failure to load or attach fails the test.
pub fn have_root(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        // Straight to the stderr handle: the test harness captures eprintln!, which would hide
        // the skip in a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: needs root for BPF (run `cargo xtask test` as root)"
        );
    }
    root
}

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

/// Size-weighted access rate (0..=1) of the part of `range` that regions cover.
pub fn weighted_rate(
    regions: &[damon_user::core::RegionSnapshot],
    range: (u64, u64),
    max_nr_accesses: u32,
) -> f64 {
    let (mut sum, mut bytes) = (0.0, 0u64);
    for r in regions {
        let (s, e) = (r.start.max(range.0), r.end.min(range.1));
        if s < e {
            sum += (e - s) as f64 * r.nr_accesses as f64 / max_nr_accesses.max(1) as f64;
            bytes += e - s;
        }
    }
    if bytes == 0 { 0.0 } else { sum / bytes as f64 }
}

/// Bytes of `range` that regions cover.
pub fn covered(regions: &[damon_user::core::RegionSnapshot], range: (u64, u64)) -> u64 {
    regions
        .iter()
        .map(|r| r.end.min(range.1).saturating_sub(r.start.max(range.0)))
        .sum()
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

/// A `damon fs DIR` server process on a temporary directory. On drop: SIGTERM, wait, and a
/// lazy unmount if the mount outlived the server (a test that killed it, or a bug).
pub struct FsServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl FsServer {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir().context("temporary mount point")?;
        let child = Command::new(damon_bin())
            .arg("fs")
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .context("starting damon fs")?;
        let server = FsServer { child, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !server.mounted() {
            if std::time::Instant::now() > deadline {
                bail!(
                    "damon fs did not mount {} within 10 s",
                    server.path().display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether our directory is a mount point now.
    pub fn mounted(&self) -> bool {
        let p = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| {
                m.lines()
                    .any(|l| l.split_whitespace().nth(4) == Some(p.as_str()))
            })
            .unwrap_or(false)
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> std::io::Result<std::process::ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()
    }

    /// SIGKILL and wait, leaving the mount behind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Writes `value` to `rel` in the tree, returning the errno on failure.
    pub fn write(&self, rel: &str, value: &str) -> std::result::Result<(), i32> {
        std::fs::write(self.path().join(rel), value).map_err(|e| e.raw_os_error().unwrap_or(-1))
    }

    pub fn read(&self, rel: &str) -> Result<String> {
        std::fs::read_to_string(self.path().join(rel)).with_context(|| format!("reading {rel}"))
    }
}

impl Drop for FsServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        if self.mounted() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
