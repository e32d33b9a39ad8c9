//! eBPF
