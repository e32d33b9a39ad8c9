//! `--follow-children`: the processes the targets fork become targets too, as `perf record`
//! follows children. Found by polling each target's children ([`crate::proctree`]) at the
//! update interval (a fork is seen within one interval), which costs a few small reads per
//! target per interval; processes are told apart by pid and start time, so a reused pid is
//! never taken for the process that had it.
use std::time::{Duration, Instant};

use crate::core::Pid;

/// A process: pid and start time (clock ticks after boot, `/proc/PID/stat` field 22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: Pid,
    pub start: u64,
}

impl Proc {
    /// The process with this pid now, if any.
    pub fn of(pid: Pid) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.0)).ok()?;
        // The command may hold spaces and parentheses: fields start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let start = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Proc { pid, start })
    }

    /// Whether this very process (not one that reused its pid) still exists, zombie or not.
    pub fn exists(&self) -> bool {
        Proc::of(self.pid).is_some_and(|p| p.start == self.start)
    }

    /// Its children now ([`crate::proctree::children`]).
    pub fn children(&self) -> Vec<Proc> {
        let out: Vec<Proc> = crate::proctree::children(self.pid)
            .into_iter()
            .filter_map(Proc::of)
            .collect();
        // Still ours: the list read is not another process's that reused the pid.
        if !self.exists() {
            return Vec::new();
        }
        out
    }
}

/// The targets of a session that follows children.
#[derive(Debug)]
pub struct Follower {
    procs: Vec<Proc>,
    every: Duration,
    next: Instant,
    limit: usize,
    warned: bool,
}

impl Follower {
    /// Follows the descendants of `pids`, scanning every `every`, up to `limit` targets.
    pub fn new(pids: &[Pid], every: Duration, limit: usize) -> Follower {
        Follower {
            procs: pids.iter().filter_map(|&p| Proc::of(p)).collect(),
            every,
            next: Instant::now(),
            limit,
            warned: false,
        }
    }

    /// When due, the new target list: the targets that still exist, in their order, then
    /// the children found, in the order found (a child's children the scan after). `None`
    /// when not due or nothing changed.
    pub fn scan(&mut self) -> Option<Vec<Pid>> {
        if Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + self.every;
        let mut now: Vec<Proc> = self.procs.iter().copied().filter(Proc::exists).collect();
        let mut found = Vec::new();
        for p in &now {
            for c in p.children() {
                if !now.contains(&c) && !found.contains(&c) {
                    found.push(c);
                }
            }
        }
        for c in found {
            if now.len() >= self.limit {
                if !self.warned {
                    log::warn!(
                        "--follow-children: process {} and later children are not monitored: at \
                         most {} targets",
                        c.pid,
                        self.limit
                    );
                    self.warned = true;
                }
                break;
            }
            now.push(c);
        }
        if now == self.procs {
            return None;
        }
        self.procs = now;
        Some(self.procs.iter().map(|p| p.pid).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_is_found_and_dropped_when_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let me = Pid(std::process::id() as i32);
        let kid = Pid(child.id() as i32);
        let mut f = Follower::new(&[me], Duration::ZERO, 32);
        let pids = f.scan().expect("a new child");
        assert_eq!(pids[0], me);
        assert!(pids.contains(&kid), "{pids:?}");
        child.kill().expect("kill");
        child.wait().expect("reap");
        let pids = f.scan().expect("the child is gone");
        assert!(!pids.contains(&kid), "{pids:?}");
    }

    #[test]
    fn the_limit_holds_and_a_missing_root_is_ignored() {
        let me = Pid(std::process::id() as i32);
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .expect("sleep")
            })
            .collect();
        let mut f = Follower::new(&[me, Pid(i32::MAX)], Duration::ZERO, 2);
        let pids = f.scan().expect("one child taken");
        assert_eq!(pids.len(), 2, "{pids:?}");
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
    }

    #[test]
    fn proc_reads_the_start_time_past_odd_command_names() {
        let me = Proc::of(Pid(std::process::id() as i32)).expect("self");
        assert!(me.start > 0);
        assert!(me.exists());
        assert!(Proc::of(Pid(i32::MAX)).is_none());
    }
}
