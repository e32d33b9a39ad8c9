//! `damon report raw`: every region of every snapshot, one line each, for scripts.
//!
//! Lines starting with `#` are comments. Every other line has these space-separated decimal
//! integers, in this order (the order is stable; new fields will only be appended):
//!
//! | field | meaning |
//! | --- | --- |
//! | `record` | index of the record (target) in the file |
//! | `kdamond_idx` | kdamond that monitored the target |
//! | `context_idx` | context in that kdamond |
//! | `target_id` | damo's target id (ours: target index in the context), -1 if unknown |
//! | `pid` | monitored process, -1 if unknown |
//! | `snapshot` | index of the snapshot in the record |
//! | `start_ns` `end_ns` | the aggregation interval, recorder's clock |
//! | `start` `end` | the region, `[start, end)` |
//! | `nr_accesses` | samples that found the region accessed |
//! | `age` | aggregation intervals the access rate has held, -1 if unknown |
use std::fmt::Write;

use serde::Serialize;

use super::{Input, Numbers, RecordId, header, to_json};
use crate::record::RecordRegion;

/// The field names of a raw line, in order.
pub const FIELDS: [&str; 12] = [
    "record",
    "kdamond_idx",
    "context_idx",
    "target_id",
    "pid",
    "snapshot",
    "start_ns",
    "end_ns",
    "start",
    "end",
    "nr_accesses",
    "age",
];

fn or_unknown<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-1".to_string(), |v| v.to_string())
}

/// The report as text: `#` header lines, then one line per region per snapshot.
pub fn render_text(input: &Input) -> String {
    let mut out = String::new();
    header::input_lines(&mut out, "raw", input, Numbers::new(true));
    let _ = writeln!(out, "# fields: {}", FIELDS.join(" "));
    for (ridx, record) in input.records.iter().enumerate() {
        let prefix = format!(
            "{ridx} {} {} {} {}",
            record.kdamond_idx,
            record.context_idx,
            or_unknown(record.target_id),
            or_unknown(record.pid)
        );
        for (sidx, s) in record.snapshots.iter().enumerate() {
            for r in &s.regions {
                let _ = writeln!(
                    out,
                    "{prefix} {sidx} {} {} {} {} {} {}",
                    s.start_ns,
                    s.end_ns,
                    r.start,
                    r.end,
                    r.nr_accesses,
                    or_unknown(r.age)
                );
            }
        }
    }
    out
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    #[serde(flatten)]
    id: RecordId,
    snapshots: Vec<JsonSnapshot<'a>>,
}

#[derive(Serialize)]
struct JsonSnapshot<'a> {
    index: usize,
    start_ns: u64,
    end_ns: u64,
    regions: &'a [RecordRegion],
}

/// The same as one JSON document.
pub fn render_json(input: &Input) -> String {
    let records = input
        .records
        .iter()
        .enumerate()
        .map(|(idx, r)| JsonRecord {
            id: RecordId::of(idx, r),
            snapshots: r
                .snapshots
                .iter()
                .enumerate()
                .map(|(sidx, s)| JsonSnapshot {
                    index: sidx,
                    start_ns: s.start_ns,
                    end_ns: s.end_ns,
                    regions: &s.regions,
                })
                .collect(),
        })
        .collect();
    to_json(&input.json_doc("raw", records))
}
