//! `damon workload`
