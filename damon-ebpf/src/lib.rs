#![no_std]
// Present so that host builds (`cargo check --workspace`) have a library target.
