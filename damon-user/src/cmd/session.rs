//! A live monitoring session shared by `damon record` and `damon top`: the monitoring
//! options, an optional command to start, one kdamond with the eBPF access check, and
//! clean-up of all of it on drop.
use std::{
    process::{Child, Command},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};

use super::{
    StopSignals,
    follow::Follower,
    schemes::{SchemeArgs, Units},
};
use crate::{
    access::{EbpfOpsOptions, FaultScope},
    bpf::{PerfSampler, PmuError, probe},
    core::{
        AddrRange, Attrs, ContextSpec, IntervalsGoal, KdamondExit, KdamondHandle, OpsId, Pid,
        Snapshot, TargetSpec,
        scheme::{Scheme, SchemeStats},
    },
    report::range::parse_address_range,
    runtime::{check_spec, check_target, start_ebpf_kdamond},
};

/// Monitoring options common to the live commands. Defaults are damo's, and so are the short
/// options and the long spellings given as aliases (`-s/--sample`, `-a/--aggr`, `-u/--updr`,
/// `-n/--minr`, `-m/--maxr`), so a damo user's `damo record -s 5000 -a 100000` works here.
#[derive(Debug, Clone, ClapArgs)]
pub struct MonitorArgs {
    /// Process to monitor (repeatable).
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<Pid>,
    /// Sampling interval: microseconds, or with a unit (`5ms`, `1s`).
    #[arg(short = 's', long, visible_alias = "sample", value_name = "US", default_value = "5000", value_parser = interval_us)]
    pub sample_us: u64,
    /// Aggregation interval: microseconds, or with a unit (`100ms`).
    #[arg(short = 'a', long, visible_alias = "aggr", value_name = "US", default_value = "100000", value_parser = interval_us)]
    pub aggr_us: u64,
    /// Operations update interval (how often regions follow the mappings): microseconds, or
    /// with a unit (`1s`).
    #[arg(short = 'u', long, visible_alias = "updr", value_name = "US", default_value = "1000000", value_parser = interval_us)]
    pub update_us: u64,
    /// Minimum number of regions.
    #[arg(
        short = 'n',
        long,
        visible_alias = "minr",
        value_name = "N",
        default_value_t = 10
    )]
    pub min_regions: u64,
    /// Maximum number of regions.
    #[arg(
        short = 'm',
        long,
        visible_alias = "maxr",
        value_name = "N",
        default_value_t = 1000
    )]
    pub max_regions: u64,
    /// Operations: vaddr (regions follow the mappings) or fvaddr (only the --range ranges).
    #[arg(long, value_name = "OPS", default_value = "vaddr", value_parser = parse_ops)]
    pub ops: OpsId,
    /// Address range to monitor with fvaddr, START-END (hex with 0x, or decimal; repeatable).
    #[arg(long = "range", value_name = "START-END", value_parser = parse_range)]
    pub ranges: Vec<AddrRange>,
    /// Which page faults count as an access: one on the sampled page (DAMON's meaning) or any
    /// in the region.
    #[arg(long, value_enum, default_value_t = FaultScopeArg::Sample)]
    pub fault_scope: FaultScopeArg,
    /// Also attribute sampled data addresses from a perf event: every page fault, or a PMU
    /// with data-address sampling (PEBS / IBS / SPE) where the machine has one.
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub perf_sampler: Option<SamplerArg>,
    /// Tune the sample and aggregation intervals towards an access goal, as Linux 6.15's
    /// intervals_goal: the share of the maximum access events to observe, the aggregations
    /// between tunings, and the bounds of the sample interval; e.g. `4% 3 5ms 10s` (or in bp
    /// and microseconds: `400 3 5000 10000000`). The ratio of the two intervals is kept.
    #[arg(
        long,
        num_args = 4,
        value_names = ["ACCESS_BP", "AGGRS", "MIN_SAMPLE", "MAX_SAMPLE"],
        alias = "monitoring_intervals_goal",
        conflicts_with = "autotune",
        allow_hyphen_values = true
    )]
    pub intervals_goal: Vec<String>,
    /// Tune the intervals with DAMON's recommended goal: 4 % of the access events, every 3
    /// aggregations, sample interval 5 ms to 10 s (damo's --monitoring_intervals_autotune).
    #[arg(long, alias = "monitoring_intervals_autotune")]
    pub autotune: bool,
    /// Seed of the sampling RNG (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also monitor the processes the targets fork, and theirs, from within one update
    /// interval of their start (as perf record follows children); those that exit are dropped.
    /// At most 32 processes in all. The recording goes on while any of them runs.
    #[arg(long)]
    pub follow_children: bool,
    /// Command to start and monitor until it exits.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub schemes: SchemeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    PageFaults,
    Pmu,
}

impl SamplerArg {
    pub fn resolve(self) -> Result<PerfSampler, PmuError> {
        match self {
            SamplerArg::PageFaults => Ok(PerfSampler::PageFaults),
            SamplerArg::Pmu => PerfSampler::detect_pmu(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FaultScopeArg {
    Sample,
    Region,
}

fn parse_ops(s: &str) -> Result<OpsId, String> {
    let ops: OpsId = s
        .parse()
        .map_err(|e: crate::core::CoreError| e.to_string())?;
    if !ops.is_supported() {
        return Err(crate::core::CoreError::UnsupportedOps { name: s.to_owned() }.to_string());
    }
    Ok(ops)
}

/// A share in basis points: `400`, `4%` or `4.5%`.
fn parse_bp(s: &str) -> Result<u64> {
    let bad = || {
        anyhow::anyhow!(
            "--intervals-goal ACCESS_BP {s:?} is not basis points or a percentage (400, 4%)"
        )
    };
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? * 100.0,
        None => s.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if !(v.is_finite() && v >= 0.0) {
        return Err(bad());
    }
    Ok(v.round() as u64)
}

/// A duration in microseconds: `5000`, `5000us`, `5ms`, `10s`.
fn parse_us(s: &str, what: &str) -> Result<u64> {
    duration_us(s).ok_or_else(|| {
        anyhow::anyhow!("--intervals-goal {what} {s:?} is not a duration (5000, 5ms, 10s)")
    })
}

/// An interval option's value: `5000`, `5000us`, `5ms`, `10s`.
fn interval_us(s: &str) -> Result<u64, String> {
    duration_us(s).ok_or_else(|| {
        format!("{s:?} is not a duration in microseconds or with a unit (5000, 5ms, 1s)")
    })
}

/// `s` in microseconds, or `None` when it is not a non-negative duration.
pub(crate) fn duration_us(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e6)
    } else {
        (t, 1.0)
    };
    let v = num.trim().parse::<f64>().ok()? * scale;
    (v.is_finite() && v >= 0.0 && v <= u64::MAX as f64).then(|| v.round() as u64)
}

/// `START-END`, parsed like `damon report --address-range`.
fn parse_range(s: &str) -> Result<AddrRange, String> {
    parse_address_range(s).map_err(|e| e.to_string())
}

impl MonitorArgs {
    /// The tuning goal asked for: none, `--autotune`, or `--intervals-goal`'s four values.
    pub fn intervals_goal(&self) -> Result<IntervalsGoal> {
        if self.autotune {
            return Ok(IntervalsGoal::AUTOTUNE);
        }
        let [bp, aggrs, min, max] = match self.intervals_goal.as_slice() {
            [] => return Ok(IntervalsGoal::default()),
            [a, b, c, d] => [a, b, c, d],
            other => bail!(
                "--intervals-goal takes 4 values (ACCESS_BP AGGRS MIN_SAMPLE MAX_SAMPLE), not {}",
                other.len()
            ),
        };
        let goal = IntervalsGoal {
            access_bp: parse_bp(bp)?,
            aggrs: aggrs.parse().map_err(|_| {
                anyhow::anyhow!("--intervals-goal AGGRS {aggrs:?} is not a whole number")
            })?,
            min_sample_us: parse_us(min, "MIN_SAMPLE")?,
            max_sample_us: parse_us(max, "MAX_SAMPLE")?,
        };
        if goal.aggrs == 0 {
            bail!("--intervals-goal AGGRS must be at least 1 (0 would turn the tuning off)");
        }
        Ok(goal)
    }

    pub fn attrs(&self) -> Result<Attrs> {
        Ok(Attrs {
            sample_us: self.sample_us,
            aggr_us: self.aggr_us,
            update_us: self.update_us,
            min_nr_regions: self.min_regions,
            max_nr_regions: self.max_regions,
            intervals_goal: self.intervals_goal()?,
        })
    }

    /// The schemes of the `--damos-*` options, their access rates and ages converted with the
    /// intervals given.
    pub fn schemes(&self) -> Result<Vec<Scheme>> {
        self.schemes.schemes(Units {
            sample_us: self.sample_us,
            aggr_us: self.aggr_us,
        })
    }

    /// Checks everything that can be checked before starting anything.
    pub fn validate(&self) -> Result<()> {
        if self.pids.is_empty() && self.command.is_empty() {
            bail!("nothing to monitor: give -p PID or -- COMMAND");
        }
        if self.ranges.len() > damon_common::MAX_REGIONS as usize {
            bail!(
                "{} --range values; at most {} (one region each)",
                self.ranges.len(),
                damon_common::MAX_REGIONS
            );
        }
        if self.ops == OpsId::Vaddr && !self.ranges.is_empty() {
            bail!("--range needs --ops fvaddr");
        }
        if self.ops == OpsId::Fvaddr && self.ranges.is_empty() {
            bail!("--ops fvaddr needs at least one --range");
        }
        let mut pids = self.pids.clone();
        if !self.command.is_empty() {
            pids.push(Pid(i32::MAX)); // the command's, not known before it starts: no pid is this
        }
        check_spec(&self.spec(&pids)?)?;
        self.schemes()?;
        for warning in self.schemes.misplaced() {
            log::warn!("{warning}");
        }
        Ok(())
    }

    fn spec(&self, pids: &[Pid]) -> Result<ContextSpec> {
        let mut ranges = self.ranges.clone();
        ranges.sort();
        Ok(ContextSpec {
            ops: self.ops,
            attrs: self.attrs()?,
            targets: pids
                .iter()
                .map(|&pid| TargetSpec {
                    pid,
                    ranges: ranges.clone(),
                })
                .collect(),
        })
    }
}

/// Most processes `--follow-children` monitors: the targets one context takes.
const MAX_FOLLOWED: usize = 32;

/// A running kdamond over the targets, and the command it started, if any. Dropping it stops
/// the kdamond and terminates the command.
pub struct Session {
    pub kdamond: KdamondHandle,
    pub snapshots: Receiver<Snapshot>,
    pub pids: Vec<Pid>,
    /// The schemes the kdamond applies.
    pub schemes: Vec<Scheme>,
    /// The schemes' stats as last read from the kdamond.
    last_stats: Option<Vec<SchemeStats>>,
    child: ChildGuard,
    /// With `--follow-children`: finds the targets' children, and the spec they go into.
    follow: Option<(Follower, ContextSpec)>,
}

/// The command we started: terminated (SIGTERM, then SIGKILL after 2 s) and reaped on drop.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if matches!(c.try_wait(), Ok(None)) {
                // SAFETY: kill(2) on the pid of a child we have not reaped yet.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let t = std::time::Instant::now();
                while matches!(c.try_wait(), Ok(None)) && t.elapsed().as_secs() < 2 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

impl Session {
    pub fn start(args: &MonitorArgs) -> Result<Session> {
        args.validate()?;
        let schemes = args.schemes()?;
        let missing = probe::check_kernel();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .into_iter()
                .map(|m| format!("  - {}", m.0))
                .collect();
            bail!(
                "this system lacks what monitoring needs:\n{}",
                list.join("\n")
            );
        }
        for &pid in &args.pids {
            check_target(pid, args.ops)?;
        }
        let mut pids = args.pids.clone();
        let mut child = ChildGuard(None);
        if let Some((prog, rest)) = args.command.split_first() {
            let c = Command::new(prog)
                .args(rest)
                .spawn()
                .with_context(|| format!("starting {prog}"))?;
            pids.push(Pid(c.id() as i32));
            child.0 = Some(c);
        }
        let opts = EbpfOpsOptions {
            fault_scope: match args.fault_scope {
                FaultScopeArg::Sample => FaultScope::SampledPage,
                FaultScopeArg::Region => FaultScope::Region,
            },
            perf_sampler: args.perf_sampler.map(SamplerArg::resolve).transpose()?,
        };
        let (tx, snapshots) = channel();
        let spec = args.spec(&pids)?;
        let follow = args.follow_children.then(|| {
            let every = Duration::from_micros(spec.attrs.update_us);
            (Follower::new(&pids, every, MAX_FOLLOWED), spec.clone())
        });
        let kdamond = start_ebpf_kdamond(0, spec, opts, tx, args.seed)?;
        if !schemes.is_empty() {
            kdamond
                .set_schemes(schemes.clone())
                .context("setting the schemes")?;
        }
        Ok(Session {
            kdamond,
            snapshots,
            pids,
            last_stats: None,
            schemes,
            child,
            follow,
        })
    }

    /// With `--follow-children`, when its update interval has passed: the targets' new
    /// children become targets, and the targets that exited go (a commit: targets that keep
    /// their index keep their regions).
    fn follow_children(&mut self) {
        let Some((follower, spec)) = &mut self.follow else {
            return;
        };
        let Some(pids) = follower.scan() else {
            return;
        };
        if pids.is_empty() {
            return;
        }
        let ranges = spec
            .targets
            .first()
            .map(|t| t.ranges.clone())
            .unwrap_or_default();
        spec.targets = pids
            .iter()
            .map(|&pid| TargetSpec {
                pid,
                ranges: ranges.clone(),
            })
            .collect();
        match self.kdamond.commit(spec.clone()) {
            Ok(()) => {
                log::info!(
                    "following children: monitoring {}",
                    pids.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                for &pid in &pids {
                    if !self.pids.contains(&pid) {
                        self.pids.push(pid);
                    }
                }
            }
            // A child that exited between the scan and the commit: the next scan retries.
            Err(e) => log::debug!("following children: {e}"),
        }
    }

    /// The schemes' running stats now; while the kdamond runs they are read from it, after
    /// it stopped they are the last read (by this or [`finish`](Self::finish)). `None`
    /// without schemes, or when none could be read.
    pub fn scheme_stats(&mut self) -> Option<&[SchemeStats]> {
        if self.schemes.is_empty() {
            return None;
        }
        if let Ok(now) = self.kdamond.schemes_now() {
            self.last_stats = Some(now.stats);
        }
        self.last_stats.as_deref()
    }

    /// Whether the command we started is still running (true when there is none).
    pub fn command_running(&mut self) -> bool {
        match &mut self.child.0 {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits up to 200 ms for the next aggregation, and says when the session is over: a stop
    /// signal, the `deadline`, the command's exit, or every target gone.
    pub fn next_event(&mut self, signals: &StopSignals, deadline: Option<Instant>) -> Event {
        if signals.received().is_some() {
            return Event::Ended("interrupted");
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Event::Ended("duration reached");
        }
        // Following children, the session lasts while any target runs.
        if !self.command_running() && self.follow.is_none() {
            return Event::Ended("command exited");
        }
        self.follow_children();
        // Aggregations wake this thread anyway; the timeout only bounds how late a signal or
        // the deadline is seen. Every wake-up costs (tens of microseconds in a VM).
        match self.snapshots.recv_timeout(Duration::from_millis(200)) {
            Ok(s) => return Event::Snapshot(s),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Event::Ended("every target exited"),
        }
        if self.kdamond.is_running() {
            Event::Idle
        } else {
            Event::Ended("every target exited")
        }
    }

    /// Reads the schemes' final stats (see [`scheme_stats`](Self::scheme_stats)), stops the
    /// kdamond, hands over the aggregations still queued, and returns why the kdamond had
    /// stopped by itself, if it had.
    pub fn finish(&mut self, mut each: impl FnMut(&Snapshot)) -> Option<KdamondExit> {
        // The final stats, while the kdamond can still tell them.
        self.scheme_stats();
        self.kdamond.stop();
        while let Ok(s) = self.snapshots.try_recv() {
            each(&s);
        }
        self.kdamond.exit()
    }
}

/// What [`Session::next_event`] saw.
pub enum Event {
    Snapshot(Snapshot),
    /// Nothing yet; ask again.
    Idle,
    /// The session is over, for this reason.
    Ended(&'static str),
}

impl Drop for Session {
    fn drop(&mut self) {
        // The kdamond first, so the command's exit is not seen as a vanished target mid-sample.
        self.kdamond.stop();
    }
}
