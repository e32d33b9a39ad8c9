//! `cargo xtask vm-test`: `damon` on stock Debian kernels, each booted under qemu.
//!
//! For every kernel of [`kernels::KERNELS`]: fetch it (cached under `target/vm/kernels`),
//! build an initramfs with busybox, a static `damon` and `guest-init.sh`, boot it, and judge
//! what the guest reports on its results port: `damon check` passes, `damon record` tells
//! the hot buffer of `damon workload hotcold` from the cold one, and `damon fs` serves an
//! admin tree in which DAMON's sysfs example starts a kdamond. With `--compare`, kernels
//! that have DAMON vaddr also run it and ours on the same workload, then the same DAMOS
//! pageout scheme under each with zram swap inside the guest, and the numbers go to
//! `target/vm/compare.md`. The guest's console log of every kernel is kept in
//! `target/vm/logs/`.
//!
//! Nothing here touches the host's DAMON: all DAMON sysfs writes happen inside the guests.
pub(crate) mod apt;
mod checks;
pub(crate) mod cmd;
mod compare;
mod cpio;
mod fetch;
mod host;
mod initramfs;
mod kernels;
mod pageout;
mod qemu;
mod regions;
mod results;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use self::{fetch::Fetched, initramfs::GuestSettings, kernels::Kernel};

/// How long `damon record` runs before its last aggregation is judged. On hardware 2 s (20
/// aggregations) is plenty; under TCG our monitor is CPU-bound and an aggregation of 100 ms
/// takes 0.3-2 s depending on the host's load, so 2 s yield 1-3 aggregations whose regions
/// have not split along the buffers yet (the hot buffer at 77% was seen). 6 s yield 3-18.
const RECORD_SECS: u32 = 6;
const COMPARE_SECS: u32 = 10;
/// Boot, check, record and the admin tree take 20-40 s under TCG; this is the hang limit.
const GUEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Guests at a time (1 or 2) when set. By default two run at once (one host core each:
/// single-threaded TCG), except with `--compare`, whose CPU times must not depend on a
/// neighbour.
const JOBS_VAR: &str = "DAMON_VM_JOBS";

struct Run {
    kernel: &'static Kernel,
    release: String,
    outcome: Outcome,
}

enum Outcome {
    DownloadFailed(String),
    Error(String),
    Done(Box<Finished>),
}

struct Finished {
    verdict: checks::Verdict,
    wall: Duration,
    console: PathBuf,
    compare: Option<Result<compare::Row>>,
}

impl Run {
    fn passed(&self) -> bool {
        matches!(&self.outcome, Outcome::Done(f)
            if f.verdict.passed()
                && f.compare.as_ref().is_none_or(|c| c.as_ref().is_ok_and(|r| r.problems().is_empty())))
    }

    fn line(&self) -> String {
        let name = format!("{:<20} {:<24}", self.kernel.name, self.release);
        match &self.outcome {
            Outcome::DownloadFailed(e) => format!("FAIL {name} kernel download failed: {e}"),
            Outcome::Error(e) => format!("FAIL {name} {e}"),
            Outcome::Done(f) => {
                let Finished {
                    verdict,
                    wall,
                    console,
                    compare,
                } = f.as_ref();
                let mut problems = verdict.failures.clone();
                match compare {
                    Some(Err(e)) => problems.push(format!("compare: {e:#}")),
                    Some(Ok(r)) => problems.extend(r.problems()),
                    None => {}
                }
                let took = format!("[{:.1} s]", wall.as_secs_f64());
                if problems.is_empty() {
                    format!("PASS {name} {} {took}", verdict.notes.join(", "))
                } else {
                    format!(
                        "FAIL {name} {} {took}; console log: {}",
                        problems.join("; "),
                        console.display()
                    )
                }
            }
        }
    }
}

pub fn run(root: &Path, names: &[String], compare: bool) -> Result<()> {
    let t0 = Instant::now();
    let selected = kernels::select(names)?;
    host::ensure_packages()?;
    host::ensure_musl_target()?;
    let target = target_dir(root);
    let vm = target.join("vm");
    std::fs::create_dir_all(vm.join("logs"))
        .with_context(|| format!("creating {}", vm.join("logs").display()))?;
    let busybox = host::busybox()?;
    let damon = build_damon(root, &target)?;

    let mut fetcher = fetch::Fetcher::new(&vm);
    let mut todo: Vec<(&'static Kernel, Fetched)> = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    for k in &selected {
        match fetcher.get(k) {
            Ok(f) => {
                println!(
                    "vm-test: {}: {} (package {}; {})",
                    k.name, f.release, f.version, k.why
                );
                todo.push((k, f));
            }
            Err(e) => {
                println!("vm-test: {}: kernel download failed: {e:#}", k.name);
                runs.push(Run {
                    kernel: k,
                    release: "?".into(),
                    outcome: Outcome::DownloadFailed(format!("{e:#}")),
                });
            }
        }
    }

    let jobs = match std::env::var(JOBS_VAR).ok().as_deref() {
        None | Some("") => {
            if compare {
                1
            } else {
                2
            }
        }
        Some("1") => 1,
        Some("2") => 2,
        Some(other) => bail!("{JOBS_VAR}={other}: use 1 or 2"),
    };
    let queue = Mutex::new(todo.into_iter());
    let done = Mutex::new(Vec::new());
    let ctx = Ctx {
        vm: &vm,
        busybox: &busybox,
        damon: &damon,
        compare,
    };
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some((k, f)) = next else { break };
                    println!("vm-test: {}: booting", k.name);
                    let run = ctx.boot(k, &f);
                    println!("vm-test: {}", run.line());
                    if let Ok(mut d) = done.lock() {
                        d.push(run);
                    }
                }
            });
        }
    });
    runs.extend(done.into_inner().unwrap_or_default());
    runs.sort_by_key(|r| selected.iter().position(|k| k.name == r.kernel.name));

    println!("\nvm-test results ({:.0} s):", t0.elapsed().as_secs_f64());
    for r in &runs {
        println!("  {}", r.line());
    }
    if compare {
        let rows: Vec<&compare::Row> = runs
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Done(f) => f.compare.as_ref().and_then(|c| c.as_ref().ok()),
                _ => None,
            })
            .collect();
        if rows.is_empty() {
            println!("vm-test: no kernel produced a comparison");
        } else {
            let md = vm.join("compare.md");
            std::fs::write(&md, compare::markdown(&rows, COMPARE_SECS))
                .with_context(|| format!("writing {}", md.display()))?;
            println!("\n{}(saved as {})", compare::text(&rows), md.display());
        }
    }
    let failed = runs.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        bail!("vm-test: {failed} of {} kernels failed", runs.len());
    }
    Ok(())
}

struct Ctx<'a> {
    vm: &'a Path,
    busybox: &'a Path,
    damon: &'a Path,
    compare: bool,
}

impl Ctx<'_> {
    fn boot(&self, k: &'static Kernel, f: &Fetched) -> Run {
        let outcome = self
            .try_boot(k, f)
            .unwrap_or_else(|e| Outcome::Error(format!("{e:#}")));
        Run {
            kernel: k,
            release: f.release.clone(),
            outcome,
        }
    }

    fn try_boot(&self, k: &Kernel, f: &Fetched) -> Result<Outcome> {
        let compare = self.compare && f.has_damon_vaddr();
        let settings = GuestSettings {
            compare,
            record_secs: RECORD_SECS,
            compare_secs: COMPARE_SECS,
            hot_mib: 32,
            cold_mib: 96,
        };
        let tmp = cmd::TempDir::new(self.vm.join(format!("tmp-{}", k.name)))?;
        let initramfs = tmp.0.join("initramfs.cpio");
        initramfs::build(&initramfs, self.busybox, self.damon, f, &settings)?;
        let logs = self.vm.join("logs");
        let console = logs.join(format!("{}.console.log", k.name));
        let results = logs.join(format!("{}.results.txt", k.name));
        // The pageout comparison: two runs of at most PAGEOUT_SECS, each with a workload to
        // start and a scheme to write.
        let timeout = GUEST_TIMEOUT
            + if compare {
                Duration::from_secs(
                    u64::from(COMPARE_SECS) * 4 + 2 * (u64::from(initramfs::PAGEOUT_SECS) + 30),
                )
            } else {
                Duration::ZERO
            };
        let guest = qemu::Guest {
            vmlinuz: &f.vmlinuz,
            initramfs: &initramfs,
            console: console.clone(),
            results: results.clone(),
            timeout,
        };
        let out = qemu::boot(&guest)?;
        let text = std::fs::read(&results)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let r = results::Results::parse(&text);
        let mut verdict = checks::evaluate(&r, out.timed_out);
        if r.line("done").is_none() {
            let log = std::fs::read(&console)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if let Some(step) = log.lines().rev().find(|l| l.starts_with("vm-test [")) {
                verdict
                    .failures
                    .insert(0, format!("last step: {}", step.trim()));
            }
        }
        if r.line("boot").is_none() && !out.qemu_output.trim().is_empty() {
            verdict.failures.push(format!(
                "qemu: {}",
                checks::last_line(Some(&out.qemu_output))
            ));
        }
        if self.compare && !compare {
            verdict.notes.push("no DAMON vaddr to compare with".into());
        }
        let compare = compare.then(|| compare::row(k.name, &f.release, &r));
        Ok(Outcome::Done(Box::new(Finished {
            verdict,
            wall: out.wall,
            console,
            compare,
        })))
    }
}

/// `target/` of the workspace, or `$CARGO_TARGET_DIR`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn build_damon(root: &Path, target: &Path) -> Result<PathBuf> {
    println!("vm-test: building a static damon ({})", host::MUSL_TARGET);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    cmd::status(Command::new(cargo).current_dir(root).args([
        "build",
        "--release",
        "--target",
        host::MUSL_TARGET,
        "-p",
        "damon-user",
        "--bin",
        "damon",
    ]))
    .context("building damon for the guests")?;
    let bin = target.join(host::MUSL_TARGET).join("release/damon");
    if !bin.is_file() {
        bail!("the build left no {}", bin.display());
    }
    Ok(bin)
}
