//! The heatmap as numbers: access frequency per (time, address) cell.
//!
//! Cells accumulate heat exactly as damo's `report heatmap` pixels do (`HeatMap.add_heat`):
//! a region contributes `frequency × overlapping time × overlapping bytes / cell area`, and a
//! region counts from `age` aggregations before its snapshot, back to the previous snapshot's
//! end. The float operations happen in damo's order, so for the same ranges and resolution
//! the numbers equal damo's `--output raw`. Two differences: a cell a region only touches at
//! its edge (no overlap) gets 0 as in damo, but one it does not reach in time at all stays
//! empty where damo would add a negative amount; and columns may cover several areas with
//! the gaps between them left out.
use serde::Serialize;

use crate::core::AddrRange;
use crate::record::Record;

/// A contiguous address range on the map.
pub type Area = AddrRange;

/// One column of cells: `[start, end)` within area `area`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    pub start: u64,
    pub end: u64,
    pub area: usize,
}

/// What a heat value counts: Hz when the record has intervals, else samples per aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeatUnit {
    Hz,
    Samples,
}

/// Rows of time (oldest first) × columns of address (lowest first).
#[derive(Clone, Debug, Serialize)]
pub struct Grid {
    /// Start of the first row, in the record's clock.
    pub time_start_ns: u64,
    pub time_unit_ns: u64,
    pub rows: usize,
    pub areas: Vec<Area>,
    pub columns: Vec<Column>,
    pub heat_unit: HeatUnit,
    /// Row-major; `None` where no region was.
    pub heat: Vec<Option<f64>>,
}

/// The address ranges any region of `record` ever covered, merged where they touch.
pub fn covered_areas(record: &Record) -> Vec<Area> {
    let mut spans: Vec<Area> = Vec::new();
    for snapshot in &record.snapshots {
        // Regions of a snapshot are mostly contiguous: merge them first to keep this small.
        let mut regions: Vec<Area> = snapshot
            .regions
            .iter()
            .filter(|r| r.end > r.start)
            .map(|r| Area {
                start: r.start,
                end: r.end,
            })
            .collect();
        regions.sort_by_key(|a| a.start);
        spans = merge_sorted(merge_sorted(regions).into_iter().chain(spans).collect());
    }
    spans
}

fn merge_sorted(mut areas: Vec<Area>) -> Vec<Area> {
    areas.sort_by_key(|a| a.start);
    let mut merged: Vec<Area> = Vec::with_capacity(areas.len());
    for a in areas {
        match merged.last_mut() {
            Some(last) if a.start <= last.end => last.end = last.end.max(a.end),
            _ => merged.push(a),
        }
    }
    merged
}

/// Joins areas across the smallest gaps until at most `max` remain, so each gets columns.
pub fn limit_areas(mut areas: Vec<Area>, max: usize) -> Vec<Area> {
    while areas.len() > max.max(1) {
        let Some(i) = (0..areas.len() - 1).min_by_key(|&i| areas[i + 1].start - areas[i].end)
        else {
            break;
        };
        areas[i].end = areas[i + 1].end;
        areas.remove(i + 1);
    }
    areas
}

/// Splits `nr_columns` among `areas`: a few each so small areas (the stack) stay visible, the
/// rest in proportion to size. Columns of an area are equally wide, damo's `addr_unit`.
pub fn allocate_columns(areas: &[Area], nr_columns: usize) -> Vec<Column> {
    if areas.is_empty() || nr_columns == 0 {
        return Vec::new();
    }
    let base = (nr_columns / areas.len()).min(4);
    let rest = nr_columns - base * areas.len();
    let total: u128 = areas
        .iter()
        .map(|a| u128::from(a.size()))
        .sum::<u128>()
        .max(1);
    let mut counts: Vec<usize> = areas
        .iter()
        .map(|a| base + (rest as u128 * u128::from(a.size()) / total) as usize)
        .collect();
    // Largest remainders get the columns that integer division left over.
    let mut order: Vec<usize> = (0..areas.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rest as u128 * u128::from(areas[i].size()) % total));
    let mut left = nr_columns - counts.iter().sum::<usize>();
    for &i in order.iter().cycle().take(areas.len() * 2) {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    let mut columns = Vec::with_capacity(nr_columns);
    for (idx, (area, count)) in areas.iter().zip(counts).enumerate() {
        let count = (count as u64).min(area.size()).max(1);
        let unit = area.size() / count;
        for c in 0..count {
            columns.push(Column {
                start: area.start + c * unit,
                end: area.start + (c + 1) * unit,
                area: idx,
            });
        }
    }
    columns
}

impl Grid {
    /// An empty grid of `rows` over `[start_ns, end_ns)`; rows are `(end - start) / rows`
    /// long, as damo's `time_unit`.
    pub fn new(
        start_ns: u64,
        end_ns: u64,
        rows: usize,
        areas: Vec<Area>,
        columns: Vec<Column>,
    ) -> Self {
        let span = end_ns.saturating_sub(start_ns).max(1);
        let rows = rows.clamp(1, usize::try_from(span).unwrap_or(usize::MAX));
        Grid {
            time_start_ns: start_ns,
            time_unit_ns: span / rows as u64,
            rows,
            heat: vec![None; rows * columns.len()],
            areas,
            columns,
            heat_unit: HeatUnit::Samples,
        }
    }

    pub fn cell(&self, row: usize, column: usize) -> Option<f64> {
        self.heat[row * self.columns.len() + column]
    }

    /// Lowest and highest heat of all cells that have one.
    pub fn heat_range(&self) -> Option<(f64, f64)> {
        self.heat.iter().flatten().fold(None, |acc, &h| match acc {
            None => Some((h, h)),
            Some((lo, hi)) => Some((lo.min(h), hi.max(h))),
        })
    }

    /// Adds the heat of every snapshot of `record` (damo's `heatmap_from_records` for one
    /// target).
    pub fn add_record(&mut self, record: &Record) {
        self.heat_unit = if record.intervals.is_some() {
            HeatUnit::Hz
        } else {
            HeatUnit::Samples
        };
        let ts = i128::from(self.time_start_ns);
        let unit = i128::from(self.time_unit_ns);
        let mut last_end: Option<i128> = None;
        for snapshot in &record.snapshots {
            // Tuned intervals move from snapshot to snapshot.
            let intervals = snapshot.intervals(record);
            let aggr_ns = intervals.map(|i| i128::from(i.aggr_us) * 1000);
            let end = i128::from(snapshot.end_ns);
            for region in &snapshot.regions {
                let mut observe_start = i128::from(snapshot.start_ns);
                if let Some(aggr_ns) = aggr_ns {
                    observe_start -= i128::from(region.age.unwrap_or(0)) * aggr_ns;
                    if let Some(last_end) = last_end {
                        observe_start = observe_start.max(last_end);
                    }
                }
                let heat_val = match intervals {
                    Some(i) => f64::from(region.nr_accesses) / (i.aggr_us as f64 / 1_000_000.0),
                    None => f64::from(region.nr_accesses),
                };
                // damo truncates towards zero (Python's int()), as i128 division does.
                let first_row = ((observe_start - ts) / unit).max(0);
                let last_row = ((end - ts) / unit).min(self.rows as i128 - 1);
                let first_col = self.columns.partition_point(|c| c.end <= region.start);
                for row in first_row..=last_row {
                    let row_start = ts + row * unit;
                    let account_time = end.min(row_start + unit) - observe_start.max(row_start);
                    if account_time < 0 {
                        continue;
                    }
                    for col in first_col..self.columns.len() {
                        let c = self.columns[col];
                        if c.start > region.end {
                            break;
                        }
                        let account_sz = region.end.min(c.end) - region.start.max(c.start);
                        let cell_area =
                            (u128::from(self.time_unit_ns) * u128::from(c.end - c.start)) as f64;
                        let heat = heat_val * account_time as f64 * account_sz as f64;
                        let cell = &mut self.heat[row as usize * self.columns.len() + col];
                        *cell = Some((heat + cell.unwrap_or(0.0) * cell_area) / cell_area);
                    }
                }
            }
            last_end = Some(end);
        }
    }
}

/// Heat levels 0 (coldest cell) to 9 (hottest) for the text map; `None` stays blank.
pub fn levels(grid: &Grid) -> Vec<Option<u8>> {
    let Some((lo, hi)) = grid.heat_range() else {
        return vec![None; grid.heat.len()];
    };
    grid.heat
        .iter()
        .map(|h| {
            h.map(|h| {
                if hi > lo {
                    (((h - lo) / (hi - lo) * 10.0) as u8).min(9)
                } else {
                    0
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        core::Intervals,
        record::{RecordRegion, RecordSnapshot},
    };

    fn region(start: u64, end: u64, nr_accesses: u32, age: u32) -> RecordRegion {
        RecordRegion {
            start,
            end,
            nr_accesses,
            age: Some(age),
            nr_unmeasured: 0,
        }
    }

    fn record(snapshots: Vec<Vec<RecordRegion>>) -> Record {
        Record {
            kdamond_idx: 0,
            context_idx: 0,
            scheme_idx: None,
            target_id: Some(0),
            pid: Some(1),
            intervals: Some(Intervals {
                sample_us: 5_000,
                aggr_us: 100_000,
                update_us: 1_000_000,
                goal: Default::default(),
            }),
            data_source: "unknown".into(),
            nr_lost_snapshots: 0,
            schemes: Vec::new(),
            snapshots: snapshots
                .into_iter()
                .enumerate()
                .map(|(i, regions)| RecordSnapshot {
                    start_ns: i as u64 * 100_000_000,
                    end_ns: (i as u64 + 1) * 100_000_000,
                    sample_us: None,
                    regions,
                })
                .collect(),
        }
    }

    #[test]
    fn areas_skip_gaps_and_merge_touching_regions() {
        let r = record(vec![
            vec![
                region(0x1000, 0x2000, 0, 0),
                region(0x2000, 0x3000, 0, 0),
                region(0x9000, 0xa000, 0, 0),
            ],
            vec![region(0x2800, 0x4000, 0, 0)],
        ]);
        assert_eq!(
            covered_areas(&r),
            vec![
                Area {
                    start: 0x1000,
                    end: 0x4000
                },
                Area {
                    start: 0x9000,
                    end: 0xa000
                }
            ]
        );
        let limited = limit_areas(covered_areas(&r), 1);
        assert_eq!(
            limited,
            vec![Area {
                start: 0x1000,
                end: 0xa000
            }]
        );
    }

    #[test]
    fn small_areas_keep_some_columns() {
        let areas = [
            Area {
                start: 0,
                end: 1 << 30,
            },
            Area {
                start: 1 << 40,
                end: (1 << 40) + 8192,
            },
        ];
        let cols = allocate_columns(&areas, 40);
        assert_eq!(cols.len(), 40);
        assert_eq!(cols.iter().filter(|c| c.area == 1).count(), 4);
        assert!(cols.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn heat_is_frequency_weighted_by_overlap() {
        // Two snapshots of 100 ms; the first half of the range is accessed 10 of 20 samples
        // (100 Hz), the second never.
        let r = record(vec![
            vec![region(0, 4096, 10, 0), region(4096, 8192, 0, 0)],
            vec![region(0, 4096, 10, 1), region(4096, 8192, 0, 1)],
        ]);
        let areas = vec![Area {
            start: 0,
            end: 8192,
        }];
        let cols = allocate_columns(&areas, 2);
        let mut g = Grid::new(0, 200_000_000, 2, areas, cols);
        g.add_record(&r);
        assert_eq!(g.heat_unit, HeatUnit::Hz);
        assert_eq!(g.cell(0, 0), Some(100.0));
        assert_eq!(g.cell(1, 0), Some(100.0));
        assert_eq!(g.cell(0, 1), Some(0.0));
        assert_eq!(levels(&g), vec![Some(9), Some(0), Some(9), Some(0)]);
    }

    #[test]
    fn cells_no_region_reaches_stay_empty() {
        let r = record(vec![vec![region(0, 4096, 10, 0)]]);
        let areas = vec![Area {
            start: 0,
            end: 16384,
        }];
        let cols = allocate_columns(&areas, 4);
        let mut g = Grid::new(0, 100_000_000, 1, areas, cols);
        g.add_record(&r);
        // The second column only touches the region's end: 0, as in damo.
        assert_eq!(
            (0..4).map(|c| g.cell(0, c)).collect::<Vec<_>>(),
            vec![Some(100.0), Some(0.0), None, None]
        );
    }
}
