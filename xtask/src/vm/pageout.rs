//! DAMOS pageout, the kernel's and ours: the same scheme (page out what was not accessed for
//! 2 s) on a fresh `damon workload hotcold` each, with zram swap in the guest. From the
//! guest's `pageout-kernel` / `pageout-ours` lines and their series of the buffers' `Swap:`.
use anyhow::{Context, Result, bail};

use super::{
    checks,
    results::{Results, field},
};

/// How far apart the guest samples the buffers' Swap, in seconds: the resolution of the time
/// to 90 %.
pub const POLL_S: f64 = 0.5;
/// Ours passes when its bytes paged out of the cold buffer and its time to 90 % are within
/// this share of the kernel's, either way (the time also within one poll interval, its
/// resolution).
pub const WITHIN: f64 = 0.20;
/// Refaults of the hot buffer are judged loosely: ours may have at most this share of the hot
/// buffer's pages more than the kernel's.
pub const REFAULT_SLACK: f64 = 0.05;
const PAGE_KIB: u64 = 4;
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, 100 per second on x86.
const TICKS_PER_S: f64 = 100.0;

/// One monitor's run.
#[derive(Debug)]
pub struct Run {
    pub cold_kib: u64,
    pub hot_kib: u64,
    /// From the first write into the admin tree until `echo on > state` returned: for ours
    /// this includes loading its eBPF programs.
    pub setup_s: f64,
    /// How long it ran, from `on` to the last sample.
    pub secs: f64,
    /// Swap of the cold buffer at the end, KiB.
    pub cold_out_kib: u64,
    /// Swap of the hot buffer at the end, KiB.
    pub hot_out_kib: u64,
    /// From `on` until the first sample that shows any of the cold buffer swapped out: the
    /// monitoring until regions are old enough, without the pageout's own time.
    pub first_out_s: Option<f64>,
    /// From `on` until 90 % of the cold buffer was swapped out, interpolated between the two
    /// samples around it.
    pub to_90_s: Option<f64>,
    /// The workload's major faults during the run: the cold buffer is never touched again, so
    /// these are the hot buffer's refaults.
    pub refaults: u64,
    /// pswpout / pswpin deltas of the whole guest, in pages.
    pub pswpout: u64,
    pub pswpin: u64,
    /// The scheme's own `stats/sz_applied`, bytes.
    pub sz_applied: Option<u64>,
    /// CPU time (utime + stime) of the kdamond thread from `on` to the last sample.
    pub cpu_s: Option<f64>,
    /// Aggregations during the run, where they can be counted (the kernel's tracepoint).
    pub aggregations: Option<u64>,
}

impl Run {
    /// Mean length of an aggregation over the run, when they were counted.
    pub fn aggregation_ms(&self) -> Option<f64> {
        self.aggregations
            .filter(|&n| n > 0)
            .map(|n| self.secs * 1e3 / n as f64)
    }

    pub fn cold_out_pct(&self) -> f64 {
        self.cold_out_kib as f64 * 100.0 / self.cold_kib.max(1) as f64
    }
}

#[derive(Debug)]
pub struct Pageout {
    pub swap: String,
    pub kernel: Run,
    pub ours: Run,
}

/// The comparison, when the guest ran it (`None` when it skipped it, e.g. without zram).
pub fn parse(r: &Results) -> Option<Result<Pageout>> {
    if r.line("pageout-skip").is_some() {
        return None;
    }
    let swap = r.line("swap")?;
    Some((|| {
        if field(swap, "setup_rc") != Some("0") {
            bail!(
                "setting up zram swap in the guest failed: {}",
                checks::last_line(r.file("swap-setup"))
            );
        }
        Ok(Pageout {
            swap: format!(
                "zram {} MiB, {}",
                field(swap, "size_mib").unwrap_or("?"),
                field(swap, "algorithm").unwrap_or("?")
            ),
            kernel: run(r, "kernel").context("the kernel's DAMOS")?,
            ours: run(r, "ours").context("our DAMOS")?,
        })
    })())
}

fn run(r: &Results, who: &str) -> Result<Run> {
    let tag = format!("pageout-{who}");
    let line = r
        .line(&tag)
        .with_context(|| format!("no {tag} result (did the guest stop?)"))?;
    if let Some(what) = field(line, "failed") {
        bail!(
            "the run failed ({what}): {}",
            checks::last_line(r.file(&format!("{tag}-log")))
        );
    }
    if field(line, "setup_rc") != Some("0") {
        bail!(
            "writing the scheme failed: {}",
            checks::last_line(r.file(&format!("{tag}-setup")))
        );
    }
    let num = |k: &str| -> Result<u64> {
        field(line, k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k} in {tag}"))
    };
    let time = |k: &str| -> Result<f64> {
        field(line, k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k} in {tag}"))
    };
    let (t0, t_on) = (time("t0")?, time("t_on")?);
    let cold_kib = num("cold_kb")?;
    let series = series(r.file(&tag).context("no Swap series")?)?;
    let Some(&(t_end, cold_out_kib, hot_out_kib)) = series.last() else {
        bail!("the Swap series is empty");
    };
    Ok(Run {
        cold_kib,
        hot_kib: num("hot_kb")?,
        setup_s: t_on - t0,
        first_out_s: series
            .iter()
            .find(|(_, c, _)| *c > 0)
            .map(|(t, _, _)| t - t_on),
        to_90_s: crossing(&series, cold_kib as f64 * 0.9).map(|t| (t - t_on).max(0.0)),
        secs: t_end - t_on,
        cold_out_kib,
        hot_out_kib,
        refaults: num("majflt")?,
        pswpout: num("pswpout")?,
        pswpin: num("pswpin")?,
        sz_applied: field(line, "sz_applied").and_then(|v| v.parse().ok()),
        cpu_s: field(line, "cpu_ticks")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|t| t / TICKS_PER_S),
        aggregations: field(line, "aggregations").and_then(|v| v.parse().ok()),
    })
}

/// When the cold buffer's Swap first reached `level`, interpolated linearly between the
/// sample before and the one that shows it.
fn crossing(series: &[(f64, u64, u64)], level: f64) -> Option<f64> {
    let at = series.iter().position(|&(_, c, _)| c as f64 >= level)?;
    let (t1, c1, _) = series[at];
    let Some(&(t0, c0, _)) = at.checked_sub(1).and_then(|i| series.get(i)) else {
        return Some(t1);
    };
    let (c0, c1) = (c0 as f64, c1 as f64);
    Some(t0 + (t1 - t0) * (level - c0) / (c1 - c0))
}

/// `uptime cold_kib hot_kib` lines.
fn series(text: &str) -> Result<Vec<(f64, u64, u64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let parsed = match w.as_slice() {
                [t, c, h] => t.parse().ok().zip(c.parse().ok()).zip(h.parse().ok()),
                _ => None,
            };
            parsed
                .map(|((t, c), h)| (t, c, h))
                .with_context(|| format!("bad Swap sample {l:?}"))
        })
        .collect()
}

/// What keeps ours from being within [`WITHIN`] of the kernel's; empty when it is.
pub fn judge(p: &Pageout) -> Vec<String> {
    let (k, o) = (&p.kernel, &p.ours);
    let mut problems = Vec::new();
    let Some(k90) = k.to_90_s else {
        // Without the kernel reaching 90 % there is nothing to hold ours to: the guest's swap
        // or the scheme is not what the comparison assumes.
        problems.push(format!(
            "the kernel's DAMOS paged out only {:.0} % of the cold buffer in {:.0} s",
            k.cold_out_pct(),
            k.secs
        ));
        return problems;
    };
    let (kb, ob) = (k.cold_out_kib as f64, o.cold_out_kib as f64);
    if (ob - kb).abs() > WITHIN * kb {
        problems.push(format!(
            "pageout: ours paged out {:.1} MiB of the cold buffer, the kernel's {:.1} MiB (more than {:.0} % apart)",
            ob / 1024.0,
            kb / 1024.0,
            WITHIN * 100.0
        ));
    }
    match o.to_90_s {
        None => problems.push(format!(
            "pageout: ours never reached 90 % of the cold buffer ({:.0} % in {:.0} s; the kernel's in {k90:.1} s)",
            o.cold_out_pct(),
            o.secs
        )),
        Some(o90) if (o90 - k90).abs() > (WITHIN * k90).max(POLL_S) => problems.push(format!(
            "pageout: ours reached 90 % in {o90:.1} s, the kernel's in {k90:.1} s (more than {:.0} % apart)",
            WITHIN * 100.0
        )),
        Some(_) => {}
    }
    let slack = (REFAULT_SLACK * (k.hot_kib / PAGE_KIB) as f64).ceil() as u64;
    if o.refaults > k.refaults + slack {
        problems.push(format!(
            "pageout: the hot buffer refaulted {} times under ours, {} under the kernel's (slack {slack})",
            o.refaults, k.refaults
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(kernel_series: &str, ours_series: &str, ours_majflt: u64) -> String {
        format!(
            "@@vm swap setup_rc=0 algorithm=lz4 size_mib=256\n\
             @@vm pageout-kernel setup_rc=0 t0=99.90 t_on=100.00 t1=104.50 cold_kb=65536 hot_kb=8192 pswpout=16384 pswpin=2 majflt=1 sz_applied=67108864 pid=90 cpu_ticks=150 aggregations=45\n\
             @@vm begin pageout-kernel\n{kernel_series}\n@@vm end pageout-kernel\n\
             @@vm pageout-ours setup_rc=0 t0=197.00 t_on=200.00 t1=206.00 cold_kb=65536 hot_kb=8192 pswpout=16384 pswpin=0 majflt={ours_majflt} sz_applied=none pid=91\n\
             @@vm begin pageout-ours\n{ours_series}\n@@vm end pageout-ours\n"
        )
    }

    const KERNEL: &str = "100.01 0 0\n101.50 0 0\n103.00 30000 0\n104.50 65000 0";

    #[test]
    fn parses_both_runs() {
        let r = Results::parse(&guest(KERNEL, "200.00 0 0\n204.00 60000 4\n", 3));
        let p = parse(&r).expect("ran").expect("parsed");
        assert_eq!(p.swap, "zram 256 MiB, lz4");
        assert_eq!(p.kernel.cold_out_kib, 65000);
        // 90 % of 65536 KiB is crossed 28982.4 / 35000 of the way from 103.0 to 104.5.
        let k90 = 3.0 + 1.5 * 28_982.4 / 35_000.0;
        assert!((p.kernel.to_90_s.unwrap() - k90).abs() < 1e-9);
        assert!((p.kernel.secs - 4.5).abs() < 1e-9);
        assert!((p.kernel.setup_s - 0.1).abs() < 1e-9);
        assert!((p.kernel.first_out_s.unwrap() - 3.0).abs() < 1e-9);
        assert!((p.ours.setup_s - 3.0).abs() < 1e-9);
        assert_eq!(p.kernel.sz_applied, Some(64 << 20));
        assert_eq!(p.ours.sz_applied, None);
        assert_eq!(p.kernel.cpu_s, Some(1.5));
        assert_eq!(p.ours.cpu_s, None);
        assert_eq!(p.kernel.aggregation_ms(), Some(100.0));
        assert_eq!(p.ours.aggregation_ms(), None);
        assert_eq!(p.ours.hot_out_kib, 4);
        assert_eq!(p.ours.refaults, 3);
        assert_eq!(p.kernel.pswpin, 2);
        assert!((p.ours.to_90_s.unwrap() - 4.0 * 58_982.4 / 60_000.0).abs() < 1e-9);
        assert!(judge(&p).is_empty(), "{:?}", judge(&p));
    }

    #[test]
    fn crossing_interpolates() {
        let s = [(1.0, 0, 0), (2.0, 50, 0), (4.0, 100, 0)];
        assert_eq!(crossing(&s, 75.0), Some(3.0));
        assert_eq!(crossing(&s, 50.0), Some(2.0));
        assert_eq!(crossing(&s, 0.0), Some(1.0));
        assert_eq!(crossing(&s, 101.0), None);
    }

    #[test]
    fn ours_too_slow_or_short_fails() {
        let p = |ours: &str, majflt| parse(&Results::parse(&guest(KERNEL, ours, majflt))).unwrap();
        let slow = p("200.00 0 0\n205.00 40000 0\n209.00 65536 0", 0).unwrap();
        assert_eq!(judge(&slow).len(), 1, "{:?}", judge(&slow));
        let short = p("200.00 0 0\n230.00 30000 0", 0).unwrap();
        let problems = judge(&short);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("never reached 90 %"));
        // 5 % of 2048 hot pages is 103 pages of slack over the kernel's 1 refault.
        let ok = p("200.00 0 0\n204.00 65536 0", 104).unwrap();
        assert!(judge(&ok).is_empty(), "{:?}", judge(&ok));
        let thrash = p("200.00 0 0\n204.00 65536 0", 105).unwrap();
        assert!(judge(&thrash)[0].contains("refaulted 105 times"));
    }

    #[test]
    fn a_kernel_short_of_90_pct_fails_and_failures_are_reported() {
        let r = Results::parse(&guest("100.01 0 0\n130.00 1000 0", "200.00 65536 0", 0));
        let p = parse(&r).unwrap().unwrap();
        assert!(judge(&p)[0].contains("kernel's DAMOS paged out only 2 %"));
        let r = Results::parse(
            "@@vm swap setup_rc=1 algorithm=lz4 size_mib=256\n@@vm begin swap-setup\nswapon: Invalid argument\n@@vm end swap-setup\n",
        );
        let e = parse(&r).unwrap().unwrap_err();
        assert!(format!("{e:#}").contains("swapon: Invalid argument"));
        let r = Results::parse("@@vm swap setup_rc=0\n@@vm pageout-kernel failed=workload\n");
        assert!(parse(&r).unwrap().is_err());
        assert!(parse(&Results::parse("@@vm pageout-skip reason=no-zram\n")).is_none());
        assert!(parse(&Results::parse("@@vm done\n")).is_none());
    }
}
