//! damo-compatible record files, and the journal of a recording in progress.
//!
//! `damon record` saves aggregations in the file format of damo (the DAMON user-space tool),
//! so `damo report` works on our recordings and `damon report` on damo's. The layout is
//! described in `record/damo.rs`; the two encodings at [`RecordFormat`]. While it records, it
//! appends to a [`Journal`] at the output path instead, which it converts to damo's format
//! when it ends; `damon report` reads journals too.
//!
//! ```no_run
//! use damon_user::record::{read_records, RecordFormat, RecordWriter};
//! # fn main() -> Result<(), damon_user::record::RecordError> {
//! let mut writer = RecordWriter::new(RecordFormat::JsonCompressed);
//! # let snapshot: damon_user::core::Snapshot = unimplemented!();
//! writer.push(&snapshot);
//! writer.save("damon.data".as_ref())?;
//! let records = read_records("damon.data".as_ref())?;
//! # Ok(()) }
//! ```
mod damo;
mod error;
mod format;
mod journal;
mod model;
pub(crate) mod text;
mod writer;

use std::{fs, path::Path};

pub use error::{DecodeError, RecordError};
pub use format::{FileKind, RecordFormat, parse_record_file, parse_records};
pub use journal::{Finished, Journal, finish_file};
pub use model::{
    Record, RecordBounds, RecordRegion, RecordScheme, RecordSchemeStats, RecordSnapshot,
};
pub use writer::RecordWriter;

/// damo's `data_source` for anything but DAMON_STAT.
pub const DATA_SOURCE_UNKNOWN: &str = "unknown";

/// Reads a record file written by us or by damo, in `json` or `json_compressed` format, or
/// the journal of a recording that has not finished.
pub fn read_records(path: &Path) -> Result<Vec<Record>, RecordError> {
    read_record_file(path).map(|(_, records)| records)
}

/// [`read_records`], also saying what kind of file it was.
pub fn read_record_file(path: &Path) -> Result<(FileKind, Vec<Record>), RecordError> {
    let bytes = fs::read(path).map_err(|source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_record_file(&bytes).map_err(|source| RecordError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
