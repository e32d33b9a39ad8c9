//! The `damon` subcommands: each module has `Args` (clap) and `run`.
pub mod fs;
pub mod record;
pub mod report;
pub mod top;
pub mod workload;
