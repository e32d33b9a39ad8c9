//! Why a context cannot be started, changed or queried.
use super::region::AddrRange;
use super::target::Pid;

/// A rejected context, or a request to a kdamond that cannot be served.
///
/// The variants mirror the kernel's `EINVAL` cases of `damon_set_attrs()` and of the sysfs
/// `state` file, but name the offending value so the admin tree and the CLI can say exactly
/// what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{name} must not be 0")]
    ZeroInterval { name: &'static str },
    #[error("min_nr_regions {min} is below 3")]
    MinNrRegionsTooSmall { min: u64 },
    #[error("min_nr_regions {min} is above max_nr_regions {max}")]
    MinAboveMax { min: u64, max: u64 },
    #[error("sample interval {sample_us} us is above aggregation interval {aggr_us} us")]
    SampleAboveAggr { sample_us: u64, aggr_us: u64 },
    #[error(
        "intervals goal refused: the sample interval {sample_us} us must lie within its bounds {min_sample_us}-{max_sample_us} us"
    )]
    InvalidIntervalsGoal {
        sample_us: u64,
        min_sample_us: u64,
        max_sample_us: u64,
    },
    #[error("unknown operations {name:?}")]
    UnknownOps { name: String },
    #[error("operations {name:?} are not supported by this build")]
    UnsupportedOps { name: String },
    #[error("invalid target pid {pid}")]
    InvalidPid { pid: Pid },
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: Pid },
    #[error("fvaddr target pid {pid} has no ranges")]
    NoRanges { pid: Pid },
    #[error("fvaddr range {range} of pid {pid} is empty")]
    EmptyRange { pid: Pid, range: AddrRange },
    #[error("fvaddr ranges {prev} and {next} of pid {pid} overlap or are unsorted")]
    OverlappingRanges {
        pid: Pid,
        prev: AddrRange,
        next: AddrRange,
    },
    #[error("kdamond is not running")]
    NotRunning,
    /// A request the kdamond dropped unanswered: it stopped first, or the request was a
    /// tried-regions walk and every scheme is inactive (watermarks).
    #[error("canceled: the kdamond stopped, or every scheme is inactive")]
    Canceled,
    #[error("cannot spawn kdamond thread {name}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kdamond thread {name} exited before it started")]
    ThreadStart { name: String },
}
