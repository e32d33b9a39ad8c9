//! Cross-checks with damo itself, both ways: damo reads our record files and reports the same
//! regions, heatmap cells and working set sizes as `damon report`; and we read the files damo
//! writes.
//!
//! Needs damo: `DAMON_TEST_DAMO` names the executable (`cargo xtask test` installs one in a
//! virtualenv, sets it and runs these tests). Without it they are ignored, and fail when run.
//! With `UPDATE_GOLDEN=1` it also rewrites the damo-written files under tests/data/.
use damon_user::core::Pid;
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use clap::Parser;
use damon_user::{
    cmd::report::{Args, Terminal, render},
    record::{Record, RecordFormat, read_records},
};

/// The damo executable `DAMON_TEST_DAMO` names; the tests are ignored for want of it, and
/// fail without it when run.
fn damo() -> PathBuf {
    std::env::var_os("DAMON_TEST_DAMO")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("DAMON_TEST_DAMO must name a damo executable (`cargo xtask test` sets it)")
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs damo and returns its stdout; any failure fails the test with damo's own words.
fn run_damo(damo: &Path, args: &[&str]) -> String {
    let out = Command::new(damo)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", damo.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !stdout.contains("failed"),
        "damo {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn our_report(argv: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("report").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let mut out = Vec::new();
    render(&cli.args, &mut out, Terminal::default()).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
    String::from_utf8(out).unwrap()
}

/// Our record files as damo can read them here: damo (3.4) tells formats apart with
/// `file -b` and takes "JSON text data" (file >= 5.4x) for perf data, so json files are given
/// to it compressed.
fn damo_readable_copies(dir: &Path) -> Vec<PathBuf> {
    ["stairs.data", "two_targets.json"]
        .iter()
        .map(|name| {
            let records = read_records(&data(name)).unwrap();
            let path = dir.join(format!("{name}.json_compressed"));
            fs::write(
                &path,
                RecordFormat::JsonCompressed.encode(&records).unwrap(),
            )
            .unwrap();
            path
        })
        .collect()
}

type Region = (u64, u64, u64, i64);
/// Per record: target id, and per snapshot its times relative to the record's first snapshot
/// start and its regions.
type Parsed = Vec<(String, Vec<(u64, u64, Vec<Region>)>)>;

/// Parses `damo report access --raw_form --raw_number`.
fn parse_damo_raw_form(text: &str) -> Parsed {
    let mut records: Parsed = Vec::new();
    let mut pending_start = 0;
    for line in text.lines() {
        let value = |l: &str| {
            l.split_once(':')
                .map(|(_, v)| v.trim().to_string())
                .unwrap()
        };
        if line.starts_with("base_time_absolute:") {
            records.push((String::new(), Vec::new()));
        } else if line.starts_with("monitoring_start:") {
            pending_start = value(line).parse().unwrap();
        } else if line.starts_with("monitoring_end:") {
            let end = value(line).parse().unwrap();
            records
                .last_mut()
                .unwrap()
                .1
                .push((pending_start, end, Vec::new()));
        } else if line.starts_with("target_id:") {
            records.last_mut().unwrap().0 = value(line);
        } else if line.contains('-') && line.contains('(') {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = tokens[0].split_once('-').unwrap();
            let region = (
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
                tokens[tokens.len() - 2].parse().unwrap(),
                tokens[tokens.len() - 1].parse().unwrap(),
            );
            let snapshot = records.last_mut().unwrap().1.last_mut().unwrap();
            snapshot.2.push(region);
        }
    }
    records
}

/// Parses our `report raw` into the same shape.
fn parse_our_raw(text: &str) -> Parsed {
    let mut records: Parsed = Vec::new();
    let mut bases: Vec<u64> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<i128> = line
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        let (record, snapshot) = (f[0] as usize, f[5] as usize);
        if records.len() == record {
            records.push((f[3].to_string(), Vec::new()));
            bases.push(f[6] as u64);
        }
        let base = bases[record];
        let snapshots = &mut records[record].1;
        if snapshots.len() == snapshot {
            snapshots.push((f[6] as u64 - base, f[7] as u64 - base, Vec::new()));
        }
        snapshots[snapshot]
            .2
            .push((f[8] as u64, f[9] as u64, f[10] as u64, f[11] as i64));
    }
    records
}

#[test]
#[ignore = "needs damo (DAMON_TEST_DAMO)"]
fn damo_reads_our_regions_as_we_do() {
    let damo = damo();
    let dir = tempfile::tempdir().unwrap();
    for path in damo_readable_copies(dir.path()) {
        let p = path.to_str().unwrap();
        let theirs = parse_damo_raw_form(&run_damo(
            &damo,
            &["report", "access", "--raw_form", "--raw_number", "-i", p],
        ));
        let ours = parse_our_raw(&our_report(&["raw", "-i", p]));
        assert!(
            !ours.is_empty()
                && ours.iter().all(|(_, snapshots)| !snapshots.is_empty()
                    && snapshots.iter().all(|s| !s.2.is_empty())),
            "{p}: a record, a snapshot or a region list is empty: {ours:?}"
        );
        assert_eq!(theirs, ours, "{p}: damo's raw form differs from ours");
    }
}

#[test]
#[ignore = "needs damo (DAMON_TEST_DAMO)"]
fn damo_heatmap_cells_equal_ours() {
    let damo = damo();
    let dir = tempfile::tempdir().unwrap();
    let areas = [
        (0x55d4_a000_0000u64, 0x55d4_a400_0000u64),
        (0x7f3a_0000_0000, 0x7f3a_1000_0000),
    ];
    let mut compared = 0;
    for path in damo_readable_copies(dir.path()) {
        let p = path.to_str().unwrap();
        for (idx, record) in read_records(&path).unwrap().iter().enumerate() {
            let (first, last) = (&record.snapshots[0], record.snapshots.last().unwrap());
            for (start, end) in areas {
                let (rows, cols) = (record.snapshots.len() / 2 + 1, 37);
                let theirs = run_damo(
                    &damo,
                    &[
                        "report",
                        "heatmap",
                        "--output",
                        "raw",
                        "-i",
                        p,
                        "--tid",
                        &record.target_id.unwrap().to_string(),
                        "--time_range",
                        &first.start_ns.to_string(),
                        &last.end_ns.to_string(),
                        "--address_range",
                        &start.to_string(),
                        &end.to_string(),
                        "--resol",
                        &rows.to_string(),
                        &cols.to_string(),
                    ],
                );
                let ours: serde_json::Value = serde_json::from_str(&our_report(&[
                    "heatmap",
                    "--json",
                    "-i",
                    p,
                    "--record",
                    &idx.to_string(),
                    "--address-range",
                    &format!("{start:#x}-{end:#x}"),
                    "--time-range",
                    &format!("0-{}ns", last.end_ns - first.start_ns),
                    "--resolution",
                    &format!("{rows}x{cols}"),
                ]))
                .unwrap();
                compare_heatmaps(&theirs, &ours["records"][0], start);
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 6);
}

fn compare_heatmaps(damo_raw: &str, ours: &serde_json::Value, area_start: u64) {
    let heat = ours["heat"].as_array().unwrap();
    let columns = ours["columns"].as_array().unwrap();
    let time_unit = ours["time_unit_ns"].as_u64().unwrap();
    let lines: Vec<&str> = damo_raw.lines().collect();
    assert_eq!(lines.len(), heat.len() * columns.len(), "cell count");
    let mut nonzero = 0;
    for (i, line) in lines.iter().enumerate() {
        let (row, col) = (i / columns.len(), i % columns.len());
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            f[0].parse::<u64>().unwrap(),
            row as u64 * time_unit,
            "time of row {row}"
        );
        let col_start = columns[col]["start"].as_u64().unwrap() - area_start;
        assert_eq!(
            f[1].parse::<u64>().unwrap(),
            col_start,
            "address of column {col}"
        );
        let cell = &heat[row][col];
        match f[2] {
            "NaN" => assert!(
                cell.is_null(),
                "row {row} column {col}: damo empty, ours {cell}"
            ),
            v => {
                let theirs: f64 = v.parse().unwrap();
                let ours = cell
                    .as_f64()
                    .unwrap_or_else(|| panic!("row {row} column {col}: damo {v}, ours empty"));
                assert!(
                    (theirs - ours).abs() <= 1e-9 * theirs.abs().max(1.0),
                    "row {row} column {col}: damo {theirs}, ours {ours}"
                );
                nonzero += usize::from(theirs > 0.0);
            }
        }
    }
    assert!(nonzero > 0, "nothing hot in the compared range");
}

#[test]
#[ignore = "needs damo (DAMON_TEST_DAMO)"]
fn damo_wss_percentiles_equal_ours() {
    let damo = damo();
    let dir = tempfile::tempdir().unwrap();
    for path in damo_readable_copies(dir.path()) {
        let p = path.to_str().unwrap();
        let theirs = run_damo(
            &damo,
            &[
                "report",
                "wss",
                "-i",
                p,
                "--raw_number",
                "--exclude_samples",
                "0",
                "--per_target",
            ],
        );
        let theirs: Vec<(u64, u64)> = theirs
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].parse().unwrap(), f[1].parse().unwrap())
            })
            .collect();
        let ours: serde_json::Value =
            serde_json::from_str(&our_report(&["wss", "--json", "-i", p])).unwrap();
        let ours: Vec<(u64, u64)> = ours["records"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["percentiles"].as_array().unwrap().clone())
            .map(|p| {
                (
                    p["percentile"].as_u64().unwrap(),
                    p["wss_bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        // Something to compare: percentiles, and a working set that is not all empty.
        assert!(
            theirs.iter().any(|&(_, wss)| wss > 0),
            "{p}: damo reports no working set: {theirs:?}"
        );
        assert_eq!(theirs, ours, "{p}");
    }
}

/// What damo keeps of our records: our own keys (pid, lost count) are not damo's.
fn as_damo_keeps(mut records: Vec<Record>) -> Vec<Record> {
    for r in &mut records {
        r.pid = None;
        r.nr_lost_snapshots = 0;
    }
    records
}

/// damo's writer, through `damo convert_record_format`, in both formats and through its
/// perf-script form (which loses the intervals, as trace-based recordings do).
#[test]
#[ignore = "needs damo (DAMON_TEST_DAMO)"]
fn we_read_what_damo_writes() {
    let damo = damo();
    let dir = tempfile::tempdir().unwrap();
    let ours = data("stairs.data");
    let expected = as_damo_keeps(read_records(&ours).unwrap());
    assert!(
        !expected.is_empty() && expected.iter().all(|r| !r.snapshots.is_empty()),
        "nothing to compare in {}",
        ours.display()
    );
    let convert = |from: &Path, format: &str, to: &Path| {
        run_damo(
            &damo,
            &[
                "convert_record_format",
                "--record_file",
                from.to_str().unwrap(),
                "--format",
                format,
                "--output_file",
                to.to_str().unwrap(),
            ],
        );
    };
    for format in ["json", "json_compressed"] {
        let out = dir.path().join(format!("damo.{format}"));
        convert(&ours, format, &out);
        let bytes = fs::read(&out).unwrap();
        assert_eq!(RecordFormat::detect(&bytes).unwrap().to_string(), format);
        assert_eq!(read_records(&out).unwrap(), expected, "damo's {format}");
    }

    let script = dir.path().join("damo.perf_script");
    convert(&ours, "perf_script", &script);
    let trace = dir.path().join("damo_trace.data");
    convert(&script, "json_compressed", &trace);
    let from_trace = read_records(&trace).unwrap();
    let mut without_intervals = expected.clone();
    without_intervals
        .iter_mut()
        .for_each(|r| r.intervals = None);
    assert_eq!(
        from_trace, without_intervals,
        "damo's records from its perf script"
    );

    // The committed copies are what this damo writes.
    for (committed, fresh) in [
        ("damo_written.data", dir.path().join("damo.json_compressed")),
        ("damo_trace.data", trace),
    ] {
        if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            fs::copy(&fresh, data(committed)).unwrap();
        }
        assert_eq!(
            read_records(&data(committed)).unwrap(),
            read_records(&fresh).unwrap(),
            "tests/data/{committed} is stale: UPDATE_GOLDEN=1 DAMON_TEST_DAMO=... cargo test -p damon-user --test report_damo"
        );
    }
}

/// damo reads a record whose intervals were tuned with each snapshot's own intervals
/// (its `sample_interval_us`), as ours do.
#[test]
#[ignore = "needs damo (DAMON_TEST_DAMO)"]
fn damo_reads_the_tuned_intervals_of_each_snapshot() {
    use damon_user::core::{
        Intervals, IntervalsGoal, RegionSnapshot, Snapshot as CoreSnapshot, TargetSnapshot,
    };
    use damon_user::record::{RecordFormat, RecordWriter};
    let damo = damo();
    let samples = [5_000u64, 5_000, 10_000, 20_000];
    let mut writer = RecordWriter::new(RecordFormat::JsonCompressed);
    let mut t = 1_000_000_000u64;
    for &sample_us in &samples {
        let aggr_us = sample_us * 20;
        writer.push(&CoreSnapshot {
            kdamond_idx: 0,
            context_idx: 0,
            start_ns: t,
            end_ns: t + aggr_us * 1_000,
            intervals: Intervals {
                sample_us,
                aggr_us,
                update_us: 1_000_000,
                goal: IntervalsGoal::AUTOTUNE,
            },
            targets: vec![TargetSnapshot {
                target_idx: 0,
                pid: Pid(42),
                regions: vec![RegionSnapshot {
                    start: 0x10_0000,
                    end: 0x20_0000,
                    nr_accesses: 2,
                    age: 1,
                    nr_unmeasured: 0,
                }],
            }],
        });
        t += aggr_us * 1_000;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tuned.data");
    writer.save(&path).expect("save");
    let out = run_damo(
        &damo,
        &[
            "report",
            "access",
            "--input_file",
            path.to_str().unwrap(),
            "--raw_number",
        ],
    );
    let seen: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("intervals: sample "))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(
        seen, samples,
        "damo's view of each snapshot's sample interval:\n{out}"
    );
}
