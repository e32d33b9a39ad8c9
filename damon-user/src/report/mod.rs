//! Reports over records and live snapshots, in the manner of `perf report`.
//!
//! Each style renders into a `String`, so commands print it and tests compare it:
//!
//! - [`access`]: the regions of one snapshot per target, with access rate and age;
//! - [`heatmap`]: access frequency over time × address, as text or an image;
//! - [`wss`]: percentiles of the working set size over snapshots;
//! - [`raw`]: one line per region per snapshot, for scripts;
//! - [`schemes`]: the schemes (DAMOS) a recording applied and their stats;
//! - [`top`]: the live screens of `damon top`.
//!
//! Text output starts with `#` comment lines (input, targets, intervals, lost aggregations);
//! `--json` variants carry the same numbers as one JSON document.
pub mod access;
mod error;
pub mod fmt;
mod header;
pub mod heatmap;
mod metrics;
pub mod range;
pub mod raw;
pub mod schemes;
pub mod table;
pub mod top;
pub mod wss;

pub use error::ReportError;
pub use fmt::Numbers;
pub use metrics::{access_hz, access_percent, age_us};

use serde::Serialize;

use crate::{core::Intervals, record::Record};

/// What a report is about: the records of one file, and its name for the header.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub name: &'a str,
    pub records: &'a [Record],
}

impl Input<'_> {
    pub fn nr_snapshots(&self) -> usize {
        self.records.iter().map(|r| r.snapshots.len()).sum()
    }

    /// Lost aggregations: every record of a context carries the context's count, so count
    /// each context once.
    pub fn nr_lost_snapshots(&self) -> u64 {
        let mut seen: Vec<(usize, usize)> = Vec::new();
        let mut lost = 0;
        for r in self.records {
            if !seen.contains(&(r.kdamond_idx, r.context_idx)) {
                seen.push((r.kdamond_idx, r.context_idx));
                lost += r.nr_lost_snapshots;
            }
        }
        lost
    }
}

/// The JSON document of every style: what was read, then one entry per record.
#[derive(Debug, Serialize)]
pub struct JsonDoc<'a, R: Serialize> {
    pub style: &'static str,
    pub input: &'a str,
    pub nr_snapshots: usize,
    pub nr_lost_snapshots: u64,
    pub records: Vec<R>,
}

impl<'a> Input<'a> {
    /// The document of `style` over these records.
    pub fn json_doc<R: Serialize>(&self, style: &'static str, records: Vec<R>) -> JsonDoc<'a, R> {
        JsonDoc {
            style,
            input: self.name,
            nr_snapshots: self.nr_snapshots(),
            nr_lost_snapshots: self.nr_lost_snapshots(),
            records,
        }
    }
}

/// Who a record is about, for JSON outputs.
#[derive(Debug, Serialize)]
pub struct RecordId {
    pub record: usize,
    pub kdamond_idx: usize,
    pub context_idx: usize,
    pub target_id: Option<u64>,
    pub pid: Option<i32>,
    pub intervals: Option<Intervals>,
    pub nr_snapshots: usize,
    pub nr_lost_snapshots: u64,
}

impl RecordId {
    pub fn of(idx: usize, r: &Record) -> Self {
        RecordId {
            record: idx,
            kdamond_idx: r.kdamond_idx,
            context_idx: r.context_idx,
            target_id: r.target_id,
            pid: r.pid,
            intervals: r.intervals,
            nr_snapshots: r.snapshots.len(),
            nr_lost_snapshots: r.nr_lost_snapshots,
        }
    }
}

/// Serializes a report document; our types always serialize.
fn to_json<T: Serialize>(doc: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
