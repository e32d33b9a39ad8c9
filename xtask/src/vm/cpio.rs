//! A writer of uncompressed `newc` cpio archives, the initramfs format the kernel unpacks
//! itself (no compressor needed: qemu hands the archive to the kernel in memory).
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

pub struct Cpio {
    out: BufWriter<File>,
    next_ino: u32,
}

impl Cpio {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            out: BufWriter::new(File::create(path)?),
            next_ino: 1,
        })
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        self.header(name, S_IFDIR | 0o755, 2, 0, (0, 0))
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(name, S_IFCHR | perm, 1, 0, (major, minor))
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{name} is over 4 GiB")))?;
        self.header(name, S_IFREG | perm, 1, size, (0, 0))?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    /// A regular file copied from the host, streamed.
    pub fn file_from(&mut self, name: &str, perm: u32, src: &Path) -> io::Result<()> {
        let mut f = File::open(src)?;
        let len = f.metadata()?.len();
        let size =
            u32::try_from(len).map_err(|_| io::Error::other(format!("{name} is over 4 GiB")))?;
        self.header(name, S_IFREG | perm, 1, size, (0, 0))?;
        let copied = io::copy(&mut f, &mut self.out)?;
        if copied != len {
            return Err(io::Error::other(format!(
                "{} changed size while being copied",
                src.display()
            )));
        }
        self.pad(len as usize)
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.out.flush()
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u32,
        rdev: (u32, u32),
    ) -> io::Result<()> {
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino
        };
        self.next_ino += 1;
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            namesize as u32,
            0,
        ];
        let mut h = String::from("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(h.len() + namesize)
    }

    /// newc aligns both the header+name and the data to 4 bytes.
    fn pad(&mut self, len: usize) -> io::Result<()> {
        let n = (4 - len % 4) % 4;
        self.out.write_all(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_layout_is_newc() {
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.cpio");
        let mut c = Cpio::create(&path).expect("create");
        c.dir("bin").expect("dir");
        c.file("bin/x", 0o755, b"hello").expect("file");
        c.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(&bytes[..6], b"070701");
        // header (110) + "bin\0" (4) = 114, padded to 116
        assert_eq!(&bytes[110..114], b"bin\0");
        assert_eq!(&bytes[116..122], b"070701");
        let file_data = 116 + 110 + 6; // header + "bin/x\0" = 232, already aligned
        assert_eq!(&bytes[file_data..file_data + 5], b"hello");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
