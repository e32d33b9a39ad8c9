use crate::core::Pid;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::core::{Intervals, RegionSnapshot, Snapshot, TargetSnapshot};

const INTERVALS: Intervals = Intervals {
    sample_us: 5_000,
    aggr_us: 100_000,
    update_us: 1_000_000,
    goal: crate::core::IntervalsGoal::OFF,
};

fn snapshot(idx: u64, pids: &[i32]) -> Snapshot {
    Snapshot {
        kdamond_idx: 0,
        context_idx: 0,
        start_ns: 1_000_000_000 + idx * 100_000_000,
        end_ns: 1_000_000_000 + (idx + 1) * 100_000_000,
        intervals: INTERVALS,
        targets: pids
            .iter()
            .enumerate()
            .map(|(t, pid)| TargetSnapshot {
                target_idx: t,
                pid: Pid(*pid),
                regions: vec![
                    RegionSnapshot {
                        start: 0x1000,
                        end: 0x3000,
                        nr_accesses: idx as u32,
                        age: 1,
                        nr_unmeasured: 0,
                    },
                    RegionSnapshot {
                        start: 0x3000,
                        end: 0x8000,
                        nr_accesses: 0,
                        age: 7,
                        nr_unmeasured: 0,
                    },
                ],
            })
            .collect(),
    }
}

fn writer_with(format: RecordFormat, n: u64, pids: &[i32]) -> RecordWriter {
    let mut w = RecordWriter::new(format);
    for i in 0..n {
        w.push(&snapshot(i, pids));
    }
    w
}

#[test]
fn both_formats_round_trip() {
    for format in [RecordFormat::Json, RecordFormat::JsonCompressed] {
        let w = writer_with(format, 3, &[10, 20]);
        let bytes = w.to_bytes().unwrap();
        assert_eq!(RecordFormat::detect(&bytes), Some(format));
        assert_eq!(parse_records(&bytes).unwrap(), w.records());
    }
}

#[test]
fn one_record_per_target_and_per_intervals() {
    let mut w = writer_with(RecordFormat::Json, 2, &[10, 20]);
    assert_eq!(w.records().len(), 2);
    assert_eq!(w.records()[1].pid, Some(20));
    assert_eq!(w.records()[1].target_id, Some(1));
    let mut tuned = snapshot(2, &[10, 20]);
    tuned.intervals.sample_us = 10_000;
    w.push(&tuned);
    assert_eq!(w.records().len(), 4);
    assert_eq!(w.nr_snapshots(), 6);
    w.add_lost(0, 0, 3);
    w.add_lost(1, 0, 5);
    assert!(w.records().iter().all(|r| r.nr_lost_snapshots == 3));
    let mut other = snapshot(3, &[30]);
    other.kdamond_idx = 1;
    w.push(&other);
    assert_eq!(
        w.records().last().unwrap().nr_lost_snapshots,
        5,
        "lost before its first push"
    );
}

#[test]
fn writes_what_damo_writes() {
    let w = writer_with(RecordFormat::Json, 1, &[10]);
    let json: serde_json::Value = serde_json::from_slice(&w.to_bytes().unwrap()).unwrap();
    let record = &json[0];
    assert_eq!(record["intervals"]["sample_us"], "5000");
    assert_eq!(record["intervals"]["ops_update_us"], "1000000");
    assert_eq!(record["target_id"], 0);
    assert_eq!(record["data_source"], "unknown");
    let snapshot = &record["snapshots"][0];
    assert_eq!(snapshot["start_time"], "1000000000");
    assert_eq!(snapshot["total_bytes"], "28672");
    let region = &snapshot["regions"][1];
    assert_eq!(region["start"], "12288");
    assert_eq!(region["nr_accesses"]["samples"], 0);
    assert!(region["nr_accesses"]["percent"].is_null());
    assert_eq!(region["age"]["aggr_intervals"], "7");
}

#[test]
fn save_replaces_the_file_privately() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damon.data");
    fs::write(&path, b"old").unwrap();
    let w = writer_with(RecordFormat::JsonCompressed, 2, &[10]);
    w.save(&path).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read_records(&path).unwrap(), w.records());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("damon.data")],
        "temporary file left"
    );
}

#[test]
fn save_to_a_missing_directory_names_the_path() {
    let w = writer_with(RecordFormat::Json, 1, &[10]);
    let err = w
        .save(Path::new("/nonexistent-dir/damon.data"))
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir/damon.data"),
        "{err}"
    );
}

/// The shapes older damo versions wrote: separators, units, nulls for unknowns.
#[test]
fn reads_old_damo_variants() {
    let json = r#"[{"kdamond_idx": null, "context_idx": null, "intervals": null,
        "scheme_idx": null, "target_id": 18446623438842320000,
        "snapshots": [
          {"start_time": "539809434100", "end_time": "539914032967", "regions": [
            {"start": "94,827,419,009,024", "end": "94,827,423,150,080",
             "nr_accesses": {"samples": 3, "percent": null},
             "age": {"usec": null, "aggr_intervals": null}, "sz_filter_passed": "0 B"}]},
          {"start_time": null, "end_time": "540014032967", "regions": [
            {"start": 4096, "end": 8192, "nr_accesses": 2, "age": 5}]}]}]"#;
    let records = parse_records(json.as_bytes()).unwrap();
    let r = &records[0];
    assert_eq!(
        (r.kdamond_idx, r.context_idx, r.intervals, r.pid),
        (0, 0, None, None)
    );
    assert_eq!(r.target_id, Some(18_446_623_438_842_320_000));
    assert_eq!(r.data_source, "unknown");
    let first = &r.snapshots[0].regions[0];
    assert_eq!(
        (first.start, first.end),
        (94_827_419_009_024, 94_827_423_150_080)
    );
    assert_eq!((first.nr_accesses, first.age), (3, None));
    assert_eq!(
        r.snapshots[1].start_ns, 539_914_032_967,
        "start taken from the previous end"
    );
    assert_eq!(r.snapshots[1].regions[0].age, Some(5));
}

#[test]
fn percent_and_usec_are_converted_with_the_intervals() {
    let json = r#"[{"intervals": {"sample_us": "5 ms", "aggr_us": "100 ms", "ops_update_us": "1 s"},
        "target_id": 0, "snapshots": [{"start_time": "0", "end_time": "100 ms", "regions": [
          {"start": "0", "end": "4 KiB", "nr_accesses": {"samples": null, "percent": 50},
           "age": {"usec": "300 ms", "aggr_intervals": null}}]}]}]"#;
    let r = &parse_records(json.as_bytes()).unwrap()[0];
    assert_eq!(r.intervals, Some(INTERVALS));
    assert_eq!(r.snapshots[0].end_ns, 100_000_000);
    let region = r.snapshots[0].regions[0];
    assert_eq!(
        (region.end, region.nr_accesses, region.age),
        (4096, 10, Some(3))
    );
}

fn parse_err(json: &str) -> String {
    parse_records(json.as_bytes()).unwrap_err().to_string()
}

#[test]
fn bad_values_are_named_with_their_location() {
    let region = |body: &str| {
        format!(
            r#"[{{"target_id": 0, "snapshots": [{{"start_time": "0", "end_time": "9",
                "regions": [{{"start": "0", "end": "4096", "nr_accesses": 1, "age": 1}}, {body}]}}]}}]"#
        )
    };
    let msg = parse_err(&region(
        r#"{"start": "8192", "end": "4096", "nr_accesses": 1}"#,
    ));
    assert_eq!(
        msg,
        "record 0, snapshot 0, region 1: end \"4096\" is below start"
    );
    let msg = parse_err(&region(
        r#"{"start": "x12", "end": "4096", "nr_accesses": 1}"#,
    ));
    assert!(
        msg.contains("start \"x12\" is not a non-negative integer"),
        "{msg}"
    );
    let msg = parse_err(&region(
        r#"{"start": "0", "end": "4096", "nr_accesses": -1}"#,
    ));
    assert!(msg.contains("nr_accesses \"-1\""), "{msg}");
    let msg = parse_err(&region(r#"{"start": "0", "end": "4096"}"#));
    assert!(msg.contains("region 1: nr_accesses"), "{msg}");
    let msg = parse_err(&region(
        r#"{"start": "0", "end": "1", "nr_accesses": {"percent": 5}}"#,
    ));
    assert!(msg.contains("without intervals"), "{msg}");
    let msg =
        parse_err(r#"[{"snapshots": [{"start_time": "9", "end_time": "5", "regions": []}]}]"#);
    assert_eq!(
        msg,
        "record 0, snapshot 0: end_time \"5\" is before start_time"
    );
}

#[test]
fn corrupt_files_are_rejected() {
    assert!(matches!(
        parse_records(b""),
        Err(DecodeError::UnknownFormat { .. })
    ));
    let msg = parse_records(b"PERFILE2 binary").unwrap_err().to_string();
    assert!(msg.contains("PERFILE2"), "{msg}");
    let mut truncated = writer_with(RecordFormat::JsonCompressed, 3, &[10])
        .to_bytes()
        .unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        parse_records(&truncated),
        Err(DecodeError::Decompress { .. })
    ));
    let mut json = writer_with(RecordFormat::Json, 3, &[10])
        .to_bytes()
        .unwrap();
    json.truncate(json.len() / 2);
    assert!(matches!(
        parse_records(&json),
        Err(DecodeError::Json { .. })
    ));
    let msg = parse_err(r#"{"damo_record_ver": 1}"#);
    assert!(msg.contains("invalid record json"), "{msg}");
}

#[test]
fn read_errors_name_the_file() {
    let err = read_records(Path::new("/nonexistent/damon.data")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read record file /nonexistent/damon.data")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.data");
    fs::write(&path, "garbage").unwrap();
    let err = crate::error::Chain(&read_records(&path).unwrap_err()).to_string();
    assert!(err.contains("bad.data") && err.contains("garbage"), "{err}");
}

#[test]
fn format_names_parse() {
    assert_eq!("json".parse::<RecordFormat>().unwrap(), RecordFormat::Json);
    assert_eq!(
        "json_compressed".parse::<RecordFormat>().unwrap(),
        RecordFormat::JsonCompressed
    );
    let err = "perf_data".parse::<RecordFormat>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown record format \"perf_data\", expected \"json\" or \"json_compressed\""
    );
    assert_eq!(RecordFormat::JsonCompressed.to_string(), "json_compressed");
}

// ---- the journal of a recording ----

fn journal_bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn journal_reads_as_records_and_finishes_as_the_damo_file() {
    for format in [RecordFormat::Json, RecordFormat::JsonCompressed] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.data");
        let mut journal = Journal::create(&path, format).unwrap();
        let mut expected = RecordWriter::new(format);
        for i in 0..5 {
            let s = snapshot(i, &[10, 20]);
            journal.push(&s).unwrap();
            expected.push(&s);
        }
        let mut tuned = snapshot(5, &[10, 20]);
        tuned.intervals.sample_us = 10_000;
        journal.push(&tuned).unwrap();
        expected.push(&tuned);
        journal.add_lost(0, 0, 3).unwrap();
        expected.add_lost(0, 0, 3);
        journal.flush().unwrap();
        assert_eq!(journal.nr_snapshots(), 12);

        let (kind, records) = read_record_file(&path).unwrap();
        assert_eq!(kind, FileKind::Journal);
        assert_eq!(records, expected.records(), "the journal as it is");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let done = journal.finish().unwrap();
        assert_eq!(
            (done.format, done.nr_records, done.nr_snapshots),
            (format, 4, 12)
        );
        let (kind, records) = read_record_file(&path).unwrap();
        assert_eq!(kind, FileKind::Damo(format));
        assert_eq!(records, expected.records(), "the finished file");
        assert_eq!(
            journal_bytes(&path),
            expected.to_bytes().unwrap(),
            "the same bytes as written from memory"
        );
        assert_eq!(dir_names(dir.path()), ["rec.data"], "temporary file left");
    }
}

#[test]
fn journal_only_grows_and_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.data");
    let mut journal = Journal::create(&path, RecordFormat::JsonCompressed).unwrap();
    let inode = fs::metadata(&path).unwrap().ino();
    let mut previous = journal_bytes(&path);
    for round in 0..4 {
        for i in 0..10 {
            journal.push(&snapshot(round * 10 + i, &[10])).unwrap();
        }
        journal.flush().unwrap();
        let now = journal_bytes(&path);
        assert!(
            now.len() > previous.len() && now.starts_with(&previous),
            "round {round}: the file was rewritten, not appended to"
        );
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "a new file");
        let snapshots: usize = read_records(&path)
            .unwrap()
            .iter()
            .map(|r| r.snapshots.len())
            .sum();
        assert_eq!(snapshots as u64, (round + 1) * 10, "flushed = readable");
        previous = now;
    }
    // An idle recorder's flushes write nothing.
    journal.flush().unwrap();
    assert_eq!(journal_bytes(&path), previous);
}

/// A recorder killed at any moment, even in the middle of a write: everything flushed before
/// reads back, a cut-short end is left out, and `finish_file` converts what is there.
#[test]
fn a_journal_cut_anywhere_reads_up_to_its_last_complete_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.data");
    let mut journal = Journal::create(&path, RecordFormat::JsonCompressed).unwrap();
    for i in 0..20 {
        journal.push(&snapshot(i, &[10])).unwrap();
    }
    journal.flush().unwrap();
    let first = journal_bytes(&path);
    for i in 20..40 {
        journal.push(&snapshot(i, &[10])).unwrap();
    }
    journal.flush().unwrap();
    let second = journal_bytes(&path);
    // What a SIGKILL leaves: the encoder's unflushed state is lost with the process.
    for i in 40..45 {
        journal.push(&snapshot(i, &[10])).unwrap();
    }
    std::mem::forget(journal);
    assert_eq!(
        journal_bytes(&path),
        second,
        "unflushed data reached the file"
    );

    let mut last = 0;
    for cut in (first.len()..=second.len()).step_by(3) {
        let records = parse_records(&second[..cut])
            .unwrap_or_else(|e| panic!("cut at {cut} of {}: {e}", second.len()));
        let n = records[0].snapshots.len();
        assert!((20..=40).contains(&n) && n >= last, "cut at {cut}: {n}");
        for (i, s) in records[0].snapshots.iter().enumerate() {
            let want = snapshot(i as u64, &[10]);
            assert_eq!(s, &RecordSnapshot::of_target(&want, &want.targets[0]));
        }
        last = n;
    }
    assert_eq!(last, 40);

    fs::write(&path, &second[..second.len() - 5]).unwrap();
    let done = finish_file(&path, None).unwrap();
    assert_eq!(done.format, RecordFormat::JsonCompressed);
    let records = read_records(&path).unwrap();
    assert_eq!(records[0].snapshots.len(), done.nr_snapshots);
    assert!(done.nr_snapshots >= 39, "{}", done.nr_snapshots);
    assert_eq!(dir_names(dir.path()), ["rec.data"]);
}

#[test]
fn finish_file_refuses_what_is_not_a_journal_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let damo = dir.path().join("damo.data");
    writer_with(RecordFormat::JsonCompressed, 2, &[10])
        .save(&damo)
        .unwrap();
    let before = fs::read(&damo).unwrap();
    let err = finish_file(&damo, None).unwrap_err().to_string();
    assert!(
        err.contains("damo.data") && err.contains("not the journal"),
        "{err}"
    );
    assert_eq!(fs::read(&damo).unwrap(), before);

    let json = dir.path().join("plain.json");
    writer_with(RecordFormat::Json, 2, &[10])
        .save(&json)
        .unwrap();
    assert!(finish_file(&json, None).is_err());

    // A symlink, say one planted in /tmp, is not followed.
    let journal = dir.path().join("j.data");
    let mut j = Journal::create(&journal, RecordFormat::Json).unwrap();
    j.push(&snapshot(0, &[10])).unwrap();
    j.flush().unwrap();
    let link = dir.path().join("link.data");
    std::os::unix::fs::symlink(&journal, &link).unwrap();
    let err = finish_file(&link, None).unwrap_err().to_string();
    assert!(err.contains("link.data"), "{err}");
    assert_eq!(read_record_file(&journal).unwrap().0, FileKind::Journal);
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

fn compressed(text: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.flush().unwrap();
    e.get_ref().clone()
}

const HEADER: &str = "{\"damon_journal\":{\"version\":1,\"format\":\"json\"}}\n";
const RECORD: &str = "{\"record\":{\"id\":0,\"kdamond_idx\":0,\"context_idx\":0,\"target_id\":0,\"pid\":7,\"intervals\":{\"sample_us\":5000,\"aggr_us\":100000,\"update_us\":1000000}}}\n";

/// Region fields come and go: one added later (with a default) is ignored by this reader,
/// and a missing optional one reads as unknown.
#[test]
fn journal_regions_read_across_field_changes() {
    let text = format!(
        "{HEADER}{RECORD}{}{}",
        "{\"snapshot\":{\"record\":0,\"start_ns\":0,\"end_ns\":100,\"regions\":[{\"start\":0,\"end\":4096,\"nr_accesses\":2,\"age\":3,\"nr_unmeasured\":5}]}}\n",
        "{\"snapshot\":{\"record\":0,\"start_ns\":100,\"end_ns\":200,\"regions\":[{\"start\":0,\"end\":4096,\"nr_accesses\":1}]}}\n",
    );
    let records = parse_records(&compressed(&text)).unwrap();
    let r = &records[0];
    assert_eq!((r.pid, r.intervals), (Some(7), Some(INTERVALS)));
    assert_eq!(r.snapshots[0].regions[0].age, Some(3));
    assert_eq!(r.snapshots[1].regions[0].age, None);
    assert_eq!(r.snapshots[1].regions[0].nr_accesses, 1);
}

#[test]
fn bad_journal_lines_are_named_by_number() {
    let err = |text: String| {
        crate::error::Chain(&parse_records(&compressed(&text)).unwrap_err()).to_string()
    };
    let msg = err(format!(
        "{HEADER}{RECORD}{}",
        "{\"snapshot\":{\"record\":1,\"start_ns\":0,\"end_ns\":1,\"regions\":[]}}\n"
    ));
    assert!(msg.contains("line 3") && msg.contains("record 1"), "{msg}");
    let msg = err(format!(
        "{HEADER}{RECORD}{}",
        "{\"snapshot\":{\"record\":0,\"start_ns\":0,\"end_ns\":1,\"regions\":[{\"start\":9,\"end\":4,\"nr_accesses\":0}]}}\n"
    ));
    assert!(msg.contains("line 3") && msg.contains("ends at 4"), "{msg}");
    let msg = err(HEADER.replace("\"version\":1", "\"version\":99"));
    assert!(
        msg.contains("line 1") && msg.contains("version 99"),
        "{msg}"
    );
    let msg = err(HEADER.replace("json", "xml"));
    assert!(msg.contains("xml"), "{msg}");
    let msg = err(format!("{HEADER}{HEADER}"));
    assert!(msg.contains("line 2: a second header"), "{msg}");
    let msg = err(format!("{HEADER}{RECORD}{{\"snapshot\": 12}}\n"));
    assert!(msg.contains("line 3"), "{msg}");
    // Without its header it is no journal: an unfinished zlib stream is a damaged file.
    let msg = err(RECORD.to_string());
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn a_journal_at_a_planted_path_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    let out = dir.path().join("out.data");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    let mut j = Journal::create(&out, RecordFormat::JsonCompressed).unwrap();
    j.push(&snapshot(0, &[10])).unwrap();
    j.finish().unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert!(fs::symlink_metadata(&out).unwrap().is_file());
    assert_eq!(read_records(&out).unwrap()[0].snapshots.len(), 1);
}

/// Tuned intervals: one record per target whatever the intervals do, each snapshot carrying
/// its own sample interval (damo's `sample_interval_us`), the goal in the record's intervals;
/// the same through the journal, the damo file and back.
#[test]
fn tuned_intervals_keep_one_record_with_per_snapshot_intervals() {
    use crate::core::IntervalsGoal;
    let tuned = |i: u64, sample_us: u64| {
        let mut s = snapshot(i, &[10]);
        s.intervals = Intervals {
            sample_us,
            aggr_us: sample_us * 20,
            update_us: 1_000_000,
            goal: IntervalsGoal::AUTOTUNE,
        };
        s
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tuned.data");
    let mut journal = Journal::create(&path, RecordFormat::Json).unwrap();
    let mut expected = RecordWriter::new(RecordFormat::Json);
    for (i, sample_us) in [(0, 5_000), (1, 5_000), (2, 10_000), (3, 20_000)] {
        let s = tuned(i, sample_us);
        journal.push(&s).unwrap();
        expected.push(&s);
    }
    let records = expected.records();
    assert_eq!(records.len(), 1, "one record for the tuned target");
    let r = &records[0];
    assert_eq!(r.intervals.unwrap().goal, IntervalsGoal::AUTOTUNE);
    let samples: Vec<Option<u64>> = r.snapshots.iter().map(|s| s.sample_us).collect();
    assert_eq!(
        samples,
        [Some(5_000), Some(5_000), Some(10_000), Some(20_000)]
    );
    let third = r.snapshots[2].intervals(r).unwrap();
    assert_eq!((third.sample_us, third.aggr_us), (10_000, 200_000));

    journal.flush().unwrap();
    let (_, from_journal) = read_record_file(&path).unwrap();
    assert_eq!(from_journal, records, "through the journal");
    journal.finish().unwrap();
    let (_, from_damo) = read_record_file(&path).unwrap();
    assert_eq!(from_damo, records, "through the damo file");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"sample_interval_us\": \"10000\"")
            || text.contains("\"sample_interval_us\":\"10000\""),
        "damo's per-snapshot sample interval is written"
    );
}

fn record_scheme(nr_tried: u64, at_ns: u64) -> RecordScheme {
    use crate::core::scheme::{AccessPattern, Action, Bounds, Quotas, Scheme, SchemeStats};
    let scheme = Scheme {
        action: Action::Pageout,
        pattern: AccessPattern {
            sz: Bounds::ANY,
            nr_accesses: Bounds { min: 0, max: 0 },
            age: Bounds {
                min: 20,
                max: u64::MAX,
            },
        },
        quotas: Quotas {
            bytes: 10 << 20,
            reset_interval_ms: 1000,
            ..Quotas::default()
        },
        apply_interval_us: 0,
        ..Scheme::new(Action::Stat, AccessPattern::ANY)
    };
    let stats = SchemeStats {
        nr_tried,
        sz_tried: nr_tried * 4096,
        nr_applied: 1,
        sz_applied: 4096,
        sz_ops_filter_passed: 0,
        qt_exceeds: 2,
    };
    RecordScheme::of(0, &scheme, &stats, at_ns)
}

/// The header version of a journal file.
fn journal_version(path: &std::path::Path) -> u64 {
    let bytes = journal_bytes(path);
    let (text, _) = super::journal::inflate_all(&bytes).unwrap();
    let first = text.split(|&b| b == b'\n').next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(first).unwrap();
    v["damon_journal"]["version"].as_u64().unwrap()
}

#[test]
fn scheme_stats_go_through_the_journal_into_the_damo_file() {
    for format in [RecordFormat::Json, RecordFormat::JsonCompressed] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.data");
        let mut journal = Journal::create_with_schemes(&path, format).unwrap();
        assert_eq!(journal_version(&path), 2);
        journal.push(&snapshot(0, &[10, 20])).unwrap();
        journal
            .push_schemes(0, 0, vec![record_scheme(5, 100)])
            .unwrap();
        journal.push(&snapshot(1, &[10, 20])).unwrap();
        journal
            .push_schemes(0, 0, vec![record_scheme(9, 200)])
            .unwrap();
        journal.flush().unwrap();

        // The latest line of the context is what every record of it carries.
        let records = read_records(&path).unwrap();
        assert_eq!(records.len(), 2);
        for r in &records {
            assert_eq!(r.schemes, vec![record_scheme(9, 200)], "journal");
        }
        journal.finish().unwrap();
        let records = read_records(&path).unwrap();
        for r in &records {
            assert_eq!(r.schemes, vec![record_scheme(9, 200)], "damo file");
        }
        // In the damo file under our own key of each record, beside damo's own keys.
        let text = match format {
            RecordFormat::Json => fs::read(&path).unwrap(),
            RecordFormat::JsonCompressed => {
                super::journal::inflate_all(&fs::read(&path).unwrap())
                    .unwrap()
                    .0
            }
        };
        let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let first = &doc[0];
        assert_eq!(first["damon_schemes"][0]["stats"]["nr_tried"], 9);
        assert_eq!(first["damon_schemes"][0]["action"], "pageout");
        assert_eq!(first["scheme_idx"], serde_json::Value::Null);
        assert!(first["snapshots"][0]["damos_stats"].is_null());
    }
}

#[test]
fn journals_without_schemes_keep_version_1_and_refuse_schemes_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.data");
    let mut journal = Journal::create(&path, RecordFormat::JsonCompressed).unwrap();
    assert_eq!(journal_version(&path), 1);
    journal.push(&snapshot(0, &[10])).unwrap();
    assert!(
        journal
            .push_schemes(0, 0, vec![record_scheme(1, 1)])
            .is_err()
    );
    journal.finish().unwrap();
    let records = read_records(&path).unwrap();
    assert!(records.iter().all(|r| r.schemes.is_empty()));
    let text = fs::read(&path).unwrap();
    let (text, _) = super::journal::inflate_all(&text).unwrap();
    assert!(
        !String::from_utf8_lossy(&text).contains("damon_schemes"),
        "no key without schemes"
    );
}
