//! Quotas: how much a scheme may do per charge window (`damos_adjust_quota()`,
//! `damos_set_effective_quota()`), the goals that tune it (`damon_feed_loop_next_input()`), and
//! the region scores that decide what comes first under it (`damon_hot_score()`,
//! `damon_cold_score()`).
use super::{GoalMetric, QuotaGoal, Quotas};
use crate::core::tune::feed_loop_next_input;
use crate::core::{Attrs, PAGE_SIZE, Region};

/// The highest region score (`DAMOS_MAX_SCORE`).
pub const MAX_SCORE: u32 = 99;

/// How hot `r` is, 0..=99, from its access frequency and age weighted per mille
/// (`damon_hot_score()`). `nr_accesses` is the raw counter of the current aggregation.
pub fn hot_score(r: &Region, attrs: &Attrs, q: &Quotas) -> u32 {
    let max_nr = u64::from(attrs.max_nr_accesses().max(1));
    let freq = u64::from(r.nr_accesses) * 100 / max_nr;
    let secs = u64::from(r.age) * attrs.aggr_us / 1_000_000;
    let mut bits = (64 - secs.leading_zeros()).min(32) as i64;
    if freq == 0 {
        bits = -bits;
    }
    let agesub = (bits + 32) * 100 / 32 / 2;
    let (wf, wa) = (
        i64::from(q.weight_nr_accesses_permil),
        i64::from(q.weight_age_permil),
    );
    let hot = if wf + wa == 0 {
        0
    } else {
        (wf * freq as i64 + wa * agesub) / (wf + wa)
    };
    (hot * i64::from(MAX_SCORE) / 100).clamp(0, i64::from(MAX_SCORE)) as u32
}

/// How cold `r` is: `99 - hot_score` (`damon_cold_score()`).
pub fn cold_score(r: &Region, attrs: &Attrs, q: &Quotas) -> u32 {
    MAX_SCORE - hot_score(r, attrs, q)
}

/// A goal's current value where this build measures it itself; `user_input` is what the user
/// committed. Read at the start of every charge window.
pub fn goal_current_value(goal: &mut QuotaGoal, last_psi_total: &mut Option<u64>) {
    match goal.metric {
        GoalMetric::UserInput => {}
        GoalMetric::SomeMemPsiUs => {
            if let Some(total) = memory_psi_some_total_us() {
                let last = last_psi_total.replace(total).unwrap_or(total);
                goal.current_value = total.saturating_sub(last);
            }
        }
        GoalMetric::NodeMemUsedBp | GoalMetric::NodeMemFreeBp => {
            goal.current_value = node_mem_bp(goal.nid, goal.metric == GoalMetric::NodeMemFreeBp);
        }
        // Per-cgroup metrics are not measured by this build (refused at on/commit).
        GoalMetric::NodeMemcgUsedBp | GoalMetric::NodeMemcgFreeBp => {}
    }
}

/// `some ... total=` of `/proc/pressure/memory`, microseconds of memory stall.
fn memory_psi_some_total_us() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/pressure/memory").ok()?;
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// Used (or free) memory of NUMA node `nid` in basis points of its total; 0 without the node.
fn node_mem_bp(nid: i32, free: bool) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/sys/devices/system/node/node{nid}/meminfo"))
    else {
        return 0;
    };
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.contains(&format!(" {name}:")))?
            .split_whitespace()
            .rev()
            .nth(1)?
            .parse()
            .ok()
    };
    match (field("MemTotal"), field("MemFree")) {
        (Some(total), Some(mem_free)) if total > 0 => {
            let part = if free {
                mem_free
            } else {
                total - mem_free.min(total)
            };
            part * 10_000 / total
        }
        _ => 0,
    }
}

/// The charge state of one scheme's quota.
#[derive(Clone, Debug, Default)]
pub(super) struct QuotaState {
    /// The effective size quota of the current window, bytes; 0: unlimited.
    pub esz: u64,
    /// The goal-tuned part, in 1/10 000 bytes (0 until the first tuning).
    pub esz_bp: u64,
    /// Bytes charged in the current window, and in every window before it.
    pub charged_sz: u64,
    pub total_charged_sz: u64,
    /// Time spent in the action, every window.
    pub total_charged_ns: u64,
    /// When the current window started; `None` before the first.
    pub charged_from_ns: Option<u64>,
    /// Where the next window resumes: target index and address (`charge_*_from`).
    pub resume: Option<(usize, u64)>,
    /// The lowest score admitted in this pass.
    pub min_score: u32,
    pub last_psi_total: Option<u64>,
}

impl QuotaState {
    /// `esz` for a new window (`damos_set_effective_quota()`), tuning the goals first.
    pub fn effective_quota(&mut self, q: &mut Quotas) -> u64 {
        if q.ms == 0 && q.goals.is_empty() {
            return q.bytes;
        }
        let mut esz = u64::MAX;
        if !q.goals.is_empty() {
            let mut score = 0;
            for g in q.goals.iter_mut() {
                goal_current_value(g, &mut self.last_psi_total);
                let s = g.current_value.saturating_mul(10_000) / g.target_value.max(1);
                score = score.max(s);
            }
            self.esz_bp = feed_loop_next_input(self.esz_bp.max(10_000), score);
            esz = self.esz_bp / 10_000;
        }
        if q.ms != 0 {
            let throughput = match self.total_charged_ns {
                0 => PAGE_SIZE * 1024,
                ns => self.total_charged_sz.saturating_mul(1_000_000) / ns,
            };
            esz = esz.min(throughput.saturating_mul(q.ms));
        }
        if q.bytes != 0 && q.bytes < esz {
            esz = q.bytes;
        }
        esz
    }

    /// The start of a due pass: opens a new charge window when the last one is over, counting
    /// an exhausted one in `qt_exceeds`. No quota at all: nothing to do.
    pub fn adjust(&mut self, q: &mut Quotas, now_ns: u64, qt_exceeds: &mut u64) {
        if q.ms == 0 && q.bytes == 0 && q.goals.is_empty() {
            return;
        }
        if self.total_charged_sz == 0 && self.charged_from_ns.is_none() {
            self.charged_from_ns = Some(now_ns);
            self.esz = self.effective_quota(q);
        }
        let from = self.charged_from_ns.unwrap_or(now_ns);
        if now_ns >= from.saturating_add(q.reset_interval_ms.saturating_mul(1_000_000)) {
            if self.esz != 0 && self.charged_sz >= self.esz {
                *qt_exceeds += 1;
            }
            self.total_charged_sz += self.charged_sz;
            self.charged_from_ns = Some(now_ns);
            self.charged_sz = 0;
            self.esz = self.effective_quota(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(nr_accesses: u32, age: u32) -> Region {
        Region {
            nr_accesses,
            age,
            ..Region::new(0, 4096)
        }
    }

    #[test]
    fn scores_follow_the_reference_example() {
        // sample 5 ms, aggr 100 ms; weights nr 1, age 1.
        let attrs = Attrs::default();
        let q = Quotas {
            weight_nr_accesses_permil: 1,
            weight_age_permil: 1,
            ..Quotas::default()
        };
        assert_eq!(cold_score(&region(2, 30), &attrs, &q), 69);
        assert_eq!(cold_score(&region(0, 50), &attrs, &q), 78);
        assert_eq!(cold_score(&region(0, 5), &attrs, &q), 75);
        // No weights: every region is equally hot (0), so cold 99.
        assert_eq!(cold_score(&region(20, 9), &attrs, &Quotas::default()), 99);
    }

    #[test]
    fn the_feedback_loop_follows_the_quota_goal_selftest() {
        let run = |mut bp: u64, score: u64, n: usize| {
            for _ in 0..n {
                bp = feed_loop_next_input(bp.max(10_000), score);
            }
            bp
        };
        assert_eq!(run(0, 0, 5) / 10_000, 32);
        assert_eq!(run(320_000, 15_000, 5) / 10_000, 1);
        assert_eq!(run(10_000, 5_000, 6), 113_905);
        assert_eq!(run(113_905, 18_000, 2), 10_000);
        assert_eq!(feed_loop_next_input(50_000, 10_000), 50_000);
        assert_eq!(feed_loop_next_input(50_000, 25_000), 10_000);
    }

    #[test]
    fn a_window_ends_after_its_interval_and_counts_an_exhausted_quota() {
        let mut q = Quotas {
            bytes: 1 << 20,
            reset_interval_ms: 100,
            ..Quotas::default()
        };
        let (mut s, mut exceeds) = (QuotaState::default(), 0);
        s.adjust(&mut q, 1_000_000_000, &mut exceeds);
        assert_eq!(s.esz, 1 << 20);
        s.charged_sz = 1 << 20;
        s.adjust(&mut q, 1_050_000_000, &mut exceeds);
        assert_eq!(
            (s.charged_sz, exceeds),
            (1 << 20, 0),
            "the window is not over"
        );
        s.adjust(&mut q, 1_100_000_000, &mut exceeds);
        assert_eq!((s.charged_sz, s.total_charged_sz, exceeds), (0, 1 << 20, 1));
    }
}
