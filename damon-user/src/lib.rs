//! damon: DAMON-style data access monitoring for Linux, rebuilt as eBPF programs plus user
//! space, for stock kernels including those built without DAMON's virtual-address operations.
//!
//! - [`core`]: DAMON's monitoring model: kdamonds, contexts, targets, adaptive regions.
//! - [`bpf`]: loading and driving the eBPF programs.
pub mod bpf;
pub mod core;
