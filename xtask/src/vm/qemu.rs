//! Boots one guest under qemu's TCG and waits for it, killing it at the deadline.
//!
//! KVM is not used: on hosts whose KVM cannot run a stock kernel natively, qemu falls back
//! to an instruction emulator that is slower than TCG and fails on common instructions.
//! `pti=on` matters for the comparison with the kernel's DAMON: TCG sets a PTE's Accessed
//! bit only on a miss in its software TLB, which is flushed on CR3 writes; page-table
//! isolation writes CR3 at every kernel entry and exit, so a hot page is seen as accessed
//! within each sample interval, as on hardware.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

pub struct Guest<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    /// ttyS0: the kernel's log and the init script's progress.
    pub console: PathBuf,
    /// ttyS1: the init script's results.
    pub results: PathBuf,
    pub timeout: Duration,
}

pub struct Outcome {
    pub wall: Duration,
    pub timed_out: bool,
    /// What qemu itself printed (errors starting it).
    pub qemu_output: String,
}

/// Kills qemu if it is still running when dropped (an error or a panic on our side).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn boot(g: &Guest) -> Result<Outcome> {
    let qemu_log = g.console.with_extension("qemu.log");
    let qemu_out =
        File::create(&qemu_log).with_context(|| format!("creating {}", qemu_log.display()))?;
    let qemu_err = qemu_out.try_clone().context("duplicating a file handle")?;
    let append = "console=ttyS0 panic=-1 loglevel=4 pti=on damon_vm_guest=1";
    let t0 = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        // Multi-threaded TCG occasionally oopses stock kernels while they patch static keys.
        .args([
            "-accel",
            "tcg,thread=single",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "2G",
        ])
        .arg("-kernel")
        .arg(g.vmlinuz)
        .arg("-initrd")
        .arg(g.initramfs)
        .args(["-append", append])
        .arg("-serial")
        .arg(format!("file:{}", g.console.display()))
        .arg("-serial")
        .arg(format!("file:{}", g.results.display()))
        .stdin(Stdio::null())
        .stdout(qemu_out)
        .stderr(qemu_err)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut qemu = Running(child);
    let deadline = t0 + g.timeout;
    let mut timed_out = false;
    loop {
        match qemu.0.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                qemu.0.kill().context("killing qemu at the deadline")?;
                qemu.0.wait().context("waiting for the killed qemu")?;
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e).context("waiting for qemu"),
        }
    }
    let wall = t0.elapsed();
    drop(qemu);
    let qemu_output = std::fs::read_to_string(&qemu_log).unwrap_or_default();
    let _ = std::fs::remove_file(&qemu_log);
    Ok(Outcome {
        wall,
        timed_out,
        qemu_output,
    })
}
