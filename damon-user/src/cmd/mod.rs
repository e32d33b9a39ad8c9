//! The `damon` subcommands: each module has `Args` (clap) and `run`.
pub mod check;
pub mod demo;
pub mod faults;
pub mod follow;
pub mod fs;
pub mod record;
pub mod report;
pub mod schemes;
pub mod serve;
pub mod session;
pub mod top;
pub mod tty;
pub mod workload;

use std::sync::atomic::{AtomicI32, Ordering};

/// The last stop signal received while a [`StopSignals`] is installed; 0 for none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The signals [`StopSignals`] catches.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// SIGINT, SIGTERM and SIGHUP caught for a command's foreground loop, the previous handlers
/// restored on drop. SIGHUP (the terminal or ssh session closed) ends a command as SIGTERM
/// does, so it still saves its file, unmounts, or restores the terminal. Handlers, unlike a
/// blocked mask, work whichever thread of the process the signal lands on (threads started
/// earlier do not inherit a mask set later).
pub struct StopSignals {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        STOP_SIGNAL.store(0, Ordering::SeqCst);
        let mut installed = StopSignals { old: Vec::new() };
        for sig in STOP_SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler only stores an atomic, and
            // SA_RESTART keeps other threads' system calls from failing with EINTR.
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

    /// The signal received since `install`, if any.
    pub fn received(&self) -> Option<i32> {
        let sig = STOP_SIGNAL.load(Ordering::SeqCst);
        (sig != 0).then_some(sig)
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
