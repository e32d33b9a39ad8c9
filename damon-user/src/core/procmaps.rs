//! A process's mappings from `/proc/PID/maps`, the input of the three-regions logic.
use super::target::Pid;
use std::io;

use super::ops::OpsError;
use super::region::AddrRange;

/// The address ranges of the mappings listed in `text` (the contents of `/proc/PID/maps`), in
/// file order, which is address order.
///
/// `[vsyscall]` is left out: it is the kernel's gate area, listed by procfs but not a VMA of the
/// process, so the kernel's three-regions walk never sees it; keeping it would make the gap below
/// it (about 2^63 bytes) the biggest one. Lines that do not start with `start-end` in hex are
/// skipped.
pub fn parse_proc_maps(text: &str) -> Vec<AddrRange> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<AddrRange> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let range = AddrRange::new(
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    // perms, offset, dev, inode, then the optional path.
    if range.is_empty() || fields.nth(4) == Some("[vsyscall]") {
        return None;
    }
    Some(range)
}

/// Reads and parses `/proc/<pid>/maps`. A process that no longer exists is
/// [`OpsError::TargetGone`]; any other failure (e.g. no ptrace access) is [`OpsError::Failed`].
pub fn read_proc_maps(pid: Pid) -> Result<Vec<AddrRange>, OpsError> {
    let path = format!("/proc/{pid}/maps");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse_proc_maps(&text)),
        Err(err) if is_gone(&err) => Err(OpsError::TargetGone { pid }),
        Err(err) => Err(OpsError::failed(format!("reading {path}"), err)),
    }
}

/// Whether `pid` still names a process, as a target's validity is judged by the kernel's
/// vaddr `target_valid()` (`get_pid_task()`): until it is reaped. A zombie is valid (it has no
/// address space left, so its regions read not accessed); a reaped process is not.
pub fn process_alive(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the parenthesised command name.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("X") | None)
}

/// What `/proc/<pid>/stat` says about a process a monitor is asked to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessKind {
    /// A user process, with its command name.
    User { comm: String },
    /// A kernel thread: no address space to monitor.
    KernelThread { comm: String },
    /// Exited but not reaped.
    Zombie { comm: String },
    /// No such process.
    Gone,
}

/// Classifies process `pid` from `/proc/<pid>/stat` (state and `PF_KTHREAD` in its flags).
pub fn process_kind(pid: Pid) -> ProcessKind {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return ProcessKind::Gone;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return ProcessKind::Gone;
    };
    let comm = stat[open + 1..close].to_owned();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next();
    // After the state: ppid, pgrp, session, tty_nr, tpgid, then flags (field 9 of proc(5)).
    let flags = rest.nth(5).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    match state {
        None | Some("X") => ProcessKind::Gone,
        Some("Z") => ProcessKind::Zombie { comm },
        _ if flags & PF_KTHREAD != 0 => ProcessKind::KernelThread { comm },
        _ => ProcessKind::User { comm },
    }
}

/// ENOENT when the pid directory is gone, ESRCH when the process died while being read.
fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d4c8a00000-55d4c8a02000 r--p 00000000 fe:00 1234     /usr/bin/cat
55d4c8a02000-55d4c8a07000 r-xp 00002000 fe:00 1234     /usr/bin/cat
55d4ca1c3000-55d4ca1e4000 rw-p 00000000 00:00 0        [heap]
7f0a1c000000-7f0a1c021000 rw-p 00000000 00:00 0
garbage line
7ffd47bfc000-7ffd47c1d000 rw-p 00000000 00:00 0        [stack]
7ffd47d4e000-7ffd47d52000 r--p 00000000 00:00 0        [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";

    #[test]
    fn parses_ranges_and_drops_vsyscall() {
        let maps = parse_proc_maps(MAPS);
        assert_eq!(maps.len(), 6);
        assert_eq!(maps[0], AddrRange::new(0x55d4c8a00000, 0x55d4c8a02000));
        assert_eq!(maps[3], AddrRange::new(0x7f0a1c000000, 0x7f0a1c021000));
        assert_eq!(maps[5], AddrRange::new(0x7ffd47d4e000, 0x7ffd47d52000));
    }

    #[test]
    fn reads_own_maps_and_reports_missing_process() {
        let own = read_proc_maps(Pid(std::process::id() as i32)).expect("own maps");
        assert!(own.len() > 3);
        assert!(own.windows(2).all(|w| w[0].end <= w[1].start));
        // Pid numbers are at most 2^22; this one cannot exist.
        assert!(matches!(
            read_proc_maps(Pid(i32::MAX)),
            Err(OpsError::TargetGone { pid: Pid(i32::MAX) })
        ));
    }
}
