//! What the host needs to build guests and run them: qemu, a static busybox, the module
//! decompressors, and Rust's musl target. Each check is a fast no-op when the thing is there.
use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use super::cmd;

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// (Debian package, what shows that it is installed).
const PACKAGES: &[(&str, Check)] = &[
    ("qemu-system-x86", Check::Binary("qemu-system-x86_64")),
    ("busybox-static", Check::Package),
    ("xz-utils", Check::Binary("xz")),
    ("zstd", Check::Binary("zstd")),
];

enum Check {
    Binary(&'static str),
    Package,
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

/// Installs the missing Debian packages (as root; `apt-get update` once, only when needed).
pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(pkg, check)| match check {
            Check::Binary(b) => cmd::which(b).is_none(),
            Check::Package => !installed(pkg),
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "vm-test needs {} installed; run as root (it installs them) or `apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("vm-test: installing {} (apt-get)", missing.join(", "));
    cmd::output(
        Command::new("apt-get")
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get update for the vm-test host packages")?;
    cmd::output(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("installing {}", missing.join(" ")))?;
    Ok(())
}

/// The static busybox of the busybox-static package.
pub fn busybox() -> Result<PathBuf> {
    let listed = cmd::stdout(Command::new("dpkg").args(["-L", "busybox-static"]))?;
    listed
        .lines()
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|n| n == "busybox") && p.is_file())
        .context("busybox-static is installed but ships no busybox binary")
}

pub fn ensure_musl_target() -> Result<()> {
    let installed = cmd::stdout(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the musl target for the guest's static damon")?;
    if installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        return Ok(());
    }
    println!("vm-test: adding the {MUSL_TARGET} target (a static damon for the guests)");
    cmd::status(Command::new("rustup").args(["target", "add", MUSL_TARGET]))
}
