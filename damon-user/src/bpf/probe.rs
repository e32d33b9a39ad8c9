//! What this kernel offers, checked once at start-up and reported in words.
use std::path::Path;

/// One missing prerequisite, phrased for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

/// Checks the prerequisites of the eBPF access check; returns what is missing (empty: all
/// present). Mounts tracefs first when it is not mounted and we may mount it, as the programs'
/// loader would: a freshly booted machine often has none mounted.
pub fn check_kernel() -> Vec<Missing> {
    let mut missing = Vec::new();
    let privileged = unsafe { libc::geteuid() } == 0 || has_caps();
    if !privileged {
        // Without privilege nothing else can be judged (tracefs is readable by root only):
        // say what is missing rather than guess at the rest.
        return vec![Missing(
            "root, or the capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_SYS_NICE and CAP_SYS_ADMIN (run it with sudo)"
                .into(),
        )];
    }
    ensure_tracefs();
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push(Missing(
            "kernel BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF)".into(),
        ));
    }
    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    if !tracefs.iter().any(|t| {
        Path::new(t)
            .join("events/exceptions/page_fault_user")
            .exists()
    }) {
        missing.push(Missing(
            "the exceptions:page_fault_user tracepoint (tracefs is not mounted and could not be mounted at /sys/kernel/tracing)"
                .into(),
        ));
    }
    // process_madvise with an empty vector: ENOSYS means the call does not exist.
    let r = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            -1,
            std::ptr::null::<libc::iovec>(),
            0,
            0,
            0,
        )
    };
    if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        missing.push(Missing(
            "the process_madvise system call (Linux 5.10 or later)".into(),
        ));
    }
    missing
}

/// Whether the effective capability set has all we need (CAP_SYS_ADMIN covers most).
fn has_caps() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_PTRACE: u64 = 19;
    const CAP_SYS_ADMIN: u64 = 21;
    const CAP_SYS_NICE: u64 = 23;
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    [
        CAP_SYS_PTRACE,
        CAP_SYS_ADMIN,
        CAP_SYS_NICE,
        CAP_PERFMON,
        CAP_BPF,
    ]
    .iter()
    .all(|c| eff & (1 << c) != 0)
}

/// Mounts tracefs at `/sys/kernel/tracing` when no tracefs is mounted yet (tracepoints attach
/// through it). Needs CAP_SYS_ADMIN; a failure is left for the attach to report.
pub fn ensure_tracefs() {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
        })
        .unwrap_or(false);
    if mounted {
        return;
    }
    let (src, target, fstype) = (c"nodev", c"/sys/kernel/tracing", c"tracefs");
    // SAFETY: plain mount(2) with NUL-terminated strings and no data.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        log::info!("mounted tracefs at /sys/kernel/tracing");
    } else {
        log::debug!(
            "mounting tracefs failed: {}",
            std::io::Error::last_os_error()
        );
    }
}
