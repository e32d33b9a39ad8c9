//! The two on-disk formats damo reads and writes itself, and telling them apart.
use std::{
    fmt,
    io::{self, BufWriter, Write},
    str::FromStr,
};

use flate2::{Compression, write::ZlibEncoder};

use super::{DecodeError, Record, RecordError, damo, damo::SnapshotSource, journal};

/// damo's `json` and `json_compressed` record file types.
///
/// Prefer [`RecordFormat::JsonCompressed`], damo's default: damo 3.x tells formats apart with
/// `file -b`, and compares its answer with "JSON data", while file 5.4x says "JSON text data";
/// so damo can read our (and its own) `json` files only where `file` is old.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordFormat {
    /// A JSON list of records.
    Json,
    /// The same JSON, zlib-compressed (RFC 1950, Python's `zlib.compress`).
    #[default]
    JsonCompressed,
}

impl FromStr for RecordFormat {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(RecordFormat::Json),
            "json_compressed" => Ok(RecordFormat::JsonCompressed),
            other => Err(RecordError::UnknownFormatName {
                name: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for RecordFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordFormat::Json => "json",
            RecordFormat::JsonCompressed => "json_compressed",
        })
    }
}

impl RecordFormat {
    /// Which format `bytes` are in, from their first bytes.
    pub fn detect(bytes: &[u8]) -> Option<RecordFormat> {
        if is_zlib_header(bytes) {
            return Some(RecordFormat::JsonCompressed);
        }
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
        (*first == b'[' || *first == b'{').then_some(RecordFormat::Json)
    }

    /// Encodes `records` in this format.
    pub fn encode(&self, records: &[Record]) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::new();
        let mut source: &[Record] = records;
        // Writing to a Vec fails only if the records cannot be encoded.
        self.write(&mut out, records, &mut source)
            .map_err(|e| RecordError::Encode {
                source: serde_json::Error::io(e),
            })?;
        Ok(out)
    }

    /// Writes records in this format to `out`, streaming: the fields of `heads` with the
    /// snapshots `source` gives for each.
    pub(crate) fn write<W: Write>(
        &self,
        out: W,
        heads: &[Record],
        source: &mut dyn SnapshotSource,
    ) -> io::Result<()> {
        // serde_json writes a few bytes at a time: buffered, so neither the file nor the
        // compressor sees those small writes.
        const BUFFER: usize = 1 << 16;
        match self {
            RecordFormat::Json => {
                let mut out = BufWriter::with_capacity(BUFFER, out);
                damo::write_json(&mut out, heads, source)?;
                out.flush()
            }
            RecordFormat::JsonCompressed => {
                // Python's zlib.compress level (6), as damo's writer.
                let encoder = ZlibEncoder::new(out, Compression::default());
                let mut out = BufWriter::with_capacity(BUFFER, encoder);
                damo::write_json(&mut out, heads, source)?;
                out.into_inner()
                    .map_err(|e| e.into_error())?
                    .finish()?
                    .flush()
            }
        }
    }
}

/// RFC 1950: deflate method (CM 8) and a header checksum that makes CMF.FLG divisible by 31.
fn is_zlib_header(bytes: &[u8]) -> bool {
    match bytes {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// What a record file is: a damo record in one of its formats, or the journal of a recording
/// that has not finished (still running, or its recorder was killed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Damo(RecordFormat),
    Journal,
}

/// Parses a record file's bytes, in either format, or a journal.
pub fn parse_records(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
    parse_record_file(bytes).map(|(_, records)| records)
}

/// [`parse_records`], also saying what kind of file it was.
pub fn parse_record_file(bytes: &[u8]) -> Result<(FileKind, Vec<Record>), DecodeError> {
    match RecordFormat::detect(bytes) {
        Some(RecordFormat::Json) => {
            Ok((FileKind::Damo(RecordFormat::Json), damo::from_json(bytes)?))
        }
        Some(RecordFormat::JsonCompressed) => {
            let (text, ended) =
                journal::inflate_all(bytes).map_err(|source| DecodeError::Decompress { source })?;
            if journal::is_journal(&text) {
                return Ok((FileKind::Journal, journal::parse(&text)?));
            }
            if !ended {
                return Err(DecodeError::Decompress {
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the zlib stream is truncated",
                    ),
                });
            }
            Ok((
                FileKind::Damo(RecordFormat::JsonCompressed),
                damo::from_json(&text)?,
            ))
        }
        None => Err(DecodeError::UnknownFormat {
            head: String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned(),
        }),
    }
}
