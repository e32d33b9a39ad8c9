//! The folios mapped in a range of another process, as `stat`'s folio filters judge them
//! (the kernel's `damos_va_stat()`): `/proc/PID/pagemap` gives each present page's frame,
//! `/proc/kpageflags` its flags (anon, active, compound head or tail), `/proc/kpagecgroup`
//! its memory cgroup. Root only (frame numbers are hidden from others).
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::core::scheme::{Filter, FilterKind};
use crate::core::{AddrRange, PAGE_SIZE, Pid};

const PM_PRESENT: u64 = 1 << 63;
const PM_PFN_MASK: u64 = (1 << 55) - 1;
const KPF_ACTIVE: u64 = 1 << 6;
const KPF_ANON: u64 = 1 << 12;
const KPF_COMPOUND_HEAD: u64 = 1 << 15;
const KPF_COMPOUND_TAIL: u64 = 1 << 16;
/// The largest folio looked for: a PMD's worth of pages.
const MAX_FOLIO_PAGES: u64 = 512;
/// Pagemap entries read at a time.
const BATCH: usize = 512;

/// One mapped folio as the filters see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioInfo {
    pub head_pfn: u64,
    pub bytes: u64,
    pub anon: bool,
    pub active: bool,
    pub memcg: u64,
}

/// Bytes of the folios mapped in `range` of `pid` that `filters` let through; a folio is
/// counted once, whole, however much of it the range maps (`damos_va_stat()`).
/// `core_allowed`: a core filter explicitly allowed the region, so every folio passes.
/// `alive` tells whether the monitored process still runs (through its pidfd): asked once
/// `/proc/PID/pagemap` is open, so that the file read is that process's, never one that
/// reused its pid (which can only happen after it exited).
pub fn filter_passed(
    pid: Pid,
    range: AddrRange,
    filters: &[Filter],
    core_allowed: bool,
    alive: &dyn Fn() -> bool,
) -> io::Result<u64> {
    let default_reject = filters.last().is_some_and(|f| f.allow);
    let mut passed = 0;
    for_each_folio(pid, range, alive, |folio| {
        if core_allowed || !filtered_out(&folio, filters, default_reject) {
            passed += folio.bytes;
        }
    })?;
    Ok(passed)
}

/// `damos_va_filter_out()`: the first filter that matches decides; none: the default.
fn filtered_out(folio: &FolioInfo, filters: &[Filter], default_reject: bool) -> bool {
    for f in filters {
        let has_type = match f.kind {
            FilterKind::Anon => folio.anon,
            FilterKind::Active => folio.active,
            FilterKind::Memcg { id } => folio.memcg == id,
            FilterKind::HugepageSize(b) => b.contains(folio.bytes),
            // Found through the page table: mapped.
            FilterKind::Unmapped => false,
            // Refused for `stat` at on/commit: whether a page is young cannot be read from
            // here without clearing what the monitor itself reads.
            FilterKind::Young => false,
            FilterKind::Addr(_) | FilterKind::Target(_) => continue,
        };
        if has_type == f.matching {
            return !f.allow;
        }
    }
    default_reject
}

/// Calls `each` for every folio mapped in `range`, once per folio, in address order.
pub fn for_each_folio(
    pid: Pid,
    range: AddrRange,
    alive: &dyn Fn() -> bool,
    mut each: impl FnMut(FolioInfo),
) -> io::Result<()> {
    let pagemap = File::open(format!("/proc/{}/pagemap", pid.0))?;
    if !alive() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} exited"),
        ));
    }
    let kflags = File::open("/proc/kpageflags")?;
    let kcgroup = File::open("/proc/kpagecgroup").ok();
    let read_u64 = |f: &File, index: u64| -> io::Result<u64> {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, index * 8)?;
        Ok(u64::from_ne_bytes(b))
    };
    // The folio last counted: its tail pages that follow are skipped.
    let mut last: Option<(u64, u64)> = None; // head pfn, pages
    let mut entries = vec![0u8; BATCH * 8];
    let mut page = range.start / PAGE_SIZE;
    let end = range.end.div_ceil(PAGE_SIZE);
    while page < end {
        let n = ((end - page) as usize).min(BATCH);
        let buf = &mut entries[..n * 8];
        pagemap.read_exact_at(buf, page * 8)?;
        for chunk in buf.chunks_exact(8) {
            let entry = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            if entry & PM_PRESENT == 0 {
                continue;
            }
            let pfn = entry & PM_PFN_MASK;
            if pfn == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "pagemap hides frame numbers: reading folios needs root",
                ));
            }
            if let Some((head, pages)) = last
                && (head..head + pages).contains(&pfn)
            {
                continue;
            }
            let flags = read_u64(&kflags, pfn)?;
            let head = if flags & KPF_COMPOUND_TAIL != 0 {
                let mut h = pfn;
                while h > 0 && pfn - h < MAX_FOLIO_PAGES {
                    h -= 1;
                    if read_u64(&kflags, h)? & KPF_COMPOUND_HEAD != 0 {
                        break;
                    }
                }
                h
            } else {
                pfn
            };
            let head_flags = if head == pfn {
                flags
            } else {
                read_u64(&kflags, head)?
            };
            let mut pages = 1;
            if head_flags & KPF_COMPOUND_HEAD != 0 {
                while pages < MAX_FOLIO_PAGES
                    && read_u64(&kflags, head + pages)? & KPF_COMPOUND_TAIL != 0
                {
                    pages += 1;
                }
            }
            let memcg = match &kcgroup {
                Some(f) => read_u64(f, head)?,
                None => 0,
            };
            last = Some((head, pages));
            each(FolioInfo {
                head_pfn: head,
                bytes: pages * PAGE_SIZE,
                anon: head_flags & KPF_ANON != 0,
                active: head_flags & KPF_ACTIVE != 0,
                memcg,
            });
        }
        page += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scheme::Bounds;

    fn folio(anon: bool, bytes: u64) -> FolioInfo {
        FolioInfo {
            head_pfn: 1,
            bytes,
            anon,
            active: false,
            memcg: 7,
        }
    }

    fn filter(kind: FilterKind, matching: bool, allow: bool) -> Filter {
        Filter {
            kind,
            matching,
            allow,
        }
    }

    #[test]
    fn the_first_matching_filter_decides_and_the_last_sets_the_default() {
        let reject_anon = [filter(FilterKind::Anon, true, false)];
        assert!(filtered_out(&folio(true, 4096), &reject_anon, false));
        assert!(!filtered_out(&folio(false, 4096), &reject_anon, false));
        // Allow large folios only: the last filter allows, so the rest is rejected.
        let big = [filter(
            FilterKind::HugepageSize(Bounds {
                min: 2 << 20,
                max: 2 << 20,
            }),
            true,
            true,
        )];
        assert!(!filtered_out(&folio(true, 2 << 20), &big, true));
        assert!(filtered_out(&folio(true, 4096), &big, true));
        // Reject memcg 7 unless anon: anon decides first.
        let both = [
            filter(FilterKind::Anon, true, true),
            filter(FilterKind::Memcg { id: 7 }, true, false),
        ];
        assert!(!filtered_out(&folio(true, 4096), &both, false));
        assert!(filtered_out(&folio(false, 4096), &both, false));
    }

    /// Our own memory: an anonymous buffer and a file's page cache, told apart.
    #[test]
    #[ignore = "needs root"]
    fn anon_and_file_folios_of_a_process_are_told_apart() {
        let me = Pid(std::process::id() as i32);
        let anon = vec![1u8; 8 << 20];
        let start = anon.as_ptr() as u64;
        let range = AddrRange::new(
            crate::core::region::align_up(start),
            crate::core::region::align_down(start + anon.len() as u64),
        );
        let only_anon = [filter(FilterKind::Anon, true, true)];
        let passed = filter_passed(me, range, &only_anon, false, &|| true).expect("folios");
        // Whole folios count, so a large one at an end may reach past the range.
        assert!(passed >= range.size(), "{passed} of {}", range.size());
        let no_anon = [filter(FilterKind::Anon, true, false)];
        assert_eq!(
            filter_passed(me, range, &no_anon, false, &|| true).expect("folios"),
            0
        );
        // The executable's text is file memory.
        let code =
            crate::core::region::align_down(filtered_out as fn(_, _, _) -> _ as usize as u64);
        let text = AddrRange::new(code, code + PAGE_SIZE);
        assert_eq!(
            filter_passed(me, text, &only_anon, false, &|| true).expect("folios"),
            0
        );
        assert!(filter_passed(me, text, &no_anon, false, &|| true).expect("folios") >= PAGE_SIZE);
        std::hint::black_box(&anon);
    }
}
