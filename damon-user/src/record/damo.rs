//! damo's JSON layout of records (`_damo_records.py`, `DamonRecord.to_kvpairs(raw=True)`).
//!
//! A file is a JSON list of records:
//!
//! ```text
//! [{"kdamond_idx": 0, "context_idx": 0,
//!   "intervals": {"sample_us": "5000", "aggr_us": "100000", "ops_update_us": "1000000",
//!                 "intervals_goal": {...}},
//!   "scheme_idx": null, "target_id": 0, "scheme_filters": [],
//!   "snapshots": [{"start_time": "<ns>", "end_time": "<ns>",
//!                  "regions": [{"start": "<addr>", "end": "<addr>",
//!                               "nr_accesses": {"samples": 3, "percent": null},
//!                               "age": {"usec": null, "aggr_intervals": "2"}, ...}],
//!                  "total_bytes": "<bytes>", ...}],
//!   "data_source": "unknown",
//!   "pid": 1234, "nr_lost_snapshots": 0}]
//! ```
//!
//! `pid`, `nr_lost_snapshots` and `damon_schemes` (the context's schemes and their stats, see
//! [`RecordScheme`], only when it had schemes) are ours; damo ignores keys it does not know. We write what
//! damo's writer writes (numbers as digit strings, `nr_accesses.samples` as a number) and read
//! every variant damo reads: numbers or strings, separators, units, nulls for unknowns.
use std::{cell::RefCell, io};

use serde::{Deserialize, Serialize, Serializer, ser::Error as _, ser::SerializeSeq};

use super::{DecodeError, Record, RecordRegion, RecordScheme, RecordSnapshot, text::NumOrText};
use crate::core::{Intervals, IntervalsGoal};

const NS_PER_US: u64 = 1_000;

// ---- writing ----

#[derive(Serialize)]
struct OutRecord<'a, S> {
    kdamond_idx: usize,
    context_idx: usize,
    intervals: Option<OutIntervals>,
    scheme_idx: Option<usize>,
    target_id: Option<u64>,
    scheme_filters: [(); 0],
    snapshots: S,
    data_source: &'a str,
    pid: Option<i32>,
    nr_lost_snapshots: u64,
    /// Ours, written only when the context had schemes.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    damon_schemes: &'a [RecordScheme],
}

#[derive(Serialize)]
struct OutIntervals {
    sample_us: String,
    aggr_us: String,
    ops_update_us: String,
    intervals_goal: OutIntervalsGoal,
}

/// damo writes the intervals auto-tuning goal with every record (all zero: disabled), with
/// `access_bp` as a real number.
#[derive(Serialize)]
struct OutIntervalsGoal {
    access_bp: String,
    aggrs: String,
    min_sample_us: String,
    max_sample_us: String,
}

#[derive(Serialize)]
struct OutSnapshot {
    start_time: String,
    end_time: String,
    regions: Vec<OutRegion>,
    total_bytes: String,
    damos_stats: Option<()>,
    /// Set when the record's intervals are tuned.
    sample_interval_us: Option<String>,
}

#[derive(Serialize)]
struct OutRegion {
    start: String,
    end: String,
    nr_accesses: OutNrAccesses,
    age: OutAge,
    probe_hits: [(); 0],
    sz_filter_passed: &'static str,
    /// Ours (damo ignores keys it does not know), written only when not zero.
    #[serde(skip_serializing_if = "is_zero")]
    nr_unmeasured: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct OutNrAccesses {
    samples: u32,
    percent: Option<()>,
}

#[derive(Serialize)]
struct OutAge {
    usec: Option<()>,
    aggr_intervals: Option<String>,
}

/// `r`'s fields, with `snapshots` in place of its own.
fn out_record<S>(r: &Record, snapshots: S) -> OutRecord<'_, S> {
    OutRecord {
        kdamond_idx: r.kdamond_idx,
        context_idx: r.context_idx,
        intervals: r.intervals.map(|i| OutIntervals {
            sample_us: i.sample_us.to_string(),
            aggr_us: i.aggr_us.to_string(),
            ops_update_us: i.update_us.to_string(),
            intervals_goal: OutIntervalsGoal {
                access_bp: format!("{:.6}", i.goal.access_bp as f64),
                aggrs: i.goal.aggrs.to_string(),
                min_sample_us: i.goal.min_sample_us.to_string(),
                max_sample_us: i.goal.max_sample_us.to_string(),
            },
        }),
        scheme_idx: r.scheme_idx,
        target_id: r.target_id,
        scheme_filters: [],
        snapshots,
        data_source: &r.data_source,
        pid: r.pid,
        nr_lost_snapshots: r.nr_lost_snapshots,
        damon_schemes: &r.schemes,
    }
}

fn out_snapshot(s: &RecordSnapshot) -> OutSnapshot {
    OutSnapshot {
        start_time: s.start_ns.to_string(),
        end_time: s.end_ns.to_string(),
        regions: s
            .regions
            .iter()
            .map(|r| OutRegion {
                start: r.start.to_string(),
                end: r.end.to_string(),
                nr_accesses: OutNrAccesses {
                    samples: r.nr_accesses,
                    percent: None,
                },
                age: OutAge {
                    usec: None,
                    aggr_intervals: r.age.map(|a| a.to_string()),
                },
                probe_hits: [],
                sz_filter_passed: "0",
                nr_unmeasured: r.nr_unmeasured,
            })
            .collect(),
        total_bytes: s.total_bytes().to_string(),
        damos_stats: None,
        sample_interval_us: s.sample_us.map(|u| u.to_string()),
    }
}

/// Where the snapshots of the records being written come from: memory, or a journal read
/// once per record so that a recording of any length is written in constant memory.
pub(crate) trait SnapshotSource {
    /// Calls `each` with every snapshot of record `idx`, in order; the first error ends it.
    fn for_each(
        &mut self,
        idx: usize,
        each: &mut dyn FnMut(&RecordSnapshot) -> Result<(), String>,
    ) -> Result<(), String>;
}

impl SnapshotSource for &[Record] {
    fn for_each(
        &mut self,
        idx: usize,
        each: &mut dyn FnMut(&RecordSnapshot) -> Result<(), String>,
    ) -> Result<(), String> {
        self.get(idx)
            .map_or(&[][..], |r| &r.snapshots)
            .iter()
            .try_for_each(each)
    }
}

/// The snapshots of one record, pulled from the source while they are serialized.
struct Streamed<'s, 'a> {
    idx: usize,
    source: &'s RefCell<&'a mut dyn SnapshotSource>,
}

impl Serialize for Streamed<'_, '_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(None)?;
        let mut failed = None;
        let read = self
            .source
            .borrow_mut()
            .for_each(self.idx, &mut |snapshot| {
                seq.serialize_element(&out_snapshot(snapshot)).map_err(|e| {
                    let text = e.to_string();
                    failed = Some(e);
                    text
                })
            });
        if let Some(e) = failed {
            return Err(e);
        }
        read.map_err(S::Error::custom)?;
        seq.end()
    }
}

/// Writes records as damo's writer lays them out (a list, indented by four spaces): the
/// fields of `heads` (their own snapshots are not used) with the snapshots of `source`.
pub(crate) fn write_json<W: io::Write>(
    out: W,
    heads: &[Record],
    source: &mut dyn SnapshotSource,
) -> Result<(), serde_json::Error> {
    let source = RefCell::new(source);
    let records: Vec<_> = heads
        .iter()
        .enumerate()
        .map(|(idx, r)| {
            out_record(
                r,
                Streamed {
                    idx,
                    source: &source,
                },
            )
        })
        .collect();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(out, formatter);
    records.serialize(&mut ser)
}

// ---- reading ----

#[derive(Deserialize)]
struct InRecord {
    #[serde(default)]
    kdamond_idx: Option<NumOrText>,
    #[serde(default)]
    context_idx: Option<NumOrText>,
    #[serde(default)]
    intervals: Option<InIntervals>,
    #[serde(default)]
    scheme_idx: Option<NumOrText>,
    #[serde(default)]
    target_id: Option<NumOrText>,
    snapshots: Vec<InSnapshot>,
    #[serde(default)]
    data_source: Option<String>,
    #[serde(default)]
    pid: Option<i64>,
    #[serde(default)]
    nr_lost_snapshots: Option<u64>,
    #[serde(default)]
    damon_schemes: Option<Vec<RecordScheme>>,
}

#[derive(Deserialize)]
struct InIntervals {
    sample_us: NumOrText,
    aggr_us: NumOrText,
    ops_update_us: NumOrText,
    #[serde(default)]
    intervals_goal: Option<InIntervalsGoal>,
}

#[derive(Deserialize)]
struct InIntervalsGoal {
    access_bp: NumOrText,
    aggrs: NumOrText,
    min_sample_us: NumOrText,
    max_sample_us: NumOrText,
}

#[derive(Deserialize)]
struct InSnapshot {
    #[serde(default)]
    start_time: Option<NumOrText>,
    end_time: NumOrText,
    regions: Vec<InRegion>,
    #[serde(default)]
    sample_interval_us: Option<NumOrText>,
}

#[derive(Deserialize)]
struct InRegion {
    start: NumOrText,
    end: NumOrText,
    #[serde(default)]
    nr_accesses: Option<InNrAccesses>,
    #[serde(default)]
    age: Option<InAge>,
    #[serde(default)]
    nr_unmeasured: Option<NumOrText>,
}

/// damo stores `nr_accesses` with its unit; very old damo stored the bare sample count.
#[derive(Deserialize)]
#[serde(untagged)]
enum InNrAccesses {
    Units {
        #[serde(default)]
        samples: Option<NumOrText>,
        #[serde(default)]
        percent: Option<NumOrText>,
    },
    Bare(NumOrText),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InAge {
    Units {
        #[serde(default)]
        usec: Option<NumOrText>,
        #[serde(default)]
        aggr_intervals: Option<NumOrText>,
    },
    Bare(NumOrText),
}

/// Where in the file a value is, for error messages.
#[derive(Clone, Copy)]
struct Location {
    record: usize,
    snapshot: Option<usize>,
    region: Option<usize>,
}

impl Location {
    fn invalid(&self, field: &'static str, value: String, reason: &'static str) -> DecodeError {
        let mut location = format!("record {}", self.record);
        if let Some(s) = self.snapshot {
            location += &format!(", snapshot {s}");
        }
        if let Some(r) = self.region {
            location += &format!(", region {r}");
        }
        DecodeError::InvalidValue {
            location,
            field,
            value,
            reason,
        }
    }

    fn count(&self, field: &'static str, v: &NumOrText) -> Result<u64, DecodeError> {
        v.count()
            .ok_or_else(|| self.invalid(field, v.shown(), "is not a non-negative integer"))
    }

    fn bytes(&self, field: &'static str, v: &NumOrText) -> Result<u64, DecodeError> {
        v.bytes()
            .ok_or_else(|| self.invalid(field, v.shown(), "is not a non-negative integer"))
    }

    fn count_u32(&self, field: &'static str, v: &NumOrText) -> Result<u32, DecodeError> {
        let n = self.count(field, v)?;
        u32::try_from(n).map_err(|_| self.invalid(field, v.shown(), "is above 4294967295"))
    }

    fn index(
        &self,
        field: &'static str,
        v: &Option<NumOrText>,
    ) -> Result<Option<usize>, DecodeError> {
        v.as_ref()
            .map(|v| {
                let n = self.count(field, v)?;
                usize::try_from(n).map_err(|_| self.invalid(field, v.shown(), "is too large"))
            })
            .transpose()
    }

    fn duration_ns(
        &self,
        field: &'static str,
        v: &NumOrText,
        bare_unit_ns: u64,
    ) -> Result<u64, DecodeError> {
        v.duration_ns(bare_unit_ns)
            .ok_or_else(|| self.invalid(field, v.shown(), "is not a duration"))
    }
}

/// Parses the JSON text of a record file.
pub(crate) fn from_json(json: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let records: Vec<InRecord> =
        serde_json::from_slice(json).map_err(|source| DecodeError::Json { source })?;
    records
        .into_iter()
        .enumerate()
        .map(|(idx, r)| convert_record(idx, r))
        .collect()
}

fn convert_record(idx: usize, r: InRecord) -> Result<Record, DecodeError> {
    let at = Location {
        record: idx,
        snapshot: None,
        region: None,
    };
    let intervals = r
        .intervals
        .map(|i| -> Result<Intervals, DecodeError> {
            Ok(Intervals {
                sample_us: at.duration_ns("intervals.sample_us", &i.sample_us, NS_PER_US)?
                    / NS_PER_US,
                aggr_us: at.duration_ns("intervals.aggr_us", &i.aggr_us, NS_PER_US)? / NS_PER_US,
                update_us: at.duration_ns(
                    "intervals.ops_update_us",
                    &i.ops_update_us,
                    NS_PER_US,
                )? / NS_PER_US,
                goal: match &i.intervals_goal {
                    None => IntervalsGoal::default(),
                    Some(g) => IntervalsGoal {
                        access_bp: g.access_bp.real().filter(|v| *v >= 0.0).ok_or_else(|| {
                            at.invalid(
                                "intervals.intervals_goal.access_bp",
                                g.access_bp.shown(),
                                "is not a non-negative number",
                            )
                        })? as u64,
                        aggrs: at.count("intervals.intervals_goal.aggrs", &g.aggrs)?,
                        min_sample_us: at.duration_ns(
                            "intervals.intervals_goal.min_sample_us",
                            &g.min_sample_us,
                            NS_PER_US,
                        )? / NS_PER_US,
                        max_sample_us: at.duration_ns(
                            "intervals.intervals_goal.max_sample_us",
                            &g.max_sample_us,
                            NS_PER_US,
                        )? / NS_PER_US,
                    },
                },
            })
        })
        .transpose()?;
    let pid = r
        .pid
        .map(|p| i32::try_from(p).map_err(|_| at.invalid("pid", p.to_string(), "is not a pid")))
        .transpose()?;
    let mut snapshots: Vec<RecordSnapshot> = Vec::with_capacity(r.snapshots.len());
    for (sidx, s) in r.snapshots.into_iter().enumerate() {
        let at = Location {
            snapshot: Some(sidx),
            ..at
        };
        let previous_end = snapshots.last().map(|p| p.end_ns);
        snapshots.push(convert_snapshot(at, s, intervals, previous_end)?);
    }
    Ok(Record {
        // damo (3.4) takes a missing kdamond or context index as 0, too.
        kdamond_idx: at.index("kdamond_idx", &r.kdamond_idx)?.unwrap_or(0),
        context_idx: at.index("context_idx", &r.context_idx)?.unwrap_or(0),
        scheme_idx: at.index("scheme_idx", &r.scheme_idx)?,
        target_id: r
            .target_id
            .as_ref()
            .map(|t| at.count("target_id", t))
            .transpose()?,
        pid,
        intervals,
        data_source: r
            .data_source
            .unwrap_or_else(|| super::DATA_SOURCE_UNKNOWN.to_string()),
        nr_lost_snapshots: r.nr_lost_snapshots.unwrap_or(0),
        schemes: r.damon_schemes.unwrap_or_default(),
        snapshots,
    })
}

fn convert_snapshot(
    at: Location,
    s: InSnapshot,
    intervals: Option<Intervals>,
    previous_end: Option<u64>,
) -> Result<RecordSnapshot, DecodeError> {
    let end_ns = at.duration_ns("end_time", &s.end_time, 1)?;
    // damo leaves the start of a trace's only snapshot unknown (null).
    let start_ns = match &s.start_time {
        Some(t) => at.duration_ns("start_time", t, 1)?,
        None => previous_end
            .or_else(|| intervals.map(|i| end_ns.saturating_sub(i.aggr_us * NS_PER_US)))
            .ok_or_else(|| {
                at.invalid(
                    "start_time",
                    "null".into(),
                    "is unknown and so are the intervals",
                )
            })?,
    };
    if end_ns < start_ns {
        return Err(at.invalid("end_time", s.end_time.shown(), "is before start_time"));
    }
    let regions = s
        .regions
        .into_iter()
        .enumerate()
        .map(|(ridx, r)| {
            convert_region(
                Location {
                    region: Some(ridx),
                    ..at
                },
                r,
                intervals,
            )
        })
        .collect::<Result<_, _>>()?;
    let sample_us = s
        .sample_interval_us
        .as_ref()
        .map(|v| {
            at.duration_ns("sample_interval_us", v, NS_PER_US)
                .map(|ns| ns / NS_PER_US)
        })
        .transpose()?;
    Ok(RecordSnapshot {
        start_ns,
        end_ns,
        sample_us,
        regions,
    })
}

fn convert_region(
    at: Location,
    r: InRegion,
    intervals: Option<Intervals>,
) -> Result<RecordRegion, DecodeError> {
    let start = at.bytes("start", &r.start)?;
    let end = at.bytes("end", &r.end)?;
    if end < start {
        return Err(at.invalid("end", r.end.shown(), "is below start"));
    }
    let nr_accesses = match r.nr_accesses {
        None => return Err(at.invalid("nr_accesses", "null".into(), "is missing")),
        Some(InNrAccesses::Bare(n)) => at.count_u32("nr_accesses", &n)?,
        Some(InNrAccesses::Units {
            samples: Some(n), ..
        }) => at.count_u32("nr_accesses.samples", &n)?,
        Some(InNrAccesses::Units {
            samples: None,
            percent: Some(p),
        }) => samples_of_percent(at, &p, intervals)?,
        Some(InNrAccesses::Units {
            samples: None,
            percent: None,
        }) => {
            return Err(at.invalid(
                "nr_accesses",
                "null".into(),
                "has neither samples nor percent",
            ));
        }
    };
    let age = match r.age {
        None => None,
        Some(InAge::Bare(a)) => Some(at.count_u32("age", &a)?),
        Some(InAge::Units {
            aggr_intervals: Some(a),
            ..
        }) => Some(at.count_u32("age.aggr_intervals", &a)?),
        Some(InAge::Units {
            aggr_intervals: None,
            usec: Some(u),
        }) => match intervals {
            Some(i) if i.aggr_us > 0 => {
                let us = at.duration_ns("age.usec", &u, NS_PER_US)? / NS_PER_US;
                Some(u32::try_from(us / i.aggr_us).unwrap_or(u32::MAX))
            }
            _ => None,
        },
        Some(InAge::Units {
            aggr_intervals: None,
            usec: None,
        }) => None,
    };
    let nr_unmeasured = match r.nr_unmeasured {
        None => 0,
        Some(n) => at.count_u32("nr_unmeasured", &n)?,
    };
    Ok(RecordRegion {
        start,
        end,
        nr_accesses,
        age,
        nr_unmeasured,
    })
}

/// damo's `DamonNrAccesses.add_unset_unit`: `int(percent * (aggr / sample) / 100)`.
fn samples_of_percent(
    at: Location,
    percent: &NumOrText,
    intervals: Option<Intervals>,
) -> Result<u32, DecodeError> {
    let p = percent.real().ok_or_else(|| {
        at.invalid(
            "nr_accesses.percent",
            percent.shown(),
            "is not a percentage",
        )
    })?;
    let i = intervals.filter(|i| i.sample_us > 0).ok_or_else(|| {
        at.invalid(
            "nr_accesses.percent",
            percent.shown(),
            "cannot be turned into samples without intervals",
        )
    })?;
    let max = i.aggr_us as f64 / i.sample_us as f64;
    Ok((p * max / 100.0) as u32)
}
