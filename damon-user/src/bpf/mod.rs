//! Loading and driving damon's eBPF programs.
//!
//! - [`programs`]: one loaded set of programs and maps (one per kdamond), the sampling run,
//!   and RAII cleanup; [`error`] what can go wrong there.
//! - [`layout`]: what the programs must know about the running kernel (offsets, direct-map
//!   and `struct page` bases, paging levels); [`calibrate`] finds it once per boot and caches
//!   it.
//! - [`btf`]: struct offsets and enum values from the kernel's BTF.
//! - [`shared`]: the `BPF_F_MMAPABLE` tables, mapped into our memory.
//! - [`peek`], [`chase`]: reading kernel memory at start-up, and following pointers from our
//!   own fd table (a target's `struct pid`, a memfd's folio).
//! - [`loader`]: the embedded object, program and map lookups, log forwarding.
//! - [`probe`]: a start-up check of what the kernel offers, reported in words.
//! - [`pmu`]: the optional perf event that samples data addresses.
//! - [`marker`], [`sys`]: pages of our own for calibration, raw system calls.
//!
//! Dependencies point one way: `programs` → `calibrate` → `chase`/`peek` → `layout`,
//! `loader`, `error`; nothing here depends on `programs`.
pub mod btf;
pub mod calibrate;
pub mod chase;
pub mod error;
pub mod layout;
pub mod loader;
pub mod marker;
pub mod peek;
pub mod pmu;
pub mod probe;
pub mod programs;
pub mod shared;
pub mod sys;

pub use calibrate::{FoundLayout, LayoutError, LayoutOrigin};
pub use error::BpfError;
pub use layout::KernelLayout;
pub use pmu::{PerfSampler, PmuError};
pub use programs::{MonitorPrograms, ProgramOptions, Step, TargetState};
