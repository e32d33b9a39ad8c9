//! DAMON's monitoring model.
pub mod snapshot;
pub use snapshot::{Intervals, RegionSnapshot, Snapshot, TargetSnapshot};
