//! The heatmap in a terminal: one character per cell, rows of time, columns of address.
use std::fmt::Write;

use super::grid::{Grid, HeatUnit, levels};
use crate::report::Numbers;

/// xterm-256 backgrounds from cold (dark blue) to hot (bright yellow).
pub(crate) const PALETTE: [u8; 10] = [17, 18, 19, 25, 31, 37, 70, 142, 214, 226];

/// Appends cells of a map row: a digit per cell, a blank for no region, a '|' between areas;
/// in colour, a background per level, switched only where the level changes.
pub(crate) struct RowWriter {
    line: String,
    colour: bool,
    current: Option<u8>,
}

impl RowWriter {
    pub(crate) fn new(prefix: String, colour: bool) -> Self {
        RowWriter {
            line: prefix,
            colour,
            current: None,
        }
    }

    pub(crate) fn cell(&mut self, level: Option<u8>) {
        match level {
            Some(l) if self.colour => {
                if self.current != Some(l) {
                    let fg = if l >= 7 { 16 } else { 255 };
                    let _ = write!(
                        self.line,
                        "\x1b[48;5;{}m\x1b[38;5;{fg}m",
                        PALETTE[usize::from(l)]
                    );
                    self.current = Some(l);
                }
                self.line.push(char::from(b'0' + l));
            }
            Some(l) => self.line.push(char::from(b'0' + l)),
            None => {
                self.plain();
                self.line.push(' ');
            }
        }
    }

    pub(crate) fn separator(&mut self) {
        self.plain();
        self.line.push('|');
    }

    fn plain(&mut self) {
        if self.colour && self.current.take().is_some() {
            self.line.push_str("\x1b[0m");
        }
    }

    pub(crate) fn finish(mut self) -> String {
        self.plain();
        self.line.trim_end().to_string()
    }
}

fn unit_name(unit: HeatUnit) -> &'static str {
    match unit {
        HeatUnit::Hz => "Hz",
        HeatUnit::Samples => "samples",
    }
}

/// The legend lines: what rows, columns and digits mean.
pub(crate) fn legend(out: &mut String, grid: &Grid, base_ns: u64, nums: Numbers) {
    let start = grid.time_start_ns.saturating_sub(base_ns);
    let end = start + grid.time_unit_ns * grid.rows as u64;
    let _ = writeln!(
        out,
        "#   time: rows from top, {} - {} after the first snapshot started, {} rows of {}",
        nums.duration_label(start),
        nums.duration_label(end),
        grid.rows,
        nums.duration_label(grid.time_unit_ns)
    );
    let _ = match grid.areas.len() {
        1 => writeln!(out, "#   address: columns from left, one area:"),
        n => writeln!(
            out,
            "#   address: columns from left, {n} areas with the gaps between them left out ('|'):"
        ),
    };
    for (i, area) in grid.areas.iter().enumerate() {
        let columns: Vec<_> = grid.columns.iter().filter(|c| c.area == i).collect();
        let width = columns.first().map_or(0, |c| c.end - c.start);
        let _ = writeln!(
            out,
            "#     area {i}: {} ({}), {} columns of {}",
            nums.addr_range(area.start, area.end),
            nums.bytes_label(area.size()),
            columns.len(),
            nums.bytes_label(width)
        );
    }
    let unit = unit_name(grid.heat_unit);
    match grid.heat_range() {
        Some((lo, hi)) => {
            let _ = writeln!(
                out,
                "#   heat: access frequency from 0 ({} {unit}) to 9 ({} {unit}); blank: no region",
                nums.real(lo),
                nums.real(hi)
            );
        }
        None => {
            let _ = writeln!(out, "#   heat: no region in these ranges");
        }
    }
}

/// The map itself, with time labels on the left and area numbers under the columns.
pub(crate) fn map(out: &mut String, grid: &Grid, base_ns: u64, nums: Numbers, colour: bool) {
    let labels: Vec<String> = (0..grid.rows)
        .map(|r| {
            let t = grid.time_start_ns.saturating_sub(base_ns) + r as u64 * grid.time_unit_ns;
            nums.duration_ns(t)
        })
        .collect();
    let label_width = labels
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("TIME".len());
    let levels = levels(grid);
    let ncols = grid.columns.len();
    let _ = writeln!(out, "# {:>label_width$}  ADDRESS ->", "TIME");
    for (row, label) in labels.iter().enumerate() {
        let mut w = RowWriter::new(format!("  {label:>label_width$}  "), colour);
        for col in 0..ncols {
            if col > 0 && grid.columns[col].area != grid.columns[col - 1].area {
                w.separator();
            }
            w.cell(levels[row * ncols + col]);
        }
        let _ = writeln!(out, "{}", w.finish());
    }
    let _ = writeln!(out, "{}", area_axis(grid, label_width).trim_end());
}

/// "^0" under the first column of area 0, and so on, where the label fits.
fn area_axis(grid: &Grid, label_width: usize) -> String {
    // A column's position in the line: its index plus the '|' separators before it.
    let starts: Vec<usize> = (0..grid.columns.len())
        .filter(|&c| c == 0 || grid.columns[c - 1].area != grid.columns[c].area)
        .map(|c| c + grid.columns[c].area)
        .collect();
    let width = grid.columns.len() + grid.areas.len().saturating_sub(1);
    let mut axis = vec![' '; width + 8];
    for (area, &pos) in starts.iter().enumerate() {
        let label: Vec<char> = format!("^{area}").chars().collect();
        let limit = starts.get(area + 1).copied().unwrap_or(axis.len());
        if pos + label.len() <= limit {
            axis[pos..pos + label.len()].copy_from_slice(&label);
        }
    }
    format!(
        "  {:>label_width$}  {}",
        "",
        axis.into_iter().collect::<String>()
    )
}
