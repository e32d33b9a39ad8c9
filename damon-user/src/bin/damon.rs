//! `damon`: argument parsing and dispatch; everything else lives in the library.
use clap::{Parser, Subcommand};
use damon_user::cmd;

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
    Faults(cmd::faults::Args),
    Check(cmd::check::Args),
    Workload(cmd::workload::Args),
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(a) => cmd::record::run(a),
        Command::Faults(a) => cmd::faults::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Workload(a) => cmd::workload::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("damon: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
