//! The access check: whether each sampled page was accessed since the last sample.
//! [`ebpf::EbpfOps`] implements the core's `Operations` with the
//! eBPF page-table walk, `process_madvise(MADV_COLD)` as mkold, and page-fault attribution.
pub mod ebpf;
pub mod folios;
pub mod mkold;

pub use ebpf::{EbpfOps, EbpfOpsOptions, FaultScope};
