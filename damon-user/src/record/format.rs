//! The two on-disk formats damo reads and writes itself, and telling them apart.
use std::{
    fmt,
    io::{Read, Write},
    str::FromStr,
};

use flate2::{Compression, read::ZlibDecoder, write::ZlibEncoder};

use super::{ParseError, Record, RecordError, damo};

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
        let json = damo::to_json(records).map_err(|source| RecordError::Encode { source })?;
        Ok(match self {
            RecordFormat::Json => json,
            RecordFormat::JsonCompressed => {
                let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
                // Writing to a Vec cannot fail.
                let compressed = encoder.write_all(&json).and_then(|()| encoder.finish());
                compressed.map_err(|e| RecordError::Encode {
                    source: serde_json::Error::io(e),
                })?
            }
        })
    }
}

/// RFC 1950: deflate method (CM 8) and a header checksum that makes CMF.FLG divisible by 31.
fn is_zlib_header(bytes: &[u8]) -> bool {
    match bytes {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Parses a record file's bytes, in either format.
pub fn parse_records(bytes: &[u8]) -> Result<Vec<Record>, ParseError> {
    match RecordFormat::detect(bytes) {
        Some(RecordFormat::Json) => damo::from_json(bytes),
        Some(RecordFormat::JsonCompressed) => {
            let mut json = Vec::new();
            ZlibDecoder::new(bytes)
                .read_to_end(&mut json)
                .map_err(|source| ParseError::Decompress { source })?;
            damo::from_json(&json)
        }
        None => Err(ParseError::UnknownFormat {
            head: String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).into_owned(),
        }),
    }
}
