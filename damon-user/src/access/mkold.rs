//! Clearing Accessed bits of another process: `process_madvise(MADV_COLD)`.
//!
//! MADV_COLD clears the young bit of every page of a range and flushes the TLB: one flush
//! (and, while the target runs on other CPUs, one IPI to each) per range, so ranges are
//! merged where they touch. Its side effect is the one DAMON's own mkold has too, only
//! stronger: the pages move to the inactive LRU list. It skips pages mapped by several
//! processes and pages still in a per-CPU LRU batch (the sampling program does not advise
//! those), and returns EINVAL on mlocked, PFN-mapped and hugetlb ranges. One 4 KiB range
//! inside a transparent huge page splits the huge page, so callers pass the whole 2 MiB range
//! for samples in a PMD leaf.
use std::os::fd::OwnedFd;

use crate::bpf::sys::{self, MAX_IOVECS, MAX_RW_COUNT, SyscallError};
use crate::core::AddrRange;

/// `process_madvise(MADV_COLD)` over many ranges, with a reused iovec buffer.
pub struct Mkold {
    iov: Vec<libc::iovec>,
}

impl Default for Mkold {
    /// The iovec buffer is sized for the largest call once, so advising never allocates.
    fn default() -> Self {
        Self {
            iov: Vec::with_capacity(MAX_IOVECS),
        }
    }
}

// SAFETY: the iovecs are plain addresses of another process, never dereferenced here.
unsafe impl Send for Mkold {}

impl Mkold {
    /// Applies MADV_COLD to `ranges` (sorted, see [`coalesce`]), up to 1024 per call, resuming
    /// after a short count (a range that was unmapped meanwhile ends a call early without an
    /// error) or after a range the kernel refused (EINVAL / ENOMEM: mlocked, hugetlb,
    /// unmapped). Refused ranges are appended to `refused`. Returns the calls made.
    pub fn advise(
        &mut self,
        pidfd: &OwnedFd,
        ranges: &[AddrRange],
        refused: &mut Vec<AddrRange>,
    ) -> Result<u64, SyscallError> {
        let mut calls = 0;
        let mut rest = ranges;
        while !rest.is_empty() {
            // At most MAX_IOVECS ranges and MAX_RW_COUNT bytes per call (at least one range).
            let mut bytes_in = 0;
            let n = rest
                .iter()
                .take(MAX_IOVECS)
                .take_while(|r| {
                    bytes_in += r.size();
                    bytes_in <= MAX_RW_COUNT
                })
                .count()
                .max(1);
            let batch = &rest[..n];
            self.iov.clear();
            self.iov.extend(batch.iter().map(|r| libc::iovec {
                iov_base: r.start as *mut _,
                iov_len: r.size() as usize,
            }));
            calls += 1;
            let done = match sys::process_madvise(pidfd, &self.iov, libc::MADV_COLD) {
                Ok(done) => done as u64,
                // EINVAL/ENOMEM name one bad range: skip the first range and go on, so one
                // odd mapping does not blind the whole target.
                Err(e)
                    if matches!(
                        e.io_error.raw_os_error(),
                        Some(libc::EINVAL) | Some(libc::ENOMEM)
                    ) =>
                {
                    0
                }
                Err(e) => return Err(e),
            };
            // Whole ranges advised in this call.
            let mut consumed = 0;
            let mut bytes = 0;
            for r in batch {
                if bytes + r.size() > done {
                    break;
                }
                bytes += r.size();
                consumed += 1;
            }
            if consumed < batch.len() {
                // The range at `consumed` stopped the call: refused; resume after it.
                refused.push(batch[consumed]);
                consumed += 1;
            }
            rest = &rest[consumed..];
        }
        Ok(calls)
    }
}

/// Sorts and merges ranges that overlap or touch, so each page is advised once (several
/// samples can share one huge page).
pub fn coalesce(ranges: &mut Vec<AddrRange>) {
    ranges.sort_unstable_by_key(|r| (r.start, r.end));
    let mut kept = 0;
    for i in 0..ranges.len() {
        let r = ranges[i];
        if kept > 0 && ranges[kept - 1].end >= r.start {
            let prev = &mut ranges[kept - 1];
            prev.end = prev.end.max(r.end);
            continue;
        }
        ranges[kept] = r;
        kept += 1;
    }
    ranges.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_overlaps_and_duplicates() {
        let r = |start, len| AddrRange::new(start, start + len);
        let mut ranges = vec![
            r(0x5000, 0x1000),
            r(0x2000, 0x1000),
            r(0x200000, 0x200000),
            r(0x200000, 0x200000),
            r(0x3000, 0x1000),
        ];
        coalesce(&mut ranges);
        assert_eq!(
            ranges,
            vec![r(0x2000, 0x2000), r(0x5000, 0x1000), r(0x200000, 0x200000)]
        );
    }
}
