//! `damon check`: probe the kernel, calibrate and validate the page-table walk, load and
//! attach every program; say what works and what is missing.
use anyhow::{Result, bail};
use clap::Args as ClapArgs;

use std::os::fd::AsRawFd;

use crate::bpf::{LayoutOrigin, MonitorPrograms, ProgramOptions, calibrate, probe};
use crate::core::Pid;

#[derive(Debug, ClapArgs)]
#[command(
    about = "Check that this kernel can run the monitor",
    after_help = "Loads and attaches every eBPF program, finds the kernel's direct-map base and \
checks the page-table walk against /proc/self/pagemap. Exits non-zero when anything is missing.\n\n\
EXAMPLES:\n  damon check\n  RUST_LOG=debug damon check"
)]
pub struct Args {
    /// Also attach the perf_event sampler to this source.
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub perf_sampler: Option<super::session::SamplerArg>,
}

pub fn run(args: Args) -> Result<()> {
    let missing = probe::check_kernel();
    for m in &missing {
        println!("missing: {}", m.0);
    }
    if !missing.is_empty() {
        bail!("{} prerequisite(s) missing", missing.len());
    }
    let found = calibrate::find(false)?;
    let layout = found.layout;
    let sampler = args.perf_sampler.map(|s| s.resolve()).transpose()?;
    let opts = ProgramOptions {
        fault_tracepoint: true,
        fault_in_region_is_access: false,
        perf_sampler: sampler,
    };
    let t = std::time::Instant::now();
    let mut progs = MonitorPrograms::load(Some(&layout), opts)?;
    let loaded = t.elapsed();
    progs.validate_layout()?;
    println!(
        "kernel layout: {}-level paging, direct map at {:#x}, struct page array at {:#x} ({} B each) ({} in {:.1} ms; programs loaded in {:.1} ms; walk and struct page validated against /proc/self/pagemap)",
        layout.pgtable_levels,
        layout.page_offset_base,
        layout.vmemmap_base,
        layout.page_size,
        match found.origin {
            LayoutOrigin::Cached => "read from this boot's cache",
            LayoutOrigin::Calibrated => "probed",
        },
        found.took.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3,
    );
    let pidfd = if sampler.is_some() {
        let me = Pid::this();
        let pidfd = crate::bpf::sys::pidfd_open(me)?;
        progs.add_target(me, pidfd.as_raw_fd())?;
        Some(pidfd)
    } else {
        None
    };
    println!(
        "programs: {} loaded ({} instructions verified for the sampling program); one BPF_PROG_TEST_RUN per sample; exceptions:page_fault_user attached{}",
        progs.program_ids().len(),
        progs
            .sample_verified_insns()
            .map_or("n/a".into(), |n| n.to_string()),
        sampler
            .map(|s| format!("; perf_event sampler attached to {s:?}"))
            .unwrap_or_default()
    );
    drop(progs);
    drop(pidfd);
    println!("OK");
    Ok(())
}
