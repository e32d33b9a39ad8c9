//! damon: DAMON-style data access monitoring for Linux, rebuilt as eBPF programs plus user
//! space, for stock kernels including those built without DAMON's virtual-address operations.
//!
//! - [`core`]: DAMON's monitoring model: kdamonds, contexts, targets, adaptive regions.
//! - [`bpf`]: loading and driving the eBPF programs.
//! - [`access`]: the access check, the core's `Operations` (eBPF walk, MADV_COLD, page faults).
//! - [`runtime`]: composition: kdamonds with the eBPF access check, for the CLI and the admin
//!   tree.
//! - [`admin`]: DAMON's sysfs admin tree as a model, and served over FUSE.
//! - [`record`]: damo-compatible record files, and the journal of a recording in progress.
//! - [`error`]: how errors print: [`error::Chain`], an error with its causes.
//! - [`outfile`]: creating output files safely in directories others can write to.
//! - [`report`]: reports over records and live snapshots.
//! - [`serve`]: the `damon serve` agent: target groups followed as processes come and go,
//!   exported to Prometheus.
//! - [`cmd`]: the `damon` subcommands.
pub mod access;
pub mod admin;
pub mod bpf;
pub mod cmd;
pub mod core;
pub mod error;
pub mod outfile;
pub mod proctree;
pub mod record;
pub mod report;
pub mod runtime;
pub mod serve;
