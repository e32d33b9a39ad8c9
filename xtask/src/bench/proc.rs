//! Measuring processes from outside: CPU time and memory from `/proc`, spawned processes that
//! are killed and reaped on drop, and small statistics.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The release `damon` binary that `bench::run` builds.
pub fn damon(root: &Path) -> PathBuf {
    root.join("target/release/damon")
}

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU seconds (user + system, all threads) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: fields count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15 (1-based in proc(5)).
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clk_tck())
}

/// CPU seconds a process has run, summed over its threads, from the scheduler's own clock
/// (`/proc/PID/task/*/schedstat`, nanoseconds). `utime + stime` come from sampling at each
/// tick, which misjudges a process that wakes briefly hundreds of times a second (its wake-ups
/// line up with timer interrupts); this does not.
pub fn run_seconds(pid: u32) -> Result<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing the threads of {pid}"))?
    {
        let path = task?.path().join("schedstat");
        // A thread that ended meanwhile has no file any more: it no longer runs.
        if let Ok(s) = std::fs::read_to_string(&path) {
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(ns as f64 / 1e9)
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS")
}

/// The largest resident set size so far, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM")
}

/// A `KEY: N kB` line of `/proc/PID/status`.
fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// `CLOCK_MONOTONIC` in nanoseconds (the clock of `damon`'s timestamps).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A process we started: SIGKILLed and reaped on drop unless it already exited.
pub struct Spawned {
    pub child: Child,
    pub stdout: Option<BufReader<ChildStdout>>,
}

impl Spawned {
    /// Starts `cmd` with its stdout piped.
    pub fn start(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(Self { child, stdout })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of its stdout, trimmed.
    pub fn line(&mut self) -> Result<String> {
        let out = self.stdout.as_mut().context("no stdout")?;
        let mut s = String::new();
        if out.read_line(&mut s)? == 0 {
            bail!("the process closed its output");
        }
        Ok(s.trim().to_string())
    }

    /// Waits for the process to exit, at most `limit`; kills it after that.
    pub fn wait(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("pid {} did not exit within {limit:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `damon workload ARGS`, started and past its READY line (returned).
pub fn workload(damon: &Path, args: &[&str]) -> Result<(Spawned, String)> {
    let mut cmd = Command::new(damon);
    cmd.arg("workload").args(args);
    let mut w = Spawned::start(cmd)?;
    let ready = w.line().context("waiting for the workload's READY line")?;
    if !ready.starts_with("READY") {
        bail!("unexpected first line from the workload: {ready:?}");
    }
    Ok((w, ready))
}

/// Median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}
