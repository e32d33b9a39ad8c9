//! Clearing Accessed bits of another process: `process_madvise(MADV_COLD)`.
//!
//! MADV_COLD clears the young bit of every page of a range and flushes the TLB. Its side
//! effect is the one DAMON's own mkold has too, only stronger: the pages move to the inactive
//! LRU list. It skips pages mapped by several processes and pages still in a per-CPU LRU batch
//! (the caller detects those with a walk right after), and returns EINVAL on mlocked, PFN-mapped
//! and hugetlb ranges. One 4 KiB range inside a transparent huge page splits the huge page, so
//! callers pass the whole 2 MiB range for samples in a PMD leaf.
use std::os::fd::OwnedFd;

use crate::bpf::sys::{self, MAX_IOVECS, SyscallError};

/// Applies MADV_COLD to `ranges` (sorted, `(start, len)`), up to 1024 per call, resuming after
/// a short count (a range that was unmapped meanwhile ends a call early without an error).
/// Returns the number of ranges that could not be advised.
pub fn mkold(pidfd: &OwnedFd, ranges: &[(u64, u64)]) -> Result<usize, SyscallError> {
    let mut skipped = 0;
    let mut rest = ranges;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MAX_IOVECS)];
        let iov: Vec<libc::iovec> = batch
            .iter()
            .map(|&(start, len)| libc::iovec {
                iov_base: start as *mut _,
                iov_len: len as usize,
            })
            .collect();
        let done = match sys::process_madvise(pidfd, &iov, libc::MADV_COLD) {
            Ok(done) => done as u64,
            // EINVAL/ENOMEM name one bad range (mlocked, hugetlb, unmapped): skip the first
            // range and go on, so one odd mapping does not blind the whole target.
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
        for &(_, len) in batch {
            if bytes + len > done {
                break;
            }
            bytes += len;
            consumed += 1;
        }
        if consumed < batch.len() {
            // The range at `consumed` stopped the call: count it as skipped, resume after it.
            skipped += 1;
            consumed += 1;
        }
        rest = &rest[consumed..];
    }
    Ok(skipped)
}

/// Sorts and merges `(start, len)` ranges so each page is advised once (several samples can
/// share one huge page).
pub fn coalesce(ranges: &mut Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, l) in ranges.iter() {
        match out.last_mut() {
            Some((ps, pl)) if *ps + *pl >= s => *pl = (*pl).max(s + l - *ps),
            _ => out.push((s, l)),
        }
    }
    *ranges = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_overlaps_and_duplicates() {
        let mut r = vec![
            (0x5000, 0x1000),
            (0x2000, 0x1000),
            (0x200000, 0x200000),
            (0x200000, 0x200000),
            (0x3000, 0x1000),
        ];
        coalesce(&mut r);
        assert_eq!(
            r,
            vec![(0x2000, 0x2000), (0x5000, 0x1000), (0x200000, 0x200000)]
        );
    }
}
