//! Region snapshots from both monitors, and the quantities compared: size-weighted access
//! rates over an address range, working set size, number of regions.
use anyhow::{Context, Result, bail};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub nr_accesses: u32,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Seconds since the first snapshot's start (ours) or since monitoring started (kernel's).
    pub t: f64,
    /// How long the aggregation took, when the monitor says (ours does, sysfs does not).
    pub aggregation_s: Option<f64>,
    pub regions: Vec<Region>,
}

/// A damo JSON record file as `damon record --format json` writes it (one target).
pub fn from_record_json(text: &str) -> Result<Vec<Snapshot>> {
    let v: Value = serde_json::from_str(text).context("the record file is not JSON")?;
    let records = v
        .as_array()
        .context("the record file is not a list of records")?;
    let record = records.first().context("the record file has no record")?;
    let snaps = record["snapshots"]
        .as_array()
        .context("the record has no snapshots list")?;
    let t0 = snaps
        .first()
        .and_then(|s| num(&s["start_time"]))
        .unwrap_or(0);
    let mut out = Vec::new();
    for s in snaps {
        let end = num(&s["end_time"]).context("a snapshot without end_time")?;
        let start = num(&s["start_time"]).unwrap_or(end);
        let mut regions = Vec::new();
        for r in s["regions"]
            .as_array()
            .context("a snapshot without regions")?
        {
            let nr = &r["nr_accesses"];
            let nr_accesses = num(nr)
                .or_else(|| num(&nr["samples"]))
                .context("a region without nr_accesses")?;
            regions.push(Region {
                start: num(&r["start"]).context("a region without start")?,
                end: num(&r["end"]).context("a region without end")?,
                nr_accesses: u32::try_from(nr_accesses).unwrap_or(u32::MAX),
            });
        }
        out.push(Snapshot {
            t: end.saturating_sub(t0) as f64 / 1e9,
            aggregation_s: Some(end.saturating_sub(start) as f64 / 1e9),
            regions,
        });
    }
    Ok(out)
}

/// damo writes numbers as digit strings; accept both.
fn num(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The kernel's `tried_regions` as the guest dumps them after each
/// `update_schemes_tried_regions`: a `snapshot I UPTIME` line, then `IDX/FIELD:VALUE` lines.
pub fn from_tried_regions(text: &str) -> Result<Vec<Snapshot>> {
    let mut out: Vec<Snapshot> = Vec::new();
    let mut current: std::collections::BTreeMap<u32, [Option<u64>; 3]> = Default::default();
    let flush = |current: &mut std::collections::BTreeMap<u32, [Option<u64>; 3]>,
                 out: &mut Vec<Snapshot>| {
        if let Some(last) = out.last_mut() {
            last.regions = current
                .values()
                .filter_map(|f| {
                    Some(Region {
                        start: f[0]?,
                        end: f[1]?,
                        nr_accesses: u32::try_from(f[2]?).ok()?,
                    })
                })
                .collect();
        }
        current.clear();
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("snapshot ") {
            flush(&mut current, &mut out);
            let i: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
            out.push(Snapshot {
                t: i,
                aggregation_s: None,
                regions: Vec::new(),
            });
            continue;
        }
        let Some((path, value)) = line.split_once(':') else {
            continue;
        };
        let Some((idx, field)) = path.split_once('/') else {
            continue;
        };
        let (Ok(idx), Ok(value)) = (idx.parse::<u32>(), value.trim().parse::<u64>()) else {
            continue;
        };
        let slot = match field {
            "start" => 0,
            "end" => 1,
            "nr_accesses" => 2,
            _ => continue,
        };
        current.entry(idx).or_default()[slot] = Some(value);
    }
    flush(&mut current, &mut out);
    if out.is_empty() {
        bail!("no tried_regions snapshot");
    }
    Ok(out)
}

/// nr_accesses / max, averaged over the bytes of `range` that regions cover; `None` when no
/// region covers any of it.
///
/// The same as `damon_user::core::snapshot::weighted_rate` (and [`wss`] as its
/// `working_set_bytes`), on this module's `Region`: xtask cannot depend on damon-user, whose
/// build script needs the eBPF toolchain that xtask installs.
pub fn weighted_rate(regions: &[Region], range: (u64, u64), max_nr_accesses: u32) -> Option<f64> {
    let (mut sum, mut bytes) = (0.0, 0u64);
    for r in regions {
        let (s, e) = (r.start.max(range.0), r.end.min(range.1));
        if s < e {
            sum += (e - s) as f64 * f64::from(r.nr_accesses) / f64::from(max_nr_accesses.max(1));
            bytes += e - s;
        }
    }
    (bytes > 0).then(|| sum / bytes as f64)
}

/// damo's working set size: the bytes of regions accessed at least once in the aggregation.
pub fn wss(regions: &[Region]) -> u64 {
    regions
        .iter()
        .filter(|r| r.nr_accesses > 0)
        .map(|r| r.end - r.start)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_with_strings_and_numbers() {
        let json = r#"[{"snapshots": [{"start_time": "1000000000", "end_time": "1100000000",
            "regions": [{"start": "4096", "end": "8192", "nr_accesses": {"samples": 20, "percent": null}},
                        {"start": 8192, "end": 16384, "nr_accesses": 0}]}]}]"#;
        let s = from_record_json(json).expect("parses");
        assert_eq!(s.len(), 1);
        assert!((s[0].t - 0.1).abs() < 1e-9);
        assert_eq!(
            s[0].regions[0],
            Region {
                start: 4096,
                end: 8192,
                nr_accesses: 20
            }
        );
        assert_eq!(wss(&s[0].regions), 4096);
        assert_eq!(
            weighted_rate(&s[0].regions, (4096, 16384), 20),
            Some(1.0 / 3.0)
        );
        assert_eq!(weighted_rate(&s[0].regions, (1 << 20, 2 << 20), 20), None);
    }

    #[test]
    fn tried_regions_dump() {
        let text = "snapshot 1 10.0\n0/start:4096\n0/end:8192\n0/nr_accesses:20\n0/age:3\n\
                    1/start:8192\n1/end:12288\n1/nr_accesses:0\nsnapshot 2 11.0\n0/start:4096\n0/end:12288\n0/nr_accesses:10\n";
        let s = from_tried_regions(text).expect("parses");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].regions.len(), 2);
        assert_eq!(
            s[1].regions,
            vec![Region {
                start: 4096,
                end: 12288,
                nr_accesses: 10
            }]
        );
    }
}

/// The `sample_interval_us` of the last snapshot of a damo JSON record (tuned intervals).
pub fn last_sample_interval_us(text: &str) -> Result<Option<u64>> {
    let v: Value = serde_json::from_str(text).context("the record file is not JSON")?;
    let snaps = v
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r["snapshots"].as_array())
        .context("the record has no snapshots list")?;
    Ok(snaps.last().and_then(|s| num(&s["sample_interval_us"])))
}

/// The share of the bytes of `ranges` that `a` and `b` classify alike: accessed
/// (`nr_accesses > 0`) in both, or in neither. Bytes no region covers count as not accessed.
pub fn agreement(a: &[Region], b: &[Region], ranges: &[(u64, u64)]) -> f64 {
    let accessed = |regions: &[Region], addr: u64| {
        regions
            .iter()
            .any(|r| r.start <= addr && addr < r.end && r.nr_accesses > 0)
    };
    let (mut same, mut total) = (0u64, 0u64);
    for &(start, end) in ranges {
        let mut cuts: Vec<u64> = a
            .iter()
            .chain(b)
            .flat_map(|r| [r.start, r.end])
            .filter(|&c| start < c && c < end)
            .chain([start, end])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        for w in cuts.windows(2) {
            let len = w[1] - w[0];
            total += len;
            if accessed(a, w[0]) == accessed(b, w[0]) {
                same += len;
            }
        }
    }
    if total == 0 {
        1.0
    } else {
        same as f64 / total as f64
    }
}

#[cfg(test)]
mod agreement_tests {
    use super::*;

    #[test]
    fn agreement_is_the_share_of_bytes_classified_alike() {
        let r = |start, end, nr_accesses| Region {
            start,
            end,
            nr_accesses,
        };
        // Over [0, 100): a says 0..50 accessed, b says 0..40; they differ on 40..50.
        let a = [r(0, 50, 3), r(50, 100, 0)];
        let b = [r(0, 40, 9), r(40, 100, 0)];
        assert!((agreement(&a, &b, &[(0, 100)]) - 0.9).abs() < 1e-9);
        // Uncovered bytes are not accessed for either.
        assert_eq!(agreement(&a, &[], &[(50, 100)]), 1.0);
        assert!((agreement(&a, &[], &[(0, 100)]) - 0.5).abs() < 1e-9);
    }
}
