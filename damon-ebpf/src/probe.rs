//! Start-up helper, run through `BPF_PROG_TEST_RUN` a few times per process (calibration of
//! the kernel layout) and per target (finding its `struct pid`), never per sample.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use aya_log_ebpf::debug;
use damon_common::{PROBE_CURRENT, PROBE_PEEK, PROBE_WORDS};

use crate::maps::PROBE_OUT;

/// `raw_tp` with args (op, addr): `PROBE_PEEK` copies `PROBE_WORDS` words of kernel memory at
/// `addr` into `PROBE_OUT`; `PROBE_CURRENT` stores the calling task's pointer there. Returns 0,
/// or 1 when the read faults.
///
/// The `raw_tracepoint` macro discards return values, hence the hand-written section.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn probe(ctx: *mut core::ffi::c_void) -> i32 {
    // Read the raw_tp arguments straight from ctx: aya-ebpf 0.2.1's RawTracePointContext::arg()
    // reads through a zero-sized struct, a load LLVM is allowed to drop.
    let (op, addr) = unsafe { (*(ctx as *const u64), *(ctx as *const u64).add(1)) };
    let Some(out) = PROBE_OUT.get_ptr_mut(0) else {
        return 2;
    };
    match op {
        PROBE_PEEK => match unsafe { bpf_probe_read_kernel(addr as *const [u64; PROBE_WORDS]) } {
            Ok(v) => {
                unsafe { (*out).words = v };
                0
            }
            Err(_) => 1,
        },
        PROBE_CURRENT => {
            let task = unsafe { bpf_get_current_task() };
            // Start-up only (a few runs per process): a record that shows kernel-side logs
            // reach user space.
            debug!(&RawCtx(ctx), "probe: current task {:x}", task);
            unsafe { (*out).words[0] = task };
            0
        }
        _ => 2,
    }
}

/// aya-log needs an `EbpfContext`; this hand-written section has only a raw pointer.
struct RawCtx(*mut core::ffi::c_void);

impl aya_ebpf::EbpfContext for RawCtx {
    fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.0
    }
}
