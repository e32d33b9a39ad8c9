//! Start-up helpers, run once per process, not per sample.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use damon_common::PEEK_LEN;

use aya_log_ebpf::debug;

use crate::{
    globals,
    maps::{PEEK_OUT, PGD_OUT},
    walk::RawCtx,
};

/// `raw_tp`, run only through `BPF_PROG_TEST_RUN`: copies `PEEK_LEN` bytes of kernel memory at
/// arg0 into `PEEK_OUT`. Returns 0 on success, 1 when the read faults.
///
/// Used to calibrate the direct-map base (`page_offset_base`, not exported on most kernels).
/// The `raw_tracepoint` macro discards return values, hence the hand-written section.
#[unsafe(no_mangle)]
#[unsafe(link_section = "raw_tp")]
pub fn peek(ctx: *mut core::ffi::c_void) -> i32 {
    // Read the raw_tp argument straight from ctx: aya-ebpf 0.2.1's RawTracePointContext::arg()
    // reads through a zero-sized struct, a load LLVM is allowed to drop.
    let addr: u64 = unsafe { *(ctx as *const u64) };
    let Some(out) = PEEK_OUT.get_ptr_mut(0) else {
        return 2;
    };
    match unsafe { bpf_probe_read_kernel(addr as *const [u8; PEEK_LEN]) } {
        Ok(v) => {
            unsafe { *out = v };
            0
        }
        Err(_) => 1,
    }
}

/// `iter/task` on a link filtered to one pid: stores that task's `mm` and `mm->pgd` (the
/// page-table root, a direct-map address) into `PGD_OUT` = [found, mm, pgd].
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn task_pgd(ctx: *mut core::ffi::c_void) -> i32 {
    let task = unsafe { *(ctx as *const u64).add(1) };
    if task == 0 {
        return 0;
    }
    let Ok(mm) =
        (unsafe { bpf_probe_read_kernel((task + globals::task_mm_offset()) as *const u64) })
    else {
        return 0;
    };
    if mm == 0 {
        return 0; // an exiting thread
    }
    let Ok(pgd) = (unsafe { bpf_probe_read_kernel((mm + globals::mm_pgd_offset()) as *const u64) })
    else {
        return 0;
    };
    debug!(&RawCtx(ctx), "task_pgd: mm {:x} pgd {:x}", mm, pgd);
    for (i, v) in [(1, mm), (2, pgd), (0, 1)] {
        if let Some(p) = PGD_OUT.get_ptr_mut(i) {
            unsafe { *p = v };
        }
    }
    0
}
