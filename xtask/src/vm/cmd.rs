//! Running host commands with errors that say which command failed and what it printed.
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The command line, with `-o KEY=VALUE` options (apt's private paths) left out for brevity.
fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    let mut args = cmd.get_args();
    while let Some(a) = args.next() {
        if a == "-o" {
            args.next();
            continue;
        }
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, capturing its output; fails unless it exits with 0.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let what = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{what}`"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("`{what}` failed with {}: {}", out.status, tail.join("\n  "));
    }
    Ok(out)
}

/// Like [`output`], returning stdout as text.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with inherited stdout/stderr; fails unless it exits with 0.
pub fn status(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    let st = cmd
        .status()
        .with_context(|| format!("cannot run `{what}`"))?;
    if !st.success() {
        bail!("`{what}` failed with {st}");
    }
    Ok(())
}

/// The first `name` found in `$PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A directory removed (with everything in it) when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(path: std::path::PathBuf) -> Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
