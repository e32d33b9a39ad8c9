//! The machine outputs of `damon report`: raw lines and JSON documents, checked for shape
//! rather than text, so that scripts can rely on them.
use std::path::PathBuf;

use clap::Parser;
use damon_user::{
    cmd::report::{Args, Terminal, render},
    record::read_records,
    report::raw::FIELDS,
};
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn report(argv: &[&str]) -> String {
    let cli = Cli::try_parse_from(std::iter::once("report").chain(argv.iter().copied())).unwrap();
    let mut out = Vec::new();
    render(&cli.args, &mut out, Terminal::default()).unwrap();
    String::from_utf8(out).unwrap()
}

const FILES: [&str; 4] = [
    "stairs.data",
    "two_targets.json",
    "damo_written.data",
    "damo_trace.data",
];

#[test]
fn raw_lines_have_every_field_as_an_integer() {
    for name in FILES {
        let path = data(name);
        let text = report(&["raw", "-i", &path]);
        let fields_line = text.lines().find(|l| l.starts_with("# fields: ")).unwrap();
        assert_eq!(fields_line, format!("# fields: {}", FIELDS.join(" ")));
        let records = read_records(path.as_ref()).unwrap();
        let expected_lines: usize = records
            .iter()
            .flat_map(|r| &r.snapshots)
            .map(|s| s.regions.len())
            .sum();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), expected_lines, "{name}");
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            assert_eq!(fields.len(), FIELDS.len(), "{name}: {line}");
            for (f, name) in fields.iter().zip(FIELDS) {
                assert!(
                    f.parse::<i128>().is_ok(),
                    "{name} {f:?} is not an integer: {line}"
                );
            }
        }
    }
}

#[test]
fn unknown_values_are_minus_one() {
    // damo's trace-based records have no pid.
    let text = report(&["raw", "-i", &data("damo_trace.data")]);
    let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(line.split(' ').nth(4), Some("-1"), "{line}");
}

fn json(argv: &[&str]) -> Value {
    let text = report(argv);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{argv:?}: {e}\n{text}"))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

const RECORD_KEYS: [&str; 8] = [
    "context_idx",
    "intervals",
    "kdamond_idx",
    "nr_lost_snapshots",
    "nr_snapshots",
    "pid",
    "record",
    "target_id",
];

fn with_record_keys(extra: &[&'static str]) -> Vec<&'static str> {
    let mut keys: Vec<&str> = RECORD_KEYS.iter().chain(extra).copied().collect();
    keys.sort_unstable();
    keys
}

#[test]
fn every_style_has_a_json_document() {
    let two = data("two_targets.json");
    for style in ["access", "heatmap", "wss", "raw"] {
        let doc = json(&[style, "--json", "-i", &two]);
        assert_eq!(
            keys(&doc),
            [
                "input",
                "nr_lost_snapshots",
                "nr_snapshots",
                "records",
                "style"
            ],
            "{style}"
        );
        assert_eq!(doc["style"], style);
        assert_eq!(doc["nr_snapshots"], 16);
        assert_eq!(doc["nr_lost_snapshots"], 2);
        assert_eq!(doc["records"].as_array().unwrap().len(), 2, "{style}");
        assert_eq!(doc["records"][1]["pid"], 4343);
    }
}

#[test]
fn access_json_has_the_numbers_of_the_table() {
    let doc = json(&[
        "access",
        "--json",
        "-i",
        &data("stairs.data"),
        "--sort",
        "access",
    ]);
    let record = &doc["records"][0];
    assert_eq!(keys(record), with_record_keys(&["snapshot"]));
    let snapshot = &record["snapshot"];
    assert_eq!(snapshot["index"], 29);
    let hottest = &snapshot["regions"][0];
    assert_eq!(
        keys(hottest),
        [
            "access_hz",
            "access_percent",
            "age",
            "age_us",
            "end",
            "nr_accesses",
            "nr_unmeasured",
            "size",
            "start"
        ]
    );
    assert_eq!(hottest["nr_accesses"], 20);
    assert_eq!(
        hottest["nr_unmeasured"], 0,
        "damo's file has no unmeasured samples"
    );
    assert_eq!(snapshot["unmeasured_bytes"], 0);
    assert_eq!(hottest["access_percent"], 100.0);
    assert_eq!(hottest["access_hz"], 200.0);
    assert_eq!(hottest["age_us"], 2_900_000);
    let sum: u64 = snapshot["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["size"].as_u64().unwrap())
        .sum();
    assert_eq!(snapshot["total_bytes"], sum);
}

#[test]
fn heatmap_json_is_rows_of_columns() {
    let doc = json(&[
        "heatmap",
        "--json",
        "-i",
        &data("stairs.data"),
        "--resolution",
        "6x40",
    ]);
    let record = &doc["records"][0];
    assert_eq!(
        keys(record),
        with_record_keys(&[
            "areas",
            "columns",
            "heat",
            "heat_unit",
            "time_start_ns",
            "time_unit_ns"
        ])
    );
    assert_eq!(record["heat_unit"], "hz");
    let heat = record["heat"].as_array().unwrap();
    assert_eq!(heat.len(), 6);
    let ncols = record["columns"].as_array().unwrap().len();
    assert!(
        heat.iter()
            .all(|row| row.as_array().unwrap().len() == ncols)
    );
    assert_eq!(record["areas"].as_array().unwrap().len(), 3);
}

#[test]
fn wss_json_has_percentiles() {
    let doc = json(&["wss", "--json", "-i", &data("stairs.data"), "--step", "50"]);
    let percentiles: Vec<u64> = doc["records"][0]["percentiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["percentile"].as_u64().unwrap())
        .collect();
    assert_eq!(percentiles, [0, 50, 100]);
}

#[test]
fn raw_json_round_trips_the_regions() {
    let path = data("two_targets.json");
    let doc = json(&["raw", "--json", "-i", &path]);
    let records = read_records(path.as_ref()).unwrap();
    let regions = &doc["records"][1]["snapshots"][3]["regions"];
    let expected = serde_json::to_value(&records[1].snapshots[3].regions).unwrap();
    assert_eq!(regions, &expected);
}
