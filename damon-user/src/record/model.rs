//! The in-memory form of a record file: what damo calls `DamonRecord`s.
use serde::{Deserialize, Serialize};

use crate::core::{
    Intervals, RegionSnapshot, Snapshot, TargetSnapshot,
    scheme::{Bounds, Scheme, SchemeStats},
};

/// The aggregations of one target under one set of intervals, in time order.
///
/// damo keys records by kdamond, context, scheme, target and intervals; a change of any of
/// them starts a new record, so each record has one `intervals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kdamond_idx: usize,
    pub context_idx: usize,
    /// Set in damo's records made from DAMOS tried regions; our files leave it out.
    pub scheme_idx: Option<usize>,
    /// damo's target id. Ours is the target's index in its context; damo's trace-based
    /// records hold a kernel address here, and its snapshot-based ones nothing.
    pub target_id: Option<u64>,
    /// The monitored process, when the file says (our files do; damo's don't).
    pub pid: Option<i32>,
    /// Unknown in damo's old trace-based records; access rates in percent or Hz need them.
    pub intervals: Option<Intervals>,
    /// damo's `data_source`: "unknown" unless the record came from DAMON_STAT.
    pub data_source: String,
    /// Aggregations of this record's context that the recorder dropped, e.g. on a full buffer.
    pub nr_lost_snapshots: u64,
    /// The schemes (DAMOS) of this record's context and what they did; every record of the
    /// context carries them. Ours: damo's records have none.
    #[serde(default)]
    pub schemes: Vec<RecordScheme>,
    pub snapshots: Vec<RecordSnapshot>,
}

/// A scheme a recording applied, as set (its access pattern in the core's units: bytes,
/// samples per aggregation, aggregation intervals), and its running stats when last read
/// (`at_ns`, the recorder's clock): at the end of the recording, or, in the journal of one
/// still running or killed, at its latest flush.
///
/// Stored as serde writes it, in journals (`schemes` lines) and in damo files (our
/// `damon_schemes` key of each record, which damo ignores). A field added here needs
/// `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordScheme {
    pub scheme_idx: usize,
    /// The action's word; a word this build does not know is kept as it is.
    pub action: String,
    pub sz: RecordBounds,
    pub nr_accesses: RecordBounds,
    pub age: RecordBounds,
    pub quota_ms: u64,
    pub quota_bytes: u64,
    pub quota_reset_interval_ms: u64,
    pub apply_interval_us: u64,
    pub at_ns: u64,
    pub stats: RecordSchemeStats,
}

/// `[min, max]`, both inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBounds {
    pub min: u64,
    pub max: u64,
}

/// A scheme's running totals (the kernel's `struct damos_stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSchemeStats {
    pub nr_tried: u64,
    pub sz_tried: u64,
    pub nr_applied: u64,
    pub sz_applied: u64,
    #[serde(default)]
    pub sz_ops_filter_passed: u64,
    pub qt_exceeds: u64,
}

impl From<&SchemeStats> for RecordSchemeStats {
    fn from(s: &SchemeStats) -> Self {
        RecordSchemeStats {
            nr_tried: s.nr_tried,
            sz_tried: s.sz_tried,
            nr_applied: s.nr_applied,
            sz_applied: s.sz_applied,
            sz_ops_filter_passed: s.sz_ops_filter_passed,
            qt_exceeds: s.qt_exceeds,
        }
    }
}

impl RecordScheme {
    /// Scheme `scheme_idx` as set, with `stats` read at `at_ns`.
    pub fn of(scheme_idx: usize, scheme: &Scheme, stats: &SchemeStats, at_ns: u64) -> Self {
        let b = |b: Bounds| RecordBounds {
            min: b.min,
            max: b.max,
        };
        RecordScheme {
            scheme_idx,
            action: scheme.action.to_string(),
            sz: b(scheme.pattern.sz),
            nr_accesses: b(scheme.pattern.nr_accesses),
            age: b(scheme.pattern.age),
            quota_ms: scheme.quotas.ms,
            quota_bytes: scheme.quotas.bytes,
            quota_reset_interval_ms: scheme.quotas.reset_interval_ms,
            apply_interval_us: scheme.apply_interval_us,
            at_ns,
            stats: stats.into(),
        }
    }

    /// `schemes` with their `stats` (by index) read at `at_ns`.
    pub fn all(schemes: &[Scheme], stats: &[SchemeStats], at_ns: u64) -> Vec<Self> {
        schemes
            .iter()
            .zip(stats)
            .enumerate()
            .map(|(i, (s, st))| Self::of(i, s, st, at_ns))
            .collect()
    }
}

/// The regions of a target at the end of one aggregation interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSnapshot {
    /// Start and end of the aggregation, in nanoseconds of the recorder's clock.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The sample interval of this aggregation when the record's intervals are tuned
    /// (damo's `sample_interval_us`); `None`: the record's.
    #[serde(default)]
    pub sample_us: Option<u64>,
    pub regions: Vec<RecordRegion>,
}

/// One region: `[start, end)`, sampled accesses, and age in aggregation intervals.
///
/// The journal of a recording stores regions as serde writes this struct (see
/// `record/journal.rs`). A field added here needs `#[serde(default)]`, so that journals
/// written before it still read (as its default); readers older than the field ignore it.
/// For damo's files, it goes in `record/damo.rs` too, as one of our own keys (damo ignores
/// keys it does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRegion {
    pub start: u64,
    pub end: u64,
    pub nr_accesses: u32,
    /// Unknown in records of kernels whose trace events lack it.
    pub age: Option<u32>,
    /// Samples that could not be measured (young pages whose Accessed bit cannot be cleared
    /// from user space); they count as not accessed. 0 in files of other recorders.
    #[serde(default)]
    pub nr_unmeasured: u32,
}

impl RecordRegion {
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Bytes of the region whose samples could not be measured: its size times the share of
    /// its `max_nr_accesses` samples that were unmeasured.
    pub fn unmeasured_bytes(&self, max_nr_accesses: u32) -> u64 {
        let share = f64::from(self.nr_unmeasured) / f64::from(max_nr_accesses.max(1));
        (self.size() as f64 * share.min(1.0)) as u64
    }
}

impl From<&RegionSnapshot> for RecordRegion {
    fn from(r: &RegionSnapshot) -> Self {
        RecordRegion {
            start: r.start,
            end: r.end,
            nr_accesses: r.nr_accesses,
            age: Some(r.age),
            nr_unmeasured: r.nr_unmeasured,
        }
    }
}

/// A snapshot's own sample interval, for records whose intervals are tuned.
pub(crate) fn tuned_sample_us(i: &Intervals) -> Option<u64> {
    i.goal.enabled().then_some(i.sample_us)
}

impl RecordSnapshot {
    pub fn of_target(snapshot: &Snapshot, target: &TargetSnapshot) -> Self {
        RecordSnapshot {
            start_ns: snapshot.start_ns,
            end_ns: snapshot.end_ns,
            sample_us: tuned_sample_us(&snapshot.intervals),
            regions: target.regions.iter().map(RecordRegion::from).collect(),
        }
    }

    /// The intervals in force during this snapshot of `record`: the record's, or, when they
    /// are tuned, its own sample interval and the aggregation interval at the record's ratio.
    pub fn intervals(&self, record: &Record) -> Option<Intervals> {
        let i = record.intervals?;
        Some(match self.sample_us {
            Some(sample_us) if sample_us > 0 => Intervals {
                sample_us,
                aggr_us: sample_us.saturating_mul(u64::from(i.max_nr_accesses().max(1))),
                ..i
            },
            _ => i,
        })
    }

    /// Bytes in regions that were accessed at least once: DAMON's working set size.
    pub fn working_set_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| r.nr_accesses > 0)
            .map(RecordRegion::size)
            .sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.regions.iter().map(RecordRegion::size).sum()
    }
}

impl Record {
    /// An empty record for `target` of the context that produced `snapshot`.
    pub fn for_target(snapshot: &Snapshot, target: &TargetSnapshot) -> Self {
        Record {
            kdamond_idx: snapshot.kdamond_idx,
            context_idx: snapshot.context_idx,
            scheme_idx: None,
            target_id: Some(target.target_idx as u64),
            pid: Some(target.pid.get()),
            intervals: Some(snapshot.intervals),
            data_source: super::DATA_SOURCE_UNKNOWN.to_string(),
            nr_lost_snapshots: 0,
            schemes: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    /// Converts live snapshots to one record per target (and per change of intervals).
    pub fn from_snapshots(snapshots: &[Snapshot]) -> Vec<Record> {
        let mut writer = super::RecordWriter::new(super::RecordFormat::Json);
        for s in snapshots {
            writer.push(s);
        }
        writer.into_records()
    }
}
