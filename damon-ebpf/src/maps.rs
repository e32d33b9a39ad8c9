//! The maps shared by all programs; layouts in `damon_common`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use damon_common::{BPF_F_MMAPABLE, Control, MAX_TARGETS, ProbeOut, Slot, TargetSlot};

#[map]
pub static TARGETS: HashMap<u32, TargetSlot> = HashMap::with_max_entries(MAX_TARGETS, 0);
#[map]
pub static CONTROL: Array<Control> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map]
pub static SLOTS: Array<Slot> = Array::with_max_entries(MAX_TARGETS, BPF_F_MMAPABLE);
#[map]
pub static PROBE_OUT: Array<ProbeOut> = Array::with_max_entries(1, BPF_F_MMAPABLE);
