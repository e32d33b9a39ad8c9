//! Errors of reading and writing record files.
use std::{io, path::PathBuf};

use thiserror::Error;

/// What is wrong with the bytes of a record file, independent of where they came from.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Neither JSON nor zlib: damo's `file -b` check would reject it too.
    #[error("not a damo json or json_compressed record (starts with {head:?})")]
    UnknownFormat { head: String },
    #[error("zlib data of json_compressed record is corrupt")]
    Decompress {
        #[source]
        source: io::Error,
    },
    #[error("invalid record json")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    /// A line of a journal that is not what the journal's layout allows.
    #[error("journal line {line}: {reason}")]
    Journal { line: usize, reason: String },
    /// A value that parsed but makes no sense, e.g. a region that ends before it starts.
    #[error("{location}: {field} {value:?} {reason}")]
    InvalidValue {
        location: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Errors of [`read_records`](super::read_records), [`RecordWriter`](super::RecordWriter),
/// [`Journal`](super::Journal) and
/// [`RecordFormat`](super::RecordFormat).
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("cannot read record file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write record file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    #[error("cannot encode records as json")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path} is not the journal of an unfinished recording (a damo record file needs no finishing)"
    )]
    NotAJournal { path: PathBuf },
    #[error("unknown record format {name:?}, expected \"json\" or \"json_compressed\"")]
    UnknownFormatName { name: String },
}
