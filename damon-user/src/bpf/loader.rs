//! Loading damon's eBPF object: the object embedded at build time, program lookups by name,
//! and the thread that forwards kernel-side log records.
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    thread::JoinHandle,
};

use aya::{Ebpf, EbpfLoader};
use damon_common::maps;

use super::BpfError;

/// The eBPF object built by `build.rs`, embedded in the binary.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/damon-ebpf"));

/// Loads the object (maps created, no program loaded yet) with room for `slots` targets.
///
/// Without the kernel's BTF: aya would otherwise parse all of `/sys/kernel/btf/vmlinux` at
/// every load (tens of milliseconds here, seconds under emulation), and none of our program
/// types needs it (no iterators, no fentry, no CO-RE relocations: offsets come from
/// [`super::KernelLayout`]).
pub fn load_object(slots: u32) -> Result<Ebpf, BpfError> {
    Ok(EbpfLoader::new()
        .btf(None)
        .map_max_entries(maps::SLOTS, slots)
        .load(EBPF_OBJECT)?)
}

pub(crate) fn prog_err(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> BpfError {
    move |source| BpfError::Program { name, source }
}

/// Map `name` of the object as an `M` (a hash map, an array, ...).
pub(crate) fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<M, BpfError>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf
        .map_mut(name)
        .ok_or(BpfError::Missing { kind: "map", name })?;
    M::try_from(m).map_err(|source| BpfError::Map { name, source })
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

/// The mmapable array map `name` of `ebpf`, mapped.
pub(crate) fn shared<T>(
    ebpf: &Ebpf,
    name: &'static str,
) -> Result<super::shared::Shared<T>, BpfError> {
    match ebpf.map(name) {
        Some(aya::maps::Map::Array(data)) => super::shared::Shared::map(data, name),
        Some(_) => Err(BpfError::Missing {
            kind: "array map",
            name,
        }),
        None => Err(BpfError::Missing { kind: "map", name }),
    }
}

/// Forwards aya-log records from the kernel side to the `log` crate (and so to env_logger).
/// The thread sleeps in `poll` until a record or the stop event comes: no periodic wake-ups.
pub(crate) struct LoggerThread {
    stop: OwnedFd,
    handle: Option<JoinHandle<()>>,
}

impl LoggerThread {
    pub(crate) fn start(ebpf: &mut Ebpf) -> Option<Self> {
        let mut logger = match aya_log::EbpfLogger::init(ebpf) {
            Ok(l) => l,
            Err(e) => {
                log::debug!("no eBPF log forwarding: {}", crate::error::Chain(&e));
                return None;
            }
        };
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            log::debug!(
                "no eBPF log forwarding: eventfd: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: a new fd that only this OwnedFd owns.
        let stop = unsafe { OwnedFd::from_raw_fd(fd) };
        let stop_fd = stop.as_raw_fd();
        let handle = std::thread::Builder::new()
            .name("damon-bpf-log".into())
            .spawn(move || {
                let mut pfd = [
                    libc::pollfd {
                        fd: logger.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: stop_fd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                loop {
                    // SAFETY: two valid pollfds; no timeout.
                    let r = unsafe { libc::poll(pfd.as_mut_ptr(), 2, -1) };
                    if r > 0 && pfd[0].revents != 0 {
                        logger.flush();
                    }
                    if r > 0 && pfd[1].revents != 0 {
                        break;
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
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr() as *const _, 8) };
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
