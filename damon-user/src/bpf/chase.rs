//! Following kernel pointers from our own file descriptor table, with [`Peek`]: the
//! `struct file` behind one of our fds, and from there a target's `struct pid` (behind its
//! pidfd) or a shmem folio (behind a memfd, for the calibration of `vmemmap_base`).
use crate::core::Pid;
use std::os::fd::RawFd;

use thiserror::Error;

use super::{BpfError, KernelLayout, peek::Peek};

#[derive(Debug, Error)]
pub enum ChaseError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("reading {what} at {addr:#x} faulted")]
    Fault { what: &'static str, addr: u64 },
    #[error("{what} is null")]
    Null { what: &'static str },
    #[error("fd {fd} is past the end of our file table ({max_fds} entries)")]
    NoSuchFd { fd: RawFd, max_fds: u64 },
    #[error(
        "the pidfd of process {pid} leads to no struct pid of that process (tried file.private_data and the inode's i_private)"
    )]
    NoPid { pid: Pid },
}

fn read(peek: &Peek, what: &'static str, addr: u64) -> Result<u64, ChaseError> {
    peek.u64(addr)?.ok_or(ChaseError::Fault { what, addr })
}

fn non_null(what: &'static str, v: u64) -> Result<u64, ChaseError> {
    if v == 0 {
        Err(ChaseError::Null { what })
    } else {
        Ok(v)
    }
}

/// The `struct file *` of our fd `fd`: current → files → fdt → `fd[fd]`.
pub fn our_file(peek: &Peek, l: &KernelLayout, fd: RawFd) -> Result<u64, ChaseError> {
    let task = peek.current_task()?;
    let files = non_null("task.files", read(peek, "task.files", task + l.task_files)?)?;
    let fdt = non_null("files.fdt", read(peek, "files.fdt", files + l.files_fdt)?)?;
    let max_fds = read(peek, "fdtable.max_fds", fdt + l.fdtable_max_fds)? & 0xffff_ffff;
    if fd < 0 || fd as u64 >= max_fds {
        return Err(ChaseError::NoSuchFd { fd, max_fds });
    }
    let array = non_null("fdtable.fd", read(peek, "fdtable.fd", fdt + l.fdtable_fd)?)?;
    non_null("the fd's file", read(peek, "fd[]", array + fd as u64 * 8)?)
}

/// The `struct pid *` of process `pid` behind our pidfd `pidfd`. The pidfd holds a reference
/// on it, so the pointer stays valid for as long as we keep the fd open.
///
/// Where a pidfd keeps its pid moved: `file.private_data` before Linux 6.9, the pidfs inode's
/// `i_private` since. Both are tried; the one whose pid number and thread-group leader match
/// `pid` is taken.
pub fn pid_of_pidfd(
    peek: &Peek,
    l: &KernelLayout,
    pidfd: RawFd,
    pid: Pid,
) -> Result<u64, ChaseError> {
    let file = our_file(peek, l, pidfd)?;
    let mut candidates = [0u64; 2];
    candidates[0] = peek.u64(file + l.file_private_data)?.unwrap_or(0);
    if let Some(inode) = peek.u64(file + l.file_f_inode)?.filter(|&i| i != 0) {
        candidates[1] = peek.u64(inode + l.inode_i_private)?.unwrap_or(0);
    }
    for c in candidates.into_iter().filter(|&c| c != 0) {
        if pid_matches(peek, l, c, pid)? {
            return Ok(c);
        }
    }
    Err(ChaseError::NoPid { pid })
}

/// Whether `struct pid` at `p` is process `pid`: one of its numbers (one per pid namespace
/// level) is `pid`, and its thread-group leader has tgid `pid`.
fn pid_matches(peek: &Peek, l: &KernelLayout, p: u64, pid: Pid) -> Result<bool, ChaseError> {
    let Some(level) = peek.i32(p + l.pid_level)? else {
        return Ok(false);
    };
    let numbered = (0..=level.clamp(0, 31) as u64).any(
        |i| matches!(peek.i32(p + l.pid_numbers + i * l.upid_size), Ok(Some(nr)) if pid == nr),
    );
    if !numbered {
        return Ok(false);
    }
    let Some(node) = peek.u64(p + l.pid_tasks_tgid)?.filter(|&n| n != 0) else {
        return Ok(false);
    };
    let task = node - l.task_pid_links_tgid;
    Ok(matches!(peek.i32(task + l.task_tgid)?, Some(t) if pid == t))
}

/// The folio at index 0 of the page cache of our fd `fd` (a memfd with one small page): an
/// xarray with one entry at index 0 keeps it in `xa_head` itself. `None` when the head is a
/// node (a large folio), which the caller cannot use.
pub fn first_folio_of(peek: &Peek, l: &KernelLayout, fd: RawFd) -> Result<Option<u64>, ChaseError> {
    let file = our_file(peek, l, fd)?;
    let mapping = non_null(
        "file.f_mapping",
        read(peek, "file.f_mapping", file + l.file_f_mapping)?,
    )?;
    let head = read(peek, "i_pages.xa_head", mapping + l.mapping_xa_head)?;
    Ok((head != 0 && head & 3 == 0).then_some(head))
}
