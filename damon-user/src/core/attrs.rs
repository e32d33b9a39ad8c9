//! What a context is asked to do: operations, monitoring attributes and targets, with the
//! kernel's validation rules.
use std::fmt;
use std::str::FromStr;

use super::error::CoreError;
use super::snapshot::Intervals;
use super::target::TargetSpec;
use super::tune::IntervalsGoal;

/// The operation set of a context (the kernel's `enum damon_ops_id`, in its order): which
/// address space is monitored and how regions are made. Every id parses, as the kernel's
/// `operations` file accepts every set it knows; [`ContextSpec::validate`] refuses the ones
/// this build cannot run ([`OpsId::is_supported`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OpsId {
    /// A process's virtual address space; regions follow its mappings ("three regions").
    #[default]
    Vaddr,
    /// A process's virtual address space restricted to fixed, user-given ranges.
    Fvaddr,
    /// Physical memory. This build has no physical-address access check.
    Paddr,
}

impl OpsId {
    /// Every id with its keyword.
    pub const NAMES: [(OpsId, &'static str); 3] = [
        (OpsId::Vaddr, "vaddr"),
        (OpsId::Fvaddr, "fvaddr"),
        (OpsId::Paddr, "paddr"),
    ];

    /// The ids this build can run (`avail_operations`): virtual address spaces only.
    pub const SUPPORTED: [OpsId; 2] = [OpsId::Vaddr, OpsId::Fvaddr];

    pub fn as_str(&self) -> &'static str {
        match self {
            OpsId::Vaddr => "vaddr",
            OpsId::Fvaddr => "fvaddr",
            OpsId::Paddr => "paddr",
        }
    }

    pub fn is_supported(&self) -> bool {
        Self::SUPPORTED.contains(self)
    }
}

impl fmt::Display for OpsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OpsId {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .find(|(_, name)| *name == s)
            .map(|&(id, _)| id)
            .ok_or_else(|| CoreError::UnknownOps { name: s.to_owned() })
    }
}

/// Monitoring attributes: the three intervals (microseconds) and the bounds on the number of
/// regions. `Default` gives the kernel's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub update_us: u64,
    pub min_nr_regions: u64,
    pub max_nr_regions: u64,
    /// Auto-tuning of the sample and aggregation intervals; off by default.
    pub intervals_goal: IntervalsGoal,
}

impl Default for Attrs {
    fn default() -> Self {
        Self {
            sample_us: 5_000,
            aggr_us: 100_000,
            update_us: 60_000_000,
            min_nr_regions: 10,
            max_nr_regions: 1_000,
            intervals_goal: IntervalsGoal::default(),
        }
    }
}

impl Attrs {
    /// damo's defaults: the kernel's, but the mappings are re-read every second instead of every
    /// minute.
    pub fn damo_defaults() -> Self {
        Self {
            update_us: 1_000_000,
            ..Self::default()
        }
    }

    /// The kernel's rules (`damon_set_attrs()`), plus non-zero sample and aggregation intervals:
    /// the kernel tolerates 0 there with special cases, but a zero interval would make this
    /// user-space loop spin.
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.sample_us == 0 {
            return Err(CoreError::ZeroInterval { name: "sample_us" });
        }
        if self.aggr_us == 0 {
            return Err(CoreError::ZeroInterval { name: "aggr_us" });
        }
        if self.min_nr_regions < 3 {
            return Err(CoreError::MinNrRegionsTooSmall {
                min: self.min_nr_regions,
            });
        }
        if self.min_nr_regions > self.max_nr_regions {
            return Err(CoreError::MinAboveMax {
                min: self.min_nr_regions,
                max: self.max_nr_regions,
            });
        }
        if self.sample_us > self.aggr_us {
            return Err(CoreError::SampleAboveAggr {
                sample_us: self.sample_us,
                aggr_us: self.aggr_us,
            });
        }
        // `damon_valid_intervals_goal()` (6.15).
        let g = &self.intervals_goal;
        if g.enabled()
            && (g.min_sample_us > g.max_sample_us
                || self.sample_us < g.min_sample_us
                || self.sample_us > g.max_sample_us)
        {
            return Err(CoreError::InvalidIntervalsGoal {
                sample_us: self.sample_us,
                min_sample_us: g.min_sample_us,
                max_sample_us: g.max_sample_us,
            });
        }
        Ok(())
    }

    pub fn intervals(&self) -> Intervals {
        Intervals {
            sample_us: self.sample_us,
            aggr_us: self.aggr_us,
            update_us: self.update_us,
            goal: self.intervals_goal,
        }
    }

    /// `aggr / max(sample, 1)`: `nr_accesses` of a region found accessed at every sample.
    pub fn max_nr_accesses(&self) -> u32 {
        self.intervals().max_nr_accesses()
    }

    /// Samples per aggregation interval (at least one).
    pub fn aggr_samples(&self) -> u64 {
        (self.aggr_us / self.sample_us.max(1)).max(1)
    }

    /// Samples per ops update interval (at least one).
    pub fn update_samples(&self) -> u64 {
        (self.update_us / self.sample_us.max(1)).max(1)
    }
}

/// Everything a kdamond needs to run one context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSpec {
    pub ops: OpsId,
    pub attrs: Attrs,
    pub targets: Vec<TargetSpec>,
}

impl ContextSpec {
    /// Checks the attributes and every target; the first problem found is returned.
    pub fn validate(&self) -> Result<(), CoreError> {
        if !self.ops.is_supported() {
            return Err(CoreError::UnsupportedOps {
                name: self.ops.as_str().to_owned(),
            });
        }
        self.attrs.validate()?;
        self.targets.iter().try_for_each(|t| t.validate(self.ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AddrRange, Pid};

    #[test]
    fn defaults_match_kernel_and_damo() {
        let k = Attrs::default();
        assert_eq!(
            (k.sample_us, k.aggr_us, k.update_us),
            (5_000, 100_000, 60_000_000)
        );
        assert_eq!((k.min_nr_regions, k.max_nr_regions), (10, 1_000));
        assert_eq!(k.max_nr_accesses(), 20);
        assert_eq!(Attrs::damo_defaults().update_us, 1_000_000);
        assert_eq!(k.aggr_samples(), 20);
        assert_eq!(k.update_samples(), 12_000);
        assert!(k.validate().is_ok());
    }

    #[test]
    fn invalid_attrs_name_the_values() {
        let base = Attrs::default();
        let cases = [
            (
                Attrs {
                    min_nr_regions: 2,
                    ..base
                },
                "min_nr_regions 2 is below 3",
            ),
            (
                Attrs {
                    min_nr_regions: 20,
                    max_nr_regions: 19,
                    ..base
                },
                "min_nr_regions 20 is above max_nr_regions 19",
            ),
            (
                Attrs {
                    sample_us: 200_000,
                    ..base
                },
                "sample interval 200000 us is above aggregation interval 100000 us",
            ),
            (
                Attrs {
                    sample_us: 0,
                    ..base
                },
                "sample_us must not be 0",
            ),
            (Attrs { aggr_us: 0, ..base }, "aggr_us must not be 0"),
        ];
        for (attrs, message) in cases {
            let err = attrs.validate().expect_err(message);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn ops_names_round_trip() {
        for kind in [OpsId::Vaddr, OpsId::Fvaddr] {
            assert_eq!(kind.to_string().parse::<OpsId>().ok(), Some(kind));
        }
        assert_eq!("paddr".parse::<OpsId>().ok(), Some(OpsId::Paddr));
        let paddr = ContextSpec {
            ops: OpsId::Paddr,
            attrs: Attrs::default(),
            targets: vec![],
        };
        assert!(matches!(
            paddr.validate(),
            Err(CoreError::UnsupportedOps { name }) if name == "paddr"
        ));
        let err = "vaddr\n"
            .parse::<OpsId>()
            .expect_err("newline is not stripped here");
        assert_eq!(err.to_string(), "unknown operations \"vaddr\\n\"");
    }

    fn fvaddr_spec(ranges: Vec<AddrRange>) -> ContextSpec {
        ContextSpec {
            ops: OpsId::Fvaddr,
            attrs: Attrs::default(),
            targets: vec![TargetSpec::fvaddr(42, ranges)],
        }
    }

    #[test]
    fn fvaddr_ranges_are_checked_after_rounding() {
        let ok = fvaddr_spec(vec![
            AddrRange::new(0x1000, 0x2000),
            AddrRange::new(0x2000, 0x5000),
        ]);
        assert!(ok.validate().is_ok());

        let err = fvaddr_spec(vec![]).validate().expect_err("no ranges");
        assert_eq!(err.to_string(), "fvaddr target pid 42 has no ranges");

        let err = fvaddr_spec(vec![AddrRange::new(0x3000, 0x3000)])
            .validate()
            .expect_err("empty range");
        assert_eq!(
            err.to_string(),
            "fvaddr range 0x3000-0x3000 of pid 42 is empty"
        );
        let last_page = AddrRange::new(u64::MAX - 10, u64::MAX);
        assert!(matches!(
            fvaddr_spec(vec![last_page]).validate(),
            Err(CoreError::EmptyRange { range, .. }) if range == last_page
        ));

        // Apart in bytes, but both touch page 0x1000 once rounded.
        let err = fvaddr_spec(vec![
            AddrRange::new(0x1000, 0x1800),
            AddrRange::new(0x1900, 0x3000),
        ])
        .validate()
        .expect_err("overlap after rounding");
        assert_eq!(
            err.to_string(),
            "fvaddr ranges 0x1000-0x2000 and 0x1000-0x3000 of pid 42 overlap or are unsorted"
        );

        let unsorted = fvaddr_spec(vec![
            AddrRange::new(0x8000, 0x9000),
            AddrRange::new(0x1000, 0x2000),
        ]);
        assert!(matches!(
            unsorted.validate(),
            Err(CoreError::OverlappingRanges { pid: Pid(42), .. })
        ));
    }

    #[test]
    fn vaddr_ignores_ranges_but_checks_pid() {
        let spec = ContextSpec {
            ops: OpsId::Vaddr,
            attrs: Attrs::default(),
            targets: vec![TargetSpec::fvaddr(7, vec![AddrRange::new(5, 1)])],
        };
        assert!(spec.validate().is_ok());
        let spec = ContextSpec {
            targets: vec![TargetSpec::vaddr(0)],
            ..spec
        };
        assert_eq!(
            spec.validate().expect_err("pid 0").to_string(),
            "invalid target pid 0"
        );
    }
}
