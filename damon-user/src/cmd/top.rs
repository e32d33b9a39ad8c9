//! `damon top`: a live view of the hottest memory of processes.
//!
//! The renderers are [`render_top`] (full screen, on a terminal) and [`render_plain`] (one
//! block per refresh, when stdout is not a terminal); `run` feeds them aggregations.
use std::{
    collections::VecDeque,
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use crate::core::KdamondExit;
use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;

use super::{
    StopSignals,
    session::{Event, MonitorArgs, Session},
    tty::{self, LiveScreen},
};
use crate::core::{Snapshot, kdamond::monotonic_ns};
use crate::record::RecordScheme;
pub use crate::report::top::{render_plain, render_top};

const EXAMPLES: &str = "\
EXAMPLES:
  damon top -p 1234                     # refresh at every aggregation
  damon top -p 1234 -p 5678 -d 2        # two processes, every 2 seconds
  damon top --aggr-us 200000 -- ./app   # start ./app and watch it
  damon top -p 1234 | tee top.log       # plain blocks when not on a terminal
  damon top -p 1234 --damos-action stat --damos-access-rate 0% 0% --damos-age 2s max
                                        # and what a scheme would act on";

#[derive(Debug, ClapArgs)]
#[command(about = "Show the hottest memory regions of processes, live", after_help = EXAMPLES)]
pub struct Args {
    /// Seconds between screen refreshes (default: every aggregation).
    #[arg(short = 'd', long = "delay", value_name = "SECONDS", value_parser = positive_seconds)]
    pub delay: Option<f64>,
    /// Seconds to run (default: until `q`, Ctrl-C, or every target exits).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

/// How a live view refreshes and when it ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchOptions {
    /// Refresh period; `None`: at every aggregation.
    pub delay: Option<f64>,
    pub duration: Option<f64>,
}

/// Aggregations kept for the heat strip.
const HISTORY: usize = 120;

/// Shows the live view of `session` until `q`, Ctrl-C, the duration, or the targets' end;
/// hands every aggregation to `each`. Full screen on a terminal (restored on any exit), plain
/// blocks otherwise. Returns why it ended.
pub fn watch(
    session: &mut Session,
    signals: &StopSignals,
    opts: WatchOptions,
    mut each: impl FnMut(&Snapshot),
) -> Result<&'static str> {
    let tty = std::io::stdout().is_terminal();
    let screen = tty.then(LiveScreen::enter);
    let mut history: VecDeque<Snapshot> = VecDeque::with_capacity(HISTORY);
    let deadline = opts
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let mut last_refresh = Instant::now();
    let mut dirty = true;
    let reason = loop {
        if screen.as_ref().is_some_and(|s| s.quit_pressed()) {
            break "quit";
        }
        match session.next_event(signals, deadline) {
            Event::Snapshot(s) => {
                each(&s);
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(s);
                dirty = true;
            }
            Event::Idle => {}
            Event::Ended(reason) => break reason,
        }
        let due = match opts.delay {
            Some(d) => last_refresh.elapsed().as_secs_f64() >= d,
            None => dirty,
        };
        if !due || history.is_empty() {
            continue;
        }
        last_refresh = Instant::now();
        dirty = false;
        let schemes = match session.scheme_stats() {
            Some(stats) => {
                let stats = stats.to_vec();
                RecordScheme::all(&session.schemes, &stats, monotonic_ns())
            }
            None => Vec::new(),
        };
        match &screen {
            Some(screen) => {
                let (w, h) = tty::size();
                screen.draw(&render_top(history.make_contiguous(), &schemes, w, h, true));
            }
            None => {
                if let Some(s) = history.back() {
                    let mut out = std::io::stdout().lock();
                    out.write_all(render_plain(s, &schemes).as_bytes())?;
                    out.flush()?;
                }
            }
        }
    };
    drop(screen);
    Ok(reason)
}

pub fn run(args: Args) -> Result<()> {
    let signals = StopSignals::install().context("installing SIGINT/SIGTERM/SIGHUP handlers")?;
    let mut session = Session::start(&args.monitor)?;
    let opts = WatchOptions {
        delay: args.delay,
        duration: args.duration,
    };
    let reason = watch(&mut session, &signals, opts, |_| {})?;
    let exit = session.finish(|_| {});
    if let Some(KdamondExit::Failed(e)) = exit {
        bail!("monitoring failed: {e}");
    }
    // Not eprintln!: after a hangup (SIGHUP) the terminal is gone, and it would panic.
    let _ = writeln!(
        std::io::stderr(),
        "damon top: {reason}{}",
        exit.map(|e| format!(" ({e})")).unwrap_or_default()
    );
    Ok(())
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn parses_pids_delay_intervals_and_command() {
        let cli = Cli::try_parse_from([
            "top",
            "-p",
            "12",
            "-p",
            "34",
            "-d",
            "0.5",
            "--aggr-us",
            "200000",
            "--",
            "./app",
            "-x",
        ])
        .unwrap();
        assert_eq!(cli.args.monitor.pids, vec![12, 34]);
        assert_eq!(cli.args.delay, Some(0.5));
        assert_eq!(cli.args.monitor.aggr_us, 200_000);
        assert_eq!(cli.args.monitor.command, vec!["./app", "-x"]);
    }

    #[test]
    fn takes_damo_short_options_and_spellings() {
        let cases: [(&[&str], _); 2] = [
            (
                &[
                    "-s", "1000", "-a", "50ms", "-u", "2s", "-n", "20", "-m", "300",
                ],
                (1000, 50_000, 2_000_000, 20, 300),
            ),
            (
                &[
                    "--sample", "2000", "--aggr", "40000", "--updr", "1s", "--minr", "5", "--maxr",
                    "50",
                ],
                (2000, 40_000, 1_000_000, 5, 50),
            ),
        ];
        for (args, want) in cases {
            let cli = Cli::try_parse_from(["top"].iter().chain(args)).unwrap();
            let m = &cli.args.monitor;
            let got = (m.sample_us, m.aggr_us, m.update_us);
            assert_eq!(
                (got, m.min_regions, m.max_regions),
                ((want.0, want.1, want.2), want.3, want.4),
                "{args:?}"
            );
        }
        let err = Cli::try_parse_from(["top", "-s", "5 parsecs"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"5 parsecs\" is not a duration"), "{err}");
    }

    #[test]
    fn rejects_a_bad_delay_naming_it() {
        let err = Cli::try_parse_from(["top", "-d", "0"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"0\" is not a positive number of seconds"),
            "{err}"
        );
    }
}
