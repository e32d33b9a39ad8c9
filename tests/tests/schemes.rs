//! DAMOS on a real process: a `pageout` scheme reclaims the idle part of a mapped file and
//! leaves the hot part, and a size quota paces it. File-backed memory only: reclaiming it
//! needs no swap (these machines have none, on purpose).
use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use damon_tests::{Workload, field, parse_range};
use damon_user::{
    access::EbpfOpsOptions,
    core::{
        AddrRange, Attrs, ContextSpec, KdamondHandle, OpsId, Pid, Snapshot, TargetSpec,
        scheme::{AccessPattern, Action, Bounds, Quotas, Scheme},
    },
    runtime::start_ebpf_kdamond,
};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
const SIZE_MIB: u64 = 256;
const HOT_MIB: u64 = 32;

/// The workload, its file in a directory removed afterwards, and the residency it reports.
struct FileWorkload {
    w: Workload,
    /// The whole mapping of the file.
    range: AddrRange,
    _dir: tempfile::TempDir,
}

impl FileWorkload {
    fn start() -> Self {
        // On a disk file system: tmpfs pages could only go to swap.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
        let file = dir.path().join("data");
        let file = file.to_str().expect("utf-8 path");
        let (w, ready) = Workload::start(&[
            "filemap",
            "--file",
            file,
            "--size-mib",
            &SIZE_MIB.to_string(),
            "--hot-mib",
            &HOT_MIB.to_string(),
        ])
        .expect("workload");
        let hot = parse_range(field(&ready, "hot").expect("hot")).expect("hot range");
        let cold = parse_range(field(&ready, "cold").expect("cold")).expect("cold range");
        FileWorkload {
            w,
            range: AddrRange::new(hot.start, cold.end),
            _dir: dir,
        }
    }

    /// Resident bytes of the hot and the cold part.
    fn resident(&mut self) -> (u64, u64) {
        self.w.send_line("residency").expect("ask the workload");
        let line = self.w.read_line().expect("residency line");
        let pages = |key| -> u64 {
            field(&line, key)
                .unwrap_or_else(|_| panic!("{key} in {line:?}"))
                .parse()
                .expect("a page count")
        };
        (pages("hot") * PAGE, pages("cold") * PAGE)
    }
}

/// Page out what has not been accessed for 2 s (20 aggregations of 100 ms).
fn pageout(quotas: Quotas) -> Scheme {
    Scheme {
        quotas,
        ..Scheme::new(
            Action::Pageout,
            AccessPattern {
                sz: Bounds::ANY,
                nr_accesses: Bounds { min: 0, max: 0 },
                age: Bounds {
                    min: 20,
                    max: u64::MAX,
                },
            },
        )
    }
}

/// Monitors the file's mapping only (fvaddr), so that what the scheme does is what the
/// file's residency shows: the process's other idle memory (its binary, libraries, stack)
/// would take a share of a quota too.
fn start(w: &FileWorkload, scheme: Scheme) -> (KdamondHandle, mpsc::Receiver<Snapshot>) {
    let spec = ContextSpec {
        ops: OpsId::Fvaddr,
        attrs: Attrs::damo_defaults(),
        targets: vec![TargetSpec::fvaddr(Pid(w.w.pid()), vec![w.range])],
    };
    let (tx, rx) = mpsc::channel();
    let kd = start_ebpf_kdamond(0, spec, EbpfOpsOptions::default(), tx, Some(7)).expect("kdamond");
    kd.set_schemes(vec![scheme]).expect("schemes");
    (kd, rx)
}

#[test]
#[ignore = "needs root"]
fn pageout_reclaims_the_idle_part_of_a_file_within_10_s_and_keeps_the_hot_part() {
    let mut w = FileWorkload::start();
    let (hot0, cold0) = w.resident();
    let cold_size = (SIZE_MIB - HOT_MIB) * MIB;
    assert!(
        cold0 >= cold_size * 95 / 100,
        "read once, resident: {cold0}"
    );
    let (kd, _rx) = start(&w, pageout(Quotas::default()));
    let t0 = Instant::now();
    let mut last = (hot0, cold0);
    while t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(250));
        last = w.resident();
        if last.1 <= cold0 / 10 {
            break;
        }
    }
    let (hot, cold) = last;
    assert!(
        cold <= cold0 / 10,
        "after {:.1} s {} of {} MiB idle still resident",
        t0.elapsed().as_secs_f64(),
        cold / MIB,
        cold0 / MIB
    );
    assert!(
        hot >= HOT_MIB * MIB * 95 / 100,
        "the hot part was paged out: {} MiB resident",
        hot / MIB
    );
    let stats = kd.schemes_now().expect("stats").stats[0];
    // A region whose range is not all mapped applies nothing (the kernel's all-or-nothing
    // sz_applied), so the applied bytes may fall short of what left memory, not the tried.
    assert!(stats.sz_tried >= cold0 - cold, "{stats:?}");
    assert!(stats.nr_applied > 0 && stats.sz_applied > 0, "{stats:?}");
    println!(
        "pageout: {} MiB of {} MiB idle left after {:.1} s; hot {} MiB resident; {stats:?}",
        cold / MIB,
        cold0 / MIB,
        t0.elapsed().as_secs_f64(),
        hot / MIB
    );
}

#[test]
#[ignore = "needs root"]
fn a_size_quota_of_10_mib_per_second_paces_pageout() {
    let mut w = FileWorkload::start();
    let quota = Quotas {
        bytes: 10 * MIB,
        reset_interval_ms: 1000,
        ..Quotas::default()
    };
    let (kd, _rx) = start(&w, pageout(quota));
    // The quota lets 10 MiB through at the first pass of each 1 s charge window: the idle
    // part drops in steps. The rate is measured between the ends of two steps, so whole
    // windows are counted; the first step is left out (the idle part ages into the scheme's
    // pattern region by region, so the first window's bytes may come over several passes).
    let mut steps: Vec<(Instant, u64, u64)> = Vec::new(); // time, idle resident, sz_applied
    let (_, mut last) = w.resident();
    let deadline = Instant::now() + Duration::from_secs(25);
    while steps.len() < 9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let (_, c) = w.resident();
        if c < last {
            // Let the step finish: passes are 100 ms apart.
            std::thread::sleep(Duration::from_millis(40));
            let (_, c) = w.resident();
            let applied = kd.schemes_now().expect("stats").stats[0].sz_applied;
            steps.push((Instant::now(), c, applied));
        }
        last = w.resident().1;
    }
    assert!(
        steps.len() >= 6,
        "{} pageout steps within 25 s",
        steps.len()
    );
    let (first, end) = (steps[1], steps[steps.len() - 1]);
    let secs = (end.0 - first.0).as_secs_f64();
    let dropped = (first.1 - end.1) as f64 / MIB as f64 / secs;
    let applied = (end.2 - first.2) as f64 / MIB as f64 / secs;
    let stats = kd.schemes_now().expect("stats").stats[0];
    println!(
        "pageout under a 10 MiB/s quota over {} windows ({secs:.2} s): {dropped:.2} MiB/s \
         left memory, {applied:.2} MiB/s applied; {stats:?}",
        steps.len() - 2
    );
    assert!(
        (8.0..=12.0).contains(&dropped),
        "{dropped:.2} MiB/s left memory, not within 20 % of 10 MiB/s"
    );
    assert!(
        (8.0..=12.0).contains(&applied),
        "{applied:.2} MiB/s applied, not within 20 % of 10 MiB/s"
    );
    // Counted when the next window opens; the first window may not have been used up.
    assert!(stats.qt_exceeds as usize >= steps.len() - 2, "{stats:?}");
}

/// `stat` with folio filters counts the bytes of the folios they let through: a mapped
/// file is page cache, not anonymous memory.
#[test]
#[ignore = "needs root"]
fn stat_counts_the_folios_its_filters_let_through() {
    use damon_user::core::scheme::{Filter, FilterKind};
    let mut w = FileWorkload::start();
    let (hot, cold) = w.resident();
    let anon = |allow| Filter {
        kind: FilterKind::Anon,
        matching: true,
        allow,
    };
    let stat = |filters| Scheme {
        ops_filters: filters,
        ..Scheme::new(Action::Stat, AccessPattern::ANY)
    };
    let (kd, _rx) = start(&w, stat(vec![anon(false)]));
    kd.set_schemes(vec![stat(vec![anon(false)]), stat(vec![anon(true)])])
        .expect("schemes");
    let walked = kd.walk_schemes().expect("walk");
    let passed = |i: usize| -> u64 { walked[i].iter().map(|r| r.sz_filter_passed).sum() };
    println!(
        "stat over a mapped file: {} MiB not anon, {} MiB anon; resident {} MiB",
        passed(0) / MIB,
        passed(1) / MIB,
        (hot + cold) / MIB
    );
    assert!(
        passed(0) >= (hot + cold) * 9 / 10,
        "{} of {}",
        passed(0),
        hot + cold
    );
    assert_eq!(passed(1), 0);
    let stats = kd.schemes_now().expect("stats").stats;
    assert!(stats[0].sz_ops_filter_passed >= passed(0), "{stats:?}");
    assert_eq!(stats[1].sz_ops_filter_passed, 0);
}
