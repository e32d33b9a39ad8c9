//! One loaded set of damon's programs and maps (one per kdamond), and the sampling step that
//! drives it: user space writes each target's regions and next sampling pages into the
//! mmapped `SLOTS` table, one `BPF_PROG_TEST_RUN` of `sample` checks the sample in flight and
//! prepares the next one for every target, and user space reads the results from the same
//! memory. Dropping the set detaches and unloads everything (aya closes the fds).
use crate::core::Pid;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::{
    Ebpf,
    maps::HashMap,
    programs::{
        PerfEvent, RawTracePoint, TracePoint,
        perf_event::{PerfEventScope, SamplePolicy},
    },
};
use damon_common::{
    Control, MAX_REGIONS, MAX_TARGETS, PID_SELF, Slot, TARGET_ALIVE, TARGET_NO_MM, TARGET_READ_ERR,
    TARGET_REAPED, TargetSlot, maps, programs,
};

use super::{
    BpfError, KernelLayout, PerfSampler, chase,
    loader::{self, LoggerThread},
    marker::Marker,
    peek::Peek,
    shared::Shared,
    sys,
};
use crate::core::AddrRange;

/// What the slot of the layout validation (our own page tables, found through `PID_SELF`)
/// is registered as: no process has this pid, so no target can clash with it.
const SELF_SLOT: Pid = Pid(-1);

/// Which optional programs to attach.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgramOptions {
    /// Count page faults per region (the `exceptions:page_fault_user` tracepoint).
    pub fault_tracepoint: bool,
    /// Any fault in a region counts as an access to it, not only one on the sampled page.
    pub fault_in_region_is_access: bool,
    /// Attach the `perf_event` sampler to this event of each target.
    pub perf_sampler: Option<PerfSampler>,
}

/// What a sampling run does: check the sample in flight, prepare the next one, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub check: bool,
    pub prepare: bool,
}

/// A target's address space as the last run found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Not walked yet.
    Unknown,
    Alive,
    /// No address space: the process exited (a zombie), or it is a kernel thread.
    NoMm,
    /// The process was reaped.
    Reaped,
    /// A kernel read failed before the walk (a racing exit).
    ReadError,
}

/// A loaded program set. Slots map targets to table entries.
pub struct MonitorPrograms {
    // Field order is drop order: the mappings go before the object that owns the maps.
    control: Shared<Control>,
    slots: Shared<Slot>,
    peek: Peek,
    /// The `sample` program's fd (owned by `ebpf`), when loaded with a layout.
    sample_fd: Option<RawFd>,
    layout: Option<KernelLayout>,
    pids: [Option<Pid>; MAX_TARGETS as usize],
    perf_sampler: Option<PerfSampler>,
    _logger: Option<LoggerThread>,
    ebpf: Ebpf,
}

impl MonitorPrograms {
    /// Loads the programs. With a `layout` of the running kernel the sampling program is
    /// available; without one only fault attribution is (it needs no calibration).
    pub fn load(layout: Option<&KernelLayout>, opts: ProgramOptions) -> Result<Self, BpfError> {
        let mut ebpf = loader::load_object(MAX_TARGETS)?;
        let logger = LoggerThread::start(&mut ebpf);
        let peek = Peek::load(&mut ebpf)?;
        let mut sample_fd = None;
        if layout.is_some() {
            let p: &mut RawTracePoint = loader::program_mut(&mut ebpf, programs::SAMPLE)?;
            p.load().map_err(loader::prog_err(programs::SAMPLE))?;
            sample_fd = Some(
                p.fd()
                    .map_err(loader::prog_err(programs::SAMPLE))?
                    .as_fd()
                    .as_raw_fd(),
            );
        }
        if opts.fault_tracepoint {
            super::probe::ensure_tracefs();
            let tp: &mut TracePoint = loader::program_mut(&mut ebpf, programs::PAGE_FAULT_USER)?;
            tp.load()
                .map_err(loader::prog_err(programs::PAGE_FAULT_USER))?;
            tp.attach("exceptions", "page_fault_user")
                .map_err(loader::prog_err(programs::PAGE_FAULT_USER))?;
        }
        if opts.perf_sampler.is_some() {
            let pe: &mut PerfEvent = loader::program_mut(&mut ebpf, programs::PERF_SAMPLE)?;
            pe.load().map_err(loader::prog_err(programs::PERF_SAMPLE))?;
        }
        let control: Shared<Control> = loader::shared(&ebpf, maps::CONTROL)?;
        let slots: Shared<Slot> = loader::shared(&ebpf, maps::SLOTS)?;
        let c = control.get(0).ok_or(BpfError::Missing {
            kind: "map entry",
            name: maps::CONTROL,
        })?;
        // SAFETY: entry 0 of our mapping; no program runs yet.
        unsafe {
            if let Some(l) = layout {
                (*c).kernel = l.kernel_info();
            }
            (*c).fault_in_region = opts.fault_in_region_is_access as u32;
            (*c).active = 0;
        }
        Ok(Self {
            control,
            slots,
            peek,
            sample_fd,
            layout: layout.copied(),
            pids: [None; MAX_TARGETS as usize],
            perf_sampler: opts.perf_sampler,
            _logger: logger,
            ebpf,
        })
    }

    fn control(&self) -> *mut Control {
        // Entry 0 exists: checked at load.
        self.control.get(0).unwrap_or(std::ptr::null_mut())
    }

    fn slot_ptr(&self, slot: u32) -> Result<*mut Slot, BpfError> {
        self.slots.get(slot).ok_or_else(|| BpfError::Missing {
            kind: "map entry",
            name: maps::SLOTS,
        })
    }

    /// Registers process `pid` (a tgid), whose pidfd `pidfd` the caller keeps open for as
    /// long as the target is registered (it keeps the kernel's `struct pid` alive), and
    /// returns its slot.
    pub fn add_target(&mut self, pid: Pid, pidfd: RawFd) -> Result<u32, BpfError> {
        let key = pid.tgid_key().ok_or(BpfError::InvalidPid { pid })?;
        if self.slot_of(pid).is_some() {
            return Err(BpfError::DuplicateTarget { pid });
        }
        let pid_ptr = match &self.layout {
            Some(l) => {
                chase::pid_of_pidfd(&self.peek, l, pidfd, pid).map_err(|e| BpfError::Pid {
                    pid,
                    source: Box::new(e),
                })?
            }
            None => 0,
        };
        let slot = self.claim(pid, pid_ptr)?;
        let mut targets: HashMap<_, u32, TargetSlot> = self.map_mut(maps::TARGETS)?;
        if let Err(e) = targets.insert(key, TargetSlot { slot, flags: 0 }, 0) {
            self.release(slot);
            return Err(BpfError::Map {
                name: maps::TARGETS,
                source: e,
            });
        }
        if let Some(sampler) = self.perf_sampler {
            let pe: &mut PerfEvent = loader::program_mut(&mut self.ebpf, programs::PERF_SAMPLE)?;
            pe.attach(
                sampler.config(),
                PerfEventScope::OneProcess {
                    pid: key,
                    cpu: None,
                },
                SamplePolicy::Period(1),
                true,
            )
            .map_err(loader::prog_err(programs::PERF_SAMPLE))?;
        }
        Ok(slot)
    }

    /// Takes a free slot for `pid` and resets its tables.
    fn claim(&mut self, pid: Pid, pid_ptr: u64) -> Result<u32, BpfError> {
        let slot = self
            .pids
            .iter()
            .position(Option::is_none)
            .ok_or(BpfError::NoFreeSlot)? as u32;
        let s = self.slot_ptr(slot)?;
        let c = self.control();
        // SAFETY: our mapping; the slot is inactive, so no program reads it but the fault
        // programs, which only find it through TARGETS (not yet inserted).
        unsafe {
            (*s).nr_regions = 0;
            (*s).in_flight = 0;
            (*s).state = 0;
            (*c).pid[slot as usize] = pid_ptr;
            if self.layout.is_some() {
                (*c).active |= 1 << slot;
            }
        }
        self.pids[slot as usize] = Some(pid);
        Ok(slot)
    }

    fn release(&mut self, slot: u32) {
        let c = self.control();
        // SAFETY: our mapping.
        unsafe {
            (*c).active &= !(1 << slot);
            (*c).pid[slot as usize] = 0;
        }
        self.pids[slot as usize] = None;
    }

    /// Forgets process `pid`; its slot is free for another target.
    pub fn remove_target(&mut self, pid: Pid) -> Result<(), BpfError> {
        let slot = self.slot_of(pid).ok_or(BpfError::UnknownTarget { pid })?;
        let mut targets: HashMap<_, u32, TargetSlot> = self.map_mut(maps::TARGETS)?;
        // Already gone is fine: removal is idempotent. Registered pids have keys.
        if let Some(key) = pid.tgid_key() {
            let _ = targets.remove(&key);
        }
        self.release(slot);
        Ok(())
    }

    pub fn slot_of(&self, pid: Pid) -> Option<u32> {
        self.pids
            .iter()
            .position(|s| *s == Some(pid))
            .map(|s| s as u32)
    }

    /// Writes the regions of `slot` and zeroes its fault counters (region indices change
    /// meaning). Call only while nothing is in flight for the slot: a check compares the
    /// sample in flight with these regions' indices.
    pub fn set_regions(
        &mut self,
        slot: u32,
        regions: impl ExactSizeIterator<Item = AddrRange>,
    ) -> Result<(), BpfError> {
        if regions.len() > MAX_REGIONS as usize {
            return Err(BpfError::TooManyRegions {
                count: regions.len(),
            });
        }
        let s = self.slot_ptr(slot)?;
        // SAFETY: our mapping; indices are below MAX_REGIONS. The fault programs may read the
        // table meanwhile and attribute a fault to a neighbour: one miscounted fault.
        unsafe {
            (*s).nr_regions = 0;
            let n = regions.len();
            for (i, r) in regions.enumerate() {
                (*s).start[i] = r.start;
                (*s).end[i] = r.end;
            }
            std::ptr::write_bytes(&raw mut (*s).fault_count, 0, 1);
            (*s).in_flight = 0;
            (*s).nr_regions = n as u32;
        }
        Ok(())
    }

    /// Writes the pages the next prepare of `slot` samples, one per region, and the seed of
    /// the alternatives it may try instead.
    pub fn set_next(
        &mut self,
        slot: u32,
        seed: u64,
        pages: impl ExactSizeIterator<Item = u64>,
    ) -> Result<(), BpfError> {
        if pages.len() > MAX_REGIONS as usize {
            return Err(BpfError::TooManyRegions { count: pages.len() });
        }
        let s = self.slot_ptr(slot)?;
        // SAFETY: our mapping, indices below MAX_REGIONS; programs read `next` only during
        // our own runs.
        unsafe {
            (*s).seed = seed;
            for (i, p) in pages.enumerate() {
                (*s).next[i] = p;
            }
        }
        Ok(())
    }

    /// One run of the sampling program over every registered target.
    pub fn run(&mut self, step: Step) -> Result<(), BpfError> {
        let fd = self.sample_fd.ok_or(BpfError::NoLayout)?;
        let c = self.control();
        // SAFETY: our mapping; read by the program during the call below.
        unsafe {
            (*c).step = if step.check {
                damon_common::STEP_CHECK
            } else {
                0
            } | if step.prepare {
                damon_common::STEP_PREPARE
            } else {
                0
            };
        }
        sys::test_run_raw_tp(fd, &[])?;
        Ok(())
    }

    /// The state of `slot`'s address space at the last run.
    pub fn state(&self, slot: u32) -> TargetState {
        let Ok(s) = self.slot_ptr(slot) else {
            return TargetState::Unknown;
        };
        // SAFETY: our mapping; written only during our runs.
        match unsafe { (*s).state } {
            TARGET_ALIVE => TargetState::Alive,
            TARGET_NO_MM => TargetState::NoMm,
            TARGET_REAPED => TargetState::Reaped,
            TARGET_READ_ERR => TargetState::ReadError,
            _ => TargetState::Unknown,
        }
    }

    /// What the last check found for each region of `slot` (`CHECK_*` flags), into `out`.
    pub fn checked(&self, slot: u32, out: &mut [u8]) -> Result<(), BpfError> {
        let s = self.slot_ptr(slot)?;
        let n = out.len().min(MAX_REGIONS as usize);
        // SAFETY: our mapping; `check` is written only during our runs.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const (*s).check).cast::<u8>(), out.as_mut_ptr(), n)
        };
        Ok(())
    }

    /// The sample in flight of region `i` of `slot`: its page, `SAMPLE_*` flags and
    /// `Slot::pending_folio` word.
    pub fn pending(&self, slot: u32, i: usize) -> Result<(u64, u8, u32), BpfError> {
        let s = self.slot_ptr(slot)?;
        let i = i.min(MAX_REGIONS as usize - 1);
        // SAFETY: our mapping, index bounded; written only during our runs.
        Ok(unsafe {
            (
                (*s).pending[i],
                (*s).pending_flags[i],
                (*s).pending_folio[i],
            )
        })
    }

    /// Raw leaf entry of sample 0 at the last prepare of `slot`.
    pub fn leaf0(&self, slot: u32) -> Result<u64, BpfError> {
        let s = self.slot_ptr(slot)?;
        // SAFETY: as above.
        Ok(unsafe { (*s).leaf0 })
    }

    /// Page faults per region of process `pid` since its regions were set.
    pub fn faults(&self, pid: Pid, nr_regions: usize) -> Result<Vec<u64>, BpfError> {
        let slot = self.slot_of(pid).ok_or(BpfError::UnknownTarget { pid })?;
        let s = self.slot_ptr(slot)?;
        let n = nr_regions.min(MAX_REGIONS as usize);
        // SAFETY: our mapping; the fault programs add to these concurrently, so each is read
        // with a volatile load.
        Ok((0..n)
            .map(|i| unsafe { std::ptr::read_volatile(&raw const (*s).fault_count[i]) })
            .collect())
    }

    /// Zeroes the fault counters of `slot`.
    pub fn reset_counters(&mut self, slot: u32) -> Result<(), BpfError> {
        let s = self.slot_ptr(slot)?;
        // SAFETY: our mapping; a fault counted meanwhile may survive the reset.
        unsafe { std::ptr::write_bytes(&raw mut (*s).fault_count, 0, 1) };
        Ok(())
    }

    /// Runs completed by the sampling program.
    pub fn runs(&self) -> u64 {
        // SAFETY: our mapping.
        unsafe { (*self.control()).runs }
    }

    /// Checks `layout` (the one loaded) against our own pages with the production program: the
    /// walk of a marker page must find the frame `/proc/self/pagemap` reports, and the
    /// `struct page` it points at must describe that page (anonymous, at its index).
    pub fn validate_layout(&mut self) -> Result<(), super::calibrate::LayoutError> {
        use super::calibrate::LayoutError;
        let layout = self.layout.ok_or(LayoutError::Bpf(BpfError::NoLayout))?;
        let marker = Marker::new().map_err(LayoutError::Page)?;
        let expected = marker
            .pfn()
            .map_err(LayoutError::Pagemap)?
            .ok_or(LayoutError::NoFrame)?;
        let slot = self.claim(SELF_SLOT, PID_SELF).map_err(LayoutError::Bpf)?;
        let walked = (|| {
            let page = AddrRange::new(marker.addr(), marker.addr() + 4096);
            self.set_regions(slot, [page].into_iter())?;
            self.set_next(slot, 0, [marker.addr()].into_iter())?;
            self.run(Step {
                check: false,
                prepare: true,
            })?;
            Ok::<_, BpfError>((self.leaf0(slot)? & 0x000f_ffff_ffff_f000) >> 12)
        })();
        self.release(slot);
        let walked = walked.map_err(LayoutError::Bpf)?;
        if walked != expected {
            return Err(LayoutError::WalkMismatch { walked, expected });
        }
        let page = layout
            .vmemmap_base
            .wrapping_add(expected * layout.page_size);
        let mismatch = |what| LayoutError::PageMismatch {
            vmemmap_base: layout.vmemmap_base,
            addr: marker.addr(),
            what,
        };
        let read = |off: u64| {
            self.peek
                .u64(page + off)
                .map_err(LayoutError::Bpf)?
                .ok_or(mismatch("unreadable"))
        };
        if read(layout.page_index)? != marker.addr() >> 12 {
            return Err(mismatch("index"));
        }
        if read(layout.page_mapping)? & 1 == 0 {
            return Err(mismatch("not anonymous"));
        }
        Ok(())
    }

    /// Time the sampling program has run and its runs, when the kernel keeps BPF statistics
    /// (`BPF_ENABLE_STATS` held by some process, or `kernel.bpf_stats_enabled`).
    pub fn sample_run_stats(&self) -> Option<(std::time::Duration, u64)> {
        let info = self.ebpf.program(programs::SAMPLE)?.info().ok()?;
        (info.run_count() > 0).then(|| (info.run_time(), info.run_count()))
    }

    /// Instructions the verifier went through to accept the sampling program (Linux 5.16+):
    /// what its load costs.
    pub fn sample_verified_insns(&self) -> Option<u32> {
        self.ebpf
            .program(programs::SAMPLE)?
            .info()
            .ok()?
            .verified_instruction_count()
    }

    /// Kernel ids of the programs this set loaded, to check that dropping it unloads them.
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok())
            .map(|i| i.id())
            .collect()
    }

    fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, BpfError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        loader::map_mut(&mut self.ebpf, name)
    }
}
