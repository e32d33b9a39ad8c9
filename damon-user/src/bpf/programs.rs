//! One loaded set of damon's programs and maps.
//!
//! Each kdamond loads its own set, so kdamonds never share slots or race on tables; dropping
//! the set detaches and unloads everything (aya closes the fds), which is the cleanup the
//! tests check with aya's loaded-programs listing.
use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData},
    programs::{
        Iter, PerfEvent, RawTracePoint, RawTracePointRunOptions, TestRun, TracePoint,
        perf_event::{PerfEventScope, SamplePolicy},
    },
};
use damon_common::{
    FaultCounts, FaultGen, MAX_REGIONS, MAX_TARGETS, PEEK_LEN, RegionTable, SampleTable,
    TargetSlot, WalkOutput, globals, maps, programs,
};
use thiserror::Error;

use super::{EBPF_OBJECT, KernelLayout, PerfSampler, sys};

#[derive(Debug, Error)]
pub enum BpfError {
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
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
    #[error("all {MAX_TARGETS} target slots are in use")]
    NoFreeSlot,
    #[error("process {pid} is not a target of this program set")]
    UnknownTarget { pid: i32 },
    #[error("the page tables of process {pid} were not walked: it has no address space left")]
    NotWalked { pid: i32 },
    #[error("{count} regions exceed the {MAX_REGIONS} the programs can hold")]
    TooManyRegions { count: usize },
    #[error(transparent)]
    Syscall(#[from] sys::SyscallError),
    #[error("reading the iterator failed: {0}")]
    Iterator(#[source] std::io::Error),
    #[error("the kernel BTF cannot be loaded: {0}")]
    Btf(#[source] aya::BtfError),
}

fn prog_err(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> BpfError {
    move |source| BpfError::Program { name, source }
}
fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

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

/// A loaded program set. Slots map targets to table entries.
pub struct MonitorPrograms {
    ebpf: Ebpf,
    slots: [Option<u32>; MAX_TARGETS as usize],
    perf_sampler: Option<PerfSampler>,
    walk_path: Option<WalkPath>,
    /// Reused for every `set_samples`: the sampling loop allocates nothing per sample.
    scratch: Box<SampleTable>,
    /// Per slot: the walk iterator's link to the target (made once, run at every walk), and
    /// the target's page-table root for the `TestRun` path.
    walkers: [Walker; MAX_TARGETS as usize],
    /// Forwards kernel-side log records while the set is loaded; stopped on drop.
    _logger: Option<LoggerThread>,
}

/// What a slot's walks reuse.
#[derive(Default)]
struct Walker {
    link: Option<std::os::fd::OwnedFd>,
    pgd: u64,
    /// `WalkOutput::walks` after the last walk.
    walks: u32,
}

/// How the page-table walk is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkPath {
    /// `iter/task_vma` on a pid-filtered link: the target's mmap lock is held (Linux 5.12+).
    TaskVma,
    /// `BPF_PROG_TEST_RUN` of a raw_tp program with the target's page-table root: lock-free.
    TestRun,
}

fn load_walker(ebpf: &mut Ebpf) -> Result<WalkPath, BpfError> {
    let btf = aya::Btf::from_sys_fs().map_err(BpfError::Btf)?;
    let it: &mut Iter = program_mut(ebpf, programs::TASK_PGD)?;
    it.load("task", &btf)
        .map_err(prog_err(programs::TASK_PGD))?;
    let raw: &mut RawTracePoint = program_mut(ebpf, programs::WALK_TEST_RUN)?;
    raw.load().map_err(prog_err(programs::WALK_TEST_RUN))?;
    let it: &mut Iter = program_mut(ebpf, programs::WALK_TASK_VMA)?;
    match it.load("task_vma", &btf) {
        Ok(()) => Ok(WalkPath::TaskVma),
        Err(e) => {
            log::info!(
                "iter/task_vma unavailable ({e}); walking page tables through BPF_PROG_TEST_RUN"
            );
            Ok(WalkPath::TestRun)
        }
    }
}

impl MonitorPrograms {
    /// Loads the programs. With a `layout` of the running kernel the page-table walk is
    /// available; without one only fault attribution is (it needs no calibration).
    pub fn load(layout: Option<&KernelLayout>, opts: ProgramOptions) -> Result<Self, BpfError> {
        let mut ebpf = load_object(
            layout.unwrap_or(&KernelLayout::UNKNOWN),
            opts.fault_in_region_is_access,
        )?;
        let logger = LoggerThread::start(&mut ebpf);
        let mut walk_path = None;
        if layout.is_some() {
            walk_path = Some(load_walker(&mut ebpf)?);
        }
        if opts.fault_tracepoint {
            super::probe::ensure_tracefs();
            let tp: &mut TracePoint = program_mut(&mut ebpf, programs::PAGE_FAULT_USER)?;
            tp.load().map_err(prog_err(programs::PAGE_FAULT_USER))?;
            tp.attach("exceptions", "page_fault_user")
                .map_err(prog_err(programs::PAGE_FAULT_USER))?;
        }
        if opts.perf_sampler.is_some() {
            let pe: &mut PerfEvent = program_mut(&mut ebpf, programs::PERF_SAMPLE)?;
            pe.load().map_err(prog_err(programs::PERF_SAMPLE))?;
        }
        Ok(Self {
            ebpf,
            slots: [None; MAX_TARGETS as usize],
            perf_sampler: opts.perf_sampler,
            walk_path,
            scratch: zeroed_box(),
            walkers: std::array::from_fn(|_| Walker::default()),
            _logger: logger,
        })
    }

    /// Registers process `pid` (a tgid) and returns its slot.
    pub fn add_target(&mut self, pid: i32) -> Result<u32, BpfError> {
        if let Some(slot) = self.slot_of(pid) {
            return Ok(slot);
        }
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(BpfError::NoFreeSlot)? as u32;
        self.set_regions(slot, &[])?;
        // A slot's walk counter carries on from its previous target.
        self.walkers[slot as usize].walks = self.walk_output(slot)?.walks;
        let mut targets: HashMap<_, u32, TargetSlot> = self.map_mut(maps::TARGETS)?;
        targets
            .insert(pid as u32, TargetSlot { slot, flags: 0 }, 0)
            .map_err(map_err(maps::TARGETS))?;
        self.slots[slot as usize] = Some(pid as u32);
        if let Some(sampler) = self.perf_sampler {
            let pe: &mut PerfEvent = program_mut(&mut self.ebpf, programs::PERF_SAMPLE)?;
            pe.attach(
                sampler.config(),
                PerfEventScope::OneProcess {
                    pid: pid as u32,
                    cpu: None,
                },
                SamplePolicy::Period(1),
                true,
            )
            .map_err(prog_err(programs::PERF_SAMPLE))?;
        }
        Ok(slot)
    }

    /// Forgets process `pid`; its slot is free for another target.
    pub fn remove_target(&mut self, pid: i32) -> Result<(), BpfError> {
        let slot = self.slot_of(pid).ok_or(BpfError::UnknownTarget { pid })?;
        let mut targets: HashMap<_, u32, TargetSlot> = self.map_mut(maps::TARGETS)?;
        // Already gone is fine: removal is idempotent.
        let _ = targets.remove(&(pid as u32));
        self.slots[slot as usize] = None;
        self.walkers[slot as usize] = Walker::default();
        Ok(())
    }

    pub fn slot_of(&self, pid: i32) -> Option<u32> {
        self.slots
            .iter()
            .position(|s| *s == Some(pid as u32))
            .map(|s| s as u32)
    }

    /// Writes the regions of `slot` and zeroes its counters (region indices change meaning).
    pub fn set_regions(&mut self, slot: u32, regions: &[(u64, u64)]) -> Result<(), BpfError> {
        if regions.len() > MAX_REGIONS as usize {
            return Err(BpfError::TooManyRegions {
                count: regions.len(),
            });
        }
        let mut table: Box<RegionTable> = zeroed_box();
        table.nr_regions = regions.len() as u32;
        for (i, &(s, e)) in regions.iter().enumerate() {
            table.start[i] = s;
            table.end[i] = e;
        }
        // Counters first: a fault landing between the two writes is counted against the new
        // layout only, never against a stale index.
        self.reset_counters(slot)?;
        self.walkers[slot as usize].pgd = 0;
        let mut arr: Array<_, RegionTable> = self.map_mut(maps::REGIONS)?;
        arr.set(slot, table.as_ref(), 0)
            .map_err(map_err(maps::REGIONS))
    }

    /// Writes the sampling addresses of `slot` for sample `generation`.
    pub fn set_samples(
        &mut self,
        slot: u32,
        generation: u32,
        addrs: &[u64],
    ) -> Result<(), BpfError> {
        if addrs.len() > MAX_REGIONS as usize {
            return Err(BpfError::TooManyRegions { count: addrs.len() });
        }
        // Entries past `nr_samples` are never read, so the scratch table is reused as is.
        let t = &mut self.scratch;
        t.generation = generation;
        t.nr_samples = addrs.len() as u32;
        t.addr[..addrs.len()].copy_from_slice(addrs);
        let name = maps::SAMPLES;
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or(BpfError::Missing { kind: "map", name })?;
        let mut arr: Array<_, SampleTable> = Array::try_from(m).map_err(map_err(name))?;
        arr.set(slot, t.as_ref(), 0).map_err(map_err(name))
    }

    /// Zeroes the fault counters and stamps of `slot`.
    pub fn reset_counters(&mut self, slot: u32) -> Result<(), BpfError> {
        let counts: Box<FaultCounts> = zeroed_box();
        let mut arr: Array<_, FaultCounts> = self.map_mut(maps::FAULT_COUNTS)?;
        arr.set(slot, counts.as_ref(), 0)
            .map_err(map_err(maps::FAULT_COUNTS))?;
        let stamps: Box<FaultGen> = zeroed_box();
        let mut arr: Array<_, FaultGen> = self.map_mut(maps::FAULT_GEN)?;
        arr.set(slot, stamps.as_ref(), 0)
            .map_err(map_err(maps::FAULT_GEN))
    }

    /// Page faults per region of process `pid` since its regions were set or its counters reset.
    pub fn faults(&self, pid: i32, nr_regions: usize) -> Result<Vec<u64>, BpfError> {
        let slot = self.slot_of(pid).ok_or(BpfError::UnknownTarget { pid })?;
        let arr: Array<_, FaultCounts> = self.map(maps::FAULT_COUNTS)?;
        let counts = arr.get(&slot, 0).map_err(map_err(maps::FAULT_COUNTS))?;
        Ok(counts[..nr_regions.min(MAX_REGIONS as usize)].to_vec())
    }

    fn walk_output(&self, slot: u32) -> Result<WalkOutput, BpfError> {
        let arr: Array<_, WalkOutput> = self.map(maps::WALK_OUT)?;
        arr.get(&slot, 0).map_err(map_err(maps::WALK_OUT))
    }

    /// The walk path in use, `None` when loaded without a kernel layout.
    pub fn walk_path(&self) -> Option<WalkPath> {
        self.walk_path
    }

    /// Walks the page tables of process `pid` at the sampling addresses of its slot and
    /// returns what the programs recorded.
    pub fn walk(&mut self, pid: i32) -> Result<WalkOutput, BpfError> {
        let slot = self.slot_of(pid).ok_or(BpfError::UnknownTarget { pid })?;
        match self.walk_path {
            Some(WalkPath::TaskVma) => {
                if self.walkers[slot as usize].link.is_none() {
                    let fd = self.iter_fd(programs::WALK_TASK_VMA)?;
                    self.walkers[slot as usize].link =
                        Some(sys::iter_link_for_pid(fd, pid as u32)?);
                }
                let Some(link) = &self.walkers[slot as usize].link else {
                    return Err(BpfError::UnknownTarget { pid });
                };
                let mut f = sys::iter_create(link)?;
                let mut sink = [0u8; 64];
                // The program prints nothing; reading runs it. It stops the iteration after
                // the walk, which read() reports as EAGAIN.
                loop {
                    match f.read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                        Err(e) => return Err(BpfError::Iterator(e)),
                    }
                }
            }
            Some(WalkPath::TestRun) => {
                // The root of a process's page tables changes only at exec (a new mm); it is
                // looked up again whenever the regions change, at least once an aggregation.
                if self.walkers[slot as usize].pgd == 0 {
                    self.walkers[slot as usize].pgd =
                        super::layout::task_pgd(&self.ebpf, pid as u32)?
                            .ok_or(BpfError::UnknownTarget { pid })?;
                }
                self.walk_test_run(self.walkers[slot as usize].pgd, slot)?;
            }
            None => {
                return Err(BpfError::Missing {
                    kind: "program",
                    name: programs::WALK_TASK_VMA,
                });
            }
        }
        let out = self.walk_output(slot)?;
        let walker = &mut self.walkers[slot as usize];
        if out.walks == walker.walks {
            // The program ran no walk: the process had no address space left (it is exiting).
            return Err(BpfError::NotWalked { pid });
        }
        walker.walks = out.walks;
        Ok(out)
    }

    /// Walks `slot` from page-table root `pgd` through `BPF_PROG_TEST_RUN`. Returns the number
    /// of young samples.
    pub fn walk_test_run(&self, pgd: u64, slot: u32) -> Result<u32, BpfError> {
        let p: &RawTracePoint = program(&self.ebpf, programs::WALK_TEST_RUN)?;
        let mut o = RawTracePointRunOptions::new();
        o.args[0] = pgd;
        o.args[1] = slot as u64;
        Ok(p.test_run(o)
            .map_err(prog_err(programs::WALK_TEST_RUN))?
            .return_value)
    }

    /// Sets `walk_path` (tests compare the two paths).
    pub fn set_walk_path(&mut self, path: WalkPath) {
        if self.walk_path.is_some() {
            self.walk_path = Some(path);
        }
    }

    fn iter_fd(&self, name: &'static str) -> Result<RawFd, BpfError> {
        let p: &Iter = program(&self.ebpf, name)?;
        Ok(p.fd().map_err(prog_err(name))?.as_fd().as_raw_fd())
    }

    fn map<V: aya::Pod>(&self, name: &'static str) -> Result<Array<&MapData, V>, BpfError> {
        let m = self
            .ebpf
            .map(name)
            .ok_or(BpfError::Missing { kind: "map", name })?;
        Array::try_from(m).map_err(map_err(name))
    }

    fn map_mut<'a, M>(&'a mut self, name: &'static str) -> Result<M, BpfError>
    where
        M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or(BpfError::Missing { kind: "map", name })?;
        M::try_from(m).map_err(map_err(name))
    }
}

pub(crate) fn load_object(layout: &KernelLayout, fault_in_region: bool) -> Result<Ebpf, BpfError> {
    let levels = layout.pgtable_levels as u64;
    let fault_in_region = fault_in_region as u64;
    Ok(EbpfLoader::new()
        .override_global(globals::TASK_TGID_OFFSET, &layout.task_tgid_offset, true)
        .override_global(globals::TASK_MM_OFFSET, &layout.task_mm_offset, true)
        .override_global(globals::MM_PGD_OFFSET, &layout.mm_pgd_offset, true)
        .override_global(globals::PAGE_OFFSET_BASE, &layout.page_offset_base, true)
        .override_global(globals::PGTABLE_LEVELS, &levels, true)
        .override_global(globals::FAULT_IN_REGION_IS_ACCESS, &fault_in_region, true)
        .load(EBPF_OBJECT)?)
}

pub(crate) fn program<'a, P>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a P, BpfError>
where
    &'a P: TryFrom<&'a aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program(name).ok_or(BpfError::Missing {
        kind: "program",
        name,
    })?;
    p.try_into().map_err(prog_err(name))
}

pub(crate) fn program_mut<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, BpfError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or(BpfError::Missing {
        kind: "program",
        name,
    })?;
    p.try_into().map_err(prog_err(name))
}

/// Reads kernel memory through the `peek` program (calibration only).
pub(crate) fn peek(ebpf: &Ebpf, addr: u64) -> Result<Option<[u8; PEEK_LEN]>, BpfError> {
    let p: &RawTracePoint = program(ebpf, programs::PEEK)?;
    let mut o = RawTracePointRunOptions::new();
    o.args[0] = addr;
    if p.test_run(o)
        .map_err(prog_err(programs::PEEK))?
        .return_value
        != 0
    {
        return Ok(None);
    }
    let m = ebpf.map(maps::PEEK_OUT).ok_or(BpfError::Missing {
        kind: "map",
        name: maps::PEEK_OUT,
    })?;
    let arr: Array<_, [u8; PEEK_LEN]> = Array::try_from(m).map_err(map_err(maps::PEEK_OUT))?;
    arr.get(&0, 0).map(Some).map_err(map_err(maps::PEEK_OUT))
}

/// A heap allocation of a plain-old-data table, zeroed, without building it on the stack
/// first (the tables are tens of KiB).
fn zeroed_box<T: aya::Pod>() -> Box<T> {
    let layout = std::alloc::Layout::new::<T>();
    // SAFETY: T is Pod (all-zero is a valid value) and not zero-sized; the allocation has
    // T's layout and is owned by the Box.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(p)
    }
}

/// Forwards aya-log records from the kernel side to the `log` crate (and so to env_logger).
pub(crate) struct LoggerThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl LoggerThread {
    pub(crate) fn start(ebpf: &mut Ebpf) -> Option<Self> {
        let mut logger = match aya_log::EbpfLogger::init(ebpf) {
            Ok(l) => l,
            Err(e) => {
                log::debug!("no eBPF log forwarding: {e}");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("damon-bpf-log".into())
            .spawn(move || {
                let fd = logger.as_raw_fd();
                while !flag.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
                        logger.flush();
                    }
                }
                logger.flush();
            })
            .ok()?;
        Some(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for LoggerThread {
    /// Stops the thread after a last flush, so records of the final runs are not lost.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl MonitorPrograms {
    /// Kernel ids of the programs this set loaded, to check that dropping it unloads them.
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok())
            .map(|i| i.id())
            .collect()
    }
}
