//! DAMOS, DAMON-based operation schemes: *for regions with this access pattern, do this
//! action, within this quota*. This module holds a scheme as the kernel's `struct damos` and
//! which regions its access pattern selects; [`engine`] applies schemes in a context's
//! passes, [`quota`] limits and tunes them. The admin tree stages schemes in its files and
//! hands them to the kdamond.
use std::fmt;
use std::str::FromStr;

use super::region::{AddrRange, Region};

mod engine;
pub mod memcg;
mod quota;
pub(crate) mod wmark;

pub(crate) use engine::SchemeRun;
pub(in crate::core) use engine::{any_due, apply_schemes};
pub use quota::{cold_score, hot_score};

/// `[min, max]`, both inclusive, as DAMOS access patterns are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    /// Every value.
    pub const ANY: Bounds = Bounds {
        min: 0,
        max: u64::MAX,
    };

    pub fn contains(&self, v: u64) -> bool {
        self.min <= v && v <= self.max
    }
}

/// Which regions a scheme applies to: size in bytes, `nr_accesses` in samples per aggregation
/// interval, age in aggregation intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessPattern {
    pub sz: Bounds,
    pub nr_accesses: Bounds,
    pub age: Bounds,
}

impl AccessPattern {
    /// Every region.
    pub const ANY: AccessPattern = AccessPattern {
        sz: Bounds::ANY,
        nr_accesses: Bounds::ANY,
        age: Bounds::ANY,
    };

    /// Whether the pattern selects `r` (the kernel's `__damos_valid_target()`): every bound
    /// inclusive, `nr_accesses` taken from the moving average as `nr_accesses_bp / 10000`.
    pub fn matches(&self, r: &Region) -> bool {
        self.sz.contains(r.size())
            && self.nr_accesses.contains(u64::from(damos_nr_accesses(r)))
            && self.age.contains(u64::from(r.age))
    }
}

/// `nr_accesses` of a region as DAMOS sees it: the moving average, in samples.
pub fn damos_nr_accesses(r: &Region) -> u32 {
    r.nr_accesses_bp / 10_000
}

/// Defines a keyword enum with the kernel's words, in the kernel's order.
macro_rules! keywords {
    ($(#[$meta:meta])* $name:ident ($kind:literal) { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value with its keyword, in the kernel's order.
            pub const NAMES: &'static [($name, &'static str)] = &[$(($name::$variant, $word),)+];

            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::NAMES
                    .iter()
                    .find(|(_, word)| *word == s)
                    .map(|&(v, _)| v)
                    .ok_or_else(|| UnknownKeyword {
                        kind: $kind,
                        word: s.to_owned(),
                    })
            }
        }
    };
}

/// A word that names no value of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {word:?}")]
pub struct UnknownKeyword {
    pub kind: &'static str,
    pub word: String,
}

keywords! {
    /// What a scheme does to the regions it selects (`enum damos_action`, 6.18).
    Action ("action") {
        Willneed = "willneed",
        Cold = "cold",
        Pageout = "pageout",
        Hugepage = "hugepage",
        Nohugepage = "nohugepage",
        LruPrio = "lru_prio",
        LruDeprio = "lru_deprio",
        MigrateHot = "migrate_hot",
        MigrateCold = "migrate_cold",
        /// Changes nothing in memory; only counts and reports.
        Stat = "stat",
        /// Collapses the region into huge pages (`MADV_COLLAPSE`; kernels from 2026 have it).
        Collapse = "collapse",
    }
}

keywords! {
    /// What a quota goal measures (`enum damos_quota_goal_metric`, up to 6.18).
    GoalMetric ("quota goal metric") {
        UserInput = "user_input",
        SomeMemPsiUs = "some_mem_psi_us",
        NodeMemUsedBp = "node_mem_used_bp",
        NodeMemFreeBp = "node_mem_free_bp",
        NodeMemcgUsedBp = "node_memcg_used_bp",
        NodeMemcgFreeBp = "node_memcg_free_bp",
    }
}

/// Why this build cannot carry out `action` on another process; `None` when it can.
pub fn unsupported_action(action: Action) -> Option<&'static str> {
    match action {
        Action::Hugepage | Action::Nohugepage => {
            Some("process_madvise cannot apply MADV_HUGEPAGE or MADV_NOHUGEPAGE to another process")
        }
        Action::LruPrio => Some("no interface raises the LRU priority of another process's pages"),
        Action::MigrateHot | Action::MigrateCold => {
            Some("migrating pages between NUMA nodes is not supported by this build")
        }
        _ => None,
    }
}

/// Why this build cannot tune a quota towards `metric`; `None` when it can.
pub fn unsupported_goal_metric(metric: GoalMetric) -> Option<&'static str> {
    match metric {
        GoalMetric::NodeMemcgUsedBp | GoalMetric::NodeMemcgFreeBp => {
            Some("per-cgroup memory of a node is not measured by this build")
        }
        _ => None,
    }
}

/// Checks what this build can do of `scheme`: its action and its quota goals. The admin tree
/// and the command line refuse a scheme for the same reasons, in the same words.
pub fn check_scheme(scheme: &Scheme) -> Result<(), String> {
    if let Some(why) = unsupported_action(scheme.action) {
        return Err(format!("action {} is refused: {why}", scheme.action));
    }
    if let Some((metric, why)) = scheme
        .quotas
        .goals
        .iter()
        .find_map(|g| unsupported_goal_metric(g.metric).map(|why| (g.metric, why)))
    {
        return Err(format!("quota goal metric {metric} is refused: {why}"));
    }
    // Only `stat` evaluates folio filters (as the kernel's vaddr); `young` would need the
    // Accessed bits the monitor itself reads and clears.
    if scheme.action == Action::Stat
        && let Some(f) = scheme
            .ops_filters
            .iter()
            .find(|f| f.kind == FilterKind::Young)
    {
        return Err(format!(
            "a {} filter cannot be evaluated by stat in this build: reading whether a page \
             is young would clear the bit the monitor samples",
            f.kind.filter_type()
        ));
    }
    Ok(())
}

/// One goal a quota is tuned towards (`struct damos_quota_goal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaGoal {
    pub metric: GoalMetric,
    pub target_value: u64,
    pub current_value: u64,
    pub nid: i32,
}

/// How much a scheme may do (`struct damos_quota`): time (ms) and size (bytes) per reset
/// interval, how regions are prioritized within it, and goals that tune it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    pub ms: u64,
    pub bytes: u64,
    pub reset_interval_ms: u64,
    pub weight_sz_permil: u32,
    pub weight_nr_accesses_permil: u32,
    pub weight_age_permil: u32,
    pub goals: Vec<QuotaGoal>,
}

keywords! {
    /// What a scheme's watermarks measure (`enum damos_wmark_metric`).
    WmarkMetric ("watermark metric") {
        /// Always active.
        None = "none",
        /// Free memory in per-mille of all memory (`MemFree * 1000 / MemTotal`).
        FreeMemRate = "free_mem_rate",
    }
}

/// When a scheme is active (`struct damos_watermarks`): with a metric, between `low` and
/// `high`, activated only once the metric falls below `mid`; checked every sample, and every
/// `interval_us` while all schemes of the context are inactive (which pauses monitoring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    pub metric: WmarkMetric,
    pub interval_us: u64,
    pub high: u64,
    pub mid: u64,
    pub low: u64,
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            metric: WmarkMetric::None,
            interval_us: 0,
            high: 0,
            mid: 0,
            low: 0,
        }
    }
}

keywords! {
    /// What a DAMOS filter looks at (`enum damos_filter_type`, 6.18).
    FilterType ("filter type") {
        Anon = "anon",
        Active = "active",
        Memcg = "memcg",
        Young = "young",
        HugepageSize = "hugepage_size",
        Unmapped = "unmapped",
        Addr = "addr",
        Target = "target",
    }
}

impl FilterType {
    /// Types DAMON's core evaluates on whole regions (`addr`, `target`); the others are
    /// evaluated by the operations set on each folio.
    pub fn is_core(self) -> bool {
        matches!(self, FilterType::Addr | FilterType::Target)
    }
}

/// A filter's type with its argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterKind {
    Anon,
    Active,
    /// Pages charged to the memory cgroup with this id (the cgroup directory's inode number).
    Memcg {
        id: u64,
    },
    Young,
    /// Folios of `min..=max` bytes.
    HugepageSize(Bounds),
    Unmapped,
    /// Addresses in `[start, end)`, both aligned down to a page.
    Addr(AddrRange),
    /// The target at this index of the context.
    Target(usize),
}

impl FilterKind {
    pub fn filter_type(&self) -> FilterType {
        match self {
            FilterKind::Anon => FilterType::Anon,
            FilterKind::Active => FilterType::Active,
            FilterKind::Memcg { .. } => FilterType::Memcg,
            FilterKind::Young => FilterType::Young,
            FilterKind::HugepageSize(_) => FilterType::HugepageSize,
            FilterKind::Unmapped => FilterType::Unmapped,
            FilterKind::Addr(_) => FilterType::Addr,
            FilterKind::Target(_) => FilterType::Target,
        }
    }
}

/// One DAMOS filter (`struct damos_filter`): memory that has the type (`matching`) or has not
/// (`!matching`) is let through (`allow`) or kept out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub kind: FilterKind,
    pub matching: bool,
    pub allow: bool,
}

/// One scheme (`struct damos`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub action: Action,
    pub pattern: AccessPattern,
    pub quotas: Quotas,
    /// How often the scheme is applied, in microseconds; 0: every aggregation interval.
    pub apply_interval_us: u64,
    pub wmarks: Watermarks,
    /// Filters on regions (`addr`, `target`), in evaluation order.
    pub core_filters: Vec<Filter>,
    /// Filters on folios, in evaluation order. Like the kernel's vaddr, only `stat` evaluates
    /// them (into `sz_ops_filter_passed`); the madvise actions act on whole ranges.
    pub ops_filters: Vec<Filter>,
}

impl Scheme {
    /// A scheme doing `action` to the regions `pattern` selects, with no quota, watermark or
    /// filter, applied every aggregation interval.
    pub fn new(action: Action, pattern: AccessPattern) -> Self {
        Scheme {
            action,
            pattern,
            quotas: Quotas::default(),
            apply_interval_us: 0,
            wmarks: Watermarks::default(),
            core_filters: Vec::new(),
            ops_filters: Vec::new(),
        }
    }
}

/// A region a scheme's access pattern selected, as the kernel reports it in
/// `tried_regions/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriedRegion {
    pub range: AddrRange,
    /// [`damos_nr_accesses`] of the region.
    pub nr_accesses: u32,
    pub age: u32,
    /// Bytes of folios that passed the folio filters (`stat` with such filters; else 0).
    pub sz_filter_passed: u64,
}

impl From<&Region> for TriedRegion {
    fn from(r: &Region) -> Self {
        TriedRegion {
            range: r.range(),
            nr_accesses: damos_nr_accesses(r),
            age: r.age,
            sz_filter_passed: 0,
        }
    }
}

/// What a scheme did (`struct damos_stat`): running totals since the scheme was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchemeStats {
    /// Regions that reached the action, and their bytes.
    pub nr_tried: u64,
    pub sz_tried: u64,
    /// Regions the action did something to, and the bytes it applied to.
    pub nr_applied: u64,
    pub sz_applied: u64,
    /// Bytes of folios that passed the folio filters (`stat` with such filters only).
    pub sz_ops_filter_passed: u64,
    /// Charge windows that ended with the quota used up.
    pub qt_exceeds: u64,
}

/// Regions and patterns for the tests of the modules that select regions by pattern.
#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A region whose moving average and last count are `nr_accesses`.
    pub fn region(start: u64, end: u64, nr_accesses: u32, age: u32) -> Region {
        Region {
            last_nr_accesses: nr_accesses,
            nr_accesses_bp: nr_accesses * 10_000,
            age,
            ..Region::new(start, end)
        }
    }

    /// A pattern from `(min, max)` pairs of size, access count and age.
    pub fn pattern(sz: (u64, u64), nr: (u64, u64), age: (u64, u64)) -> AccessPattern {
        let b = |(min, max)| Bounds { min, max };
        AccessPattern {
            sz: b(sz),
            nr_accesses: b(nr),
            age: b(age),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{pattern, region};
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        let p = pattern((4096, 8192), (2, 3), (1, 1));
        assert!(p.matches(&region(0, 4096, 2, 1)));
        assert!(p.matches(&region(0, 8192, 3, 1)));
        assert!(!p.matches(&region(0, 4095, 2, 1)));
        assert!(!p.matches(&region(0, 8193, 2, 1)));
        assert!(!p.matches(&region(0, 4096, 1, 1)));
        assert!(!p.matches(&region(0, 4096, 4, 1)));
        assert!(!p.matches(&region(0, 4096, 2, 0)));
        assert!(!p.matches(&region(0, 4096, 2, 2)));
    }

    #[test]
    fn nr_accesses_comes_from_the_moving_average() {
        let p = pattern((0, u64::MAX), (5, 5), (0, u64::MAX));
        let mut r = region(0, 4096, 0, 0);
        r.nr_accesses_bp = 59_999;
        assert!(p.matches(&r));
        assert_eq!(TriedRegion::from(&r).nr_accesses, 5);
    }

    #[test]
    fn keywords_round_trip() {
        for &(action, word) in Action::NAMES {
            assert_eq!(word.parse::<Action>(), Ok(action));
            assert_eq!(action.to_string(), word);
        }
        assert_eq!(Action::NAMES.len(), 11);
        assert_eq!(
            "stat\n".parse::<Action>().unwrap_err().to_string(),
            "unknown action \"stat\\n\""
        );
        assert_eq!("user_input".parse(), Ok(GoalMetric::UserInput));
    }
}
