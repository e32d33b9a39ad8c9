//! `damon fs`: serve DAMON's sysfs admin tree at a directory, so that tools written for
//! `/sys/kernel/mm/damon/admin` drive this monitor.
//!
//! USAGE: `damon fs [--allow-other] DIR`
//!
//! EXAMPLES:
//! ```text
//! damon fs /tmp/damon &
//! cd /tmp/damon
//! echo 1 > kdamonds/nr_kdamonds
//! echo 1 > kdamonds/0/contexts/nr_contexts
//! echo vaddr > kdamonds/0/contexts/0/operations
//! echo 1 > kdamonds/0/contexts/0/targets/nr_targets
//! echo $(pidof workload) > kdamonds/0/contexts/0/targets/0/pid_target
//! echo on > kdamonds/0/state
//! ```
//! Runs in the foreground until SIGINT/SIGTERM or `umount DIR`, then exits with nothing left
//! mounted. If it is killed with SIGKILL, the mount is left broken ("Transport endpoint is
//! not connected"): `umount -l DIR` removes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Context as _;

use crate::admin::KdamondBackend;
use crate::admin::mount::{MountOptions, mount_background_with};

/// Arguments of `damon fs`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to mount the admin tree on (it shows what /sys/kernel/mm/damon/admin shows).
    pub mountpoint: PathBuf,
    /// Let users other than the mounting one access the tree (file modes still apply).
    #[arg(long)]
    pub allow_other: bool,
}

/// How often the foreground loop looks for a stop signal or an external unmount.
const POLL: Duration = Duration::from_millis(100);

/// The last SIGINT/SIGTERM received while serving; 0 for none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// SIGINT and SIGTERM handlers, restored on drop. Handlers, unlike a blocked mask, work
/// whichever thread of the process the signal lands on (threads started before `run`, e.g. an
/// async runtime's, do not inherit a mask set here).
struct StopSignals {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        let mut installed = StopSignals { old: Vec::new() };
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler only stores an atomic, and
            // SA_RESTART keeps FUSE and monitor threads' system calls from failing with EINTR.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                installed.old.push((sig, old));
            }
        }
        Ok(installed)
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for (sig, old) in &self.old {
            // SAFETY: restores the action saved by `install`.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
    }
}

/// Mount the tree of `backend` at `args.mountpoint` and serve it until SIGINT, SIGTERM or an
/// external unmount, then unmount (lazily if still in use) and return.
pub fn run(args: Args, backend: Arc<dyn KdamondBackend>) -> anyhow::Result<()> {
    let _signals = StopSignals::install().context("installing SIGINT/SIGTERM handlers")?;
    let options = MountOptions {
        allow_other: args.allow_other,
    };
    let guard = mount_background_with(&args.mountpoint, backend, &options).with_context(|| {
        format!(
            "cannot serve the admin tree at {}",
            args.mountpoint.display()
        )
    })?;
    let mountpoint = guard.mountpoint().to_path_buf();
    eprintln!(
        "Serving DAMON's admin tree at {dir}. Hit Ctrl-C (or `umount {dir}`) to end.",
        dir = mountpoint.display()
    );
    loop {
        let sig = STOP_SIGNAL.load(Ordering::SeqCst);
        if sig != 0 {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            break;
        }
        if !guard.is_serving() {
            log::info!("{} was unmounted", mountpoint.display());
            break;
        }
        std::thread::sleep(POLL);
    }
    guard
        .unmount()
        .with_context(|| format!("unmounting {}", mountpoint.display()))
}
