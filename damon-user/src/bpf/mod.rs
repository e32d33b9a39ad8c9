//! Loading and driving damon's eBPF programs.
//!
//! - [`programs`]: one loaded set of programs and maps (one per kdamond), the sampling run,
//!   and RAII cleanup.
//! - [`layout`]: what the programs must know about the running kernel (offsets, direct-map
//!   and `struct page` bases, paging levels), found once per boot and cached.
//! - [`btf`]: struct offsets and enum values from the kernel's BTF.
//! - [`shared`]: the `BPF_F_MMAPABLE` tables, mapped into our memory.
//! - [`peek`], [`chase`]: reading kernel memory at start-up, and following pointers from our
//!   own fd table (a target's `struct pid`, a memfd's folio).
//! - [`loader`]: the embedded object, program lookups, log forwarding.
//! - [`probe`]: a start-up check of what the kernel offers, reported in words.
//! - [`pmu`]: the optional perf event that samples data addresses.
//! - [`marker`], [`sys`]: pages of our own for calibration, raw system calls.
pub mod btf;
pub mod chase;
pub mod layout;
pub mod loader;
pub mod marker;
pub mod peek;
pub mod pmu;
pub mod probe;
pub mod programs;
pub mod shared;
pub mod sys;

pub use layout::{FoundLayout, KernelLayout, LayoutError, LayoutOrigin};
pub use pmu::{PerfSampler, PmuError};
pub use programs::{BpfError, MonitorPrograms, ProgramOptions, Step, TargetState};
