//! The journal of a recording in progress: append-only, so a flush costs the same however
//! long the recording, the recorder's memory stays constant, and a recorder that dies loses
//! only what it had not flushed yet.
//!
//! `damon record` keeps the journal at its output path while it records; when it ends, it
//! converts the journal into a damo record file, which replaces it ([`Journal::finish`]). A
//! recorder that was killed leaves the journal: `damon report` reads it as it is, and
//! `damon record --finish FILE` converts it ([`finish_file`]).
//!
//! The layout is one zlib stream (RFC 1950) of JSON lines, sync-flushed at every flush so that
//! all that was written can be decompressed without the stream's end:
//!
//! ```text
//! {"damon_journal":{"version":1,"format":"json_compressed"}}
//! {"record":{"id":0,"kdamond_idx":0,"context_idx":0,"target_id":0,"pid":1234,
//!            "intervals":{"sample_us":5000,"aggr_us":100000,"update_us":1000000}}}
//! {"snapshot":{"record":0,"start_ns":...,"end_ns":...,
//!              "regions":[{"start":4096,"end":8192,"nr_accesses":3,"age":1},...]}}
//! {"lost":{"kdamond_idx":0,"context_idx":0,"nr":2}}
//! {"schemes":{"kdamond_idx":0,"context_idx":0,"schemes":[{"scheme_idx":0,"action":"stat",...,
//!             "stats":{"nr_tried":12,"sz_tried":49152,...}}]}}
//! ```
//!
//! (one line each). A record line (ids 0, 1, ... in order) comes before the first snapshot of
//! its record; `format` is the damo format to convert to. Regions are [`RecordRegion`]s as
//! serde writes them: a field added there with `#[serde(default)]` is written from then on,
//! reads as its default from older journals, and is ignored by older readers. A schemes line
//! holds the schemes of a context and their stats at that time ([`RecordScheme`]); the last one
//! of a context is what its records carry. Journals with schemes lines say version 2, so that
//! readers older than those lines refuse them by their version; others say version 1. A last
//! line without its newline is a write cut short and is left out.
use std::os::fd::AsRawFd;
use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use flate2::{Compression, Decompress, FlushDecompress, Status, write::ZlibEncoder};
use serde::{Deserialize, Serialize};

use super::{
    DATA_SOURCE_UNKNOWN, DecodeError, Record, RecordError, RecordFormat, RecordRegion,
    RecordScheme, RecordSnapshot, damo::SnapshotSource, writer::RecordKey,
};
use crate::{
    core::{Intervals, IntervalsGoal, Snapshot, TargetSnapshot},
    outfile::NewFile,
};

/// The newest layout version this code reads: 2 has schemes lines.
pub const VERSION: u32 = 2;

/// The version of a journal without schemes lines, which older readers read too.
const VERSION_WITHOUT_SCHEMES: u32 = 1;

/// How a journal's text starts; damo's JSON is a list and starts with `[`.
const MAGIC: &[u8] = b"{\"damon_journal\":";

/// Record and converted files are private: the addresses of a process are sensitive.
const MODE: u32 = 0o600;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    DamonJournal(Header),
    Record(RecordLine),
    Snapshot(SnapshotLine),
    Lost(LostLine),
    Schemes(SchemesLine),
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: u32,
    /// The damo format to convert to.
    format: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalIntervals {
    sample_us: u64,
    aggr_us: u64,
    update_us: u64,
    /// Absent in journals of fixed intervals.
    #[serde(default, skip_serializing_if = "goal_off")]
    goal: IntervalsGoal,
}

fn goal_off(g: &IntervalsGoal) -> bool {
    !g.enabled()
}

#[derive(Debug, Serialize, Deserialize)]
struct RecordLine {
    id: usize,
    kdamond_idx: usize,
    context_idx: usize,
    target_id: Option<u64>,
    pid: Option<i32>,
    intervals: Option<JournalIntervals>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotLine {
    record: usize,
    start_ns: u64,
    end_ns: u64,
    #[serde(default)]
    sample_us: Option<u64>,
    regions: Vec<RecordRegion>,
}

/// [`SnapshotLine`] as written, without copying the regions.
#[derive(Serialize)]
struct SnapshotOut<'a> {
    record: usize,
    start_ns: u64,
    end_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_us: Option<u64>,
    regions: &'a [RecordRegion],
}

#[derive(Debug, Serialize, Deserialize)]
struct LostLine {
    kdamond_idx: usize,
    context_idx: usize,
    nr: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SchemesLine {
    kdamond_idx: usize,
    context_idx: usize,
    schemes: Vec<RecordScheme>,
}

impl RecordLine {
    fn of(id: usize, s: &Snapshot, t: &TargetSnapshot) -> Self {
        RecordLine {
            id,
            kdamond_idx: s.kdamond_idx,
            context_idx: s.context_idx,
            target_id: Some(t.target_idx as u64),
            pid: Some(t.pid.get()),
            intervals: Some(JournalIntervals {
                sample_us: s.intervals.sample_us,
                aggr_us: s.intervals.aggr_us,
                update_us: s.intervals.update_us,
                goal: s.intervals.goal,
            }),
        }
    }

    fn head(self) -> Record {
        Record {
            kdamond_idx: self.kdamond_idx,
            context_idx: self.context_idx,
            scheme_idx: None,
            target_id: self.target_id,
            pid: self.pid,
            intervals: self.intervals.map(|i| Intervals {
                sample_us: i.sample_us,
                aggr_us: i.aggr_us,
                update_us: i.update_us,
                goal: i.goal,
            }),
            data_source: DATA_SOURCE_UNKNOWN.to_string(),
            nr_lost_snapshots: 0,
            schemes: Vec::new(),
            snapshots: Vec::new(),
        }
    }
}

// ---- writing ----

/// The journal of a recording, appended to as aggregations come.
///
/// ```no_run
/// use damon_user::record::{Journal, RecordFormat};
/// # fn main() -> Result<(), damon_user::record::RecordError> {
/// let mut journal = Journal::create("damon.data".as_ref(), RecordFormat::JsonCompressed)?;
/// # let snapshot: damon_user::core::Snapshot = unimplemented!();
/// journal.push(&snapshot)?; // each aggregation
/// journal.flush()?; // every half second
/// journal.finish()?; // damon.data is now a damo record file
/// # Ok(()) }
/// ```
pub struct Journal {
    path: PathBuf,
    out: ZlibEncoder<File>,
    format: RecordFormat,
    ids: HashMap<RecordKey, usize>,
    nr_snapshots: usize,
    /// Whether lines were appended since the last flush.
    unflushed: bool,
    /// Whether schemes lines may be appended (the header says version 2).
    with_schemes: bool,
    /// Reused buffers: one line, one snapshot's regions.
    line: Vec<u8>,
    regions: Vec<RecordRegion>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("nr_snapshots", &self.nr_snapshots)
            .finish_non_exhaustive()
    }
}

/// Serializes `value` as one line into `line` and appends it to `out`.
fn append<T: Serialize>(
    out: &mut impl Write,
    line: &mut Vec<u8>,
    value: &T,
) -> Result<(), io::Error> {
    line.clear();
    serde_json::to_writer(&mut *line, value)?;
    line.push(b'\n');
    out.write_all(line)
}

impl Journal {
    /// Starts the journal at `path`, replacing what was there (see [`crate::outfile`]: a
    /// planted file or link is never written through), private to the user (mode 0600).
    /// `format` is what [`finish`](Self::finish) converts it to.
    pub fn create(path: &Path, format: RecordFormat) -> Result<Journal, RecordError> {
        Self::create_versioned(path, format, false)
    }

    /// [`create`](Self::create) for a recording with schemes, whose stats
    /// [`push_schemes`](Self::push_schemes) appends.
    pub fn create_with_schemes(path: &Path, format: RecordFormat) -> Result<Journal, RecordError> {
        Self::create_versioned(path, format, true)
    }

    fn create_versioned(
        path: &Path,
        format: RecordFormat,
        with_schemes: bool,
    ) -> Result<Journal, RecordError> {
        let write_error = |source| RecordError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut new = NewFile::create(path, MODE).map_err(write_error)?;
        let file = new.file().try_clone().map_err(write_error)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            out: ZlibEncoder::new(file, Compression::default()),
            format,
            ids: HashMap::new(),
            nr_snapshots: 0,
            unflushed: false,
            with_schemes,
            line: Vec::new(),
            regions: Vec::new(),
        };
        let header = Line::DamonJournal(Header {
            version: if with_schemes {
                VERSION
            } else {
                VERSION_WITHOUT_SCHEMES
            },
            format: format.to_string(),
        });
        append(&mut journal.out, &mut journal.line, &header).map_err(write_error)?;
        journal.out.flush().map_err(write_error)?;
        // Complete from the start: a reader never sees a file without its header.
        new.install().map_err(write_error)?;
        Ok(journal)
    }

    fn write_error(&self, source: io::Error) -> RecordError {
        RecordError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one aggregation: a snapshot line per target (and a record line before a
    /// target's first, or when its pid or intervals changed: damo keeps those apart). It
    /// reaches the file at the latest with the next [`flush`](Self::flush).
    pub fn push(&mut self, snapshot: &Snapshot) -> Result<(), RecordError> {
        self.unflushed = true;
        for target in &snapshot.targets {
            let key = RecordKey::of(snapshot, target);
            let id = match self.ids.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.ids.len();
                    let line = Line::Record(RecordLine::of(id, snapshot, target));
                    append(&mut self.out, &mut self.line, &line)
                        .map_err(|e| self.write_error(e))?;
                    self.ids.insert(key, id);
                    id
                }
            };
            self.regions.clear();
            self.regions
                .extend(target.regions.iter().map(RecordRegion::from));
            #[derive(Serialize)]
            struct Entry<'a> {
                snapshot: SnapshotOut<'a>,
            }
            let entry = Entry {
                snapshot: SnapshotOut {
                    record: id,
                    start_ns: snapshot.start_ns,
                    end_ns: snapshot.end_ns,
                    sample_us: super::model::tuned_sample_us(&snapshot.intervals),
                    regions: &self.regions,
                },
            };
            append(&mut self.out, &mut self.line, &entry).map_err(|source| RecordError::Write {
                path: self.path.clone(),
                source,
            })?;
            self.nr_snapshots += 1;
        }
        Ok(())
    }

    /// Counts `nr` aggregations of a context as lost (dropped before they reached us); every
    /// record of the context carries the total.
    pub fn add_lost(
        &mut self,
        kdamond_idx: usize,
        context_idx: usize,
        nr: u64,
    ) -> Result<(), RecordError> {
        let line = Line::Lost(LostLine {
            kdamond_idx,
            context_idx,
            nr,
        });
        self.unflushed = true;
        append(&mut self.out, &mut self.line, &line).map_err(|e| self.write_error(e))
    }

    /// Appends the schemes of a context with their stats now: the latest appended is what the
    /// context's records carry. Only for a journal made by
    /// [`create_with_schemes`](Self::create_with_schemes); others refuse it.
    pub fn push_schemes(
        &mut self,
        kdamond_idx: usize,
        context_idx: usize,
        schemes: Vec<RecordScheme>,
    ) -> Result<(), RecordError> {
        if !self.with_schemes {
            return Err(self.write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a journal created without schemes cannot take schemes lines",
            )));
        }
        let line = Line::Schemes(SchemesLine {
            kdamond_idx,
            context_idx,
            schemes,
        });
        self.unflushed = true;
        append(&mut self.out, &mut self.line, &line).map_err(|e| self.write_error(e))
    }

    /// Snapshots appended so far.
    pub fn nr_snapshots(&self) -> usize {
        self.nr_snapshots
    }

    /// Writes out everything appended so far (a zlib sync flush: all of it decompresses) and
    /// starts its writeback to disk. Nothing to do when nothing was appended since the last.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        if !self.unflushed {
            return Ok(());
        }
        self.out.flush().map_err(|e| self.write_error(e))?;
        // In the page cache now, which a killed recorder cannot lose. Start the writeback to
        // disk without waiting for it: an fdatasync here blocked for up to 1.3 s on a busy
        // disk, stretching the flush cadence; finish() waits for the disk.
        let fd = self.out.get_ref().as_raw_fd();
        // SAFETY: sync_file_range on our own open fd, whole file, no pointers.
        let r = unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if r != 0 {
            return Err(self.write_error(io::Error::last_os_error()));
        }
        self.unflushed = false;
        Ok(())
    }

    /// Ends the recording: the journal becomes a damo record file in the format given at
    /// [`create`](Self::create), which replaces it at its path. If this fails, the journal
    /// stays, complete, and [`finish_file`] can convert it later.
    pub fn finish(self) -> Result<Finished, RecordError> {
        let Journal {
            path, out, format, ..
        } = self;
        let write_error = |source| RecordError::Write {
            path: path.clone(),
            source,
        };
        let file = out.finish().map_err(write_error)?;
        file.sync_data().map_err(write_error)?;
        convert(&file, &path, Some(format))
    }
}

// ---- reading ----

/// Decompresses a zlib stream as far as it goes: to its end, or to where the input stops (a
/// journal being written, or whose writer was killed, has no end yet). Corrupt data is an
/// error.
pub(crate) struct Inflate<R> {
    inner: R,
    state: Decompress,
    ended: bool,
}

impl<R: BufRead> Inflate<R> {
    pub(crate) fn new(inner: R) -> Self {
        Inflate {
            inner,
            state: Decompress::new(true),
            ended: false,
        }
    }
}

impl<R: BufRead> Read for Inflate<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while !self.ended && !out.is_empty() {
            let input = self.inner.fill_buf()?;
            let at_end = input.is_empty();
            let (in0, out0) = (self.state.total_in(), self.state.total_out());
            let status = self
                .state
                .decompress(input, out, FlushDecompress::None)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let consumed = (self.state.total_in() - in0) as usize;
            let produced = (self.state.total_out() - out0) as usize;
            self.inner.consume(consumed);
            self.ended = status == Status::StreamEnd;
            if produced > 0 {
                return Ok(produced);
            }
            if at_end || consumed == 0 {
                // All the input there is has been decompressed.
                break;
            }
        }
        Ok(0)
    }
}

/// The whole decompressed text of `bytes`, and whether the stream ended.
pub(crate) fn inflate_all(bytes: &[u8]) -> io::Result<(Vec<u8>, bool)> {
    let mut inflate = Inflate::new(bytes);
    let mut text = Vec::new();
    inflate.read_to_end(&mut text)?;
    Ok((text, inflate.ended))
}

/// Whether decompressed text is a journal's.
pub(crate) fn is_journal(text: &[u8]) -> bool {
    text.starts_with(MAGIC)
}

fn bad_line(line: usize, reason: impl Into<String>) -> DecodeError {
    DecodeError::Journal {
        line,
        reason: reason.into(),
    }
}

/// What the lines of a journal declare, read in order.
#[derive(Default)]
struct Heads {
    format: Option<RecordFormat>,
    records: Vec<Record>,
    lost: HashMap<(usize, usize), u64>,
    /// The latest schemes line of each context.
    schemes: HashMap<(usize, usize), Vec<RecordScheme>>,
    nr_snapshots: usize,
}

impl Heads {
    /// Takes in line number `no` (1-based); returns its snapshot, if it is one.
    fn take(&mut self, no: usize, text: &[u8]) -> Result<Option<SnapshotLine>, DecodeError> {
        let line: Line = serde_json::from_slice(text).map_err(|e| bad_line(no, format!("{e}")))?;
        match (self.format.is_some(), line) {
            (false, Line::DamonJournal(h)) => {
                if h.version > VERSION {
                    return Err(bad_line(
                        no,
                        format!(
                            "journal version {} is newer than this damon reads ({VERSION})",
                            h.version
                        ),
                    ));
                }
                self.format = Some(h.format.parse().map_err(|e| bad_line(no, format!("{e}")))?);
                Ok(None)
            }
            (false, _) => Err(bad_line(no, "the journal does not start with its header")),
            (true, Line::DamonJournal(_)) => Err(bad_line(no, "a second header")),
            (true, Line::Record(r)) => {
                if r.id != self.records.len() {
                    return Err(bad_line(
                        no,
                        format!(
                            "record id {} out of order (expected {})",
                            r.id,
                            self.records.len()
                        ),
                    ));
                }
                self.records.push(r.head());
                Ok(None)
            }
            (true, Line::Schemes(l)) => {
                self.schemes
                    .insert((l.kdamond_idx, l.context_idx), l.schemes);
                Ok(None)
            }
            (true, Line::Lost(l)) => {
                let total = self.lost.entry((l.kdamond_idx, l.context_idx)).or_insert(0);
                *total = total.saturating_add(l.nr);
                Ok(None)
            }
            (true, Line::Snapshot(s)) => {
                if s.record >= self.records.len() {
                    return Err(bad_line(
                        no,
                        format!("snapshot of record {}, which was not declared", s.record),
                    ));
                }
                if s.end_ns < s.start_ns {
                    return Err(bad_line(
                        no,
                        format!("end_ns {} is before start_ns {}", s.end_ns, s.start_ns),
                    ));
                }
                if let Some((i, r)) = s.regions.iter().enumerate().find(|(_, r)| r.end < r.start) {
                    return Err(bad_line(
                        no,
                        format!(
                            "region {i} ends at {} before it starts at {}",
                            r.end, r.start
                        ),
                    ));
                }
                self.nr_snapshots += 1;
                Ok(Some(s))
            }
        }
    }

    /// The records' lost counts, once every line is in.
    fn settle(&mut self) {
        for r in &mut self.records {
            r.nr_lost_snapshots = self
                .lost
                .get(&(r.kdamond_idx, r.context_idx))
                .copied()
                .unwrap_or(0);
            r.schemes = self
                .schemes
                .get(&(r.kdamond_idx, r.context_idx))
                .cloned()
                .unwrap_or_default();
        }
    }
}

/// An error of reading a journal: of the file, or of what it holds.
enum ScanError {
    Io(io::Error),
    Parse(DecodeError),
}

impl From<DecodeError> for ScanError {
    fn from(e: DecodeError) -> Self {
        ScanError::Parse(e)
    }
}

impl ScanError {
    fn at(self, path: &Path) -> RecordError {
        match self {
            ScanError::Io(source) => RecordError::Read {
                path: path.to_path_buf(),
                source,
            },
            ScanError::Parse(source) => RecordError::Parse {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Calls `each` with every complete line of decompressed journal text and its number; a last
/// line without its newline is left out (a write cut short).
fn scan_lines(
    mut text: impl BufRead,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), DecodeError>,
) -> Result<(), ScanError> {
    let mut line = Vec::new();
    let mut no = 0;
    loop {
        line.clear();
        let n = text.read_until(b'\n', &mut line).map_err(ScanError::Io)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        no += 1;
        each(no, &line[..line.len() - 1])?;
    }
}

fn no_header() -> DecodeError {
    bad_line(1, "the journal has no complete header line")
}

/// Reads a journal's decompressed text into records.
pub(crate) fn parse(text: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut heads = Heads::default();
    let mut snapshots: Vec<(usize, RecordSnapshot)> = Vec::new();
    let scanned = scan_lines(text, |no, line| {
        if let Some(s) = heads.take(no, line)? {
            snapshots.push((
                s.record,
                RecordSnapshot {
                    start_ns: s.start_ns,
                    end_ns: s.end_ns,
                    sample_us: s.sample_us,
                    regions: s.regions,
                },
            ));
        }
        Ok(())
    });
    match scanned {
        Ok(()) => {}
        Err(ScanError::Parse(e)) => return Err(e),
        // Reading from memory fails only on bad data.
        Err(ScanError::Io(source)) => return Err(DecodeError::Decompress { source }),
    }
    if heads.format.is_none() {
        return Err(no_header());
    }
    heads.settle();
    let mut records = heads.records;
    for (idx, s) in snapshots {
        records[idx].snapshots.push(s);
    }
    Ok(records)
}

/// A journal file read from its start, decompressed, line by line.
fn lines_of(file: &File) -> io::Result<impl BufRead + '_> {
    let mut f = file;
    f.seek(SeekFrom::Start(0))?;
    let raw = BufReader::with_capacity(1 << 16, f);
    Ok(BufReader::with_capacity(1 << 16, Inflate::new(raw)))
}

/// The snapshots of one record at a time, each read in one pass over the journal file.
struct FileSource<'a> {
    file: &'a File,
}

impl SnapshotSource for FileSource<'_> {
    fn for_each(
        &mut self,
        idx: usize,
        each: &mut dyn FnMut(&RecordSnapshot) -> Result<(), String>,
    ) -> Result<(), String> {
        let text = lines_of(self.file).map_err(|e| e.to_string())?;
        let mut heads = Heads::default();
        let mut stop = None;
        let scanned = scan_lines(text, |no, line| {
            if let Some(s) = heads.take(no, line)?
                && s.record == idx
            {
                let s = RecordSnapshot {
                    start_ns: s.start_ns,
                    end_ns: s.end_ns,
                    sample_us: s.sample_us,
                    regions: s.regions,
                };
                // Stops the scan at once: the caller's error is what it reports.
                if let Err(e) = each(&s) {
                    stop = Some(e);
                    return Err(bad_line(no, "stopped"));
                }
            }
            Ok(())
        });
        if let Some(e) = stop {
            return Err(e);
        }
        scanned.map_err(|e| match e {
            ScanError::Io(e) => e.to_string(),
            ScanError::Parse(e) => e.to_string(),
        })
    }
}

/// What a conversion wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub format: RecordFormat,
    pub nr_records: usize,
    pub nr_snapshots: usize,
}

/// Converts the journal open as `file` into a damo record file in `format` (default: the one
/// its header names) that replaces it at `path`, reading the journal once per record.
fn convert(
    file: &File,
    path: &Path,
    format: Option<RecordFormat>,
) -> Result<Finished, RecordError> {
    let mut heads = Heads::default();
    let text = lines_of(file).map_err(|e| ScanError::Io(e).at(path))?;
    scan_lines(text, |no, line| heads.take(no, line).map(drop)).map_err(|e| e.at(path))?;
    let Some(header_format) = heads.format else {
        return Err(ScanError::Parse(no_header()).at(path));
    };
    heads.settle();
    let format = format.unwrap_or(header_format);
    let write_error = |source| RecordError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut new = NewFile::create(path, MODE).map_err(write_error)?;
    let mut source = FileSource { file };
    format
        .write(&mut *new.file(), &heads.records, &mut source)
        .map_err(write_error)?;
    new.file().sync_all().map_err(write_error)?;
    new.install().map_err(write_error)?;
    Ok(Finished {
        format,
        nr_records: heads.records.len(),
        nr_snapshots: heads.nr_snapshots,
    })
}

/// Converts the journal a killed recorder left at `path` into a damo record file (in `format`,
/// default the one the recording was started with) that replaces it. A file that is not a
/// journal, or a symbolic link, is refused and left as it is.
pub fn finish_file(path: &Path, format: Option<RecordFormat>) -> Result<Finished, RecordError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| RecordError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let read_error = |source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Journals are zlib streams whose text starts with MAGIC; damo's files are not.
    let mut raw = Vec::new();
    (&file).take(2).read_to_end(&mut raw).map_err(read_error)?;
    let mut head = Vec::new();
    if RecordFormat::detect(&raw) == Some(RecordFormat::JsonCompressed) {
        lines_of(&file)
            .and_then(|text| text.take(MAGIC.len() as u64).read_to_end(&mut head))
            .map_err(read_error)?;
    }
    if !is_journal(&head) {
        return Err(RecordError::NotAJournal {
            path: path.to_path_buf(),
        });
    }
    convert(&file, path, format)
}
