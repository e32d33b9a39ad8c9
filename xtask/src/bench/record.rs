//! A long `damon record` at the defaults (5 ms / 100 ms / 1 s), ten minutes by default
//! (`DAMON_BENCH_RECORD_S` overrides), on a 1 GiB process with 64 MiB hot (`damon workload
//! hotcold`), measured from outside. Whether its costs stay flat however long it runs:
//!
//! - RSS (and its peak) and CPU of the recorder, per minute;
//! - the flush gap: the time between two growths of the output file, which is polled every
//!   20 ms (a growth is a flush: the journal only grows);
//! - the size of the file against the snapshots it holds (counted by `damon report`, which
//!   reads the journal as it is): linear if the bytes each period adds per snapshot stay the
//!   same (they follow the number of regions, which DAMON adapts early in a run);
//! - at the end, the time from the last append to the damo file in place, and that file.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::proc::{
    Spawned, cpu_seconds, damon, median, monotonic_ns, peak_rss_kib, rss_kib, workload,
};

const HOT_MIB: u64 = 64;
const COLD_MIB: u64 = 1024 - HOT_MIB;
const POLL: Duration = Duration::from_millis(20);

/// A directory of our own under the temporary directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("damon-bench-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Watches the output file every 20 ms from a thread of its own, so that the main thread's
/// measurements (a `damon report` takes a while) do not delay what it sees: the journal's
/// growths (when, and its size after), and when another file (the damo file) replaced it.
struct Watcher {
    state: Arc<Mutex<Watched>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Watched {
    growths: Vec<(u64, u64)>,
    finished_at: Option<u64>,
}

impl Watcher {
    fn start(path: PathBuf) -> Self {
        let state = Arc::new(Mutex::new(Watched::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut journal_inode = None;
            while !sp.load(Ordering::Relaxed) {
                let now = monotonic_ns();
                if let Ok(meta) = std::fs::metadata(&path) {
                    let mut w = st.lock().unwrap_or_else(|e| e.into_inner());
                    match journal_inode {
                        None => journal_inode = Some(meta.ino()),
                        Some(ino) if ino != meta.ino() => {
                            w.finished_at.get_or_insert(now);
                        }
                        Some(_) => {
                            if w.growths.last().is_none_or(|&(_, size)| size != meta.len()) {
                                w.growths.push((now, meta.len()));
                            }
                        }
                    }
                }
                std::thread::sleep(POLL);
            }
        });
        Watcher {
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn growths(&self) -> Vec<(u64, u64)> {
        self.lock().growths.clone()
    }

    fn finished_at(&self) -> Option<u64> {
        self.lock().finished_at
    }

    /// Stops watching; the growths and when the journal was replaced.
    fn stop(mut self) -> (Vec<(u64, u64)>, Option<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let w = self.lock();
        (w.growths.clone(), w.finished_at)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One period of the run, as seen at its end.
struct Row {
    at_s: f64,
    snapshots: u64,
    /// Regions of the last snapshot.
    regions: u64,
    bytes: u64,
    /// Bytes the period added per snapshot it added.
    period_bytes_per_snapshot: f64,
    rss_kib: u64,
    peak_kib: u64,
    cpu_pct: f64,
    max_gap_s: f64,
}

/// Snapshots in a record file (or journal) and the regions of its last one, from the header
/// of `damon report access`: `# records: R, snapshots: N, lost: L` and `#   regions: N, ...`.
fn snapshots_in(bin: &Path, file: &Path) -> Result<(u64, u64)> {
    let out = Command::new(bin)
        .args(["report", "access", "-i"])
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .context("running damon report")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Numbers have thousands separators ("1,073"); fields end with ", ".
    let number_at = |prefix: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.split_once(key).map(|(_, n)| n))
            .and_then(|n| {
                n.split(", ")
                    .next()?
                    .replace(',', "")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    let snapshots = number_at("# records: ", "snapshots: ");
    let regions = number_at("#   ", "regions: ");
    snapshots
        .zip(regions)
        .with_context(|| format!("no snapshot count from damon report on {}", file.display()))
}

pub fn run(root: &Path) -> Result<()> {
    let secs: u64 =
        match std::env::var("DAMON_BENCH_RECORD_S") {
            Ok(s) => s.parse().ok().filter(|&s| s >= 10).with_context(|| {
                format!("DAMON_BENCH_RECORD_S={s:?}: want seconds, at least 10")
            })?,
            Err(_) => 600,
        };
    let period_s = (secs / 10).clamp(5, 60);
    let bin = damon(root);
    let (w, _) = workload(
        &bin,
        &[
            "hotcold",
            "--hot-mib",
            &HOT_MIB.to_string(),
            "--cold-mib",
            &COLD_MIB.to_string(),
        ],
    )?;
    let scratch = ScratchDir::new()?;
    let out = scratch.0.join("long.data");
    println!(
        "recording a {} MiB process ({HOT_MIB} MiB hot) for {secs} s at the defaults into {}",
        HOT_MIB + COLD_MIB,
        out.display()
    );
    let mut cmd = Command::new(&bin);
    cmd.args(["record", "-d", &secs.to_string(), "-p"])
        .arg(w.pid().to_string())
        .arg("-o")
        .arg(&out)
        .stderr(Stdio::null());
    let t0 = monotonic_ns();
    let mut rec = Spawned::start(cmd)?;
    let pid = rec.pid();

    let watcher = Watcher::start(out.clone());
    let mut rows: Vec<Row> = Vec::new();
    let (mut cpu_before, mut at_before) = (cpu_seconds(pid)?, t0);
    let mut next_row = t0 + period_s * 1_000_000_000;
    let status = loop {
        if let Some(status) = rec.child.try_wait()? {
            break status;
        }
        let now = monotonic_ns();
        if now >= next_row && watcher.finished_at().is_none() {
            let (cpu, rss, peak) = (cpu_seconds(pid)?, rss_kib(pid)?, peak_rss_kib(pid)?);
            let growths = watcher.growths();
            let in_period: Vec<u64> = growths
                .windows(2)
                .filter(|g| g[1].0 > at_before && g[1].0 <= now)
                .map(|g| g[1].0 - g[0].0)
                .collect();
            let bytes = growths.last().map_or(0, |g| g.1);
            let (snapshots, regions) = snapshots_in(&bin, &out)?;
            let (bytes_before, snapshots_before) =
                rows.last().map_or((0, 0), |r| (r.bytes, r.snapshots));
            rows.push(Row {
                at_s: (now - t0) as f64 / 1e9,
                snapshots,
                regions,
                bytes,
                period_bytes_per_snapshot: bytes.saturating_sub(bytes_before) as f64
                    / snapshots.saturating_sub(snapshots_before).max(1) as f64,
                rss_kib: rss,
                peak_kib: peak,
                cpu_pct: (cpu - cpu_before) / ((now - at_before) as f64 / 1e9) * 100.0,
                max_gap_s: in_period.iter().copied().max().unwrap_or(0) as f64 / 1e9,
            });
            let r = rows.last().expect("just pushed");
            println!(
                "  {:6.0} s: {} snapshots of {} regions, {} KiB, RSS {} KiB (peak {}), CPU {:.2} %, longest flush gap {:.2} s",
                r.at_s,
                r.snapshots,
                r.regions,
                r.bytes / 1024,
                r.rss_kib,
                r.peak_kib,
                r.cpu_pct,
                r.max_gap_s
            );
            (cpu_before, at_before) = (cpu, now);
            next_row += period_s * 1_000_000_000;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let exited_at = monotonic_ns();
    if !status.success() {
        bail!("damon record exited with {status}");
    }
    let final_bytes = std::fs::metadata(&out)?.len();
    let (final_snapshots, _) = snapshots_in(&bin, &out)?;
    let (growths, finished_at) = watcher.stop();
    let last_append = growths.last().map_or(t0, |g| g.0);
    let finished_at = finished_at.unwrap_or(exited_at);

    let gaps: Vec<f64> = growths
        .windows(2)
        .map(|g| (g[1].0 - g[0].0) as f64 / 1e9)
        .collect();
    let max_gap = gaps.iter().copied().fold(0.0, f64::max);
    println!(
        "\n| time (s) | snapshots | regions | file (KiB) | bytes per snapshot, that {period_s} s | RSS (MiB) | peak RSS (MiB) | CPU that {period_s} s (% of a CPU) | longest flush gap (s) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {:.0} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.at_s,
            r.snapshots,
            r.regions,
            r.bytes / 1024,
            r.period_bytes_per_snapshot,
            r.rss_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0,
            r.cpu_pct,
            r.max_gap_s
        );
    }
    println!(
        "\nflushes: {} growths of the file, gap median {:.3} s, longest {:.3} s",
        growths.len(),
        median(&gaps),
        max_gap
    );
    println!(
        "end: the damo file (json_compressed) was in place {:.2} s after the last append; {} snapshots in {} KiB ({:.0} bytes per snapshot; the journal had {} KiB)",
        finished_at.saturating_sub(last_append) as f64 / 1e9,
        final_snapshots,
        final_bytes / 1024,
        final_bytes as f64 / final_snapshots.max(1) as f64,
        growths.last().map_or(0, |g| g.1) / 1024
    );
    Ok(())
}
