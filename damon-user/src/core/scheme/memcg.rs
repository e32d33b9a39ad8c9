//! Memory cgroups named by path, as `memcg` filters name them: the path below the root of the
//! hierarchy that has the memory controller (cgroup v2, or v1's `memory`), resolved at
//! `on`/`commit` to the id pages are charged to, the cgroup directory's inode number (what
//! `/proc/kpagecgroup` reports for a page).
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The id of the memory cgroup at `path` ("/" is the root), or why there is none.
pub fn id_of(path: &str) -> Result<u64, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.split('/').any(|c| c == "..") {
        return Err("\"..\" is not allowed".into());
    }
    let root = memory_hierarchy()?;
    let dir = root.join(path.trim_start_matches('/'));
    let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a cgroup directory", dir.display()));
    }
    Ok(meta.ino())
}

/// Where the hierarchy with the memory controller is mounted.
fn memory_hierarchy() -> Result<PathBuf, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("/proc/self/mounts: {e}"))?;
    let mut v2 = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, dir, fstype, opts, ..] = f[..] else {
            continue;
        };
        match fstype {
            "cgroup" if opts.split(',').any(|o| o == "memory") => return Ok(PathBuf::from(dir)),
            "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(dir)),
            _ => {}
        }
    }
    let v2 = v2.ok_or("no memory cgroup hierarchy is mounted")?;
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        Ok(v2)
    } else {
        Err("no mounted cgroup hierarchy has the memory controller".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        assert!(id_of("").unwrap_err().contains("empty"));
        assert!(id_of("/a/../b").unwrap_err().contains(".."));
        assert!(id_of("/no-such-group-here").is_err());
    }

    /// The machines this runs on mount a memory controller (v1 `memory` or v2).
    #[test]
    fn the_root_has_an_id_where_memory_is_controlled() {
        let root = memory_hierarchy().expect("a mounted memory cgroup hierarchy");
        assert_eq!(id_of("/"), Ok(std::fs::metadata(root).expect("root").ino()));
    }
}
