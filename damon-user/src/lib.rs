//! damon: DAMON-style data access monitoring for Linux, rebuilt as eBPF programs plus user
//! space, for stock kernels including those built without DAMON's virtual-address operations.
//!
//! - [`core`]: DAMON's monitoring model: kdamonds, contexts, targets, adaptive regions.
//! - [`bpf`]: loading and driving the eBPF programs.
//! - [`ops`]: the production access check (eBPF walk, MADV_COLD, page faults).
//! - [`monitor`]: the admin tree's production backend (core + eBPF ops).
//! - [`admin`]: DAMON's sysfs admin tree as a model, and served over FUSE.
//! - [`record`]: damo-compatible record files, and the journal of a recording in progress.
//! - [`outfile`]: creating output files safely in directories others can write to.
//! - [`report`]: reports over records and live snapshots.
//! - [`cmd`]: the `damon` subcommands.
pub mod admin;
pub mod bpf;
pub mod cmd;
pub mod core;
pub mod monitor;
pub mod ops;
pub mod outfile;
pub mod record;
pub mod report;
