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
use crate::core::{KdamondExit, kdamond::monotonic_ns, scheme::SchemeStats};
use crate::record::{Journal, RecordFormat, RecordScheme, finish_file};

#[derive(Debug, ClapArgs)]
#[command(
    about = "Record data access patterns of processes into a file",
    after_help = "Runs until the duration ends, Ctrl-C (SIGINT, SIGTERM, SIGHUP), or every target \
exits, then writes the file as a damo record (`damo report` reads it). While it runs, the file is \
a journal that grows by appending every --flush-every seconds (`damon report` reads it): a \
recorder that is killed loses only what it had not appended, and `damon record --finish FILE` \
turns the journal it left into a damo record. With --damos-* schemes, their stats go into the \
journal at every flush and into the finished file (`damon report schemes` shows them).\n\n\
EXAMPLES:\n  damon record -p 1234 -d 10\n  damon record -o app.data -- ./app --flag\n  damon record -p 1234 --ops fvaddr --range 0x7f0000000000-0x7f0010000000\n  damon record -p 1234 --sample-us 1000 --aggr-us 50000 --format json\n  damon record -p 1234 --damos-action pageout --damos-access-rate 0% 0% --damos-age 2s max --damos-quotas 0 10M 1s\n  damon record --finish app.data       # after a recorder was killed"
)]
pub struct Args {
    /// Output file.
    #[arg(short, long, default_value = "damon.data")]
    pub output: PathBuf,
    /// Seconds to record (default: until Ctrl-C or every target exits).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// Record file format: json or json_compressed (default; with --finish: the one the
    /// recording was started with).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<RecordFormat>,
    /// Seconds between appends to the output file: at most this much of the recording is
    /// lost if the recorder is killed.
    #[arg(long, default_value_t = 0.5)]
    pub flush_every: f64,
    /// Turn the journal a killed recorder left at FILE into a damo record file, and exit.
    #[arg(long, value_name = "FILE")]
    pub finish: Option<PathBuf>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

fn parse_format(s: &str) -> Result<RecordFormat, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// Progress and summary lines go to stderr, which may be a terminal that hung up: a failed
/// write is no reason to stop (and `eprint!` would panic on it).
fn say(args: std::fmt::Arguments) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.flush();
}

/// The scheme stats last appended to the journal, so that unchanged stats are not appended
/// again.
#[derive(Default)]
struct SchemesSaved(Option<Vec<SchemeStats>>);

impl SchemesSaved {
    /// Appends the schemes' stats when they changed since the last append.
    fn push(&mut self, session: &mut Session, journal: &mut Journal) -> Result<()> {
        let Some(stats) = session.scheme_stats() else {
            return Ok(());
        };
        if self.0.as_deref() == Some(stats) {
            return Ok(());
        }
        let stats = stats.to_vec();
        let schemes = RecordScheme::all(&session.schemes, &stats, monotonic_ns());
        journal.push_schemes(0, 0, schemes)?;
        self.0 = Some(stats);
        Ok(())
    }
}

pub fn run(args: Args) -> Result<()> {
    if let Some(journal) = &args.finish {
        if !args.monitor.pids.is_empty() || !args.monitor.command.is_empty() {
            bail!("--finish converts a file and monitors nothing: give no -p PID or COMMAND");
        }
        let done = finish_file(journal, args.format)?;
        say(format_args!(
            "Finished {}: {} snapshots in {} records, as {}\n",
            journal.display(),
            done.nr_snapshots,
            done.nr_records,
            done.format
        ));
        return Ok(());
    }
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
    let signals = StopSignals::install().context("installing SIGINT/SIGTERM/SIGHUP handlers")?;
    let mut session = Session::start(&args.monitor)?;
    let out = &args.output;
    let format = args.format.unwrap_or_default();
    let mut journal = if session.schemes.is_empty() {
        Journal::create(out, format)?
    } else {
        Journal::create_with_schemes(out, format)?
    };
    let mut schemes_saved = SchemesSaved::default();
    say(format_args!(
        "Recording process {} into {}... Hit Ctrl-C to end.\n",
        session
            .pids
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    ));
    let tty = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let flush_every = Duration::from_secs_f64(args.flush_every);
    let mut last_flush = Instant::now();
    let mut nr_regions = 0;
    let deadline = args.duration.map(|d| t0 + Duration::from_secs_f64(d));
    let reason = loop {
        match session.next_event(&signals, deadline) {
            Event::Snapshot(s) => {
                nr_regions = s.targets.iter().map(|t| t.regions.len()).sum();
                journal.push(&s)?;
            }
            Event::Idle => {}
            Event::Ended(reason) => break reason,
        }
        // Appending costs the same at any length of the recording: flush on time.
        if last_flush.elapsed() >= flush_every {
            schemes_saved.push(&mut session, &mut journal)?;
            journal.flush()?;
            last_flush = Instant::now();
        }
        if tty {
            say(format_args!(
                "\r[ {:6.1}s ] {} snapshots, {} regions   ",
                t0.elapsed().as_secs_f64(),
                journal.nr_snapshots(),
                nr_regions
            ));
        }
    };
    // Aggregations completed before the stop are still queued.
    let mut queued = Ok(());
    let exit = session.finish(|s| {
        if queued.is_ok() {
            queued = journal.push(s);
        }
    });
    queued?;
    // The final stats, read by finish() before it stopped the kdamond.
    schemes_saved.push(&mut session, &mut journal)?;
    let nr_snapshots = journal.nr_snapshots();
    journal.finish().with_context(|| {
        format!(
            "the recording stays in {} as a journal (`damon report` reads it; `damon record \
             --finish {}` retries)",
            out.display(),
            out.display()
        )
    })?;
    if tty {
        say(format_args!("\n"));
    }
    // A monitor that failed is an error, whatever it recorded before.
    if let Some(KdamondExit::Failed(e)) = exit {
        bail!(
            "monitoring failed: {e} (the {nr_snapshots} snapshots recorded before are in {})",
            out.display()
        );
    }
    say(format_args!(
        "Recorded {} snapshots in {:.1}s ({reason}{}) to {}\n",
        nr_snapshots,
        t0.elapsed().as_secs_f64(),
        exit.map(|e| format!(": {e}")).unwrap_or_default(),
        out.display()
    ));
    Ok(())
}
