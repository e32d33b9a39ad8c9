//! `cargo xtask`: orchestration only. Installs the prerequisites, builds, runs, tests.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod kselftest;
mod prereq;
mod vm;

#[derive(Parser)]
#[command(about = "Build, run and test damon")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install prerequisites, build, and run `damon ARGS` as root (the demo without ARGS).
    Run {
        /// Arguments for `damon`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install prerequisites, then run every unit and integration test (those that need root
    /// only as root: without root they are shown as ignored).
    Test {
        /// Extra arguments for the test binaries (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the benchmarks and print their numbers: criterion's `core` (the monitoring core)
    /// and `access_check` (the eBPF access check), and the system benchmarks `cpu` (what a
    /// running `damon record` costs), `startup` (time to its first sample), `serve` (what
    /// `damon serve` costs on 20 processes) and `record-long`
    /// (a 10-minute recording: memory, CPU, flush gap and file size over time). All but
    /// `core` need root.
    Bench {
        /// Only this benchmark.
        #[arg(long)]
        bench: Option<String>,
        /// Arguments for criterion, e.g. `--measurement-time 3`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Only install the prerequisites.
    Setup,
    /// Run the kernel's DAMON selftests (Debian's linux-source-6.12) against our admin tree,
    /// each in a private mount namespace with our FUSE mount bound over the kernel's. Root.
    Kselftest {
        /// Only these tests (e.g. `damos_quota.py`; default: all nine that use the admin tree).
        tests: Vec<String>,
    },
    /// Boot stock Debian kernels under qemu and run damon's checks in each.
    VmTest {
        /// Kernel to run (repeatable; default: all). See xtask/src/vm/kernels.rs.
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// Also run the kernel's DAMON and ours side by side (kernels with DAMON vaddr).
        #[arg(long)]
        compare: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Setup => prereq::ensure(),
        Cmd::Run { args } => {
            prereq::ensure()?;
            cargo(
                &root,
                &["build", "--release", "-p", "damon-user", "--bin", "damon"],
            )?;
            let bin = root.join("target/release/damon");
            let args = if args.is_empty() {
                vec!["demo".to_string()]
            } else {
                args
            };
            run_as_root(&bin, &args)
        }
        Cmd::Test { args } => {
            prereq::ensure()?;
            test(&root, &args)
        }
        Cmd::VmTest { kernels, compare } => {
            prereq::ensure()?;
            vm::run(&root, &kernels, compare)
        }
        Cmd::Kselftest { tests } => {
            prereq::ensure()?;
            kselftest_cmd(&root, &tests)
        }
        Cmd::Bench { bench, args } => {
            prereq::ensure()?;
            bench::run(&root, bench.as_deref(), &args)
        }
    }
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    let is_root = unsafe { libc_geteuid() } == 0;
    prereq::ensure_test_packages()?;
    let mut env: Vec<(String, String)> = Vec::new();
    match prereq::damo_venv(root) {
        Ok(damo) => env.push(("DAMON_TEST_DAMO".into(), damo.display().to_string())),
        Err(e) => bail!("installing damo for the cross-check tests failed: {e:#}"),
    }
    // `damon serve`'s test runs a real Prometheus server and promtool.
    for (var, cmd) in [
        ("DAMON_TEST_PROMETHEUS", "prometheus"),
        ("DAMON_TEST_PROMTOOL", "promtool"),
    ] {
        if let Some(path) = prereq::which(cmd) {
            env.push((var.into(), path));
        }
    }
    let cargo_test = |args: &[&str], test_args: &[&str]| -> Result<()> {
        let status = Command::new(cargo_bin())
            .current_dir(root)
            .arg("test")
            .args(args)
            .arg("--")
            .args(test_args)
            .args(extra)
            .envs(env.iter().cloned())
            .status()
            .context("running cargo test")?;
        if !status.success() {
            bail!("tests failed");
        }
        Ok(())
    };
    let workspace = ["--workspace", "--exclude", "damon-ebpf"];
    if is_root {
        // The tests that need root are #[ignore = "needs root"], so that a run without root
        // lists them as ignored instead of passed; as root every test runs.
        cargo_test(&workspace, &["--include-ignored"])?;
    } else {
        println!(
            "xtask: not root: the tests that need root (BPF, mounts, users) are not run and \
             are shown as ignored; run `cargo xtask test` as root to run them"
        );
        cargo_test(&workspace, &[])?;
        // The damo cross-checks are ignored for want of damo, which is here: they need no
        // root.
        cargo_test(
            &["-p", "damon-user", "--test", "report_damo"],
            &["--ignored"],
        )?;
    }
    // The kernel's own DAMON selftests against our tree (root: mounts, namespaces, eBPF).
    if extra.is_empty() && is_root {
        kselftest_cmd(root, &[])?;
    }
    // The stock-kernel matrix; a test name filter selects host tests only.
    if extra.is_empty() {
        vm::run(root, &[], false)?;
    } else {
        println!("xtask: not running the stock-kernel matrix (a test filter was given)");
    }
    Ok(())
}

/// `cargo xtask kselftest`: fails unless every selected test passes.
fn kselftest_cmd(root: &Path, tests: &[String]) -> Result<()> {
    if unsafe { libc_geteuid() } != 0 {
        bail!("the kernel's selftests mount file systems and load eBPF programs: run as root");
    }
    cargo(
        root,
        &["build", "--release", "-p", "damon-user", "--bin", "damon"],
    )?;
    let target = root.join("target");
    let outcomes = kselftest::run(&target, &target.join("release/damon"), tests)?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.test.as_str())
        .collect();
    println!(
        "kselftest: {} of {} passed (logs in {})",
        outcomes.len() - failed.len(),
        outcomes.len(),
        target.join("kselftest/logs").display()
    );
    if !failed.is_empty() {
        bail!("selftests failed: {}", failed.join(", "));
    }
    Ok(())
}

fn run_as_root(bin: &Path, args: &[String]) -> Result<()> {
    let status = if unsafe { libc_geteuid() } == 0 {
        Command::new(bin).args(args).status()
    } else {
        println!("xtask: damon needs root; running it through `sudo -E`");
        Command::new("sudo").arg("-E").arg(bin).args(args).status()
    }
    .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("damon exited with {status}");
    }
    Ok(())
}

pub fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(cargo_bin())
        .current_dir(root)
        .args(args)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
