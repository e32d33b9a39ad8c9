//! The eBPF access check driving the DAMON core against real processes.
use damon_user::core::Pid;
use std::{sync::mpsc, time::Duration};

use damon_tests::{
    ChildGuard, Workload, anon_huge_kib, field, monotonic_ns, parse_range, process_state,
    wait_until,
};
use damon_user::{
    access::EbpfOpsOptions,
    core::{
        AddrRange, Attrs, ContextSpec, KdamondHandle, OpsId, Snapshot, TargetSpec,
        snapshot::{weighted_rate, working_set_bytes},
        start_kdamond,
    },
    runtime::ebpf_ops,
};

fn start(pid: i32) -> (KdamondHandle, mpsc::Receiver<Snapshot>) {
    let ops = ebpf_ops(EbpfOpsOptions::default()).expect("eBPF access check");
    let spec = ContextSpec {
        ops: OpsId::Vaddr,
        attrs: Attrs::damo_defaults(),
        targets: vec![TargetSpec {
            pid: Pid(pid),
            ranges: vec![],
        }],
    };
    let (tx, rx) = mpsc::channel();
    (
        start_kdamond(0, spec, Box::new(ops), tx, 42).expect("kdamond"),
        rx,
    )
}

/// Snapshots until `deadline_ns` (monotonic).
fn collect_until(rx: &mpsc::Receiver<Snapshot>, deadline_ns: u64) -> Vec<Snapshot> {
    let mut v = Vec::new();
    while monotonic_ns() < deadline_ns {
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(50)) {
            v.push(s);
        }
    }
    v
}

fn rates(s: &Snapshot, hot: AddrRange, cold: AddrRange) -> (f64, f64) {
    let max = s.intervals.max_nr_accesses();
    let regions = &s.targets[0].regions;
    let rate = |range: AddrRange| {
        weighted_rate(regions, range, max)
            .unwrap_or_else(|| panic!("no region covers the buffer {range}"))
    };
    (rate(hot), rate(cold))
}

/// Mean rates over the last three aggregations (300 ms at the defaults): one aggregation in
/// which a sweep of the hot buffer was late on a loaded machine is not the picture.
fn recent_rates(snaps: &[Snapshot], hot: AddrRange, cold: AddrRange) -> (f64, f64) {
    let last: Vec<(f64, f64)> = snaps
        .iter()
        .rev()
        .take(3)
        .map(|s| rates(s, hot, cold))
        .collect();
    assert!(!last.is_empty(), "no snapshots");
    let n = last.len() as f64;
    (
        last.iter().map(|r| r.0).sum::<f64>() / n,
        last.iter().map(|r| r.1).sum::<f64>() / n,
    )
}

#[test]
#[ignore = "needs root"]
fn hot_and_cold_buffers_are_told_apart_and_a_swap_is_followed() {
    let (mut w, ready) = Workload::start(&[
        "hotcold",
        "--hot-mib",
        "32",
        "--cold-mib",
        "96",
        "--swap-after",
        "3",
    ])
    .expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let cold = parse_range(field(&ready, "cold").unwrap()).unwrap();
    let t0 = monotonic_ns();
    let (mut kd, rx) = start(w.pid());

    let before = collect_until(&rx, t0 + 2_200_000_000);
    let last = before.last().expect("snapshots within 2 s");
    let (h, c) = recent_rates(&before, hot, cold);
    eprintln!(
        "after 2 s: {} snapshots, {} regions, hot {h:.2}, cold {c:.2}",
        before.len(),
        last.targets[0].regions.len()
    );
    assert!(
        h >= 0.8,
        "hot buffer at {:.0}% of the maximum access rate, expected >= 80%",
        h * 100.0
    );
    assert!(
        c <= 0.05,
        "cold buffer at {:.0}% of the maximum access rate, expected <= 5%",
        c * 100.0
    );

    assert!(w.read_line().expect("swap line").starts_with("SWAPPED"));
    let swap_ns = monotonic_ns();
    let after = collect_until(&rx, swap_ns + 2_000_000_000);
    let post: Vec<(f64, f64)> = after
        .iter()
        .filter(|s| s.start_ns >= swap_ns)
        .map(|s| rates(s, cold, hot)) // roles swapped
        .collect();
    eprintln!("after the swap (new hot, new cold): {post:.2?}");
    assert!(
        post.len() >= 10,
        "only {} aggregations after the swap",
        post.len()
    );
    // The newly hot buffer must read hot within 3 aggregations.
    assert!(
        post[..3].iter().any(|&(h, _)| h >= 0.8),
        "new hot buffer below 80% in the 3 aggregations after the swap: {post:.2?}"
    );
    // The newly cold one must read cold within 3 too, except when the aggregation that spans
    // the swap saw both buffers at about half the rate and merged a region across their
    // boundary (DAMON's merge rule); random splits then need a few more aggregations to cut
    // it apart again, as in the kernel. So: cold within 10, and usually within 3.
    let cold_at = post.iter().position(|&(_, c)| c <= 0.05);
    assert!(
        cold_at.is_some_and(|i| i < 10),
        "new cold buffer still above 5% 10 aggregations after the swap: {post:.2?}"
    );
    kd.stop();
}

#[test]
#[ignore = "needs root"]
fn thp_backed_buffer_keeps_its_huge_pages() {
    let (w, ready) = Workload::start(&["hotcold", "--hot-mib", "16", "--cold-mib", "32", "--thp"])
        .expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let cold = parse_range(field(&ready, "cold").unwrap()).unwrap();
    // The buffers are faulted in before READY; what was not huge at the fault khugepaged may
    // still collapse: wait for that a while.
    if wait_until(
        "the hot buffer's huge pages",
        Duration::from_secs(5),
        || anon_huge_kib(w.pid()) >= 16 * 1024,
    )
    .is_err()
    {
        panic!(
            "workload has only {} KiB of huge pages; THP must be available (madvise mode)",
            anon_huge_kib(w.pid())
        );
    }
    let before = anon_huge_kib(w.pid());
    let (mut kd, rx) = start(w.pid());
    let snaps = collect_until(&rx, monotonic_ns() + 2_000_000_000);
    kd.stop();
    let after = anon_huge_kib(w.pid());
    assert!(
        after >= before,
        "huge pages split while monitored: {before} KiB before, {after} KiB after"
    );
    let (h, c) = recent_rates(&snaps, hot, cold);
    assert!(
        h >= 0.8 && c <= 0.05,
        "THP buffers: hot {h:.2}, cold {c:.2}"
    );
}

/// A target is valid until it is reaped, as the kernel's (`get_pid_task()`): exited but not
/// reaped (a zombie), the kdamond keeps running (its regions read not accessed); reaped, it
/// stops by itself and says why.
#[test]
#[ignore = "needs root"]
fn kdamond_stops_when_its_target_is_reaped() {
    let (mut w, _) = Workload::start(&[
        "hotcold",
        "--hot-mib",
        "4",
        "--cold-mib",
        "4",
        "--duration",
        "2.5",
    ])
    .expect("workload");
    let (kd, rx) = start(w.pid());
    wait_until(
        "the target to exit after 2.5 s (a zombie: we have not reaped it)",
        Duration::from_secs(8),
        || process_state(w.pid()) == Some('Z'),
    )
    .unwrap();
    // An aggregation that ends with the target a zombie (those queued before are dropped).
    let before = rx.try_iter().count();
    assert!(before > 0, "no snapshot before the target exited");
    let seen = rx.recv_timeout(Duration::from_secs(2));
    assert!(seen.is_ok(), "no aggregation while the target is a zombie");
    assert!(
        kd.is_running(),
        "the kdamond stopped while its target was not reaped yet"
    );
    w.kill(); // reaps it
    wait_until(
        "the kdamond to stop: its only target is reaped",
        Duration::from_secs(5),
        || !kd.is_running(),
    )
    .unwrap();
    assert!(
        kd.exit_reason().is_some(),
        "a kdamond that stopped by itself says why"
    );
}

/// A sleeping process whose pages are not private reads idle. Its shared libraries' text is
/// young in its page tables and MADV_COLD cannot age it (the folios are mapped by other
/// processes too); sampled there, it would read hot forever. Those samples move to pages that
/// can be measured, or are reported unmeasured, never accessed.
#[test]
#[ignore = "needs root"]
fn an_idle_process_whose_libraries_are_shared_reads_idle() {
    // Started, its libraries loaded, when it says so.
    let sleeper = || {
        let mut python = std::process::Command::new("python3");
        python.args([
            "-c",
            "import time; print('READY', flush=True); time.sleep(60)",
        ]);
        ChildGuard::start_ready(python, "READY", Duration::from_secs(20)).expect("python3")
    };
    // Two of them, so that even python's own libraries are shared.
    let (idle, _other) = (sleeper(), sleeper());
    let t0 = monotonic_ns();
    let (mut kd, rx) = start(idle.pid());
    let snaps = collect_until(&rx, t0 + 8_000_000_000);
    kd.stop();
    let mut wss: Vec<u64> = snaps
        .iter()
        .filter(|s| s.start_ns >= t0 + 3_000_000_000)
        .map(|s| working_set_bytes(&s.targets[0].regions))
        .collect();
    assert!(wss.len() >= 30, "{} snapshots after 3 s", wss.len());
    wss.sort_unstable();
    let p50 = wss[wss.len() / 2];
    eprintln!(
        "idle python: working set p50 {p50} B over {} snapshots",
        wss.len()
    );
    assert!(
        p50 <= 16 << 10,
        "an idle process reads busy: working set p50 {} KiB (expected <= 16 KiB)",
        p50 >> 10
    );
}

/// The page cache of a mapped file, which recent kernels keep in large folios mapped by PTEs:
/// the part read continuously reads hot, the rest idle, and none of it goes unmeasured (the
/// Accessed bits of a large folio are cleared over the whole folio, which MADV_COLD does
/// without splitting it).
#[test]
#[ignore = "needs root"]
fn a_mapped_file_reads_hot_where_it_is_read_and_idle_elsewhere() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let file = dir.path().join("data");
    let (w, ready) = Workload::start(&[
        "filemap",
        "--file",
        file.to_str().expect("utf-8 path"),
        "--size-mib",
        "128",
        "--hot-mib",
        "16",
    ])
    .expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let cold = parse_range(field(&ready, "cold").unwrap()).unwrap();
    let t0 = monotonic_ns();
    let (_kd, rx) = start(w.pid());
    let snaps = collect_until(&rx, t0 + 3_000_000_000);
    let (h, c) = recent_rates(&snaps, hot, cold);
    assert!(h >= 0.8, "the file's hot part at {:.0}%", h * 100.0);
    assert!(c <= 0.05, "the file's idle part at {:.0}%", c * 100.0);
    let last = snaps.last().expect("snapshots");
    let unmeasured: u64 = last.targets[0]
        .regions
        .iter()
        .filter(|r| r.nr_unmeasured > 0)
        .map(|r| r.overlap(AddrRange::new(hot.start, cold.end)))
        .sum();
    assert!(
        unmeasured <= 2 << 20,
        "{} KiB of the file unmeasured",
        unmeasured >> 10
    );
}
