//! Pass or fail of one guest run, from its results channel.
use super::{
    regions::{self, Snapshot},
    results::{Results, field, parse_range},
};

/// The access rates `damon record` must report for the workload's buffers after its run at
/// the default attributes, as a fraction of the maximum (aggregation / sample interval).
const HOT_MIN: f64 = 0.80;
const COLD_MAX: f64 = 0.05;
/// damo's defaults: 100 ms aggregation / 5 ms sampling.
pub const MAX_NR_ACCESSES: u32 = 20;

pub struct Verdict {
    /// Short notes for the result line, passed checks included.
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The workload's buffers, from its READY line.
pub fn buffers(r: &Results) -> Option<((u64, u64), (u64, u64))> {
    let w = r.line("workload")?;
    Some((
        parse_range(field(w, "hot")?)?,
        parse_range(field(w, "cold")?)?,
    ))
}

pub fn evaluate(r: &Results, timed_out: bool) -> Verdict {
    let mut v = Verdict {
        notes: Vec::new(),
        failures: Vec::new(),
    };
    if timed_out {
        v.failures
            .push("the guest ran into the deadline and was killed".into());
    }
    match r.line("boot") {
        Some(b) => v
            .notes
            .push(format!("boot {}s", field(b, "uptime").unwrap_or("?"))),
        None => {
            v.failures
                .push("the guest never reached its init script (see the console log)".into());
            return v;
        }
    }
    for m in r.all("insmod") {
        v.failures.push(format!("insmod: {m}"));
    }
    match r.get("check", "rc") {
        Some("0") => v.notes.push("check ok".into()),
        Some(rc) => v.failures.push(format!(
            "`damon check` exited with {rc}: {}",
            last_line(r.file("check"))
        )),
        None => v.failures.push("`damon check` did not finish".into()),
    }
    record(r, &mut v);
    admin_tree(r, &mut v);
    if !timed_out && r.line("done").is_none() {
        v.failures.push(
            "the guest stopped before the end of its script (panic? see the console log)".into(),
        );
    }
    v
}

fn record(r: &Results, v: &mut Verdict) {
    let Some((hot, cold)) = buffers(r) else {
        v.failures.push(format!(
            "the workload did not start: {}",
            last_line(r.file("workload"))
        ));
        return;
    };
    match r.get("record", "rc") {
        Some("0") => {}
        Some(rc) => {
            v.failures.push(format!(
                "`damon record` exited with {rc}: {}",
                last_line(r.file("record-log"))
            ));
            return;
        }
        None => {
            v.failures.push("`damon record` did not finish".into());
            return;
        }
    }
    let snaps = match r.file("record").map(regions::from_record_json) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            v.failures.push(format!("the record file: {e:#}"));
            return;
        }
        None => {
            v.failures
                .push("`damon record` wrote no record file".into());
            return;
        }
    };
    let Some(last) = snaps.last() else {
        v.failures.push("the record holds no snapshot".into());
        return;
    };
    let (h, c) = rates(last, hot, cold);
    let pct = |x: Option<f64>| x.map_or("uncovered".to_string(), |x| format!("{:.0}%", x * 100.0));
    // From the start of `damon record` to its first sample (the layout cached by the check).
    let first = r
        .get("record", "first_sample_ns")
        .and_then(|n| n.parse::<f64>().ok())
        .zip(r.get("record", "start").and_then(|t| t.parse::<f64>().ok()))
        .map_or(String::new(), |(ns, t0)| {
            format!(", first sample {:.2} s after start", ns / 1e9 - t0)
        });
    v.notes.push(format!(
        "hot {} cold {} ({} snapshots{first})",
        pct(h),
        pct(c),
        snaps.len()
    ));
    match h {
        Some(h) if h >= HOT_MIN => {}
        _ => v.failures.push(format!(
            "hot buffer at {} of the maximum access rate, expected >= {:.0}%",
            pct(h),
            HOT_MIN * 100.0
        )),
    }
    match c {
        Some(c) if c <= COLD_MAX => {}
        _ => v.failures.push(format!(
            "cold buffer at {} of the maximum access rate, expected <= {:.0}%",
            pct(c),
            COLD_MAX * 100.0
        )),
    }
}

pub fn rates(s: &Snapshot, hot: (u64, u64), cold: (u64, u64)) -> (Option<f64>, Option<f64>) {
    (
        regions::weighted_rate(&s.regions, hot, MAX_NR_ACCESSES),
        regions::weighted_rate(&s.regions, cold, MAX_NR_ACCESSES),
    )
}

fn admin_tree(r: &Results, v: &mut Verdict) {
    let Some(fs) = r.line("fs") else {
        v.failures.push("the admin tree step did not run".into());
        return;
    };
    let log = last_line(r.file("fs-log"));
    if field(fs, "mounted") != Some("1") {
        v.failures
            .push(format!("`damon fs` did not mount the admin tree: {log}"));
        return;
    }
    let mut ok = true;
    if field(fs, "setup_rc") != Some("0") {
        v.failures.push(format!(
            "starting a kdamond through the admin tree failed: {}",
            last_line(r.file("fs-setup"))
        ));
        ok = false;
    }
    if field(fs, "state") != Some("on") {
        v.failures.push(format!(
            "kdamonds/0/state reads {:?}, expected \"on\"",
            field(fs, "state").unwrap_or("")
        ));
        ok = false;
    }
    if field(fs, "alive") != Some("1") {
        v.failures.push(format!(
            "kdamonds/0/pid ({}) is not a live task",
            field(fs, "pid").unwrap_or("?")
        ));
        ok = false;
    }
    match r.line("fs-stop") {
        Some(s) if field(s, "unmounted") != Some("1") => {
            v.failures
                .push("the admin tree is still mounted after SIGTERM".into());
            ok = false;
        }
        Some(s) if field(s, "rc") != Some("0") => {
            v.failures.push(format!(
                "`damon fs` exited with {} on SIGTERM: {log}",
                field(s, "rc").unwrap_or("?")
            ));
            ok = false;
        }
        Some(_) => {}
        None => {
            v.failures.push("`damon fs` was not stopped".into());
            ok = false;
        }
    }
    if ok {
        v.notes.push("fs ok".into());
    }
}

/// The last non-empty line of a file the guest sent, for error messages.
pub fn last_line(text: Option<&str>) -> String {
    text.and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}
