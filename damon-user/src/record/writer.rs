//! Accumulating snapshots into records and saving them so that a killed run leaves a file.
use std::{
    collections::HashMap,
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::{Record, RecordError, RecordFormat, RecordSnapshot};
use crate::core::{Intervals, Snapshot};

/// What makes a record: damo merges records only when all of these match.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct RecordKey {
    kdamond_idx: usize,
    context_idx: usize,
    target_idx: usize,
    pid: i32,
    /// Sample, aggregation and update intervals.
    intervals: (u64, u64, u64),
}

/// Collects [`Snapshot`]s as damo records, one per target, and writes them out.
///
/// ```
/// use damon_user::record::{RecordFormat, RecordWriter};
/// let mut writer = RecordWriter::new(RecordFormat::JsonCompressed);
/// // writer.push(&snapshot) after each aggregation, writer.flush(path) every few seconds.
/// assert_eq!(writer.nr_snapshots(), 0);
/// ```
#[derive(Debug)]
pub struct RecordWriter {
    format: RecordFormat,
    records: Vec<Record>,
    index: HashMap<RecordKey, usize>,
    /// Lost aggregations per (kdamond, context), for records created later, too.
    lost: HashMap<(usize, usize), u64>,
}

impl RecordWriter {
    pub fn new(format: RecordFormat) -> Self {
        RecordWriter {
            format,
            records: Vec::new(),
            index: HashMap::new(),
            lost: HashMap::new(),
        }
    }

    pub fn format(&self) -> RecordFormat {
        self.format
    }

    /// Adds one aggregation: a snapshot to the record of each of its targets. A target whose
    /// pid or intervals changed gets a new record, as damo's `can_merge` would keep them apart.
    pub fn push(&mut self, snapshot: &Snapshot) {
        for target in &snapshot.targets {
            let key = RecordKey {
                kdamond_idx: snapshot.kdamond_idx,
                context_idx: snapshot.context_idx,
                target_idx: target.target_idx,
                pid: target.pid,
                intervals: intervals_key(&snapshot.intervals),
            };
            let idx = *self.index.entry(key).or_insert_with(|| {
                let mut record = Record::for_target(snapshot, target);
                record.nr_lost_snapshots = self
                    .lost
                    .get(&(snapshot.kdamond_idx, snapshot.context_idx))
                    .copied()
                    .unwrap_or(0);
                self.records.push(record);
                self.records.len() - 1
            });
            self.records[idx]
                .snapshots
                .push(RecordSnapshot::of_target(snapshot, target));
        }
    }

    /// Counts `nr` aggregations of a context as lost (dropped before they reached us). The
    /// context's total is written with every record of that context, present or future.
    pub fn add_lost(&mut self, kdamond_idx: usize, context_idx: usize, nr: u64) {
        *self.lost.entry((kdamond_idx, context_idx)).or_insert(0) += nr;
        for r in &mut self.records {
            if r.kdamond_idx == kdamond_idx && r.context_idx == context_idx {
                r.nr_lost_snapshots += nr;
            }
        }
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn into_records(self) -> Vec<Record> {
        self.records
    }

    /// Snapshots over all records.
    pub fn nr_snapshots(&self) -> usize {
        self.records.iter().map(|r| r.snapshots.len()).sum()
    }

    /// The whole file as it would be written.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        self.format.encode(&self.records)
    }

    /// Writes everything pushed so far to `path`, replacing it atomically: readers, and a
    /// run killed mid-write, see either the previous complete file or the new one. The file
    /// is private to the user (mode 0600): addresses of a process are sensitive.
    pub fn flush(&self, path: &Path) -> Result<(), RecordError> {
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes)
    }
}

fn intervals_key(i: &Intervals) -> (u64, u64, u64) {
    (i.sample_us, i.aggr_us, i.update_us)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // Without this, a crash of the machine (not just of us) could leave an empty file
        // under the new name.
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        RecordError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// `dir/.name.tmp.PID`: same directory, so the rename stays within one filesystem.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "damon.data".into());
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}
