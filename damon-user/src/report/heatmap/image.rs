//! The heatmap as a PNG or SVG image: time to the right, address upwards (as damo's gnuplot
//! images), areas stacked with a gap line between them.
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use image::{ColorType, ImageEncoder, codecs::png::PngEncoder};
use plotters::{
    coord::Shift,
    prelude::*,
    style::{FontStyle, register_font},
};

use super::grid::{Grid, HeatUnit};
use crate::report::{Numbers, ReportError};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 700;
const LEFT: i32 = 130;
const RIGHT: i32 = 110;
const TOP: i32 = 40;
const BOTTOM: i32 = 50;
const EMPTY: RGBColor = RGBColor(235, 235, 235);

/// Fonts we look for: text needs a TrueType font, and plotters' "ttf" feature would link the
/// system's font libraries; without any of these, images are drawn without text.
const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// Registers a system font as "sans-serif" once; whether one was found.
fn have_font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONT_PATHS.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

/// Black through red to yellow: monotonic in brightness, so it reads in grey print too; it
/// stops short of white, the colour of the background and of cells no region covered.
fn colour(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * 2.0;
    let ramp = |x: f64| (x.clamp(0.0, 1.0) * 255.0) as u8;
    RGBColor(ramp(t), ramp(t - 1.0), 0)
}

/// Which file type a path asks for.
fn is_svg(path: &Path) -> Result<bool, ReportError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(false),
        Some("svg") => Ok(true),
        _ => Err(ReportError::UnsupportedImage {
            path: path.to_path_buf(),
        }),
    }
}

/// Draws `grid` to `path` (.png or .svg) with `title` on top. The image is drawn in memory
/// and written to a new file that then replaces `path` (see [`crate::outfile`]): a file or
/// link someone planted there is never written through. Mode 0600, as record files: the
/// image shows the process's address layout.
pub(crate) fn draw(path: &Path, grid: &Grid, title: &str, base_ns: u64) -> Result<(), ReportError> {
    let fail = |e: String| ReportError::Draw {
        path: path.to_path_buf(),
        reason: e,
    };
    let text = have_font();
    let bytes = if is_svg(path)? {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            draw_on(&root, grid, title, base_ns, text).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        svg.into_bytes()
    } else {
        let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
            draw_on(&root, grid, title, base_ns, text).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&rgb, WIDTH, HEIGHT, ColorType::Rgb8)
            .map_err(|e| fail(e.to_string()))?;
        png
    };
    crate::outfile::replace(path, &bytes, 0o600).map_err(|e| fail(e.to_string()))
}

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    grid: &Grid,
    title: &str,
    base_ns: u64,
    text: bool,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (plot_w, plot_h) = (WIDTH as i32 - LEFT - RIGHT, HEIGHT as i32 - TOP - BOTTOM);
    let ncols = grid.columns.len().max(1);
    let (lo, hi) = grid.heat_range().unwrap_or((0.0, 0.0));
    let x_of = |row: usize| LEFT + (row as i64 * plot_w as i64 / grid.rows as i64) as i32;
    // Column 0 (lowest address) at the bottom.
    let y_of = |col: usize| TOP + plot_h - (col as i64 * plot_h as i64 / ncols as i64) as i32;
    let fill = |h: Option<f64>| match h {
        None => EMPTY,
        Some(_) if hi <= lo => colour(0.0),
        Some(h) => colour((h - lo) / (hi - lo)),
    };
    for col in 0..grid.columns.len() {
        // Runs of equal colour along time become one rectangle: SVGs stay small.
        let mut row = 0;
        while row < grid.rows {
            let c = fill(grid.cell(row, col));
            let mut end = row + 1;
            while end < grid.rows && fill(grid.cell(end, col)) == c {
                end += 1;
            }
            root.draw(&Rectangle::new(
                [(x_of(row), y_of(col + 1)), (x_of(end), y_of(col))],
                c.filled(),
            ))
            .map_err(err)?;
            row = end;
        }
        if col > 0 && grid.columns[col].area != grid.columns[col - 1].area {
            root.draw(&PathElement::new(
                vec![(LEFT, y_of(col)), (LEFT + plot_w, y_of(col))],
                WHITE.stroke_width(2),
            ))
            .map_err(err)?;
        }
    }
    // The colour bar.
    let bar_x = LEFT + plot_w + 20;
    for i in 0..plot_h {
        let t = 1.0 - f64::from(i) / f64::from(plot_h);
        root.draw(&Rectangle::new(
            [(bar_x, TOP + i), (bar_x + 20, TOP + i + 1)],
            colour(t).filled(),
        ))
        .map_err(err)?;
    }
    if text {
        labels(root, grid, title, base_ns, (lo, hi), (plot_w, plot_h)).map_err(err)?;
    }
    Ok(())
}

fn labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    grid: &Grid,
    title: &str,
    base_ns: u64,
    (lo, hi): (f64, f64),
    (plot_w, plot_h): (i32, i32),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let nums = Numbers::default();
    let font = ("sans-serif", 14).into_font();
    let small = ("sans-serif", 12).into_font();
    root.draw(&Text::new(title.to_string(), (LEFT, 12), font.clone()))?;
    let start = grid.time_start_ns.saturating_sub(base_ns);
    let span = grid.time_unit_ns * grid.rows as u64;
    for i in 0..=4u64 {
        let x = LEFT + (i as i32 * plot_w / 4);
        let label = nums.duration_ns(start + span * i / 4);
        root.draw(&Text::new(label, (x - 20, TOP + plot_h + 8), small.clone()))?;
    }
    root.draw(&Text::new(
        "time since the first snapshot".to_string(),
        (LEFT + plot_w / 2 - 90, TOP + plot_h + 28),
        font.clone(),
    ))?;
    let ncols = grid.columns.len().max(1);
    for (i, area) in grid.areas.iter().enumerate() {
        let first = grid.columns.iter().position(|c| c.area == i).unwrap_or(0);
        let y = TOP + plot_h - (first as i64 * plot_h as i64 / ncols as i64) as i32;
        root.draw(&Text::new(
            nums.addr(area.start),
            (6, y - 14),
            small.clone(),
        ))?;
    }
    let unit = match grid.heat_unit {
        HeatUnit::Hz => "Hz",
        HeatUnit::Samples => "samples",
    };
    let bar_x = LEFT + plot_w + 44;
    root.draw(&Text::new(
        format!("{} {unit}", nums.real(hi)),
        (bar_x, TOP),
        small.clone(),
    ))?;
    root.draw(&Text::new(
        format!("{} {unit}", nums.real(lo)),
        (bar_x, TOP + plot_h - 12),
        small,
    ))?;
    Ok(())
}

/// `heat.png` for the first record, `heat.1.png` for the second, as damo names them.
pub(crate) fn path_for(path: &Path, nth: usize) -> PathBuf {
    if nth == 0 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.{nth}.{ext}"))
}

/// Checks the file type before any work is done.
pub(crate) fn check_path(path: &Path) -> Result<(), ReportError> {
    is_svg(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_types_come_from_the_extension() {
        assert!(!is_svg(Path::new("a.png")).unwrap());
        assert!(is_svg(Path::new("a.SVG")).unwrap());
        let msg = is_svg(Path::new("heat.pdf")).unwrap_err().to_string();
        assert_eq!(
            msg,
            "cannot draw heat.pdf: unsupported image type, expected a .png or .svg file name"
        );
    }

    #[test]
    fn later_records_get_numbered_files() {
        assert_eq!(
            path_for(Path::new("out/heat.png"), 0),
            Path::new("out/heat.png")
        );
        assert_eq!(
            path_for(Path::new("out/heat.png"), 2),
            Path::new("out/heat.2.png")
        );
    }

    #[test]
    fn colours_run_from_black_to_yellow() {
        assert_eq!(colour(0.0), RGBColor(0, 0, 0));
        assert_eq!(colour(0.5), RGBColor(255, 0, 0));
        assert_eq!(colour(1.0), RGBColor(255, 255, 0));
    }
}
