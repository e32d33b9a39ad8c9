//! apt-get and apt-cache with every path pointed into a private directory: sources, lists
//! and cache under `target/vm/apt`, no preferences, and an empty dpkg status. The host's
//! sources, pins and package database are neither used nor changed; its apt.conf (a proxy,
//! say) still applies. Only the mirror's address is taken from the host's sources.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::cmd;

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub struct Apt {
    dir: PathBuf,
    opts: Vec<String>,
}

impl Apt {
    pub fn new(dir: &Path) -> Result<Self> {
        if !Path::new(KEYRING).is_file() {
            bail!(
                "{KEYRING} is missing: the debian-archive-keyring package verifies the kernel packages"
            );
        }
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let (main, security) = mirrors();
        let mut suites: Vec<&str> = super::kernels::KERNELS
            .iter()
            .flat_map(|k| k.suites.iter().copied())
            .collect();
        suites.sort_unstable();
        suites.dedup();
        let sources: String = suites
            .iter()
            .map(|s| {
                let uri = if s.ends_with("-security") {
                    &security
                } else {
                    &main
                };
                format!("deb [signed-by={KEYRING}] {uri} {s} main\n")
            })
            .collect();
        let list = dir.join("sources.list");
        fs::write(&list, sources).with_context(|| format!("writing {}", list.display()))?;
        let d = dir.display();
        let mut opts: Vec<String> = [
            format!("Dir::Etc::SourceList={d}/sources.list"),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            "Dir::Etc::PreferencesParts=/dev/null".into(),
            format!("Dir::State::Lists={d}/lists"),
            "Dir::State::status=/dev/null".into(),
            format!("Dir::Cache={d}/cache"),
            "Acquire::Languages=none".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect();
        // As root apt drops to the `_apt` user for downloads, which cannot write into target/.
        if super::host::is_root() {
            opts.extend(["-o".into(), "APT::Sandbox::User=root".into()]);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            opts,
        })
    }

    /// Fails when any list could not be fetched: apt itself only warns and goes on with
    /// old lists or none.
    pub fn update(&self) -> Result<()> {
        let out = cmd::output(
            Command::new("apt-get")
                .args(&self.opts)
                .args(["-q", "update"]),
        )
        .context("downloading the package lists")?;
        let err = String::from_utf8_lossy(&out.stderr);
        let failed: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("W:") || l.starts_with("E:"))
            .collect();
        if failed
            .iter()
            .any(|l| l.contains("Failed to fetch") || l.contains("failed to download"))
        {
            bail!(
                "downloading the package lists failed (is the Debian mirror reachable?): {}",
                failed.join("\n  ")
            );
        }
        Ok(())
    }

    fn cache(&self, args: &[&str]) -> Result<String> {
        cmd::stdout(Command::new("apt-cache").args(&self.opts).args(args))
    }

    /// The newest version of `pkg` in any of `suites`.
    pub fn newest(&self, pkg: &str, suites: &[&str]) -> Result<String> {
        let madison = self.cache(&["madison", pkg])?;
        let mut best: Option<String> = None;
        for line in madison.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, version, source] = cols[..] else {
                continue;
            };
            let suite = source
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.split('/').next())
                .unwrap_or("");
            if !suites.contains(&suite) {
                continue;
            }
            if best.as_deref().is_none_or(|b| version_gt(version, b)) {
                best = Some(version.to_string());
            }
        }
        best.with_context(|| {
            format!(
                "{pkg} is in none of the suites {} (lists in {})",
                suites.join(", "),
                self.dir.display()
            )
        })
    }

    /// `pkg=version` and every `linux-*` package it pins with `(= version)`, transitively.
    pub fn closure(&self, pkg: &str, version: &str) -> Result<Vec<(String, String)>> {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut todo = vec![(pkg.to_string(), version.to_string())];
        while let Some((p, v)) = todo.pop() {
            if seen.contains_key(&p) {
                continue;
            }
            let show = self.cache(&["show", &format!("{p}={v}")])?;
            let stanza = show.split("\n\n").next().unwrap_or("");
            let depends = stanza
                .lines()
                .find_map(|l| l.strip_prefix("Depends:"))
                .unwrap_or("");
            for group in depends.split(',') {
                if group.contains('|') {
                    continue;
                }
                let group = group.trim();
                if let Some((name, rest)) = group.split_once(" (= ")
                    && name.starts_with("linux-")
                {
                    todo.push((name.to_string(), rest.trim_end_matches(')').to_string()));
                }
            }
            seen.insert(p, v);
        }
        Ok(seen.into_iter().collect())
    }

    /// Downloads `pkg_version_ARCH.deb` into `dir` (unless it is there), through a scratch
    /// directory, so that an interrupted download never looks complete.
    pub fn download(&self, pkg: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        let stem = format!("{pkg}_{}_", version.replace(':', "%3a"));
        let find = |d: &Path| -> Option<PathBuf> {
            fs::read_dir(d).ok()?.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&stem) && n.ends_with(".deb"))
            })
        };
        if let Some(done) = find(dir) {
            return Ok(done);
        }
        let scratch = cmd::TempDir::new(dir.join(format!(".{pkg}.partial")))?;
        cmd::output(
            Command::new("apt-get")
                .current_dir(&scratch.0)
                .args(&self.opts)
                .args(["-q", "download", &format!("{pkg}={version}")]),
        )?;
        let got = find(&scratch.0)
            .with_context(|| format!("apt-get download {pkg}={version} left no .deb"))?;
        let name = got.file_name().context("a .deb without a name")?;
        let dest = dir.join(name);
        fs::rename(&got, &dest)
            .with_context(|| format!("moving {} to {}", got.display(), dest.display()))?;
        Ok(dest)
    }
}

fn version_gt(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// The machine's Debian mirror (main archive, security archive), from its apt sources.
fn mirrors() -> (String, String) {
    let mut text = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                text.push('\n');
                text.push_str(&fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let uris: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches('/'))
        .collect();
    let main = uris
        .iter()
        .find(|u| u.ends_with("/debian"))
        .map_or("http://deb.debian.org/debian", |u| u);
    let security = uris
        .iter()
        .find(|u| u.ends_with("/debian-security"))
        .map_or("http://deb.debian.org/debian-security", |u| u);
    (main.to_string(), security.to_string())
}
