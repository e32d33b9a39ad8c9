//! Errors of reports: bad user input and unusable records.
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("bad address range {value:?}: {reason}")]
    BadAddressRange { value: String, reason: &'static str },
    #[error("bad time range {value:?}: {reason}")]
    BadTimeRange { value: String, reason: &'static str },
    #[error("bad resolution {value:?}: expected ROWSxCOLUMNS, e.g. 40x80, each 1-{max}")]
    BadResolution { value: String, max: usize },
    #[error("snapshot {index} does not exist: record {record} has {nr_snapshots} snapshots")]
    NoSuchSnapshot {
        index: usize,
        record: usize,
        nr_snapshots: usize,
    },
    #[error("record {record} does not exist: the input has {nr_records} records")]
    NoSuchRecord { record: usize, nr_records: usize },
    #[error("the input has no snapshots")]
    NoSnapshots,
    #[error("time range {start} - {end} starts after record {record} ends, at {record_end}")]
    TimeRangeAfterEnd {
        start: String,
        end: String,
        record: usize,
        record_end: String,
    },
    #[error("cannot draw {path}: unsupported image type, expected a .png or .svg file name")]
    UnsupportedImage { path: PathBuf },
    #[error("cannot draw {path}: {reason}")]
    Draw { path: PathBuf, reason: String },
}
