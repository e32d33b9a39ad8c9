//! What the programs must know about the running kernel: struct offsets (from BTF), the
//! direct-map and `struct page` bases, the paging depth. [`super::calibrate`] finds them once
//! per boot; every load of the programs validates them again against our own pages (see
//! `MonitorPrograms::validate_layout`).
use damon_common::KernelInfo;
use serde::{Deserialize, Serialize};

use super::btf::{Btf, BtfError};

/// Offsets, bases and paging depth of the running kernel. Offsets are in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLayout {
    /// Virtual address of physical address 0 in the kernel's direct map (`page_offset_base`).
    pub page_offset_base: u64,
    /// Virtual address of the `struct page` of frame 0 (`vmemmap_base`).
    pub vmemmap_base: u64,
    pub pgtable_levels: u32,
    pub task_mm: u64,
    pub task_tgid: u64,
    pub task_files: u64,
    /// `task_struct.pid_links[PIDTYPE_TGID]`.
    pub task_pid_links_tgid: u64,
    pub mm_pgd: u64,
    pub files_fdt: u64,
    pub fdtable_fd: u64,
    pub fdtable_max_fds: u64,
    pub file_private_data: u64,
    pub file_f_inode: u64,
    pub file_f_mapping: u64,
    pub inode_i_private: u64,
    /// `address_space.i_pages.xa_head`.
    pub mapping_xa_head: u64,
    pub pid_level: u64,
    pub pid_numbers: u64,
    pub upid_size: u64,
    /// `pid.tasks[PIDTYPE_TGID]`.
    pub pid_tasks_tgid: u64,
    /// `sizeof(struct page)`.
    pub page_size: u64,
    pub page_flags: u64,
    pub page_compound_head: u64,
    pub page_mapcount: u64,
    pub page_mapping: u64,
    /// `page.index` (`__folio_index` since Linux 6.16).
    pub page_index: u64,
    /// 0 when the kernel has no `folio._large_mapcount` (before 6.10).
    pub folio_large_mapcount: u64,
    /// The mapcount read for a PMD-mapped folio when it has no `_large_mapcount`.
    pub folio_entire_mapcount: u64,
    /// Where a large folio's order is: `_folio_order` (before 6.6) or the low byte of
    /// `_flags_1`; 0 if neither is known.
    pub folio_order: u64,
    pub pg_lru: u32,
    pub pg_head: u32,
    pub pg_unevictable: u32,
}
impl KernelLayout {
    /// The offsets BTF gives; bases and paging depth are left zero.
    pub fn from_btf(btf: &Btf) -> Result<KernelLayout, BtfError> {
        let off = |s: &str, m: &str| btf.member_offset(s, m);
        let tgid = btf.enum_value("pid_type", "PIDTYPE_TGID")?;
        let flag = |name: &str| btf.enum_value("pageflags", name).map(|v| v as u32);
        let folio_large_mapcount = off("folio", "_large_mapcount").unwrap_or(0);
        let page_mapcount = off("page", "_mapcount")?;
        Ok(KernelLayout {
            page_offset_base: 0,
            vmemmap_base: 0,
            pgtable_levels: 0,
            task_mm: off("task_struct", "mm")?,
            task_tgid: off("task_struct", "tgid")?,
            task_files: off("task_struct", "files")?,
            task_pid_links_tgid: off("task_struct", "pid_links")?
                + tgid * btf.struct_size("hlist_node")?,
            mm_pgd: off("mm_struct", "pgd")?,
            files_fdt: off("files_struct", "fdt")?,
            fdtable_fd: off("fdtable", "fd")?,
            fdtable_max_fds: off("fdtable", "max_fds")?,
            file_private_data: off("file", "private_data")?,
            file_f_inode: off("file", "f_inode")?,
            file_f_mapping: off("file", "f_mapping")?,
            inode_i_private: off("inode", "i_private")?,
            mapping_xa_head: off("address_space", "i_pages")? + off("xarray", "xa_head")?,
            pid_level: off("pid", "level")?,
            pid_numbers: off("pid", "numbers")?,
            upid_size: btf.struct_size("upid")?,
            pid_tasks_tgid: off("pid", "tasks")? + tgid * btf.struct_size("hlist_head")?,
            page_size: btf.struct_size("page")?,
            page_flags: off("page", "flags")?,
            // Renamed `compound_info` in 7.x; bit 0 still marks a tail page.
            page_compound_head: off("page", "compound_head")
                .or_else(|_| off("page", "compound_info"))?,
            page_mapcount,
            page_mapping: off("page", "mapping")?,
            page_index: off("page", "__folio_index").or_else(|_| off("page", "index"))?,
            folio_large_mapcount,
            // Older kernels count PMD mappings of a folio in `_entire_mapcount` (6.2+); before
            // that the head page's own mapcount stands in, which reads a huge page as mapped
            // once: such samples are advised, and MADV_COLD skips them if they are shared.
            folio_entire_mapcount: off("folio", "_entire_mapcount").unwrap_or(page_mapcount),
            folio_order: off("folio", "_folio_order")
                .or_else(|_| off("folio", "_flags_1"))
                .unwrap_or(0),
            pg_lru: flag("PG_lru")?,
            pg_head: flag("PG_head")?,
            pg_unevictable: flag("PG_unevictable")?,
        })
    }

    /// The part the programs read, for `CONTROL`.
    pub fn kernel_info(&self) -> KernelInfo {
        let u = |v: u64| v as u32;
        KernelInfo {
            page_offset_base: self.page_offset_base,
            vmemmap_base: self.vmemmap_base,
            pgtable_levels: self.pgtable_levels,
            page_size: u(self.page_size),
            pid_tasks_tgid: u(self.pid_tasks_tgid),
            task_pid_links_tgid: u(self.task_pid_links_tgid),
            task_mm: u(self.task_mm),
            mm_pgd: u(self.mm_pgd),
            page_flags: u(self.page_flags),
            page_compound_head: u(self.page_compound_head),
            page_mapcount: u(self.page_mapcount),
            folio_large_mapcount: u(self.folio_large_mapcount),
            folio_entire_mapcount: u(self.folio_entire_mapcount),
            pg_lru: self.pg_lru,
            pg_head: self.pg_head,
            pg_unevictable: self.pg_unevictable,
            folio_order: u(self.folio_order),
        }
    }
}
