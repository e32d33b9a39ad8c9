//! `damon report wss`: how the working set size is distributed over snapshots.
//!
//! Like damo's `report wss`: per target, the working set size of each snapshot (bytes in
//! regions accessed at least once), sorted, and read at percentiles.
use std::fmt::Write;

use serde::Serialize;

use super::{
    Input, Numbers, RecordId, header,
    table::{Align, Table},
    to_json,
};
use crate::record::Record;

#[derive(Clone, Copy, Debug)]
pub struct WssOptions {
    /// Percentiles from 0 to 100 in this step.
    pub step: u32,
    /// Columns for the bars; 0 for none.
    pub bar_width: usize,
    pub nums: Numbers,
}

impl Default for WssOptions {
    fn default() -> Self {
        WssOptions {
            step: 25,
            bar_width: 40,
            nums: Numbers::default(),
        }
    }
}

/// Working set sizes of the snapshots of `record`, sorted ascending.
pub fn sorted_wss(record: &Record) -> Vec<u64> {
    let mut sizes: Vec<u64> = record
        .snapshots
        .iter()
        .map(|s| s.working_set_bytes())
        .collect();
    sizes.sort_unstable();
    sizes
}

/// damo's `_damo_dist.get_percentile`: the value at `len * p / 100`, clamped to the last.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    let idx = (sorted.len() as u64 * u64::from(p) / 100) as usize;
    Some(sorted[idx.min(last)])
}

fn percentiles(step: u32) -> Vec<u32> {
    (0..=100)
        .step_by(step.clamp(1, 100) as usize)
        .chain([100])
        .fold(Vec::new(), |mut v, p| {
            if v.last() != Some(&p) {
                v.push(p);
            }
            v
        })
}

fn average(sorted: &[u64]) -> u64 {
    match sorted.len() {
        0 => 0,
        n => (sorted.iter().map(|&v| u128::from(v)).sum::<u128>() / n as u128) as u64,
    }
}

fn bar(value: u64, max: u64, width: usize) -> String {
    let filled = if max == 0 {
        0
    } else {
        (u128::from(value) * width as u128 / u128::from(max)) as usize
    };
    format!("|{}{}|", "*".repeat(filled), " ".repeat(width - filled))
}

/// The report as text: per record, a table of percentiles with bars.
pub fn render_text(input: &Input, opts: &WssOptions) -> String {
    let nums = opts.nums;
    let mut out = String::new();
    header::input_lines(&mut out, "wss", input, nums);
    for (idx, record) in input.records.iter().enumerate() {
        header::record_lines(&mut out, idx, record, nums);
        let sorted = sorted_wss(record);
        if sorted.is_empty() {
            let _ = writeln!(out, "#   no snapshots");
            let _ = writeln!(out, "#");
            continue;
        }
        let _ = writeln!(
            out,
            "#   average working set {}",
            nums.bytes_label(average(&sorted))
        );
        let _ = writeln!(out, "#");
        let values: Vec<(u32, u64)> = percentiles(opts.step)
            .into_iter()
            .filter_map(|p| Some((p, percentile(&sorted, p)?)))
            .collect();
        let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0);
        let mut table = Table::new(&[
            ("PERCENTILE", Align::Right),
            (if nums.raw { "WSS(B)" } else { "WSS(KiB)" }, Align::Right),
            ("", Align::Left),
        ]);
        for (p, v) in values {
            let bar = if opts.bar_width > 0 {
                bar(v, max, opts.bar_width)
            } else {
                String::new()
            };
            table.push(vec![p.to_string(), nums.size_column(v), bar]);
        }
        table.render(&mut out);
    }
    out
}

#[derive(Serialize)]
struct JsonRecord {
    #[serde(flatten)]
    id: RecordId,
    average_bytes: u64,
    percentiles: Vec<JsonPercentile>,
}

#[derive(Serialize)]
struct JsonPercentile {
    percentile: u32,
    wss_bytes: u64,
}

/// The same numbers as one JSON document.
pub fn render_json(input: &Input, opts: &WssOptions) -> String {
    let records = input
        .records
        .iter()
        .enumerate()
        .map(|(idx, r)| {
            let sorted = sorted_wss(r);
            JsonRecord {
                id: RecordId::of(idx, r),
                average_bytes: average(&sorted),
                percentiles: percentiles(opts.step)
                    .into_iter()
                    .filter_map(|p| {
                        Some(JsonPercentile {
                            percentile: p,
                            wss_bytes: percentile(&sorted, p)?,
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    to_json(&input.json_doc("wss", records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_damo() {
        let sorted = [10, 20, 30, 40];
        assert_eq!(percentile(&sorted, 0), Some(10));
        assert_eq!(percentile(&sorted, 25), Some(20));
        assert_eq!(percentile(&sorted, 50), Some(30));
        assert_eq!(percentile(&sorted, 100), Some(40));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn percentile_steps_always_end_at_100() {
        assert_eq!(percentiles(25), vec![0, 25, 50, 75, 100]);
        assert_eq!(percentiles(30), vec![0, 30, 60, 90, 100]);
        assert_eq!(percentiles(0), (0..=100).collect::<Vec<_>>());
    }

    #[test]
    fn bars_scale_to_the_largest() {
        assert_eq!(bar(5, 10, 4), "|**  |");
        assert_eq!(bar(0, 0, 2), "|  |");
    }
}
