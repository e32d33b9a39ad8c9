//! The DAMOS options of `damon record` and `damon top`: schemes given on the command line, in
//! damo's grammar (`--damos-action`, `--damos-access-rate`, ...; damo's `--damos_action`
//! spellings are aliases).
//!
//! As in damo, each `--damos-action` is one scheme, and the Nth occurrence of every other
//! `--damos-*` option belongs to the Nth scheme; a scheme without one has damo's default (any
//! size, access rate and age; no quota; applied every aggregation). Quota goals are handed out
//! in order, `--damos-nr-quota-goals` saying how many each scheme takes when there are several
//! schemes.
//!
//! Access rates are percentages of the most accesses an aggregation can see
//! (`aggr / sample`) and ages are times; both become the core's units (samples and aggregation
//! intervals) with the intervals given at the start, as damo converts them.
use anyhow::{Result, anyhow, bail};

use crate::core::AddrRange;
use crate::core::region::align_down;
use crate::core::scheme::{
    AccessPattern, Action, Bounds, Filter, FilterKind, FilterType, GoalMetric, QuotaGoal, Quotas,
    Scheme, Watermarks, WmarkMetric, check_scheme, memcg,
};

/// The `--damos-*` options, as typed: one entry per occurrence, with its values;
/// [`SchemeArgs::schemes`] turns them into schemes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemeArgs {
    pub damos_action: Vec<Vec<String>>,
    pub damos_access_rate: Vec<Vec<String>>,
    pub damos_sz_region: Vec<Vec<String>>,
    pub damos_age: Vec<Vec<String>>,
    pub damos_apply_interval: Vec<Vec<String>>,
    pub damos_quotas: Vec<Vec<String>>,
    pub damos_quota_goal: Vec<Vec<String>>,
    pub damos_nr_quota_goals: Vec<Vec<String>>,
    pub damos_wmarks: Vec<Vec<String>>,
    pub damos_filter: Vec<Vec<String>>,
    pub damos_nr_filters: Vec<Vec<String>>,
    /// Where each occurrence of each per-scheme option stood on the command line: the option,
    /// and the index of its first value.
    pub positions: Vec<(&'static str, Vec<usize>)>,
    /// damo's options this build does not take, as given: (long name, values).
    pub refused: Vec<(&'static str, Vec<String>)>,
}

/// damo's per-scheme options that this build does not take, with why; they are parsed
/// (hidden from the help) so that a damo command line using them gets this reason rather than
/// "unexpected argument". None at present.
const REFUSED: [(&str, &str, &str); 0] = [];

/// One `--damos-*` option: its id (damo's spelling, also an alias), its long name, how many values each
/// occurrence takes, their names, and its help.
struct OptionSpec {
    id: &'static str,
    long: &'static str,
    min: usize,
    max: usize,
    names: &'static [&'static str],
    help: &'static str,
}

const OPTIONS: [OptionSpec; 11] = [
    OptionSpec {
        id: "damos_action",
        long: "damos-action",
        min: 1,
        max: 2,
        names: &["ACTION", "APPLY_INTERVAL"],
        help: "Start a scheme that applies ACTION to the regions its access pattern selects \
(repeatable: one scheme each): stat, pageout, cold, willneed, lru_deprio, collapse. An optional \
second value is the scheme's apply interval (as --damos-apply-interval).",
    },
    OptionSpec {
        id: "damos_access_rate",
        long: "damos-access-rate",
        min: 2,
        max: 2,
        names: &["MIN", "MAX"],
        help: "Access rate bounds of the regions a scheme selects, in percent of the most \
accesses an aggregation can see (0%, 5%, min, max; a bare number is percent too).",
    },
    OptionSpec {
        id: "damos_sz_region",
        long: "damos-sz-region",
        min: 2,
        max: 2,
        names: &["MIN", "MAX"],
        help: "Size bounds of the regions a scheme selects (4K, 2M, 1GiB, min, max; a bare \
number is bytes).",
    },
    OptionSpec {
        id: "damos_age",
        long: "damos-age",
        min: 2,
        max: 2,
        names: &["MIN", "MAX"],
        help: "Age bounds of the regions a scheme selects: how long their access rate has \
stayed (100ms, 2s, 1m, min, max; a bare number is microseconds).",
    },
    OptionSpec {
        id: "damos_apply_interval",
        long: "damos-apply-interval",
        min: 1,
        max: 1,
        names: &["INTERVAL"],
        help: "How often a scheme is applied (500ms, 1s; a bare number is microseconds; 0: \
every aggregation interval).",
    },
    OptionSpec {
        id: "damos_quotas",
        long: "damos-quotas",
        min: 1,
        max: 6,
        names: &["QUOTA"],
        help: "A scheme's quotas, TIME_MS [SIZE [RESET_INTERVAL [WEIGHT_SZ WEIGHT_NR_ACCESSES \
WEIGHT_AGE]]]: time (ms) and size (10M) it may use per reset interval (ms, or 1s), and the weights (permil, or 50%) of size, access rate and age that rank regions under \
the quota. Values left out: 0 (no limit), 0, max (never resets), 0 0 0, as damo's.",
    },
    OptionSpec {
        id: "damos_quota_goal",
        long: "damos-quota-goal",
        min: 2,
        max: 3,
        names: &["METRIC", "TARGET", "EXTRA"],
        help: "A goal the size quota is tuned towards: METRIC TARGET, then as EXTRA for user_input \
the current value, for node_mem_used_bp and node_mem_free_bp the node id. Metrics: user_input, \
some_mem_psi_us (target: a time), node_mem_used_bp, node_mem_free_bp (target: basis points or \
40%). Needs --damos-quotas with a reset interval.",
    },
    OptionSpec {
        id: "damos_nr_quota_goals",
        long: "damos-nr-quota-goals",
        min: 1,
        max: usize::MAX,
        names: &["N"],
        help: "How many of the --damos-quota-goal options each scheme takes, in order (needed \
with goals and more than one scheme).",
    },
    OptionSpec {
        id: "damos_wmarks",
        long: "damos-wmarks",
        min: 5,
        max: 5,
        names: &["METRIC", "INTERVAL", "HIGH", "MID", "LOW"],
        help: "A scheme's watermarks: METRIC none or free_mem_rate (free memory, permil), \
checked every INTERVAL (5s; a bare number is microseconds) while the scheme is off; on below \
MID, off above HIGH or below LOW (permil, or 50%).",
    },
    OptionSpec {
        id: "damos_filter",
        long: "damos-filter",
        min: 2,
        max: 6,
        names: &["FILTER"],
        help: "A filter, one per option: allow|reject [none] TYPE [ARGS] (damo's grammar; \
none: memory that is not of the type). Types: anon, active, young, unmapped, memcg PATH, \
hugepage_size MIN MAX, addr START END, target INDEX. addr and target decide per region; the \
others, per folio, only for stat (as the kernel's vaddr). Filters go to the first scheme, or \
as --damos-nr-filters says.",
    },
    OptionSpec {
        id: "damos_nr_filters",
        long: "damos-nr-filters",
        min: 1,
        max: usize::MAX,
        names: &["N"],
        help: "How many of the --damos-filter options each scheme takes, in order (needed \
with filters and more than one scheme).",
    },
];

impl SchemeArgs {
    fn field_mut(&mut self, id: &str) -> Option<&mut Vec<Vec<String>>> {
        Some(match id {
            "damos_action" => &mut self.damos_action,
            "damos_access_rate" => &mut self.damos_access_rate,
            "damos_sz_region" => &mut self.damos_sz_region,
            "damos_age" => &mut self.damos_age,
            "damos_apply_interval" => &mut self.damos_apply_interval,
            "damos_quotas" => &mut self.damos_quotas,
            "damos_quota_goal" => &mut self.damos_quota_goal,
            "damos_nr_quota_goals" => &mut self.damos_nr_quota_goals,
            "damos_wmarks" => &mut self.damos_wmarks,
            "damos_filter" => &mut self.damos_filter,
            "damos_nr_filters" => &mut self.damos_nr_filters,
            _ => return None,
        })
    }
}

/// By hand rather than derived: each occurrence keeps its own values (an option with a
/// variable number of values, such as --damos-quotas, cannot be split apart afterwards).
impl clap::Args for SchemeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let mut cmd = cmd.next_help_heading("DAMOS (schemes)");
        for o in &OPTIONS {
            let arg = clap::Arg::new(o.id)
                .long(o.long)
                .alias(o.id)
                .help(o.help)
                .num_args(o.min..=o.max)
                .value_names(o.names)
                // Values never start with `-`; taking them lets a fixed count name a negative
                // value, while a variable count must stop at the next option.
                .allow_hyphen_values(o.min == o.max)
                .action(clap::ArgAction::Append);
            cmd = cmd.arg(arg);
        }
        for (id, long, _) in REFUSED {
            cmd = cmd.arg(
                clap::Arg::new(id)
                    .long(long)
                    .alias(id)
                    .num_args(1..)
                    .allow_hyphen_values(false)
                    .action(clap::ArgAction::Append)
                    .hide(true),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SchemeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = SchemeArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.positions.clear();
        self.refused = REFUSED
            .iter()
            .filter_map(|&(id, long, _)| {
                let values: Vec<String> = matches.get_many::<String>(id)?.cloned().collect();
                Some((long, values))
            })
            .collect();
        for o in &OPTIONS {
            // Indices of all values in order; each occurrence's first is where it stood.
            let mut indices = matches.indices_of(o.id).into_iter().flatten();
            let starts: Vec<usize> = matches
                .get_occurrences::<String>(o.id)
                .into_iter()
                .flatten()
                .filter_map(|vals| {
                    let n = vals.count();
                    let first = indices.next();
                    indices.by_ref().take(n.saturating_sub(1)).for_each(drop);
                    first
                })
                .collect();
            self.positions.push((o.id, starts));
            let occurrences = matches
                .get_occurrences::<String>(o.id)
                .map(|occ| occ.map(|vals| vals.cloned().collect()).collect())
                .unwrap_or_default();
            if let Some(field) = self.field_mut(o.id) {
                *field = occurrences;
            }
        }
        Ok(())
    }
}

/// The intervals the access rates and ages convert with.
#[derive(Clone, Copy, Debug)]
pub struct Units {
    pub sample_us: u64,
    pub aggr_us: u64,
}

impl SchemeArgs {
    /// A sentence for each per-scheme option that follows the `--damos-action` of another
    /// scheme than its own: as in damo, the Nth occurrence of an option belongs to the Nth
    /// scheme wherever it stands, which surprises a reader who expects it to belong to the
    /// action before it.
    pub fn misplaced(&self) -> Vec<String> {
        let actions = self
            .positions
            .iter()
            .find(|(id, _)| *id == "damos_action")
            .map_or(&[][..], |(_, p)| p.as_slice());
        let mut out = Vec::new();
        for (id, starts) in &self.positions {
            if matches!(
                *id,
                "damos_action"
                    | "damos_quota_goal"
                    | "damos_nr_quota_goals"
                    | "damos_filter"
                    | "damos_nr_filters"
            ) {
                continue;
            }
            for (n, &at) in starts.iter().enumerate() {
                let follows = actions.iter().rposition(|&a| a < at);
                if let Some(after) = follows.filter(|&after| after != n) {
                    let long = id.replace('_', "-");
                    out.push(format!(
                        "--{long} number {} follows the --damos-action of scheme {after} but \
                         belongs to scheme {n}: as in damo, the Nth --{long} belongs to the Nth \
                         scheme",
                        n + 1
                    ));
                }
            }
        }
        out
    }

    /// The schemes asked for, checked for what this build can do. Every error names the
    /// option and the value it refuses.
    pub fn schemes(&self, units: Units) -> Result<Vec<Scheme>> {
        if let Some((long, values)) = self.refused.first() {
            let why = REFUSED
                .iter()
                .find(|(_, l, _)| l == long)
                .map_or("", |(_, _, why)| why);
            bail!("--{long} {} is refused: {why}", values.join(" "));
        }
        let n = self.damos_action.len();
        let too_many = |opt: &str, given: usize| -> Result<()> {
            if given > n {
                bail!(
                    "{given} {opt} options but {n} schemes (--damos-action): the Nth {opt} \
                     belongs to the Nth scheme"
                );
            }
            Ok(())
        };
        too_many("--damos-access-rate", self.damos_access_rate.len())?;
        too_many("--damos-sz-region", self.damos_sz_region.len())?;
        too_many("--damos-age", self.damos_age.len())?;
        too_many("--damos-apply-interval", self.damos_apply_interval.len())?;
        too_many("--damos-quotas", self.damos_quotas.len())?;
        too_many("--damos-wmarks", self.damos_wmarks.len())?;
        let nr_goals = self.goals_per_scheme()?;
        let nr_filters = handed_out(
            n,
            self.damos_filter.len(),
            &self.damos_nr_filters,
            "--damos-filter",
            "--damos-nr-filters",
            "filters",
        )?;

        let mut goals = self.damos_quota_goal.iter();
        let mut filters = self.damos_filter.iter();
        let mut schemes = Vec::with_capacity(n);
        for (i, action_args) in self.damos_action.iter().enumerate() {
            let ctx = |e: anyhow::Error| anyhow!("scheme {i}: {e}");
            let scheme_goals: Vec<&Vec<String>> = goals.by_ref().take(nr_goals[i]).collect();
            let mut scheme = self
                .scheme(i, action_args, &scheme_goals, units)
                .map_err(ctx)?;
            if let Some(w) = self.damos_wmarks.get(i) {
                scheme.wmarks = parse_wmarks(w).map_err(ctx)?;
            }
            for f in filters.by_ref().take(nr_filters[i]) {
                let filter = parse_filter(f).map_err(ctx)?;
                if filter.kind.filter_type().is_core() {
                    scheme.core_filters.push(filter);
                } else {
                    scheme.ops_filters.push(filter);
                }
            }
            check_scheme(&scheme).map_err(|why| anyhow!("scheme {i}: {why}"))?;
            schemes.push(scheme);
        }
        Ok(schemes)
    }

    /// How many goals each scheme takes.
    fn goals_per_scheme(&self) -> Result<Vec<usize>> {
        handed_out(
            self.damos_action.len(),
            self.damos_quota_goal.len(),
            &self.damos_nr_quota_goals,
            "--damos-quota-goal",
            "--damos-nr-quota-goals",
            "goals",
        )
    }

    fn scheme(
        &self,
        i: usize,
        action_args: &[String],
        goal_args: &[&Vec<String>],
        units: Units,
    ) -> Result<Scheme> {
        let (action, inline_interval) = match action_args {
            [a] => (a, None),
            [a, interval] => (a, Some(interval)),
            _ => bail!("--damos-action takes ACTION [APPLY_INTERVAL]"),
        };
        let action: Action = action.parse().map_err(|e| {
            anyhow!(
                "--damos-action: {e}; actions: {}",
                Action::NAMES
                    .iter()
                    .map(|(_, w)| *w)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let given = self.damos_apply_interval.get(i).and_then(|v| v.first());
        let interval = match (inline_interval, given) {
            (Some(a), Some(b)) => bail!(
                "apply interval given twice: {a:?} with --damos-action and {b:?} with \
                 --damos-apply-interval"
            ),
            (Some(v), None) | (None, Some(v)) => Some(v),
            (None, None) => None,
        };
        let apply_interval_us = match interval {
            Some(v) => parse_time_us(v).map_err(|e| anyhow!("apply interval: {e}"))?,
            None => 0,
        };
        let pair = |v: Option<&Vec<String>>| -> Option<(String, String)> {
            v.and_then(|v| match v.as_slice() {
                [a, b] => Some((a.clone(), b.clone())),
                _ => None,
            })
        };
        let bounds = |opt: &str,
                      v: Option<(String, String)>,
                      parse: &dyn Fn(&str) -> Result<u64, String>|
         -> Result<Bounds> {
            let Some((min, max)) = v else {
                return Ok(Bounds::ANY);
            };
            let min_v = parse(&min).map_err(|e| anyhow!("{opt} MIN: {e}"))?;
            let max_v = parse(&max).map_err(|e| anyhow!("{opt} MAX: {e}"))?;
            if min_v > max_v {
                bail!("{opt}: MIN {min:?} is more than MAX {max:?}");
            }
            Ok(Bounds {
                min: min_v,
                max: max_v,
            })
        };
        let max_nr_accesses = (units.aggr_us / units.sample_us.max(1)).max(1);
        let access = |s: &str| -> Result<u64, String> {
            parse_percent(s).map(|p| percent_to_samples(p, max_nr_accesses))
        };
        let age = |s: &str| -> Result<u64, String> {
            parse_time_us(s).map(|us| match us {
                u64::MAX => u64::MAX,
                us => us / units.aggr_us.max(1),
            })
        };
        let pattern = AccessPattern {
            sz: bounds(
                "--damos-sz-region",
                pair(self.damos_sz_region.get(i)),
                &parse_size,
            )?,
            nr_accesses: bounds(
                "--damos-access-rate",
                pair(self.damos_access_rate.get(i)),
                &access,
            )?,
            age: bounds("--damos-age", pair(self.damos_age.get(i)), &age)?,
        };
        let mut quotas = match self.damos_quotas.get(i) {
            Some(q) => parse_quotas(q)?,
            None => Quotas::default(),
        };
        if !goal_args.is_empty() {
            if self.damos_quotas.get(i).is_none_or(|q| q.len() < 3) {
                bail!(
                    "--damos-quota-goal needs the quota's reset interval: give \
                     --damos-quotas TIME_MS SIZE RESET_INTERVAL"
                );
            }
            quotas.goals = goal_args
                .iter()
                .map(|g| parse_goal(g))
                .collect::<Result<_>>()?;
        }
        Ok(Scheme {
            quotas,
            apply_interval_us,
            ..Scheme::new(action, pattern)
        })
    }
}

/// `p` percent of `max_nr_accesses` samples, rounded down (as damo converts); `max` stays the
/// largest.
fn percent_to_samples(percent: f64, max_nr_accesses: u64) -> u64 {
    if percent == f64::INFINITY {
        return u64::MAX;
    }
    let v = (percent * max_nr_accesses as f64 / 100.0).floor();
    if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    }
}

/// A non-negative number, commas allowed as separators (`1,000`).
fn number(s: &str) -> Option<f64> {
    let t: String = s.trim().chars().filter(|&c| c != ',').collect();
    let v = t.parse::<f64>().ok()?;
    (v.is_finite() && v >= 0.0 && !t.is_empty()).then_some(v)
}

/// `v` rounded down into a u64, saturating.
fn to_u64(v: f64) -> u64 {
    if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v.floor() as u64
    }
}

/// A size in bytes: `4096`, `4K`, `4KB`, `4KiB` (all 1024-based, as damo's), up to `E`;
/// `min` (0) and `max`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const PREFIXES: [(char, u32); 6] = [
        ('K', 10),
        ('M', 20),
        ('G', 30),
        ('T', 40),
        ('P', 50),
        ('E', 60),
    ];
    let bad = || format!("{s:?} is not a size (4096, 4K, 2M, 1GiB, min, max)");
    let t = s.trim();
    match t {
        "min" => return Ok(0),
        "max" => return Ok(u64::MAX),
        _ => {}
    }
    // The longest suffix first: `KiB`, then `KB`, then `K` or `B`.
    let suffixes = PREFIXES
        .iter()
        .map(|&(p, shift)| (format!("{p}iB"), shift))
        .chain(PREFIXES.iter().map(|&(p, shift)| (format!("{p}B"), shift)))
        .chain(PREFIXES.iter().map(|&(p, shift)| (p.to_string(), shift)))
        .chain([("B".to_string(), 0)]);
    let (num, shift) = suffixes
        .into_iter()
        .find_map(|(suffix, shift)| t.strip_suffix(suffix.as_str()).map(|n| (n, shift)))
        .unwrap_or((t, 0));
    let v = number(num).ok_or_else(bad)?;
    Ok(to_u64(v * (1u64 << shift) as f64))
}

/// A time in microseconds: a bare number is microseconds; units `ns`, `us`, `ms`, `s`, `m`,
/// `h`, `d`; `min` (0) and `max`.
pub fn parse_time_us(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a time (100ms, 2s, 1m, a number of microseconds, min, max)");
    let t = s.trim();
    match t {
        "min" => return Ok(0),
        "max" => return Ok(u64::MAX),
        _ => {}
    }
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-3),
        ("us", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
        ("m", 60e6),
        ("h", 3600e6),
        ("d", 86400e6),
    ];
    let (num, scale) = UNITS
        .iter()
        .find_map(|&(u, scale)| t.strip_suffix(u).map(|n| (n, scale)))
        .unwrap_or((t, 1.0));
    let v = number(num).ok_or_else(bad)?;
    Ok(to_u64(v * scale))
}

/// A time in milliseconds: a bare number is milliseconds, or a time with a unit (`1s`).
fn parse_time_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Some(v) = number(t) {
        return Ok(to_u64(v));
    }
    parse_time_us(t).map(|us| if us == u64::MAX { us } else { us / 1000 })
}

/// A percentage: `5`, `5%`, `0.5%`; `min` (0) and `max` (infinite).
fn parse_percent(s: &str) -> Result<f64, String> {
    let bad = || format!("{s:?} is not a percentage (0%, 5%, 12.5%, min, max)");
    let t = s.trim();
    match t {
        "min" => return Ok(0.0),
        "max" => return Ok(f64::INFINITY),
        _ => {}
    }
    number(t.strip_suffix('%').unwrap_or(t)).ok_or_else(bad)
}

/// A ratio in `per` parts (1000: permil, 10000: basis points): a bare number is in those
/// parts, or a percentage (`50%`).
fn parse_parts(s: &str, per: f64, what: &str) -> Result<u64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => number(p).map(|p| p * per / 100.0),
        None => number(t),
    };
    v.map(to_u64)
        .ok_or_else(|| format!("{s:?} is not {what} or a percentage (50%)"))
}

/// `--damos-quotas TIME_MS [SIZE [RESET_INTERVAL [WEIGHT_SZ WEIGHT_NR_ACCESSES WEIGHT_AGE]]]`.
fn parse_quotas(q: &[String]) -> Result<Quotas> {
    let get = |i: usize| q.get(i).map(String::as_str);
    let weight = |i: usize, name: &str| -> Result<u32> {
        let Some(v) = get(i) else { return Ok(0) };
        let permil =
            parse_parts(v, 1000.0, "permil").map_err(|e| anyhow!("--damos-quotas {name}: {e}"))?;
        u32::try_from(permil).map_err(|_| anyhow!("--damos-quotas {name}: {v:?} is too large"))
    };
    Ok(Quotas {
        ms: match get(0) {
            Some(v) => parse_time_ms(v).map_err(|e| anyhow!("--damos-quotas TIME_MS: {e}"))?,
            None => 0,
        },
        bytes: match get(1) {
            Some(v) => parse_size(v).map_err(|e| anyhow!("--damos-quotas SIZE: {e}"))?,
            None => 0,
        },
        reset_interval_ms: match get(2) {
            Some(v) => {
                parse_time_ms(v).map_err(|e| anyhow!("--damos-quotas RESET_INTERVAL: {e}"))?
            }
            None => u64::MAX,
        },
        weight_sz_permil: weight(3, "WEIGHT_SZ")?,
        weight_nr_accesses_permil: weight(4, "WEIGHT_NR_ACCESSES")?,
        weight_age_permil: weight(5, "WEIGHT_AGE")?,
        goals: Vec::new(),
    })
}

/// How many of `given` per-scheme items (goals, filters) each of `n` schemes takes: all to
/// the first, or as the `--damos-nr-*` counts say.
fn handed_out(
    n: usize,
    given: usize,
    counts: &[Vec<String>],
    opt: &str,
    nr_opt: &str,
    what: &str,
) -> Result<Vec<usize>> {
    if given > 0 && n == 0 {
        bail!("{opt} without a scheme (--damos-action)");
    }
    let counts: Vec<&String> = counts.iter().flatten().collect();
    if counts.is_empty() {
        if n > 1 && given > 0 {
            bail!(
                "{given} {opt} options and {n} schemes: say how many {what} each scheme takes with {nr_opt}"
            );
        }
        let mut v = vec![0; n];
        if let Some(first) = v.first_mut() {
            *first = given;
        }
        return Ok(v);
    }
    let per_scheme = counts
        .iter()
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| anyhow!("{nr_opt}: {c:?} is not a number of {what}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if per_scheme.len() != n {
        bail!("{nr_opt} has {} values for {n} schemes", per_scheme.len());
    }
    let sum: usize = per_scheme.iter().sum();
    if sum != given {
        bail!("{nr_opt} adds up to {sum}, but {given} {opt} given");
    }
    Ok(per_scheme)
}

/// `--damos-wmarks METRIC INTERVAL HIGH MID LOW`.
fn parse_wmarks(w: &[String]) -> Result<Watermarks> {
    let [metric, interval, high, mid, low] = w else {
        bail!("--damos-wmarks takes METRIC INTERVAL HIGH MID LOW");
    };
    let metric: WmarkMetric = metric
        .parse()
        .map_err(|e| anyhow!("--damos-wmarks: {e}; metrics: none, free_mem_rate"))?;
    let mark = |v: &str, name: &str| -> Result<u64> {
        parse_parts(v, 1000.0, "permil").map_err(|e| anyhow!("--damos-wmarks {name}: {e}"))
    };
    Ok(Watermarks {
        metric,
        interval_us: parse_time_us(interval)
            .map_err(|e| anyhow!("--damos-wmarks INTERVAL: {e}"))?,
        high: mark(high, "HIGH")?,
        mid: mark(mid, "MID")?,
        low: mark(low, "LOW")?,
    })
}

/// One `--damos-filter`: damo's `allow|reject [none] TYPE [ARGS]`, or its older
/// `TYPE matching|nomatching [ARGS] [allow|reject]`.
fn parse_filter(words: &[String]) -> Result<Filter> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let bad = |why: String| anyhow!("--damos-filter {}: {why}", w.join(" "));
    let (allow, matching, ftype, args) = match w.as_slice() {
        [verdict @ ("allow" | "reject"), rest @ ..] => {
            let (matching, rest) = match rest {
                ["none" | "non", rest @ ..] => (false, rest),
                rest => (true, rest),
            };
            let [ftype, args @ ..] = rest else {
                return Err(bad("no filter type".into()));
            };
            (*verdict == "allow", matching, *ftype, args.to_vec())
        }
        [ftype, m @ ("matching" | "nomatching"), rest @ ..] => {
            let (args, allow) = match rest {
                [args @ .., v @ ("allow" | "pass" | "reject")] => {
                    (args, matches!(*v, "allow" | "pass"))
                }
                args => (args, false),
            };
            (allow, *m == "matching", *ftype, args.to_vec())
        }
        _ => {
            return Err(bad("expected allow|reject [none] TYPE [ARGS]".into()));
        }
    };
    let ftype: FilterType = ftype.parse().map_err(|e| {
        bad(format!(
            "{e}; types: {}",
            FilterType::NAMES
                .iter()
                .map(|(_, w)| *w)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let want = |n: usize, names: &str| -> Result<()> {
        if args.len() != n {
            return Err(bad(format!("{ftype} takes {names}")));
        }
        Ok(())
    };
    let kind = match ftype {
        FilterType::Anon | FilterType::Active | FilterType::Young | FilterType::Unmapped => {
            want(0, "no argument")?;
            match ftype {
                FilterType::Anon => FilterKind::Anon,
                FilterType::Active => FilterKind::Active,
                FilterType::Young => FilterKind::Young,
                _ => FilterKind::Unmapped,
            }
        }
        FilterType::Memcg => {
            want(1, "PATH")?;
            let id = memcg::id_of(args[0]).map_err(|e| bad(format!("memcg {:?}: {e}", args[0])))?;
            FilterKind::Memcg { id }
        }
        FilterType::HugepageSize => {
            want(2, "MIN MAX")?;
            let min = parse_size(args[0]).map_err(|e| bad(format!("MIN: {e}")))?;
            let max = parse_size(args[1]).map_err(|e| bad(format!("MAX: {e}")))?;
            if min > max {
                return Err(bad(format!("MIN {} is more than MAX {}", args[0], args[1])));
            }
            FilterKind::HugepageSize(Bounds { min, max })
        }
        FilterType::Addr => {
            want(2, "START END")?;
            let addr = |v: &str| -> Result<u64> {
                let t = v.trim();
                let parsed = match t.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok(),
                    None => parse_size(t).ok(),
                };
                parsed.ok_or_else(|| bad(format!("{v:?} is not an address")))
            };
            let (start, end) = (addr(args[0])?, addr(args[1])?);
            if end < start {
                return Err(bad(format!("END {} is before START {}", args[1], args[0])));
            }
            FilterKind::Addr(AddrRange::new(align_down(start), align_down(end)))
        }
        FilterType::Target => {
            want(1, "INDEX")?;
            let idx = args[0]
                .trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("{:?} is not a target index", args[0])))?;
            FilterKind::Target(idx)
        }
    };
    Ok(Filter {
        kind,
        matching,
        allow,
    })
}

/// `--damos-quota-goal METRIC TARGET [CURRENT | NID]`.
fn parse_goal(g: &[String]) -> Result<QuotaGoal> {
    let (metric_s, target_s, extra) = match g {
        [m, t] => (m, t, None),
        [m, t, e] => (m, t, Some(e)),
        _ => bail!("--damos-quota-goal takes METRIC TARGET [CURRENT | NID]"),
    };
    let metric: GoalMetric = metric_s.parse().map_err(|e| {
        anyhow!(
            "--damos-quota-goal: {e}; metrics: {}",
            GoalMetric::NAMES
                .iter()
                .map(|(_, w)| *w)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let bad_target = |e: String| anyhow!("--damos-quota-goal {metric} TARGET: {e}");
    let target_value = match metric {
        GoalMetric::SomeMemPsiUs => parse_time_us(target_s).map_err(bad_target)?,
        GoalMetric::UserInput => number(target_s)
            .map(to_u64)
            .ok_or_else(|| bad_target(format!("{target_s:?} is not a number")))?,
        _ => parse_parts(target_s, 10_000.0, "basis points").map_err(bad_target)?,
    };
    if target_value == 0 {
        bail!("--damos-quota-goal {metric} TARGET: {target_s:?}: a goal needs a target above 0");
    }
    let mut goal = QuotaGoal {
        metric,
        target_value,
        current_value: 0,
        nid: 0,
    };
    match (metric, extra) {
        (GoalMetric::UserInput, Some(c)) => {
            goal.current_value = number(c).map(to_u64).ok_or_else(|| {
                anyhow!("--damos-quota-goal user_input CURRENT: {c:?} is not a number")
            })?;
        }
        (GoalMetric::UserInput, None) => {
            bail!(
                "--damos-quota-goal user_input needs the current value: user_input TARGET CURRENT"
            )
        }
        (GoalMetric::NodeMemUsedBp | GoalMetric::NodeMemFreeBp, Some(nid)) => {
            goal.nid = nid
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|&n| n >= 0)
                .ok_or_else(|| {
                    anyhow!("--damos-quota-goal {metric} NID: {nid:?} is not a node id")
                })?;
        }
        (GoalMetric::NodeMemUsedBp | GoalMetric::NodeMemFreeBp, None) => {
            bail!("--damos-quota-goal {metric} needs the node id: {metric} TARGET NID")
        }
        (_, Some(extra)) => bail!("--damos-quota-goal {metric} takes no third value ({extra:?})"),
        (_, None) => {}
    }
    Ok(goal)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SchemeArgs,
    }

    /// damo's default intervals: 20 samples per aggregation.
    const UNITS: Units = Units {
        sample_us: 5_000,
        aggr_us: 100_000,
    };

    fn parse(args: &[&str]) -> Result<Vec<Scheme>> {
        let cli = Cli::try_parse_from(std::iter::once(&"damon").chain(args))
            .map_err(|e| anyhow!("{e}"))?;
        cli.args.schemes(UNITS)
    }

    fn err(args: &[&str]) -> String {
        format!("{:#}", parse(args).unwrap_err())
    }

    #[test]
    fn the_proactive_reclaim_recipe() {
        let s = parse(&[
            "--damos-action",
            "pageout",
            "--damos-access-rate",
            "0%",
            "0%",
            "--damos-age",
            "2s",
            "max",
            "--damos-quotas",
            "0",
            "10M",
            "1s",
        ])
        .unwrap();
        assert_eq!(
            s,
            vec![Scheme {
                action: Action::Pageout,
                pattern: AccessPattern {
                    sz: Bounds::ANY,
                    nr_accesses: Bounds { min: 0, max: 0 },
                    age: Bounds {
                        min: 20,
                        max: u64::MAX
                    },
                },
                quotas: Quotas {
                    ms: 0,
                    bytes: 10 << 20,
                    reset_interval_ms: 1000,
                    ..Quotas::default()
                },
                apply_interval_us: 0,
                ..Scheme::new(Action::Stat, AccessPattern::ANY)
            }]
        );
    }

    #[test]
    fn damo_spellings_and_several_schemes_in_order() {
        let s = parse(&[
            "--damos_action",
            "stat",
            "--damos_action",
            "cold",
            "500ms",
            "--damos_sz_region",
            "4K",
            "2MiB",
            "--damos_access_rate",
            "min",
            "max",
            "--damos_access_rate",
            "5",
            "50%",
            "--damos_age",
            "min",
            "1s",
            "--damos_apply_interval",
            "1s",
        ])
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].action, Action::Stat);
        assert_eq!(
            s[0].pattern.sz,
            Bounds {
                min: 4096,
                max: 2 << 20
            }
        );
        assert_eq!(s[0].pattern.nr_accesses, Bounds::ANY);
        assert_eq!(s[0].pattern.age, Bounds { min: 0, max: 10 });
        assert_eq!(s[0].apply_interval_us, 1_000_000);
        assert_eq!(s[0].quotas, Quotas::default());
        assert_eq!(s[1].action, Action::Cold);
        // 5% and 50% of 20 samples.
        assert_eq!(s[1].pattern.nr_accesses, Bounds { min: 1, max: 10 });
        assert_eq!(s[1].pattern.sz, Bounds::ANY);
        assert_eq!(s[1].pattern.age, Bounds::ANY);
        assert_eq!(s[1].apply_interval_us, 500_000);
    }

    #[test]
    fn quotas_weights_and_goals() {
        let s = parse(&[
            "--damos-action",
            "pageout",
            "--damos-quotas",
            "10",
            "1G",
            "1s",
            "50%",
            "300",
            "0",
            "--damos-quota-goal",
            "some_mem_psi_us",
            "1ms",
            "--damos-quota-goal",
            "node_mem_free_bp",
            "40%",
            "1",
            "--damos-quota-goal",
            "user_input",
            "100",
            "20",
        ])
        .unwrap();
        let q = &s[0].quotas;
        assert_eq!((q.ms, q.bytes, q.reset_interval_ms), (10, 1 << 30, 1000));
        assert_eq!(
            (
                q.weight_sz_permil,
                q.weight_nr_accesses_permil,
                q.weight_age_permil
            ),
            (500, 300, 0)
        );
        assert_eq!(
            q.goals,
            vec![
                QuotaGoal {
                    metric: GoalMetric::SomeMemPsiUs,
                    target_value: 1000,
                    current_value: 0,
                    nid: 0
                },
                QuotaGoal {
                    metric: GoalMetric::NodeMemFreeBp,
                    target_value: 4000,
                    current_value: 0,
                    nid: 1
                },
                QuotaGoal {
                    metric: GoalMetric::UserInput,
                    target_value: 100,
                    current_value: 20,
                    nid: 0
                },
            ]
        );
        // damo's defaults for what --damos-quotas leaves out.
        let s = parse(&["--damos-action", "stat", "--damos-quotas", "5"]).unwrap();
        assert_eq!(
            s[0].quotas,
            Quotas {
                ms: 5,
                reset_interval_ms: u64::MAX,
                ..Quotas::default()
            }
        );
    }

    #[test]
    fn goals_are_handed_out_by_count() {
        let args = [
            "--damos-action",
            "stat",
            "--damos-quotas",
            "0",
            "1M",
            "1s",
            "--damos-action",
            "cold",
            "--damos-quotas",
            "0",
            "2M",
            "1s",
            "--damos-quota-goal",
            "user_input",
            "10",
            "1",
            "--damos-quota-goal",
            "user_input",
            "20",
            "2",
        ];
        let e = err(&args);
        assert!(e.contains("--damos-nr-quota-goals"), "{e}");
        let mut with_counts = args.to_vec();
        with_counts.extend(["--damos-nr-quota-goals", "0", "2"]);
        let s = parse(&with_counts).unwrap();
        assert!(s[0].quotas.goals.is_empty());
        assert_eq!(
            s[1].quotas
                .goals
                .iter()
                .map(|g| g.target_value)
                .collect::<Vec<_>>(),
            [10, 20]
        );
        let mut wrong = args.to_vec();
        wrong.extend(["--damos-nr-quota-goals", "1", "2"]);
        let e = err(&wrong);
        assert!(e.contains("adds up to 3, but 2"), "{e}");
    }

    #[test]
    fn says_when_an_option_follows_another_schemes_action() {
        let cli = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once(&"damon").chain(args))
                .unwrap()
                .args
        };
        let in_order = cli(&[
            "--damos-action",
            "stat",
            "--damos-age",
            "1s",
            "max",
            "--damos-action",
            "cold",
            "--damos-age",
            "2s",
            "max",
        ]);
        assert_eq!(in_order.misplaced(), Vec::<String>::new());
        let skipped = cli(&[
            "--damos-action",
            "stat",
            "--damos-action",
            "cold",
            "--damos-sz-region",
            "1E",
            "max",
        ]);
        assert_eq!(
            skipped.misplaced(),
            [
                "--damos-sz-region number 1 follows the --damos-action of scheme 1 but belongs to \
              scheme 0: as in damo, the Nth --damos-sz-region belongs to the Nth scheme"
            ]
        );
        // The schemes are damo's all the same.
        let s = skipped.schemes(UNITS).unwrap();
        assert_eq!(s[0].pattern.sz.min, 1 << 60);
        assert_eq!(s[1].pattern.sz, Bounds::ANY);
    }

    #[test]
    fn value_grammar() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4 KiB"), Ok(4096));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("1,024"), Ok(1024));
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("max"), Ok(u64::MAX));
        assert_eq!(parse_size("min"), Ok(0));
        assert_eq!(parse_size("20E"), Ok(u64::MAX));
        assert_eq!(parse_time_us("100ms"), Ok(100_000));
        assert_eq!(parse_time_us("2s"), Ok(2_000_000));
        assert_eq!(parse_time_us("1m"), Ok(60_000_000));
        assert_eq!(parse_time_us("1500ns"), Ok(1));
        assert_eq!(parse_time_us("250"), Ok(250));
        assert_eq!(parse_time_ms("250"), Ok(250));
        assert_eq!(parse_time_ms("2s"), Ok(2000));
        assert_eq!(parse_percent("12.5%"), Ok(12.5));
        assert_eq!(parse_parts("50%", 1000.0, "permil"), Ok(500));
        assert_eq!(parse_parts("40%", 10_000.0, "bp"), Ok(4000));
        assert_eq!(percent_to_samples(100.0, 20), 20);
        assert_eq!(percent_to_samples(4.0, 20), 0);
        assert_eq!(percent_to_samples(f64::INFINITY, 20), u64::MAX);
    }

    #[test]
    fn bad_values_are_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--damos-action", "reclaim"], "unknown action \"reclaim\""),
            (
                &["--damos-action", "stat", "--damos-access-rate", "5x", "max"],
                "--damos-access-rate MIN: \"5x\" is not a percentage",
            ),
            (
                &["--damos-action", "stat", "--damos-access-rate", "-1%", "5%"],
                "\"-1%\" is not a percentage",
            ),
            (
                &["--damos-action", "stat", "--damos-sz-region", "4Q", "max"],
                "--damos-sz-region MIN: \"4Q\" is not a size",
            ),
            (
                &["--damos-action", "stat", "--damos-age", "2s", "forever"],
                "--damos-age MAX: \"forever\" is not a time",
            ),
            (
                &["--damos-action", "stat", "--damos-age", "5s", "1s"],
                "--damos-age: MIN \"5s\" is more than MAX \"1s\"",
            ),
            (
                &["--damos-action", "stat", "soon"],
                "apply interval: \"soon\" is not a time",
            ),
            (
                &["--damos-action", "stat", "--damos-quotas", "0", "lots"],
                "--damos-quotas SIZE: \"lots\" is not a size",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-quotas",
                    "0",
                    "1M",
                    "1s",
                    "5000000000",
                ],
                "--damos-quotas WEIGHT_SZ: \"5000000000\" is too large",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-quotas",
                    "0",
                    "1M",
                    "1s",
                    "--damos-quota-goal",
                    "free_mem",
                    "5",
                ],
                "unknown quota goal metric \"free_mem\"",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-quotas",
                    "0",
                    "1M",
                    "1s",
                    "--damos-quota-goal",
                    "user_input",
                    "10",
                ],
                "user_input needs the current value",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-quota-goal",
                    "user_input",
                    "10",
                    "5",
                ],
                "needs the quota's reset interval",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-age",
                    "1s",
                    "2s",
                    "--damos-age",
                    "1s",
                    "2s",
                ],
                "2 --damos-age options but 1 schemes",
            ),
            (
                &["--damos-access-rate", "0%", "0%"],
                "1 --damos-access-rate options but 0 schemes",
            ),
            (
                &[
                    "--damos_action",
                    "stat",
                    "--damos_wmarks",
                    "free_mem",
                    "5s",
                    "500",
                    "400",
                    "200",
                ],
                "--damos-wmarks: unknown watermark metric \"free_mem\"",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-wmarks",
                    "free_mem_rate",
                    "5s",
                    "lots",
                    "400",
                    "200",
                ],
                "--damos-wmarks HIGH: \"lots\" is not permil",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos_filter",
                    "reject",
                    "anonymous",
                ],
                "unknown filter type \"anonymous\"",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-filter",
                    "allow",
                    "addr",
                    "0x2000",
                ],
                "addr takes START END",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-filter",
                    "allow",
                    "addr",
                    "0x2000",
                    "0x1000",
                ],
                "END 0x1000 is before START 0x2000",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-filter",
                    "reject",
                    "young",
                ],
                "a young filter cannot be evaluated by stat",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-filter",
                    "allow",
                    "memcg",
                    "/no/such/group",
                ],
                "memcg \"/no/such/group\"",
            ),
            (
                &[
                    "--damos-action",
                    "stat",
                    "--damos-action",
                    "cold",
                    "--damos-filter",
                    "reject",
                    "anon",
                ],
                "say how many filters each scheme takes with --damos-nr-filters",
            ),
        ];
        for (args, want) in cases {
            let e = err(args);
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn watermarks_and_filters_in_damos_grammar() {
        let s = parse(&[
            "--damos-action",
            "stat",
            "--damos-action",
            "pageout",
            "--damos-wmarks",
            "none",
            "0",
            "0",
            "0",
            "0",
            "--damos-wmarks",
            "free_mem_rate",
            "5s",
            "60%",
            "500",
            "50",
            "--damos-filter",
            "allow",
            "none",
            "anon",
            "--damos-filter",
            "reject",
            "addr",
            "0x1fff",
            "0x5000",
            "--damos_filter",
            "target",
            "matching",
            "1",
            "allow",
            "--damos-nr-filters",
            "2",
            "1",
        ])
        .unwrap();
        assert_eq!(s[0].wmarks, Watermarks::default());
        assert_eq!(
            s[1].wmarks,
            Watermarks {
                metric: WmarkMetric::FreeMemRate,
                interval_us: 5_000_000,
                high: 600,
                mid: 500,
                low: 50,
            }
        );
        assert_eq!(
            s[0].ops_filters,
            vec![Filter {
                kind: FilterKind::Anon,
                matching: false,
                allow: true,
            }]
        );
        assert_eq!(
            s[0].core_filters,
            vec![Filter {
                kind: FilterKind::Addr(AddrRange::new(0x1000, 0x5000)),
                matching: true,
                allow: false,
            }]
        );
        assert_eq!(
            s[1].core_filters,
            vec![Filter {
                kind: FilterKind::Target(1),
                matching: true,
                allow: true,
            }]
        );
    }

    #[test]
    fn refuses_what_the_admin_tree_refuses_with_its_reason() {
        for (action, _) in Action::NAMES {
            let s = Scheme {
                action: *action,
                pattern: AccessPattern {
                    sz: Bounds::ANY,
                    nr_accesses: Bounds::ANY,
                    age: Bounds::ANY,
                },
                quotas: Quotas::default(),
                apply_interval_us: 0,
                ..Scheme::new(Action::Stat, AccessPattern::ANY)
            };
            let got = parse(&["--damos-action", action.as_str()]);
            match check_scheme(&s) {
                Ok(()) => assert!(got.is_ok(), "{action}: {got:?}"),
                Err(why) => {
                    let e = format!("{:#}", got.unwrap_err());
                    assert_eq!(e, format!("scheme 0: {why}"));
                    assert!(e.contains("is refused: "), "{e}");
                }
            }
        }
        let e = err(&[
            "--damos-action",
            "pageout",
            "--damos-quotas",
            "0",
            "1M",
            "1s",
            "--damos-quota-goal",
            "node_memcg_used_bp",
            "50%",
        ]);
        assert!(
            e.contains("quota goal metric node_memcg_used_bp is refused"),
            "{e}"
        );
    }
}
