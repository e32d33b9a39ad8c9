//! The page-fault tracepoint against a real process: exact per-region counts, and nothing of
//! ours left loaded afterwards.
use aya::programs::loaded_programs;
use damon_tests::{Workload, have_root, parse_range};
use damon_user::bpf::{MonitorPrograms, PerfSampler, ProgramOptions};

#[test]
fn faults_are_counted_per_region_and_programs_unload() {
    if !have_root("faults_are_counted_per_region_and_programs_unload") {
        return;
    }
    const N: u64 = 64;
    let (mut w, line) = Workload::start(&["touch", "--pages", &N.to_string()]).expect("workload");
    let (start, end) =
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
    let slot = progs.add_target(w.pid()).expect("slot");
    progs
        .set_regions(slot, &[(start, mid), (mid, end), far])
        .expect("regions");

    w.send_line("go").expect("tell workload");
    assert_eq!(w.read_line().expect("workload reply"), "TOUCHED");
    let faults = progs.faults(w.pid(), 3).expect("read counters");
    // Exactly one fault per fresh page; allow two more for anything the runtime does there.
    assert!(
        (N..=N + 2).contains(&faults[0]),
        "touched region: {} faults, expected {N}",
        faults[0]
    );
    assert_eq!(faults[1], 0, "untouched half of the mapping");
    assert_eq!(faults[2], 0, "unmapped region");

    progs.reset_counters(slot).expect("reset");
    assert_eq!(progs.faults(w.pid(), 3).expect("read"), vec![0, 0, 0]);

    drop(progs);
    let still: Vec<u32> = loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| p.id())
        .filter(|id| ids.contains(id))
        .collect();
    assert!(
        still.is_empty(),
        "programs {still:?} still loaded after drop"
    );
}

#[test]
fn perf_sampler_attributes_fault_addresses_to_regions() {
    if !have_root("perf_sampler_attributes_fault_addresses_to_regions") {
        return;
    }
    const N: u64 = 32;
    let (mut w, line) = Workload::start(&["touch", "--pages", &N.to_string()]).expect("workload");
    let (start, end) =
        parse_range(line.strip_prefix("MAPPED ").expect("MAPPED line")).expect("range");
    // The perf_event program alone, on the software page-fault event (period 1).
    let opts = ProgramOptions {
        perf_sampler: Some(PerfSampler::PageFaults),
        ..Default::default()
    };
    let mut progs = MonitorPrograms::load(None, opts).expect("load");
    let slot = progs
        .add_target(w.pid())
        .expect("attach perf event to the target");
    let mid = start + N * 4096;
    progs
        .set_regions(slot, &[(start, mid), (mid, end)])
        .expect("regions");
    w.send_line("go").expect("tell workload");
    assert_eq!(w.read_line().expect("reply"), "TOUCHED");
    let faults = progs.faults(w.pid(), 2).expect("read");
    assert!(
        (N..=N + 2).contains(&faults[0]),
        "sampled addresses in the touched half: {}",
        faults[0]
    );
    assert_eq!(faults[1], 0);
}

#[test]
fn a_walk_of_a_process_without_address_space_is_an_error_not_stale_results() {
    if !have_root("a_walk_of_a_process_without_address_space_is_an_error_not_stale_results") {
        return;
    }
    let layout = damon_user::bpf::KernelLayout::get().expect("kernel layout");
    let mut progs = MonitorPrograms::load(Some(&layout), ProgramOptions::default()).expect("load");
    // A zombie: exited (no mm left) but not reaped yet, so its pid still names it.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id() as i32;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let slot = progs.add_target(pid).expect("slot");
    progs
        .set_regions(slot, &[(0x1000, 0x2000)])
        .expect("regions");
    progs.set_samples(slot, 1, &[0x1000]).expect("samples");
    let r = progs.walk(pid);
    let _ = child.wait();
    assert!(
        matches!(r, Err(damon_user::bpf::BpfError::NotWalked { .. })),
        "walk of an exited process: {:?}",
        r.map(|o| o.walks)
    );
}
