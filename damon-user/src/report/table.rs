//! Fixed-width columns: upper-case headers with units, numbers right-aligned.
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table rendered as aligned text; the header line starts with `#` as perf's do.
#[derive(Debug)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn widths(&self) -> Vec<usize> {
        self.headers
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Renders the header and rows, two spaces apart; the `#` of the header takes the place of
    /// the first column's leading two spaces, so columns line up.
    pub fn render(&self, out: &mut String) {
        let widths = self.widths();
        let line = |cells: Vec<&str>, out: &mut String, prefix: &str| {
            let mut text = String::from(prefix);
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                match self.headers[i].1 {
                    Align::Right => {
                        text.extend(std::iter::repeat_n(' ', pad));
                        text.push_str(cell);
                    }
                    Align::Left => {
                        text.push_str(cell);
                        text.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(
            self.headers.iter().map(|(h, _)| h.as_str()).collect(),
            out,
            "# ",
        );
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), out, "  ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_under_headers() {
        let mut t = Table::new(&[("ADDR RANGE", Align::Left), ("SIZE(KiB)", Align::Right)]);
        t.push(vec!["0x1000-0x3000".into(), "8".into()]);
        t.push(vec!["0x3000-0x100000".into(), "1,012".into()]);
        let mut out = String::new();
        t.render(&mut out);
        assert_eq!(
            out,
            "# ADDR RANGE       SIZE(KiB)\n  0x1000-0x3000            8\n  0x3000-0x100000      1,012\n"
        );
    }
}
