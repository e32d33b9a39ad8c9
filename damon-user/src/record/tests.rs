use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::core::{Intervals, RegionSnapshot, Snapshot, TargetSnapshot};

const INTERVALS: Intervals = Intervals {
    sample_us: 5_000,
    aggr_us: 100_000,
    update_us: 1_000_000,
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
                pid: *pid,
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
fn flush_replaces_the_file_privately() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damon.data");
    fs::write(&path, b"old").unwrap();
    let w = writer_with(RecordFormat::JsonCompressed, 2, &[10]);
    w.flush(&path).unwrap();
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
fn flush_to_a_missing_directory_names_the_path() {
    let w = writer_with(RecordFormat::Json, 1, &[10]);
    let err = w
        .flush(Path::new("/nonexistent-dir/damon.data"))
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
        Err(ParseError::UnknownFormat { .. })
    ));
    let msg = parse_records(b"PERFILE2 binary").unwrap_err().to_string();
    assert!(msg.contains("PERFILE2"), "{msg}");
    let mut truncated = writer_with(RecordFormat::JsonCompressed, 3, &[10])
        .to_bytes()
        .unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        parse_records(&truncated),
        Err(ParseError::Decompress { .. })
    ));
    let mut json = writer_with(RecordFormat::Json, 3, &[10])
        .to_bytes()
        .unwrap();
    json.truncate(json.len() / 2);
    assert!(matches!(parse_records(&json), Err(ParseError::Json { .. })));
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
    let err = read_records(&path).unwrap_err().to_string();
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
