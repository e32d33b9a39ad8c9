//! Downloads stock Debian kernels through a private apt state ([`Apt`]) and keeps what a
//! guest needs from each under
//! `target/vm/kernels/NAME/`: the kernel image, its config, and the modules the guest loads,
//! decompressed (busybox `insmod` reads plain ELF only).
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::{
    apt::Apt,
    cmd::{self, TempDir},
    kernels::Kernel,
};

/// The modules the guest loads, with the config symbol that says whether they are modules,
/// and whether the guest needs them (the others are left out of kernels that lack them).
/// `zram` is the guest's swap device for the DAMOS pageout comparison.
const GUEST_MODULES: &[(&str, &str, bool)] = &[
    ("fuse", "CONFIG_FUSE_FS", true),
    ("zram", "CONFIG_ZRAM", false),
];

const META_PACKAGE: &str = "linux-image-amd64";

/// A kernel ready to boot.
pub struct Fetched {
    /// Debian package version, e.g. `6.12.95-1~bpo12+1`.
    pub version: String,
    /// What `uname -r` says, e.g. `6.12.95+deb12-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub config: PathBuf,
    /// Modules to insmod, in load order (dependencies first).
    pub modules: Vec<PathBuf>,
}

impl Fetched {
    /// Whether the kernel has DAMON's virtual address operations and sysfs interface.
    pub fn has_damon_vaddr(&self) -> bool {
        let config = fs::read_to_string(&self.config).unwrap_or_default();
        ["CONFIG_DAMON_VADDR=y", "CONFIG_DAMON_SYSFS=y"]
            .iter()
            .all(|l| config.lines().any(|c| c == *l))
    }
}

pub struct Fetcher {
    vm_dir: PathBuf,
    apt: Option<Apt>,
}

impl Fetcher {
    pub fn new(vm_dir: &Path) -> Self {
        Self {
            vm_dir: vm_dir.to_path_buf(),
            apt: None,
        }
    }

    /// The kernel from the cache, or downloaded into it.
    pub fn get(&mut self, k: &Kernel) -> Result<Fetched> {
        let dir = self.vm_dir.join("kernels").join(k.name);
        if let Ok(f) = load(&dir) {
            return Ok(f);
        }
        if self.apt.is_none() {
            let apt = Apt::new(&self.vm_dir.join("apt"))?;
            println!(
                "vm-test: updating the package lists of the kernels' suites (private apt state)"
            );
            apt.update()?;
            self.apt = Some(apt);
        }
        let Some(apt) = &self.apt else {
            bail!("apt state missing")
        };
        download(apt, k, &dir)?;
        load(&dir)
    }
}

fn load(dir: &Path) -> Result<Fetched> {
    let info = fs::read_to_string(dir.join("info")).context("no cached kernel")?;
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
            .with_context(|| format!("{key} missing in {}", dir.join("info").display()))
    };
    let order = fs::read_to_string(dir.join("modules/order")).unwrap_or_default();
    let names: Vec<&str> = order.lines().filter(|l| !l.is_empty()).collect();
    // A cache made for a shorter list of guest modules is stale.
    let config = fs::read_to_string(dir.join("config")).context("no cached config")?;
    for (module, symbol, _) in GUEST_MODULES {
        if config.lines().any(|l| l == format!("{symbol}=m")) && !names.contains(module) {
            bail!("the cached kernel lacks module {module}");
        }
    }
    let modules = names
        .iter()
        .map(|m| dir.join("modules").join(format!("{m}.ko")))
        .collect();
    Ok(Fetched {
        version: field("version")?,
        release: field("release")?,
        vmlinuz: dir.join("vmlinuz"),
        config: dir.join("config"),
        modules,
    })
}

/// `DIR.suffix` next to `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Downloads and unpacks the packages next to `dir`, keeps what the guest needs in `dir`, and
/// deletes the rest (a kernel's packages are 70-120 MB).
fn download(apt: &Apt, k: &Kernel, dir: &Path) -> Result<()> {
    let version = apt.newest(META_PACKAGE, k.suites)?;
    let packages = apt.closure(META_PACKAGE, &version)?;
    println!(
        "vm-test: {}: downloading {} ({version})",
        k.name,
        packages
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let debs = TempDir::new(sibling(dir, "debs"))?;
    let unpack = TempDir::new(sibling(dir, "unpack"))?;
    for (pkg, ver) in &packages {
        let deb = apt.download(pkg, ver, &debs.0)?;
        cmd::output(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpack.0))?;
    }
    let tree = KernelTree::find(&unpack.0)?;
    let staging = TempDir::new(sibling(dir, "new"))?;
    let out = &staging.0;
    fs::copy(&tree.vmlinuz, out.join("vmlinuz"))
        .with_context(|| format!("copying {}", tree.vmlinuz.display()))?;
    fs::copy(&tree.config, out.join("config"))
        .with_context(|| format!("copying {}", tree.config.display()))?;
    let config = fs::read_to_string(&tree.config)
        .with_context(|| format!("reading {}", tree.config.display()))?;
    fs::create_dir_all(out.join("modules"))?;
    let mut order = Vec::new();
    for &(module, symbol, needed) in GUEST_MODULES {
        if config.lines().any(|l| l == format!("{symbol}=y")) {
            continue;
        }
        if !config.lines().any(|l| l == format!("{symbol}=m")) {
            if !needed {
                continue;
            }
            bail!(
                "{} {}: {symbol} is not set, the guest cannot have {module}",
                k.name,
                tree.release
            );
        }
        tree.add_module(module, &out.join("modules"), &mut order)?;
    }
    fs::write(out.join("modules/order"), order.join("\n") + "\n")?;
    fs::write(
        out.join("info"),
        format!("version={version}\nrelease={}\n", tree.release),
    )?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(out, dir).with_context(|| format!("moving the kernel into {}", dir.display()))?;
    Ok(())
}

/// The unpacked packages of one kernel. Up to 6.x the image package holds `boot/vmlinuz-REL`
/// and `lib/modules/REL`; from 7.x on, `linux-binary-*` holds `usr/lib/modules/REL/vmlinuz`
/// and the modules come in `linux-modules-*`.
struct KernelTree {
    release: String,
    vmlinuz: PathBuf,
    config: PathBuf,
    modules: PathBuf,
    index: HashMap<String, PathBuf>,
}

impl KernelTree {
    fn find(root: &Path) -> Result<Self> {
        for base in ["lib/modules", "usr/lib/modules"] {
            let Ok(entries) = fs::read_dir(root.join(base)) else {
                continue;
            };
            for e in entries.flatten() {
                let release = e.file_name().to_string_lossy().into_owned();
                let modules = e.path();
                let vmlinuz = [
                    modules.join("vmlinuz"),
                    root.join(format!("boot/vmlinuz-{release}")),
                ];
                let config = [
                    modules.join("config"),
                    root.join(format!("boot/config-{release}")),
                ];
                let (Some(vmlinuz), Some(config)) = (
                    vmlinuz.into_iter().find(|p| p.is_file()),
                    config.into_iter().find(|p| p.is_file()),
                ) else {
                    continue;
                };
                let mut index = HashMap::new();
                index_modules(&modules.join("kernel"), &mut index);
                return Ok(Self {
                    release,
                    vmlinuz,
                    config,
                    modules,
                    index,
                });
            }
        }
        bail!(
            "no kernel image with its modules in the downloaded packages ({})",
            root.display()
        )
    }

    /// Writes `name` and, first, the modules it depends on, as plain `.ko` files.
    fn add_module(&self, name: &str, out: &Path, order: &mut Vec<String>) -> Result<()> {
        if order.iter().any(|m| m == name) {
            return Ok(());
        }
        let src = self
            .index
            .get(name)
            .with_context(|| format!("module {name} not found under {}", self.modules.display()))?;
        let ko = decompress(src)?;
        for dep in modinfo_depends(&ko) {
            self.add_module(&dep, out, order)?;
        }
        fs::write(out.join(format!("{name}.ko")), &ko)?;
        order.push(name.to_string());
        Ok(())
    }
}

fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, index);
        } else if let Some(file) = p.file_name().and_then(|f| f.to_str())
            && let Some((stem, _)) = file.split_once(".ko")
        {
            index.insert(stem.replace('-', "_"), p);
        }
    }
}

fn decompress(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko") {
        return fs::read(path).with_context(|| format!("reading {name}"));
    } else if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        bail!("{name}: unknown module compression");
    };
    Ok(cmd::output(Command::new(tool).arg("-dc").arg(path))?.stdout)
}

/// The `depends=` entry of a module's `.modinfo` section.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let value = &ko[at + key.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_come_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=netfs,9pnet\0name=9p\0";
        assert_eq!(modinfo_depends(ko), vec!["netfs", "9pnet"]);
        assert!(modinfo_depends(b"\0depends=\0name=fuse\0").is_empty());
    }
}
