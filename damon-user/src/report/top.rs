//! The screens of `damon top`: a live view over the most recent aggregations.
use std::fmt::Write;

use super::{
    Numbers,
    header::intervals_text,
    heatmap::{
        HeatmapOptions, TEXT_RESOLUTION,
        grid::{Grid, levels},
        grid_of,
        text::{PALETTE, RowWriter},
    },
    metrics::{access_hz, access_percent, age_us},
    table::{Align, Table},
};
use crate::{
    core::{Snapshot, TargetSnapshot, snapshot::working_set_bytes},
    record::{Record, RecordScheme},
};

/// Rows of the heat strip at most.
const MAX_STRIP_ROWS: usize = 8;
/// Lines below the target lines from which heat strips are shown.
const MIN_ROWS_FOR_STRIPS: usize = 12;

fn wss(target: &TargetSnapshot) -> (u64, u64) {
    let total = target.regions.iter().map(|r| r.size()).sum();
    (working_set_bytes(&target.regions), total)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// "scheme 0 pageout: tried 12 regions (1.5 MiB), applied 3 (512 KiB), quota exceeded 0 times"
fn scheme_line(s: &RecordScheme, nums: Numbers) -> String {
    format!(
        "scheme {} {}: tried {} regions ({}), applied {} ({}), quota exceeded {} times",
        s.scheme_idx,
        s.action,
        nums.count(s.stats.nr_tried),
        nums.bytes(s.stats.sz_tried),
        nums.count(s.stats.nr_applied),
        nums.bytes(s.stats.sz_applied),
        nums.count(s.stats.qt_exceeds)
    )
}

/// "kdamond 0 context 0: sample 5 ms, aggr 100 ms, update 1 s"
fn context_line(s: &Snapshot, nums: Numbers) -> String {
    format!(
        "kdamond {} context {}: {}",
        s.kdamond_idx,
        s.context_idx,
        intervals_text(Some(&s.intervals), nums)
    )
}

fn target_line(t: &TargetSnapshot, nums: Numbers) -> String {
    let (wss, total) = wss(t);
    format!(
        "target {} pid {}: WSS {} of {} ({}%), {} regions",
        t.target_idx,
        t.pid,
        nums.bytes(wss),
        nums.bytes(total),
        nums.real(percent(wss, total)),
        t.regions.len()
    )
}

/// The latest snapshot of each (kdamond, context) in `history`, in order of first appearance.
fn latest_per_context(history: &[Snapshot]) -> Vec<&Snapshot> {
    let mut latest: Vec<&Snapshot> = Vec::new();
    for s in history {
        match latest
            .iter_mut()
            .find(|l| (l.kdamond_idx, l.context_idx) == (s.kdamond_idx, s.context_idx))
        {
            Some(l) => *l = s,
            None => latest.push(s),
        }
    }
    latest
}

fn bar(fraction: f64, width: usize, colour: bool) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let bar = "#".repeat(filled);
    if colour && filled > 0 {
        let level = ((fraction * 9.0) as usize).min(9);
        format!("\x1b[38;5;{}m{bar}\x1b[0m", PALETTE[level])
    } else {
        bar
    }
}

/// Cuts `line` to `width` characters; colour codes do not count.
fn fit(line: &str, width: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for c in chars.by_ref() {
                out.push(c);
                if c == 'm' {
                    break;
                }
            }
            continue;
        }
        if shown == width {
            continue;
        }
        out.push(c);
        shown += 1;
    }
    out
}

/// The full-screen view: per context its targets with WSS, the hottest regions of the latest
/// aggregation with bars, and a heat strip of the recent aggregations of each target.
///
/// `history` holds the aggregations seen so far, oldest first; `schemes` the schemes of the
/// (one) context with their stats now, shown under its targets. The output has at most
/// `height` lines of at most `width` visible characters.
pub fn render_top(
    history: &[Snapshot],
    schemes: &[RecordScheme],
    width: u16,
    height: u16,
    colour: bool,
) -> String {
    let nums = Numbers::default();
    let (width, height) = (usize::from(width).max(20), usize::from(height).max(3));
    let mut lines: Vec<String> = Vec::new();
    let latest = latest_per_context(history);
    lines.push(format!(
        "damon top: {} aggregations, Ctrl-C to end",
        nums.count(history.len() as u64)
    ));
    if latest.is_empty() {
        lines.push("waiting for the first aggregation...".into());
    }
    for s in &latest {
        lines.push(context_line(s, nums));
        lines.extend(
            s.targets
                .iter()
                .map(|t| format!("  {}", target_line(t, nums))),
        );
    }
    if !latest.is_empty() {
        lines.extend(
            schemes
                .iter()
                .map(|s| format!("  {}", scheme_line(s, nums))),
        );
    }
    // The table of hottest regions comes first; heat strips get up to half of what is left,
    // and none on small screens.
    let avail = height.saturating_sub(lines.len());
    let strips: Vec<(String, Vec<String>)> = if avail >= MIN_ROWS_FOR_STRIPS {
        latest
            .iter()
            .flat_map(|s| s.targets.iter().map(move |t| (s, t)))
            .filter_map(|(s, t)| strip(history, s, t, width, colour))
            .collect()
    } else {
        Vec::new()
    };
    let strip_lines: usize = strips.iter().map(|(_, rows)| rows.len() + 1).sum();
    let table_rows = avail.saturating_sub(strip_lines.min(avail / 2) + 1);
    if table_rows >= 2 && !latest.is_empty() {
        lines.push(String::new());
        lines.extend(hottest_table(&latest, table_rows, width, colour));
    }
    for (title, rows) in strips {
        // A title and at least two rows, or nothing.
        if lines.len() + 3 > height {
            break;
        }
        lines.push(title);
        let fit_rows = height - lines.len();
        let skip = rows.len().saturating_sub(fit_rows);
        lines.extend(rows.into_iter().skip(skip));
    }
    lines.truncate(height);
    let mut out = String::new();
    for l in lines {
        let _ = writeln!(out, "{}", fit(&l, width).trim_end());
    }
    out
}

/// Up to `rows` lines: a header and the most accessed regions over all targets.
fn hottest_table(latest: &[&Snapshot], rows: usize, width: usize, colour: bool) -> Vec<String> {
    let nums = Numbers::default();
    let mut regions: Vec<(&Snapshot, &TargetSnapshot, &crate::core::RegionSnapshot)> = latest
        .iter()
        .flat_map(|s| {
            s.targets
                .iter()
                .flat_map(move |t| t.regions.iter().map(move |r| (*s, t, r)))
        })
        .collect();
    regions.sort_by_key(|(_, _, r)| {
        (
            std::cmp::Reverse(r.nr_accesses),
            std::cmp::Reverse(r.size()),
            r.start,
        )
    });
    let mut table = Table::new(&[
        ("PID", Align::Right),
        ("ADDR RANGE", Align::Left),
        (nums.size_header(), Align::Right),
        ("ACCESS(%)", Align::Right),
        ("FREQ(Hz)", Align::Right),
        (nums.age_header(), Align::Right),
    ]);
    let shown: Vec<_> = regions.into_iter().take(rows.saturating_sub(1)).collect();
    for (s, t, r) in &shown {
        table.push(vec![
            t.pid.to_string(),
            nums.addr_range(r.start, r.end),
            nums.size_column(r.size()),
            nums.real(access_percent(r.nr_accesses, &s.intervals)),
            nums.real(access_hz(r.nr_accesses, &s.intervals)),
            nums.age_column(Some(age_us(r.age, &s.intervals))),
        ]);
    }
    let mut text = String::new();
    table.render(&mut text);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Bars after the table, in the width that is left.
    let table_width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let bar_width = width.saturating_sub(table_width + 2);
    if bar_width >= 4 {
        for (line, (s, _, r)) in lines.iter_mut().skip(1).zip(&shown) {
            let pad = table_width - line.chars().count();
            let fraction = access_percent(r.nr_accesses, &s.intervals) / 100.0;
            *line = format!(
                "{line}{}  {}",
                " ".repeat(pad),
                bar(fraction, bar_width, colour)
            );
        }
    }
    lines
}

/// A title and one line per recent aggregation of `target` (oldest first), over the address
/// areas its regions covered; `None` without history for it.
fn strip(
    history: &[Snapshot],
    latest: &Snapshot,
    target: &TargetSnapshot,
    width: usize,
    colour: bool,
) -> Option<(String, Vec<String>)> {
    let mut recent: Vec<Snapshot> = history
        .iter()
        .rev()
        .filter(|s| (s.kdamond_idx, s.context_idx) == (latest.kdamond_idx, latest.context_idx))
        .take(MAX_STRIP_ROWS)
        .cloned()
        .collect();
    recent.reverse();
    let records = Record::from_snapshots(&recent);
    let record = records
        .iter()
        .filter(|r| {
            r.target_id == Some(target.target_idx as u64) && r.pid == Some(target.pid.get())
        })
        .max_by_key(|r| r.snapshots.last().map(|s| s.end_ns))?;
    const LABEL: usize = 10;
    let cols = width.saturating_sub(LABEL + 2).max(8);
    // The heatmap's own grid, one row per aggregation over the areas the regions covered.
    let opts = HeatmapOptions {
        resolution: Some((record.snapshots.len(), cols)),
        ..HeatmapOptions::default()
    };
    let grid = grid_of(0, record, &opts, TEXT_RESOLUTION).ok()??;
    let last_end_ns = record.snapshots.last()?.end_ns;
    let nums = Numbers::default();
    let title = format!(
        "pid {} heat, newest at the bottom (0 cold .. 9 hot, '|' skips a gap):",
        target.pid
    );
    Some((title, strip_rows(&grid, last_end_ns, nums, colour, LABEL)))
}

fn strip_rows(grid: &Grid, now_ns: u64, nums: Numbers, colour: bool, label: usize) -> Vec<String> {
    let levels = levels(grid);
    let ncols = grid.columns.len();
    (0..grid.rows)
        .map(|row| {
            let row_end = grid.time_start_ns + (row as u64 + 1) * grid.time_unit_ns;
            let ago = match now_ns.saturating_sub(row_end) {
                0 => "now".to_string(),
                ns => format!("-{}", nums.duration_ns(ns)),
            };
            let mut w = RowWriter::new(format!("{ago:>label$}  "), colour);
            for col in 0..ncols {
                if col > 0 && grid.columns[col].area != grid.columns[col - 1].area {
                    w.separator();
                }
                w.cell(levels[row * ncols + col]);
            }
            w.finish()
        })
        .collect()
}

/// One plain block per refresh for a non-terminal stdout: context, targets, the schemes' stats,
/// and the ten hottest regions of each target, all lines `#`-prefixed but the regions.
pub fn render_plain(snapshot: &Snapshot, schemes: &[RecordScheme]) -> String {
    let nums = Numbers::default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} - {} (monotonic): {}",
        nums.duration_ns(snapshot.start_ns),
        nums.duration_ns(snapshot.end_ns),
        context_line(snapshot, nums)
    );
    for s in schemes {
        let _ = writeln!(out, "# {}", scheme_line(s, nums));
    }
    for t in &snapshot.targets {
        let _ = writeln!(out, "# {}", target_line(t, nums));
        let mut regions = t.regions.clone();
        regions.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.nr_accesses),
                std::cmp::Reverse(r.size()),
                r.start,
            )
        });
        let mut table = Table::new(&[
            ("ADDR RANGE", Align::Left),
            (nums.size_header(), Align::Right),
            ("ACCESS(%)", Align::Right),
            ("FREQ(Hz)", Align::Right),
            (nums.age_header(), Align::Right),
        ]);
        for r in regions.iter().take(10) {
            table.push(vec![
                nums.addr_range(r.start, r.end),
                nums.size_column(r.size()),
                nums.real(access_percent(r.nr_accesses, &snapshot.intervals)),
                nums.real(access_hz(r.nr_accesses, &snapshot.intervals)),
                nums.age_column(Some(age_us(r.age, &snapshot.intervals))),
            ]);
        }
        table.render(&mut out);
    }
    out
}
