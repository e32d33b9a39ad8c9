//! What can go wrong loading and driving the programs.
use crate::core::Pid;
use damon_common::{MAX_REGIONS, MAX_TARGETS};
use thiserror::Error;

use super::{chase::ChaseError, sys};

#[derive(Debug, Error)]
pub enum BpfError {
    #[error("loading the eBPF object failed")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error(
        "map {name} cannot be shared by mmap (flags {flags:#x}, value size {value_size}, expected {expected})"
    )]
    NotMappable {
        name: &'static str,
        flags: u32,
        value_size: u32,
        expected: usize,
    },
    #[error("all {MAX_TARGETS} target slots are in use")]
    NoFreeSlot,
    #[error("{pid} is not a process id a target can have")]
    InvalidPid { pid: Pid },
    #[error("process {pid} is not a target of this program set")]
    UnknownTarget { pid: Pid },
    #[error("process {pid} is already a target of this program set")]
    DuplicateTarget { pid: Pid },
    #[error("{count} regions exceed the {MAX_REGIONS} the programs can hold")]
    TooManyRegions { count: usize },
    #[error("the programs were loaded without a kernel layout and cannot sample")]
    NoLayout,
    #[error("finding the kernel's struct pid of process {pid}")]
    Pid {
        pid: Pid,
        #[source]
        source: Box<ChaseError>,
    },
    #[error(transparent)]
    Syscall(#[from] sys::SyscallError),
}
