//! Output files that are safe to write in a directory other users can write to, such as
//! `/tmp`: the content goes into a new file of ours, which then replaces whatever the path
//! named.
//!
//! The new file is created without a name (`O_TMPFILE`) in the target's directory or, on file
//! systems without `O_TMPFILE`, under a random name with `O_CREAT|O_EXCL|O_NOFOLLOW`; so no
//! file, hard link or symbolic link that someone planted is ever opened or written through.
//! [`NewFile::install`] gives it a fresh random name (`linkat`, which never replaces) and
//! renames that over the target: rename(2) replaces the directory entry, so a symlink at the
//! target is replaced, not followed. Every step works on a descriptor of the directory, opened
//! once. A process killed before `install` leaves nothing behind (with `O_TMPFILE`; the named
//! fallback leaves its random name).
use std::{
    ffi::{OsStr, OsString},
    fs::File,
    io::{self, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use rustix::fs::{AtFlags, CWD, Mode, OFlags};

/// Random names tried before giving up: a clash means someone is planting names in the
/// directory, and each name is 64 random bits.
const NAME_TRIES: usize = 16;

/// A file being written for `target`, not visible there until [`install`](Self::install).
#[derive(Debug)]
pub struct NewFile {
    file: File,
    target: PathBuf,
    name: OsString,
    dir: TempName,
}

/// The target's directory, and the random name the new file has there meanwhile when
/// `O_TMPFILE` was not available; that name is removed on drop.
#[derive(Debug)]
struct TempName {
    dir: OwnedFd,
    name: Option<OsString>,
}

impl Drop for TempName {
    fn drop(&mut self) {
        if let Some(t) = self.name.take() {
            let _ = rustix::fs::unlinkat(&self.dir, t.as_os_str(), AtFlags::empty());
        }
    }
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {what}", path.display()),
    )
}

/// 64 random bits from the kernel, as hex, for names nobody can predict.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty())?;
    Ok(format!("{:016x}", u64::from_ne_bytes(bytes)))
}

/// `.NAME.RANDOM.tmp` beside the target.
fn temp_name(name: &OsStr) -> io::Result<OsString> {
    let mut n = OsString::from(".");
    n.push(name);
    n.push(format!(".{}.tmp", random_hex()?));
    Ok(n)
}

impl NewFile {
    /// A new, empty file for `path` with permission bits `mode` (less the umask), in the
    /// directory `path` names. Nothing appears at `path` until [`install`](Self::install).
    pub fn create(path: &Path, mode: u32) -> io::Result<NewFile> {
        Self::create_with(path, mode, true)
    }

    /// [`create`](Self::create); `unnamed: false` goes straight to the named fallback (for its
    /// tests: the file systems here all have `O_TMPFILE`).
    fn create_with(path: &Path, mode: u32, unnamed: bool) -> io::Result<NewFile> {
        let name = match path.file_name() {
            Some(n) if !path.as_os_str().as_bytes().ends_with(b"/") => n.to_os_string(),
            _ => return Err(invalid(path, "does not name a file")),
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = rustix::fs::open(
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("directory {}: {e}", parent.display()),
            )
        })?;
        let mode = Mode::from_raw_mode(mode);
        let unnamed = if unnamed {
            rustix::fs::openat(
                &dir,
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                mode,
            )
        } else {
            Err(rustix::io::Errno::OPNOTSUPP)
        };
        let (fd, temp) = match unnamed {
            Ok(fd) => (fd, None),
            // File systems without O_TMPFILE (EOPNOTSUPP; EISDIR from kernels that predate it).
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                let mut tries = 0;
                loop {
                    let candidate = temp_name(&name)?;
                    match rustix::fs::openat(
                        &dir,
                        candidate.as_os_str(),
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::RDWR
                            | OFlags::CLOEXEC,
                        mode,
                    ) {
                        Ok(fd) => break (fd, Some(candidate)),
                        Err(rustix::io::Errno::EXIST) if tries + 1 < NAME_TRIES => tries += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(NewFile {
            file: File::from(fd),
            target: path.to_path_buf(),
            name,
            dir: TempName { dir, name: temp },
        })
    }

    /// The file, to write its content.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Puts the file at the target path, replacing what was there (a symlink is replaced,
    /// not followed), and returns it, still open for writing.
    pub fn install(mut self) -> io::Result<File> {
        if self.dir.name.is_none() {
            self.dir.name = Some(self.link_unnamed()?);
        }
        let dir = &self.dir.dir;
        if let Some(temp) = &self.dir.name {
            // On failure the temporary name goes when `self` is dropped.
            rustix::fs::renameat(dir, temp.as_os_str(), dir, &self.name)?;
        }
        // Renamed: there is no temporary name left to remove.
        self.dir.name = None;
        Ok(self.file)
    }

    /// Gives the unnamed file a fresh random name in the directory.
    fn link_unnamed(&self) -> io::Result<OsString> {
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        for _ in 0..NAME_TRIES {
            let candidate = temp_name(&self.name)?;
            let linked = rustix::fs::linkat(
                CWD,
                proc_path.as_str(),
                &self.dir.dir,
                candidate.as_os_str(),
                AtFlags::SYMLINK_FOLLOW,
            )
            .or_else(|e| match e {
                // No /proc: AT_EMPTY_PATH does the same with CAP_DAC_READ_SEARCH.
                rustix::io::Errno::NOENT => rustix::fs::linkat(
                    &self.file,
                    "",
                    &self.dir.dir,
                    candidate.as_os_str(),
                    AtFlags::EMPTY_PATH,
                ),
                e => Err(e),
            });
            match linked {
                Ok(()) => return Ok(candidate),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "no free temporary name beside {} after {NAME_TRIES} tries",
                self.target.display()
            ),
        ))
    }
}

/// Writes `bytes` to a new file with `mode` and puts it at `path`, replacing what was there:
/// readers (and a run killed midway) see the previous content or the new one, never a mix.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut new = NewFile::create(path, mode)?;
    new.file().write_all(bytes)?;
    // Without this, a crash of the machine (not just of us) could leave an empty file under
    // the name.
    new.file().sync_all()?;
    new.install().map(drop)
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    };

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("out");
        symlink(&victim, &out).unwrap();
        replace(&out, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let meta = fs::symlink_metadata(&out).unwrap();
        assert!(meta.is_file(), "the link was replaced by a file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&out).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["out", "victim"], "temporary name left");
    }

    #[test]
    fn never_writes_into_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::write(&out, b"someone else's").unwrap();
        let before = fs::metadata(&out).unwrap().ino();
        // A hard link to the old file keeps its content: it is not truncated or written.
        let other = dir.path().join("other");
        fs::hard_link(&out, &other).unwrap();
        replace(&out, b"ours", 0o600).unwrap();
        assert_ne!(fs::metadata(&out).unwrap().ino(), before);
        assert_eq!(fs::read(&other).unwrap(), b"someone else's");
        assert_eq!(fs::read(&out).unwrap(), b"ours");
    }

    #[test]
    fn nothing_appears_before_install_and_nothing_stays_after_a_drop() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut new = NewFile::create(&out, 0o600).unwrap();
        new.file().write_all(b"partial").unwrap();
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        drop(new);
        assert!(names(dir.path()).is_empty());
        let mut new = NewFile::create(&out, 0o600).unwrap();
        new.file().write_all(b"one").unwrap();
        let mut file = new.install().unwrap();
        file.write_all(b" two").unwrap();
        assert_eq!(
            fs::read(&out).unwrap(),
            b"one two",
            "still open for appends"
        );
    }

    /// Where the file system has no `O_TMPFILE`: a random hidden name meanwhile, never one
    /// that exists (O_EXCL|O_NOFOLLOW), and nothing left after a drop or an install.
    #[test]
    fn the_named_fallback_is_as_safe() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let out = dir.path().join("out");
        symlink(&victim, &out).unwrap();
        let mut new = NewFile::create_with(&out, 0o600, false).unwrap();
        new.file().write_all(b"partial").unwrap();
        let during = names(dir.path());
        assert_eq!(during.len(), 3, "{during:?}");
        assert!(during[0].starts_with(".out.") && during[0].ends_with(".tmp"));
        drop(new);
        assert_eq!(names(dir.path()), ["out", "victim"]);
        let mut new = NewFile::create_with(&out, 0o600, false).unwrap();
        new.file().write_all(b"new").unwrap();
        new.install().unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&out).unwrap().is_file());
        assert_eq!(fs::read(&out).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["out", "victim"]);
    }

    #[test]
    fn bad_paths_are_named() {
        let err = replace(Path::new("/nonexistent-dir/out"), b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = replace(&dir.path().join("sub/"), b"x", 0o600).unwrap_err();
        assert!(err.to_string().contains("does not name a file"), "{err}");
        // A directory at the target is not replaced.
        fs::create_dir(dir.path().join("d")).unwrap();
        assert!(replace(&dir.path().join("d"), b"x", 0o600).is_err());
        assert_eq!(names(dir.path()), ["d"]);
    }
}
