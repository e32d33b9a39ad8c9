//! The cost of `damon serve` on many processes, measured from outside: 20 `damon workload
//! hotcold` processes (16 MiB each, 4 MiB hot) in one target group by pid, the agent at the
//! default attributes (5 ms / 100 ms / 1 s); utime + stime and RSS of the agent over a 20 s
//! window that starts 5 s after it, with /metrics scraped once a second as Prometheus would,
//! next to the floor (a process that only wakes every 5 ms).
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::proc::{Spawned, cpu_seconds, damon, monotonic_ns, rss_kib, workload};

const PROCESSES: usize = 20;
const WARM_S: u64 = 5;
const WINDOW_S: u64 = 20;

/// `/metrics` of the agent at `addr`.
fn scrape(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn group_processes(metrics: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix("damon_group_processes{")?
            .split_once("} ")?
            .1
            .parse()
            .ok()
    })
}

/// A file removed on drop.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(root: &Path) -> Result<()> {
    let bin = damon(root);
    let floor = super::cpu::sleeper_cost(&bin)?.0;
    let mut workloads = Vec::with_capacity(PROCESSES);
    for _ in 0..PROCESSES {
        workloads.push(workload(&bin, &["hotcold", "--hot-mib", "4", "--cold-mib", "12"])?.0);
    }
    let pids: Vec<String> = workloads.iter().map(|w| w.pid().to_string()).collect();
    let config =
        std::env::temp_dir().join(format!("damon-bench-serve-{}.toml", std::process::id()));
    let _remove = RemoveOnDrop(config.clone());
    std::fs::write(
        &config,
        format!(
            "[[group]]\nname = \"bench\"\npids = [{}]\n",
            pids.join(", ")
        ),
    )?;
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let mut agent = Spawned::start(cmd)?;
    let line = agent
        .line()
        .context("waiting for the agent's LISTENING line")?;
    let addr: SocketAddr = line
        .strip_prefix("LISTENING ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("the agent said {line:?}"))?;
    let pid = agent.pid();
    std::thread::sleep(Duration::from_secs(WARM_S));
    let monitored = group_processes(&scrape(addr)?).unwrap_or(0.0);
    if monitored as usize != PROCESSES {
        bail!("the agent monitors {monitored} processes, not {PROCESSES}");
    }
    let (c0, t0) = (cpu_seconds(pid)?, monotonic_ns());
    let mut rss = Vec::new();
    for _ in 0..WINDOW_S {
        std::thread::sleep(Duration::from_secs(1));
        scrape(addr)?;
        rss.push(rss_kib(pid)?);
    }
    let (c1, t1) = (cpu_seconds(pid)?, monotonic_ns());
    let cpu_pct = (c1 - c0) / ((t1 - t0) as f64 / 1e9) * 100.0;
    let max_rss = rss.iter().copied().max().unwrap_or(0);
    println!(
        "damon serve, {PROCESSES} processes in one group, defaults: CPU {cpu_pct:.2} % of one CPU \
         (floor {floor:.2} %), RSS {:.1} MiB (max over the window)",
        max_rss as f64 / 1024.0
    );
    println!("\n| processes | agent CPU (% of one CPU) | floor (%) | agent RSS (MiB) |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {PROCESSES} | {cpu_pct:.2} | {floor:.2} | {:.1} |",
        max_rss as f64 / 1024.0
    );
    // SAFETY: kill has no memory preconditions; the agent is our child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = agent.wait(Duration::from_secs(20))?;
    if !status.success() {
        bail!("the agent exited with {status} after SIGTERM");
    }
    drop(workloads);
    Ok(())
}
