//! `damon check`: probe the kernel, calibrate and validate the page-table walk, load and
//! attach every program; say what works and what is missing.
use anyhow::{Result, bail};
use clap::Args as ClapArgs;

use crate::bpf::{KernelLayout, MonitorPrograms, ProgramOptions, probe};

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
    let layout = KernelLayout::get()?;
    println!(
        "kernel layout: {}-level paging, direct map at {:#x}, task.tgid@{} task.mm@{} mm.pgd@{} (found and validated in {:.1} ms)",
        layout.pgtable_levels,
        layout.page_offset_base,
        layout.task_tgid_offset,
        layout.task_mm_offset,
        layout.mm_pgd_offset,
        layout.calibration.as_secs_f64() * 1e3
    );
    let sampler = args.perf_sampler.map(|s| s.resolve()).transpose()?;
    let opts = ProgramOptions {
        fault_tracepoint: true,
        fault_in_region_is_access: false,
        perf_sampler: sampler,
    };
    let mut progs = MonitorPrograms::load(Some(&layout), opts)?;
    if sampler.is_some() {
        progs.add_target(std::process::id() as i32)?;
    }
    println!(
        "programs: {} loaded; page-table walk via {:?}; exceptions:page_fault_user attached{}",
        progs.program_ids().len(),
        progs
            .walk_path()
            .map(|p| format!("{p:?}"))
            .unwrap_or_default(),
        sampler
            .map(|s| format!("; perf_event sampler attached to {s:?}"))
            .unwrap_or_default()
    );
    println!("OK");
    Ok(())
}
