//! The maps shared by all programs; layouts in `damon_common`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use damon_common::{
    FaultCounts, FaultGen, MAX_TARGETS, PEEK_LEN, RegionTable, SampleTable, TargetSlot, WalkOutput,
};

#[map]
pub static TARGETS: HashMap<u32, TargetSlot> = HashMap::with_max_entries(MAX_TARGETS, 0);
#[map]
pub static REGIONS: Array<RegionTable> = Array::with_max_entries(MAX_TARGETS, 0);
#[map]
pub static SAMPLES: Array<SampleTable> = Array::with_max_entries(MAX_TARGETS, 0);
#[map]
pub static WALK_OUT: Array<WalkOutput> = Array::with_max_entries(MAX_TARGETS, 0);
#[map]
pub static FAULT_GEN: Array<FaultGen> = Array::with_max_entries(MAX_TARGETS, 0);
#[map]
pub static FAULT_COUNTS: Array<FaultCounts> = Array::with_max_entries(MAX_TARGETS, 0);
/// `peek` output: `PEEK_LEN` bytes of kernel memory.
#[map]
pub static PEEK_OUT: Array<[u8; PEEK_LEN]> = Array::with_max_entries(1, 0);
/// `task_pgd` output: [found, mm, pgd].
#[map]
pub static PGD_OUT: Array<u64> = Array::with_max_entries(3, 0);
