//! The cost of leaving `damon record` running, measured from outside:
//!
//! - steady-state CPU: utime + stime of the `damon record` process over a 20 s window that
//!   starts 5 s after it (defaults: 5 ms / 100 ms / 1 s), on a 1 GiB and a 4 GiB process with
//!   64 MiB hot (`damon workload hotcold`); also its run time by the scheduler's clock
//!   (schedstat), and both for `damon workload sleeper`, which only wakes at the sampling
//!   rate: the floor of any monitor that samples from user space on this machine;
//! - system calls per sample: `perf stat -e raw_syscalls:sys_enter` on the recorder over the
//!   same window, divided by the samples the record file shows in it;
//! - workload slowdown: sweeps per second of a busy 1 GiB workload, alternately unmonitored
//!   and monitored, 10 s each, three rounds; the median per-second rates are compared;
//! - start-up: time from spawning `damon record` to its first sample (its log says when).
//!
//! With `DAMON_BENCH_BASELINE=/path/to/older/damon` every figure is also taken for that
//! binary, alternating with the current one in the same run, so the two sit side by side.
use std::{
    io::BufRead,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::proc::{Spawned, cpu_seconds, damon, median, monotonic_ns, run_seconds, workload};

const WARM_S: f64 = 5.0;
const WINDOW_S: f64 = 20.0;
const HOT_MIB: u64 = 64;

/// The binaries to measure: the current one, and the baseline when one is given.
fn binaries(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v = vec![("current".to_string(), damon(root))];
    if let Some(b) = std::env::var_os("DAMON_BENCH_BASELINE") {
        let b = PathBuf::from(b);
        if !b.is_file() {
            bail!("DAMON_BENCH_BASELINE={} is not a file", b.display());
        }
        v.push(("baseline".to_string(), b));
    }
    Ok(v)
}

/// What one recording of one workload cost.
struct Cost {
    /// utime + stime, % of one CPU.
    cpu_pct: f64,
    /// schedstat run time, % of one CPU.
    run_pct: f64,
    syscalls_per_sample: Option<f64>,
    samples_per_s: f64,
}

pub fn run(root: &Path) -> Result<()> {
    let _scratch = ScratchDir;
    let bins = binaries(root)?;
    let floor = sleeper_cost(&damon(root))?;
    println!(
        "   floor: a process that only wakes every 5 ms: {:.2} % of one CPU (utime+stime), {:.2} % (schedstat)",
        floor.0, floor.1
    );
    let mut rows = Vec::new();
    for gib in [1u64, 4] {
        for (name, bin) in &bins {
            let c = record_cost(bin, gib)
                .with_context(|| format!("measuring {name} on the {gib} GiB workload"))?;
            println!(
                "{name:>8} {gib} GiB: CPU {:.2} % of one CPU (schedstat {:.2} %), {} system calls per sample, {:.0} samples/s",
                c.cpu_pct,
                c.run_pct,
                c.syscalls_per_sample
                    .map_or("n/a".into(), |s| format!("{s:.2}")),
                c.samples_per_s
            );
            rows.push((name.clone(), gib, c));
        }
    }
    autotune(root)?;
    let mut slowdowns = Vec::new();
    for (name, bin) in &bins {
        let s = slowdown(&damon(root), bin)
            .with_context(|| format!("measuring the workload slowdown under {name}"))?;
        println!(
            "{name:>8}: workload {:.1} sweeps/s unmonitored, {:.1} monitored: slowdown {:.2} %",
            s.0,
            s.1,
            (1.0 - s.1 / s.0) * 100.0
        );
        slowdowns.push((name.clone(), s));
    }
    println!(
        "\n| binary | CPU at 1 GiB (%) | CPU at 4 GiB (%) | 4 GiB / 1 GiB | schedstat 1 / 4 GiB (%) | syscalls per sample (1 GiB) | samples/s | workload slowdown (%) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| floor: wake every 5 ms, do nothing | {:.2} | | | {:.2} | | 200 | |",
        floor.0, floor.1
    );
    for (name, _) in &bins {
        let at = |g: u64| rows.iter().find(|r| &r.0 == name && r.1 == g).map(|r| &r.2);
        let (Some(one), Some(four)) = (at(1), at(4)) else {
            continue;
        };
        let slow = slowdowns
            .iter()
            .find(|s| &s.0 == name)
            .map_or(f64::NAN, |s| (1.0 - s.1.1 / s.1.0) * 100.0);
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {} | {:.0} | {:.2} |",
            one.cpu_pct,
            four.cpu_pct,
            four.cpu_pct / one.cpu_pct,
            one.run_pct,
            four.run_pct,
            one.syscalls_per_sample
                .map_or("n/a".into(), |s| format!("{s:.2}")),
            one.samples_per_s,
            slow
        );
    }
    Ok(())
}

/// `damon workload` arguments of a `gib` GiB process with `HOT_MIB` hot.
fn hotcold(gib: u64) -> Vec<String> {
    let cold = (gib << 10) - HOT_MIB;
    [
        "hotcold",
        "--hot-mib",
        &HOT_MIB.to_string(),
        "--cold-mib",
        &cold.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Records a `gib` GiB hot/cold workload with `bin` at the defaults and measures the recorder.
fn record_cost(bin: &Path, gib: u64) -> Result<Cost> {
    recording_cost(bin, bin, &hotcold(gib), &[])
}

/// Records `damon workload WORKLOAD` (started with `workload_bin`) with `bin record
/// RECORD_ARGS` and measures the recorder.
fn recording_cost(
    bin: &Path,
    workload_bin: &Path,
    workload_args: &[String],
    record_args: &[&str],
) -> Result<Cost> {
    let args: Vec<&str> = workload_args.iter().map(String::as_str).collect();
    let (w, _) = workload(workload_bin, &args)?;
    let out = tempfile("cpu-record.json")?;
    let secs = WARM_S + WINDOW_S + 1.0;
    let mut cmd = Command::new(bin);
    cmd.args(["record", "--format", "json", "-d", &secs.to_string()])
        .args(record_args)
        .arg("-p")
        .arg(w.pid().to_string())
        .arg("-o")
        .arg(&out)
        .stderr(Stdio::null());
    let mut rec = Spawned::start(cmd)?;
    let pid = rec.pid();
    std::thread::sleep(Duration::from_secs_f64(WARM_S));
    let (c0, r0, t0) = (cpu_seconds(pid)?, run_seconds(pid)?, monotonic_ns());
    let perf = PerfSyscalls::start(pid);
    std::thread::sleep(Duration::from_secs_f64(WINDOW_S));
    let syscalls = perf.and_then(PerfSyscalls::stop);
    let (c1, r1, t1) = (cpu_seconds(pid)?, run_seconds(pid)?, monotonic_ns());
    let status = rec.wait(Duration::from_secs(30))?;
    if !status.success() {
        bail!("damon record exited with {status}");
    }
    let window_s = (t1 - t0) as f64 / 1e9;
    let samples = samples_between(&out, t0, t1)?;
    let _ = std::fs::remove_file(&out);
    Ok(Cost {
        cpu_pct: (c1 - c0) / window_s * 100.0,
        run_pct: (r1 - r0) / window_s * 100.0,
        syscalls_per_sample: syscalls.map(|n| n as f64 / samples.max(1.0)),
        samples_per_s: samples / window_s,
    })
}

/// The current binary with fixed intervals and with `--autotune`, on the 1 GiB workload and on
/// an idle process (`damon workload sleeper`, which wakes once a second and touches nothing).
fn autotune(root: &Path) -> Result<()> {
    let bin = damon(root);
    let idle: Vec<String> = ["sleeper", "--interval-us", "1000000"]
        .map(String::from)
        .to_vec();
    let mut rows = Vec::new();
    for (what, w) in [("1 GiB, 64 MiB hot", hotcold(1)), ("idle process", idle)] {
        for (how, args) in [
            ("fixed 5 ms / 100 ms", &[][..]),
            ("--autotune", &["--autotune"][..]),
        ] {
            let c = recording_cost(&bin, &bin, &w, args)
                .with_context(|| format!("measuring {how} on the {what}"))?;
            println!(
                "  current, {what}, {how}: CPU {:.2} % of one CPU (schedstat {:.2} %), {:.1} samples/s",
                c.cpu_pct, c.run_pct, c.samples_per_s
            );
            rows.push((what, how, c));
        }
    }
    println!("\n| workload | intervals | CPU (%) | schedstat (%) | samples/s |");
    println!("|---|---|---:|---:|---:|");
    for (what, how, c) in &rows {
        println!(
            "| {what} | {how} | {:.2} | {:.2} | {:.1} |",
            c.cpu_pct, c.run_pct, c.samples_per_s
        );
    }
    Ok(())
}

/// utime+stime and schedstat run time (% of one CPU) of `damon workload sleeper` over the
/// same window as the recordings.
pub(super) fn sleeper_cost(bin: &Path) -> Result<(f64, f64)> {
    let (w, _) = workload(bin, &["sleeper", "--interval-us", "5000"])?;
    let pid = w.pid();
    std::thread::sleep(Duration::from_secs(2));
    let (c0, r0, t0) = (cpu_seconds(pid)?, run_seconds(pid)?, monotonic_ns());
    std::thread::sleep(Duration::from_secs_f64(WINDOW_S));
    let (c1, r1, t1) = (cpu_seconds(pid)?, run_seconds(pid)?, monotonic_ns());
    let s = (t1 - t0) as f64 / 1e9;
    Ok(((c1 - c0) / s * 100.0, (r1 - r0) / s * 100.0))
}

/// Samples taken between `t0` and `t1` (monotonic ns), from the aggregations of a record file
/// written with `--format json` at the default intervals.
fn samples_between(path: &Path, t0: u64, t1: u64) -> Result<f64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("the record is not JSON")?;
    let num = |x: &serde_json::Value| {
        x.as_u64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
    };
    let mut aggregations = 0.0;
    for record in v
        .as_array()
        .context("not a list of records")?
        .iter()
        .take(1)
    {
        for s in record["snapshots"].as_array().context("no snapshots")? {
            let (Some(start), Some(end)) = (num(&s["start_time"]), num(&s["end_time"])) else {
                continue;
            };
            // The part of this aggregation inside the window.
            let overlap = end.min(t1).saturating_sub(start.max(t0)) as f64;
            let len = end.saturating_sub(start).max(1) as f64;
            aggregations += overlap / len;
        }
    }
    // 100 ms / 5 ms: twenty samples per aggregation at the defaults.
    Ok(aggregations * 20.0)
}

/// `perf stat -e raw_syscalls:sys_enter -p PID`, counted in the kernel (no tracing of each call).
struct PerfSyscalls(Spawned, PathBuf);

impl PerfSyscalls {
    fn start(pid: u32) -> Option<Self> {
        let out = tempfile("perf-syscalls.txt").ok()?;
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-o"])
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stderr(Stdio::null());
        match Spawned::start(cmd) {
            Ok(p) => Some(Self(p, out)),
            Err(e) => {
                println!("(no system call counts: {e:#})");
                None
            }
        }
    }

    fn stop(mut self) -> Option<u64> {
        // SAFETY: SIGINT to the perf process we started; it prints its counts and exits.
        unsafe { libc::kill(self.0.pid() as i32, libc::SIGINT) };
        self.0.wait(Duration::from_secs(5)).ok()?;
        let text = std::fs::read_to_string(&self.1).ok()?;
        let _ = std::fs::remove_file(&self.1);
        text.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next()?.trim().parse().ok())
    }
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("damon-bench-{}", std::process::id()))
}

/// A file in this run's scratch directory, which [`ScratchDir`] removes.
fn tempfile(name: &str) -> Result<PathBuf> {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(name))
}

/// Removes the scratch directory when a benchmark ends, also on error.
struct ScratchDir;

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(scratch_dir());
    }
}

/// Sweeps per second of a busy 1 GiB workload (started with `workload_bin`), unmonitored and
/// monitored by `bin`: medians over three alternating rounds of 10 s each.
fn slowdown(workload_bin: &Path, bin: &Path) -> Result<(f64, f64)> {
    let (mut w, _) = workload(
        workload_bin,
        &[
            "hotcold",
            "--hot-mib",
            &HOT_MIB.to_string(),
            "--cold-mib",
            &((1u64 << 10) - HOT_MIB).to_string(),
            "--busy",
            "--report-every",
            "1",
        ],
    )?;
    let pid = w.pid();
    let out = w.stdout.take().context("workload output")?;
    let (tx, rx) = mpsc::channel();
    // RATE lines: sweeps per second over the last second, stamped with the monotonic clock.
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Some(rate) = line
                .strip_prefix("RATE ")
                .and_then(|r| r.parse::<f64>().ok())
                && tx.send((monotonic_ns(), rate)).is_err()
            {
                break;
            }
        }
    });
    let phase_s = 10.0;
    let mut off = Vec::new();
    let mut on = Vec::new();
    for _ in 0..3 {
        for monitored in [false, true] {
            let t0 = monotonic_ns();
            let rec = if monitored {
                let mut cmd = Command::new(bin);
                cmd.args(["record", "-d", &phase_s.to_string(), "-p"])
                    .arg(pid.to_string())
                    .arg("-o")
                    .arg(tempfile("slowdown.data")?)
                    .stderr(Stdio::null());
                Some(Spawned::start(cmd)?)
            } else {
                None
            };
            std::thread::sleep(Duration::from_secs_f64(phase_s));
            if let Some(mut r) = rec {
                r.wait(Duration::from_secs(30))?;
            }
            let t1 = monotonic_ns();
            // Skip the first 2 s of each phase: start-up and the switch.
            let from = t0 + 2_000_000_000;
            for (t, rate) in rx.try_iter() {
                if t >= from && t <= t1 {
                    if monitored { &mut on } else { &mut off }.push(rate);
                }
            }
        }
    }
    Ok((median(&off), median(&on)))
}

/// Time from spawning `damon record` to its first sample, five runs per binary and case,
/// alternating: with the kernel layout cached for this boot (a machine that ran damon
/// before), and without (the first run after a boot: BTF and calibration). Also the whole
/// run's wall time, `-d 0.3` included, which the older binaries can be compared on.
pub fn startup(root: &Path) -> Result<()> {
    let _scratch = ScratchDir;
    let bins = binaries(root)?;
    let (w, _) = workload(
        &damon(root),
        &["hotcold", "--hot-mib", "16", "--cold-mib", "48"],
    )?;
    let cache = Path::new("/run/damon/kernel-layout.json");
    for cached in [true, false] {
        let mut first: Vec<Vec<f64>> = vec![Vec::new(); bins.len()];
        let mut wall: Vec<Vec<f64>> = vec![Vec::new(); bins.len()];
        for _ in 0..5 {
            for (i, (_, bin)) in bins.iter().enumerate() {
                if !cached {
                    let _ = std::fs::remove_file(cache);
                }
                let (ms, total) = first_sample_ms(bin, w.pid())?;
                first[i].extend(ms);
                wall[i].push(total);
            }
        }
        let case = if cached {
            "layout cached"
        } else {
            "first run after boot"
        };
        for (i, (name, _)) in bins.iter().enumerate() {
            println!(
                "{name:>8}, {case}: first sample {} ms after spawn (all: {:.1?}); whole `record -d 0.3` {:.0} ms",
                if first[i].is_empty() {
                    "n/a (not logged)".to_string()
                } else {
                    format!("{:.1}", median(&first[i]))
                },
                first[i],
                median(&wall[i])
            );
        }
    }
    Ok(())
}

/// Runs `damon record -d 0.3` and reads the monotonic time of its first sample from its debug
/// log (`first sample at ... ns`), `None` for a binary that does not log it; and the whole
/// run's wall time in ms.
fn first_sample_ms(bin: &Path, pid: u32) -> Result<(Option<f64>, f64)> {
    let t0 = monotonic_ns();
    let out = Command::new(bin)
        .args(["record", "-d", "0.3", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(tempfile("startup.data")?)
        .env("RUST_LOG", "damon_user::core::kdamond=debug")
        .output()
        .context("running damon record")?;
    let total = monotonic_ns().saturating_sub(t0) as f64 / 1e6;
    let log = String::from_utf8_lossy(&out.stderr);
    let first = log
        .lines()
        .find_map(|l| l.split("first sample at ").nth(1))
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .map(|t| t.saturating_sub(t0) as f64 / 1e6);
    Ok((first, total))
}
