//! `damon record`: monitor processes and save the snapshots as a damo record file.
use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;

use super::{
    StopSignals,
    session::{Event, MonitorArgs, Session},
};
use crate::record::{RecordFormat, RecordWriter};

#[derive(Debug, ClapArgs)]
#[command(
    about = "Record data access patterns of processes into a file",
    after_help = "Runs until the duration ends, Ctrl-C, or every target exits. The file is a damo \
record (`damo report` reads it) and is rewritten every few seconds, so a killed run leaves a \
readable file.\n\n\
EXAMPLES:\n  damon record -p 1234 -d 10\n  damon record -o app.data -- ./app --flag\n  damon record -p 1234 --ops fvaddr --range 0x7f0000000000-0x7f0010000000\n  damon record -p 1234 --sample-us 1000 --aggr-us 50000 --format json"
)]
pub struct Args {
    /// Output file.
    #[arg(short, long, default_value = "damon.data")]
    pub output: PathBuf,
    /// Seconds to record (default: until Ctrl-C or every target exits).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Record file format: json or json_compressed.
    #[arg(long, default_value = "json_compressed", value_parser = parse_format)]
    pub format: RecordFormat,
    /// Seconds between rewrites of the output file (longer once a rewrite takes more than a
    /// tenth of this).
    #[arg(long, default_value_t = 2.0)]
    pub flush_every: f64,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

fn parse_format(s: &str) -> Result<RecordFormat, String> {
    s.parse().map_err(|e| format!("{e}"))
}

pub fn run(args: Args) -> Result<()> {
    if let Some(d) = args.duration
        && !(d > 0.0 && d.is_finite())
    {
        bail!("--duration must be a positive number of seconds, not {d}");
    }
    if !(args.flush_every > 0.0 && args.flush_every.is_finite()) {
        bail!(
            "--flush-every must be a positive number of seconds, not {}",
            args.flush_every
        );
    }
    let signals = StopSignals::install().context("installing SIGINT/SIGTERM handlers")?;
    let mut session = Session::start(&args.monitor)?;
    let out = &args.output;
    eprintln!(
        "Recording process {} into {}... Hit Ctrl-C to end.",
        session
            .pids
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    );
    let mut writer = RecordWriter::new(args.format);
    let tty = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let mut last_flush = Instant::now();
    let mut flush_cost = 0.0;
    let mut nr_regions = 0;
    let deadline = args.duration.map(|d| t0 + Duration::from_secs_f64(d));
    let reason = loop {
        match session.next_event(&signals, deadline) {
            Event::Snapshot(s) => {
                nr_regions = s.targets.iter().map(|t| t.regions.len()).sum();
                writer.push(&s);
            }
            Event::Idle => {}
            Event::Ended(reason) => break reason,
        }
        // damo's format is one document, so each flush rewrites the whole recording. Spacing
        // flushes at least ten times their own cost keeps that under 10 % of the run.
        if last_flush.elapsed().as_secs_f64() >= args.flush_every.max(10.0 * flush_cost) {
            let t = Instant::now();
            writer
                .flush(out)
                .with_context(|| format!("writing {}", out.display()))?;
            flush_cost = t.elapsed().as_secs_f64();
            last_flush = Instant::now();
        }
        if tty {
            eprint!(
                "\r[ {:6.1}s ] {} snapshots, {} regions   ",
                t0.elapsed().as_secs_f64(),
                writer.nr_snapshots(),
                nr_regions
            );
            let _ = std::io::stderr().flush();
        }
    };
    // Aggregations completed before the stop are still queued.
    let exit = session.finish(|s| writer.push(s));
    writer
        .flush(out)
        .with_context(|| format!("writing {}", out.display()))?;
    if tty {
        eprintln!();
    }
    eprintln!(
        "Recorded {} snapshots in {:.1}s ({reason}{}) to {}",
        writer.nr_snapshots(),
        t0.elapsed().as_secs_f64(),
        exit.map(|e| format!(": {e}")).unwrap_or_default(),
        out.display()
    );
    Ok(())
}
