//! `damon faults`: page faults per memory mapping of a process, counted in the kernel.
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;

use crate::core::Pid;
use crate::{
    bpf::{MonitorPrograms, ProgramOptions},
    core::read_proc_maps,
};

#[derive(Debug, ClapArgs)]
#[command(
    about = "Count page faults per memory mapping of a process",
    after_help = "Each mapping of the process is a region; the exceptions:page_fault_user \
tracepoint attributes every fault of the process to its region in the kernel.\n\n\
EXAMPLES:\n  damon faults -p 1234            # every second until Ctrl-C\n  damon faults -p 1234 -d 5 -n 10 # 5 s, the 10 busiest mappings"
)]
pub struct Args {
    /// Process to watch.
    #[arg(short, long)]
    pub pid: Pid,
    /// Seconds to run (default: until Ctrl-C or the process exits).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Seconds between reports.
    #[arg(short, long, default_value_t = 1.0)]
    pub interval: f64,
    /// Mappings to show per report, busiest first.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub top: usize,
}

pub fn run(args: Args) -> Result<()> {
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        bail!(
            "--interval must be a positive number of seconds, not {}",
            args.interval
        );
    }
    let maps = read_proc_maps(args.pid)
        .with_context(|| format!("reading the mappings of process {}", args.pid))?;
    let regions: Vec<(u64, u64)> = maps
        .iter()
        .map(|r| (r.start, r.end))
        .take(damon_common::MAX_REGIONS as usize)
        .collect();
    let opts = ProgramOptions {
        fault_tracepoint: true,
        ..Default::default()
    };
    let mut progs = MonitorPrograms::load(None, opts).context("loading the eBPF programs")?;
    let pidfd = crate::bpf::sys::pidfd_open(args.pid)
        .with_context(|| format!("opening process {}", args.pid))?;
    let slot = progs.add_target(args.pid, pidfd.as_raw_fd())?;
    progs.set_regions(
        slot,
        regions
            .iter()
            .map(|&(s, e)| crate::core::AddrRange::new(s, e)),
    )?;
    println!(
        "Counting page faults of process {} in {} mappings... Hit Ctrl-C to end.",
        args.pid,
        regions.len()
    );
    let signals =
        crate::cmd::StopSignals::install().context("installing SIGINT/SIGTERM/SIGHUP handlers")?;
    let t0 = Instant::now();
    while signals.received().is_none() {
        std::thread::sleep(Duration::from_secs_f64(args.interval));
        let faults = progs.faults(args.pid, regions.len())?;
        progs.reset_counters(slot)?;
        let mut rows: Vec<(u64, (u64, u64))> =
            faults.into_iter().zip(regions.iter().copied()).collect();
        rows.sort_by_key(|&(f, _)| std::cmp::Reverse(f));
        println!(
            "# t={:.1}s  {:>12}  {:>39}",
            t0.elapsed().as_secs_f64(),
            "FAULTS",
            "ADDR RANGE"
        );
        for (f, (s, e)) in rows.iter().take(args.top).filter(|(f, _)| *f > 0) {
            println!("{:>22}  {s:#018x}-{e:#018x}", f);
        }
        if args
            .duration
            .is_some_and(|d| t0.elapsed().as_secs_f64() >= d)
            || !crate::core::process_alive(args.pid)
        {
            break;
        }
    }
    Ok(())
}
