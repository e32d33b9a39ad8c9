//! Mounting the admin tree: `mount(2)` of a `fuse.damon` file system on a `/dev/fuse`
//! descriptor served by `fuser` in background threads, a `refresh_ms` ticker, and a guard
//! that unmounts on drop.
//!
//! We call `mount(2)` ourselves (and hand the descriptor to `fuser::Session::from_fd`) to own
//! the unmount: a mount point still in use (a shell `cd`'d into it) is detached lazily
//! instead of left behind, and a mount that someone else already removed is never unmounted
//! twice. Needs root (CAP_SYS_ADMIN); no `fusermount` is involved.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, Session, SessionACL};
use rustix::fs::{Mode, OFlags};

use super::backend::KdamondBackend;
use super::fuse::AdminFs;
use super::tree::Admin;

/// How often the `refresh_ms` ticker looks for due refreshes.
const REFRESH_TICK: Duration = Duration::from_millis(20);

/// FUSE worker threads: more than one, so a slow `on` does not block readers of other files
/// and concurrent writers meet the tree's lock as they would in the kernel.
const FUSE_THREADS: usize = 2;

/// Options of a mount.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    /// Let users other than the mounting one in (`allow_other`); modes still apply.
    pub allow_other: bool,
}

/// A mounted admin tree. Dropping it unmounts (lazily if the mount is in use).
pub struct MountGuard {
    mountpoint: PathBuf,
    /// Device number of the mounted file system, to recognise our mount later.
    dev: u64,
    admin: Arc<Admin>,
    session: Option<BackgroundSession>,
    ticker: Option<(Sender<()>, JoinHandle<()>)>,
}

/// Mount the admin tree of `backend` at `dir` and serve it from background threads.
pub fn mount_background(dir: &Path, backend: Arc<dyn KdamondBackend>) -> io::Result<MountGuard> {
    mount_background_with(dir, backend, &MountOptions::default())
}

fn io_error(context: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{context}: {e}"))
}

/// mount(2) of our file system at `target`; errors name the mount point as `shown`.
fn mount_fuse(target: &Path, shown: &Path, fuse: &File, options: &MountOptions) -> io::Result<()> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode=40000,user_id={uid},group_id={gid},default_permissions",
        fuse.as_raw_fd()
    );
    if options.allow_other {
        data.push_str(",allow_other");
    }
    let c = |s: &[u8]| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let (source, target) = (c(b"damon")?, c(target.as_os_str().as_bytes())?);
    let (fstype, data) = (c(b"fuse.damon")?, c(data.as_bytes())?);
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (mounting FUSE needs root or CAP_SYS_ADMIN)"
        } else {
            ""
        };
        return Err(io_error(format!("mount {}{hint}", shown.display()), e));
    }
    Ok(())
}

fn umount(dir: &Path, flags: i32) -> io::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: target is a valid NUL-terminated string.
    if unsafe { libc::umount2(target.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The directory to mount on, opened (`O_PATH`) without following a symbolic link in its last
/// component: mounting through the descriptor covers exactly the directory that was checked,
/// whatever happens to the name meanwhile. A symbolic link is refused: in a directory others
/// can write to (`/tmp`), someone else may have planted it to have the tree hide a directory
/// of their choosing. Returns the descriptor and the directory's canonical path.
fn open_mount_point(dir: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    // Without a trailing slash, which would make the kernel follow a link ("link/" names the
    // link's target); Path's components leave it out.
    let dir = &match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => dir.to_path_buf(),
    };
    let fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    );
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) => {
            if let Ok(meta) = std::fs::symlink_metadata(dir)
                && meta.file_type().is_symlink()
            {
                let target = std::fs::read_link(dir)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "mount point {} is a symbolic link (to {target}, owned by uid {}); \
                         refusing to mount over what it points to: give the directory itself",
                        dir.display(),
                        meta.uid()
                    ),
                ));
            }
            return Err(io_error(format!("mount point {}", dir.display()), e.into()));
        }
    };
    let canonical = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| io_error(format!("mount point {}", dir.display()), e))?;
    Ok((fd, canonical))
}

/// [`mount_background`] with options.
pub fn mount_background_with(
    dir: &Path,
    backend: Arc<dyn KdamondBackend>,
    options: &MountOptions,
) -> io::Result<MountGuard> {
    let (dir_fd, dir) = open_mount_point(dir)?;
    let fuse = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io_error("open /dev/fuse".into(), e))?;
    let parent_dev = rustix::fs::fstat(&dir_fd)?.st_dev;
    let target = PathBuf::from(format!("/proc/self/fd/{}", dir_fd.as_raw_fd()));
    // Through the descriptor: the directory opened above, whatever its name points to now.
    mount_fuse(&target, &dir, &fuse, options)?;
    drop(dir_fd);

    let admin = Arc::new(Admin::new(backend));
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = AdminFs::new(admin.clone(), uid, gid);
    let acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let mut config = Config::default();
    config.n_threads = Some(FUSE_THREADS);
    // The kernel sent INIT at mount time; from_fd answers it before returning.
    let session = Session::from_fd(fs, OwnedFd::from(fuse), acl, config)
        .and_then(Session::spawn)
        .map_err(|e| {
            let _ = umount(&dir, libc::MNT_DETACH);
            io_error(format!("serving FUSE at {}", dir.display()), e)
        })?;
    let dev = match std::fs::metadata(&dir) {
        Ok(m) if m.dev() != parent_dev => m.dev(),
        other => {
            let _ = umount(&dir, libc::MNT_DETACH);
            return Err(io::Error::other(format!(
                "{} is not our mount after mounting it ({other:?})",
                dir.display()
            )));
        }
    };

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let ticker_admin = admin.clone();
    let ticker = thread::Builder::new()
        .name("damon-fs-refresh".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(REFRESH_TICK) {
                ticker_admin.refresh(Instant::now());
            }
        })?;

    Ok(MountGuard {
        mountpoint: dir,
        dev,
        admin,
        session: Some(session),
        ticker: Some((stop_tx, ticker)),
    })
}

impl MountGuard {
    /// Where the tree is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The tree being served, for in-process inspection.
    pub fn admin(&self) -> &Arc<Admin> {
        &self.admin
    }

    /// Whether the server still runs: false once the file system was unmounted, e.g. by an
    /// external `umount DIR`.
    pub fn is_serving(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Whether our file system is still what `mountpoint` shows.
    fn still_mounted(&self) -> bool {
        std::fs::metadata(&self.mountpoint).is_ok_and(|m| m.dev() == self.dev)
    }

    /// Unmount and stop serving. A mount point in use (open files, a process's working
    /// directory) is detached lazily: it disappears from the namespace at once and the
    /// remaining users see errors once this process exits.
    pub fn unmount(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        if let Some((stop, ticker)) = self.ticker.take() {
            let _ = stop.send(());
            let _ = ticker.join();
        }
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if !session.guard.is_finished() && self.still_mounted() {
            match umount(&self.mountpoint, 0) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    umount(&self.mountpoint, libc::MNT_DETACH).map_err(|e| {
                        io_error(format!("umount -l {}", self.mountpoint.display()), e)
                    })?;
                    // Users remain: the server thread ends when they do, or with the process.
                    log::info!(
                        "{} was in use; detached it lazily",
                        self.mountpoint.display()
                    );
                    return Ok(());
                }
                Err(e) => {
                    return Err(io_error(format!("umount {}", self.mountpoint.display()), e));
                }
            }
        }
        session
            .join()
            .map_err(|e| io_error(format!("FUSE server of {}", self.mountpoint.display()), e))
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("unmounting {}: {e}", self.mountpoint.display());
        }
    }
}
