//! `damon report schemes`: the schemes (DAMOS) a recording applied and what they did.
//!
//! Per context: each scheme as set (action, access pattern, quota, apply interval) and its
//! stats when the recording ended (or, for the journal of one still running or killed, when
//! it was last flushed): regions and bytes tried and applied, and how many charge windows used
//! their quota up. damo's records have no schemes, and neither have recordings without
//! `--damos-action`.
use std::fmt::Write;

use serde::Serialize;

use super::{
    Input, Numbers, header,
    table::{Align, Table},
    to_json,
};
use crate::{
    core::Intervals,
    record::{Record, RecordBounds, RecordScheme},
};

/// The schemes of one context, as its first record carries them (all its records do).
#[derive(Debug, Serialize)]
pub struct ContextSchemes<'a> {
    pub kdamond_idx: usize,
    pub context_idx: usize,
    pub intervals: Option<Intervals>,
    pub schemes: &'a [RecordScheme],
}

/// The schemes of every context of `records` that had some, in order of first appearance.
pub fn context_schemes(records: &[Record]) -> Vec<ContextSchemes<'_>> {
    let mut out: Vec<ContextSchemes> = Vec::new();
    for r in records {
        let seen = out
            .iter()
            .any(|c| (c.kdamond_idx, c.context_idx) == (r.kdamond_idx, r.context_idx));
        if !seen && !r.schemes.is_empty() {
            out.push(ContextSchemes {
                kdamond_idx: r.kdamond_idx,
                context_idx: r.context_idx,
                intervals: r.intervals,
                schemes: &r.schemes,
            });
        }
    }
    out
}

/// `[min, max]` of a bound, each end shown by `show`, `max` for the largest value.
fn bounds(b: RecordBounds, show: impl Fn(u64) -> String) -> String {
    let end = |v: u64| {
        if v == u64::MAX {
            "max".to_string()
        } else {
            show(v)
        }
    };
    format!("[{}, {}]", end(b.min), end(b.max))
}

/// One line that says what a scheme selects and how much it may do.
pub fn scheme_settings(s: &RecordScheme, intervals: Option<&Intervals>, nums: Numbers) -> String {
    let access = match intervals {
        Some(i) => {
            let max = u64::from(i.max_nr_accesses().max(1));
            bounds(s.nr_accesses, |v| {
                format!("{} %", nums.real(v as f64 * 100.0 / max as f64))
            })
        }
        None => bounds(s.nr_accesses, |v| format!("{} samples", nums.count(v))),
    };
    let age = match intervals {
        Some(i) => bounds(s.age, |v| {
            nums.duration_label(v.saturating_mul(i.aggr_us).saturating_mul(1000))
        }),
        None => bounds(s.age, |v| format!("{} aggregations", nums.count(v))),
    };
    let quota = if s.quota_ms == 0 && s.quota_bytes == 0 {
        "none".to_string()
    } else {
        let mut parts = Vec::new();
        if s.quota_ms != 0 {
            parts.push(nums.duration_label(s.quota_ms.saturating_mul(1_000_000)));
        }
        if s.quota_bytes != 0 {
            parts.push(nums.bytes_label(s.quota_bytes));
        }
        let per = if s.quota_reset_interval_ms == u64::MAX {
            "in all".to_string()
        } else {
            format!(
                "per {}",
                nums.duration_label(s.quota_reset_interval_ms.saturating_mul(1_000_000))
            )
        };
        format!("{} {per}", parts.join(" and "))
    };
    let apply = if s.apply_interval_us == 0 {
        "every aggregation".to_string()
    } else {
        format!(
            "every {}",
            nums.duration_label(s.apply_interval_us.saturating_mul(1000))
        )
    };
    format!(
        "size {}, access rate {access}, age {age}; quota {quota}; applied {apply}",
        bounds(s.sz, |v| nums.bytes_label(v)),
    )
}

/// The stats table of `schemes`: one row each.
pub fn stats_table(schemes: &[RecordScheme], nums: Numbers) -> Table {
    let mut table = Table::new(&[
        ("SCHEME", Align::Right),
        ("ACTION", Align::Left),
        ("TRIED", Align::Right),
        ("TRIED BYTES", Align::Right),
        ("APPLIED", Align::Right),
        ("APPLIED BYTES", Align::Right),
        ("QUOTA EXCEEDED", Align::Right),
    ]);
    for s in schemes {
        table.push(vec![
            s.scheme_idx.to_string(),
            s.action.clone(),
            nums.count(s.stats.nr_tried),
            nums.bytes(s.stats.sz_tried),
            nums.count(s.stats.nr_applied),
            nums.bytes(s.stats.sz_applied),
            nums.count(s.stats.qt_exceeds),
        ]);
    }
    table
}

/// When the stats were read, after the start of the context's first snapshot.
fn stats_time(records: &[Record], c: &ContextSchemes, nums: Numbers) -> Option<String> {
    let start = records
        .iter()
        .filter(|r| (r.kdamond_idx, r.context_idx) == (c.kdamond_idx, c.context_idx))
        .filter_map(|r| r.snapshots.first().map(|s| s.start_ns))
        .min()?;
    let at = c.schemes.iter().map(|s| s.at_ns).max()?;
    Some(nums.duration_label(at.saturating_sub(start)))
}

pub fn render_text(input: &Input, nums: Numbers) -> String {
    let mut out = String::new();
    header::input_lines(&mut out, "schemes", input, nums);
    let contexts = context_schemes(input.records);
    if contexts.is_empty() {
        let _ = writeln!(
            out,
            "# no schemes: the recording applied none (give `damon record` --damos-action; \
             damo's records have none)"
        );
        return out;
    }
    for c in &contexts {
        let _ = writeln!(out, "#");
        let when = stats_time(input.records, c, nums)
            .map(|t| format!(", stats as of {t} after the first snapshot started"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# kdamond {} context {}: {} schemes{when}",
            c.kdamond_idx,
            c.context_idx,
            c.schemes.len()
        );
        for s in c.schemes {
            let _ = writeln!(
                out,
                "#   scheme {} {}: {}",
                s.scheme_idx,
                s.action,
                scheme_settings(s, c.intervals.as_ref(), nums)
            );
        }
        stats_table(c.schemes, nums).render(&mut out);
    }
    out
}

pub fn render_json(input: &Input) -> String {
    to_json(&input.json_doc("schemes", context_schemes(input.records)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordSchemeStats, RecordSnapshot};

    fn record(schemes: Vec<RecordScheme>) -> Record {
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
            schemes,
            snapshots: vec![RecordSnapshot {
                start_ns: 1_000_000_000,
                end_ns: 1_100_000_000,
                sample_us: None,
                regions: Vec::new(),
            }],
        }
    }

    fn scheme(nr_tried: u64) -> RecordScheme {
        RecordScheme {
            scheme_idx: 0,
            action: "pageout".into(),
            sz: RecordBounds {
                min: 0,
                max: u64::MAX,
            },
            nr_accesses: RecordBounds { min: 0, max: 0 },
            age: RecordBounds {
                min: 20,
                max: u64::MAX,
            },
            quota_ms: 0,
            quota_bytes: 10 << 20,
            quota_reset_interval_ms: 1000,
            apply_interval_us: 0,
            at_ns: 3_500_000_000,
            stats: RecordSchemeStats {
                nr_tried,
                sz_tried: 3 << 20,
                nr_applied: 2,
                sz_applied: 1 << 20,
                sz_ops_filter_passed: 0,
                qt_exceeds: 1,
            },
        }
    }

    #[test]
    fn shows_settings_and_stats_once_per_context() {
        let records = [record(vec![scheme(1234)]), record(vec![scheme(1234)])];
        let input = Input {
            name: "t.data",
            records: &records,
        };
        let text = render_text(&input, Numbers::default());
        assert!(
            text.contains(
                "# kdamond 0 context 0: 1 schemes, stats as of 2.5 s after the first snapshot started"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "#   scheme 0 pageout: size [0 B, max], access rate [0.00 %, 0.00 %], age [2 s, \
                 max]; quota 10 MiB per 1 s; applied every aggregation"
            ),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.contains("pageout ")).collect();
        assert_eq!(rows.len(), 1, "{text}");
        let cols: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(
            cols,
            ["0", "pageout", "1,234", "3", "MiB", "2", "1", "MiB", "1"]
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&input)).unwrap();
        assert_eq!(json["records"][0]["schemes"][0]["stats"]["nr_tried"], 1234);
    }

    #[test]
    fn says_when_there_are_none() {
        let records = [record(Vec::new())];
        let input = Input {
            name: "t.data",
            records: &records,
        };
        let text = render_text(&input, Numbers::default());
        assert!(text.contains("# no schemes"), "{text}");
    }
}
