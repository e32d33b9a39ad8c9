//! The stock kernels of the matrix. Adding a kernel is one line: a name, and the Debian suites
//! whose `linux-image-amd64` picks it (the newest version among them wins).

/// One stock kernel: whatever `linux-image-amd64` resolves to in `suites`.
pub struct Kernel {
    /// What `--kernel` selects and what the result line, logs and cache are named after.
    pub name: &'static str,
    /// Debian suites searched for `linux-image-amd64`, main archive or security archive.
    pub suites: &'static [&'static str],
    /// What the kernel is in the matrix for.
    pub why: &'static str,
}

pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "bookworm",
        suites: &["bookworm", "bookworm-security"],
        why: "6.1, no DAMON at all",
    },
    Kernel {
        name: "bookworm-backports",
        suites: &["bookworm-backports"],
        why: "6.12 with DAMON vaddr",
    },
    Kernel {
        name: "trixie",
        suites: &["trixie", "trixie-security"],
        why: "6.12 with DAMON vaddr",
    },
    Kernel {
        name: "trixie-backports",
        suites: &["trixie-backports"],
        why: "7.x, damon_stat on at boot",
    },
];

/// The kernels named in `names` (all of them when empty), in table order.
pub fn select(names: &[String]) -> anyhow::Result<Vec<&'static Kernel>> {
    for n in names {
        if !KERNELS.iter().any(|k| k.name == n) {
            let known: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
            anyhow::bail!("unknown kernel {n:?}; known: {}", known.join(", "));
        }
    }
    Ok(KERNELS
        .iter()
        .filter(|k| names.is_empty() || names.iter().any(|n| n == k.name))
        .collect())
}
