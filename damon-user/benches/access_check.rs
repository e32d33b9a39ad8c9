//! Cost of the eBPF access check per sample: one step that checks the sample in flight and
//! prepares the next (write the next pages, one program run, read the results, MADV_COLD of
//! the young ones), at 10 / 100 / 1 000 regions over a hot and a cold buffer of a real
//! process. Needs root; prints why not otherwise.
use damon_user::core::Pid;
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use damon_user::{
    access::EbpfOpsOptions,
    core::{OwnedTarget, OwnedTargets, Region},
    runtime::ebpf_ops,
};

struct Workload(std::process::Child);
impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn range(line: &str, key: &str) -> (u64, u64) {
    let v = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .expect("field");
    let (a, b) = v.split_once('-').expect("range");
    let p = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).expect("hex");
    (p(a), p(b))
}

/// `n` regions, half over each buffer; those over the hot one (the first) carry the counters
/// of a region found accessed at every sample, as in a running kdamond.
fn regions_over(bufs: &[(u64, u64)], n: usize) -> Vec<Region> {
    let per = n / bufs.len();
    let mut v = Vec::new();
    for (b, &(s, e)) in bufs.iter().enumerate() {
        let hot = if b == 0 { 20 } else { 0 };
        let sz = ((e - s) / per as u64) & !4095;
        for i in 0..per as u64 {
            let start = s + i * sz;
            v.push(Region {
                start,
                end: start + sz,
                sampling_addr: start,
                nr_accesses: hot,
                nr_accesses_bp: hot * 10_000,
                last_nr_accesses: hot,
                age: 0,
                nr_unmeasured: 0,
            });
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED access_check: needs root for BPF");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_damon"))
        .args(["workload", "hotcold", "--hot-mib", "32", "--cold-mib", "96"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("workload");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("READY line");
    let w = Workload(child);
    let pid = w.0.id() as i32;
    let bufs = [range(&line, "hot="), range(&line, "cold=")];
    let mut g = c.benchmark_group("access_check_per_sample");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    // Kernel-side run time of the programs, printed at the end.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let mut ops = ebpf_ops(EbpfOpsOptions::default()).expect("eBPF ops");
    for n in [10usize, 100, 1000] {
        let before = ops.programs().sample_run_stats().unwrap_or_default();
        let mkold_before = ops.stats();
        let mut targets =
            OwnedTargets::new(vec![OwnedTarget::new(0, Pid(pid), regions_over(&bufs, n))]);
        targets.step(&mut ops, false, true).expect("first prepare");
        g.bench_with_input(BenchmarkId::new("step", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for k in 0..iters {
                    let t = &mut targets.targets[0];
                    for (r, next) in t.regions.iter().zip(t.next.iter_mut()) {
                        let pages = (r.end - r.start) / 4096;
                        *next = r.start + (k * 7919 % pages) * 4096;
                    }
                    let t0 = Instant::now();
                    targets.step(&mut ops, true, true).expect("step");
                    spent += t0.elapsed();
                }
                spent
            })
        });
        if let Some((time, runs)) = ops.programs().sample_run_stats() {
            let (time, runs) = (time - before.0, runs - before.1);
            let st = ops.stats();
            eprintln!(
                "{n} regions: the sampling program ran {:.2} us per step (kernel's count); {:.2} MADV_COLD ranges per step",
                time.as_secs_f64() * 1e6 / runs.max(1) as f64,
                (st.mkold_ranges - mkold_before.mkold_ranges) as f64 / runs.max(1) as f64
            );
        }
    }
    eprintln!("{:?}", ops.stats());

    g.finish();
    drop(w);
}

criterion_group!(benches, bench);
criterion_main!(benches);
