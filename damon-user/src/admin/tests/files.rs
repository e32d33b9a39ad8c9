//! Every file of the tree: default, accepted and refused input with the kernel's errno, and
//! that a refused write changes nothing; modes; `nr_*` recreation.

use super::super::node::{Access, EntryKind, OnError};
use super::*;

/// How a file parses its input (which kernel helper, which error convention).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Ul(OnError),
    Uint(OnError),
    Int(OnError),
    Bool,
    Keyword(&'static [&'static str]),
    Text,
    ReadOnly,
}
use Kind::*;
use OnError::{AsIs, Einval};

const OPERATIONS: &[&str] = &["vaddr", "fvaddr", "paddr"];
const ACTIONS: &[&str] = &[
    "willneed",
    "cold",
    "pageout",
    "hugepage",
    "nohugepage",
    "lru_prio",
    "lru_deprio",
    "migrate_hot",
    "migrate_cold",
    "stat",
    "collapse",
];
const GOAL_METRICS: &[&str] = &[
    "user_input",
    "some_mem_psi_us",
    "node_mem_used_bp",
    "node_mem_free_bp",
    "node_memcg_used_bp",
    "node_memcg_free_bp",
];
const WMARK_METRICS: &[&str] = &["none", "free_mem_rate"];
const FILTER_TYPES: &[&str] = &[
    "anon",
    "active",
    "memcg",
    "young",
    "hugepage_size",
    "unmapped",
    "addr",
    "target",
];

/// A tree with one of every directory, so every file exists.
fn full_tree() -> Tree {
    let (mut t, _) = tree();
    one_context(&mut t);
    set(&mut t, &format!("{C}/targets/nr_targets"), "1");
    set(&mut t, &format!("{C}/targets/0/regions/nr_regions"), "1");
    set(&mut t, &format!("{C}/schemes/nr_schemes"), "1");
    set(&mut t, &format!("{S}/quotas/goals/nr_goals"), "1");
    for dir in ["filters", "core_filters", "ops_filters"] {
        set(&mut t, &format!("{S}/{dir}/nr_filters"), "1");
    }
    t
}

/// Every file below `kdamonds/0` other than `state` and the `nr_*` files (tested on their
/// own), with its default content (without the newline) and kind.
fn files() -> Vec<(String, &'static str, Kind)> {
    let mut v: Vec<(String, &'static str, Kind)> = vec![
        (format!("{K}/pid"), "-1", ReadOnly),
        (format!("{K}/refresh_ms"), "0", Uint(AsIs)),
        (format!("{C}/avail_operations"), "vaddr\nfvaddr", ReadOnly),
        (format!("{C}/operations"), "vaddr", Keyword(OPERATIONS)),
        (format!("{C}/addr_unit"), "1", Ul(AsIs)),
        (format!("{C}/targets/0/pid_target"), "0", Int(Einval)),
        (format!("{C}/targets/0/regions/0/start"), "0", Ul(AsIs)),
        (format!("{C}/targets/0/regions/0/end"), "0", Ul(AsIs)),
        (format!("{S}/action"), "stat", Keyword(ACTIONS)),
        (format!("{S}/target_nid"), "-1", Int(AsIs)),
        (format!("{S}/apply_interval_us"), "0", Ul(Einval)),
        (format!("{S}/quotas/ms"), "0", Ul(Einval)),
        (format!("{S}/quotas/bytes"), "0", Ul(Einval)),
        (format!("{S}/quotas/reset_interval_ms"), "0", Ul(Einval)),
        (format!("{S}/quotas/effective_bytes"), "0", ReadOnly),
        (
            format!("{S}/quotas/goals/0/target_metric"),
            "user_input",
            Keyword(GOAL_METRICS),
        ),
        (format!("{S}/quotas/goals/0/target_value"), "0", Ul(AsIs)),
        (format!("{S}/quotas/goals/0/current_value"), "0", Ul(AsIs)),
        (format!("{S}/quotas/goals/0/nid"), "0", Int(AsIs)),
        (
            format!("{S}/watermarks/metric"),
            "none",
            Keyword(WMARK_METRICS),
        ),
        (format!("{S}/tried_regions/total_bytes"), "0", ReadOnly),
    ];
    let intervals = format!("{C}/monitoring_attrs/intervals");
    v.push((format!("{intervals}/sample_us"), "5000", Ul(AsIs)));
    v.push((format!("{intervals}/aggr_us"), "100000", Ul(AsIs)));
    v.push((format!("{intervals}/update_us"), "60000000", Ul(AsIs)));
    for f in ["access_bp", "aggrs", "min_sample_us", "max_sample_us"] {
        v.push((format!("{intervals}/intervals_goal/{f}"), "0", Ul(AsIs)));
    }
    v.push((
        format!("{C}/monitoring_attrs/nr_regions/min"),
        "10",
        Ul(Einval),
    ));
    v.push((
        format!("{C}/monitoring_attrs/nr_regions/max"),
        "1000",
        Ul(Einval),
    ));
    for range in ["sz", "nr_accesses", "age"] {
        for f in ["min", "max"] {
            v.push((format!("{S}/access_pattern/{range}/{f}"), "0", Ul(Einval)));
        }
    }
    for f in ["sz_permil", "nr_accesses_permil", "age_permil"] {
        v.push((format!("{S}/quotas/weights/{f}"), "0", Uint(Einval)));
    }
    for f in ["interval_us", "high", "mid", "low"] {
        v.push((format!("{S}/watermarks/{f}"), "0", Ul(Einval)));
    }
    for dir in ["filters", "core_filters", "ops_filters"] {
        let d = format!("{S}/{dir}/0");
        if dir == "filters" {
            v.push((format!("{d}/type"), "anon", Keyword(FILTER_TYPES)));
        }
        v.push((format!("{d}/matching"), "N", Bool));
        v.push((format!("{d}/allow"), "N", Bool));
        v.push((format!("{d}/memcg_path"), "", Text));
        v.push((format!("{d}/addr_start"), "0", Ul(AsIs)));
        v.push((format!("{d}/addr_end"), "0", Ul(AsIs)));
        v.push((format!("{d}/damon_target_idx"), "0", Int(AsIs)));
        v.push((format!("{d}/min"), "0", Ul(AsIs)));
        v.push((format!("{d}/max"), "0", Ul(AsIs)));
    }
    for f in [
        "nr_tried",
        "sz_tried",
        "nr_applied",
        "sz_applied",
        "sz_ops_filter_passed",
        "qt_exceeds",
    ] {
        v.push((format!("{S}/stats/{f}"), "0", ReadOnly));
    }
    v
}

fn overflow_errno(on_error: OnError) -> i32 {
    match on_error {
        AsIs => libc::ERANGE,
        Einval => libc::EINVAL,
    }
}

/// Check that each of `bad` fails with its errno and leaves the file as it was.
fn refused(t: &mut Tree, path: &str, bad: &[(&str, i32)]) {
    let before = read(t, path);
    for &(input, errno) in bad {
        assert_eq!(
            write_errno(t, path, input),
            errno,
            "{path} <- {input:?}: wrong errno"
        );
        assert_eq!(read(t, path), before, "{path} changed by refused {input:?}");
    }
}

fn accepted(t: &mut Tree, path: &str, good: &[(&str, &str)]) {
    for &(input, shown) in good {
        set(t, path, input);
        assert_eq!(read(t, path), format!("{shown}\n"), "{path} <- {input:?}");
    }
}

fn check_file(t: &mut Tree, path: &str, kind: Kind) {
    let common_bad = [
        ("", libc::EINVAL),
        ("abc", libc::EINVAL),
        ("1 2", libc::EINVAL),
    ];
    match kind {
        Ul(on_error) => {
            accepted(
                t,
                path,
                &[
                    ("10", "10"),
                    ("0x10", "16"),
                    ("010", "8"),
                    ("12\n", "12"),
                    ("18446744073709551615", "18446744073709551615"),
                ],
            );
            refused(t, path, &common_bad);
            refused(
                t,
                path,
                &[
                    ("-1", libc::EINVAL),
                    ("09", libc::EINVAL),
                    ("1\n\n", libc::EINVAL),
                    ("18446744073709551616", overflow_errno(on_error)),
                ],
            );
        }
        Uint(on_error) => {
            accepted(
                t,
                path,
                &[
                    ("10", "10"),
                    ("0x10", "16"),
                    ("010", "8"),
                    ("4294967295\n", "4294967295"),
                ],
            );
            refused(t, path, &common_bad);
            refused(
                t,
                path,
                &[
                    ("-1", libc::EINVAL),
                    ("4294967296", overflow_errno(on_error)),
                ],
            );
        }
        Int(on_error) => {
            accepted(
                t,
                path,
                &[
                    ("-1", "-1"),
                    ("0x10", "16"),
                    ("010", "8"),
                    ("2147483647\n", "2147483647"),
                ],
            );
            refused(t, path, &common_bad);
            refused(
                t,
                path,
                &[
                    ("--1", libc::EINVAL),
                    ("2147483648", overflow_errno(on_error)),
                    ("-2147483649", overflow_errno(on_error)),
                ],
            );
        }
        Bool => {
            accepted(
                t,
                path,
                &[
                    ("Y", "Y"),
                    ("n\n", "N"),
                    ("yes", "Y"),
                    ("0", "N"),
                    ("on", "Y"),
                    ("off", "N"),
                ],
            );
            refused(
                t,
                path,
                &[("", libc::EINVAL), ("x", libc::EINVAL), ("2", libc::EINVAL)],
            );
        }
        Keyword(words) => {
            for word in words {
                accepted(t, path, &[(word, word), (&format!("{word}\n"), word)]);
            }
            let spaced = format!("{} ", words[0]);
            let upper = words[0].to_uppercase();
            refused(
                t,
                path,
                &[
                    ("", libc::EINVAL),
                    ("bogus", libc::EINVAL),
                    (&spaced, libc::EINVAL),
                    (&upper, libc::EINVAL),
                    ("10", libc::EINVAL),
                ],
            );
        }
        Text => accepted(t, path, &[("/a/b", "/a/b"), ("x\n", "x\n")]),
        ReadOnly => refused(t, path, &[("0", libc::EACCES), ("1\n", libc::EACCES)]),
    }
}

#[test]
fn defaults_of_every_file() {
    let t = full_tree();
    for (path, default, _) in files() {
        assert_eq!(read(&t, &path), format!("{default}\n"), "default of {path}");
    }
    assert_eq!(read(&t, &format!("{K}/state")), "off\n");
    for dir in ["core_filters", "ops_filters"] {
        assert_eq!(read(&t, &format!("{S}/{dir}/0/type")), "anon\n");
    }
}

#[test]
fn parsing_of_every_file() {
    let mut t = full_tree();
    for (path, _, kind) in files() {
        check_file(&mut t, &path, kind);
    }
}

#[test]
fn filter_type_belongs_to_its_layer() {
    let mut t = full_tree();
    let core = format!("{S}/core_filters/0/type");
    let ops = format!("{S}/ops_filters/0/type");
    for word in ["addr", "target"] {
        set(&mut t, &core, word);
        assert_eq!(
            write_errno(&mut t, &ops, word),
            libc::EINVAL,
            "ops <- {word}"
        );
    }
    for word in [
        "anon",
        "active",
        "memcg",
        "young",
        "hugepage_size",
        "unmapped",
    ] {
        set(&mut t, &ops, word);
        assert_eq!(
            write_errno(&mut t, &core, word),
            libc::EINVAL,
            "core <- {word}"
        );
    }
    assert_eq!(read(&t, &core), "target\n");
    assert_eq!(read(&t, &ops), "unmapped\n");
}

/// Lists every entry of the tree below `path`, recursively.
fn walk(t: &Tree, path: &str, out: &mut Vec<(String, EntryKind)>) {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (name, kind) in t.list(&parts).expect("list") {
        let child = if path.is_empty() {
            name
        } else {
            format!("{path}/{name}")
        };
        out.push((child.clone(), kind));
        if kind == EntryKind::Dir {
            walk(t, &child, out);
        }
    }
}

#[test]
fn tree_layout_and_modes() {
    let (mut t, _) = tree();
    one_context(&mut t);
    set(&mut t, &format!("{C}/targets/nr_targets"), "1");
    set(&mut t, &format!("{C}/schemes/nr_schemes"), "1");
    let mut entries = Vec::new();
    walk(&t, "", &mut entries);
    let names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "kdamonds",
        "kdamonds/nr_kdamonds",
        "kdamonds/0/state",
        "kdamonds/0/pid",
        "kdamonds/0/refresh_ms",
        "kdamonds/0/contexts/nr_contexts",
        "kdamonds/0/contexts/0/monitoring_attrs/intervals/intervals_goal/access_bp",
        "kdamonds/0/contexts/0/monitoring_attrs/nr_regions/max",
        "kdamonds/0/contexts/0/targets/0/regions/nr_regions",
        "kdamonds/0/contexts/0/schemes/0/quotas/weights/age_permil",
        "kdamonds/0/contexts/0/schemes/0/quotas/goals/nr_goals",
        "kdamonds/0/contexts/0/schemes/0/ops_filters/nr_filters",
        "kdamonds/0/contexts/0/schemes/0/stats/sz_ops_filter_passed",
        "kdamonds/0/contexts/0/schemes/0/tried_regions/total_bytes",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let read_only = [
        "/pid",
        "/avail_operations",
        "/effective_bytes",
        "/total_bytes",
    ];
    for (path, kind) in &entries {
        let expected = if path.contains("/stats/")
            || path.contains("/tried_regions/")
            || read_only.iter().any(|f| path.ends_with(f))
        {
            EntryKind::File(Access::ReadOnly)
        } else if kind == &EntryKind::Dir {
            EntryKind::Dir
        } else {
            EntryKind::File(Access::ReadWrite)
        };
        assert_eq!(*kind, expected, "{path}");
    }
    assert_eq!(Access::ReadOnly.mode(), 0o400);
    assert_eq!(Access::ReadWrite.mode(), 0o600);
}

#[test]
fn missing_paths_and_directories() {
    let (mut t, _) = tree();
    assert_eq!(
        t.read(&["kdamonds", "0"]).unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(t.read(&["nope"]).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(t.read(&["kdamonds"]).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(write_errno(&mut t, "kdamonds", "1"), libc::EISDIR);
    assert_eq!(
        write_errno(&mut t, "kdamonds/nr_kdamond", "1"),
        libc::ENOENT
    );
    assert_eq!(
        t.list(&["kdamonds", "nr_kdamonds"]).unwrap_err().errno(),
        libc::ENOTDIR
    );
    one_context(&mut t);
    // Children exist only under their canonical decimal names.
    assert_eq!(
        t.read(&["kdamonds", "00", "state"]).unwrap_err().errno(),
        libc::ENOENT
    );
    assert_eq!(
        t.read(&["kdamonds", "1", "state"]).unwrap_err().errno(),
        libc::ENOENT
    );
}

/// Every `nr_*` file of a full tree, with a file below its first child to observe
/// recreation.
fn nr_files() -> Vec<(String, String)> {
    vec![
        ("kdamonds/nr_kdamonds".into(), format!("{K}/refresh_ms")),
        (
            format!("{C}/targets/nr_targets"),
            format!("{C}/targets/0/pid_target"),
        ),
        (
            format!("{C}/targets/0/regions/nr_regions"),
            format!("{C}/targets/0/regions/0/end"),
        ),
        (
            format!("{C}/schemes/nr_schemes"),
            format!("{S}/apply_interval_us"),
        ),
        (
            format!("{S}/quotas/goals/nr_goals"),
            format!("{S}/quotas/goals/0/target_value"),
        ),
        (
            format!("{S}/filters/nr_filters"),
            format!("{S}/filters/0/addr_end"),
        ),
        (
            format!("{S}/core_filters/nr_filters"),
            format!("{S}/core_filters/0/addr_end"),
        ),
        (
            format!("{S}/ops_filters/nr_filters"),
            format!("{S}/ops_filters/0/addr_end"),
        ),
    ]
}

#[test]
fn nr_files_recreate_children_with_defaults() {
    for (nr_file, child_file) in nr_files() {
        let mut t = full_tree();
        set(&mut t, &child_file, "7");
        // Refused counts change nothing.
        for (bad, errno) in [
            ("-1", libc::EINVAL),
            ("abc", libc::EINVAL),
            ("", libc::EINVAL),
            ("2147483648", libc::ERANGE),
        ] {
            assert_eq!(
                write_errno(&mut t, &nr_file, bad),
                errno,
                "{nr_file} <- {bad:?}"
            );
            assert_eq!(read(&t, &nr_file), "1\n");
            assert_eq!(read(&t, &child_file), "7\n", "{nr_file} <- {bad:?}");
        }
        // The same count recreates the child with its default.
        set(&mut t, &nr_file, "1");
        assert_ne!(read(&t, &child_file), "7\n", "{nr_file} did not recreate");
        set(&mut t, &child_file, "7");
        set(&mut t, &nr_file, "0x3\n");
        assert_eq!(read(&t, &nr_file), "3\n");
        assert_ne!(read(&t, &child_file), "7\n");
        // The last of the new children exists.
        let parent = &nr_file[..nr_file.rfind('/').unwrap_or(0)];
        let rest = &child_file[parent.len() + "/0/".len()..];
        read(&t, &format!("{parent}/2/{rest}"));
        set(&mut t, &nr_file, "0");
        assert_eq!(read(&t, &nr_file), "0\n");
        assert_eq!(
            t.read(&super::split(&child_file)).unwrap_err().errno(),
            libc::ENOENT
        );
    }
}

#[test]
fn nr_contexts_is_zero_or_one() {
    let (mut t, _) = tree();
    set(&mut t, "kdamonds/nr_kdamonds", "1");
    let nr = "kdamonds/0/contexts/nr_contexts";
    assert_eq!(read(&t, nr), "0\n");
    assert_eq!(write_errno(&mut t, nr, "2"), libc::EINVAL);
    assert_eq!(write_errno(&mut t, nr, "-1"), libc::EINVAL);
    assert_eq!(read(&t, nr), "0\n");
    set(&mut t, nr, "1");
    set(&mut t, &format!("{C}/operations"), "fvaddr");
    set(&mut t, nr, "1");
    assert_eq!(read(&t, &format!("{C}/operations")), "vaddr\n");
    set(&mut t, nr, "0");
    assert_eq!(read(&t, nr), "0\n");
}

#[test]
fn fresh_tree_is_empty() {
    let (t, _) = tree();
    assert_eq!(read(&t, "kdamonds/nr_kdamonds"), "0\n");
    assert_eq!(
        t.list(&[]).unwrap(),
        vec![("kdamonds".to_string(), EntryKind::Dir)]
    );
    assert_eq!(
        t.list(&["kdamonds"]).unwrap(),
        vec![(
            "nr_kdamonds".to_string(),
            EntryKind::File(Access::ReadWrite)
        )]
    );
}

/// No count written to an `nr_*` file makes the server allocate without bound: past the
/// tree's size limit every one fails with ENOMEM (as the kernel's, which cannot allocate
/// 2147483647 directories either) and changes nothing; the tree stays usable.
#[test]
fn nr_files_are_bounded_by_the_tree_size() {
    use crate::admin::node::MAX_DIRS;
    for (nr_file, child_file) in nr_files() {
        let mut t = full_tree();
        set(&mut t, &child_file, "7");
        let before = t.nr_dirs();
        for huge in ["2147483647", "100000000", &MAX_DIRS.to_string()] {
            assert_eq!(
                write_errno(&mut t, &nr_file, huge),
                libc::ENOMEM,
                "{nr_file} <- {huge}"
            );
            assert_eq!(read(&t, &nr_file), "1\n", "{nr_file} <- {huge}");
            assert_eq!(read(&t, &child_file), "7\n", "{nr_file} <- {huge}");
            assert_eq!(t.nr_dirs(), before);
        }
        let err = write(&mut t, &nr_file, "2147483647")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2147483647") && err.contains(&MAX_DIRS.to_string()),
            "{err}"
        );
        set(&mut t, &nr_file, "2");
        assert_eq!(read(&t, &nr_file), "2\n");
    }
}

/// The limit is on the whole tree: counts that each fit cannot add up past it.
#[test]
fn the_tree_size_limit_holds_across_nr_files() {
    use crate::admin::node::MAX_DIRS;
    let (mut t, _) = tree();
    one_context(&mut t);
    let targets = format!("{C}/targets/nr_targets");
    // A target is two directories (itself and regions/).
    set(&mut t, &targets, "20000");
    let used = t.nr_dirs();
    assert!(used > 40_000 && used <= MAX_DIRS, "{used}");
    let room = MAX_DIRS - used;
    let regions = format!("{C}/targets/0/regions/nr_regions");
    assert_eq!(
        write_errno(&mut t, &regions, &(room + 1).to_string()),
        libc::ENOMEM
    );
    assert_eq!(t.nr_dirs(), used);
    set(&mut t, &regions, &room.to_string());
    assert_eq!(t.nr_dirs(), MAX_DIRS);
    assert_eq!(
        write_errno(&mut t, &format!("{C}/targets/1/regions/nr_regions"), "1"),
        libc::ENOMEM
    );
    // Shrinking frees room; rewriting a count the tree holds is fine at the limit.
    set(&mut t, &regions, &room.to_string());
    set(&mut t, &regions, "0");
    set(&mut t, &format!("{C}/targets/1/regions/nr_regions"), "1");
    // Every new kdamond must fit too.
    assert_eq!(
        write_errno(&mut t, "kdamonds/nr_kdamonds", &MAX_DIRS.to_string()),
        libc::ENOMEM
    );
    set(&mut t, "kdamonds/nr_kdamonds", "2");
    assert_eq!(read(&t, "kdamonds/nr_kdamonds"), "2\n");
}
