//! What the page-table walk must know about the running kernel, found once per process.
use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd},
    sync::OnceLock,
    time::{Duration, Instant},
};

use aya::programs::{Iter, RawTracePoint};
use damon_common::{PEEK_LEN, maps, programs};
use thiserror::Error;

use super::{
    BpfError,
    btf::{Btf, BtfError},
    programs::{load_object, peek, program, program_mut},
    sys,
};

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("cannot read our own page frame from /proc/self/pagemap: {0}")]
    Pagemap(#[source] std::io::Error),
    #[error("our own page is not present in /proc/self/pagemap (frame numbers need CAP_SYS_ADMIN)")]
    NoFrame,
    #[error("the page-table root of our own process was not found")]
    NoPgd,
    #[error("the kernel's direct map base was not found below {pgd:#x} after {probes} probes")]
    NoDirectMap { pgd: u64, probes: u64 },
    #[error(
        "validation of the page-table walk failed: it found frame {walked:#x} for a probe page that /proc/self/pagemap puts at {expected:#x}; refusing to monitor with a walk that reads the wrong memory"
    )]
    Validation { walked: u64, expected: u64 },
}

/// Offsets, direct-map base and paging depth of the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    pub task_tgid_offset: u64,
    pub task_mm_offset: u64,
    pub mm_pgd_offset: u64,
    /// Virtual address of physical address 0 in the kernel's direct map (`page_offset_base`).
    pub page_offset_base: u64,
    pub pgtable_levels: u32,
    /// How long the calibration took.
    pub calibration: Duration,
}

impl KernelLayout {
    /// Placeholder for program sets that never walk page tables.
    pub(crate) const UNKNOWN: KernelLayout = KernelLayout {
        task_tgid_offset: 0,
        task_mm_offset: 0,
        mm_pgd_offset: 0,
        page_offset_base: 0,
        pgtable_levels: 4,
        calibration: Duration::ZERO,
    };

    /// The layout of the running kernel, probed on first use and cached for the process.
    pub fn get() -> Result<KernelLayout, LayoutError> {
        static LAYOUT: OnceLock<KernelLayout> = OnceLock::new();
        if let Some(l) = LAYOUT.get() {
            return Ok(*l);
        }
        let l = Self::probe()?;
        Ok(*LAYOUT.get_or_init(|| l))
    }

    fn probe() -> Result<KernelLayout, LayoutError> {
        let t = Instant::now();
        let btf = Btf::from_sys_fs()?;
        let mut layout = KernelLayout {
            task_tgid_offset: btf.member_offset("task_struct", "tgid")?,
            task_mm_offset: btf.member_offset("task_struct", "mm")?,
            mm_pgd_offset: btf.member_offset("mm_struct", "pgd")?,
            page_offset_base: 0,
            pgtable_levels: sys::pgtable_levels(),
            calibration: Duration::ZERO,
        };
        layout.page_offset_base = calibrate_page_offset_base(&layout)?;
        validate(&layout)?;
        layout.calibration = t.elapsed();
        log::debug!("kernel layout: {layout:x?}");
        Ok(layout)
    }
}

/// `page_offset_base` is not exported (not in kallsyms without KALLSYMS_ALL, not in BTF), so
/// find it: write a random marker into a page of ours, take its frame number from
/// `/proc/self/pagemap`, and probe the 1 GiB-aligned candidates below our own `mm->pgd` (which
/// lives in the direct map) until `base + pfn * 4096` shows the marker. 5-8 probes, < 1 ms.
fn calibrate_page_offset_base(layout: &KernelLayout) -> Result<u64, LayoutError> {
    let mut ebpf = load_object(layout, false)?;
    let _logger = super::programs::LoggerThread::start(&mut ebpf);
    let kbtf = aya::Btf::from_sys_fs().map_err(BpfError::Btf)?;
    let it: &mut Iter = program_mut(&mut ebpf, programs::TASK_PGD)?;
    it.load("task", &kbtf).map_err(|source| BpfError::Program {
        name: programs::TASK_PGD,
        source,
    })?;
    let peek_prog: &mut RawTracePoint = program_mut(&mut ebpf, programs::PEEK)?;
    peek_prog.load().map_err(|source| BpfError::Program {
        name: programs::PEEK,
        source,
    })?;

    let pgd = task_pgd(&ebpf, std::process::id())?.ok_or(LayoutError::NoPgd)?;
    let marker = Marker::new();
    let pfn = sys::pagemap_pfn(std::process::id(), marker.addr())
        .map_err(LayoutError::Pagemap)?
        .filter(|&p| p != 0)
        .ok_or(LayoutError::NoFrame)?;
    const GIB: u64 = 1 << 30;
    let top = pgd & !(GIB - 1);
    // The direct map spans all of RAM; 64 TiB of candidates is more than any machine has.
    let max_probes = 64 * 1024;
    for k in 0..max_probes {
        let Some(base) = top.checked_sub(k * GIB) else {
            break;
        };
        if let Some(bytes) = peek(&ebpf, base.wrapping_add(pfn * 4096))?
            && bytes == marker.bytes
        {
            return Ok(base);
        }
    }
    Err(LayoutError::NoDirectMap {
        pgd,
        probes: max_probes,
    })
}

/// Walks a page of ours with the production walker and checks that the frame in its page-table
/// entry is the one `/proc/self/pagemap` reports. A wrong base, offset or paging depth shows
/// here instead of as silently wrong access data.
fn validate(layout: &KernelLayout) -> Result<(), LayoutError> {
    let marker = Marker::new();
    let me = std::process::id();
    let expected = sys::pagemap_pfn(me, marker.addr())
        .map_err(LayoutError::Pagemap)?
        .ok_or(LayoutError::NoFrame)?;
    let mut progs = super::MonitorPrograms::load(Some(layout), Default::default())?;
    let slot = progs.add_target(me as i32)?;
    progs.set_regions(slot, &[(marker.addr(), marker.addr() + 4096)])?;
    progs.set_samples(slot, 1, &[marker.addr()])?;
    let out = progs.walk(me as i32)?;
    let walked = (out.leaf0 & 0x000f_ffff_ffff_f000) >> 12;
    if walked != expected {
        return Err(LayoutError::Validation { walked, expected });
    }
    Ok(())
}

/// `mm->pgd` of process `pid`, through the `task_pgd` iterator on a pid-filtered link.
pub(crate) fn task_pgd(ebpf: &aya::Ebpf, pid: u32) -> Result<Option<u64>, BpfError> {
    let it: &Iter = program(ebpf, programs::TASK_PGD)?;
    let fd = it.fd().map_err(|source| BpfError::Program {
        name: programs::TASK_PGD,
        source,
    })?;
    let mut f = sys::iter_for_pid(fd.as_fd().as_raw_fd(), pid)?;
    let mut sink = Vec::new();
    f.read_to_end(&mut sink).map_err(BpfError::Iterator)?;
    let m = ebpf.map(maps::PGD_OUT).ok_or(BpfError::Missing {
        kind: "map",
        name: maps::PGD_OUT,
    })?;
    let out: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(m).map_err(|source| BpfError::Map {
            name: maps::PGD_OUT,
            source,
        })?;
    let get = |i: u32| {
        out.get(&i, 0).map_err(|source| BpfError::Map {
            name: maps::PGD_OUT,
            source,
        })
    };
    Ok((get(0)? == 1).then_some(get(2)?).filter(|&p| p != 0))
}

/// A locked, populated page of ours holding random bytes.
struct Marker {
    page: *mut u8,
    bytes: [u8; PEEK_LEN],
}

impl Marker {
    fn new() -> Self {
        let mut bytes = [0u8; PEEK_LEN];
        let mut x: u64 = Instant::now().elapsed().as_nanos() as u64
            ^ (std::process::id() as u64).rotate_left(32)
            ^ (&bytes as *const _ as u64)
            ^ 0x9e37_79b9_7f4a_7c15;
        for chunk in bytes.chunks_mut(8) {
            // xorshift64*: enough to make a collision with real memory contents impossible in
            // practice.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        let page = if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p as *mut u8
        };
        if !page.is_null() {
            unsafe {
                libc::mlock(page as *const _, 4096);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), page, PEEK_LEN);
            }
        }
        Self { page, bytes }
    }

    fn addr(&self) -> u64 {
        self.page as u64
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if !self.page.is_null() {
            unsafe { libc::munmap(self.page as *mut _, 4096) };
        }
    }
}
