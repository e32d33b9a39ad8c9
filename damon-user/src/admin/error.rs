//! Errors of the admin tree, each with the errno the kernel's sysfs would return.
//!
//! The FUSE edge turns an [`AdminError`] into its [`errno`](AdminError::errno) for the caller's
//! `write()`/`open()`, and logs the message, which names the bad value: the kernel only gives
//! the errno, we can do better in the log without changing the ABI.

use super::backend::BackendError;

/// Why an operation on the admin tree failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is not a value this file accepts (EINVAL).
    #[error("{file}: invalid value {input:?}")]
    InvalidValue { file: String, input: String },
    /// A number too large for this file (ERANGE).
    #[error("{file}: value {input:?} is out of range")]
    OutOfRange { file: String, input: String },
    /// A keyword file got a word it does not know (EINVAL).
    #[error("{file}: unknown keyword {input:?} (accepted: {accepted})")]
    UnknownKeyword {
        file: String,
        input: String,
        accepted: String,
    },
    /// A well-formed value the file refuses, e.g. `2` for `nr_contexts` (EINVAL).
    #[error("{file}: {reason}")]
    Refused { file: String, reason: String },
    /// An `nr_*` count that would take the tree past its size limit (ENOMEM, as the kernel
    /// when it cannot allocate the directories).
    #[error("{file}: {reason}")]
    OutOfMemory { file: String, reason: String },
    /// The staged files do not make a valid kdamond (EINVAL at `on`/`commit`).
    #[error("kdamond {kdamond}: invalid configuration: {reason}")]
    InvalidConfig { kdamond: usize, reason: String },
    /// A state keyword that needs a running kdamond (EINVAL, as the kernel).
    #[error("kdamond {kdamond} is not running")]
    NotRunning { kdamond: usize },
    /// `off` for a kdamond that was never turned on (EINVAL).
    #[error("kdamond {kdamond} was never turned on")]
    NeverStarted { kdamond: usize },
    /// `off` for a kdamond that already stopped (EPERM, from the kernel's `damon_stop()`).
    #[error("kdamond {kdamond} already stopped")]
    AlreadyStopped { kdamond: usize },
    /// The tree or a kdamond is busy (EBUSY): the tree lock is held by another writer, a
    /// kdamond is running while `nr_kdamonds` is written, or `on` for a running kdamond.
    #[error("busy: {reason}")]
    Busy { reason: String },
    /// The monitor refused the configuration (EINVAL).
    #[error("kdamond {kdamond}")]
    Backend {
        kdamond: usize,
        #[source]
        source: BackendError,
    },
    /// Writing a read-only file (EACCES, as kernfs for files without a store method).
    #[error("{path} is read-only")]
    ReadOnly { path: String },
    /// No such file or directory (ENOENT).
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// A file operation on a directory (EISDIR).
    #[error("{path} is a directory")]
    IsDir { path: String },
    /// A directory operation on a file (ENOTDIR).
    #[error("{path} is not a directory")]
    NotDir { path: String },
}

impl AdminError {
    /// The errno the kernel's sysfs returns for the same failure.
    pub fn errno(&self) -> i32 {
        match self {
            AdminError::InvalidValue { .. }
            | AdminError::UnknownKeyword { .. }
            | AdminError::Refused { .. }
            | AdminError::InvalidConfig { .. }
            | AdminError::NotRunning { .. }
            | AdminError::NeverStarted { .. } => libc::EINVAL,
            AdminError::Backend { source, .. } => source.errno,
            AdminError::OutOfRange { .. } => libc::ERANGE,
            AdminError::AlreadyStopped { .. } => libc::EPERM,
            AdminError::Busy { .. } => libc::EBUSY,
            AdminError::OutOfMemory { .. } => libc::ENOMEM,
            AdminError::ReadOnly { .. } => libc::EACCES,
            AdminError::NotFound { .. } => libc::ENOENT,
            AdminError::IsDir { .. } => libc::EISDIR,
            AdminError::NotDir { .. } => libc::ENOTDIR,
        }
    }
}
