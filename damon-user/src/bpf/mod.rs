//! Loading and driving damon's eBPF programs.
//!
//! - [`btf`]: struct offsets from the kernel's BTF.
//! - [`layout`]: what the page-table walk must know about the running kernel (offsets,
//!   direct-map base found by calibration, paging levels), probed once per process.
//! - [`programs`]: one loaded set of programs and maps (one per kdamond), with RAII cleanup.
//! - [`probe`]: a start-up check of what the kernel offers, reported in words.
//! - [`sys`]: raw system calls.
pub mod btf;
pub mod layout;
pub mod pmu;
pub mod probe;
pub mod programs;
pub mod sys;

pub use layout::KernelLayout;
pub use pmu::{PerfSampler, PmuError};
pub use programs::{BpfError, MonitorPrograms, ProgramOptions, WalkPath};

/// The eBPF object built by `build.rs`, embedded in the binary.
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/damon-ebpf"));
