//! `damon serve`: a long-running agent that monitors configured target groups and exports
//! what it sees to Prometheus.
//!
//! - [`config`]: the TOML file, validated.
//! - [`targets`]: which processes a group holds now (cgroup, executable name, pid), polled once
//!   per update interval, and the index each is monitored at.
//! - [`Supervisor`]: one kdamond per target group, started when the group gets its first
//!   process, committed new targets when membership changes, stopped when it empties.
//! - [`metrics`]: snapshots reduced to per-process summaries, encoded on each scrape.
//! - [`http`]: `/metrics` and `/healthz`.
//!
//! One kdamond per group, not per process: a kdamond loads its own set of eBPF programs and
//! runs its own thread, so per-process kdamonds would multiply both by the process count,
//! while one kdamond holds up to 32 targets and a commit keeps the regions of the processes
//! that stay. A group that selects more than 32 processes monitors 32 and counts the others
//! in `damon_group_unmonitored_processes`.
//!
//! The kdamonds are plain threads that never wait on the runtime: their snapshots go down a
//! std channel that a blocking task drains into the [`metrics::Exporter`]. tokio runs the rest:
//! the HTTP server, the signals (SIGHUP reloads, SIGTERM and SIGINT stop), and the periodic
//! refresh, whose kdamond calls (start, commit, stop) run on the blocking pool.
pub mod config;
pub mod http;
pub mod metrics;
pub mod targets;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, mpsc},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use damon_common::MAX_TARGETS;

use self::{
    config::{Config, GroupConfig},
    http::{AppState, Health},
    metrics::{Exporter, SchemeState},
    targets::ProcInfo,
};
use crate::{
    access::EbpfOpsOptions,
    bpf::probe,
    core::{
        Attrs, ContextSpec, KdamondExit, KdamondHandle, OpsId, Pid, Snapshot, TargetSpec,
        scheme::Scheme,
    },
    error::Chain,
    runtime::{check_target, start_ebpf_kdamond},
};

/// A group's kdamond and what it was last given.
struct Running {
    kdamond_idx: usize,
    handle: KdamondHandle,
    order: Vec<Pid>,
    attrs: Attrs,
    /// The schemes it was given (`None`: not yet, or the last `set_schemes` failed).
    schemes: Option<Vec<Scheme>>,
}

struct GroupRun {
    cfg: GroupConfig,
    running: Option<Running>,
    /// The last failure to start or commit, logged once until it changes.
    last_error: Option<String>,
}

/// Owns the kdamonds: one per target group with at least one process.
pub struct Supervisor {
    groups: BTreeMap<String, GroupRun>,
    /// The group names in config order: a process two groups select is the first's.
    order: Vec<String>,
    next_kdamond: usize,
    sink: mpsc::Sender<Snapshot>,
    exporter: Arc<Mutex<Exporter>>,
    cgroup_root: Option<PathBuf>,
    options: EbpfOpsOptions,
}

impl Supervisor {
    pub fn new(
        sink: mpsc::Sender<Snapshot>,
        exporter: Arc<Mutex<Exporter>>,
        cgroup_root: Option<PathBuf>,
    ) -> Supervisor {
        Supervisor {
            groups: BTreeMap::new(),
            order: Vec::new(),
            next_kdamond: 0,
            sink,
            exporter,
            cgroup_root,
            options: EbpfOpsOptions::default(),
        }
    }

    fn exporter(&self) -> std::sync::MutexGuard<'_, Exporter> {
        self.exporter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `config`'s groups: removed ones stop, new ones start at the refresh that
    /// follows; a group that stays keeps its kdamond and regions, its new attributes
    /// committed (counters rescaled, as a kernel commit does).
    pub fn apply(&mut self, config: &Config) {
        let names: BTreeSet<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
        let removed: Vec<String> = self
            .groups
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(mut g) = self.groups.remove(&name) {
                if let Some(mut r) = g.running.take() {
                    r.handle.stop();
                }
                log::info!("group {name}: removed from the config, stopped");
            }
            self.exporter().remove_group(&name);
        }
        self.order = config.groups.iter().map(|g| g.name.clone()).collect();
        for cfg in &config.groups {
            match self.groups.get_mut(&cfg.name) {
                Some(g) => g.cfg = cfg.clone(),
                None => {
                    self.groups.insert(
                        cfg.name.clone(),
                        GroupRun {
                            cfg: cfg.clone(),
                            running: None,
                            last_error: None,
                        },
                    );
                }
            }
        }
        self.refresh();
    }

    /// Finds each group's processes and brings its kdamond in line. Groups go in config
    /// order, and a process an earlier group selected is left to it: two kdamonds on one
    /// process would each clear the Accessed bits the other samples.
    pub fn refresh(&mut self) {
        let mut claimed = BTreeSet::new();
        for name in self.order.clone() {
            self.refresh_group(&name, &mut claimed);
        }
    }

    fn refresh_group(&mut self, name: &str, claimed: &mut BTreeSet<Pid>) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        // A kdamond that stopped by itself (every target exited, or it failed) is dropped; a
        // new one starts below if the group still has processes.
        if let Some(r) = g.running.take_if(|r| !r.handle.is_running()) {
            match r.handle.exit() {
                Some(KdamondExit::Failed(e)) => {
                    log::warn!("group {name}: kdamond.{} failed: {e}", r.kdamond_idx)
                }
                other => log::debug!("group {name}: kdamond.{} ended: {other:?}", r.kdamond_idx),
            }
        }
        let mut found = targets::resolve(&g.cfg, self.cgroup_root.as_deref());
        found.retain(|pid, _| !claimed.contains(pid));
        claimed.extend(found.keys().copied());
        let current: Vec<Pid> = g
            .running
            .as_ref()
            .map(|r| r.order.clone())
            .unwrap_or_default();
        // A new process must be monitorable (its mappings readable); one that is not is left
        // out, and asked again at the next refresh.
        let wanted: BTreeSet<Pid> = found
            .keys()
            .copied()
            .filter(|pid| {
                current.contains(pid)
                    || check_target(*pid, OpsId::Vaddr)
                        .map_err(|e| log::debug!("group {name}: skipping {}", Chain(&e)))
                        .is_ok()
            })
            .collect();
        let order = targets::place(&current, &wanted, MAX_TARGETS as usize);
        let spec = ContextSpec {
            ops: OpsId::Vaddr,
            attrs: g.cfg.attrs,
            targets: order.iter().map(|&p| TargetSpec::vaddr(p)).collect(),
        };
        let result: Result<(), String> = if order.is_empty() {
            if let Some(mut r) = g.running.take() {
                r.handle.stop();
                log::info!(
                    "group {name}: no process left, kdamond.{} stopped",
                    r.kdamond_idx
                );
            }
            Ok(())
        } else if let Some(r) = &mut g.running {
            if r.order != order || r.attrs != g.cfg.attrs {
                match r.handle.commit(spec) {
                    Ok(()) => {
                        log::info!(
                            "group {name}: kdamond.{} now monitors {} processes",
                            r.kdamond_idx,
                            order.len()
                        );
                        r.order = order;
                        r.attrs = g.cfg.attrs;
                        Ok(())
                    }
                    // Most often a process exited since it was found: the next refresh
                    // sees it gone.
                    Err(e) => Err(format!("committing new targets: {}", Chain(&e))),
                }
            } else {
                Ok(())
            }
        } else {
            let idx = self.next_kdamond;
            self.next_kdamond += 1;
            match start_ebpf_kdamond(idx, spec, self.options, self.sink.clone(), None) {
                Ok(handle) => {
                    log::info!(
                        "group {name}: kdamond.{idx} started on {} processes",
                        order.len()
                    );
                    g.running = Some(Running {
                        kdamond_idx: idx,
                        handle,
                        order,
                        attrs: g.cfg.attrs,
                        schemes: None,
                    });
                    Ok(())
                }
                Err(e) => Err(format!("starting a kdamond: {}", Chain(&e))),
            }
        };
        // The schemes go to a kdamond when it starts and when a reload changes them; a scheme
        // at an index that had one keeps its stats.
        let result = result.and_then(|()| match &mut g.running {
            Some(r) if r.schemes.as_ref() != Some(&g.cfg.schemes) => {
                match r.handle.set_schemes(g.cfg.schemes.clone()) {
                    Ok(()) => {
                        r.schemes = Some(g.cfg.schemes.clone());
                        Ok(())
                    }
                    Err(e) => Err(format!("setting the schemes: {}", Chain(&e))),
                }
            }
            _ => Ok(()),
        });
        let scheme_stats: Vec<SchemeState> = match &g.running {
            Some(r) if !g.cfg.schemes.is_empty() => match r.handle.schemes_now() {
                Ok(now) => g
                    .cfg
                    .schemes
                    .iter()
                    .zip(now.stats)
                    .map(|(s, stats)| SchemeState {
                        action: s.action.as_str(),
                        stats,
                    })
                    .collect(),
                Err(e) => {
                    log::debug!("group {name}: scheme stats: {}", Chain(&e));
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        match result {
            Ok(()) => g.last_error = None,
            Err(e) => {
                if g.last_error.as_ref() != Some(&e) {
                    log::warn!("group {name}: {e} (retrying every update interval)");
                }
                g.last_error = Some(e);
            }
        }
        let (monitored, kdamond): (BTreeMap<Pid, ProcInfo>, Option<usize>) = match &g.running {
            Some(r) => (
                found
                    .iter()
                    .filter(|(p, _)| r.order.contains(p))
                    .map(|(p, i)| (*p, i.clone()))
                    .collect(),
                Some(r.kdamond_idx),
            ),
            None => (BTreeMap::new(), None),
        };
        let unmonitored = wanted.len().saturating_sub(monitored.len()) as u64;
        let cgroup = g.cfg.cgroup.clone().unwrap_or_default();
        let mut exporter = self.exporter();
        exporter.set_group(name, &cgroup, monitored, unmonitored, kdamond);
        exporter.set_schemes(name, scheme_stats);
    }

    /// Stops every kdamond: their programs are detached and unloaded before this returns.
    pub fn stop_all(&mut self) {
        for (name, g) in &mut self.groups {
            if let Some(mut r) = g.running.take() {
                r.handle.stop();
                log::info!("group {name}: kdamond.{} stopped", r.kdamond_idx);
            }
        }
    }

    /// How often membership is polled: the shortest update interval of the groups.
    pub fn tick(config: &Config) -> Duration {
        let us = config
            .groups
            .iter()
            .map(|g| g.attrs.update_us)
            .min()
            .unwrap_or(1_000_000);
        Duration::from_micros(us.clamp(100_000, 60_000_000))
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Hands every snapshot to the exporter until every sender is gone: the kdamond threads keep
/// sending without ever waiting for this.
fn drain(rx: mpsc::Receiver<Snapshot>, exporter: &Mutex<Exporter>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        exporter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ingest(batch);
    }
}

/// What `damon serve` was asked for.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub config: PathBuf,
    /// Overrides the config's `listen`.
    pub listen: Option<SocketAddr>,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(opts: ServeOptions) -> Result<()> {
    let config = Config::load(&opts.config)?;
    let missing = probe::check_kernel();
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .into_iter()
            .map(|m| format!("  - {}", m.0))
            .collect();
        bail!(
            "this system lacks what monitoring needs:\n{}",
            list.join("\n")
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve(opts, config))
}

/// Runs `f` on the supervisor in the blocking pool: kdamond starts, commits and stops wait
/// for a sample interval or load programs.
async fn blocking(
    mut sup: Supervisor,
    f: impl FnOnce(&mut Supervisor) + Send + 'static,
) -> Result<Supervisor> {
    tokio::task::spawn_blocking(move || {
        f(&mut sup);
        sup
    })
    .await
    .context("the supervisor task failed")
}

fn health_limit_ns(tick: Duration) -> u64 {
    // Three missed refreshes, and at least 10 s: a start that loads programs takes a while.
    (tick * 3).max(Duration::from_secs(10)).as_nanos() as u64
}

async fn serve(opts: ServeOptions, config: Config) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let listen = opts.listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr().context("the listening address")?;
    let mut hup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;

    let exporter = Arc::new(Mutex::new(Exporter::default()));
    let (tx, rx) = mpsc::channel();
    let drainer = {
        let exporter = Arc::clone(&exporter);
        tokio::task::spawn_blocking(move || drain(rx, &exporter))
    };
    let mut tick_every = Supervisor::tick(&config);
    let health = Arc::new(Health::new(health_limit_ns(tick_every)));
    let cgroup_root = targets::cgroup2_mount();
    if cgroup_root.is_none() && config.groups.iter().any(|g| g.cgroup.is_some()) {
        log::warn!("no cgroup2 mount in /proc/mounts: cgroup targets find no process");
    }
    let sup = Supervisor::new(tx, Arc::clone(&exporter), cgroup_root);
    let first = config.clone();
    let mut sup = blocking(sup, move |s| s.apply(&first)).await?;
    health.refreshed();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = Arc::new(AppState {
        exporter: Arc::clone(&exporter),
        health: Arc::clone(&health),
    });
    let mut server = tokio::spawn(http::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    log::info!(
        "serving /metrics and /healthz on http://{addr}, {} target groups",
        config.groups.len()
    );
    {
        use std::io::Write;
        // The address taken (port 0 picks a free one), for whoever started us.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LISTENING {addr}");
        let _ = out.flush();
    }

    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: the apply above just refreshed
    let ended: Result<&str> = loop {
        tokio::select! {
            _ = tick.tick() => {
                sup = blocking(sup, Supervisor::refresh).await?;
                health.refreshed();
            }
            _ = hup.recv() => {
                match reload(&opts.config, listen, opts.listen.is_some()) {
                    Ok(new) => {
                        log::info!("SIGHUP: reloading {}", opts.config.display());
                        let every = Supervisor::tick(&new);
                        sup = blocking(sup, move |s| s.apply(&new)).await?;
                        health.refreshed();
                        if every != tick_every {
                            tick_every = every;
                            health.set_limit(health_limit_ns(every));
                            tick = tokio::time::interval(every);
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            tick.tick().await;
                        }
                    }
                    Err(e) => log::error!(
                        "SIGHUP: {}; still running the previous config",
                        Chain(e.as_ref())
                    ),
                }
            }
            _ = term.recv() => break Ok("SIGTERM"),
            _ = int.recv() => break Ok("SIGINT"),
            r = &mut server => break match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("the HTTP server task failed")),
            },
        }
    };
    if let Ok(why) = &ended {
        log::info!("{why}: stopping");
    }
    let _ = stop_tx.send(());
    // Every kdamond stops and unloads its programs; dropping the supervisor drops the last
    // sender, which ends the drain.
    let sup = blocking(sup, Supervisor::stop_all).await?;
    drop(sup);
    drainer.await.context("the snapshot drain failed")?;
    if !server.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
    }
    ended.map(|_| ())
}

/// The config at `path` for a reload: a new listen address needs a restart.
fn reload(path: &Path, listen: SocketAddr, overridden: bool) -> Result<Config> {
    let new = Config::load(path)?;
    if !overridden && new.listen != listen {
        log::warn!(
            "SIGHUP: listen changed to {}; still listening on {listen} until restarted",
            new.listen
        );
    }
    Ok(new)
}
