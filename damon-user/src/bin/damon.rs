//! `damon`: argument parsing and dispatch; everything else lives in the library.
use clap::{Parser, Subcommand};
use damon_user::{cmd, error::Chain};

#[derive(Parser)]
#[command(
    name = "damon",
    version,
    about = "Data access monitor: which memory of a process is hot and which is cold",
    long_about = "Data access monitor: which memory of a process is hot and which is cold.\n\n\
DAMON's adaptive-region monitoring, run by eBPF programs and this binary on stock kernels, \
including kernels built without DAMON. Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, \
CAP_SYS_NICE; CAP_SYS_ADMIN for `fs`).",
    after_help = "EXAMPLES:\n  damon record -p 1234 -d 10\n  damon report access\n  damon top -- ./my-program\n  damon fs /tmp/damon-admin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Record(cmd::record::Args),
    Report(cmd::report::Args),
    Top(cmd::top::Args),
    #[command(
        about = "Serve DAMON's sysfs admin tree over FUSE at a directory",
        after_help = "Scripts and tools written for /sys/kernel/mm/damon/admin work unchanged against the \
mount; `echo on > kdamonds/0/state` starts a kdamond with the eBPF access check. Runs in the \
foreground until Ctrl-C, SIGTERM, SIGHUP or `umount DIR`. After a SIGKILL the mount is left broken \
(\"Transport endpoint is not connected\"): `umount -l DIR` removes it.\n\n\
EXAMPLES:\n  damon fs /tmp/damon &\n  cd /tmp/damon && echo 1 > kdamonds/nr_kdamonds\n  \
sudo unshare -m sh -c 'mount --bind /tmp/damon /sys/kernel/mm/damon/admin && damo status'"
    )]
    Fs(cmd::fs::Args),
    Serve(cmd::serve::Args),
    Faults(cmd::faults::Args),
    Check(cmd::check::Args),
    Workload(cmd::workload::Args),
    Demo(cmd::demo::Args),
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_micros()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(a) => cmd::record::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Top(a) => cmd::top::run(a),
        Command::Fs(a) => cmd::fs::run(
            a,
            std::sync::Arc::new(damon_user::runtime::EbpfBackend::default()),
        ),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Faults(a) => cmd::faults::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Workload(a) => cmd::workload::run(a),
        Command::Demo(a) => cmd::demo::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!, which panics when stderr is a terminal that hung up.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "damon: {}", Chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
