//! Turning the staged files of a context into a [`ContextConfig`] at `on`/`commit`, with the
//! checks of the kernel's `damon_sysfs_build_ctx()` plus what this build cannot do yet.

use std::path::Path;

use super::backend::ContextConfig;
use super::dirs::context::{ContextDir, RegionDir};
use super::dirs::scheme::SchemeDir;
use super::node::UlRangeDir;
use crate::core::region::align_down;
use crate::core::scheme::memcg;
use crate::core::scheme::{
    AccessPattern, Bounds, Filter, FilterKind, FilterType, QuotaGoal, Quotas, Scheme, Watermarks,
    check_scheme,
};
use crate::core::{AddrRange, Attrs, ContextSpec, IntervalsGoal, Pid, TargetSpec};

/// Why a context cannot be started, with the errno the kernel returns: EINVAL, or ENOMEM for
/// a filter it cannot set up (`damon_sysfs_add_scheme_filters()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: String,
    pub errno: i32,
}

impl From<String> for Invalid {
    fn from(reason: String) -> Self {
        Invalid {
            reason,
            errno: libc::EINVAL,
        }
    }
}

fn no_mem(reason: String) -> Invalid {
    Invalid {
        reason,
        errno: libc::ENOMEM,
    }
}

/// Build and validate the config of `ctx`, in the kernel's order: operations, attributes,
/// targets, schemes.
pub fn build_context(ctx: &ContextDir) -> Result<ContextConfig, Invalid> {
    let ops = ctx.operations;
    if !ops.is_supported() {
        return Err(format!(
            "operations {ops} is not supported by this build (avail_operations: vaddr, fvaddr)"
        )
        .into());
    }
    if ctx.addr_unit != 1 {
        return Err(format!(
            "addr_unit {} is only meaningful for paddr; virtual address spaces need 1",
            ctx.addr_unit
        )
        .into());
    }

    let intervals = &ctx.attrs.intervals;
    let nr_regions = ctx.attrs.nr_regions;
    // damon_set_attrs()
    if nr_regions.min < 3 {
        return Err(format!("nr_regions min {} is less than 3", nr_regions.min).into());
    }
    if nr_regions.min > nr_regions.max {
        return Err(format!(
            "nr_regions min {} is larger than max {}",
            nr_regions.min, nr_regions.max
        )
        .into());
    }
    if intervals.sample_us > intervals.aggr_us {
        return Err(format!(
            "sample_us {} is larger than aggr_us {}",
            intervals.sample_us, intervals.aggr_us
        )
        .into());
    }
    let goal = intervals.goal;
    if goal.aggrs != 0 && goal.min_sample_us > goal.max_sample_us {
        return Err(format!(
            "intervals_goal min_sample_us {} is larger than max_sample_us {}",
            goal.min_sample_us, goal.max_sample_us
        )
        .into());
    }

    let targets = ctx
        .targets
        .items
        .iter()
        .enumerate()
        .map(|(i, t)| build_target(i, t.pid, &t.regions.items))
        .collect::<Result<Vec<_>, _>>()?;
    let schemes = ctx
        .schemes
        .items
        .iter()
        .enumerate()
        .map(|(i, s)| build_scheme(i, s))
        .collect::<Result<Vec<_>, _>>()?;

    let attrs = Attrs {
        sample_us: intervals.sample_us,
        aggr_us: intervals.aggr_us,
        update_us: intervals.update_us,
        min_nr_regions: nr_regions.min,
        max_nr_regions: nr_regions.max,
        intervals_goal: IntervalsGoal {
            access_bp: goal.access_bp,
            aggrs: goal.aggrs,
            min_sample_us: goal.min_sample_us,
            max_sample_us: goal.max_sample_us,
        },
    };
    Ok(ContextConfig {
        spec: ContextSpec {
            ops,
            attrs,
            targets,
        },
        schemes,
    })
}

/// Whether `pid` names a live task, as the kernel's `find_get_pid()` (pid 0 never does).
fn task_exists(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

fn build_target(idx: usize, pid: i32, regions: &[RegionDir]) -> Result<TargetSpec, Invalid> {
    if !task_exists(pid) {
        return Err(format!("target {idx}: pid_target {pid} names no process").into());
    }
    // damon_sysfs_set_regions(): each region start <= end, sorted, not overlapping.
    let mut prev_end = None;
    for (i, r) in regions.iter().enumerate() {
        if r.start > r.end {
            return Err(format!(
                "target {idx} region {i}: start {:#x} is after end {:#x}",
                r.start, r.end
            )
            .into());
        }
        if let Some(prev_end) = prev_end.filter(|&e| e > r.start) {
            return Err(format!(
                "target {idx} region {i}: starts at {:#x}, before the previous region ends \
                 ({prev_end:#x}): regions must be sorted and not overlap",
                r.start
            )
            .into());
        }
        prev_end = Some(r.end);
    }
    Ok(TargetSpec {
        pid: Pid(pid),
        ranges: regions
            .iter()
            .map(|r| AddrRange::new(r.start, r.end))
            .collect(),
    })
}

fn bounds(r: UlRangeDir) -> Bounds {
    Bounds {
        min: r.min,
        max: r.max,
    }
}

fn build_scheme(idx: usize, s: &SchemeDir) -> Result<Scheme, Invalid> {
    let (core_filters, ops_filters) = build_filters(idx, s)?;
    let q = &s.quotas;
    let w = &s.watermarks;
    let scheme = Scheme {
        action: s.action,
        pattern: AccessPattern {
            sz: bounds(s.access_pattern.sz),
            nr_accesses: bounds(s.access_pattern.nr_accesses),
            age: bounds(s.access_pattern.age),
        },
        quotas: Quotas {
            ms: q.ms,
            bytes: q.bytes,
            reset_interval_ms: q.reset_interval_ms,
            weight_sz_permil: q.weights.sz_permil,
            weight_nr_accesses_permil: q.weights.nr_accesses_permil,
            weight_age_permil: q.weights.age_permil,
            goals: goals_of(s),
        },
        apply_interval_us: s.apply_interval_us,
        wmarks: Watermarks {
            metric: w.metric,
            interval_us: w.interval_us,
            high: w.high,
            mid: w.mid,
            low: w.low,
        },
        core_filters,
        ops_filters,
    };
    check_scheme(&scheme).map_err(|why| format!("scheme {idx}: {why}"))?;
    Ok(scheme)
}

/// The filters of a staged scheme, by layer: `core_filters/`, then `ops_filters/`, then
/// `filters/` entries, each appended to the list of its layer, as the kernel builds them.
fn build_filters(idx: usize, s: &SchemeDir) -> Result<(Vec<Filter>, Vec<Filter>), Invalid> {
    let (mut core, mut ops) = (Vec::new(), Vec::new());
    let dirs = [
        ("core_filters", &s.core_filters),
        ("ops_filters", &s.ops_filters),
        ("filters", &s.filters),
    ];
    for (name, dir) in dirs {
        for (j, f) in dir.items.iter().enumerate() {
            let at = || format!("scheme {idx} {name}/{j}");
            let kind = match f.filter_type {
                FilterType::Anon => FilterKind::Anon,
                FilterType::Active => FilterKind::Active,
                FilterType::Young => FilterKind::Young,
                FilterType::Unmapped => FilterKind::Unmapped,
                FilterType::Memcg => {
                    let path = f.memcg_path.trim_end_matches('\n');
                    let id = memcg::id_of(path)
                        .map_err(|why| no_mem(format!("{}: memcg_path {path:?}: {why}", at())))?;
                    FilterKind::Memcg { id }
                }
                FilterType::HugepageSize => {
                    if f.min > f.max {
                        return Err(no_mem(format!(
                            "{}: hugepage_size min {} is larger than max {}",
                            at(),
                            f.min,
                            f.max
                        )));
                    }
                    FilterKind::HugepageSize(Bounds {
                        min: f.min,
                        max: f.max,
                    })
                }
                FilterType::Addr => {
                    if f.addr_end < f.addr_start {
                        return Err(no_mem(format!(
                            "{}: addr_end {:#x} is before addr_start {:#x}",
                            at(),
                            f.addr_end,
                            f.addr_start
                        )));
                    }
                    FilterKind::Addr(AddrRange::new(
                        align_down(f.addr_start),
                        align_down(f.addr_end),
                    ))
                }
                // A negative index matches no target.
                FilterType::Target => {
                    FilterKind::Target(usize::try_from(f.damon_target_idx).unwrap_or(usize::MAX))
                }
            };
            let filter = Filter {
                kind,
                matching: f.matching,
                allow: f.allow,
            };
            if f.filter_type.is_core() {
                core.push(filter);
            } else {
                ops.push(filter);
            }
        }
    }
    Ok((core, ops))
}

/// The quota goals of a staged scheme; the kernel drops goals without a target
/// (`damos_sysfs_add_quota_score()`).
fn goals_of(s: &SchemeDir) -> Vec<QuotaGoal> {
    s.quotas
        .goals
        .items
        .iter()
        .filter(|g| g.target_value != 0)
        .map(|g| QuotaGoal {
            metric: g.metric,
            target_value: g.target_value,
            current_value: g.current_value,
            nid: g.nid,
        })
        .collect()
}

/// The quota goals of the staged schemes, for `commit_schemes_quota_goals`.
pub fn quota_goals(ctx: &ContextDir) -> Vec<Vec<QuotaGoal>> {
    ctx.schemes.items.iter().map(goals_of).collect()
}
