//! `damon report heatmap`: access frequency over time and address.
//!
//! By default the map spans each target's whole recording in time, and in address only the
//! ranges that regions covered: a process's heap, mmap area and stack lie terabytes apart, and
//! a linear axis would show nothing but the gaps. `address_range` gives one linear range
//! instead, as damo's `--address_range`.
pub mod grid;
mod image;
pub(crate) mod text;

use std::{
    fmt::Write,
    path::{Path, PathBuf},
};

use serde::Serialize;

use self::grid::{Grid, allocate_columns, covered_areas, limit_areas};
use super::{Input, Numbers, RecordId, ReportError, header, to_json};
use crate::core::AddrRange;
use crate::record::Record;

/// Default text resolution, as damo's: 40 rows of time, 80 columns of address.
pub const TEXT_RESOLUTION: (usize, usize) = (40, 80);
/// Default image resolution: damo draws 500 × 500.
pub const IMAGE_RESOLUTION: (usize, usize) = (500, 500);

#[derive(Clone, Debug, Default)]
pub struct HeatmapOptions {
    /// One linear `[start, end)` instead of the covered areas.
    pub address_range: Option<AddrRange>,
    /// Start and end, in ns after each record's first snapshot started; whole record if `None`.
    pub time_range: (Option<u64>, Option<u64>),
    /// Rows (time) and columns (address); at most as many rows as snapshots if `None`.
    pub resolution: Option<(usize, usize)>,
    /// Only this record (target); all if `None`.
    pub record: Option<usize>,
    pub nums: Numbers,
    pub colour: bool,
}

/// The records to draw, by index.
fn selected<'a>(
    input: &Input<'a>,
    opts: &HeatmapOptions,
) -> Result<Vec<(usize, &'a Record)>, ReportError> {
    match opts.record {
        Some(i) => input
            .records
            .get(i)
            .map(|r| vec![(i, r)])
            .ok_or(ReportError::NoSuchRecord {
                record: i,
                nr_records: input.records.len(),
            }),
        None => Ok(input.records.iter().enumerate().collect()),
    }
}

/// The grid of record `idx` with these options; `None` for a record without snapshots.
pub fn grid_of(
    idx: usize,
    record: &Record,
    opts: &HeatmapOptions,
    default_resolution: (usize, usize),
) -> Result<Option<Grid>, ReportError> {
    let (Some(first), Some(last)) = (record.snapshots.first(), record.snapshots.last()) else {
        return Ok(None);
    };
    let base = first.start_ns;
    let start = base.saturating_add(opts.time_range.0.unwrap_or(0));
    // Rows past the end would only ever be blank.
    let end = opts
        .time_range
        .1
        .map_or(last.end_ns, |e| base.saturating_add(e).min(last.end_ns));
    if start >= last.end_ns {
        let d = |ns: Option<u64>, open: &str| {
            ns.map_or_else(|| open.into(), |ns| opts.nums.duration_ns(ns))
        };
        return Err(ReportError::TimeRangeAfterEnd {
            start: d(opts.time_range.0, "start"),
            end: d(opts.time_range.1, "end"),
            record: idx,
            record_end: opts.nums.duration_ns(last.end_ns - base),
        });
    }
    let (rows, cols) = opts.resolution.unwrap_or((
        default_resolution.0.min(record.snapshots.len()),
        default_resolution.1,
    ));
    let areas = match opts.address_range {
        Some(range) => vec![range],
        // An area per 8 columns at most, so that each has room to show something.
        None => limit_areas(covered_areas(record), (cols / 8).max(1)),
    };
    // In text, each gap between areas takes a column for its '|'.
    let separators = areas.len().saturating_sub(1);
    let nr_columns = cols.saturating_sub(separators).max(areas.len());
    let columns = allocate_columns(&areas, nr_columns);
    let mut grid = Grid::new(start, end, rows, areas, columns);
    grid.add_record(record);
    Ok(Some(grid))
}

/// The heatmaps as text: per record, the header, a legend and the map.
pub fn render_text(input: &Input, opts: &HeatmapOptions) -> Result<String, ReportError> {
    let nums = opts.nums;
    let mut out = String::new();
    header::input_lines(&mut out, "heatmap", input, nums);
    for (idx, record) in selected(input, opts)? {
        header::record_lines(&mut out, idx, record, nums);
        let Some(grid) = grid_of(idx, record, opts, TEXT_RESOLUTION)? else {
            continue;
        };
        let base = record.snapshots[0].start_ns;
        text::legend(&mut out, &grid, base, nums);
        let _ = writeln!(out, "#");
        text::map(&mut out, &grid, base, nums, opts.colour);
    }
    Ok(out)
}

#[derive(Serialize)]
struct JsonRecord {
    #[serde(flatten)]
    id: RecordId,
    /// Rows of heat, oldest first, `null` where no region was.
    #[serde(flatten)]
    grid: Option<JsonGrid>,
}

#[derive(Serialize)]
struct JsonGrid {
    time_start_ns: u64,
    time_unit_ns: u64,
    heat_unit: grid::HeatUnit,
    areas: Vec<grid::Area>,
    columns: Vec<grid::Column>,
    heat: Vec<Vec<Option<f64>>>,
}

/// The same numbers as one JSON document: per record, the cells row by row.
pub fn render_json(input: &Input, opts: &HeatmapOptions) -> Result<String, ReportError> {
    let mut records = Vec::new();
    for (idx, record) in selected(input, opts)? {
        let grid = grid_of(idx, record, opts, TEXT_RESOLUTION)?.map(|g| JsonGrid {
            heat: g
                .heat
                .chunks(g.columns.len().max(1))
                .map(<[_]>::to_vec)
                .collect(),
            time_start_ns: g.time_start_ns,
            time_unit_ns: g.time_unit_ns,
            heat_unit: g.heat_unit,
            areas: g.areas,
            columns: g.columns,
        });
        records.push(JsonRecord {
            id: RecordId::of(idx, record),
            grid,
        });
    }
    Ok(to_json(&input.json_doc("heatmap", records)))
}

/// Draws each record's heatmap to `path` (`.png` or `.svg`); the second record's goes to
/// `NAME.1.EXT` and so on. Returns the files written.
pub fn draw_images(
    input: &Input,
    opts: &HeatmapOptions,
    path: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    image::check_path(path)?;
    let mut written = Vec::new();
    for (nth, (idx, record)) in selected(input, opts)?.into_iter().enumerate() {
        let Some(grid) = grid_of(idx, record, opts, IMAGE_RESOLUTION)? else {
            continue;
        };
        let file = image::path_for(path, nth);
        let title = format!(
            "{}: record {idx}, {}",
            input.name,
            header::target_text(record)
        );
        image::draw(&file, &grid, &title, record.snapshots[0].start_ns)?;
        written.push(file);
    }
    if written.is_empty() {
        return Err(ReportError::NoSnapshots);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordSnapshot;

    fn empty_record() -> Record {
        Record {
            kdamond_idx: 0,
            context_idx: 0,
            scheme_idx: None,
            target_id: None,
            pid: None,
            intervals: None,
            data_source: "unknown".into(),
            nr_lost_snapshots: 0,
            schemes: Vec::new(),
            snapshots: vec![RecordSnapshot {
                start_ns: 10,
                end_ns: 20,
                sample_us: None,
                regions: Vec::new(),
            }],
        }
    }

    #[test]
    fn records_without_regions_give_an_empty_map() {
        let records = [empty_record()];
        let input = Input {
            name: "empty",
            records: &records,
        };
        let text = render_text(&input, &HeatmapOptions::default()).unwrap();
        assert!(text.contains("no region in these ranges"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&input, &HeatmapOptions::default()).unwrap())
                .unwrap();
        assert_eq!(json["records"][0]["columns"], serde_json::json!([]));
    }

    #[test]
    fn a_time_range_after_the_record_is_refused() {
        let opts = HeatmapOptions {
            time_range: (Some(1_000), None),
            ..HeatmapOptions::default()
        };
        let err = grid_of(0, &empty_record(), &opts, TEXT_RESOLUTION).unwrap_err();
        assert_eq!(
            err.to_string(),
            "time range 1 us - end starts after record 0 ends, at 10 ns"
        );
    }
}
