//! Golden-file tests of every `damon report` style over the committed record files.
//!
//! A report that differs from its golden file fails and prints the command that accepts the
//! change: `UPDATE_GOLDEN=1 cargo test -p damon-user --test report_golden`. The same command
//! regenerates the synthetic record files from the workload below.
use damon_user::core::Pid;
use std::{fs, path::PathBuf};

use clap::Parser;
use damon_user::{
    cmd::report::{Args, Terminal, render},
    core::{Intervals, RegionSnapshot, Snapshot, TargetSnapshot},
    record::{RecordFormat, RecordWriter, read_records},
};

const ACCEPT: &str = "UPDATE_GOLDEN=1 cargo test -p damon-user --test report_golden";

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const MIB: u64 = 1 << 20;
const HEAP: u64 = 0x55d4_a000_0000;
const MMAP: u64 = 0x7f3a_0000_0000;
const STACK: u64 = 0x7ffd_1000_0000;
const INTERVALS: Intervals = Intervals {
    sample_us: 5_000,
    aggr_us: 100_000,
    update_us: 1_000_000,
    goal: damon_user::core::IntervalsGoal::OFF,
};

/// One aggregation of a process with the three areas DAMON's vaddr monitors: a heap with a
/// hot and a warm part, an mmap area whose hot 32 MiB window moves every 10 aggregations
/// (damo's "stairs" workload), and a lightly used stack. `shift` varies a second process.
fn regions_at(i: u64, shift: u32) -> Vec<(u64, u64, u32)> {
    let window = MMAP + ((i / 10) % 4) * 64 * MIB;
    let mut regions = vec![
        (HEAP, HEAP + 16 * MIB, 20 - shift),
        (HEAP + 16 * MIB, HEAP + 32 * MIB, (i % 5) as u32),
        (HEAP + 32 * MIB, HEAP + 64 * MIB, 0),
    ];
    if window > MMAP {
        regions.push((MMAP, window, 0));
    }
    regions.push((window, window + 32 * MIB, 15 + (i % 3) as u32));
    regions.push((window + 32 * MIB, window + 36 * MIB, 2));
    if window + 36 * MIB < MMAP + 256 * MIB {
        regions.push((window + 36 * MIB, MMAP + 256 * MIB, 0));
    }
    regions.push((STACK, STACK + 132 * 1024, 5 + shift));
    regions
}

/// Snapshots of `pids` over `n` aggregations; ages count how long a region kept its
/// boundaries and nr_accesses, as DAMON's do.
fn workload(n: u64, pids: &[i32]) -> Vec<Snapshot> {
    let mut previous: Vec<Vec<RegionSnapshot>> = vec![Vec::new(); pids.len()];
    (0..n)
        .map(|i| {
            let targets = pids
                .iter()
                .enumerate()
                .map(|(t, &pid)| {
                    let regions: Vec<RegionSnapshot> = regions_at(i, t as u32)
                        .into_iter()
                        .map(|(start, end, nr_accesses)| {
                            let age = previous[t]
                                .iter()
                                .find(|p| {
                                    (p.start, p.end, p.nr_accesses) == (start, end, nr_accesses)
                                })
                                .map_or(0, |p| p.age + 1);
                            RegionSnapshot {
                                start,
                                end,
                                nr_accesses,
                                age,
                                nr_unmeasured: 0,
                            }
                        })
                        .collect();
                    previous[t] = regions.clone();
                    TargetSnapshot {
                        target_idx: t,
                        pid: Pid(pid),
                        regions,
                    }
                })
                .collect();
            Snapshot {
                kdamond_idx: 0,
                context_idx: 0,
                start_ns: 5_000_000_000 + i * 100_000_000,
                end_ns: 5_000_000_000 + (i + 1) * 100_000_000,
                intervals: INTERVALS,
                targets,
            }
        })
        .collect()
}

/// The synthetic record files: name, format, writer.
fn synthetic_files() -> Vec<(&'static str, RecordWriter)> {
    let mut stairs = RecordWriter::new(RecordFormat::JsonCompressed);
    workload(30, &[4242]).iter().for_each(|s| stairs.push(s));
    let mut two = RecordWriter::new(RecordFormat::Json);
    workload(8, &[4242, 4343]).iter().for_each(|s| two.push(s));
    two.add_lost(0, 0, 2);
    vec![("stairs.data", stairs), ("two_targets.json", two)]
}

/// The committed files hold what the workload generates (regenerated with UPDATE_GOLDEN=1).
#[test]
fn synthetic_record_files_are_current() {
    for (name, writer) in synthetic_files() {
        let path = package_dir().join("tests/data").join(name);
        if updating() {
            writer.save(&path).unwrap();
        }
        let committed =
            read_records(&path).unwrap_or_else(|e| panic!("{e}\nregenerate with: {ACCEPT}"));
        assert_eq!(
            committed,
            writer.records(),
            "{name} is stale; regenerate with: {ACCEPT}"
        );
        let format = RecordFormat::detect(&fs::read(&path).unwrap());
        assert_eq!(format, Some(writer.format()), "{name}");
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// Runs `damon report ARGS` from the package directory, as a pipe would (no colour).
fn report(args: &str) -> String {
    let argv = std::iter::once("report").chain(args.split_whitespace());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args}: {e}"));
    let mut out = Vec::new();
    std::env::set_current_dir(package_dir()).unwrap();
    render(&cli.args, &mut out, Terminal::default()).unwrap_or_else(|e| panic!("{args}: {e:#}"));
    String::from_utf8(out).unwrap()
}

fn check_golden(name: &str, actual: &str) {
    let path = package_dir()
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if updating() {
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the report, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended, accept it with:\n  {ACCEPT}\n\nfull report:\n{actual}",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff).unwrap_or("<end>"),
            actual.lines().nth(first_diff).unwrap_or("<end>"),
        );
    }
}

fn golden(name: &str, args: &str) {
    check_golden(name, &report(args));
}

const STAIRS: &str = "-i tests/data/stairs.data";
const TWO: &str = "-i tests/data/two_targets.json";
const DAMO: &str = "-i tests/data/damo_written.data";
const DAMO_TRACE: &str = "-i tests/data/damo_trace.data";

#[test]
fn access_styles() {
    golden("access", STAIRS);
    golden(
        "access_sorted",
        &format!("access {STAIRS} --sort access --snapshot 12"),
    );
    golden("access_by_age", &format!("access {STAIRS} --sort age"));
    golden(
        "access_raw_numbers",
        &format!("access {STAIRS} --raw-numbers"),
    );
    golden("access_two_targets", &format!("access {TWO}"));
    golden("access_json", &format!("access {TWO} --json --snapshot 0"));
}

#[test]
fn heatmap_styles() {
    golden("heatmap", &format!("heatmap {STAIRS}"));
    golden(
        "heatmap_ranges",
        &format!(
            "heatmap {STAIRS} --address-range 0x7f3a00000000-0x7f3a10000000 --time-range 0.5s-2.5 --resolution 20x64"
        ),
    );
    golden(
        "heatmap_two_targets",
        &format!("heatmap {TWO} --record 1 --resolution 8x60"),
    );
    golden(
        "heatmap_json",
        &format!("heatmap {STAIRS} --json --resolution 5x12"),
    );
}

#[test]
fn wss_styles() {
    golden("wss", &format!("wss {STAIRS}"));
    golden("wss_step_10", &format!("wss {TWO} --step 10 --raw-numbers"));
    golden("wss_json", &format!("wss {STAIRS} --json"));
}

#[test]
fn raw_styles() {
    golden("raw", &format!("raw {TWO}"));
    golden("raw_json", &format!("raw {TWO} --json"));
}

/// Files damo wrote: converted from stairs.data by `damo convert_record_format`, and through
/// damo's perf-script form, which loses the intervals (see report_damo.rs to regenerate).
#[test]
fn damo_written_records() {
    golden("damo_written_access", &format!("access {DAMO}"));
    golden(
        "damo_trace_access",
        &format!("access {DAMO_TRACE} --sort access"),
    );
    golden(
        "damo_trace_heatmap",
        &format!("heatmap {DAMO_TRACE} --resolution 10x40"),
    );
}

#[test]
fn top_screens() {
    let history = workload(12, &[4242, 4343]);
    check_golden(
        "top",
        &damon_user::cmd::top::render_top(&history, &[], 100, 30, false),
    );
    check_golden(
        "top_small",
        &damon_user::cmd::top::render_top(&history, &[], 60, 12, false),
    );
    check_golden(
        "top_plain",
        &damon_user::cmd::top::render_plain(&history[11], &[]),
    );
}

#[test]
fn top_screens_fit_the_terminal() {
    let history = workload(12, &[4242]);
    for (w, h) in [(40u16, 8u16), (80, 24), (200, 60)] {
        for colour in [false, true] {
            let screen = damon_user::cmd::top::render_top(&history, &[], w, h, colour);
            assert!(
                screen.lines().count() <= usize::from(h),
                "{w}x{h}: too many lines\n{screen}"
            );
            for line in screen.lines() {
                let visible = strip_ansi(line).chars().count();
                assert!(
                    visible <= usize::from(w),
                    "{w}x{h}: {visible} columns: {line}"
                );
            }
        }
    }
    assert_eq!(
        damon_user::cmd::top::render_top(&[], &[], 80, 24, false)
            .lines()
            .collect::<Vec<_>>(),
        [
            "damon top: 0 aggregations, Ctrl-C to end",
            "waiting for the first aggregation..."
        ]
    );
}

#[test]
fn top_shows_the_schemes_stats() {
    use damon_user::record::{RecordBounds, RecordScheme, RecordSchemeStats};
    let history = workload(12, &[4242]);
    let any = RecordBounds {
        min: 0,
        max: u64::MAX,
    };
    let scheme = RecordScheme {
        scheme_idx: 0,
        action: "stat".into(),
        sz: any,
        nr_accesses: any,
        age: any,
        quota_ms: 0,
        quota_bytes: 0,
        quota_reset_interval_ms: 0,
        apply_interval_us: 0,
        at_ns: 0,
        stats: RecordSchemeStats {
            nr_tried: 1234,
            sz_tried: 3 << 20,
            nr_applied: 7,
            sz_applied: 8192,
            sz_ops_filter_passed: 0,
            qt_exceeds: 2,
        },
    };
    let want =
        "scheme 0 stat: tried 1,234 regions (3 MiB), applied 7 (8 KiB), quota exceeded 2 times";
    let screen =
        damon_user::cmd::top::render_top(&history, std::slice::from_ref(&scheme), 120, 30, false);
    assert!(screen.contains(&format!("  {want}\n")), "{screen}");
    let plain = damon_user::cmd::top::render_plain(&history[11], &[scheme]);
    assert!(plain.contains(&format!("# {want}\n")), "{plain}");
    // Without schemes, no such line.
    let screen = damon_user::cmd::top::render_top(&history, &[], 120, 30, false);
    assert!(!screen.contains("scheme 0"), "{screen}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    std::env::set_current_dir(package_dir()).unwrap();
    let cli = Cli::try_parse_from(["report", "heatmap", "-i", "tests/data/stairs.data"]).unwrap();
    let render_with = |terminal: Terminal, args: &Args| {
        let mut out = Vec::new();
        render(args, &mut out, terminal).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert!(!render_with(Terminal::default(), &cli.args).contains('\x1b'));
    let tty = Terminal {
        is_tty: true,
        columns: Some(100),
    };
    let on_tty = render_with(tty, &cli.args);
    assert!(on_tty.contains("\x1b[48;5;"));
    let never = Cli::try_parse_from([
        "report",
        "heatmap",
        "-i",
        "tests/data/stairs.data",
        "--color",
        "never",
    ])
    .unwrap();
    assert!(!render_with(tty, &never.args).contains('\x1b'));
}

#[test]
fn images_are_written() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["png", "svg"] {
        let out = dir.path().join(format!("heat.{ext}"));
        let text = report(&format!(
            "heatmap {TWO} --resolution 20x30 -o {}",
            out.display()
        ));
        let second = dir.path().join(format!("heat.1.{ext}"));
        assert!(
            text.contains(&out.display().to_string())
                && text.contains(&second.display().to_string()),
            "{text}"
        );
        let bytes = fs::read(&out).unwrap();
        match ext {
            "png" => assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n"),
            _ => assert!(String::from_utf8_lossy(&bytes).contains("<svg")),
        }
        assert!(second.exists());
    }
}

/// An image path where a symlink waits (planted in /tmp, say) gets a new file; the link's
/// target is not written.
#[test]
fn images_replace_a_symlink_at_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    for ext in ["png", "svg"] {
        fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join(format!("planted.{ext}"));
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        report(&format!(
            "heatmap {STAIRS} --resolution 10x10 -o {}",
            out.display()
        ));
        assert_eq!(fs::read(&victim).unwrap(), b"precious", ".{ext}");
        let meta = fs::symlink_metadata(&out).unwrap();
        assert!(meta.is_file(), ".{ext}: still a link");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }
}

fn report_err(args: &str) -> String {
    let argv = std::iter::once("report").chain(args.split_whitespace());
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args}: {e}"));
    std::env::set_current_dir(package_dir()).unwrap();
    format!(
        "{:#}",
        render(&cli.args, &mut Vec::new(), Terminal::default()).unwrap_err()
    )
}

#[test]
fn bad_input_gives_errors_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.data");
    let mut bytes = fs::read(package_dir().join("tests/data/stairs.data")).unwrap();
    bytes.truncate(bytes.len() / 2);
    fs::write(&corrupt, bytes).unwrap();
    let msg = report_err(&format!("-i {}", corrupt.display()));
    assert!(
        msg.contains("corrupt.data") && msg.contains("zlib"),
        "{msg}"
    );

    let unknown = dir.path().join("perf.data");
    fs::write(&unknown, b"PERFILE2\0\0\0").unwrap();
    let msg = report_err(&format!("-i {}", unknown.display()));
    assert!(
        msg.contains("perf.data") && msg.contains("not a damo json or json_compressed record"),
        "{msg}"
    );

    let msg = report_err("-i tests/data/no-such-file.data");
    assert!(
        msg.contains("cannot read record file tests/data/no-such-file.data"),
        "{msg}"
    );

    let msg = report_err(&format!("heatmap {STAIRS} --address-range 0x9000-0x1000"));
    assert_eq!(
        msg,
        "bad address range \"0x9000-0x1000\": END must be above START"
    );
    let msg = report_err(&format!("heatmap {STAIRS} --time-range 10s-20s"));
    assert_eq!(
        msg,
        "time range 10 s - 20 s starts after record 0 ends, at 3 s"
    );
    let msg = report_err(&format!("heatmap {STAIRS} --resolution 40by80"));
    assert!(msg.contains("\"40by80\""), "{msg}");
    let msg = report_err(&format!("access {STAIRS} --snapshot 30"));
    assert_eq!(msg, "snapshot 30 does not exist: record 0 has 30 snapshots");
    let msg = report_err(&format!("access {STAIRS} --output x.png"));
    assert_eq!(msg, "--output applies to the heatmap style, not access");
    let msg = report_err(&format!("heatmap {STAIRS} -o heat.pdf"));
    assert!(
        msg.contains("heat.pdf") && msg.contains(".png or .svg"),
        "{msg}"
    );
}

#[test]
fn unknown_styles_and_sort_keys_are_rejected_by_the_parser() {
    assert!(Cli::try_parse_from(["report", "flamegraph"]).is_err());
    assert!(Cli::try_parse_from(["report", "access", "--sort", "size"]).is_err());
    assert!(Cli::try_parse_from(["report", "wss", "--step", "0"]).is_err());
}
