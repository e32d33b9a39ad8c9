//! Address ranges and monitoring regions.
use std::fmt;

use serde::{Deserialize, Serialize};

use super::snapshot::RegionSnapshot;

/// The smallest region and the unit of every region bound: the kernel's `DAMON_MIN_REGION`,
/// which is `PAGE_SIZE`. Fixed at 4 KiB because the access check samples base pages of x86_64.
pub const PAGE_SIZE: u64 = 4096;

/// Rounds `addr` down to a page boundary.
pub fn align_down(addr: u64) -> u64 {
    addr & !(PAGE_SIZE - 1)
}

/// Rounds `addr` up to a page boundary, saturating at the last page boundary of the address space.
pub fn align_up(addr: u64) -> u64 {
    addr.checked_add(PAGE_SIZE - 1)
        .map_or(align_down(u64::MAX), align_down)
}

/// A half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddrRange {
    pub start: u64,
    pub end: u64,
}

impl AddrRange {
    pub fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Size in bytes; 0 for an empty or inverted range.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether the two ranges share at least one byte (the kernel's `damon_intersect()`).
    pub fn intersects(&self, other: &AddrRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest page-aligned range covering this one: how the kernel rounds user ranges
    /// (`ALIGN_DOWN` of the start, `ALIGN` of the end).
    pub fn page_aligned_outward(&self) -> AddrRange {
        AddrRange::new(align_down(self.start), align_up(self.end))
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// A monitoring region: an address range whose pages are assumed to share one access pattern,
/// with DAMON's per-region counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// The page checked in the current sample.
    pub sampling_addr: u64,
    /// Samples of the current aggregation interval that found the region accessed.
    pub nr_accesses: u32,
    /// Moving estimate of `nr_accesses` in basis points (1/10 000), valid mid-aggregation.
    pub nr_accesses_bp: u32,
    /// `nr_accesses` of the previous aggregation interval.
    pub last_nr_accesses: u32,
    /// Aggregation intervals the access rate has stayed about the same.
    pub age: u32,
    /// Samples of the current aggregation interval that could not be measured (see
    /// [`Access::Unmeasured`](super::ops::Access::Unmeasured)).
    pub nr_unmeasured: u32,
}

impl Region {
    /// A fresh region with zeroed counters.
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            sampling_addr: start,
            nr_accesses: 0,
            nr_accesses_bp: 0,
            last_nr_accesses: 0,
            age: 0,
            nr_unmeasured: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn range(&self) -> AddrRange {
        AddrRange::new(self.start, self.end)
    }

    /// What DAMON reports for this region at the end of an aggregation interval.
    pub fn snapshot(&self) -> RegionSnapshot {
        RegionSnapshot {
            start: self.start,
            end: self.end,
            nr_accesses: self.nr_accesses,
            age: self.age,
            nr_unmeasured: self.nr_unmeasured,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_to_pages() {
        assert_eq!(align_down(0x1fff), 0x1000);
        assert_eq!(align_up(0x1001), 0x2000);
        assert_eq!(align_up(0x2000), 0x2000);
        assert_eq!(align_up(u64::MAX), u64::MAX - (PAGE_SIZE - 1));
        assert_eq!(
            AddrRange::new(0x1234, 0x5678).page_aligned_outward(),
            AddrRange::new(0x1000, 0x6000)
        );
    }

    #[test]
    fn intersection_is_half_open() {
        let a = AddrRange::new(0x1000, 0x3000);
        assert!(a.intersects(&AddrRange::new(0x2000, 0x4000)));
        assert!(!a.intersects(&AddrRange::new(0x3000, 0x4000)));
        assert!(!a.intersects(&AddrRange::new(0, 0x1000)));
        assert!(a.contains(0x2fff) && !a.contains(0x3000));
        assert_eq!(a.to_string(), "0x1000-0x3000");
    }
}
