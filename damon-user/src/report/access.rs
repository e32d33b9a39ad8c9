//! `damon report access`: the regions of one snapshot of each target.
use std::{fmt::Write, str::FromStr};

use serde::Serialize;

use super::{
    Input, Numbers, RecordId, ReportError, header,
    metrics::{access_hz, access_percent, age_us},
    table::{Align, Table},
    to_json,
};
use crate::record::{Record, RecordRegion, RecordSnapshot};

/// Order of the regions in the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Lowest address first: the memory map as it is.
    #[default]
    Address,
    /// Most accessed first: the hot regions.
    Access,
    /// Oldest first: the regions whose access rate has not changed for longest.
    Age,
}

impl FromStr for SortKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "address" => Ok(SortKey::Address),
            "access" => Ok(SortKey::Access),
            "age" => Ok(SortKey::Age),
            other => Err(format!(
                "unknown sort key {other:?}, expected address, access or age"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct AccessOptions {
    /// Index of the snapshot in each record; the last when `None`.
    pub snapshot: Option<usize>,
    pub sort: SortKey,
    pub nums: Numbers,
}

/// The chosen snapshot of a record and its index, or `None` for a record without snapshots.
fn chosen<'a>(
    idx: usize,
    record: &'a Record,
    opts: &AccessOptions,
) -> Result<Option<(usize, &'a RecordSnapshot)>, ReportError> {
    let n = record.snapshots.len();
    match opts.snapshot {
        None if n == 0 => Ok(None),
        None => Ok(Some((n - 1, &record.snapshots[n - 1]))),
        Some(i) if i < n => Ok(Some((i, &record.snapshots[i]))),
        Some(i) => Err(ReportError::NoSuchSnapshot {
            index: i,
            record: idx,
            nr_snapshots: n,
        }),
    }
}

fn sorted(regions: &[RecordRegion], key: SortKey) -> Vec<RecordRegion> {
    let mut regions = regions.to_vec();
    match key {
        SortKey::Address => regions.sort_by_key(|r| r.start),
        SortKey::Access => regions.sort_by_key(|r| (std::cmp::Reverse(r.nr_accesses), r.start)),
        SortKey::Age => regions.sort_by_key(|r| (std::cmp::Reverse(r.age), r.start)),
    }
    regions
}

/// The report as text: a header, then per record a summary and a table of regions.
pub fn render_text(input: &Input, opts: &AccessOptions) -> Result<String, ReportError> {
    let nums = opts.nums;
    let mut out = String::new();
    header::input_lines(&mut out, "access", input, nums);
    for (idx, record) in input.records.iter().enumerate() {
        header::record_lines(&mut out, idx, record, nums);
        let Some((sidx, snapshot)) = chosen(idx, record, opts)? else {
            continue;
        };
        let base = record.snapshots[0].start_ns;
        let total = snapshot.total_bytes();
        let wss = snapshot.working_set_bytes();
        let _ = writeln!(
            out,
            "#   snapshot {sidx}: {} - {} after the first one started",
            nums.duration_label(snapshot.start_ns.saturating_sub(base)),
            nums.duration_label(snapshot.end_ns.saturating_sub(base)),
        );
        let _ = writeln!(
            out,
            "#   regions: {}, monitored {}, working set {} ({}%)",
            nums.count(snapshot.regions.len() as u64),
            nums.bytes_label(total),
            nums.bytes_label(wss),
            nums.real(if total == 0 {
                0.0
            } else {
                wss as f64 * 100.0 / total as f64
            }),
        );
        // The snapshot's own intervals: tuned ones move from snapshot to snapshot.
        let intervals = snapshot.intervals(record);
        let i = intervals.as_ref();
        if let Some(i) = i.filter(|i| i.goal.enabled()) {
            let _ = writeln!(
                out,
                "#   tuned intervals: sample {}, aggr {} in this snapshot (goal: {} of the access events, every {} aggregations, sample {} to {})",
                nums.duration_label(i.sample_us * 1000),
                nums.duration_label(i.aggr_us * 1000),
                nums.ratio_bp(i.goal.access_bp),
                i.goal.aggrs,
                nums.duration_label(i.goal.min_sample_us * 1000),
                nums.duration_label(i.goal.max_sample_us * 1000),
            );
        }
        let max = i.map_or(1, |i| i.max_nr_accesses());
        let unmeasured: u64 = snapshot
            .regions
            .iter()
            .map(|r| r.unmeasured_bytes(max))
            .sum();
        if unmeasured > 0 {
            let regions = snapshot.regions.iter().filter(|r| r.nr_unmeasured > 0);
            let _ = writeln!(
                out,
                "#   unmeasured: {} in {} regions, counted as not accessed: their sampled pages \
                 were young and MADV_COLD cannot clear that (pages mapped by other processes too, \
                 not on an LRU list yet, mlocked, or in a large folio MADV_COLD would split)",
                nums.bytes_label(unmeasured),
                nums.count(regions.count() as u64),
            );
        }
        let _ = writeln!(out, "#");
        // Without intervals, age can only be told in aggregation intervals.
        let age_header = if i.is_some() {
            nums.age_header()
        } else {
            "AGE(aggr)"
        };
        let mut table = Table::new(&[
            ("ADDR RANGE", Align::Left),
            (nums.size_header(), Align::Right),
            ("NR_ACCESSES", Align::Right),
            ("ACCESS(%)", Align::Right),
            ("FREQ(Hz)", Align::Right),
            (age_header, Align::Right),
        ]);
        for r in sorted(&snapshot.regions, opts.sort) {
            let age = match i {
                Some(i) => nums.age_column(r.age.map(|a| age_us(a, i))),
                None => r.age.map_or("-".into(), |a| nums.count(u64::from(a))),
            };
            table.push(vec![
                nums.addr_range(r.start, r.end),
                nums.size_column(r.size()),
                nums.count(u64::from(r.nr_accesses)),
                i.map_or("-".into(), |i| nums.real(access_percent(r.nr_accesses, i))),
                i.map_or("-".into(), |i| nums.real(access_hz(r.nr_accesses, i))),
                age,
            ]);
        }
        table.render(&mut out);
    }
    Ok(out)
}

#[derive(Serialize)]
struct JsonRecord {
    #[serde(flatten)]
    id: RecordId,
    snapshot: Option<JsonSnapshot>,
}

#[derive(Serialize)]
struct JsonSnapshot {
    index: usize,
    start_ns: u64,
    end_ns: u64,
    total_bytes: u64,
    working_set_bytes: u64,
    /// Bytes whose samples could not be measured (see the text report).
    unmeasured_bytes: u64,
    regions: Vec<JsonRegion>,
}

#[derive(Serialize)]
struct JsonRegion {
    start: u64,
    end: u64,
    size: u64,
    nr_accesses: u32,
    access_percent: Option<f64>,
    access_hz: Option<f64>,
    age: Option<u32>,
    age_us: Option<u64>,
    nr_unmeasured: u32,
}

/// The same numbers as [`render_text`], as one JSON document.
pub fn render_json(input: &Input, opts: &AccessOptions) -> Result<String, ReportError> {
    let mut records = Vec::new();
    for (idx, record) in input.records.iter().enumerate() {
        let snapshot = chosen(idx, record, opts)?.map(|(sidx, s)| {
            let intervals = s.intervals(record);
            let i = intervals.as_ref();
            let max = i.map_or(1, |i| i.max_nr_accesses());
            JsonSnapshot {
                index: sidx,
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                total_bytes: s.total_bytes(),
                working_set_bytes: s.working_set_bytes(),
                unmeasured_bytes: s.regions.iter().map(|r| r.unmeasured_bytes(max)).sum(),
                regions: sorted(&s.regions, opts.sort)
                    .iter()
                    .map(|r| JsonRegion {
                        start: r.start,
                        end: r.end,
                        size: r.size(),
                        nr_accesses: r.nr_accesses,
                        access_percent: i.map(|i| access_percent(r.nr_accesses, i)),
                        access_hz: i.map(|i| access_hz(r.nr_accesses, i)),
                        age: r.age,
                        age_us: i.zip(r.age).map(|(i, a)| age_us(a, i)),
                        nr_unmeasured: r.nr_unmeasured,
                    })
                    .collect(),
            }
        });
        records.push(JsonRecord {
            id: RecordId::of(idx, record),
            snapshot,
        });
    }
    Ok(to_json(&input.json_doc("access", records)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Intervals;
    use crate::record::{Record, RecordRegion, RecordSnapshot};

    fn record(nr_unmeasured: u32) -> Record {
        let region = |start: u64, end: u64, nr_unmeasured| RecordRegion {
            start,
            end,
            nr_accesses: 0,
            age: Some(3),
            nr_unmeasured,
        };
        Record {
            kdamond_idx: 0,
            context_idx: 0,
            scheme_idx: None,
            target_id: Some(0),
            pid: Some(42),
            intervals: Some(Intervals {
                sample_us: 5_000,
                aggr_us: 100_000,
                update_us: 1_000_000,
                goal: Default::default(),
            }),
            data_source: "unknown".into(),
            nr_lost_snapshots: 0,
            schemes: Vec::new(),
            snapshots: vec![RecordSnapshot {
                start_ns: 0,
                end_ns: 100_000_000,
                sample_us: None,
                // 4 MiB unmeasured in half of its 20 samples, and 4 MiB measured.
                regions: vec![
                    region(0x10_0000, 0x50_0000, nr_unmeasured),
                    region(0x50_0000, 0x90_0000, 0),
                ],
            }],
        }
    }

    fn report(records: &[Record], json: bool) -> String {
        let input = Input {
            name: "test",
            records,
        };
        let opts = AccessOptions {
            snapshot: None,
            sort: SortKey::Address,
            nums: Numbers::new(true),
        };
        if json {
            render_json(&input, &opts).expect("json")
        } else {
            render_text(&input, &opts).expect("text")
        }
    }

    #[test]
    fn unmeasured_bytes_are_said_and_why() {
        let text = report(&[record(10)], false);
        assert!(
            text.contains("#   unmeasured: 2097152 B in 1 regions, counted as not accessed")
                && text.contains("MADV_COLD cannot clear"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&report(&[record(10)], true)).expect("json");
        let snap = &json["records"][0]["snapshot"];
        assert_eq!(snap["unmeasured_bytes"], 2 << 20, "{json}");
        assert_eq!(snap["regions"][0]["nr_unmeasured"], 10);
        // Nothing is said when everything was measured.
        assert!(!report(&[record(0)], false).contains("unmeasured"));
    }
}
