//! `damon serve` against real processes, a real cgroup and a real Prometheus server: the
//! working set Prometheus scrapes, processes joining and leaving a cgroup, SIGHUP reloads, and
//! SIGTERM leaving no program loaded.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use aya::programs::loaded_programs;
use damon_tests::{ChildGuard, Workload, damon_bin, poll, prometheus, promtool, wait_until};

const MIB: f64 = (1u64 << 20) as f64;

/// A cgroup v2 directory created for a test below the cgroup2 mount; on drop, the processes
/// still in it are moved to its parent and it is removed. Only the cgroup2 hierarchy is ever
/// written: processes are never moved in a v1 hierarchy.
struct Cgroup {
    dir: PathBuf,
    /// As `/proc/PID/cgroup` names it: `/damon-serve-test-...`.
    path: String,
}

impl Cgroup {
    fn create(tag: &str) -> Result<Cgroup> {
        let root = damon_user::serve::targets::cgroup2_mount()
            .context("no cgroup2 mount in /proc/mounts")?;
        let name = format!("damon-serve-test-{}-{tag}", std::process::id());
        let dir = root.join(&name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Cgroup {
            dir,
            path: format!("/{name}"),
        })
    }

    /// A cgroup below this one, removed on drop (before this one, when declared after it).
    fn child(&self, name: &str) -> Result<Cgroup> {
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Cgroup {
            dir,
            path: format!("{}/{name}", self.path),
        })
    }

    fn add(&self, pid: i32) -> Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", self.dir.display()))
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let parent = self.dir.parent().map(|p| p.join("cgroup.procs"));
        for _ in 0..50 {
            for pid in self.pids() {
                if let Some(p) = &parent {
                    let _ = std::fs::write(p, pid.to_string());
                }
            }
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// One HTTP/1.0 GET: the status and the body.
fn http_get(addr: SocketAddr, path: &str, accept: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header end in {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running `damon serve`, its log in a file; SIGKILLed on drop if still running.
struct Agent {
    child: ChildGuard,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Agent {
    fn start(config: &Path) -> Result<Agent> {
        let log = tempfile::NamedTempFile::new().context("log file")?;
        let mut child = ChildGuard(
            Command::new(damon_bin())
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(config)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log.reopen()?))
                .spawn()
                .context("starting damon serve")?,
        );
        let stdout = child.0.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = tx.send(r.read_line(&mut line).map(|_| line));
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("damon serve said nothing within 30 s")??;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .with_context(|| {
                format!(
                    "damon serve said {line:?}, not LISTENING ADDR; log:\n{}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                )
            })?;
        Ok(Agent { child, addr, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// `/metrics` in the classic text format (what curl and promtool get).
    fn metrics(&self) -> Result<String> {
        let (status, body) = http_get(self.addr, "/metrics", "*/*")?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        Ok(body)
    }

    /// The ids of the BPF programs the agent holds (program and link fds show `prog_id`).
    fn program_ids(&self) -> BTreeSet<u32> {
        let dir = format!("/proc/{}/fdinfo", self.child.pid());
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|info| {
                        info.lines()
                            .find_map(|l| l.strip_prefix("prog_id:"))
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The thread ids of the agent's kdamonds (threads named `kdamond.N`).
    fn kdamond_tids(&self) -> BTreeSet<i32> {
        let dir = format!("/proc/{}/task", self.child.pid());
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("comm"))
                            .is_ok_and(|c| c.starts_with("kdamond."))
                    })
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGTERM; the agent must exit successfully and leave none of its programs loaded.
    fn terminate_cleanly(mut self) {
        let held = self.program_ids();
        assert!(
            !held.is_empty(),
            "the agent held no BPF program while running"
        );
        self.child.signal(libc::SIGTERM);
        let status = self
            .child
            .wait_for(Duration::from_secs(20))
            .expect("the agent to exit after SIGTERM");
        let log = self.log();
        assert!(status.success(), "exit status {status}; log:\n{log}");
        let still_loaded = || -> Vec<u32> {
            loaded_programs()
                .filter_map(|p| p.ok())
                .map(|p| p.id())
                .filter(|id| held.contains(id))
                .collect()
        };
        if wait_until(
            "the agent's programs to unload",
            Duration::from_secs(5),
            || still_loaded().is_empty(),
        )
        .is_err()
        {
            panic!(
                "programs {:?} still loaded after SIGTERM; log:\n{log}",
                still_loaded()
            );
        }
    }
}

/// The value of the sample line starting with `series` (name and labels) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn has_pid(text: &str, metric: &str, pid: i32) -> bool {
    let label = format!("pid=\"{pid}\"");
    text.lines()
        .any(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
}

/// A Prometheus server on a free local port scraping `target` every second, with its
/// storage in a temporary directory; killed on drop.
struct Prometheus {
    _child: ChildGuard,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Result<Prometheus> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: damon\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let child = ChildGuard(
            Command::new(prometheus())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting prometheus")?,
        );
        let p = Prometheus {
            _child: child,
            addr,
            _dir: dir,
        };
        poll("prometheus to be ready", Duration::from_secs(30), || {
            Ok(matches!(http_get(addr, "/-/ready", "*/*"), Ok((200, _))).then_some(()))
        })?;
        Ok(p)
    }

    /// The instant vector of `query`: each series' labels and value.
    fn query(&self, query: &str) -> Result<Vec<(serde_json::Value, f64)>> {
        let path = format!("/api/v1/query?query={}", urlencode(query));
        let (status, body) = http_get(self.addr, &path, "application/json")?;
        if status != 200 {
            bail!("{query}: HTTP {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let result = v["data"]["result"]
            .as_array()
            .with_context(|| format!("{query}: no result in {body}"))?;
        result
            .iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("{query}: no value in {r}"))?;
                Ok((r["metric"].clone(), value))
            })
            .collect()
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).expect("writing the config");
    path
}

#[test]
#[ignore = "needs root"]
fn prometheus_scrapes_a_cgroups_working_set() {
    let cg = Cgroup::create("prom").expect("cgroup");
    let hot = [16u64, 24];
    let mut workloads = Vec::new();
    for h in hot {
        let (w, _) = Workload::start(&["hotcold", "--hot-mib", &h.to_string(), "--cold-mib", "48"])
            .expect("workload");
        cg.add(w.pid()).expect("into the cgroup");
        workloads.push(w);
    }
    let pids: Vec<i32> = workloads.iter().map(Workload::pid).collect();
    let truth = hot.iter().sum::<u64>() as f64 * MIB;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            "[[group]]\nname = \"hotcold\"\ncgroup = \"{}\"\nsample = \"5ms\"\naggr = \"100ms\"\nupdate = \"1s\"\n",
            cg.path
        ),
    );
    let agent = Agent::start(&config).expect("damon serve");
    poll(
        "both workloads in /metrics",
        Duration::from_secs(20),
        || {
            let m = agent.metrics()?;
            Ok(pids
                .iter()
                .all(|&p| has_pid(&m, "damon_process_working_set_bytes", p))
                .then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));

    // promtool accepts the exposition as curl gets it.
    let text = agent.metrics().expect("metrics");
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feeding promtool");
    let out = check.wait_with_output().expect("promtool output");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\non:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus asks for OpenMetrics, and gets it.
    let (status, om) = http_get(
        agent.addr,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .expect("OpenMetrics");
    assert_eq!(status, 200);
    assert!(
        om.ends_with("# EOF\n") && om.contains("# TYPE damon_group_snapshots counter"),
        "{om}"
    );
    assert!(
        !text.contains("# EOF"),
        "the classic format has no EOF line"
    );

    let prom = Prometheus::start(agent.addr).expect("prometheus");
    let selector = "damon_group_working_set_bytes{group=\"hotcold\"}";
    poll("two scrapes of the group", Duration::from_secs(30), || {
        let r = prom.query(&format!("count_over_time({selector}[1m])"))?;
        Ok(r.first().filter(|(_, n)| *n >= 2.0).map(|_| ()))
    })
    .expect("scrapes");
    // The regions adapt over the first aggregations: three queries in a row, a scrape apart,
    // must each be within 10 % of the hot buffers' total.
    let mut seen = Vec::new();
    let mut in_a_row = 0;
    for _ in 0..30 {
        let r = prom.query(selector).expect("query");
        assert_eq!(r.len(), 1, "one series for the group: {r:?}");
        let (labels, v) = &r[0];
        assert_eq!(labels["cgroup"], cg.path.as_str());
        seen.push(v / MIB);
        in_a_row = if (v - truth).abs() <= truth * 0.1 {
            in_a_row + 1
        } else {
            0
        };
        if in_a_row == 3 {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        in_a_row,
        3,
        "working set never within 10 % of {} MiB three scrapes in a row: {seen:.1?} MiB",
        truth / MIB
    );
    eprintln!(
        "group working set through Prometheus: {seen:.1?} MiB (truth {} MiB)",
        truth / MIB
    );

    let per_proc = prom
        .query("damon_process_working_set_bytes{group=\"hotcold\"}")
        .expect("query");
    let found: BTreeSet<i32> = per_proc
        .iter()
        .filter_map(|(l, _)| l["pid"].as_str()?.parse().ok())
        .collect();
    assert_eq!(
        found,
        pids.iter().copied().collect(),
        "per-process series: {per_proc:?}"
    );
    for (labels, v) in &per_proc {
        assert_eq!(labels["comm"], "damon", "{labels}");
        assert_eq!(labels["cgroup"], cg.path.as_str(), "{labels}");
        assert!(*v > 0.0, "{labels}: {v}");
    }
    drop(prom);
    agent.terminate_cleanly();
    drop(workloads);
}

#[test]
#[ignore = "needs root"]
fn processes_join_and_leave_and_sighup_reloads() {
    let cg = Cgroup::create("join").expect("cgroup");
    let (mut a, _) = Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("a");
    cg.add(a.pid()).expect("a into the cgroup");
    let dir = tempfile::tempdir().expect("tempdir");
    let cg_group = format!("[[group]]\nname = \"cg\"\ncgroup = \"{}\"\n", cg.path);
    let config = write_config(dir.path(), &cg_group);
    let agent = Agent::start(&config).expect("damon serve");
    let metric = "damon_process_working_set_bytes";
    let wait_for = |what: &str, cond: &dyn Fn(&str) -> bool| {
        // Membership is polled every update interval (1 s): three of them at most.
        poll(what, Duration::from_secs(3), || {
            let m = agent.metrics()?;
            Ok(cond(&m).then_some(()))
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e}; metrics:\n{}\nlog:\n{}",
                agent.metrics().unwrap_or_default(),
                agent.log()
            )
        })
    };
    // The first kdamond start loads the programs: give it longer.
    poll("a in /metrics", Duration::from_secs(20), || {
        Ok(has_pid(&agent.metrics()?, metric, a.pid()).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));

    // b joins a cgroup below the group's: descendants count.
    let sub = cg.child("sub").expect("child cgroup");
    let (b, _) = Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("b");
    sub.add(b.pid()).expect("b into the child cgroup");
    wait_for("b to join", &|m| has_pid(m, metric, b.pid()));
    let b_cgroup = format!("cgroup=\"{}\",pid=\"{}\"", sub.path, b.pid());
    assert!(
        agent.metrics().expect("metrics").contains(&b_cgroup),
        "b's series name its own cgroup ({b_cgroup})"
    );
    // a exits.
    let a_pid = a.pid();
    a.kill();
    wait_for("a to leave", &|m| !has_pid(m, metric, a_pid));
    assert!(has_pid(&agent.metrics().expect("metrics"), metric, b.pid()));

    // Reload: a pid group is added; cg stays, with a new aggregation interval, and keeps its
    // kdamond thread (committed, not restarted) and its snapshot count. b is also named in
    // the new group: it stays cg's, the first group to select it.
    let snapshots = |m: &str| {
        value(
            m,
            &format!(
                "damon_group_snapshots_total{{group=\"cg\",cgroup=\"{}\"}}",
                cg.path
            ),
        )
    };
    let (c, _) = Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("c");
    let before = snapshots(&agent.metrics().expect("metrics")).expect("cg's snapshot count");
    assert!(before > 0.0);
    let kdamonds_before = agent.kdamond_tids();
    assert_eq!(kdamonds_before.len(), 1, "one kdamond, cg's");
    write_config(
        dir.path(),
        &format!(
            "{cg_group}aggr = \"200ms\"\n[[group]]\nname = \"bypid\"\npids = [{}, {}]\n",
            c.pid(),
            b.pid()
        ),
    );
    agent.child.signal(libc::SIGHUP);
    wait_for("c in group bypid", &|m| {
        m.lines().any(|l| {
            l.starts_with(&format!("{metric}{{group=\"bypid\""))
                && l.contains(&format!("pid=\"{}\"", c.pid()))
        })
    });
    let after = snapshots(&agent.metrics().expect("metrics")).expect("cg's snapshot count");
    assert!(
        after >= before,
        "cg's kdamond restarted: {before} snapshots, then {after}"
    );
    let kdamonds_after = agent.kdamond_tids();
    assert!(
        kdamonds_after.is_superset(&kdamonds_before) && kdamonds_after.len() == 2,
        "cg's kdamond {kdamonds_before:?} must go on beside bypid's: {kdamonds_after:?}"
    );
    let m = agent.metrics().expect("metrics");
    let b_label = format!("pid=\"{}\"", b.pid());
    let b_series: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&b_label))
        .collect();
    assert!(
        b_series.len() == 1 && b_series[0].contains("group=\"cg\""),
        "b must be monitored once, by cg: {b_series:?}"
    );

    // A bad config is refused; the running one stays.
    write_config(dir.path(), "[[group]]\nname = \"x\"\npids = [0]\n");
    agent.child.signal(libc::SIGHUP);
    wait_until("the refusal in the log", Duration::from_secs(3), || {
        agent.log().contains("pid 0 is not a process id")
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
    let m = agent.metrics().expect("metrics after a bad reload");
    assert!(
        has_pid(&m, metric, b.pid()) && has_pid(&m, metric, c.pid()),
        "{m}"
    );

    // Reload: cg is removed.
    write_config(
        dir.path(),
        &format!("[[group]]\nname = \"bypid\"\npids = [{}]\n", c.pid()),
    );
    agent.child.signal(libc::SIGHUP);
    wait_for("group cg to go", &|m| !m.contains("group=\"cg\""));
    let (status, body) = http_get(agent.addr, "/healthz", "*/*").expect("healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    agent.terminate_cleanly();
    drop((b, c));
}

#[test]
fn a_bad_config_is_refused_naming_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[[group]]\nname = \"web\"\ncomm = [\"nginx\"]\nsample = \"5 parsecs\"\n",
    );
    let out = Command::new(damon_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("damon serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("group \"web\"") && err.contains("\"5 parsecs\""),
        "{err}"
    );
    let out = Command::new(damon_bin())
        .args(["serve", "--listen", "localhost", "--config"])
        .arg(&config)
        .output()
        .expect("damon serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("\"localhost\""), "{err}");
}

/// Every query of `contrib/grafana-dashboard.json` is valid PromQL (promtool checks it as a
/// recording rule) and names only metrics the agent exposes.
#[test]
fn the_grafana_dashboard_queries_our_metrics() {
    use damon_user::{
        core::{Intervals, Pid, RegionSnapshot, Snapshot, TargetSnapshot},
        serve::{metrics::Exporter, targets::ProcInfo},
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/grafana-dashboard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 9, "{exprs:?}");

    // The variables Grafana substitutes, as a match-all.
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.replace("$group", ".*").replace("$job", ".*");
            format!("      - record: dashboard:expr{i}\n        expr: '{e}'\n")
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .expect("rules file");
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut e = Exporter::default();
    let info = ProcInfo {
        comm: "w".into(),
        cgroup: "/".into(),
    };
    e.set_group("g", "/", [(Pid(1), info)].into_iter().collect(), 0, Some(0));
    e.ingest(vec![Snapshot {
        kdamond_idx: 0,
        context_idx: 0,
        start_ns: 0,
        end_ns: 1,
        intervals: Intervals {
            sample_us: 5_000,
            aggr_us: 100_000,
            update_us: 1_000_000,
            goal: Default::default(),
        },
        targets: vec![TargetSnapshot {
            target_idx: 0,
            pid: Pid(1),
            regions: vec![RegionSnapshot {
                start: 0,
                end: 4096,
                nr_accesses: 1,
                age: 0,
                nr_unmeasured: 0,
            }],
        }],
    }]);
    let text = e.encode(Default::default()).expect("encode");
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for expr in &exprs {
        let names = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("damon_") || w.starts_with("process_"));
        for name in names {
            assert!(exposed.contains(name), "{name} (in {expr}) is not exposed");
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_group_by_executable_name_follows_its_processes() {
    // A copy of our binary under a name no other process has: its comm and exe name.
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("dsv{}", std::process::id());
    let exe = dir.path().join(&name);
    std::fs::copy(damon_bin(), &exe).expect("copying the binary");
    let start = || -> ChildGuard {
        let mut child = ChildGuard(
            Command::new(&exe)
                .args(["workload", "hotcold", "--hot-mib", "4", "--cold-mib", "4"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("the renamed workload"),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its READY line");
        assert!(line.starts_with("READY"), "{line:?}");
        child
    };
    let config = write_config(
        dir.path(),
        &format!("[[group]]\nname = \"byname\"\ncomm = [\"{name}\"]\n"),
    );
    let agent = Agent::start(&config).expect("damon serve");
    let metric = "damon_process_working_set_bytes";
    let mut first = start();
    poll(
        "the first process in /metrics",
        Duration::from_secs(20),
        || Ok(has_pid(&agent.metrics()?, metric, first.pid()).then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
    let m = agent.metrics().expect("metrics");
    assert!(
        m.contains(&format!("pid=\"{}\",comm=\"{name}\"", first.pid())),
        "{m}"
    );
    let second = start();
    poll(
        "the second process in /metrics",
        Duration::from_secs(3),
        || Ok(has_pid(&agent.metrics()?, metric, second.pid()).then_some(())),
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
    let first_pid = first.pid();
    let _ = first.0.kill();
    let _ = first.0.wait();
    poll("the first process to leave", Duration::from_secs(3), || {
        Ok((!has_pid(&agent.metrics()?, metric, first_pid)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
    agent.terminate_cleanly();
    drop(second);
}

/// Pids this test forked (through a workload), SIGKILLed on drop: children die with their
/// parent anyway, this makes sure even if one outlived it.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill has no memory preconditions; these are our workload's children.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_pid_group_follows_the_process_tree() {
    let (mut forker, line) = Workload::start(&[
        "forker",
        "--children",
        "3",
        "--hot-mib",
        "4",
        "--fork-on-stdin",
    ])
    .expect("forker");
    assert!(line.starts_with("READY"), "{line:?}");
    let parent = forker.pid();
    let dir = tempfile::tempdir().expect("tempdir");
    // The default update interval: 1 s.
    let config = write_config(
        dir.path(),
        &format!("[[group]]\nname = \"tree\"\npids = [{parent}]\n"),
    );
    let agent = Agent::start(&config).expect("damon serve");
    let metric = "damon_process_working_set_bytes";
    poll("the parent in /metrics", Duration::from_secs(20), || {
        Ok(has_pid(&agent.metrics()?, metric, parent).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));

    forker.send_line("fork").expect("asking the forker to fork");
    let line = forker.read_line().expect("its CHILDREN line");
    let children: Vec<i32> = line
        .strip_prefix("CHILDREN ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .split(',')
        .map(|p| p.parse().expect("a pid"))
        .collect();
    let _kill = KillOnDrop(children.clone());
    assert_eq!(children.len(), 3, "{line:?}");
    // One update interval, and a margin for the commit and the next aggregation.
    let all = std::iter::once(parent)
        .chain(children.iter().copied())
        .collect::<Vec<_>>();
    poll(
        "all 4 processes in /metrics",
        Duration::from_millis(2500),
        || {
            let m = agent.metrics()?;
            Ok(all.iter().all(|&p| has_pid(&m, metric, p)).then_some(()))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}; /metrics:\n{}\nlog:\n{}",
            agent.metrics().unwrap_or_default(),
            agent.log()
        )
    });
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        value(&m, r#"damon_group_processes{group="tree",cgroup=""}"#),
        Some(4.0),
        "{m}"
    );

    let gone = children[1];
    // SAFETY: a child of our forker; the forker reaps it.
    unsafe { libc::kill(gone, libc::SIGKILL) };
    poll(
        "the killed child to leave",
        Duration::from_millis(2500),
        || {
            let m = agent.metrics()?;
            Ok((!has_pid(&m, metric, gone)
                && [parent, children[0], children[2]]
                    .iter()
                    .all(|&p| has_pid(&m, metric, p)))
            .then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", agent.log()));
    agent.terminate_cleanly();
    drop(forker);
}

#[test]
#[ignore = "needs root"]
fn a_groups_stat_scheme_counts_in_metrics() {
    let (w, _) =
        Workload::start(&["hotcold", "--hot-mib", "8", "--cold-mib", "32"]).expect("workload");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            "[[group]]\nname = \"st\"\npids = [{}]\n\
             [[group.scheme]]\naction = \"stat\"\n\
             [[group.scheme]]\naction = \"stat\"\naccess_rate = [\"0%\", \"0%\"]\nage = [\"1s\", \"max\"]\n",
            w.pid()
        ),
    );
    let agent = Agent::start(&config).expect("damon serve");
    let s0 = r#"damon_scheme_tried_bytes_total{group="st",scheme="0",action="stat"}"#;
    let s1 = r#"damon_scheme_tried_bytes_total{group="st",scheme="1",action="stat"}"#;
    poll(
        "both stat schemes to try bytes",
        Duration::from_secs(30),
        || {
            let m = agent.metrics()?;
            Ok(
                (value(&m, s0).is_some_and(|v| v > 0.0) && value(&m, s1).is_some_and(|v| v > 0.0))
                    .then_some(()),
            )
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}; /metrics:\n{}\nlog:\n{}",
            agent.metrics().unwrap_or_default(),
            agent.log()
        )
    });
    let m = agent.metrics().expect("metrics");
    // Every region of the process is tried by the pattern-less scheme; the cold ones only
    // by the second.
    assert!(value(&m, s0) >= value(&m, s1), "{m}");
    for name in [
        "damon_scheme_applied_bytes_total",
        "damon_scheme_tried_regions_total",
        "damon_scheme_applied_regions_total",
        "damon_scheme_quota_exceeded_total",
    ] {
        assert!(
            value(
                &m,
                &format!("{name}{{group=\"st\",scheme=\"0\",action=\"stat\"}}")
            )
            .is_some(),
            "{name} missing:\n{m}"
        );
    }
    // promtool still finds nothing to complain about.
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(m.as_bytes())
        .expect("feeding promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    agent.terminate_cleanly();
    drop(w);
}
