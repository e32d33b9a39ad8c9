//! DAMON's monitoring model: kdamonds, contexts, targets and adaptive regions, following the
//! kernel's algorithm (`mm/damon/core.c` and `vaddr.c` of Linux), step for step.
//!
//! - [`attrs`]: what a context is asked to do ([`ContextSpec`]) and its validation.
//! - [`target`]: a monitored process, as asked and as the engine keeps it.
//! - [`region`]: address ranges and regions.
//! - `sample`: sampling addresses, and one sample step over all targets.
//! - [`ops`]: the [`Operations`] trait an access check implements.
//! - [`aggregate`]: per-sample counting, merge, split and ageing.
//! - [`vaddr`]: the three regions of an address space and following mapping changes.
//! - [`commit`]: rescaling counters to new attributes.
//! - [`context`]: the steppable engine, [`MonitorContext`].
//! - [`kdamond`]: the thread running an engine, [`start_kdamond`] and [`KdamondHandle`].
//! - [`tune`]: intervals auto-tuning towards an access goal.
//! - `sim`: a simulated memory for tests and benchmarks (feature `testing`).
//! - [`parse_proc_maps`], [`read_proc_maps`]: a process's mappings from `/proc/PID/maps`.
//! - [`snapshot`]: what each aggregation reports.
//! - [`scheme`]: DAMOS: schemes, the regions their access patterns select, their stats.
pub mod aggregate;
pub mod attrs;
pub mod commit;
pub mod context;
mod error;
pub mod kdamond;
pub mod ops;
mod procmaps;
pub mod region;
mod sample;
pub mod scheme;
#[cfg(any(test, feature = "testing"))]
pub mod sim;
pub mod snapshot;
pub mod target;
pub mod tune;
pub mod vaddr;

pub use attrs::{Attrs, ContextSpec, OpsId};
pub use context::MonitorContext;
pub use error::CoreError;
pub use kdamond::{KdamondExit, KdamondHandle, SchemesNow, start_kdamond};
pub use ops::{
    Access, Operations, OpsError, OwnedTarget, OwnedTargets, SampleStep, SampleTargets, TargetRef,
    TargetStep,
};
pub use procmaps::{ProcessKind, parse_proc_maps, process_alive, process_kind, read_proc_maps};
pub use region::{AddrRange, PAGE_SIZE, Region};
pub use scheme::Scheme;
pub use snapshot::{Intervals, RegionSnapshot, Snapshot, TargetSnapshot};
pub use target::{LiveTarget, Pid, TargetSpec};
pub use tune::IntervalsGoal;
