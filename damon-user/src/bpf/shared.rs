//! `BPF_F_MMAPABLE` array maps mapped into our address space: the sampling loop reads and
//! writes its tables as memory, with no map system call.
//!
//! aya 0.14 creates such maps (the flag comes from the object) but does not map them; the map
//! fd and `mmap(2)` are enough. Element `i` starts at `i * round_up(value_size, 8)`; the mapping
//! must be `MAP_SHARED` and its length a whole number of pages.
use std::{marker::PhantomData, os::fd::AsRawFd, ptr::NonNull};

use aya::maps::MapData;
use damon_common::BPF_F_MMAPABLE;

use super::BpfError;

/// The elements of one mmapped array map. Access goes through raw pointers: the kernel writes
/// some fields while we hold the mapping (fault counters), so no `&T` to an element is ever
/// handed out.
pub struct Shared<T> {
    base: NonNull<u8>,
    len: usize,
    entries: u32,
    _t: PhantomData<T>,
}

// SAFETY: the mapping is plain shared memory owned by this value; access is through raw
// pointers whose users follow the synchronisation rules of each table (see damon_common).
unsafe impl<T> Send for Shared<T> {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

impl<T> Shared<T> {
    /// Maps array map `name`, checking that it is mmapable and that its values are `T`s.
    pub fn map(data: &MapData, name: &'static str) -> Result<Self, BpfError> {
        let info = data
            .info()
            .map_err(|source| BpfError::Map { name, source })?;
        let size = std::mem::size_of::<T>();
        if info.map_flags() & BPF_F_MMAPABLE == 0 || info.value_size() as usize != size {
            return Err(BpfError::NotMappable {
                name,
                flags: info.map_flags(),
                value_size: info.value_size(),
                expected: size,
            });
        }
        const { assert!(std::mem::size_of::<T>().is_multiple_of(8)) };
        let entries = info.max_entries();
        let len = (size * entries as usize).div_ceil(page_size()) * page_size();
        // SAFETY: a fresh shared mapping of the map's value area, which the kernel sized to at
        // least `len` bytes; we unmap it in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd_raw(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(BpfError::Syscall(super::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::last_os_error(),
            }));
        }
        let base = NonNull::new(p as *mut u8).ok_or(BpfError::Missing { kind: "map", name })?;
        Ok(Self {
            base,
            len,
            entries,
            _t: PhantomData,
        })
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Element `i`, `None` past the end. Valid as long as `self` lives.
    pub fn get(&self, i: u32) -> Option<*mut T> {
        (i < self.entries).then(|| {
            // SAFETY: in bounds of the mapping (checked above); elements are `T`-sized and
            // 8-aligned (asserted), the mapping page-aligned.
            unsafe {
                self.base
                    .as_ptr()
                    .add(i as usize * std::mem::size_of::<T>()) as *mut T
            }
        })
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped. The mapping holds a reference on the map,
        // which the kernel frees once it is unmapped and every fd is closed.
        unsafe { libc::munmap(self.base.as_ptr() as *mut _, self.len) };
    }
}

/// `MapFd` to a raw fd without exposing aya's types to callers.
trait RawFdOf {
    fn as_fd_raw(&self) -> i32;
}

impl RawFdOf for aya::maps::MapFd {
    fn as_fd_raw(&self) -> i32 {
        use std::os::fd::AsFd;
        self.as_fd().as_raw_fd()
    }
}
