//! damon's kernel-side programs, one module per hook family.
//!
//! - `fault`: `exceptions:page_fault_user` tracepoint and the optional `perf_event` sampler:
//!   attribute a user access (a fault, or a sampled data address) to a monitored region.
//! - `walk`: the page-table walk that reads the Accessed bit of every sampling address.
//! - `probe`: start-up helpers (find a task's page-table root, read kernel memory for the
//!   calibration of the direct-map base).
#![no_std]
#![no_main]
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod fault;
mod globals;
mod maps;
mod probe;
mod regions;
mod walk;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
