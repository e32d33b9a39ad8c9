//! damon's kernel-side programs, one module per hook family.
//!
//! - `sample`: the access check: one run checks the sample in flight of every target and
//!   prepares the next one (`pagetable` walks page tables for it).
//! - `fault`: `exceptions:page_fault_user` tracepoint and the optional `perf_event` sampler:
//!   attribute a user access (a fault, or a sampled data address) to a monitored region.
//! - `probe`: the start-up helper that reads kernel memory for the calibration of the layout.
#![no_std]
#![no_main]
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod fault;
mod maps;
mod pagetable;
mod probe;
mod regions;
mod sample;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
