//! DAMON's sysfs admin tree (`/sys/kernel/mm/damon/admin`) as a user-space model, served
//! over FUSE so that scripts and tools written for the kernel (damo) drive our monitor
//! unchanged.
//!
//! - [`tree`]: the whole tree behind one lock ([`Admin`]), with the kernel's defaults, modes,
//!   parsing ([`parse`]) and errno for every file; values are staged and take effect at `on`
//!   or `commit`.
//! - [`dirs`]: one type per directory (`KdamondDir`, `ContextDir`, `SchemeDir`, ...) with the
//!   `state` keywords in [`dirs::kdamond`]; [`config`] validates the staged files into a
//!   [`KdamondConfig`] (the core's `ContextSpec` and `Scheme`s) for the [`KdamondBackend`]
//!   seam ([`backend`]); the `update_schemes_*` keywords ask the kdamond, which
//!   runs the schemes ([`crate::core::scheme`]).
//! - [`fuse`]: the FUSE file system, and [`mount`] its mount/unmount ([`mount_background`]
//!   returns a [`MountGuard`]).
//! - `fake`: a backend without a monitor, for tests (feature `testing`).
//!
//! # Differences from the kernel tree
//! - `avail_operations` lists `vaddr` and `fvaddr` only; `paddr` is accepted by `operations`
//!   (as the kernel accepts any operations set it knows) and refused at `on`/`commit`.
//! - Schemes run in the kdamond as the kernel's (apply intervals, size and time quotas with
//!   their charge windows, prioritisation weights, quota goals, running `stats/`). The
//!   actions are those `process_madvise` can apply to another process: `pageout`, `cold`,
//!   `lru_deprio` (as `cold`), `willneed`, `collapse`, and `stat`; `hugepage`, `nohugepage`,
//!   `lru_prio` and `migrate_*` make `on`/`commit` fail with EINVAL, the log saying why.
//!   Watermarks and filters are passed on to the kdamond (`admin::config`); filters the
//!   kernel could not set up (bad `memcg_path`, `addr_end < addr_start`, `min > max`) make
//!   `on`/`commit` fail with ENOMEM, as the kernel's.
//! - The tree holds at most [`node::MAX_DIRS`] directories: an `nr_*` write that would take it
//!   past that fails with ENOMEM and changes nothing (the kernel fails such a write with
//!   ENOMEM too, when it cannot allocate the directories, but has no fixed limit).
//! - Writes to `state` and `nr_*` files try a writers' lock, `damon_sysfs_lock`'s analogue
//!   (EBUSY when another such writer or a due `refresh_ms` refresh holds it), like the
//!   kernel; reads and plain value stores, which take no lock in the kernel, never fail for
//!   contention (they wait for the data lock, held for microseconds).
//!
//! # Recovering a mount whose server was killed
//! A server killed with SIGKILL cannot unmount: the mount stays, and every access to it fails
//! with ENOTCONN ("Transport endpoint is not connected"). `umount -l DIR` (or
//! `umount DIR` when nothing uses it) removes it; then `damon fs DIR` can mount again.
pub mod backend;
pub mod config;
pub mod dirs;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod fuse;
pub mod mount;
pub mod node;
pub mod parse;
pub mod tree;

pub use backend::{BackendError, ContextConfig, KdamondBackend, KdamondConfig, RunningKdamond};
pub use error::AdminError;
pub use mount::{MountGuard, MountOptions, mount_background, mount_background_with};
pub use node::{Access, EntryKind};
pub use tree::{Admin, Tree};

#[cfg(test)]
mod tests;
