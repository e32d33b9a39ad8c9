//! Read-only globals set by the loader (`EbpfLoader::set_global`). Being constants at load time,
//! the verifier prunes the paths they disable.

#[unsafe(no_mangle)]
static TASK_TGID_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static TASK_MM_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static MM_PGD_OFFSET: u64 = 0;
#[unsafe(no_mangle)]
static PAGE_OFFSET_BASE: u64 = 0;
#[unsafe(no_mangle)]
static PGTABLE_LEVELS: u64 = 4;
#[unsafe(no_mangle)]
static FAULT_IN_REGION_IS_ACCESS: u64 = 0;

// Volatile reads: without them LLVM folds the zero initialisers into the code and the
// loader's values are never read.
#[inline(always)]
fn read(v: &u64) -> u64 {
    unsafe { core::ptr::read_volatile(v) }
}

/// BTF offsets are bounded by a mask: the verifier refuses arithmetic on a trusted BTF pointer
/// (the iterator's `task`) with an unbounded register.
#[inline(always)]
pub fn task_tgid_offset() -> u64 {
    read(&TASK_TGID_OFFSET) & 0xffff
}
#[inline(always)]
pub fn task_mm_offset() -> u64 {
    read(&TASK_MM_OFFSET) & 0xffff
}
#[inline(always)]
pub fn mm_pgd_offset() -> u64 {
    read(&MM_PGD_OFFSET) & 0xffff
}
#[inline(always)]
pub fn page_offset_base() -> u64 {
    read(&PAGE_OFFSET_BASE)
}
#[inline(always)]
pub fn five_level_paging() -> bool {
    read(&PGTABLE_LEVELS) == 5
}
#[inline(always)]
pub fn fault_in_region_is_access() -> bool {
    read(&FAULT_IN_REGION_IS_ACCESS) != 0
}
