//! Which processes a target group holds now, and at which target index each is monitored.
//!
//! Membership is found by polling, once per update interval: `cgroup.procs` of the group's
//! cgroup and of every cgroup below it, `/proc/PID/comm` and `/proc/PID/exe` for executable
//! names. A process that joins is a target within one interval; one that exits is dropped
//! within one interval. (Watching cgroup events would be quicker; polling keeps this simple.)
//!
//! Process trees are polled the same way: at each refresh the descendants of a group's `pids`
//! (and, with `follow_children`, of the processes its `comm` names) are read from
//! `/proc/PID/task/TID/children`, so a child forked since the last refresh is a target within
//! one interval and one that exited is gone from the list.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use super::config::GroupConfig;
use crate::core::{Pid, ProcessKind, process_kind};
use crate::proctree::with_descendants;

/// What the metrics say about a process besides its pid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub comm: String,
    /// Its cgroup v2 path, as `/proc/PID/cgroup` shows it (`0::/a/b`); empty when unknown.
    pub cgroup: String,
}

/// The mount point of the cgroup v2 hierarchy, from `/proc/mounts`.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    cgroup2_mount_in(&mounts)
}

fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
    })
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The processes of the cgroup at `dir` and of every cgroup below it. A cgroup that does not
/// exist (yet) has none.
pub fn cgroup_pids(dir: &Path) -> BTreeSet<Pid> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(
                procs
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .filter(|&p| p > 0)
                    .map(Pid),
            );
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                // Child cgroups are directories; the interface files are not. Not following
                // links: cgroupfs has none.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    pids
}

/// The cgroup v2 path of `pid` (`0::/a/b` in `/proc/PID/cgroup`); empty when unknown.
pub fn proc_cgroup(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .unwrap_or_default()
}

/// Every process whose `comm` or executable file name is in `names`.
fn pids_by_name(names: &BTreeSet<String>) -> BTreeSet<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid)
        .filter(|&pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if names.contains(comm.trim_end_matches('\n')) {
                return true;
            }
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
                .is_some_and(|n| names.contains(&n))
        })
        .collect()
}

/// The monitorable processes group `g` selects now: user processes (not kernel threads, not
/// exited ones, not this agent), with their labels. `cgroup_root` is the cgroup2 mount.
pub fn resolve(g: &GroupConfig, cgroup_root: Option<&Path>) -> BTreeMap<Pid, ProcInfo> {
    // The processes whose descendants are members too: the listed pids always, the named
    // ones with `follow_children`.
    let mut roots: BTreeSet<Pid> = g.pids.clone();
    let mut pids = BTreeSet::new();
    if let (Some(cg), Some(root)) = (&g.cgroup, cgroup_root) {
        pids.extend(cgroup_pids(&root.join(cg.trim_start_matches('/'))));
    }
    if !g.comm.is_empty() {
        let named = pids_by_name(&g.comm);
        if g.follow_children {
            roots.extend(named);
        } else {
            pids.extend(named);
        }
    }
    pids.extend(with_descendants(&roots));
    pids.remove(&Pid::this());
    pids.into_iter()
        .filter_map(|pid| match process_kind(pid) {
            ProcessKind::User { comm } => Some((
                pid,
                ProcInfo {
                    comm,
                    cgroup: proc_cgroup(pid),
                },
            )),
            _ => None,
        })
        .collect()
}

/// The target order for a group's kdamond: `old` with the processes that left replaced, so
/// that a process that stays keeps its index (and the kdamond its regions, which a commit
/// keeps for a target whose pid stays at the same index). A left process's index takes a new
/// process first, else the last remaining target moves into it; new processes are appended,
/// up to `cap` targets in all, lowest pids first.
pub fn place(old: &[Pid], wanted: &BTreeSet<Pid>, cap: usize) -> Vec<Pid> {
    let mut order: Vec<Option<Pid>> = old
        .iter()
        .map(|p| wanted.contains(p).then_some(*p))
        .collect();
    let kept: BTreeSet<Pid> = order.iter().flatten().copied().collect();
    let mut newcomers = wanted.iter().filter(|p| !kept.contains(p)).copied();
    // Holes take newcomers first.
    for slot in order.iter_mut().filter(|s| s.is_none()) {
        match newcomers.next() {
            Some(p) => *slot = Some(p),
            None => break,
        }
    }
    // Remaining holes take the last targets.
    while let Some(hole) = order.iter().position(Option::is_none) {
        let last = order.pop().flatten();
        if let (Some(p), true) = (last, hole < order.len()) {
            order[hole] = Some(p);
        }
    }
    let mut order: Vec<Pid> = order.into_iter().flatten().collect();
    order.truncate(cap);
    order.extend(newcomers.take(cap.saturating_sub(order.len())));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pids(v: &[i32]) -> Vec<Pid> {
        v.iter().map(|&p| Pid(p)).collect()
    }

    fn set(v: &[i32]) -> BTreeSet<Pid> {
        pids(v).into_iter().collect()
    }

    #[test]
    fn place_keeps_indices_of_staying_processes() {
        assert_eq!(place(&[], &set(&[3, 1, 2]), 32), pids(&[1, 2, 3]));
        assert_eq!(
            place(&pids(&[5, 6, 7]), &set(&[5, 6, 7]), 32),
            pids(&[5, 6, 7])
        );
        // 6 left, 9 came: 9 takes its index.
        assert_eq!(
            place(&pids(&[5, 6, 7]), &set(&[5, 7, 9]), 32),
            pids(&[5, 9, 7])
        );
        // 6 left, nothing came: the last target moves into its index.
        assert_eq!(
            place(&pids(&[5, 6, 7, 8]), &set(&[5, 7, 8]), 32),
            pids(&[5, 8, 7])
        );
        // The last ones left.
        assert_eq!(place(&pids(&[5, 6, 7]), &set(&[5]), 32), pids(&[5]));
        assert_eq!(place(&pids(&[5, 6, 7]), &set(&[]), 32), pids(&[]));
        // Two left, three came.
        assert_eq!(
            place(&pids(&[1, 2, 3, 4]), &set(&[1, 4, 10, 11, 12]), 32),
            pids(&[1, 10, 11, 4, 12])
        );
        // Holes at both ends.
        assert_eq!(
            place(&pids(&[1, 2, 3, 4]), &set(&[2, 3]), 32),
            pids(&[3, 2])
        );
    }

    #[test]
    fn place_caps_the_count() {
        let wanted: BTreeSet<Pid> = (1..=40).map(Pid).collect();
        let order = place(&[], &wanted, 32);
        assert_eq!(order, (1..=32).map(Pid).collect::<Vec<_>>());
        // A capped group keeps who it monitors, and fills a hole when one leaves.
        let mut fewer = wanted.clone();
        fewer.remove(&Pid(3));
        let next = place(&order, &fewer, 32);
        assert_eq!(next.len(), 32);
        assert_eq!(next[2], Pid(33));
        assert_eq!(next[..2], order[..2]);
    }

    #[test]
    fn cgroup2_is_found_in_mounts() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
            cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(
            cgroup2_mount_in(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount_in("cgroup /a cgroup rw 0 0\n"), None);
        assert_eq!(
            cgroup2_mount_in("none /my\\040cg cgroup2 rw 0 0\n"),
            Some(PathBuf::from("/my cg"))
        );
    }

    #[test]
    fn our_own_cgroup_holds_us_but_we_are_never_a_target() {
        let root = cgroup2_mount();
        let me = Pid::this();
        let cg = proc_cgroup(me);
        if let Some(root) = &root
            && !cg.is_empty()
        {
            let members = cgroup_pids(&root.join(cg.trim_start_matches('/')));
            assert!(members.contains(&me), "{cg} does not list us");
        }
        let g = GroupConfig {
            name: "g".into(),
            cgroup: None,
            comm: BTreeSet::new(),
            pids: [me, Pid(1)].into_iter().collect(),
            follow_children: false,
            attrs: crate::core::Attrs::damo_defaults(),
            schemes: Vec::new(),
        };
        let found = resolve(&g, root.as_deref());
        assert!(!found.contains_key(&me));
        assert!(found.contains_key(&Pid(1)), "init is a user process");
    }

    #[test]
    fn a_missing_cgroup_has_no_processes() {
        assert!(cgroup_pids(Path::new("/nonexistent/damon-test")).is_empty());
    }
}
