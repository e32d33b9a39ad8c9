//! Schemes (DAMOS) from the command line: `damon record --damos-*`, and `damon report
//! schemes` on what it recorded.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use damon_tests::{ChildGuard, Workload, damo, damon_bin, wait_until};
use damon_user::record::{RecordScheme, read_records};

/// Records `pid` for `secs` seconds into `out` with `schemes` (the `--damos-*` options).
fn record(pid: i32, out: &Path, secs: &str, schemes: &[&str]) {
    let output = Command::new(damon_bin())
        .args(["record", "-p", &pid.to_string(), "-d", secs, "-o"])
        .arg(out)
        .args(schemes)
        .output()
        .expect("damon record");
    assert!(
        output.status.success(),
        "damon record exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two stat schemes: the first selects the regions not accessed in an aggregation (the cold
/// buffer is one), the second only regions of an exbibyte or more (none). As in damo, the Nth
/// `--damos-sz-region` belongs to the Nth scheme: the first scheme has its own, `min max`.
const TWO_STAT_SCHEMES: [&str; 13] = [
    "--damos-action",
    "stat",
    "--damos-access-rate",
    "0%",
    "0%",
    "--damos-sz-region",
    "min",
    "max",
    "--damos-action",
    "stat",
    "--damos-sz-region",
    "1E",
    "max",
];

/// The schemes the records of `out` carry: the same in every record of the context.
fn schemes_of(out: &Path) -> Vec<RecordScheme> {
    let records = read_records(out).expect("a readable record file");
    assert!(!records.is_empty(), "no records");
    for r in &records {
        assert_eq!(
            r.schemes, records[0].schemes,
            "records of one context differ"
        );
    }
    records[0].schemes.clone()
}

/// The stats rows of `damon report schemes --raw-numbers`: scheme index, action, then the
/// numbers (tried, tried bytes, applied, applied bytes, quota exceeded).
fn report_rows(out: &Path) -> Vec<(usize, String, Vec<u64>)> {
    let output = Command::new(damon_bin())
        .args(["report", "schemes", "--raw-numbers", "-i"])
        .arg(out)
        .output()
        .expect("damon report schemes");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "damon report schemes: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with("SCHEME"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 7, "a stats row of 7 columns: {l:?}\n{text}");
            let numbers = cols[2..]
                .iter()
                .map(|c| c.parse().unwrap_or_else(|_| panic!("{c:?} in {l:?}")))
                .collect();
            (
                cols[0].parse().expect("scheme index"),
                cols[1].to_string(),
                numbers,
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn record_with_stat_schemes_and_report_shows_what_they_tried() {
    let (w, _) = Workload::start(&[
        "hotcold",
        "--hot-mib",
        "4",
        "--cold-mib",
        "8",
        "--duration",
        "10",
    ])
    .expect("workload");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("schemes.data");
    record(w.pid(), &out, "3", &TWO_STAT_SCHEMES);

    let schemes = schemes_of(&out);
    assert_eq!(schemes.len(), 2, "{schemes:?}");
    let (cold, none) = (&schemes[0], &schemes[1]);
    assert_eq!((cold.scheme_idx, cold.action.as_str()), (0, "stat"));
    assert_eq!((cold.nr_accesses.min, cold.nr_accesses.max), (0, 0));
    assert!(
        cold.stats.nr_tried > 0 && cold.stats.sz_tried >= 4096,
        "the cold buffer was never tried: {cold:?}"
    );
    assert_eq!(none.sz.min, 1 << 60);
    assert_eq!(
        (none.stats.nr_tried, none.stats.sz_tried),
        (0, 0),
        "no region is an exbibyte: {none:?}"
    );

    let rows = report_rows(&out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].1.as_str()), (0, "stat"));
    assert_eq!(
        rows[0].2,
        [
            cold.stats.nr_tried,
            cold.stats.sz_tried,
            cold.stats.nr_applied,
            cold.stats.sz_applied,
            cold.stats.qt_exceeds
        ],
        "the report shows the recorded stats"
    );
    assert_eq!((rows[1].0, rows[1].2[0], rows[1].2[1]), (1, 0, 0));
}

/// A recording without schemes has none, and the report says so.
#[test]
#[ignore = "needs root"]
fn record_without_schemes_reports_none() {
    let (w, _) = Workload::start(&["sleeper", "--interval-us", "100000"]).expect("sleeper");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("plain.data");
    record(w.pid(), &out, "1", &[]);
    assert!(schemes_of(&out).is_empty());
    let output = Command::new(damon_bin())
        .args(["report", "schemes", "-i"])
        .arg(&out)
        .output()
        .expect("damon report schemes");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("# no schemes"), "{text}");
}

/// damo reads a record with schemes as any other: our `damon_schemes` key is ignored.
#[test]
#[ignore = "needs root and damo (DAMON_TEST_DAMO)"]
fn damo_reads_a_record_with_schemes() {
    let (w, _) = Workload::start(&["hotcold", "--hot-mib", "2", "--cold-mib", "2"]).expect("w");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("schemes.data");
    record(w.pid(), &out, "1.5", &TWO_STAT_SCHEMES);
    assert_eq!(schemes_of(&out).len(), 2);
    let output = Command::new(damo())
        .args(["report", "access", "--input_file"])
        .arg(&out)
        .output()
        .expect("damo");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !text.contains("failed"),
        "damo cannot read the file: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What `damon ARGS` wrote to stderr, first line; it must have failed with exit code 1.
fn refusal(args: &[&str]) -> String {
    let out = Command::new(damon_bin())
        .args(args)
        .output()
        .expect("run damon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    err.lines().next().unwrap_or_default().to_string()
}

/// Bad values are refused by name before anything starts (no root needed to see it): no file
/// is written, no command started.
#[test]
fn bad_scheme_values_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("never.data");
    let out_s = out.to_str().expect("utf-8 path");
    let marker = dir.path().join("started");
    let marker_s = marker.to_str().expect("utf-8 path");
    for (args, expected) in [
        (
            &["--damos-action", "stat", "--damos-age", "2s", "forever"][..],
            "damon: scheme 0: --damos-age MAX: \"forever\" is not a time (100ms, 2s, 1m, a \
             number of microseconds, min, max)",
        ),
        (
            &[
                "--damos_action",
                "pageout",
                "--damos_access_rate",
                "0%",
                "lots",
            ],
            "damon: scheme 0: --damos-access-rate MAX: \"lots\" is not a percentage (0%, 5%, \
             12.5%, min, max)",
        ),
        (
            &["--damos-action", "stat", "--damos-action", "reclaim"],
            "damon: scheme 1: --damos-action: unknown action \"reclaim\"; actions: willneed, \
             cold, pageout, hugepage, nohugepage, lru_prio, lru_deprio, migrate_hot, \
             migrate_cold, stat, collapse",
        ),
        (
            &["--damos-action", "stat", "--damos-quotas", "0", "10Q", "1s"],
            "damon: scheme 0: --damos-quotas SIZE: \"10Q\" is not a size (4096, 4K, 2M, 1GiB, \
             min, max)",
        ),
        (
            &["--damos-action", "hugepage"],
            "damon: scheme 0: action hugepage is refused: process_madvise cannot apply \
             MADV_HUGEPAGE or MADV_NOHUGEPAGE to another process",
        ),
        (
            &[
                "--damos-action",
                "stat",
                "--damos-filter",
                "allow",
                "addr",
                "0x2000",
                "0x1000",
            ],
            "damon: scheme 0: --damos-filter allow addr 0x2000 0x1000: END 0x1000 is before \
             START 0x2000",
        ),
        (
            &["--damos-age", "1s", "max"],
            "damon: 1 --damos-age options but 0 schemes (--damos-action): the Nth --damos-age \
             belongs to the Nth scheme",
        ),
    ] {
        for cmd in ["record", "top"] {
            let mut all = vec![cmd];
            if cmd == "record" {
                all.extend(["-o", out_s]);
            }
            all.extend(args);
            all.extend(["--", "touch", marker_s]);
            assert_eq!(refusal(&all), expected, "{all:?}");
            assert!(!out.exists(), "{all:?} wrote {}", out.display());
            assert!(!marker.exists(), "{all:?} started its command");
        }
    }
}

/// `damon top` with a scheme shows its stats in every plain block (stdout not a terminal).
#[test]
#[ignore = "needs root"]
fn top_shows_the_schemes_stats() {
    let (w, _) = Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("w");
    let output = Command::new(damon_bin())
        .args(["top", "--duration", "2", "-p", &w.pid().to_string()])
        .args(["--damos-action", "stat", "--damos-sz-region", "1E", "max"])
        .args(["--damos-action", "stat"])
        .output()
        .expect("damon top");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "damon top: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "# scheme 1 stat: tried 1,234 regions (...), ..."
    let tried = |idx: usize| -> Vec<u64> {
        let prefix = format!("# scheme {idx} stat: tried ");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                let n = rest.split_whitespace().next().unwrap_or_default();
                n.replace(',', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{rest:?}"))
            })
            .collect()
    };
    let (none, all) = (tried(0), tried(1));
    assert!(
        !all.is_empty(),
        "no scheme lines in the plain blocks:\n{text}"
    );
    assert_eq!(none.len(), all.len(), "{text}");
    assert!(none.iter().all(|&n| n == 0), "{none:?}");
    assert!(
        all.windows(2).all(|p| p[0] <= p[1]),
        "running totals went down: {all:?}"
    );
    assert!(all.last().is_some_and(|&n| n > 0), "{all:?}\n{text}");
}

/// A recorder killed mid-run leaves a journal whose schemes carry the stats of its last flush,
/// and they grow from flush to flush.
#[test]
#[ignore = "needs root"]
fn a_killed_recorder_leaves_the_stats_of_its_last_flush() {
    let (w, _) = Workload::start(&["hotcold", "--hot-mib", "2", "--cold-mib", "2"]).expect("w");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("killed.data");
    let mut rec = ChildGuard(
        Command::new(damon_bin())
            .args(["record", "-p", &w.pid().to_string(), "-o"])
            .arg(&out)
            .args(["--damos-action", "stat"])
            .stderr(Stdio::null())
            .spawn()
            .expect("damon record"),
    );
    let tried = || {
        read_records(&out)
            .ok()
            .and_then(|r| r.first().and_then(|r| r.schemes.first().cloned()))
            .map_or(0, |s| s.stats.nr_tried)
    };
    wait_until("stats in the journal", Duration::from_secs(20), || {
        tried() > 0
    })
    .unwrap();
    let first = tried();
    wait_until("more stats in the journal", Duration::from_secs(20), || {
        tried() > first
    })
    .unwrap();
    rec.signal(libc::SIGKILL);
    rec.wait_for(Duration::from_secs(10)).expect("killed");
    let schemes = schemes_of(&out);
    assert_eq!(schemes.len(), 1);
    assert!(schemes[0].stats.nr_tried > first, "{schemes:?}");
    // `damon report schemes` reads the journal as it is.
    let rows = report_rows(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2[0], schemes[0].stats.nr_tried);
}
