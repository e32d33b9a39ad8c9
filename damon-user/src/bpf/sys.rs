//! Raw system calls that neither libc's safe wrappers nor aya 0.14 cover.
use crate::core::Pid;
use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use thiserror::Error;

/// A failed system call: which one, and the OS error.
#[derive(Debug, Error)]
#[error("{call} failed")]
pub struct SyscallError {
    pub call: &'static str,
    #[source]
    pub io_error: io::Error,
}

fn check(call: &'static str, r: libc::c_long) -> Result<libc::c_long, SyscallError> {
    if r < 0 {
        Err(SyscallError {
            call,
            io_error: io::Error::last_os_error(),
        })
    } else {
        Ok(r)
    }
}

/// `pidfd_open(2)`: a handle on a process that does not go stale when the pid is reused.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, SyscallError> {
    let fd = check("pidfd_open", unsafe {
        libc::syscall(libc::SYS_pidfd_open, pid, 0)
    })?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` has exited: a pidfd turns readable then. One `poll`,
/// cheaper than opening `/proc/PID/stat` at every sample.
pub fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd with no timeout.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    r > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Most iovecs one `process_madvise` call takes (`UIO_MAXIOV`).
pub const MAX_IOVECS: usize = 1024;

/// `process_madvise(2)`: applies `advice` to ranges of another process; returns the bytes
/// advised, which is short (without an error) when a range was not mapped.
/// The most bytes one `process_madvise` call advises (the kernel's `MAX_RW_COUNT`); it stops
/// there and returns the count.
pub const MAX_RW_COUNT: u64 = 0x7fff_f000;

pub fn process_madvise(
    pidfd: &OwnedFd,
    iov: &[libc::iovec],
    advice: i32,
) -> Result<usize, SyscallError> {
    let n = iov.len().min(MAX_IOVECS);
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd.as_raw_fd(),
            iov.as_ptr(),
            n,
            advice,
            0u32,
        )
    };
    check("process_madvise", r).map(|r| r as usize)
}

fn bpf(cmd: i32, attr: &mut [u64; 16]) -> Result<RawFd, SyscallError> {
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    };
    check("bpf", r).map(|r| r as RawFd)
}

/// One `BPF_PROG_TEST_RUN` of raw tracepoint program `prog_fd` with `args` as its arguments;
/// returns the program's return value. Allocates nothing: the sampling loop calls it once per
/// sample.
pub fn test_run_raw_tp(prog_fd: RawFd, args: &[u64]) -> Result<u32, SyscallError> {
    const BPF_PROG_TEST_RUN: i32 = 10;
    let mut attr = [0u64; 16];
    attr[0] = prog_fd as u32 as u64; // prog_fd; retval is the upper half
    if !args.is_empty() {
        attr[5] = (std::mem::size_of_val(args) as u64) & 0xffff_ffff; // ctx_size_in
        attr[6] = args.as_ptr() as u64; // ctx_in
    }
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok((attr[0] >> 32) as u32)
}

/// Physical frame of `addr` in process `pid` from `/proc/PID/pagemap` (needs
/// CAP_SYS_ADMIN to see frame numbers). `None` when the page is not present.
pub fn pagemap_pfn(pid: u32, addr: u64) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let f = File::open(format!("/proc/{pid}/pagemap"))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (addr / 4096) * 8)?;
    let e = u64::from_le_bytes(b);
    Ok((e >> 63 == 1).then_some(e & ((1 << 55) - 1)))
}

/// The thread id of the caller.
pub fn gettid() -> i32 {
    unsafe { libc::gettid() }
}

/// Paging levels of the running kernel: only a 5-level kernel lets user space map above
/// 47 bits, so a `MAP_FIXED_NOREPLACE` probe mapping at 2^50 tells.
pub fn pgtable_levels() -> u32 {
    let hint = (1u64 << 50) as *mut libc::c_void;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
    let p = unsafe { libc::mmap(hint, 4096, libc::PROT_READ, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return 4;
    }
    unsafe { libc::munmap(p, 4096) };
    if p == hint { 5 } else { 4 }
}
