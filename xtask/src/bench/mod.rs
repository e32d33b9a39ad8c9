//! `cargo xtask bench`: the criterion benchmarks of `damon-user` (per-operation costs) and the
//! system benchmarks here (whole `damon` processes against real workloads, measured from
//! outside through `/proc`). Every benchmark prints its numbers; none asserts a goal.
mod cpu;
mod proc;
mod record;
mod serve;

use std::path::Path;

use anyhow::{Result, bail};

/// Criterion benchmarks of `damon-user`, run through `cargo bench`.
const CRITERION: &[&str] = &["core", "access_check"];

/// System benchmarks: name, what it measures, the function that runs it.
type SystemBench = (&'static str, &'static str, fn(&Path) -> Result<()>);
const SYSTEM: &[SystemBench] = &[
    (
        "cpu",
        "steady-state CPU, system calls per sample and workload slowdown of `damon record`",
        cpu::run,
    ),
    (
        "startup",
        "time from starting `damon record` to its first sample",
        cpu::startup,
    ),
    (
        "serve",
        "CPU and RSS of `damon serve` monitoring 20 processes at the default attributes",
        serve::run,
    ),
    (
        "record-long",
        "a 10-minute `damon record`: RSS, CPU, flush gap and file size over time",
        record::run,
    ),
];

/// Names of every benchmark, for `--help` and errors.
pub fn names() -> Vec<&'static str> {
    CRITERION
        .iter()
        .copied()
        .chain(SYSTEM.iter().map(|b| b.0))
        .collect()
}

/// Runs benchmark `which` (all when `None`); `args` go to criterion.
pub fn run(root: &Path, which: Option<&str>, args: &[String]) -> Result<()> {
    if let Some(w) = which
        && !names().contains(&w)
    {
        bail!(
            "no benchmark named {w:?}; there are: {}",
            names().join(", ")
        );
    }
    let selected = |name: &str| which.is_none_or(|w| w == name);
    for b in CRITERION.iter().copied().filter(|b| selected(b)) {
        let mut a = vec!["bench", "-p", "damon-user", "--bench", b, "--"];
        a.extend(args.iter().map(String::as_str));
        crate::cargo(root, &a)?;
    }
    let system: Vec<&SystemBench> = SYSTEM.iter().filter(|b| selected(b.0)).collect();
    if !system.is_empty() {
        if !proc::is_root() {
            println!("xtask bench: the system benchmarks need root (BPF); skipped");
            return Ok(());
        }
        crate::cargo(
            root,
            &["build", "--release", "-p", "damon-user", "--bin", "damon"],
        )?;
        for (name, what, f) in system {
            println!("\n## bench {name}: {what}\n");
            f(root)?;
        }
    }
    Ok(())
}
