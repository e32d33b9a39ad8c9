//! The `#` comment lines that open every text report.
use std::fmt::Write;

use super::{Input, Numbers};
use crate::{core::Intervals, record::Record};

/// Input name, and totals over all records, lost aggregations included even when zero.
pub(crate) fn input_lines(out: &mut String, style: &str, input: &Input, nums: Numbers) {
    let _ = writeln!(out, "# damon report {style}: {}", input.name);
    let _ = writeln!(
        out,
        "# records: {}, snapshots: {}, lost: {}",
        nums.count(input.records.len() as u64),
        nums.count(input.nr_snapshots() as u64),
        nums.count(input.nr_lost_snapshots()),
    );
}

/// "sample 5 ms, aggr 100 ms, update 1 s"
pub(crate) fn intervals_text(intervals: Option<&Intervals>, nums: Numbers) -> String {
    match intervals {
        Some(i) => format!(
            "sample {}, aggr {}, update {}",
            nums.duration_label(i.sample_us * 1000),
            nums.duration_label(i.aggr_us * 1000),
            nums.duration_label(i.update_us * 1000)
        ),
        None => "unknown (access rates are shown in samples)".into(),
    }
}

/// "target 0 (pid 1234), kdamond 0, context 0"
pub(crate) fn target_text(record: &Record) -> String {
    let target = record
        .target_id
        .map_or_else(|| "target unknown".to_string(), |t| format!("target {t}"));
    let pid = record
        .pid
        .map_or_else(String::new, |p| format!(" (pid {p})"));
    format!(
        "{target}{pid}, kdamond {}, context {}",
        record.kdamond_idx, record.context_idx
    )
}

/// One record's identity, intervals, time span and counts.
pub(crate) fn record_lines(out: &mut String, idx: usize, record: &Record, nums: Numbers) {
    let _ = writeln!(out, "#");
    let _ = writeln!(out, "# record {idx}: {}", target_text(record));
    let _ = writeln!(
        out,
        "#   intervals: {}",
        intervals_text(record.intervals.as_ref(), nums)
    );
    let span = match (record.snapshots.first(), record.snapshots.last()) {
        (Some(first), Some(last)) => {
            nums.duration_label(last.end_ns.saturating_sub(first.start_ns))
        }
        _ => nums.duration_label(0),
    };
    let _ = writeln!(
        out,
        "#   snapshots: {} over {span}, lost: {}",
        nums.count(record.snapshots.len() as u64),
        nums.count(record.nr_lost_snapshots)
    );
}
