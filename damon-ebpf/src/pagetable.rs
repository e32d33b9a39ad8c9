//! Reading a process's page tables read-only (`pgd` → `p4d` (5-level only) → `pud` → `pmd` →
//! `pte`) and the `struct page` of a mapped frame, with `bpf_probe_read_kernel` only: a table
//! freed under a racing munmap gives a read error or a stale entry, never a crash.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use damon_common::{
    SAMPLE_PMD_LEAF, SAMPLE_PRESENT, SAMPLE_PUD_LEAF, SAMPLE_READ_ERR, SAMPLE_YOUNG,
};

const P_PRESENT: u64 = 1 << 0;
const P_ACCESSED: u64 = 1 << 5;
/// PSE: the entry maps a huge page instead of pointing to a lower table.
const P_PSE: u64 = 1 << 7;
/// Physical address bits 12..51 of an entry that points to a table or maps a 4 KiB page.
const PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Physical address bits 21..51 of a 2 MiB leaf (bit 12 is its PAT bit).
const PMD_LEAF_MASK: u64 = 0x000f_ffff_ffe0_0000;

#[inline(always)]
pub fn read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_kernel(addr as *const u64).ok() }
}

#[inline(always)]
pub fn read_i32(addr: u64) -> Option<i32> {
    unsafe { bpf_probe_read_kernel(addr as *const i32).ok() }
}

#[inline(always)]
fn leaf_flags(e: u64) -> u8 {
    if e & P_ACCESSED != 0 {
        SAMPLE_PRESENT | SAMPLE_YOUNG
    } else {
        SAMPLE_PRESENT
    }
}

/// A walk of one address space: the root, and the upper levels of the last 1 GiB visited,
/// which consecutive samples nearly always share (two reads per sample instead of four). The
/// cache lives in the slot's map entry between callbacks (`load`, `store`).
#[repr(C)]
pub struct Walker {
    pub base: u64,
    pub pgd: u64,
    pub five_level: u64,
    /// `addr >> 30` of the cached upper levels; `u64::MAX` for none.
    pud_key: u64,
    /// The PMD table of that 1 GiB, or 0 when the mapping ends above it.
    pmd_table: u64,
    /// `SAMPLE_*` flags and entry when the mapping ends above the PMD table.
    upper_flags: u64,
    upper_entry: u64,
}

/// What a walk found for one address.
#[repr(C)]
pub struct Leaf {
    /// `SAMPLE_PRESENT | SAMPLE_YOUNG | SAMPLE_PMD_LEAF | SAMPLE_PUD_LEAF | SAMPLE_READ_ERR`.
    pub flags: u8,
    /// The leaf entry (PTE, PMD or PUD), 0 when not present.
    pub entry: u64,
    /// Address of the leaf entry, 0 when the walk ended above the PMD level or found
    /// nothing present.
    pub leaf_ptr: u64,
}

impl Walker {
    /// A walker with the cache kept in `scratch[..4]` (see `Slot::scratch`).
    #[inline(always)]
    pub fn load(base: u64, pgd: u64, five_level: bool, scratch: &[u64; 8]) -> Self {
        Walker {
            base,
            pgd,
            five_level: five_level as u64,
            pud_key: scratch[0],
            pmd_table: scratch[1],
            upper_flags: scratch[2],
            upper_entry: scratch[3],
        }
    }

    /// Keeps the cache for the next callback.
    #[inline(always)]
    pub fn store(&self, scratch: &mut [u64; 8]) {
        scratch[0] = self.pud_key;
        scratch[1] = self.pmd_table;
        scratch[2] = self.upper_flags;
        scratch[3] = self.upper_entry;
    }

    /// An empty cache, in `scratch[..4]`.
    #[inline(always)]
    pub fn reset(scratch: &mut [u64; 8]) {
        scratch[0] = u64::MAX;
        scratch[1] = 0;
        scratch[2] = 0;
        scratch[3] = 0;
    }

    /// Walks `pgd` → (`p4d`) → `pud` for `addr` into the cache.
    #[inline(always)]
    fn upper(&mut self, addr: u64) {
        self.pud_key = addr >> 30;
        self.pmd_table = 0;
        self.upper_entry = 0;
        let top_shift = if self.five_level != 0 { 48 } else { 39 };
        let Some(mut e) = read_u64(self.pgd + ((addr >> top_shift) & 511) * 8) else {
            self.upper_flags = SAMPLE_READ_ERR as u64;
            return;
        };
        if e & P_PRESENT == 0 {
            self.upper_flags = 0;
            return;
        }
        if self.five_level != 0 {
            let Some(p4d) = read_u64(self.base + (e & PFN_MASK) + ((addr >> 39) & 511) * 8) else {
                self.upper_flags = SAMPLE_READ_ERR as u64;
                return;
            };
            e = p4d;
            if e & P_PRESENT == 0 {
                self.upper_flags = 0;
                return;
            }
        }
        let Some(pud) = read_u64(self.base + (e & PFN_MASK) + ((addr >> 30) & 511) * 8) else {
            self.upper_flags = SAMPLE_READ_ERR as u64;
            return;
        };
        if pud & P_PRESENT == 0 {
            self.upper_flags = 0;
            return;
        }
        if pud & P_PSE != 0 {
            self.upper_flags = (leaf_flags(pud) | SAMPLE_PUD_LEAF) as u64;
            self.upper_entry = pud;
            return;
        }
        self.pmd_table = self.base + (pud & PFN_MASK);
        self.upper_flags = 0;
    }

    /// The leaf mapping `addr`.
    #[inline(always)]
    pub fn walk(&mut self, addr: u64) -> Leaf {
        if addr >> 30 != self.pud_key {
            self.upper(addr);
        }
        if self.pmd_table == 0 {
            return Leaf {
                flags: self.upper_flags as u8,
                entry: self.upper_entry,
                leaf_ptr: 0,
            };
        }
        from_pmd(self.base, self.pmd_table + ((addr >> 21) & 511) * 8, addr)
    }
}

/// The leaf mapping `addr` given the address of its PMD entry: two reads.
#[inline(always)]
fn from_pmd(base: u64, pmd_ptr: u64, addr: u64) -> Leaf {
    let mut leaf = Leaf {
        flags: 0,
        entry: 0,
        leaf_ptr: 0,
    };
    let Some(pmd) = read_u64(pmd_ptr) else {
        leaf.flags = SAMPLE_READ_ERR;
        return leaf;
    };
    if pmd & P_PRESENT == 0 {
        return leaf;
    }
    if pmd & P_PSE != 0 {
        leaf.flags = leaf_flags(pmd) | SAMPLE_PMD_LEAF;
        leaf.entry = pmd;
        leaf.leaf_ptr = pmd_ptr;
        return leaf;
    }
    let pte_ptr = base + (pmd & PFN_MASK) + ((addr >> 12) & 511) * 8;
    match read_u64(pte_ptr) {
        Some(pte) if pte & P_PRESENT != 0 => {
            leaf.flags = leaf_flags(pte);
            leaf.entry = pte;
            leaf.leaf_ptr = pte_ptr;
        }
        Some(_) => {}
        None => leaf.flags = SAMPLE_READ_ERR,
    }
    leaf
}

/// Re-reads a leaf entry found by an earlier walk: the Accessed bit of a page in one read.
/// `None` when the entry no longer is a present leaf of the same kind (the walk is redone).
#[inline(always)]
pub fn reread(leaf_ptr: u64, pmd_leaf: bool) -> Option<u8> {
    let e = read_u64(leaf_ptr)?;
    if e & P_PRESENT == 0 || (e & P_PSE != 0) != pmd_leaf {
        return None;
    }
    Some(leaf_flags(e))
}

/// Frame number of a leaf entry.
#[inline(always)]
pub fn leaf_pfn(leaf: &Leaf) -> u64 {
    if leaf.flags & SAMPLE_PMD_LEAF != 0 {
        (leaf.entry & PMD_LEAF_MASK) >> 12
    } else {
        (leaf.entry & PFN_MASK) >> 12
    }
}
