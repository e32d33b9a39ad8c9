//! damo-compatible record files.
//!
//! `damon record` saves aggregations in the file format of damo (the DAMON user-space tool),
//! so `damo report` works on our recordings and `damon report` on damo's. The layout is
//! described in `record/damo.rs`; the two encodings at [`RecordFormat`].
//!
//! ```no_run
//! use damon_user::record::{read_records, RecordFormat, RecordWriter};
//! # fn main() -> Result<(), damon_user::record::RecordError> {
//! let mut writer = RecordWriter::new(RecordFormat::JsonCompressed);
//! # let snapshot: damon_user::core::Snapshot = unimplemented!();
//! writer.push(&snapshot);
//! writer.flush("damon.data".as_ref())?;
//! let records = read_records("damon.data".as_ref())?;
//! # Ok(()) }
//! ```
mod damo;
mod error;
mod format;
mod model;
pub(crate) mod text;
mod writer;

use std::{fs, path::Path};

pub use error::{ParseError, RecordError};
pub use format::{RecordFormat, parse_records};
pub use model::{Record, RecordRegion, RecordSnapshot};
pub use writer::RecordWriter;

/// damo's `data_source` for anything but DAMON_STAT.
pub const DATA_SOURCE_UNKNOWN: &str = "unknown";

/// Reads a record file written by us or by damo, in `json` or `json_compressed` format.
pub fn read_records(path: &Path) -> Result<Vec<Record>, RecordError> {
    let bytes = fs::read(path).map_err(|source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_records(&bytes).map_err(|source| RecordError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
