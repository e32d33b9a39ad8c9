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
//! Runs in the foreground until SIGINT/SIGTERM/SIGHUP or `umount DIR`, then exits with nothing
//! left mounted. If it is killed with SIGKILL, the mount is left broken ("Transport endpoint
//! is not connected"): `umount -l DIR` removes it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::admin::KdamondBackend;
use crate::admin::mount::{MountOptions, mount_background_with};
use crate::cmd::StopSignals;

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

/// Mount the tree of `backend` at `args.mountpoint` and serve it until SIGINT, SIGTERM, SIGHUP
/// or an external unmount, then unmount (lazily if still in use) and return.
pub fn run(args: Args, backend: Arc<dyn KdamondBackend>) -> anyhow::Result<()> {
    let signals = StopSignals::install().context("installing SIGINT/SIGTERM/SIGHUP handlers")?;
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
        if let Some(sig) = signals.received() {
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
