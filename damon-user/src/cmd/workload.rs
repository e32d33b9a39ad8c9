//! `damon workload`: the bundled synthetic workload for demos and tests.
//!
//! It ships in the product on purpose: `damon demo` runs it as its target, and a user can
//! check a setup against a workload whose hot and cold memory are known. The tests and the
//! benchmarks use the same one.
//!
//! `hotcold` maps a hot and a cold buffer, touches both once, then keeps touching one byte of
//! every page of the hot buffer; with `--swap-after` the roles swap once. `touch` maps a range
//! and touches exactly N fresh pages of it when told to (stdin), for exact fault counts.
//! `sleeper` only sleeps at a given rate. `forker` forks N children that each keep touching
//! their own buffer, as the parent does its own: a process tree. All print their addresses on stdout and die with
//! their parent (`PR_SET_PDEATHSIG`), so a test that fails never leaves one behind.
use std::{
    io::{BufRead, Write},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::{Args as ClapArgs, Subcommand};

#[derive(Debug, ClapArgs)]
#[command(
    about = "Run a synthetic workload with known hot and cold memory",
    after_help = "EXAMPLES:\n  damon workload hotcold --hot-mib 32 --cold-mib 96\n  damon workload hotcold --swap-after 5 --duration 20\n  damon workload touch --pages 100\n  damon workload forker --children 3 --hot-mib 8"
)]
pub struct Args {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Subcommand)]
pub enum Mode {
    /// A hot buffer touched continuously and a cold one touched once.
    Hotcold {
        /// Size of the hot buffer in MiB.
        #[arg(long, default_value_t = 32)]
        hot_mib: u64,
        /// Size of the cold buffer in MiB.
        #[arg(long, default_value_t = 96)]
        cold_mib: u64,
        /// Swap the hot and cold buffers once after this many seconds.
        #[arg(long)]
        swap_after: Option<f64>,
        /// Exit after this many seconds (default: run until killed).
        #[arg(long, short = 'd')]
        duration: Option<f64>,
        /// Back the buffers with transparent huge pages (MADV_HUGEPAGE).
        #[arg(long)]
        thp: bool,
        /// Sweep the hot buffer back to back, without resting between sweeps (a throughput
        /// workload: the monitor's slowdown of it shows in `--report-every`).
        #[arg(long)]
        busy: bool,
        /// Print `RATE <sweeps per second>` every this many seconds.
        #[arg(long, value_name = "SECS")]
        report_every: Option<f64>,
    },
    /// Map 2*N pages; on a line from stdin, touch the first N; exit when stdin closes.
    Touch {
        #[arg(long)]
        pages: u64,
    },
    /// Map a file (created, SIZE MiB of data, written back) and keep reading its first HOT
    /// MiB; the rest was read once. On `residency` from stdin, print how many pages of each
    /// part are resident (mincore).
    Filemap {
        /// The file; created or overwritten.
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 256)]
        size_mib: u64,
        #[arg(long, default_value_t = 32)]
        hot_mib: u64,
    },
    /// Fork N children; the parent and each child keep touching a buffer of their own. Prints
    /// `READY pid=PARENT children=PID,PID,...`; children die with the parent, and the parent
    /// reaps a child that is killed.
    Forker {
        #[arg(long, default_value_t = 3)]
        children: u32,
        /// Size of each process's buffer in MiB.
        #[arg(long, default_value_t = 8)]
        hot_mib: u64,
        /// Fork only on a line from stdin: READY lists no children, and `CHILDREN PID,...`
        /// follows the fork.
        #[arg(long)]
        fork_on_stdin: bool,
    },
    /// Sleep for an interval in a loop and do nothing else: what waking up at a monitor's
    /// sampling rate costs on this machine, without the monitoring.
    Sleeper {
        /// Microseconds per sleep.
        #[arg(long, default_value_t = 5_000)]
        interval_us: u64,
    },
}

const PAGE: usize = 4096;
const HPAGE: usize = 2 << 20;

/// An anonymous mapping aligned to 2 MiB, so THP backing (when asked for) is possible and the
/// buffer's bounds are easy to compare with region bounds.
struct Buffer {
    raw: *mut libc::c_void,
    raw_len: usize,
    start: usize,
    len: usize,
}

impl Buffer {
    fn map(len: usize, thp: bool) -> Result<Self> {
        let raw_len = len + HPAGE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                raw_len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            bail!(
                "mmap of {len} bytes failed: {}",
                std::io::Error::last_os_error()
            );
        }
        let start = (raw as usize).div_ceil(HPAGE) * HPAGE;
        let advice = if thp {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        if unsafe { libc::madvise(start as *mut _, len, advice) } != 0 {
            bail!("madvise failed: {}", std::io::Error::last_os_error());
        }
        Ok(Self {
            raw,
            raw_len,
            start,
            len,
        })
    }

    fn touch_pages(&self, pages: usize) {
        for i in 0..pages.min(self.len / PAGE) {
            // SAFETY: inside our own writable mapping.
            unsafe { ((self.start + i * PAGE) as *mut u8).write_volatile(1) };
        }
    }

    fn read_all(&self) -> u8 {
        let mut s = 0u8;
        for off in (0..self.len).step_by(PAGE) {
            // SAFETY: inside our own mapping.
            s = s.wrapping_add(unsafe { ((self.start + off) as *const u8).read_volatile() });
        }
        s
    }

    fn range(&self) -> String {
        format!("{:#x}-{:#x}", self.start, self.start + self.len)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.raw, self.raw_len) };
    }
}

pub fn run(args: Args) -> Result<()> {
    // Die with the parent: a monitor or test that crashes must not leak its workload.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    match args.mode {
        Mode::Hotcold {
            hot_mib,
            cold_mib,
            swap_after,
            duration,
            thp,
            busy,
            report_every,
        } => hotcold(&Hotcold {
            hot_mib,
            cold_mib,
            swap_after,
            duration,
            thp,
            busy,
            report_every,
        }),
        Mode::Touch { pages } => touch(pages),
        Mode::Sleeper { interval_us } => sleeper(interval_us),
        Mode::Forker {
            children,
            hot_mib,
            fork_on_stdin,
        } => forker(children, hot_mib, fork_on_stdin),
        Mode::Filemap {
            file,
            size_mib,
            hot_mib,
        } => filemap(&file, size_mib, hot_mib),
    }
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .context("writing to stdout")
}

struct Hotcold {
    hot_mib: u64,
    cold_mib: u64,
    swap_after: Option<f64>,
    duration: Option<f64>,
    thp: bool,
    busy: bool,
    report_every: Option<f64>,
}

fn hotcold(o: &Hotcold) -> Result<()> {
    let &Hotcold {
        hot_mib,
        cold_mib,
        swap_after,
        duration,
        thp,
        busy,
        report_every,
    } = o;
    if let Some(r) = report_every
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--report-every must be a positive number of seconds, not {r}");
    }
    if hot_mib == 0 || cold_mib == 0 {
        bail!("buffer sizes must be at least 1 MiB (hot {hot_mib}, cold {cold_mib})");
    }
    let mut hot = Buffer::map((hot_mib << 20) as usize, thp)?;
    let mut cold = Buffer::map((cold_mib << 20) as usize, thp)?;
    hot.touch_pages(usize::MAX);
    cold.touch_pages(usize::MAX);
    say(&format!(
        "READY pid={} hot={} cold={}",
        std::process::id(),
        hot.range(),
        cold.range()
    ))?;
    let t0 = Instant::now();
    let mut swapped = false;
    let (mut sweeps, mut last_report) = (0u64, Instant::now());
    loop {
        std::hint::black_box(hot.read_all());
        sweeps += 1;
        if !busy {
            // A sweep of the hot buffer takes about a millisecond; resting as long again keeps
            // every hot page accessed within each 5 ms sample while leaving CPU to the monitor.
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(every) = report_every {
            let since = last_report.elapsed().as_secs_f64();
            if since >= every {
                say(&format!("RATE {:.2}", sweeps as f64 / since))?;
                (sweeps, last_report) = (0, Instant::now());
            }
        }
        let elapsed = t0.elapsed().as_secs_f64();
        if !swapped && swap_after.is_some_and(|s| elapsed >= s) {
            std::mem::swap(&mut hot, &mut cold);
            swapped = true;
            say(&format!(
                "SWAPPED hot={} cold={}",
                hot.range(),
                cold.range()
            ))?;
        }
        if duration.is_some_and(|d| elapsed >= d) {
            return Ok(());
        }
    }
}

/// Touches every page of `buf` (a write, so a forked child gets its own copies), then reads
/// it every millisecond or so, forever.
fn keep_touching(buf: &Buffer) -> ! {
    buf.touch_pages(usize::MAX);
    loop {
        std::hint::black_box(buf.read_all());
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn forker(children: u32, hot_mib: u64, fork_on_stdin: bool) -> Result<()> {
    if !(1..=64).contains(&children) {
        bail!("--children must be 1 to 64, not {children}");
    }
    if hot_mib == 0 {
        bail!("--hot-mib must be at least 1");
    }
    // Every buffer is mapped before forking: a child does nothing but system calls and
    // memory accesses, safe after a fork.
    let bufs = (0..=children)
        .map(|_| Buffer::map((hot_mib << 20) as usize, false))
        .collect::<Result<Vec<_>>>()?;
    let parent = unsafe { libc::getpid() };
    bufs[0].touch_pages(usize::MAX);
    if fork_on_stdin {
        say(&format!("READY pid={parent} children="))?;
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading stdin")?;
    }
    let mut pids = Vec::with_capacity(children as usize);
    for buf in &bufs[1..] {
        // SAFETY: the child only calls prctl, getppid, _exit and touches its own mapping.
        match unsafe { libc::fork() } {
            -1 => bail!("fork failed: {}", std::io::Error::last_os_error()),
            0 => {
                // The death signal is not inherited: set it again, and leave if the parent
                // died before it was set.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                if unsafe { libc::getppid() } != parent {
                    unsafe { libc::_exit(0) };
                }
                keep_touching(buf);
            }
            pid => pids.push(pid.to_string()),
        }
    }
    if fork_on_stdin {
        say(&format!("CHILDREN {}", pids.join(",")))?;
    } else {
        say(&format!("READY pid={parent} children={}", pids.join(",")))?;
    }
    loop {
        std::hint::black_box(bufs[0].read_all());
        std::thread::sleep(Duration::from_millis(1));
        // Reap children that were killed, so they do not linger as zombies.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }
}

fn touch(pages: u64) -> Result<()> {
    let pages = pages as usize;
    let buf = Buffer::map((2 * pages).max(1) * PAGE, false)?;
    say(&format!("MAPPED {}", buf.range()))?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).context("reading stdin")?;
    buf.touch_pages(pages);
    say("TOUCHED")?;
    // Stay alive (and mapped) until the parent closes stdin.
    while stdin.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    Ok(())
}

/// A read-only shared mapping of a whole file.
struct FileMap {
    start: usize,
    len: usize,
}

impl FileMap {
    fn map(file: &std::fs::File, len: usize) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            bail!(
                "mmap of the file failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self {
            start: addr as usize,
            len,
        })
    }

    fn read(&self, from: usize, to: usize) -> u8 {
        let mut s = 0u8;
        for off in (from..to.min(self.len)).step_by(PAGE) {
            // SAFETY: inside our own mapping of a file at least `len` long.
            s = s.wrapping_add(unsafe { ((self.start + off) as *const u8).read_volatile() });
        }
        s
    }

    /// Resident pages of `[from, to)`.
    fn resident(&self, from: usize, to: usize) -> Result<usize> {
        let pages = (to - from) / PAGE;
        let mut vec = vec![0u8; pages];
        if unsafe { libc::mincore((self.start + from) as *mut _, to - from, vec.as_mut_ptr()) } != 0
        {
            bail!("mincore failed: {}", std::io::Error::last_os_error());
        }
        Ok(vec.iter().filter(|&&v| v & 1 != 0).count())
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.start as *mut _, self.len) };
    }
}

fn filemap(path: &std::path::Path, size_mib: u64, hot_mib: u64) -> Result<()> {
    if hot_mib == 0 || hot_mib >= size_mib {
        bail!("--hot-mib {hot_mib} must be at least 1 and below --size-mib {size_mib}");
    }
    let (len, hot) = ((size_mib << 20) as usize, (hot_mib << 20) as usize);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..size_mib {
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // Clean pages: reclaim drops them without writing them back.
    file.sync_all()
        .with_context(|| format!("writing back {}", path.display()))?;
    let map = std::sync::Arc::new(FileMap::map(&file, len)?);
    std::hint::black_box(map.read(0, len));
    say(&format!(
        "READY pid={} hot={:#x}-{:#x} cold={:#x}-{:#x}",
        std::process::id(),
        map.start,
        map.start + hot,
        map.start + hot,
        map.start + len
    ))?;
    let reader = std::sync::Arc::clone(&map);
    std::thread::spawn(move || {
        let mut line = String::new();
        let stdin = std::io::stdin();
        while stdin.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let answer = match (reader.resident(0, hot), reader.resident(hot, len)) {
                (Ok(h), Ok(c)) => format!("RESIDENT hot={h} cold={c}"),
                (Err(e), _) | (_, Err(e)) => format!("ERROR {e:#}"),
            };
            if say(&answer).is_err() {
                break;
            }
            line.clear();
        }
        // The parent closed stdin: done.
        std::process::exit(0);
    });
    loop {
        std::hint::black_box(map.read(0, hot));
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn sleeper(interval_us: u64) -> Result<()> {
    if interval_us == 0 {
        bail!("--interval-us must be positive");
    }
    say(&format!("READY pid={}", std::process::id()))?;
    loop {
        std::thread::sleep(Duration::from_micros(interval_us));
    }
}
