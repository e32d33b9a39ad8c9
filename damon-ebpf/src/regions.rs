//! Attributing an address to a region of a monitored target.
use damon_common::{MAX_REGIONS, REGION_INDEX_MASK, REGION_SEARCH_STEPS, Slot};

/// Index of the region of `slot` that contains `addr`.
///
/// A binary search of fixed depth (`REGION_SEARCH_STEPS`), so the verifier sees a bounded,
/// fully unrolled loop; indices are masked because a compare-and-branch bound does not survive
/// LLVM's hoisting.
#[inline(always)]
pub fn find_region(slot: &Slot, addr: u64) -> Option<u32> {
    let n = if slot.nr_regions > MAX_REGIONS {
        MAX_REGIONS
    } else {
        slot.nr_regions
    };
    if n == 0 {
        return None;
    }
    let mut lo: u32 = 0;
    let mut size: u32 = n;
    for _ in 0..REGION_SEARCH_STEPS {
        if size <= 1 {
            break;
        }
        let half = size / 2;
        let mid = (lo + half) & REGION_INDEX_MASK;
        if slot.start[mid as usize] <= addr {
            lo = mid;
        }
        size -= half;
    }
    let lo = lo & REGION_INDEX_MASK;
    if slot.start[lo as usize] <= addr && addr < slot.end[lo as usize] {
        Some(lo)
    } else {
        None
    }
}
