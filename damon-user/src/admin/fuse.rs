//! The admin tree as a FUSE file system (the `fuser` crate's low-level API).
//!
//! Everything is uncached, as sysfs is: entries and attributes have a zero TTL and files are
//! opened with `FOPEN_DIRECT_IO`, so values changed by the monitor are seen by the next read
//! and files can report sysfs' size of 4096 while reads return the exact content. A file's
//! content is rendered once per read from offset 0 and kept with the open file handle, so a
//! reader that reads in pieces sees one consistent value (the kernel's `seq_file` does the
//! same).
//!
//! Writes: tools open with `O_WRONLY|O_CREAT|O_TRUNC` and write the value once. Opening and
//! truncating an existing file succeed without effect; the value is stored, or refused with
//! its errno, by that `write()`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags,
    LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::error::AdminError;
use super::node::{Access, DIR_MODE, EntryKind};
use super::tree::Admin;
use crate::error::Chain;

/// Nothing is cached by the kernel: values change under readers.
const TTL: Duration = Duration::ZERO;

/// Size reported for every file, as sysfs does; reads return the real length.
const FILE_SIZE: u64 = 4096;

/// Largest accepted write, as sysfs attributes (`atomic_write_len = PAGE_SIZE`): larger
/// writes fail with E2BIG instead of being stored in pieces.
const MAX_WRITE: usize = 4096;

/// Paths by inode number. Inode numbers are never reused: a path keeps its number when its
/// directory is recreated by an `nr_*` write, and the table grows only with distinct paths.
/// Each path is one entry, its parent's number and its last name (about 100 bytes), so the
/// table stays some tens of MiB even for every path of a tree at its size limit.
struct Inodes {
    /// Parent and name of inode `i + 1`; the root (inode 1, the empty path) has none.
    entries: Vec<(u64, Arc<str>)>,
    /// Inode numbers of the named children of an inode.
    children: HashMap<u64, HashMap<Arc<str>, u64>>,
}

impl Inodes {
    fn new() -> Self {
        // Inode 1 is the root (`INodeNo::ROOT`), the empty path.
        Self {
            entries: vec![(0, Arc::from(""))],
            children: HashMap::new(),
        }
    }

    fn path(&self, ino: INodeNo) -> Option<Vec<String>> {
        let mut names = Vec::new();
        let mut at = ino.0;
        while at != INodeNo::ROOT.0 {
            let (parent, name) = self
                .entries
                .get(usize::try_from(at.checked_sub(1)?).ok()?)?;
            names.push(name.to_string());
            at = *parent;
        }
        names.reverse();
        Some(names)
    }

    /// The number of the directory containing `ino` (the root's is the root).
    fn parent(&self, ino: INodeNo) -> INodeNo {
        let idx = usize::try_from(ino.0.saturating_sub(1)).unwrap_or(usize::MAX);
        match self.entries.get(idx) {
            Some(&(parent, _)) if ino != INodeNo::ROOT => INodeNo(parent),
            _ => INodeNo::ROOT,
        }
    }

    /// The number of `name` in directory `parent`, given one if it has none yet.
    fn child(&mut self, parent: INodeNo, name: &str) -> INodeNo {
        if let Some(&ino) = self.children.get(&parent.0).and_then(|c| c.get(name)) {
            return INodeNo(ino);
        }
        let name: Arc<str> = Arc::from(name);
        self.entries.push((parent.0, name.clone()));
        let ino = self.entries.len() as u64;
        self.children.entry(parent.0).or_default().insert(name, ino);
        INodeNo(ino)
    }
}

/// The FUSE file system over an [`Admin`] tree.
pub struct AdminFs {
    admin: Arc<Admin>,
    inodes: Mutex<Inodes>,
    /// Rendered content of open files, by file handle.
    contents: Mutex<HashMap<u64, Vec<u8>>>,
    next_fh: AtomicU64,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(e: &AdminError) -> Errno {
    Errno::from_i32(e.errno())
}

fn strs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

impl AdminFs {
    /// Serve `admin` with every entry owned by `uid`/`gid` (the mounting user).
    pub fn new(admin: Arc<Admin>, uid: u32, gid: u32) -> Self {
        Self {
            admin,
            inodes: Mutex::new(Inodes::new()),
            contents: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            uid,
            gid,
            mounted_at: SystemTime::now(),
        }
    }

    fn path(&self, ino: INodeNo) -> Result<Vec<String>, Errno> {
        lock(&self.inodes).path(ino).ok_or(Errno::ENOENT)
    }

    fn attr(&self, ino: INodeNo, kind: EntryKind) -> FileAttr {
        let (kind, perm, size, nlink) = match kind {
            EntryKind::Dir => (FileType::Directory, DIR_MODE, 0, 2),
            EntryKind::File(access) => (FileType::RegularFile, access.mode(), FILE_SIZE, 1),
        };
        FileAttr {
            ino,
            size,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn stat_ino(&self, ino: INodeNo) -> Result<(Vec<String>, EntryKind), Errno> {
        let path = self.path(ino)?;
        let kind = self.admin.stat(&strs(&path)).map_err(|e| errno(&e))?;
        Ok((path, kind))
    }

    fn render(&self, ino: INodeNo) -> Result<Vec<u8>, Errno> {
        let path = self.path(ino)?;
        self.admin
            .read(&strs(&path))
            .map(String::into_bytes)
            .map_err(|e| errno(&e))
    }
}

impl Filesystem for AdminFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = (|| {
            let mut path = self.path(parent)?;
            let name = name.to_str().ok_or(Errno::ENOENT)?;
            path.push(name.to_string());
            let kind = self.admin.stat(&strs(&path)).map_err(|e| errno(&e))?;
            let ino = lock(&self.inodes).child(parent, name);
            Ok::<_, Errno>(self.attr(ino, kind))
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.stat_ino(ino) {
            Ok((_, kind)) => reply.attr(&TTL, &self.attr(ino, kind)),
            Err(e) => reply.error(e),
        }
    }

    /// Truncation (`O_TRUNC`, `truncate`) and time updates (`touch`) succeed without effect;
    /// ownership and mode cannot be changed.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        match self.stat_ino(ino) {
            Ok((_, kind)) => reply.attr(&TTL, &self.attr(ino, kind)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.stat_ino(ino) {
            Ok((_, EntryKind::Dir)) => reply.error(Errno::EISDIR),
            // Root passes the kernel's permission check for 0400 files; kernfs refuses write
            // opens of files without a store method with EACCES, and so do we.
            Ok((_, EntryKind::File(Access::ReadOnly)))
                if flags.acc_mode() != OpenAccMode::O_RDONLY =>
            {
                reply.error(Errno::EACCES)
            }
            Ok((_, EntryKind::File(_))) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let cached = (offset != 0)
            .then(|| lock(&self.contents).get(&fh.0).cloned())
            .flatten();
        let content = match cached {
            Some(content) => content,
            None => match self.render(ino) {
                Ok(content) => {
                    lock(&self.contents).insert(fh.0, content.clone());
                    content
                }
                Err(e) => return reply.error(e),
            },
        };
        let start = usize::try_from(offset).map_or(content.len(), |o| o.min(content.len()));
        let end = start.saturating_add(size as usize).min(content.len());
        reply.data(&content[start..end]);
    }

    /// One `write()` is one store, whatever its offset (sysfs ignores it too).
    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if data.len() > MAX_WRITE {
            return reply.error(Errno::E2BIG);
        }
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        match self.admin.write(&strs(&path), data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => {
                log::warn!(
                    "write {:?} to {}: {}",
                    String::from_utf8_lossy(data),
                    path.join("/"),
                    Chain(&e)
                );
                reply.error(errno(&e));
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.contents).remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    /// No file of the tree has ioctls, as sysfs attributes have none: ENOTTY, which is what
    /// programs expect from a file that is not a terminal (Python's `open()` asks `TCGETS`),
    /// and nothing logged (fuser's default logs every call as not implemented).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.stat_ino(ino) {
            Ok((_, EntryKind::Dir)) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let path = match self.path(ino) {
            Ok(path) => path,
            Err(e) => return reply.error(e),
        };
        let children = match self.admin.list(&strs(&path)) {
            Ok(children) => children,
            Err(e) => return reply.error(errno(&e)),
        };
        let entries = {
            let mut inodes = lock(&self.inodes);
            let parent = inodes.parent(ino);
            let mut entries = vec![
                (ino, FileType::Directory, ".".to_string()),
                (parent, FileType::Directory, "..".to_string()),
            ];
            for (name, kind) in children {
                let kind = match kind {
                    EntryKind::Dir => FileType::Directory,
                    EntryKind::File(_) => FileType::RegularFile,
                };
                entries.push((inodes.child(ino, &name), kind, name));
            }
            entries
        };
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    /// Only the tree creates files; as in sysfs, creating one is refused.
    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EACCES);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EACCES);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EPERM);
    }
}
