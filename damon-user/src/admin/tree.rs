//! The whole admin tree: path resolution, reads, writes, and the locking
//! policy that mirrors the kernel's `damon_sysfs_lock`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use super::backend::KdamondBackend;
use super::dirs::kdamond::KdamondsDir;
use super::error::AdminError;
use super::node::{Access, Dir, EntryKind, MAX_DIRS, child_index};

/// The tree's root, `admin/`: the directory a mount shows.
pub struct Tree {
    kdamonds: KdamondsDir,
    backend: Arc<dyn KdamondBackend>,
}

fn not_found(path: &[&str]) -> AdminError {
    AdminError::NotFound {
        path: path.join("/"),
    }
}

impl Tree {
    /// An empty tree (`nr_kdamonds` 0) whose kdamonds will run on `backend`.
    pub fn new(backend: Arc<dyn KdamondBackend>) -> Self {
        Self {
            kdamonds: KdamondsDir::default(),
            backend,
        }
    }

    /// The directory at `path` (components relative to `admin/`).
    fn dir(&self, path: &[&str]) -> Result<&dyn Dir, AdminError> {
        let Some((first, rest)) = path.split_first() else {
            return Err(not_found(path));
        };
        if *first != "kdamonds" {
            return Err(not_found(path));
        }
        let mut dir: &dyn Dir = &self.kdamonds;
        for name in rest {
            dir = dir.dir(name).ok_or_else(|| not_found(path))?;
        }
        Ok(dir)
    }

    fn dir_mut(&mut self, path: &[&str]) -> Result<&mut dyn Dir, AdminError> {
        match path.split_first() {
            Some((&"kdamonds", rest)) => {
                let mut dir: &mut dyn Dir = &mut self.kdamonds;
                for name in rest {
                    dir = dir.dir_mut(name).ok_or_else(|| not_found(path))?;
                }
                Ok(dir)
            }
            _ => Err(not_found(path)),
        }
    }

    /// What `path` names. The empty path is the root directory.
    pub fn stat(&self, path: &[&str]) -> Result<EntryKind, AdminError> {
        let Some((name, parent)) = path.split_last() else {
            return Ok(EntryKind::Dir);
        };
        if parent.is_empty() {
            return match *name {
                "kdamonds" => Ok(EntryKind::Dir),
                _ => Err(not_found(path)),
            };
        }
        let dir = self.dir(parent)?;
        if let Some(&(_, access)) = dir.files().iter().find(|(f, _)| f == name) {
            return Ok(EntryKind::File(access));
        }
        dir.dir(name)
            .map(|_| EntryKind::Dir)
            .ok_or_else(|| not_found(path))
    }

    /// Entries of the directory at `path`: its files, then its subdirectories.
    pub fn list(&self, path: &[&str]) -> Result<Vec<(String, EntryKind)>, AdminError> {
        if path.is_empty() {
            return Ok(vec![("kdamonds".into(), EntryKind::Dir)]);
        }
        let dir = match self.stat(path)? {
            EntryKind::Dir => self.dir(path)?,
            EntryKind::File(_) => {
                return Err(AdminError::NotDir {
                    path: path.join("/"),
                });
            }
        };
        let files = dir
            .files()
            .into_iter()
            .map(|(f, a)| (f.to_string(), EntryKind::File(a)));
        let dirs = dir.dirs().into_iter().map(|d| (d, EntryKind::Dir));
        Ok(files.chain(dirs).collect())
    }

    /// Content of the file at `path`.
    pub fn read(&self, path: &[&str]) -> Result<String, AdminError> {
        match self.stat(path)? {
            EntryKind::Dir => Err(AdminError::IsDir {
                path: path.join("/"),
            }),
            EntryKind::File(_) => {
                let (name, parent) = path.split_last().ok_or_else(|| not_found(path))?;
                Ok(self.dir(parent)?.show(name))
            }
        }
    }

    /// Store `input` (the bytes of one `write()`) into the file at `path`.
    pub fn write(&mut self, path: &[&str], input: &[u8]) -> Result<(), AdminError> {
        match self.stat(path)? {
            EntryKind::Dir => {
                return Err(AdminError::IsDir {
                    path: path.join("/"),
                });
            }
            EntryKind::File(Access::ReadOnly) => {
                return Err(AdminError::ReadOnly {
                    path: path.join("/"),
                });
            }
            EntryKind::File(Access::ReadWrite) => {}
        }
        // kdamonds/N/state needs the backend; everything else is a plain store.
        if let ["kdamonds", idx, "state"] = path {
            let idx = child_index(idx).ok_or_else(|| not_found(path))?;
            let kdamond = self
                .kdamonds
                .kdamonds
                .items
                .get_mut(idx)
                .ok_or_else(|| not_found(path))?;
            return kdamond.handle_state(idx, input, self.backend.as_ref());
        }
        let (name, parent) = path.split_last().ok_or_else(|| not_found(path))?;
        if name.starts_with("nr_") {
            // The directories it creates must fit beside all the others.
            let elsewhere = self.nr_dirs() - self.dir(parent)?.nr_dirs();
            let room = MAX_DIRS.saturating_sub(elsewhere);
            return self.dir_mut(parent)?.store_nr(name, input, room);
        }
        self.dir_mut(parent)?.store(name, input)
    }

    /// Directories in the tree, `admin/` included (at most [`MAX_DIRS`] after any write).
    pub fn nr_dirs(&self) -> usize {
        1 + self.kdamonds.nr_dirs()
    }

    /// Whether any kdamond has a `refresh_ms` refresh due at `now`.
    pub fn refresh_due(&self, now: Instant) -> bool {
        self.kdamonds
            .kdamonds
            .items
            .iter()
            .any(|kdamond| kdamond.refresh_due(now))
    }

    /// Run due `refresh_ms` refreshes of every kdamond.
    pub fn refresh(&mut self, now: Instant) {
        for (idx, kdamond) in self.kdamonds.kdamonds.items.iter_mut().enumerate() {
            kdamond.refresh_if_due(idx, now);
        }
    }
}

/// Whether a write takes the writers' lock with `try_lock` (EBUSY when held), as the
/// kernel's store functions that take `damon_sysfs_lock` with `mutex_trylock()`: `state` and
/// every `nr_*` file. Other stores in the kernel take no lock at all; here they, like reads,
/// only wait for the tree's data lock, which is held as briefly as a value store.
pub fn write_uses_trylock(path: &[&str]) -> bool {
    path.last()
        .is_some_and(|name| *name == "state" || name.starts_with("nr_"))
}

/// The shared tree with the kernel's locking behaviour; what the FUSE server and the
/// `refresh_ms` ticker use.
///
/// Two locks, so that only the contention the kernel has can make a write fail:
/// - `writers` is `damon_sysfs_lock`: `state`/`nr_*` writers and a due `refresh_ms` refresh
///   take it with `try_lock`, so one of them meeting another gets EBUSY (the refresh skips a
///   tick), exactly as in the kernel;
/// - `tree` guards the data and is always waited for: readers, lookups, value stores and the
///   ticker's "is anything due" check hold it for microseconds and never cause an EBUSY (a
///   sequential script must not see one because a directory listing ran in between).
///
/// Lock order: `writers` before `tree`.
pub struct Admin {
    writers: Mutex<()>,
    tree: Mutex<Tree>,
}

impl Admin {
    pub fn new(backend: Arc<dyn KdamondBackend>) -> Self {
        Self {
            writers: Mutex::new(()),
            tree: Mutex::new(Tree::new(backend)),
        }
    }

    /// Wait for the data lock. A panic while holding it cannot leave a half-applied store
    /// (every store validates before it assigns), so a poisoned lock is still usable.
    pub fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Try the writers' lock (`damon_sysfs_lock`); `None` when another writer holds it.
    pub fn try_lock_writers(&self) -> Option<MutexGuard<'_, ()>> {
        match self.writers.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    pub fn stat(&self, path: &[&str]) -> Result<EntryKind, AdminError> {
        self.lock().stat(path)
    }

    pub fn list(&self, path: &[&str]) -> Result<Vec<(String, EntryKind)>, AdminError> {
        self.lock().list(path)
    }

    pub fn read(&self, path: &[&str]) -> Result<String, AdminError> {
        self.lock().read(path)
    }

    /// A write, with EBUSY when another writer holds the writers' lock for `state`/`nr_*`
    /// files (see [`write_uses_trylock`]).
    pub fn write(&self, path: &[&str], input: &[u8]) -> Result<(), AdminError> {
        let _writer = if write_uses_trylock(path) {
            Some(self.try_lock_writers().ok_or_else(|| AdminError::Busy {
                reason: format!(
                    "{}: the admin tree is locked by another writer",
                    path.join("/")
                ),
            })?)
        } else {
            None
        };
        self.lock().write(path, input)
    }

    /// One `refresh_ms` tick: nothing unless a refresh is due; skipped when a writer holds
    /// the writers' lock, as the kernel's repeat call does.
    pub fn refresh(&self, now: Instant) {
        if !self.lock().refresh_due(now) {
            return;
        }
        if let Some(_writer) = self.try_lock_writers() {
            self.lock().refresh(now);
        }
    }
}
