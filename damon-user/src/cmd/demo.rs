//! `damon demo`: the product working with zero arguments. Starts the bundled workload (a hot
//! and a cold buffer that swap roles halfway), shows the live view on it for about 15 s while
//! recording, then prints the access report and a heatmap of what was recorded.
use std::{io::IsTerminal, path::PathBuf};

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use clap::Parser;

use super::{
    StopSignals,
    session::{MonitorArgs, Session},
    top::{WatchOptions, watch},
};
use crate::{
    record::{RecordFormat, RecordWriter, read_records},
    report::{Input, Numbers, access, heatmap},
};

#[derive(Debug, ClapArgs)]
#[command(
    about = "Watch a bundled synthetic workload: live view, then a report and a heatmap",
    after_help = "EXAMPLES:\n  damon demo\n  damon demo --seconds 30 -o demo.data"
)]
pub struct Args {
    /// Seconds of live view.
    #[arg(long, default_value_t = 15.0)]
    pub seconds: f64,
    /// Where to keep the recording (default: a file in the temporary directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Parses the monitoring options as `damon top` would, so the demo runs with the defaults.
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    monitor: MonitorArgs,
}

pub fn run(args: Args) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        anyhow::bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    let exe = std::env::current_exe().context("locating the damon binary")?;
    let swap = format!("{:.1}", args.seconds / 2.0);
    let lifetime = format!("{:.1}", args.seconds + 5.0);
    let exe_s = exe.to_string_lossy().into_owned();
    let argv = [
        "damon",
        "--",
        &exe_s,
        "workload",
        "hotcold",
        "--hot-mib",
        "32",
        "--cold-mib",
        "96",
        "--swap-after",
        &swap,
        "--duration",
        &lifetime,
    ];
    let monitor = Defaults::try_parse_from(argv)
        .context("demo arguments")?
        .monitor;
    println!(
        "damon demo: a workload with a 32 MiB hot buffer and a 96 MiB cold one, which swap roles after {swap} s.\n\
         Watching it for {:.0} s with DAMON's defaults (5 ms samples, 100 ms aggregations)...",
        args.seconds
    );
    let signals = StopSignals::install().context("installing SIGINT/SIGTERM/SIGHUP handlers")?;
    let mut session = Session::start(&monitor)?;
    let mut writer = RecordWriter::new(RecordFormat::JsonCompressed);
    let opts = WatchOptions {
        delay: None,
        duration: Some(args.seconds),
    };
    let reason = watch(&mut session, &signals, opts, |s| writer.push(s))?;
    session.finish(|s| writer.push(s));
    drop(session);
    let path = args.output.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("damon-demo-{}.data", std::process::id()))
    });
    writer
        .save(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    let records = read_records(&path)?;
    let name = path.display().to_string();
    let input = Input {
        name: &name,
        records: &records,
    };
    let colour = std::io::stdout().is_terminal();
    println!(
        "\nLive view ended ({reason}); {} aggregations recorded in {name}.\n",
        writer.nr_snapshots()
    );
    println!("$ damon report access --sort access -i {name}");
    let opts = access::AccessOptions {
        sort: access::SortKey::Access,
        ..Default::default()
    };
    let table = access::render_text(&input, &opts)?;
    // The hottest rows are the point; the full table is one command away.
    for line in table.lines().take(30) {
        println!("{line}");
    }
    println!("\n$ damon report heatmap -i {name}");
    let hopts = heatmap::HeatmapOptions {
        resolution: Some((20, 80)),
        colour,
        nums: Numbers::default(),
        ..Default::default()
    };
    print!("{}", heatmap::render_text(&input, &hopts)?);
    println!(
        "\nThe hot buffer moved halfway through: the heatmap shows the swap. Try `damon top -p PID` on your own programs."
    );
    Ok(())
}
