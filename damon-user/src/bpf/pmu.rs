//! Which perf event feeds the `perf_sample` program with data addresses.
//!
//! A PMU that samples memory accesses with their data address (Intel PEBS `mem-loads`, AMD
//! IBS op, Arm SPE) gives accesses the page-table walk cannot see between two samples. Where
//! none exists (VMs, like the machines this is tested on), the software page-fault event
//! carries the faulting address through the same program.
use std::{fs, path::Path};

use aya::programs::perf_event::{PerfEventConfig, SoftwareEvent};
use thiserror::Error;

const DEVICES: &str = "/sys/bus/event_source/devices";

/// The source of sampled data addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerfSampler {
    /// Every user page fault (software event, period 1).
    PageFaults,
    /// A PMU with data-address sampling, found in sysfs.
    Pmu {
        pmu_type: u32,
        config: u64,
        name: &'static str,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PmuError {
    #[error(
        "no PMU with data-address sampling on this machine (none of Intel PEBS mem-loads, AMD IBS op, Arm SPE under {DEVICES}); use --perf-sampler page-faults"
    )]
    Absent,
    #[error("cannot read PMU description {path}: {what}")]
    Unreadable { path: String, what: String },
}

impl PerfSampler {
    pub fn config(&self) -> PerfEventConfig {
        match *self {
            PerfSampler::PageFaults => PerfEventConfig::Software(SoftwareEvent::PageFaults),
            PerfSampler::Pmu {
                pmu_type, config, ..
            } => PerfEventConfig::Pmu { pmu_type, config },
        }
    }

    /// Finds a data-address-sampling PMU.
    pub fn detect_pmu() -> Result<PerfSampler, PmuError> {
        Self::detect_pmu_in(Path::new(DEVICES))
    }

    fn detect_pmu_in(devices: &Path) -> Result<PerfSampler, PmuError> {
        let read = |p: &Path| {
            fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| PmuError::Unreadable {
                    path: p.display().to_string(),
                    what: e.to_string(),
                })
        };
        let pmu_type = |dev: &str| -> Result<u32, PmuError> {
            let p = devices.join(dev).join("type");
            let t = read(&p)?;
            t.parse().map_err(|_| PmuError::Unreadable {
                path: p.display().to_string(),
                what: format!("type {t:?}"),
            })
        };
        if devices.join("ibs_op").exists() {
            return Ok(PerfSampler::Pmu {
                pmu_type: pmu_type("ibs_op")?,
                config: 0,
                name: "AMD IBS op",
            });
        }
        if devices.join("arm_spe_0").exists() {
            return Ok(PerfSampler::Pmu {
                pmu_type: pmu_type("arm_spe_0")?,
                config: 0,
                name: "Arm SPE",
            });
        }
        for dev in ["cpu", "cpu_core"] {
            let ev = devices.join(dev).join("events/mem-loads");
            if ev.exists() {
                let config = parse_event_config(&read(&ev)?);
                return Ok(PerfSampler::Pmu {
                    pmu_type: pmu_type(dev)?,
                    config,
                    name: "Intel PEBS mem-loads",
                });
            }
        }
        Err(PmuError::Absent)
    }
}

/// `event=0xcd,umask=0x1,ldlat=3` → `event | umask << 8` (the x86 raw event layout).
fn parse_event_config(s: &str) -> u64 {
    let mut config = 0;
    for term in s.split(',') {
        let Some((k, v)) = term.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap_or(0),
            None => v.parse().unwrap_or(0),
        };
        match k.trim() {
            "event" => config |= v & 0xff,
            "umask" => config |= (v & 0xff) << 8,
            _ => {}
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_pmu_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("software")).unwrap();
        assert_eq!(
            PerfSampler::detect_pmu_in(dir.path()),
            Err(PmuError::Absent)
        );
        assert!(
            PmuError::Absent
                .to_string()
                .contains("--perf-sampler page-faults")
        );
    }

    #[test]
    fn pmus_are_found_by_their_sysfs_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = dir.path().join("cpu");
        std::fs::create_dir_all(cpu.join("events")).unwrap();
        std::fs::write(cpu.join("type"), "4\n").unwrap();
        std::fs::write(
            cpu.join("events/mem-loads"),
            "event=0xcd,umask=0x1,ldlat=3\n",
        )
        .unwrap();
        assert_eq!(
            PerfSampler::detect_pmu_in(dir.path()),
            Ok(PerfSampler::Pmu {
                pmu_type: 4,
                config: 0x1cd,
                name: "Intel PEBS mem-loads"
            })
        );
        let ibs = dir.path().join("ibs_op");
        std::fs::create_dir_all(&ibs).unwrap();
        std::fs::write(ibs.join("type"), "bogus").unwrap();
        assert!(matches!(
            PerfSampler::detect_pmu_in(dir.path()),
            Err(PmuError::Unreadable { .. })
        ));
    }
}
