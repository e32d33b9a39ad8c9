//! What `/metrics` exposes: the latest snapshot of each target group reduced to per-process
//! summaries ([`summarize`]), kept in an [`Exporter`], and encoded as OpenMetrics text by
//! `prometheus-client` on each scrape ([`Exporter::encode`]).
//!
//! A fresh registry is built per scrape from the exporter's state: series of processes that
//! left and of groups that were removed simply are not written again, with no families to
//! prune. The exporter holds summaries, not regions, so a scrape costs the same however many
//! regions the kdamonds keep.
use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::AtomicU64,
};

use prometheus_client::{
    encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use super::targets::ProcInfo;
use crate::core::{
    Intervals, Pid, RegionSnapshot, Snapshot, scheme::SchemeStats, snapshot::working_set_bytes,
};

/// The idle ages reported: bytes not accessed for at least this many seconds.
pub const IDLE_AGES_S: [u64; 4] = [1, 10, 60, 120];

/// Access-frequency buckets, as percent of the samples of an aggregation that found a region
/// accessed: `0` is never, then the half-open ranges `(0, 25)`, `[25, 50)`, `[50, 75)`,
/// `[75, 100]`.
pub const FREQ_BUCKETS: [&str; 5] = ["0", "0-25", "25-50", "50-75", "75-100"];

/// One process's memory as one aggregation saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of the regions found accessed at least once (DAMON's working set).
    pub working_set: u64,
    /// Per [`IDLE_AGES_S`]: bytes of regions not accessed, for at least that long.
    pub idle: [u64; IDLE_AGES_S.len()],
    /// Per [`FREQ_BUCKETS`]: bytes of regions with that access frequency.
    pub by_freq: [u64; FREQ_BUCKETS.len()],
    pub regions: u64,
}

/// The index in [`FREQ_BUCKETS`] of `nr_accesses` out of `max`.
fn freq_bucket(nr_accesses: u32, max: u32) -> usize {
    if nr_accesses == 0 {
        return 0;
    }
    let pct = u64::from(nr_accesses) * 100 / u64::from(max.max(1));
    match pct {
        0..25 => 1,
        25..50 => 2,
        50..75 => 3,
        _ => 4,
    }
}

/// The summary of one target's regions. A region's age counts aggregation intervals, so its
/// idle time is `age * aggr`.
pub fn summarize(regions: &[RegionSnapshot], intervals: &Intervals) -> Summary {
    let max = intervals.max_nr_accesses();
    let mut s = Summary {
        working_set: working_set_bytes(regions),
        regions: regions.len() as u64,
        ..Summary::default()
    };
    for r in regions {
        s.by_freq[freq_bucket(r.nr_accesses, max)] += r.size();
        if r.nr_accesses == 0 {
            let idle_us = u64::from(r.age).saturating_mul(intervals.aggr_us);
            for (bytes, age_s) in s.idle.iter_mut().zip(IDLE_AGES_S) {
                if idle_us >= age_s * 1_000_000 {
                    *bytes += r.size();
                }
            }
        }
    }
    s
}

impl Summary {
    fn add(&mut self, o: &Summary) {
        self.working_set += o.working_set;
        self.regions += o.regions;
        self.idle.iter_mut().zip(o.idle).for_each(|(a, b)| *a += b);
        self.by_freq
            .iter_mut()
            .zip(o.by_freq)
            .for_each(|(a, b)| *a += b);
    }
}

/// One scheme of a group: its action and its kdamond's running stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemeState {
    pub action: &'static str,
    pub stats: SchemeStats,
}

/// What the exporter knows of one target group.
#[derive(Clone, Debug, Default)]
pub struct GroupState {
    /// The configured cgroup (empty when the group has none).
    pub cgroup: String,
    /// The processes monitored now.
    pub procs: BTreeMap<Pid, ProcInfo>,
    /// Processes the group selects beyond what one kdamond monitors.
    pub unmonitored: u64,
    /// The kdamond monitoring the group, when one runs.
    pub kdamond: Option<usize>,
    /// Snapshots received, and those superseded before they were summarized (the exporter
    /// fell behind and kept only the newest).
    pub snapshots: u64,
    pub lost: u64,
    /// Per process, the latest snapshot's summary.
    pub latest: BTreeMap<Pid, Summary>,
    /// The group's schemes, in config order, as of the latest refresh.
    pub schemes: Vec<SchemeState>,
}

/// The agent's own costs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AgentStats {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl AgentStats {
    /// This process's user + system CPU time and resident set, from `/proc/self`.
    pub fn now() -> AgentStats {
        // SAFETY: sysconf has no preconditions.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // utime and stime are fields 14 and 15; the command name before them may hold spaces.
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        let rss_pages: u64 = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        AgentStats {
            cpu_seconds: ticks as f64 / tick.max(1) as f64,
            rss_bytes: rss_pages.saturating_mul(page.max(1) as u64),
        }
    }
}

/// The state `/metrics` is built from: written by the supervisor (membership) and by the
/// snapshot drain (summaries), read by scrapes.
#[derive(Debug, Default)]
pub struct Exporter {
    groups: BTreeMap<String, GroupState>,
    by_kdamond: HashMap<usize, String>,
}

impl Exporter {
    /// Records group `name`'s membership and kdamond after a refresh. A group whose kdamond
    /// changed or stopped drops its summaries: they described other targets.
    pub fn set_group(
        &mut self,
        name: &str,
        cgroup: &str,
        procs: BTreeMap<Pid, ProcInfo>,
        unmonitored: u64,
        kdamond: Option<usize>,
    ) {
        let g = self.groups.entry(name.to_owned()).or_default();
        if g.kdamond != kdamond {
            if let Some(old) = g.kdamond {
                self.by_kdamond.remove(&old);
            }
            if let Some(new) = kdamond {
                self.by_kdamond.insert(new, name.to_owned());
            }
            g.latest.clear();
        }
        g.latest.retain(|pid, _| procs.contains_key(pid));
        g.cgroup = cgroup.to_owned();
        g.procs = procs;
        g.unmonitored = unmonitored;
        g.kdamond = kdamond;
    }

    /// Records group `name`'s scheme stats after a refresh (none while no kdamond runs).
    pub fn set_schemes(&mut self, name: &str, schemes: Vec<SchemeState>) {
        if let Some(g) = self.groups.get_mut(name) {
            g.schemes = schemes;
        }
    }

    /// Forgets group `name` (removed from the config).
    pub fn remove_group(&mut self, name: &str) {
        if let Some(g) = self.groups.remove(name)
            && let Some(k) = g.kdamond
        {
            self.by_kdamond.remove(&k);
        }
    }

    pub fn group(&self, name: &str) -> Option<&GroupState> {
        self.groups.get(name)
    }

    /// Takes in the snapshots received since the last call, oldest first: per group only the
    /// newest is summarized, the others are counted lost. Snapshots of a kdamond no group
    /// owns any more (stopped meanwhile) are dropped.
    pub fn ingest(&mut self, batch: Vec<Snapshot>) {
        let mut newest: HashMap<String, Snapshot> = HashMap::new();
        for s in batch {
            let Some(name) = self.by_kdamond.get(&s.kdamond_idx) else {
                continue;
            };
            let Some(g) = self.groups.get_mut(name) else {
                continue;
            };
            g.snapshots += 1;
            if newest.insert(name.clone(), s).is_some() {
                g.lost += 1;
            }
        }
        for (name, s) in newest {
            let Some(g) = self.groups.get_mut(&name) else {
                continue;
            };
            g.latest = s
                .targets
                .iter()
                .filter(|t| g.procs.contains_key(&t.pid))
                .map(|t| (t.pid, summarize(&t.regions, &s.intervals)))
                .collect();
        }
    }

    /// The OpenMetrics text of every group and process, and the agent's own costs.
    pub fn encode(&self, agent: AgentStats) -> Result<String, std::fmt::Error> {
        let mut reg = Registry::default();
        let m = Families::register(&mut reg);
        for (name, g) in &self.groups {
            let gl = GroupLabels {
                group: name.clone(),
                cgroup: g.cgroup.clone(),
            };
            m.group_processes
                .get_or_create(&gl)
                .set(g.procs.len() as i64);
            m.group_unmonitored
                .get_or_create(&gl)
                .set(clamp(g.unmonitored));
            m.group_up
                .get_or_create(&gl)
                .set(i64::from(g.kdamond.is_some()));
            m.group_snapshots.get_or_create(&gl).inc_by(g.snapshots);
            m.group_lost.get_or_create(&gl).inc_by(g.lost);
            for (i, sc) in g.schemes.iter().enumerate() {
                m.scheme.set(
                    &SchemeLabels {
                        group: name.clone(),
                        scheme: i as u64,
                        action: sc.action,
                    },
                    &sc.stats,
                );
            }
            if g.latest.is_empty() {
                continue;
            }
            let mut total = Summary::default();
            for (pid, s) in &g.latest {
                total.add(s);
                let info = g.procs.get(pid).cloned().unwrap_or_default();
                let pl = ProcLabels {
                    group: name.clone(),
                    cgroup: info.cgroup,
                    pid: pid.get(),
                    comm: info.comm,
                };
                m.proc.set(&pl, s);
            }
            m.group.set(&gl, &total);
        }
        let cpu = Counter::<f64, AtomicU64>::default();
        cpu.inc_by(agent.cpu_seconds);
        reg.register_with_unit(
            "process_cpu",
            "User and system CPU time of the damon serve agent",
            Unit::Seconds,
            cpu,
        );
        let rss = Gauge::<i64>::default();
        rss.set(clamp(agent.rss_bytes));
        reg.register_with_unit(
            "process_resident_memory",
            "Resident memory of the damon serve agent",
            Unit::Bytes,
            rss,
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg)?;
        Ok(out)
    }
}

/// The OpenMetrics text `om` in Prometheus's classic text format (0.0.4), for scrapers that
/// do not ask for OpenMetrics (`curl`, `promtool check metrics`): a counter family's
/// `# HELP` and `# TYPE` take the `_total` name its samples have, and the `# UNIT` and
/// `# EOF` lines, which that format lacks, are left out.
pub fn to_classic_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
    cgroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcLabels {
    group: String,
    cgroup: String,
    pid: i32,
    comm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemeLabels {
    group: String,
    /// The scheme's index in the group's `[[group.scheme]]` list.
    scheme: u64,
    action: &'static str,
}

/// The DAMOS counters of each scheme.
struct SchemeFamilies {
    tried_bytes: Family<SchemeLabels, Counter>,
    applied_bytes: Family<SchemeLabels, Counter>,
    tried_regions: Family<SchemeLabels, Counter>,
    applied_regions: Family<SchemeLabels, Counter>,
    quota_exceeded: Family<SchemeLabels, Counter>,
}

impl SchemeFamilies {
    fn register(reg: &mut Registry) -> Self {
        let f = SchemeFamilies {
            tried_bytes: Family::default(),
            applied_bytes: Family::default(),
            tried_regions: Family::default(),
            applied_regions: Family::default(),
            quota_exceeded: Family::default(),
        };
        reg.register_with_unit(
            "damon_scheme_tried",
            "Bytes of regions the scheme's access pattern selected (DAMOS sz_tried)",
            Unit::Bytes,
            f.tried_bytes.clone(),
        );
        reg.register_with_unit(
            "damon_scheme_applied",
            "Bytes the scheme's action was applied to (DAMOS sz_applied)",
            Unit::Bytes,
            f.applied_bytes.clone(),
        );
        reg.register(
            "damon_scheme_tried_regions",
            "Regions the scheme's access pattern selected (DAMOS nr_tried)",
            f.tried_regions.clone(),
        );
        reg.register(
            "damon_scheme_applied_regions",
            "Regions the scheme's action was applied to (DAMOS nr_applied)",
            f.applied_regions.clone(),
        );
        reg.register(
            "damon_scheme_quota_exceeded",
            "Quota charge windows that ended with the scheme's quota used up (DAMOS qt_exceeds)",
            f.quota_exceeded.clone(),
        );
        f
    }

    fn set(&self, l: &SchemeLabels, s: &SchemeStats) {
        self.tried_bytes.get_or_create(l).inc_by(s.sz_tried);
        self.applied_bytes.get_or_create(l).inc_by(s.sz_applied);
        self.tried_regions.get_or_create(l).inc_by(s.nr_tried);
        self.applied_regions.get_or_create(l).inc_by(s.nr_applied);
        self.quota_exceeded.get_or_create(l).inc_by(s.qt_exceeds);
    }
}

/// A level's labels and the idle age (the derive does not take generic types).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct WithIdle<L> {
    base: L,
    min_idle_seconds: u64,
}

impl<L: EncodeLabelSet> EncodeLabelSet for WithIdle<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.base.encode(encoder)?;
        ("min_idle_seconds", self.min_idle_seconds).encode(encoder.encode_label())
    }
}

/// A level's labels and the access-frequency bucket.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct WithFreq<L> {
    base: L,
    access_percent: &'static str,
}

impl<L: EncodeLabelSet> EncodeLabelSet for WithFreq<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.base.encode(encoder)?;
        ("access_percent", self.access_percent).encode(encoder.encode_label())
    }
}

/// The summary gauges of one level (group or process).
struct SummaryFamilies<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug> {
    working_set: Family<L, Gauge>,
    idle: Family<WithIdle<L>, Gauge>,
    freq: Family<WithFreq<L>, Gauge>,
    regions: Family<L, Gauge>,
}

impl<L> SummaryFamilies<L>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    fn register(reg: &mut Registry, level: &str, what: &str) -> Self {
        let f = SummaryFamilies {
            working_set: Family::default(),
            idle: Family::default(),
            freq: Family::default(),
            regions: Family::default(),
        };
        reg.register_with_unit(
            format!("damon_{level}_working_set"),
            format!("Bytes of {what} found accessed in the latest aggregation interval"),
            Unit::Bytes,
            f.working_set.clone(),
        );
        reg.register_with_unit(
            format!("damon_{level}_idle"),
            format!("Bytes of {what} not accessed for at least min_idle_seconds"),
            Unit::Bytes,
            f.idle.clone(),
        );
        reg.register_with_unit(
            format!("damon_{level}_access_frequency"),
            format!(
                "Bytes of {what} by the percent of samples that found them accessed in the latest aggregation interval"
            ),
            Unit::Bytes,
            f.freq.clone(),
        );
        reg.register(
            format!("damon_{level}_regions"),
            format!("Monitoring regions of {what}"),
            f.regions.clone(),
        );
        f
    }

    fn set(&self, labels: &L, s: &Summary) {
        self.working_set
            .get_or_create(labels)
            .set(clamp(s.working_set));
        for (age, bytes) in IDLE_AGES_S.iter().zip(s.idle) {
            let l = WithIdle {
                base: labels.clone(),
                min_idle_seconds: *age,
            };
            self.idle.get_or_create(&l).set(clamp(bytes));
        }
        for (bucket, bytes) in FREQ_BUCKETS.iter().zip(s.by_freq) {
            let l = WithFreq {
                base: labels.clone(),
                access_percent: bucket,
            };
            self.freq.get_or_create(&l).set(clamp(bytes));
        }
        self.regions.get_or_create(labels).set(clamp(s.regions));
    }
}

/// Every family of a scrape.
struct Families {
    group_processes: Family<GroupLabels, Gauge>,
    group_unmonitored: Family<GroupLabels, Gauge>,
    group_up: Family<GroupLabels, Gauge>,
    group_snapshots: Family<GroupLabels, Counter>,
    group_lost: Family<GroupLabels, Counter>,
    group: SummaryFamilies<GroupLabels>,
    proc: SummaryFamilies<ProcLabels>,
    scheme: SchemeFamilies,
}

impl Families {
    fn register(reg: &mut Registry) -> Families {
        let f = Families {
            group_processes: Family::default(),
            group_unmonitored: Family::default(),
            group_up: Family::default(),
            group_snapshots: Family::default(),
            group_lost: Family::default(),
            group: SummaryFamilies::register(reg, "group", "the group's processes"),
            proc: SummaryFamilies::register(reg, "process", "the process"),
            scheme: SchemeFamilies::register(reg),
        };
        reg.register(
            "damon_group_processes",
            "Processes of the group being monitored",
            f.group_processes.clone(),
        );
        reg.register(
            "damon_group_unmonitored_processes",
            "Processes the group selects beyond the 32 one kdamond monitors",
            f.group_unmonitored.clone(),
        );
        reg.register(
            "damon_group_up",
            "1 while a kdamond monitors the group, 0 when it has no process or could not start",
            f.group_up.clone(),
        );
        reg.register(
            "damon_group_snapshots",
            "Aggregation snapshots received from the group's kdamonds",
            f.group_snapshots.clone(),
        );
        reg.register(
            "damon_group_snapshots_lost",
            "Snapshots superseded by a newer one before the exporter summarized them",
            f.group_lost.clone(),
        );
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TargetSnapshot;

    const MIB: u64 = 1 << 20;

    fn region(start: u64, mib: u64, nr_accesses: u32, age: u32) -> RegionSnapshot {
        RegionSnapshot {
            start,
            end: start + mib * MIB,
            nr_accesses,
            age,
            nr_unmeasured: 0,
        }
    }

    fn intervals() -> Intervals {
        // 20 samples per aggregation of 100 ms.
        Intervals {
            sample_us: 5_000,
            aggr_us: 100_000,
            update_us: 1_000_000,
            goal: Default::default(),
        }
    }

    fn regions() -> Vec<RegionSnapshot> {
        vec![
            region(0, 4, 20, 3),           // hot: 100 %
            region(4 * MIB, 2, 5, 0),      // 25 %
            region(6 * MIB, 1, 1, 0),      // 5 %
            region(7 * MIB, 8, 0, 5),      // idle 0.5 s
            region(15 * MIB, 16, 0, 100),  // idle 10 s
            region(31 * MIB, 32, 0, 1300), // idle 130 s
        ]
    }

    #[test]
    fn summary_sorts_bytes_by_age_and_frequency() {
        let s = summarize(&regions(), &intervals());
        assert_eq!(s.working_set, 7 * MIB);
        assert_eq!(s.regions, 6);
        assert_eq!(s.idle, [48 * MIB, 48 * MIB, 32 * MIB, 32 * MIB]);
        assert_eq!(s.by_freq, [56 * MIB, MIB, 2 * MIB, 0, 4 * MIB]);
        let total: u64 = regions().iter().map(RegionSnapshot::size).sum();
        assert_eq!(s.by_freq.iter().sum::<u64>(), total);
    }

    #[test]
    fn freq_buckets_are_half_open() {
        assert_eq!(freq_bucket(0, 20), 0);
        assert_eq!(freq_bucket(1, 200), 1);
        assert_eq!(freq_bucket(4, 20), 1);
        assert_eq!(freq_bucket(5, 20), 2);
        assert_eq!(freq_bucket(10, 20), 3);
        assert_eq!(freq_bucket(15, 20), 4);
        assert_eq!(freq_bucket(20, 20), 4);
        assert_eq!(freq_bucket(3, 0), 4, "a zero maximum counts as one");
    }

    fn snapshot(kdamond_idx: usize, targets: &[(i32, Vec<RegionSnapshot>)]) -> Snapshot {
        Snapshot {
            kdamond_idx,
            context_idx: 0,
            start_ns: 0,
            end_ns: 100_000_000,
            intervals: intervals(),
            targets: targets
                .iter()
                .enumerate()
                .map(|(i, (pid, regions))| TargetSnapshot {
                    target_idx: i,
                    pid: Pid(*pid),
                    regions: regions.clone(),
                })
                .collect(),
        }
    }

    fn procs(pids: &[i32]) -> BTreeMap<Pid, ProcInfo> {
        pids.iter()
            .map(|&p| {
                (
                    Pid(p),
                    ProcInfo {
                        comm: format!("w{p}"),
                        cgroup: "/test".into(),
                    },
                )
            })
            .collect()
    }

    /// The value of the sample line starting with `series` (name and labels).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn exposition_has_group_and_process_series() {
        let mut e = Exporter::default();
        e.set_group("web", "/test", procs(&[10, 11]), 2, Some(7));
        e.ingest(vec![
            snapshot(7, &[(10, vec![region(0, 1, 0, 0)])]),
            snapshot(7, &[(10, regions()), (11, vec![region(0, 3, 10, 0)])]),
            snapshot(99, &[(10, regions())]), // no group's kdamond
        ]);
        let text = e
            .encode(AgentStats {
                cpu_seconds: 1.5,
                rss_bytes: 4096,
            })
            .expect("encode");
        let g = r#"{group="web",cgroup="/test"}"#;
        assert_eq!(
            value(&text, &format!("damon_group_working_set_bytes{g}")),
            Some((10 * MIB) as f64),
            "{text}"
        );
        let p10 = r#"{group="web",cgroup="/test",pid="10",comm="w10"}"#;
        assert_eq!(
            value(&text, &format!("damon_process_working_set_bytes{p10}")),
            Some((7 * MIB) as f64)
        );
        let p11 = r#"{group="web",cgroup="/test",pid="11",comm="w11"}"#;
        assert_eq!(
            value(&text, &format!("damon_process_working_set_bytes{p11}")),
            Some((3 * MIB) as f64)
        );
        let idle60 = r#"{group="web",cgroup="/test",min_idle_seconds="60"}"#;
        assert_eq!(
            value(&text, &format!("damon_group_idle_bytes{idle60}")),
            Some((32 * MIB) as f64)
        );
        let f50 = r#"{group="web",cgroup="/test",access_percent="50-75"}"#;
        assert_eq!(
            value(&text, &format!("damon_group_access_frequency_bytes{f50}")),
            Some((3 * MIB) as f64)
        );
        assert_eq!(value(&text, &format!("damon_group_regions{g}")), Some(7.0));
        assert_eq!(
            value(&text, &format!("damon_group_processes{g}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("damon_group_unmonitored_processes{g}")),
            Some(2.0)
        );
        assert_eq!(value(&text, &format!("damon_group_up{g}")), Some(1.0));
        assert_eq!(
            value(&text, &format!("damon_group_snapshots_total{g}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("damon_group_snapshots_lost_total{g}")),
            Some(1.0)
        );
        assert_eq!(value(&text, "process_cpu_seconds_total"), Some(1.5));
        assert_eq!(value(&text, "process_resident_memory_bytes"), Some(4096.0));
        assert!(text.contains("# TYPE damon_group_snapshots counter"));
        assert!(text.contains("# UNIT damon_group_working_set_bytes bytes"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn departed_processes_and_groups_leave_the_exposition() {
        let mut e = Exporter::default();
        e.set_group("a", "", procs(&[10, 11]), 0, Some(1));
        e.set_group("b", "", procs(&[20]), 0, Some(2));
        e.ingest(vec![
            snapshot(1, &[(10, regions()), (11, regions())]),
            snapshot(2, &[(20, regions())]),
        ]);
        let text = e.encode(AgentStats::default()).expect("encode");
        assert!(text.contains(r#"pid="11""#));
        assert!(text.contains(r#"group="b""#));
        // 11 exits; b is removed from the config.
        e.set_group("a", "", procs(&[10]), 0, Some(1));
        e.remove_group("b");
        let text = e.encode(AgentStats::default()).expect("encode");
        assert!(text.contains(r#"pid="10""#));
        assert!(!text.contains(r#"pid="11""#), "{text}");
        assert!(!text.contains(r#"group="b""#), "{text}");
        // b's kdamond is not a group's any more: its late snapshots are dropped.
        e.ingest(vec![snapshot(2, &[(20, regions())])]);
        assert!(e.group("b").is_none());
        // a's group empties: its kdamond stops, its summaries go.
        e.set_group("a", "", procs(&[]), 0, None);
        let text = e.encode(AgentStats::default()).expect("encode");
        assert!(!text.contains("damon_group_working_set_bytes{"), "{text}");
        assert_eq!(
            value(&text, r#"damon_group_up{group="a",cgroup=""}"#),
            Some(0.0)
        );
    }

    #[test]
    fn scheme_stats_are_counters_per_group_and_scheme() {
        let mut e = Exporter::default();
        e.set_group("a", "", procs(&[10]), 0, Some(1));
        let stats = SchemeStats {
            nr_tried: 3,
            sz_tried: 3 * MIB,
            nr_applied: 2,
            sz_applied: MIB,
            sz_ops_filter_passed: 0,
            qt_exceeds: 4,
        };
        e.set_schemes(
            "a",
            vec![
                SchemeState {
                    action: "stat",
                    stats,
                },
                SchemeState {
                    action: "pageout",
                    stats: SchemeStats::default(),
                },
            ],
        );
        let text = e.encode(AgentStats::default()).expect("encode");
        let s0 = r#"{group="a",scheme="0",action="stat"}"#;
        let s1 = r#"{group="a",scheme="1",action="pageout"}"#;
        for (name, v) in [
            ("damon_scheme_tried_bytes_total", 3 * MIB),
            ("damon_scheme_applied_bytes_total", MIB),
            ("damon_scheme_tried_regions_total", 3),
            ("damon_scheme_applied_regions_total", 2),
            ("damon_scheme_quota_exceeded_total", 4),
        ] {
            assert_eq!(
                value(&text, &format!("{name}{s0}")),
                Some(v as f64),
                "{text}"
            );
            assert_eq!(value(&text, &format!("{name}{s1}")), Some(0.0), "{text}");
        }
        let classic = to_classic_text(&text);
        assert!(classic.contains("# TYPE damon_scheme_tried_bytes_total counter"));
        // A group without a kdamond has no scheme series.
        e.set_schemes("a", Vec::new());
        let text = e.encode(AgentStats::default()).expect("encode");
        assert!(!text.contains("damon_scheme_tried_bytes_total{"), "{text}");
    }

    #[test]
    fn classic_text_names_counters_by_their_samples() {
        let om = "# HELP a_bytes A.\n# TYPE a_bytes gauge\n# UNIT a_bytes bytes\na_bytes 1\n\
                  # HELP b B b.\n# TYPE b counter\nb_total{x=\"1\"} 2\n# EOF\n";
        assert_eq!(
            to_classic_text(om),
            "# HELP a_bytes A.\n# TYPE a_bytes gauge\na_bytes 1\n\
             # HELP b_total B b.\n# TYPE b_total counter\nb_total{x=\"1\"} 2\n"
        );
    }

    #[test]
    fn agent_stats_are_read() {
        let a = AgentStats::now();
        assert!(a.rss_bytes > 0);
        assert!(a.cpu_seconds >= 0.0);
    }
}
