//! The `damon` subcommands: each module has `Args` (clap) and `run`.
pub mod check;
pub mod demo;
pub mod faults;
pub mod fs;
pub mod record;
pub mod report;
pub mod session;
pub mod top;
pub mod tty;
pub mod workload;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// A flag that turns true on SIGINT or SIGTERM, for the synchronous command loops.
pub fn interrupted() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        extern "C" fn on_signal(_: libc::c_int) {
            if let Some(f) = FLAG_PTR.get() {
                f.store(true, Ordering::SeqCst);
            }
        }
        static FLAG_PTR: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
        let _ = FLAG_PTR.set(flag.clone());
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        flag
    })
    .clone()
}
