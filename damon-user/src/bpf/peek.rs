//! Reading kernel memory at start-up through the `probe` program: the calibration of the
//! kernel layout and the lookup of a target's `struct pid` follow kernel pointers with it, one
//! `BPF_PROG_TEST_RUN` per read (about a microsecond). Never used per sample.
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::{Ebpf, programs::RawTracePoint};
use damon_common::{PROBE_CURRENT, PROBE_PEEK, PROBE_WORDS, ProbeOut, maps, programs};

use super::{BpfError, loader, shared::Shared, sys};

/// The loaded `probe` program and its output table.
pub struct Peek {
    fd: RawFd,
    out: Shared<ProbeOut>,
}

impl Peek {
    /// Loads the `probe` program of `ebpf`. The returned value borrows nothing, but its fd
    /// belongs to `ebpf`, which must outlive it.
    pub(crate) fn load(ebpf: &mut Ebpf) -> Result<Self, BpfError> {
        let p: &mut RawTracePoint = loader::program_mut(ebpf, programs::PROBE)?;
        p.load().map_err(loader::prog_err(programs::PROBE))?;
        let fd = p
            .fd()
            .map_err(loader::prog_err(programs::PROBE))?
            .as_fd()
            .as_raw_fd();
        Ok(Self {
            fd,
            out: loader::shared(ebpf, maps::PROBE_OUT)?,
        })
    }

    fn run(&self, op: u64, addr: u64) -> Result<Option<[u64; PROBE_WORDS]>, BpfError> {
        if sys::test_run_raw_tp(self.fd, &[op, addr])? != 0 {
            return Ok(None);
        }
        let out = self.out.get(0).ok_or(BpfError::Missing {
            kind: "map entry",
            name: maps::PROBE_OUT,
        })?;
        // SAFETY: entry 0 exists; only our own (synchronous) probe runs write it.
        Ok(Some(unsafe { std::ptr::read_volatile(out) }.words))
    }

    /// `PROBE_WORDS` words of kernel memory at `addr`; `None` when the read faults.
    pub fn words(&self, addr: u64) -> Result<Option<[u64; PROBE_WORDS]>, BpfError> {
        self.run(PROBE_PEEK, addr)
    }

    /// The u64 at `addr`.
    pub fn u64(&self, addr: u64) -> Result<Option<u64>, BpfError> {
        Ok(self.words(addr)?.map(|w| w[0]))
    }

    /// The i32 at `addr` (little-endian).
    pub fn i32(&self, addr: u64) -> Result<Option<i32>, BpfError> {
        Ok(self.words(addr)?.map(|w| w[0] as u32 as i32))
    }

    /// Our own `task_struct` (the calling thread's).
    pub fn current_task(&self) -> Result<u64, BpfError> {
        self.run(PROBE_CURRENT, 0)?
            .map(|w| w[0])
            .ok_or(BpfError::Missing {
                kind: "program result",
                name: programs::PROBE,
            })
    }
}

/// A program set loaded only to peek (calibration): one slot, no sampling program.
pub struct PeekSet {
    pub peek: Peek,
    _ebpf: Ebpf,
}

impl PeekSet {
    pub fn load() -> Result<Self, BpfError> {
        let mut ebpf = loader::load_object(1)?;
        let peek = Peek::load(&mut ebpf)?;
        Ok(Self { peek, _ebpf: ebpf })
    }
}
