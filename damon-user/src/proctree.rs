//! Process trees from `/proc`: a process's children, and every descendant of a set of
//! processes, as `damon serve`'s groups and `--follow-children` follow them. Read from
//! `/proc/PID/task/TID/children` where the kernel has those files (`CONFIG_PROC_CHILDREN`),
//! else from every process's parent in `/proc/PID/stat`.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::core::Pid;

/// Whether this kernel has `/proc/PID/task/TID/children` (`CONFIG_PROC_CHILDREN`).
fn has_children_files() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| Path::new("/proc/thread-self/children").exists())
}

/// Pids in a whitespace-separated list (`children` files).
fn pid_list(s: &str) -> impl Iterator<Item = Pid> + '_ {
    s.split_whitespace()
        .filter_map(|w| w.parse::<i32>().ok())
        .filter(|&p| p > 0)
        .map(Pid)
}

/// The children of `pid`: those of each of its threads, from their `children` files.
fn children_of(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| pid_list(&s).collect::<Vec<_>>())
        .collect()
}

/// Every process's parent, from `/proc/PID/stat` (field 4): the fallback for kernels without
/// `children` files.
fn parents() -> Vec<(Pid, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?.parse::<i32>().ok()?;
            Some((Pid(pid), Pid(ppid)))
        })
        .collect()
}

/// `roots` and all their descendants (children, grandchildren, ...) alive now. Polled at each
/// membership refresh: from the `children` files where the kernel has them, else from every
/// process's parent in `/proc/PID/stat`.
pub fn with_descendants(roots: &BTreeSet<Pid>) -> BTreeSet<Pid> {
    let mut all = roots.clone();
    if roots.is_empty() {
        return all;
    }
    if has_children_files() {
        let mut stack: Vec<Pid> = roots.iter().copied().collect();
        while let Some(p) = stack.pop() {
            for c in children_of(p) {
                if all.insert(c) {
                    stack.push(c);
                }
            }
        }
    } else {
        let mut kids: BTreeMap<Pid, Vec<Pid>> = BTreeMap::new();
        for (pid, ppid) in parents() {
            kids.entry(ppid).or_default().push(pid);
        }
        let mut stack: Vec<Pid> = roots.iter().copied().collect();
        while let Some(p) = stack.pop() {
            for &c in kids.get(&p).map_or(&[][..], Vec::as_slice) {
                if all.insert(c) {
                    stack.push(c);
                }
            }
        }
    }
    all
}

/// The children of `pid` now.
pub fn children(pid: Pid) -> Vec<Pid> {
    if has_children_files() {
        children_of(pid)
    } else {
        parents()
            .into_iter()
            .filter(|&(_, ppid)| ppid == pid)
            .map(|(p, _)| p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let kid = Pid(child.id() as i32);
        let me: BTreeSet<Pid> = [Pid::this()].into_iter().collect();
        let found = with_descendants(&me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found.contains(&kid) && found.contains(&Pid::this()),
            "{found:?}"
        );
        assert!(!with_descendants(&me).contains(&kid));
        assert_eq!(pid_list(" 3 4\n x 0").collect::<Vec<_>>(), [Pid(3), Pid(4)]);
        assert!(with_descendants(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn children_of_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let kid = Pid(child.id() as i32);
        let found = children(Pid::this());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&kid), "{found:?}");
    }
}
