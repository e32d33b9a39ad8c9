//! The page-fault tracepoint against a real process: exact per-region counts, and nothing of
//! ours left loaded afterwards.
use damon_user::core::Pid;
use std::{os::fd::AsRawFd, time::Duration};

use aya::programs::loaded_programs;
use damon_tests::{Workload, parse_range, process_state, wait_until};
use damon_user::{
    access::{EbpfOpsOptions, mkold::Mkold},
    bpf::{MonitorPrograms, PerfSampler, ProgramOptions, sys::pidfd_open},
    bpf::{Step, TargetState},
    core::{Access, AddrRange, OwnedTarget, OwnedTargets, PAGE_SIZE, Region},
    runtime::ebpf_ops,
};

#[test]
#[ignore = "needs root"]
fn faults_are_counted_per_region_and_programs_unload() {
    const N: u64 = 64;
    let (mut w, line) = Workload::start(&["touch", "--pages", &N.to_string()]).expect("workload");
    let AddrRange { start, end } =
        parse_range(line.strip_prefix("MAPPED ").expect("MAPPED line")).expect("range");
    let mid = start + N * 4096;
    assert_eq!(end, start + 2 * N * 4096);
    let far = (end + (1 << 30), end + (1 << 30) + (1 << 20));

    let opts = ProgramOptions {
        fault_tracepoint: true,
        ..Default::default()
    };
    let mut progs = MonitorPrograms::load(None, opts).expect("load and attach");
    let ids = progs.program_ids();
    assert!(!ids.is_empty());
    let pidfd = pidfd_open(Pid(w.pid())).expect("pidfd");
    let slot = progs
        .add_target(Pid(w.pid()), pidfd.as_raw_fd())
        .expect("slot");
    let regions = [(start, mid), (mid, end), far].map(|(s, e)| AddrRange::new(s, e));
    progs
        .set_regions(slot, regions.into_iter())
        .expect("regions");

    w.send_line("go").expect("tell workload");
    assert_eq!(w.read_line().expect("workload reply"), "TOUCHED");
    let faults = progs.faults(Pid(w.pid()), 3).expect("read counters");
    // Exactly one fault per fresh page; allow two more for anything the runtime does there.
    assert!(
        (N..=N + 2).contains(&faults[0]),
        "touched region: {} faults, expected {N}",
        faults[0]
    );
    assert_eq!(faults[1], 0, "untouched half of the mapping");
    assert_eq!(faults[2], 0, "unmapped region");

    progs.reset_counters(slot).expect("reset");
    assert_eq!(progs.faults(Pid(w.pid()), 3).expect("read"), vec![0, 0, 0]);

    drop(progs);
    // The kernel frees a program held by a tracepoint link from a workqueue after the link's
    // fd is closed: give it a moment.
    let still_loaded = || -> Vec<u32> {
        loaded_programs()
            .filter_map(|p| p.ok())
            .map(|p| p.id())
            .filter(|id| ids.contains(id))
            .collect()
    };
    if wait_until("our programs to unload", Duration::from_secs(5), || {
        still_loaded().is_empty()
    })
    .is_err()
    {
        panic!("programs {:?} still loaded after drop", still_loaded());
    }
}

#[test]
#[ignore = "needs root"]
fn perf_sampler_attributes_fault_addresses_to_regions() {
    const N: u64 = 32;
    let (mut w, line) = Workload::start(&["touch", "--pages", &N.to_string()]).expect("workload");
    let AddrRange { start, end } =
        parse_range(line.strip_prefix("MAPPED ").expect("MAPPED line")).expect("range");
    // The perf_event program alone, on the software page-fault event (period 1).
    let opts = ProgramOptions {
        perf_sampler: Some(PerfSampler::PageFaults),
        ..Default::default()
    };
    let mut progs = MonitorPrograms::load(None, opts).expect("load");
    let pidfd = pidfd_open(Pid(w.pid())).expect("pidfd");
    let slot = progs
        .add_target(Pid(w.pid()), pidfd.as_raw_fd())
        .expect("attach perf event to the target");
    let mid = start + N * 4096;
    progs
        .set_regions(
            slot,
            [AddrRange::new(start, mid), AddrRange::new(mid, end)].into_iter(),
        )
        .expect("regions");
    w.send_line("go").expect("tell workload");
    assert_eq!(w.read_line().expect("reply"), "TOUCHED");
    let faults = progs.faults(Pid(w.pid()), 2).expect("read");
    assert!(
        (N..=N + 2).contains(&faults[0]),
        "sampled addresses in the touched half: {}",
        faults[0]
    );
    assert_eq!(faults[1], 0);
}

#[test]
#[ignore = "needs root"]
fn a_process_without_address_space_reads_gone_not_stale_results() {
    let layout = damon_user::bpf::calibrate::find(false)
        .expect("kernel layout")
        .layout;
    let mut progs = MonitorPrograms::load(Some(&layout), ProgramOptions::default()).expect("load");
    // A zombie: exited (no mm left) but not reaped yet, so its pid still names it.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id() as i32;
    let pidfd = pidfd_open(Pid(pid)).expect("pidfd");
    wait_until("the child to be a zombie", Duration::from_secs(5), || {
        process_state(pid) == Some('Z')
    })
    .unwrap();
    let slot = progs.add_target(Pid(pid), pidfd.as_raw_fd()).expect("slot");
    progs
        .set_regions(slot, [AddrRange::new(0x1000, 0x2000)].into_iter())
        .expect("regions");
    progs
        .set_next(slot, 1, [0x1000].into_iter())
        .expect("pages");
    progs
        .run(Step {
            check: true,
            prepare: true,
        })
        .expect("run");
    let zombie = progs.state(slot);
    let _ = child.wait();
    progs
        .run(Step {
            check: true,
            prepare: true,
        })
        .expect("run");
    assert_eq!(zombie, TargetState::NoMm, "an exited process has no mm");
    assert_eq!(
        progs.state(slot),
        TargetState::Reaped,
        "a reaped one has no task"
    );
}

/// With several targets, a fault on one target's sampled page counts for that target: the
/// fault stamp is compared with that target's sample, not with the last target prepared.
#[test]
#[ignore = "needs root"]
fn a_fault_counts_for_its_own_target_when_several_are_sampled() {
    let mapped = |line: &str| {
        parse_range(line.strip_prefix("MAPPED ").expect("MAPPED line")).expect("range")
    };
    // a touches 256 pages: a page fresh from a fault sits in a per-CPU LRU batch (up to 31
    // pages) where MADV_COLD cannot clear its young bit; the pages after it drain the batch
    // holding the first one, the page sampled here.
    let (mut a, line_a) = Workload::start(&["touch", "--pages", "256"]).expect("workload a");
    let (b, line_b) = Workload::start(&["touch", "--pages", "16"]).expect("workload b");
    let (a_range, b_range) = (mapped(&line_a), mapped(&line_b));
    let mut ops = ebpf_ops(EbpfOpsOptions::default()).expect("eBPF access check");
    // One region per target, sampled at its first page; neither page is mapped yet.
    let mut targets = OwnedTargets::new(vec![
        OwnedTarget::new(
            0,
            Pid(a.pid()),
            vec![Region::new(a_range.start, a_range.end)],
        ),
        OwnedTarget::new(
            1,
            Pid(b.pid()),
            vec![Region::new(b_range.start, b_range.end)],
        ),
    ]);
    targets.step(&mut ops, false, true).expect("prepare");
    assert_eq!(targets.targets[0].regions[0].sampling_addr, a_range.start);

    // a faults its sampled page in; clearing the page's young bit again leaves the fault as
    // the only sign of the access.
    a.send_line("go").expect("tell workload a");
    assert_eq!(a.read_line().expect("reply"), "TOUCHED");
    let pidfd = pidfd_open(Pid(a.pid())).expect("pidfd");
    let mut refused = Vec::new();
    Mkold::default()
        .advise(
            &pidfd,
            &[AddrRange::new(a_range.start, a_range.start + PAGE_SIZE)],
            &mut refused,
        )
        .expect("MADV_COLD");
    assert!(refused.is_empty());

    targets.step(&mut ops, true, false).expect("check");
    assert_eq!(
        ops.stats().fault_hits,
        1,
        "the access of a is known from its fault alone"
    );
    assert_eq!(
        targets.targets[0].found[0],
        Access::Accessed,
        "the fault on a's sampled page did not count"
    );
    assert_eq!(
        targets.targets[1].found[0],
        Access::None,
        "b touched nothing"
    );
}
