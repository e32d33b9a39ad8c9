//! Cost of the eBPF access check per sample: prepare (write samples, walk, MADV_COLD of the
//! young ones, re-walk) plus check (walk, read results), at 10 / 100 / 1 000 regions over a
//! hot and a cold buffer of a real process, for both walk paths. Needs root; prints why not
//! otherwise.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use damon_user::{
    bpf::WalkPath,
    core::{Operations, Region, TargetRef},
    ops::{EbpfOps, EbpfOpsOptions},
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

fn regions_over(bufs: &[(u64, u64)], n: usize) -> Vec<Region> {
    let per = n / bufs.len();
    let mut v = Vec::new();
    for &(s, e) in bufs {
        let sz = ((e - s) / per as u64) & !4095;
        for i in 0..per as u64 {
            let start = s + i * sz;
            v.push(Region {
                start,
                end: start + sz,
                sampling_addr: start,
                nr_accesses: 0,
                nr_accesses_bp: 0,
                last_nr_accesses: 0,
                age: 0,
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
    for path in [WalkPath::TaskVma, WalkPath::TestRun] {
        let mut ops = EbpfOps::new(EbpfOpsOptions::default(), 1).expect("eBPF ops");
        ops.set_walk_path(path);
        for n in [10usize, 100, 1000] {
            let mut regions = regions_over(&bufs, n);
            let mut accessed = vec![false; regions.len()];
            let mut first = true;
            g.bench_with_input(BenchmarkId::new(format!("{path:?}"), n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for k in 0..iters {
                        for r in regions.iter_mut() {
                            let pages = (r.end - r.start) / 4096;
                            r.sampling_addr = r.start + (k * 7919 % pages) * 4096;
                        }
                        let t = TargetRef {
                            idx: 0,
                            pid,
                            layout_changed: first,
                        };
                        first = false;
                        let t0 = Instant::now();
                        ops.prepare_access_checks(&t, &mut regions)
                            .expect("prepare");
                        ops.check_accesses(&t, &regions, &mut accessed)
                            .expect("check");
                        spent += t0.elapsed();
                    }
                    spent
                })
            });
        }
        eprintln!("{path:?}: {:?}", ops.stats());
    }
    g.finish();
    drop(w);
}

criterion_group!(benches, bench);
criterion_main!(benches);
