//! The build prerequisites: nightly's `rust-src` and `bpf-linker` 0.10.3 (the newest release
//! that builds against rustc's own LLVM here), and damo in a venv for the cross-check tests.
//! Each check is a fast no-op when the thing is present.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

const BPF_LINKER_VERSION: &str = "0.10.3";
const DAMO_VERSION: &str = "3.4.3";

pub fn ensure() -> Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .with_context(|| format!("running {cmd}"))?;
    if !status.success() {
        bail!("`{cmd} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("rustup is needed to build the eBPF programs (toolchain `nightly`)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    println!(
        "xtask: installing the rust-src component of the nightly toolchain (eBPF builds need core's source)"
    );
    run(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
}

fn ensure_bpf_linker() -> Result<()> {
    if let Some(v) = output("bpf-linker", &["--version"])
        && v.contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    println!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} (links the eBPF programs; about a minute)"
    );
    let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
    run("cargo", &["install", &spec, "--locked", "--force"])
}

/// Debian packages the tests drive (tmux for the live view's terminal test; prometheus, with
/// promtool, for `damon serve`'s). Installed only when missing and only as root; otherwise
/// the test that needs one says so. The package's name is its command's.
pub fn ensure_test_packages() -> Result<()> {
    let missing: Vec<&str> = ["tmux", "prometheus"]
        .into_iter()
        .filter(|p| output("which", &[p]).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if output("id", &["-u"])
        .map(|u| u.trim() != "0")
        .unwrap_or(true)
    {
        println!("xtask: not root, not installing {}", missing.join(", "));
        return Ok(());
    }
    println!(
        "xtask: installing {} (Debian packages the tests use)",
        missing.join(", ")
    );
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    if run("apt-get", &args).is_err() {
        run("apt-get", &["update"])?;
        run("apt-get", &args)?;
    }
    Ok(())
}

/// A venv under `target/` with damo from PyPI; returns the damo executable.
pub fn damo_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/damo-venv");
    let damo = venv.join("bin/damo");
    if damo.exists() {
        return Ok(damo);
    }
    println!(
        "xtask: installing damo {DAMO_VERSION} from PyPI into {} (for the cross-check tests)",
        venv.display()
    );
    let venv_s = venv.to_string_lossy().into_owned();
    run("python3", &["-m", "venv", &venv_s])?;
    let pip = venv.join("bin/pip").to_string_lossy().into_owned();
    run(
        &pip,
        &["install", "--quiet", &format!("damo=={DAMO_VERSION}")],
    )?;
    Ok(damo)
}

/// The path of `cmd` on `PATH`, if there is one.
pub fn which(cmd: &str) -> Option<String> {
    output("which", &[cmd])
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
}
