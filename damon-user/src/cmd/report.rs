//! `damon report`: show a record file (ours or damo's) as text, JSON or an image.
use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, ValueEnum};

use crate::{
    record::{FileKind, read_record_file},
    report::{
        self, Input, Numbers,
        access::{AccessOptions, SortKey},
        heatmap::HeatmapOptions,
        range::{parse_address_range, parse_resolution, parse_time_range},
        wss::WssOptions,
    },
};

const EXAMPLES: &str = "\
EXAMPLES:
  damon report                                  # regions of the last snapshot, damon.data
  damon report access -i app.data --sort access # hottest regions first
  damon report access --snapshot 0 --json
  damon report heatmap                          # time x address in the terminal
  damon report heatmap --time-range 2s-5s --address-range 0x7f0000000000-0x7f0040000000
  damon report heatmap -o heat.png              # or heat.svg
  damon report wss --step 10                    # working set size percentiles
  damon report raw | awk '$11 > 0'              # accessed regions, for scripts
  damon report schemes                          # what the --damos-* schemes tried and applied

Files written by damo (json or json_compressed) are read as well, and so is the journal a
recording in progress keeps (or a killed recorder left).";

/// What to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Style {
    /// Regions of one snapshot: address range, size, access rate, age.
    Access,
    /// Access frequency over time and address.
    Heatmap,
    /// Working set size percentiles over snapshots.
    Wss,
    /// One line per region per snapshot, for scripts.
    Raw,
    /// The schemes (DAMOS) the recording applied and what they did (tried, applied, quota
    /// exceeded).
    Schemes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Sort {
    Address,
    Access,
    Age,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum When {
    Auto,
    Always,
    Never,
}

#[derive(Debug, ClapArgs)]
#[command(about = "Show a record file: regions, heatmap, working set size, raw lines or schemes", after_help = EXAMPLES)]
pub struct Args {
    /// Report style.
    #[arg(value_enum, default_value_t = Style::Access)]
    pub style: Style,
    /// Record file (json or json_compressed, ours or damo's).
    #[arg(short, long, value_name = "FILE", default_value = "damon.data")]
    pub input: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Plain integers in bytes and nanoseconds/microseconds, no separators.
    #[arg(long)]
    pub raw_numbers: bool,
    /// Colour for the heatmap.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = When::Auto)]
    pub color: When,
    /// access: index of the snapshot to show in each record (default: the last).
    #[arg(long, value_name = "N")]
    pub snapshot: Option<usize>,
    /// access: order of the regions.
    #[arg(long, value_enum, default_value_t = Sort::Address)]
    pub sort: Sort,
    /// heatmap: one linear address range instead of the areas regions covered.
    #[arg(long, value_name = "START-END")]
    pub address_range: Option<String>,
    /// heatmap: time after the first snapshot started, e.g. 2s-5s (bare numbers are seconds).
    #[arg(long, value_name = "START-END")]
    pub time_range: Option<String>,
    /// heatmap: rows (time) x columns (address), e.g. 40x80.
    #[arg(long, value_name = "ROWSxCOLS")]
    pub resolution: Option<String>,
    /// heatmap: draw to an image file, .png or .svg, instead of the terminal.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// heatmap: only this record (target) of the file.
    #[arg(long, value_name = "N")]
    pub record: Option<usize>,
    /// wss: percentiles from 0 to 100 in this step.
    #[arg(long, value_name = "PERCENT", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub step: u32,
}

/// Where the report goes: whether it is a terminal, and how wide.
#[derive(Clone, Copy, Debug, Default)]
pub struct Terminal {
    pub is_tty: bool,
    pub columns: Option<u16>,
}

pub fn run(args: Args) -> Result<()> {
    let stdout = std::io::stdout();
    let terminal = Terminal {
        is_tty: stdout.is_terminal(),
        columns: super::tty::terminal_size().map(|(columns, _)| columns),
    };
    let result = render(&args, &mut stdout.lock(), terminal);
    // `damon report raw | head` is fine: stop quietly when the reader goes away.
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Checks that options given belong to the chosen style, so a typo'd style is noticed.
fn check_options(args: &Args) -> Result<()> {
    let misplaced: &[(bool, &str, Style)] = &[
        (args.snapshot.is_some(), "--snapshot", Style::Access),
        (args.sort != Sort::Address, "--sort", Style::Access),
        (
            args.address_range.is_some(),
            "--address-range",
            Style::Heatmap,
        ),
        (args.time_range.is_some(), "--time-range", Style::Heatmap),
        (args.resolution.is_some(), "--resolution", Style::Heatmap),
        (args.output.is_some(), "--output", Style::Heatmap),
        (args.record.is_some(), "--record", Style::Heatmap),
        (args.step != 25, "--step", Style::Wss),
    ];
    for (given, flag, style) in misplaced {
        if *given && args.style != *style {
            bail!(
                "{flag} applies to the {} style, not {}",
                style_name(*style),
                style_name(args.style)
            );
        }
    }
    if args.output.is_some() && args.json {
        bail!("--output and --json exclude each other");
    }
    Ok(())
}

fn style_name(style: Style) -> &'static str {
    match style {
        Style::Access => "access",
        Style::Heatmap => "heatmap",
        Style::Wss => "wss",
        Style::Raw => "raw",
        Style::Schemes => "schemes",
    }
}

/// Reads the input and writes the report to `out`; `run` without the process's stdout.
pub fn render(args: &Args, out: &mut dyn Write, terminal: Terminal) -> Result<()> {
    check_options(args)?;
    let (kind, records) = read_record_file(&args.input)?;
    if kind == FileKind::Journal {
        // A note beside the report, not in it: stdout may be a pipe to a script.
        let _ = writeln!(
            std::io::stderr(),
            "note: {} is the journal of a recording that has not finished (still running, or \
             its recorder was killed); `damon record --finish {}` makes it a damo record file",
            args.input.display(),
            args.input.display()
        );
    }
    let name = args.input.display().to_string();
    let input = Input {
        name: &name,
        records: &records,
    };
    let nums = Numbers::new(args.raw_numbers);
    let text = match args.style {
        Style::Access => {
            let opts = AccessOptions {
                snapshot: args.snapshot,
                sort: match args.sort {
                    Sort::Address => SortKey::Address,
                    Sort::Access => SortKey::Access,
                    Sort::Age => SortKey::Age,
                },
                nums,
            };
            if args.json {
                report::access::render_json(&input, &opts)?
            } else {
                report::access::render_text(&input, &opts)?
            }
        }
        Style::Heatmap => {
            let opts = heatmap_options(args, nums, terminal)?;
            match (&args.output, args.json) {
                (Some(path), _) => {
                    let files = report::heatmap::draw_images(&input, &opts, path)?;
                    files
                        .iter()
                        .map(|f| format!("# wrote {}\n", f.display()))
                        .collect()
                }
                (None, true) => report::heatmap::render_json(&input, &opts)?,
                (None, false) => report::heatmap::render_text(&input, &opts)?,
            }
        }
        Style::Wss => {
            let opts = WssOptions {
                step: args.step,
                nums,
                ..WssOptions::default()
            };
            if args.json {
                report::wss::render_json(&input, &opts)
            } else {
                report::wss::render_text(&input, &opts)
            }
        }
        Style::Raw if args.json => report::raw::render_json(&input),
        Style::Raw => report::raw::render_text(&input),
        Style::Schemes if args.json => report::schemes::render_json(&input),
        Style::Schemes => report::schemes::render_text(&input, nums),
    };
    out.write_all(text.as_bytes())
        .context("writing the report")?;
    out.flush().context("writing the report")?;
    Ok(())
}

fn heatmap_options(args: &Args, nums: Numbers, terminal: Terminal) -> Result<HeatmapOptions> {
    let resolution = match &args.resolution {
        Some(r) => Some(parse_resolution(r)?),
        // A terminal's width, less the time labels, when none is asked for.
        None if args.output.is_none() && !args.json && terminal.is_tty => {
            terminal.columns.map(|c| {
                (
                    report::heatmap::TEXT_RESOLUTION.0,
                    usize::from(c).saturating_sub(14).max(20),
                )
            })
        }
        None => None,
    };
    let colour = match args.color {
        When::Always => true,
        When::Never => false,
        When::Auto => terminal.is_tty,
    };
    Ok(HeatmapOptions {
        address_range: args
            .address_range
            .as_deref()
            .map(parse_address_range)
            .transpose()?,
        time_range: args
            .time_range
            .as_deref()
            .map(parse_time_range)
            .transpose()?
            .unwrap_or_default(),
        resolution,
        record: args.record,
        nums,
        colour,
    })
}
