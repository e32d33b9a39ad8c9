//! Accumulating snapshots into records in memory, and saving them as one damo record file.
//! (`damon record` appends to a [`Journal`](super::Journal) instead.)
use std::{collections::HashMap, path::Path};

use super::{Record, RecordError, RecordFormat, RecordSnapshot};
use crate::core::{Intervals, IntervalsGoal, Snapshot, TargetSnapshot};

/// What makes a record: damo merges records only when all of these match.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct RecordKey {
    kdamond_idx: usize,
    context_idx: usize,
    target_idx: usize,
    pid: i32,
    /// Sample, aggregation and update intervals; with a tuning goal, the goal and the
    /// aggregation/sample ratio instead (tuned records keep one record, each snapshot
    /// carrying its own sample interval, as damo's do).
    intervals: (u64, u64, u64, IntervalsGoal),
}

impl RecordKey {
    pub(crate) fn of(snapshot: &Snapshot, target: &TargetSnapshot) -> Self {
        RecordKey {
            kdamond_idx: snapshot.kdamond_idx,
            context_idx: snapshot.context_idx,
            target_idx: target.target_idx,
            pid: target.pid.get(),
            intervals: intervals_key(&snapshot.intervals),
        }
    }
}

/// Collects [`Snapshot`]s as damo records, one per target, in memory, and writes them out.
///
/// ```
/// use damon_user::record::{RecordFormat, RecordWriter};
/// let mut writer = RecordWriter::new(RecordFormat::JsonCompressed);
/// // writer.push(&snapshot) after each aggregation, writer.save(path) at the end.
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
            let key = RecordKey::of(snapshot, target);
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
    /// run killed mid-write, see either the previous complete file or the new one; a file or
    /// link someone planted at `path` is replaced, never written through (see
    /// [`crate::outfile`]). The file is private to the user (mode 0600): addresses of a
    /// process are sensitive.
    pub fn save(&self, path: &Path) -> Result<(), RecordError> {
        let bytes = self.to_bytes()?;
        crate::outfile::replace(path, &bytes, 0o600).map_err(|source| RecordError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn intervals_key(i: &Intervals) -> (u64, u64, u64, IntervalsGoal) {
    if i.goal.enabled() {
        (0, u64::from(i.max_nr_accesses()), i.update_us, i.goal)
    } else {
        (i.sample_us, i.aggr_us, i.update_us, i.goal)
    }
}
