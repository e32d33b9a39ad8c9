//! The guest's whole root file system: busybox, the static `damon`, the init script, its
//! settings, and the kernel's modules that the guest loads.
use std::path::Path;

use anyhow::{Context, Result};

use super::{cpio::Cpio, fetch::Fetched};

const INIT: &str = include_str!("guest-init.sh");

/// What the guest runs, as shell variables in `/etc/vm-test.conf`.
pub struct GuestSettings {
    pub compare: bool,
    pub record_secs: u32,
    pub compare_secs: u32,
    pub hot_mib: u64,
    pub cold_mib: u64,
}

/// DAMON's default monitoring attributes, written to both monitors when comparing.
pub const SAMPLE_US: u64 = 5_000;
pub const AGGR_US: u64 = 100_000;
pub const UPDATE_US: u64 = 1_000_000;
pub const MIN_REGIONS: u64 = 10;
pub const MAX_REGIONS: u64 = 1_000;
/// How long both monitors run with intervals auto-tuning in `--compare` (kernels with it).
pub const AUTOTUNE_SECS: u32 = 30;
/// DAMOS pageout in `--compare`: a fresh `damon workload hotcold` with these buffers under
/// each monitor, for at most `PAGEOUT_SECS` (less once the cold buffer is 99 % out). Small,
/// because under TCG touching memory and paging it out to zram is slow.
pub const PAGEOUT_HOT_MIB: u64 = 8;
pub const PAGEOUT_COLD_MIB: u64 = 64;
pub const PAGEOUT_SECS: u32 = 30;
/// The scheme's minimum age: 2 s of no access, in aggregation intervals.
pub const PAGEOUT_AGE: u64 = 2_000_000 / AGGR_US;
/// The guest's zram swap device: room for the cold buffer and then some.
pub const ZRAM_MIB: u64 = 256;

impl GuestSettings {
    fn conf(&self) -> String {
        format!(
            "COMPARE={}\nRECORD_SECS={}\nCOMPARE_SECS={}\nAUTOTUNE_SECS={AUTOTUNE_SECS}\nHOT_MIB={}\nCOLD_MIB={}\n\
             SAMPLE_US={SAMPLE_US}\nAGGR_US={AGGR_US}\nUPDATE_US={UPDATE_US}\n\
             MIN_REGIONS={MIN_REGIONS}\nMAX_REGIONS={MAX_REGIONS}\n\
             PAGEOUT_HOT_MIB={PAGEOUT_HOT_MIB}\nPAGEOUT_COLD_MIB={PAGEOUT_COLD_MIB}\n\
             PAGEOUT_SECS={PAGEOUT_SECS}\nPAGEOUT_AGE={PAGEOUT_AGE}\nZRAM_MIB={ZRAM_MIB}\n",
            u8::from(self.compare),
            self.record_secs,
            self.compare_secs,
            self.hot_mib,
            self.cold_mib
        )
    }
}

pub fn build(
    out: &Path,
    busybox: &Path,
    damon: &Path,
    kernel: &Fetched,
    settings: &GuestSettings,
) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut c = Cpio::create(out)?;
        for d in [
            "bin",
            "dev",
            "etc",
            "lib",
            "lib/modules",
            "proc",
            "sys",
            "tmp",
        ] {
            c.dir(d)?;
        }
        // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        c.char_dev("dev/console", 0o600, 5, 1)?;
        c.file_from("bin/busybox", 0o755, busybox)?;
        c.file_from("bin/damon", 0o755, damon)?;
        c.file("init", 0o755, INIT.as_bytes())?;
        c.file("etc/vm-test.conf", 0o644, settings.conf().as_bytes())?;
        let mut order = String::new();
        for m in &kernel.modules {
            let Some(name) = m.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            c.file_from(&format!("lib/modules/{name}.ko"), 0o644, m)?;
            order.push_str(name);
            order.push('\n');
        }
        c.file("lib/modules/order", 0o644, order.as_bytes())?;
        c.finish()
    };
    write().with_context(|| format!("writing the initramfs {}", out.display()))
}
