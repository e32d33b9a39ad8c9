//! The agent's config file: TOML, parsed with serde and then validated into [`Config`], with
//! errors that name the group and the value at fault.
//!
//! ```toml
//! listen = "127.0.0.1:9639"     # /metrics and /healthz
//!
//! [[group]]
//! name = "web"
//! cgroup = "/system.slice/nginx.service"   # every process in it and its child cgroups
//! comm = ["nginx"]                         # processes by executable name
//! pids = [1234]                            # and by pid, with all their descendants
//! follow_children = true                   # the descendants of the comm processes too
//! sample = "5ms"                           # monitoring attributes, damo's defaults if left out
//! aggr = "100ms"
//! update = "1s"
//! min_regions = 10
//! max_regions = 1000
//!
//! [[group.scheme]]                         # DAMOS schemes, in damo's words
//! action = "stat"
//! access_rate = ["0%", "0%"]
//! sz_region = ["4K", "max"]
//! age = ["2s", "max"]
//! apply_interval = "1s"
//! quotas = { ms = 10, bytes = "128M", reset_interval = "1s" }
//! wmarks = ["free_mem_rate", "5s", "50%", "40%", "30%"]
//! filters = [["reject", "anon"]]
//! ```
//!
//! A scheme's values are parsed by the same code as `damon record`'s `--damos-*` options
//! ([`SchemeArgs`]), one scheme at a time.
use std::{collections::BTreeSet, net::SocketAddr, path::Path};

use serde::Deserialize;

use crate::{
    cmd::{
        schemes::{SchemeArgs, Units},
        session::duration_us,
    },
    core::{Attrs, ContextSpec, IntervalsGoal, OpsId, Pid, scheme::Scheme},
    runtime::check_spec,
};

/// Where the agent listens when neither the file nor `--listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9639";

/// A config that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid config: {message}")]
    Syntax { path: String, message: String },
    #[error(
        "listen address {value:?} is not an address and port (like 127.0.0.1:9639 or [::1]:9639)"
    )]
    Listen { value: String },
    #[error("the config has no [[group]]: nothing to monitor")]
    NoGroups,
    #[error("a group has an empty name")]
    EmptyName,
    #[error(
        "group name {name:?} has a character other than letters, digits, '_', '-', '.' and ':'"
    )]
    BadName { name: String },
    #[error("group {name:?} is defined twice")]
    DuplicateGroup { name: String },
    #[error("group {group:?} selects no process: give cgroup, comm or pids")]
    NoSelector { group: String },
    #[error(
        "group {group:?}: cgroup {value:?} must be a cgroup v2 path as /proc/PID/cgroup shows it: starting with '/', without '.' or '..' components"
    )]
    BadCgroup { group: String, value: String },
    #[error("group {group:?}: comm {value:?} is empty or has a '/'")]
    BadComm { group: String, value: String },
    #[error("group {group:?}: pid {value} is not a process id (a positive whole number)")]
    BadPid { group: String, value: i64 },
    #[error(
        "group {group:?}: {field} {value} is not a duration (microseconds, or with a unit: \"5000us\", \"5ms\", \"1s\")"
    )]
    BadDuration {
        group: String,
        field: &'static str,
        value: String,
    },
    #[error("group {group:?}: monitoring attributes are not valid: {message}")]
    BadAttrs { group: String, message: String },
    #[error("group {group:?}: scheme {index}: {message}")]
    BadScheme {
        group: String,
        index: usize,
        message: String,
    },
}

/// A scheme value as written: a string, or a number that stands for itself (`0`, `4096`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum Word {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Int(n) => n.to_string(),
            Word::Float(f) => f.to_string(),
            Word::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuotas {
    ms: Option<Word>,
    bytes: Option<Word>,
    reset_interval: Option<Word>,
}

/// One `[[group.scheme]]`: damo's `--damos-*` options as keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheme {
    action: String,
    apply_interval: Option<Word>,
    access_rate: Option<[Word; 2]>,
    sz_region: Option<[Word; 2]>,
    age: Option<[Word; 2]>,
    quotas: Option<RawQuotas>,
    wmarks: Option<Vec<Word>>,
    #[serde(default)]
    filters: Vec<Vec<Word>>,
}

/// The config keys for the command-line options the scheme parser names in its errors.
const OPTION_KEYS: [(&str, &str); 12] = [
    ("--damos-quotas TIME_MS", "quotas.ms"),
    ("--damos-quotas SIZE", "quotas.bytes"),
    ("--damos-quotas RESET_INTERVAL", "quotas.reset_interval"),
    ("--damos-action", "action"),
    ("--damos-apply-interval", "apply_interval"),
    ("--damos-access-rate", "access_rate"),
    ("--damos-sz-region", "sz_region"),
    ("--damos-age", "age"),
    ("--damos-quotas", "quotas"),
    ("--damos-wmarks", "wmarks"),
    ("--damos-filter", "filters"),
    ("--damos-nr-filters", "filters"),
];

impl RawScheme {
    /// The scheme, parsed as `damon record --damos-*` options would be, with the group's
    /// intervals converting access rates and ages.
    fn parse(self, units: Units) -> Result<Scheme, String> {
        let words = |v: &[Word]| v.iter().map(Word::text).collect::<Vec<_>>();
        let one = |v: Option<&[Word]>| v.map(words).into_iter().collect::<Vec<_>>();
        let quotas = self.quotas.map(|q| {
            let mut v = vec![
                q.ms.as_ref().map_or("0".into(), Word::text),
                q.bytes.as_ref().map_or("0".into(), Word::text),
            ];
            v.extend(q.reset_interval.as_ref().map(Word::text));
            v
        });
        let args = SchemeArgs {
            damos_action: vec![vec![self.action]],
            damos_apply_interval: one(self.apply_interval.as_ref().map(std::slice::from_ref)),
            damos_access_rate: one(self.access_rate.as_ref().map(|v| &v[..])),
            damos_sz_region: one(self.sz_region.as_ref().map(|v| &v[..])),
            damos_age: one(self.age.as_ref().map(|v| &v[..])),
            damos_quotas: quotas.into_iter().collect(),
            damos_wmarks: one(self.wmarks.as_deref()),
            damos_nr_filters: vec![vec![self.filters.len().to_string()]],
            damos_filter: self.filters.iter().map(|f| words(f)).collect(),
            ..SchemeArgs::default()
        };
        let mut schemes = args.schemes(units).map_err(|e| {
            let mut m = crate::error::Chain(e.as_ref()).to_string();
            if let Some(rest) = m.strip_prefix("scheme 0: ") {
                m = rest.to_owned();
            }
            for (opt, key) in OPTION_KEYS {
                m = m.replace(opt, key);
            }
            m
        })?;
        schemes
            .pop()
            .ok_or_else(|| "the scheme parser returned no scheme".to_owned())
    }
}

/// A duration as written in the file: whole microseconds, or a string with a unit.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
enum RawDuration {
    Us(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default, rename = "group")]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    cgroup: Option<String>,
    #[serde(default)]
    comm: Vec<String>,
    #[serde(default)]
    pids: Vec<i64>,
    #[serde(default)]
    follow_children: bool,
    sample: Option<RawDuration>,
    aggr: Option<RawDuration>,
    update: Option<RawDuration>,
    min_regions: Option<u64>,
    max_regions: Option<u64>,
    #[serde(default, rename = "scheme")]
    schemes: Vec<RawScheme>,
}

/// The agent's config, valid.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub groups: Vec<GroupConfig>,
}

/// A target group: the processes it selects and how they are monitored.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    pub name: String,
    /// A cgroup v2 path below the cgroup2 mount (`/system.slice/x.service`).
    pub cgroup: Option<String>,
    /// Executable names: a process's `comm`, or the file name of its executable.
    pub comm: BTreeSet<String>,
    /// Listed pids; their descendants are members too.
    pub pids: BTreeSet<Pid>,
    /// Whether the descendants of the processes `comm` names are members too.
    pub follow_children: bool,
    pub attrs: Attrs,
    /// The DAMOS schemes the group's kdamond applies, in config order.
    pub schemes: Vec<Scheme>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = parse_listen(listen_text)?;
        if raw.groups.is_empty() {
            return Err(ConfigError::NoGroups);
        }
        let mut names = BTreeSet::new();
        let mut groups = Vec::with_capacity(raw.groups.len());
        for g in raw.groups {
            let group = GroupConfig::from_raw(g)?;
            if !names.insert(group.name.clone()) {
                return Err(ConfigError::DuplicateGroup { name: group.name });
            }
            groups.push(group);
        }
        Ok(Config { listen, groups })
    }
}

/// `value` as a socket address.
pub fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Listen {
        value: value.to_owned(),
    })
}

impl GroupConfig {
    fn from_raw(g: RawGroup) -> Result<GroupConfig, ConfigError> {
        let name = g.name;
        if name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
        {
            return Err(ConfigError::BadName { name });
        }
        if g.cgroup.is_none() && g.comm.is_empty() && g.pids.is_empty() {
            return Err(ConfigError::NoSelector { group: name });
        }
        if let Some(cg) = &g.cgroup
            && !valid_cgroup_path(cg)
        {
            return Err(ConfigError::BadCgroup {
                group: name,
                value: cg.clone(),
            });
        }
        if let Some(c) = g.comm.iter().find(|c| c.is_empty() || c.contains('/')) {
            return Err(ConfigError::BadComm {
                group: name,
                value: c.clone(),
            });
        }
        let mut pids = BTreeSet::new();
        for &p in &g.pids {
            match i32::try_from(p) {
                Ok(pid) if pid > 0 => {
                    pids.insert(Pid(pid));
                }
                _ => {
                    return Err(ConfigError::BadPid {
                        group: name,
                        value: p,
                    });
                }
            }
        }
        let defaults = Attrs::damo_defaults();
        let us = |field: &'static str, v: &Option<RawDuration>, default: u64| match v {
            None => Ok(default),
            Some(v) => duration(v).ok_or_else(|| ConfigError::BadDuration {
                group: name.clone(),
                field,
                value: match v {
                    RawDuration::Us(n) => n.to_string(),
                    RawDuration::Text(t) => format!("{t:?}"),
                },
            }),
        };
        let attrs = Attrs {
            sample_us: us("sample", &g.sample, defaults.sample_us)?,
            aggr_us: us("aggr", &g.aggr, defaults.aggr_us)?,
            update_us: us("update", &g.update, defaults.update_us)?,
            min_nr_regions: g.min_regions.unwrap_or(defaults.min_nr_regions),
            max_nr_regions: g.max_regions.unwrap_or(defaults.max_nr_regions),
            intervals_goal: IntervalsGoal::default(),
        };
        // The kernel's rules and the eBPF tables' limits, as for a kdamond without targets.
        let spec = ContextSpec {
            ops: OpsId::Vaddr,
            attrs,
            targets: Vec::new(),
        };
        if attrs.update_us == 0 {
            return Err(ConfigError::BadAttrs {
                group: name,
                message: "update must not be 0: processes join and leave at each update".into(),
            });
        }
        check_spec(&spec).map_err(|e| ConfigError::BadAttrs {
            group: name.clone(),
            message: e.to_string(),
        })?;
        let units = Units {
            sample_us: attrs.sample_us,
            aggr_us: attrs.aggr_us,
        };
        let mut schemes = Vec::with_capacity(g.schemes.len());
        for (index, raw) in g.schemes.into_iter().enumerate() {
            let scheme = raw.parse(units).map_err(|message| ConfigError::BadScheme {
                group: name.clone(),
                index,
                message,
            })?;
            schemes.push(scheme);
        }
        Ok(GroupConfig {
            name,
            cgroup: g.cgroup,
            comm: g.comm.into_iter().collect(),
            pids,
            follow_children: g.follow_children,
            attrs,
            schemes,
        })
    }
}

fn duration(v: &RawDuration) -> Option<u64> {
    match v {
        RawDuration::Us(n) => u64::try_from(*n).ok(),
        RawDuration::Text(t) => duration_us(t),
    }
}

/// `/a/b`: absolute, no empty, `.` or `..` components (`/` alone is the root cgroup).
fn valid_cgroup_path(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    rest.is_empty()
        || rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
            listen = "0.0.0.0:9000"
            [[group]]
            name = "web"
            cgroup = "/system.slice/nginx.service"
            comm = ["nginx", "php-fpm"]
            pids = [1, 42]
            sample = "10ms"
            aggr = 200000
            update = "2s"
            min_regions = 20
            max_regions = 500
            [[group]]
            name = "db"
            pids = [7]
            "#,
        )
        .expect("valid");
        assert_eq!(c.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(c.groups.len(), 2);
        let web = &c.groups[0];
        assert_eq!(web.name, "web");
        assert_eq!(web.cgroup.as_deref(), Some("/system.slice/nginx.service"));
        assert!(web.comm.contains("php-fpm"));
        assert_eq!(web.pids, [Pid(1), Pid(42)].into_iter().collect());
        assert_eq!(
            (web.attrs.sample_us, web.attrs.aggr_us, web.attrs.update_us),
            (10_000, 200_000, 2_000_000)
        );
        assert_eq!(
            (web.attrs.min_nr_regions, web.attrs.max_nr_regions),
            (20, 500)
        );
        assert_eq!(c.groups[1].attrs, Attrs::damo_defaults());
    }

    #[test]
    fn the_shipped_example_parses() {
        let c = parse(include_str!("../../../contrib/serve.toml")).expect("contrib/serve.toml");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.groups[1].attrs.aggr_us, 200_000);
    }

    #[test]
    fn listen_defaults() {
        let c = parse("[[group]]\nname = \"a\"\npids = [1]\n").expect("valid");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn bad_values_are_named() {
        let g = |body: &str| format!("[[group]]\nname = \"g\"\n{body}\n");
        assert!(err(&g("pids = [0]")).contains("pid 0"));
        assert!(err(&g("pids = [-3]")).contains("pid -3"));
        assert!(err(&g("pids = [4294967296]")).contains("pid 4294967296"));
        let e = err(&g("pids = [1]\nsample = \"5 parsecs\""));
        assert!(
            e.contains("sample \"5 parsecs\"") && e.contains("group \"g\""),
            "{e}"
        );
        assert!(err(&g("pids = [1]\naggr = -1")).contains("aggr -1"));
        let e = err(&g("pids = [1]\nsample = \"200ms\"\naggr = \"100ms\""));
        assert!(e.contains("sample") && e.contains("200000"), "{e}");
        assert!(err(&g("pids = [1]\nmin_regions = 2")).contains("min_nr_regions"));
        assert!(err(&g("pids = [1]\nmax_regions = 100000")).contains("max_nr_regions 100000"));
        assert!(err(&g("pids = [1]\nupdate = 0")).contains("update must not be 0"));
        assert!(err(&g("cgroup = \"system.slice\"")).contains("\"system.slice\""));
        assert!(err(&g("cgroup = \"/a/../b\"")).contains("\"/a/../b\""));
        assert!(err(&g("comm = [\"bin/x\"]")).contains("\"bin/x\""));
        assert!(err(&g("")).contains("selects no process"));
    }

    #[test]
    fn structure_errors_are_named() {
        assert!(err("listen = \"localhost\"\n").contains("\"localhost\""));
        assert!(err("listen = \"127.0.0.1:1\"\n").contains("no [[group]]"));
        let e = err("[[group]]\nname = \"g\"\npids = [1]\nsampel = \"5ms\"\n");
        assert!(e.contains("sampel") && e.contains("test.toml"), "{e}");
        let e = err("[[group]]\nname = \"a\"\npids = [1]\n[[group]]\nname = \"a\"\npids = [2]\n");
        assert!(e.contains("\"a\" is defined twice"), "{e}");
        assert!(err("[[group]]\nname = \"a b\"\npids = [1]\n").contains("\"a b\""));
        assert!(err("[[group]]\nname = \"\"\npids = [1]\n").contains("empty name"));
        assert!(err("[[group]]\nname = \"a\"\npids = \"1\"\n").contains("test.toml"));
        assert!(err("not toml at all [").contains("test.toml"));
    }

    #[test]
    fn schemes_parse_in_damos_words() {
        use crate::core::scheme::{Action, Bounds};
        let c = parse(
            r#"
            [[group]]
            name = "g"
            comm = ["x"]
            follow_children = true
            [[group.scheme]]
            action = "stat"
            access_rate = ["0%", "0%"]
            sz_region = ["4K", "max"]
            age = ["2s", "max"]
            quotas = { ms = 10, bytes = "128M", reset_interval = "1s" }
            [[group.scheme]]
            action = "pageout"
            apply_interval = "1s"
            wmarks = ["free_mem_rate", "5s", "50%", "40%", "30%"]
            filters = [["reject", "anon"]]
            "#,
        )
        .expect("valid");
        let g = &c.groups[0];
        assert!(g.follow_children);
        assert_eq!(g.schemes.len(), 2);
        let s = &g.schemes[0];
        assert_eq!(s.action, Action::Stat);
        assert_eq!(s.pattern.nr_accesses, Bounds { min: 0, max: 0 });
        assert_eq!(
            s.pattern.sz,
            Bounds {
                min: 4096,
                max: u64::MAX
            }
        );
        // 2 s of 100 ms aggregations.
        assert_eq!(
            s.pattern.age,
            Bounds {
                min: 20,
                max: u64::MAX
            }
        );
        assert_eq!(
            (s.quotas.ms, s.quotas.bytes, s.quotas.reset_interval_ms),
            (10, 128 << 20, 1000)
        );
        let p = &g.schemes[1];
        assert_eq!(p.action, Action::Pageout);
        assert_eq!(p.apply_interval_us, 1_000_000);
        assert_eq!(p.wmarks.high, 500);
        assert_eq!(p.ops_filters.len() + p.core_filters.len(), 1);
        assert!(
            !parse("[[group]]\nname = \"a\"\npids = [1]\n")
                .expect("valid")
                .groups[0]
                .follow_children
        );
    }

    #[test]
    fn bad_schemes_are_named() {
        let g =
            |body: &str| format!("[[group]]\nname = \"g\"\npids = [1]\n[[group.scheme]]\n{body}\n");
        let e = err(&g("action = \"explode\""));
        assert!(
            e.contains("group \"g\": scheme 0") && e.contains("explode") && e.contains("action"),
            "{e}"
        );
        let e = err(&g(
            "action = \"stat\"\naccess_rate = [\"5 percent\", \"max\"]",
        ));
        assert!(e.contains("access_rate") && e.contains("5 percent"), "{e}");
        assert!(!e.contains("--damos"), "{e}");
        let e = err(&g("action = \"stat\"\nage = [\"2s\", \"1s\"]"));
        assert!(e.contains("age") && e.contains("\"2s\""), "{e}");
        let e = err(&g("action = \"stat\"\nquotas = { bytes = \"lots\" }"));
        assert!(e.contains("quotas.bytes") && e.contains("lots"), "{e}");
        let e = err(&g("action = \"stat\"\nsz_region = [\"1K\"]"));
        assert!(e.contains("sz_region") && e.contains("test.toml"), "{e}");
        let e = err(&g("action = \"stat\"\nspeed = 3"));
        assert!(e.contains("speed"), "{e}");
        let e = err(&format!(
            "{}[[group.scheme]]\naction = \"stat\"\nwmarks = [\"x\"]\n",
            g("action = \"stat\"")
        ));
        assert!(e.contains("scheme 1") && e.contains("wmarks"), "{e}");
    }

    #[test]
    fn cgroup_paths() {
        assert!(valid_cgroup_path("/"));
        assert!(valid_cgroup_path("/a"));
        assert!(valid_cgroup_path("/a.slice/b-c.service"));
        assert!(!valid_cgroup_path(""));
        assert!(!valid_cgroup_path("a"));
        assert!(!valid_cgroup_path("/a/"));
        assert!(!valid_cgroup_path("//a"));
        assert!(!valid_cgroup_path("/a/./b"));
        assert!(!valid_cgroup_path("/.."));
    }
}
