//! The kernel's DAMON and ours on the same workload, one after the other, side by side.
use anyhow::{Context, Result, bail};

use super::{
    checks::{self, MAX_NR_ACCESSES},
    initramfs::{
        AGGR_US, AUTOTUNE_SECS, MAX_REGIONS, MIN_REGIONS, PAGEOUT_AGE, PAGEOUT_COLD_MIB,
        PAGEOUT_HOT_MIB, PAGEOUT_SECS, SAMPLE_US, UPDATE_US,
    },
    pageout::{self, Pageout},
    regions::{self, Snapshot},
    results::{Results, field},
};

/// Aggregations in the first second are left out: both monitors start from a few regions
/// and split them over the first aggregations.
const WARMUP_S: f64 = 1.0;
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, 100 per second on x86.
const TICKS_PER_S: f64 = 100.0;

pub struct Metrics {
    pub hot: Option<f64>,
    pub cold: Option<f64>,
    pub wss_mib: f64,
    pub nr_regions: f64,
    /// Mean length of an aggregation, when the monitor reports it.
    pub aggregation_ms: Option<f64>,
    pub cpu_s: f64,
    pub cpu_pct: f64,
}

pub struct Row {
    pub kernel: String,
    pub release: String,
    pub kdamond: Metrics,
    pub ours: Metrics,
    /// CPU (% of a CPU) of a process that only wakes at the sampling rate: the floor of any
    /// monitor that samples from user space.
    pub floor_pct: Option<f64>,
    /// Both monitors with the same intervals goal, on kernels that have the tuning.
    pub tuned: Option<Tuned>,
    /// The kernel's DAMOS pageout and ours, when the guest could swap.
    pub pageout: Option<Result<Pageout>>,
}

impl Row {
    /// What fails the comparison although its numbers are there.
    pub fn problems(&self) -> Vec<String> {
        match &self.pageout {
            None => Vec::new(),
            Some(Ok(p)) => pageout::judge(p),
            Some(Err(e)) => vec![format!("pageout: {e:#}")],
        }
    }
}

/// The kernel's intervals auto-tuning and ours, same goal, same workload.
pub struct Tuned {
    pub kernel_sample_us: u64,
    pub ours_sample_us: u64,
    /// Share of the two buffers' bytes both call accessed, or both not, in their last
    /// aggregation.
    pub agreement: f64,
}

pub fn row(kernel: &str, release: &str, r: &Results) -> Result<Row> {
    let (hot, cold) = checks::buffers(r).context("the workload did not start")?;
    let start = r
        .line("kdamond-start")
        .context("the kernel's DAMON was not started")?;
    if field(start, "setup_rc") != Some("0") {
        bail!(
            "setting up the kernel's DAMON failed: {}",
            checks::last_line(r.file("kdamond-setup"))
        );
    }
    let kd = r
        .line("kdamond-done")
        .context("the kernel's DAMON did not finish its run")?;
    let kd_snaps = regions::from_tried_regions(
        r.file("kdamond")
            .context("no tried_regions from the kernel's DAMON")?,
    )?;
    let ours = r
        .line("ours")
        .context("our record for the comparison did not run")?;
    if field(ours, "rc").is_none() {
        bail!(
            "our record for the comparison did not start: {}",
            checks::last_line(r.file("ours-log"))
        );
    }
    let our_snaps =
        regions::from_record_json(r.file("ours").context("no record file from our run")?)?;
    Ok(Row {
        kernel: kernel.to_string(),
        release: release.to_string(),
        kdamond: metrics(&kd_snaps, hot, cold, kd).context("the kernel's DAMON")?,
        ours: metrics(&our_snaps, hot, cold, ours).context("damon record")?,
        floor_pct: r.line("floor").and_then(cpu_pct),
        tuned: tuned(r, hot, cold).transpose()?,
        pageout: pageout::parse(r),
    })
}

/// The auto-tuning comparison, when the guest ran it.
fn tuned(r: &Results, hot: (u64, u64), cold: (u64, u64)) -> Option<Result<Tuned>> {
    let k = r.line("autotune-kernel")?;
    Some((|| {
        if field(k, "setup_rc") != Some("0") {
            bail!(
                "setting up the kernel's tuning failed: {}",
                checks::last_line(r.file("kdamond-tuned-setup"))
            );
        }
        let kernel_sample_us: u64 = field(k, "sample_us")
            .and_then(|v| v.parse().ok())
            .context("no tuned sample interval from the kernel")?;
        let ours = r
            .line("autotune-ours")
            .context("our tuned record did not run")?;
        if field(ours, "rc") != Some("0") {
            bail!(
                "damon record --autotune failed: {}",
                checks::last_line(r.file("ours-tuned-log"))
            );
        }
        let text = r.file("ours-tuned").context("no tuned record file")?;
        let ours_sample_us = regions::last_sample_interval_us(text)?
            .context("our tuned record has no per-snapshot sample interval")?;
        let ks = regions::from_tried_regions(r.file("kdamond-tuned").context("no tuned regions")?)?;
        let os = regions::from_record_json(text)?;
        let (Some(kl), Some(ol)) = (ks.last(), os.last()) else {
            bail!("no regions to compare");
        };
        let agreement = regions::agreement(&kl.regions, &ol.regions, &[hot, cold]);
        Ok(Tuned {
            kernel_sample_us,
            ours_sample_us,
            agreement,
        })
    })())
}

/// `cpu_ticks` over `t1 - t0` of a result line, in % of a CPU.
fn cpu_pct(line: &str) -> Option<f64> {
    let num = |k: &str| field(line, k).and_then(|v| v.parse::<f64>().ok());
    let secs = num("t1")? - num("t0")?;
    (secs > 0.0).then(|| num("cpu_ticks").map(|t| t / TICKS_PER_S / secs * 100.0))?
}

fn metrics(snaps: &[Snapshot], hot: (u64, u64), cold: (u64, u64), line: &str) -> Result<Metrics> {
    let used: Vec<&Snapshot> = snaps
        .iter()
        .filter(|s| s.t > WARMUP_S && !s.regions.is_empty())
        .collect();
    if used.is_empty() {
        bail!(
            "no snapshot after the first second ({} in all)",
            snaps.len()
        );
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let num = |k: &str| field(line, k).and_then(|v| v.parse::<f64>().ok());
    let ticks = num("cpu_ticks").context("no CPU time")?;
    let secs = num("t1")
        .zip(num("t0"))
        .map(|(a, b)| a - b)
        .filter(|s| *s > 0.0)
        .context("no monitoring period")?;
    let cpu_s = ticks / TICKS_PER_S;
    Ok(Metrics {
        hot: mean(
            used.iter()
                .filter_map(|s| checks::rates(s, hot, cold).0)
                .collect(),
        ),
        cold: mean(
            used.iter()
                .filter_map(|s| checks::rates(s, hot, cold).1)
                .collect(),
        ),
        wss_mib: mean(
            used.iter()
                .map(|s| regions::wss(&s.regions) as f64 / f64::from(1 << 20))
                .collect(),
        )
        .unwrap_or(0.0),
        nr_regions: mean(used.iter().map(|s| s.regions.len() as f64).collect()).unwrap_or(0.0),
        aggregation_ms: mean(
            used.iter()
                .filter_map(|s| s.aggregation_s.map(|a| a * 1e3))
                .collect(),
        ),
        cpu_s,
        cpu_pct: cpu_s / secs * 100.0,
    })
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.1}", x * 100.0))
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.0}"))
}

const MONITORS: [&str; 2] = ["kernel DAMON", "damon"];

fn monitors(r: &Row) -> [(&'static str, &Metrics); 2] {
    [(MONITORS[0], &r.kdamond), (MONITORS[1], &r.ours)]
}

/// The table as Markdown, with how it was measured.
pub fn markdown(rows: &[&Row], secs: u32) -> String {
    let mut s = format!(
        "Stock Debian kernels under qemu (TCG, 2 vCPUs, `pti=on`); `damon workload hotcold` with a 32 MiB \
         hot and a 96 MiB cold buffer on vCPU 1, the monitor on vCPU 0. The kernel's DAMON (vaddr through \
         its sysfs, a `stat` scheme, `update_schemes_tried_regions` once a second) ran for {secs} s, then \
         `damon record` for {secs} s on the same process, with the same attributes: sample {SAMPLE_US} us, \
         aggregation {AGGR_US} us, update {UPDATE_US} us, {MIN_REGIONS}-{MAX_REGIONS} regions. Rates are \
         nr_accesses / {MAX_NR_ACCESSES}, weighted by size over each buffer and averaged over the \
         aggregations after the first second; WSS is the size of the regions with nr_accesses > 0; \
         aggregation is how long one took (only ours reports it); CPU is utime+stime of the kdamond \
         thread, or of our process, over the run. The floor is a process that only sleeps \
         {SAMPLE_US} us in a loop, on the same vCPU, measured the same way: what waking at the \
         sampling rate costs in user space here.\n\n\
         | kernel | monitor | hot rate (%) | cold rate (%) | WSS (MiB) | nr_regions | aggregation (ms) | CPU (s) | CPU (% of a CPU) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        for (who, m) in monitors(r) {
            s.push_str(&format!(
                "| {} ({}) | {who} | {} | {} | {:.1} | {:.1} | {} | {:.2} | {:.1} |\n",
                r.kernel,
                r.release,
                pct(m.hot),
                pct(m.cold),
                m.wss_mib,
                m.nr_regions,
                ms(m.aggregation_ms),
                m.cpu_s,
                m.cpu_pct
            ));
        }
        if let Some(f) = r.floor_pct {
            s.push_str(&format!(
                "| {} ({}) | floor: wake every {SAMPLE_US} us | | | | | | | {f:.1} |\n",
                r.kernel, r.release
            ));
        }
    }
    let tuned: Vec<(&&Row, &Tuned)> = rows
        .iter()
        .filter_map(|r| r.tuned.as_ref().map(|t| (r, t)))
        .collect();
    if !tuned.is_empty() {
        s.push_str(&format!(
            "\nIntervals auto-tuning, where the kernel has it: the same goal for both (4 % of the \
             access events, every 3 aggregations, sample 5 ms to 10 s), {AUTOTUNE_SECS} s each; the \
             tuned sample interval at the end, and the share of the two buffers' bytes both call \
             accessed (or both not) in their last aggregation.\n\n\
             | kernel | kernel DAMON sample (us) | damon sample (us) | ratio | classification agreement (%) |\n\
             |---|---:|---:|---:|---:|\n"
        ));
        for (r, t) in tuned {
            s.push_str(&format!(
                "| {} ({}) | {} | {} | {:.2} | {:.1} |\n",
                r.kernel,
                r.release,
                t.kernel_sample_us,
                t.ours_sample_us,
                t.ours_sample_us as f64 / t.kernel_sample_us.max(1) as f64,
                t.agreement * 100.0
            ));
        }
    }
    let pageouts: Vec<(&&Row, &Pageout)> = rows
        .iter()
        .filter_map(|r| match &r.pageout {
            Some(Ok(p)) => Some((r, p)),
            _ => None,
        })
        .collect();
    if !pageouts.is_empty() {
        s.push_str(&format!(
            "\nDAMOS pageout, with zram swap in the guest: `damon workload hotcold` with hot \
             and cold buffers of {PAGEOUT_HOT_MIB} and {PAGEOUT_COLD_MIB} MiB, a fresh one under \
             each monitor; the same scheme written to the kernel's DAMON sysfs and to our \
             `damon fs` tree: one vaddr kdamond at the attributes above, action `pageout`, \
             nr_accesses 0-0, age {PAGEOUT_AGE}+ aggregations (2 s), no quota. Each ran until the \
             cold buffer was 99 % out or for {PAGEOUT_SECS} s. Setup is from the first write into the admin tree until \
             `echo on > state` returned (ours loads its eBPF programs then). Paged out is the \
             `Swap:` of the buffers' mappings (smaps) at the end; first out is from `on` until a \
             sample first showed some of the cold buffer out (the monitoring until regions are old \
             enough), time to 90 % from `on` until 90 % of it was out, sampled every {poll} s and \
             interpolated; refaults are the workload's \
             major faults during the run (the cold buffer is never touched again); pswpout and \
             pswpin are the guest's; kdamond CPU is utime+stime of the kdamond thread over the run; aggregation is the \
             run over the aggregations counted by the kernel's `damon:damon_aggregated` \
             tracepoint (ours has none). Ours passes within {within:.0} % of the kernel's on paged out \
             and time to 90 % (the time also within one sample), with at most {slack:.0} % of the \
             hot buffer's pages more refaults.\n\n\
             | kernel | swap | monitor | setup (s) | cold paged out (MiB) | cold out (%) | first out (s) | time to 90 % (s) | hot paged out (MiB) | hot refaults | pswpout (MiB) | pswpin (pages) | sz_applied (MiB) | run (s) | kdamond CPU (s) | aggregation (ms) | verdict |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            poll = pageout::POLL_S,
            within = pageout::WITHIN * 100.0,
            slack = pageout::REFAULT_SLACK * 100.0,
        ));
        for (r, p) in pageouts {
            let problems = pageout::judge(p);
            let verdict = if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join("; ")
            };
            for (who, run, v) in [
                (MONITORS[0], &p.kernel, ""),
                (MONITORS[1], &p.ours, verdict.as_str()),
            ] {
                s.push_str(&format!(
                    "| {} ({}) | {} | {who} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} | {} | {:.1} | {} | {} | {:.1} | {} | {} | {v} |\n",
                    r.kernel,
                    r.release,
                    p.swap,
                    run.setup_s,
                    run.cold_out_kib as f64 / 1024.0,
                    run.cold_out_pct(),
                    seconds(run.first_out_s),
                    seconds(run.to_90_s),
                    run.hot_out_kib as f64 / 1024.0,
                    run.refaults,
                    run.pswpout as f64 * 4.0 / 1024.0,
                    run.pswpin,
                    run.sz_applied
                        .map_or("-".into(), |b| format!("{:.1}", b as f64 / f64::from(1 << 20))),
                    run.secs,
                    run.cpu_s.map_or("-".into(), |c| format!("{c:.2}")),
                    ms(run.aggregation_ms()),
                ));
            }
        }
    }
    s
}

fn seconds(x: Option<f64>) -> String {
    x.map_or("never".into(), |x| format!("{x:.1}"))
}

/// The table for the terminal.
pub fn text(rows: &[&Row]) -> String {
    let mut s = format!(
        "{:<20} {:<13} {:>7} {:>8} {:>9} {:>10} {:>9} {:>7}\n",
        "KERNEL", "MONITOR", "HOT(%)", "COLD(%)", "WSS(MiB)", "NR_REGIONS", "AGGR(ms)", "CPU(%)"
    );
    for r in rows {
        for (who, m) in monitors(r) {
            s.push_str(&format!(
                "{:<20} {:<13} {:>7} {:>8} {:>9.1} {:>10.1} {:>9} {:>7.1}\n",
                r.kernel,
                who,
                pct(m.hot),
                pct(m.cold),
                m.wss_mib,
                m.nr_regions,
                ms(m.aggregation_ms),
                m.cpu_pct
            ));
        }
        if let Some(f) = r.floor_pct {
            s.push_str(&format!(
                "{:<20} {:<13} {:>7} {:>8} {:>9} {:>10} {:>9} {:>7.1}\n",
                r.kernel, "floor", "", "", "", "", "", f
            ));
        }
        if let Some(Ok(p)) = &r.pageout {
            for (who, run) in [("kernel DAMOS", &p.kernel), ("damon DAMOS", &p.ours)] {
                s.push_str(&format!(
                    "{:<20} pageout: {who}: setup {:.1} s, cold {:.1} MiB out ({:.0} %), first out {} s, 90 % in {} s, hot {:.1} MiB out, {} refaults, {:.1} s\n",
                    r.kernel,
                    run.setup_s,
                    run.cold_out_kib as f64 / 1024.0,
                    run.cold_out_pct(),
                    seconds(run.first_out_s),
                    seconds(run.to_90_s),
                    run.hot_out_kib as f64 / 1024.0,
                    run.refaults,
                    run.secs
                ));
            }
        }
        if let Some(t) = &r.tuned {
            s.push_str(&format!(
                "{:<20} autotune: kernel sample {} us, ours {} us, classification agreement {:.1} %\n",
                r.kernel,
                t.kernel_sample_us,
                t.ours_sample_us,
                t.agreement * 100.0
            ));
        }
    }
    s
}
