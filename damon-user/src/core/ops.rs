//! The address-space side of monitoring: what the core asks of an access check.
use std::error::Error;

use super::region::{AddrRange, Region};

/// The target a call is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRef {
    /// Index of the target in its context.
    pub idx: usize,
    pub pid: i32,
    /// Region bounds changed (split, merge, ops update or commit) since this target's previous
    /// prepare, so an implementation that mirrors the regions in the kernel must rewrite its
    /// table. The same value is passed to the `prepare_access_checks` and `check_accesses` of one
    /// sample; it is true for the first sample of a target.
    pub layout_changed: bool,
}

/// A failed call into [`Operations`].
///
/// The core treats the two kinds differently: [`OpsError::TargetGone`] affects one target (its
/// regions read "not accessed", as in the kernel when `damon_get_mm()` fails), while
/// [`OpsError::Failed`] stops the kdamond, with the error as its exit reason.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("process {pid} is gone")]
    TargetGone { pid: i32 },
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
}

impl OpsError {
    pub fn failed(
        context: impl Into<String>,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        OpsError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// An error and all its sources, `": "`-separated: `Display` of [`OpsError::Failed`] shows only
/// its context, which is too little for an exit reason.
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The address-space side of monitoring, like the kernel's `struct damon_operations`.
pub trait Operations: Send + 'static {
    /// vaddr: the target's memory mappings, sorted, non-overlapping (the core derives the three
    /// regions). `Err(TargetGone)` when the process is gone.
    fn mappings(&mut self, pid: i32) -> Result<Vec<AddrRange>, OpsError>;

    /// Whether the process still exists; a kdamond none of whose targets is valid stops.
    fn target_valid(&mut self, pid: i32) -> bool;

    /// Before a sample: the core has already set each region's `sampling_addr` (page aligned,
    /// random in `[start, end)`, from the core's seeded RNG). Ops clears the Accessed bit there;
    /// it may move a `sampling_addr` elsewhere inside the same region, and must change nothing
    /// else.
    fn prepare_access_checks(
        &mut self,
        target: &TargetRef,
        regions: &mut [Region],
    ) -> Result<(), OpsError>;

    /// After the sample interval: set `accessed[i]` when `regions[i]` was accessed since
    /// prepare. `accessed.len() == regions.len()`, all false on entry.
    fn check_accesses(
        &mut self,
        target: &TargetRef,
        regions: &[Region],
        accessed: &mut [bool],
    ) -> Result<(), OpsError>;

    /// The kdamond is stopping.
    fn cleanup(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_includes_sources() {
        let err = OpsError::failed(
            "reading page tables of pid 7",
            std::io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(err.to_string(), "reading page tables of pid 7");
        let chain = error_chain(&err);
        assert!(
            chain.starts_with("reading page tables of pid 7: Operation not permitted"),
            "{chain}"
        );
        assert_eq!(
            error_chain(&OpsError::TargetGone { pid: 3 }),
            "process 3 is gone"
        );
    }
}
