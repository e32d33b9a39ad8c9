//! Finding the [`KernelLayout`] of the running kernel: offsets from BTF, then the direct-map
//! and `struct page` bases by calibration against pages of our own. Done once per boot and
//! cached in `/run/damon`, keyed by the boot id, so a later start costs a file read.
use std::{
    io::{Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{
    BpfError,
    btf::{Btf, BtfError},
    chase::{self, ChaseError},
    layout::KernelLayout,
    marker::Marker,
    peek::{Peek, PeekSet},
    sys,
};

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("reading the kernel's BTF")]
    Btf(#[source] BtfError),
    #[error("loading the calibration program")]
    Bpf(#[source] BpfError),
    #[error("following kernel pointers during calibration")]
    Chase(#[source] ChaseError),
    #[error("cannot read our own page frame from /proc/self/pagemap")]
    Pagemap(#[source] std::io::Error),
    #[error("our own page is not present in /proc/self/pagemap (frame numbers need CAP_SYS_ADMIN)")]
    NoFrame,
    #[error("preparing a calibration page")]
    Page(#[source] std::io::Error),
    #[error("the kernel's direct map base was not found below {pgd:#x} after {probes} probes")]
    NoDirectMap { pgd: u64, probes: u64 },
    #[error("the page cache of the calibration memfd holds no small folio at index 0")]
    NoFolio,
    #[error(
        "validation of the page-table walk failed: it found frame {walked:#x} for a probe page that /proc/self/pagemap puts at {expected:#x}; refusing to monitor with a walk that reads the wrong memory"
    )]
    WalkMismatch { walked: u64, expected: u64 },
    #[error(
        "validation of the struct page base {vmemmap_base:#x} failed: the page of our marker at {addr:#x} does not describe it ({what})"
    )]
    PageMismatch {
        vmemmap_base: u64,
        addr: u64,
        what: &'static str,
    },
}
/// How a layout was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutOrigin {
    /// Read from the per-boot cache.
    Cached,
    /// Probed now (BTF and calibration), and cached when possible.
    Calibrated,
}

/// A layout, where it came from, and how long getting it took.
#[derive(Clone, Copy, Debug)]
pub struct FoundLayout {
    pub layout: KernelLayout,
    pub origin: LayoutOrigin,
    pub took: Duration,
}

/// Bumped whenever `KernelLayout` changes meaning, so an old cache is not misread.
const CACHE_VERSION: u32 = 2;
const CACHE_DIR: &str = "/run/damon";
const CACHE_FILE: &str = "kernel-layout.json";

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    boot_id: String,
    release: String,
    layout: KernelLayout,
}
/// The layout of the running kernel: from the per-boot cache when it has one, else probed
/// (and cached). `refresh` ignores the cache (after a failed validation).
pub fn find(refresh: bool) -> Result<FoundLayout, LayoutError> {
    let t = Instant::now();
    let key = cache_key();
    if !refresh
        && let Some(key) = &key
        && let Some(layout) = read_cache(Path::new(CACHE_DIR), key)
    {
        return Ok(FoundLayout {
            layout,
            origin: LayoutOrigin::Cached,
            took: t.elapsed(),
        });
    }
    let layout = calibrate()?;
    if let Some(key) = &key
        && let Err(e) = write_cache(Path::new(CACHE_DIR), key, &layout)
    {
        log::debug!("not caching the kernel layout in {CACHE_DIR}: {e}");
    }
    Ok(FoundLayout {
        layout,
        origin: LayoutOrigin::Calibrated,
        took: t.elapsed(),
    })
}

/// Probes the running kernel: offsets from BTF, then the two bases by calibration.
pub fn calibrate() -> Result<KernelLayout, LayoutError> {
    let btf = Btf::from_sys_fs().map_err(LayoutError::Btf)?;
    let mut layout = KernelLayout::from_btf(&btf).map_err(LayoutError::Btf)?;
    layout.pgtable_levels = sys::pgtable_levels();
    let set = PeekSet::load().map_err(LayoutError::Bpf)?;
    layout.page_offset_base = find_page_offset_base(&set.peek, &layout)?;
    layout.vmemmap_base = find_vmemmap_base(&set.peek, &layout)?;
    log::debug!("kernel layout: {layout:x?}");
    Ok(layout)
}

/// Our own page-table root: current → mm → pgd.
fn our_pgd(peek: &Peek, l: &KernelLayout) -> Result<u64, LayoutError> {
    let chase = |e: BpfError| LayoutError::Chase(ChaseError::Bpf(e));
    let task = peek.current_task().map_err(chase)?;
    let fault = |what, addr| LayoutError::Chase(ChaseError::Fault { what, addr });
    let mm = peek
        .u64(task + l.task_mm)
        .map_err(chase)?
        .ok_or(fault("task.mm", task + l.task_mm))?;
    peek.u64(mm + l.mm_pgd)
        .map_err(chase)?
        .ok_or(fault("mm.pgd", mm + l.mm_pgd))
}

/// `page_offset_base` is not exported (not in kallsyms without KALLSYMS_ALL, not in BTF), so
/// find it: write random words into a page of ours, take its frame number from
/// `/proc/self/pagemap`, and probe the 1 GiB-aligned candidates below our own `mm->pgd` (which
/// lives in the direct map) until `base + pfn * 4096` shows the words. 5-8 probes, < 1 ms.
fn find_page_offset_base(peek: &Peek, l: &KernelLayout) -> Result<u64, LayoutError> {
    let pgd = our_pgd(peek, l)?;
    let marker = Marker::new().map_err(LayoutError::Page)?;
    let pfn = marker
        .pfn()
        .map_err(LayoutError::Pagemap)?
        .ok_or(LayoutError::NoFrame)?;
    const GIB: u64 = 1 << 30;
    let top = pgd & !(GIB - 1);
    // The direct map spans all of RAM; 64 TiB of candidates is more than any machine has.
    let max_probes = 64 * 1024;
    for k in 0..max_probes {
        let Some(base) = top.checked_sub(k * GIB) else {
            break;
        };
        let words = peek
            .words(base.wrapping_add(pfn * 4096))
            .map_err(|e| LayoutError::Chase(ChaseError::Bpf(e)))?;
        if words == Some(marker.words) {
            return Ok(base);
        }
    }
    Err(LayoutError::NoDirectMap {
        pgd,
        probes: max_probes,
    })
}

/// `vmemmap_base` is not exported either. A memfd with one page written has one small shmem
/// folio at index 0 of its page cache; following our fd table to it gives that folio's
/// `struct page` address, and its frame number comes from `/proc/self/pagemap`:
/// `vmemmap_base = folio - pfn * sizeof(struct page)`. One chase, no scan.
fn find_vmemmap_base(peek: &Peek, l: &KernelLayout) -> Result<u64, LayoutError> {
    let page = MemfdPage::new().map_err(LayoutError::Page)?;
    let pfn = sys::pagemap_pfn(std::process::id(), page.addr())
        .map_err(LayoutError::Pagemap)?
        .filter(|&p| p != 0)
        .ok_or(LayoutError::NoFrame)?;
    let folio = chase::first_folio_of(peek, l, page.fd.as_raw_fd())
        .map_err(LayoutError::Chase)?
        .ok_or(LayoutError::NoFolio)?;
    Ok(folio.wrapping_sub(pfn * l.page_size))
}

/// One written page of a fresh memfd, mapped shared.
struct MemfdPage {
    fd: OwnedFd,
    addr: *mut u8,
}

impl MemfdPage {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscalls on a name we own; each result is checked.
        unsafe {
            let fd = libc::memfd_create(c"damon-calibration".as_ptr(), libc::MFD_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            if libc::ftruncate(fd.as_raw_fd(), 4096) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            );
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let addr = p as *mut u8;
            addr.write_volatile(1);
            Ok(Self { fd, addr })
        }
    }

    fn addr(&self) -> u64 {
        self.addr as u64
    }
}

impl Drop for MemfdPage {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; the fd closes itself.
        unsafe { libc::munmap(self.addr as *mut _, 4096) };
    }
}

/// What a cache entry must match: this boot, this kernel.
struct CacheKey {
    boot_id: String,
    release: String,
}

fn cache_key() -> Option<CacheKey> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    Some(CacheKey {
        boot_id: boot_id.trim().to_owned(),
        release: release.trim().to_owned(),
    })
}

/// A directory only root can write, or `None`: a cache anyone could plant would steer the
/// programs' kernel reads (memory-safe, but wrong data).
fn trusted_dir(dir: &Path) -> Option<()> {
    let m = std::fs::symlink_metadata(dir).ok()?;
    (m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0).then_some(())
}

fn read_cache(dir: &Path, key: &CacheKey) -> Option<KernelLayout> {
    trusted_dir(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(CACHE_FILE))
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 || m.len() > 64 * 1024 {
        return None;
    }
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    let c: CacheFile = serde_json::from_str(&text).ok()?;
    (c.version == CACHE_VERSION && c.boot_id == key.boot_id && c.release == key.release)
        .then_some(c.layout)
}

fn write_cache(dir: &Path, key: &CacheKey, layout: &KernelLayout) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if trusted_dir(dir).is_none() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory that only root can write",
            dir.display()
        )));
    }
    let text = serde_json::to_string(&CacheFile {
        version: CACHE_VERSION,
        boot_id: key.boot_id.clone(),
        release: key.release.clone(),
        layout: *layout,
    })
    .map_err(std::io::Error::other)?;
    // A new file of our own (O_EXCL: never through a planted link), renamed over the old one.
    let tmp: PathBuf = dir.join(format!(".{CACHE_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, dir.join(CACHE_FILE))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> KernelLayout {
        let mut l = KernelLayout::from_btf(&Btf::from_sys_fs().expect("btf")).expect("offsets");
        l.page_offset_base = 0xffff_8880_0000_0000;
        l
    }

    fn key(boot: &str) -> CacheKey {
        CacheKey {
            boot_id: boot.into(),
            release: "6.x".into(),
        }
    }

    #[test]
    #[ignore = "needs root"]
    fn the_cache_round_trips_for_its_boot_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let l = layout();
        write_cache(dir.path(), &key("a"), &l).expect("write");
        assert_eq!(read_cache(dir.path(), &key("a")), Some(l));
        assert_eq!(read_cache(dir.path(), &key("b")), None, "another boot");
        // A cache others can write is not trusted.
        std::fs::set_permissions(
            dir.path().join(CACHE_FILE),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert_eq!(
            read_cache(dir.path(), &key("a")),
            None,
            "world-writable file"
        );
    }
}
