//! Root's output files in a directory others can write to (`/tmp`): an unprivileged user,
//! created for the test, plants symlinks and files there, as an attacker would, in a sticky
//! world-writable directory the test creates. Nothing may be written through what they
//! planted, and nothing of ours may become readable to them. These do not depend on
//! `fs.protected_symlinks` or `fs.protected_regular`, which only narrow the attack.
use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use damon_tests::{ChildGuard, TestUser, UnmountGuard, Workload, damon_bin, mounted, sticky_dir};
use damon_user::record::read_records;

/// A root-owned file in a private directory: what the attacker wants overwritten.
fn victim(dir: &Path) -> PathBuf {
    let victim = dir.join("victim");
    fs::write(&victim, b"precious\n").expect("victim");
    victim
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A file that is root's own and private: a regular file (not a link), uid 0, mode 0600, and
/// the attacker cannot read it.
fn assert_private_to_root(path: &Path, attacker: &TestUser) {
    let meta = fs::symlink_metadata(path).expect("output exists");
    assert!(meta.is_file(), "{} is not a regular file", path.display());
    assert_eq!(meta.uid(), 0, "{} owner", path.display());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{}",
        path.display()
    );
    assert!(
        !attacker
            .run("cat", &[s(path)])
            .expect("cat")
            .status
            .success(),
        "{} can read {}",
        attacker.name,
        path.display()
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Starts `damon record ... -o out -d 3` on `pid`.
fn start_record(pid: i32, out: &Path) -> ChildGuard {
    ChildGuard(
        Command::new(damon_bin())
            .args(["record", "-p", &pid.to_string(), "-d", "3", "-o"])
            .arg(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("damon record"),
    )
}

#[test]
#[ignore = "needs root"]
fn record_never_writes_through_names_another_user_planted() {
    let attacker = TestUser::create().expect("useradd");
    let tmp = sticky_dir().expect("sticky dir");
    let private = tempfile::tempdir().expect("private dir");
    let victim = victim(private.path());
    let (w, _) = Workload::start(&["hotcold", "--hot-mib", "4", "--cold-mib", "4"]).expect("w");

    // Symlinks to the victim at the output name and at the temporary name the recorder
    // used to derive from its pid (`.NAME.tmp.PID`), planted as soon as the pid is known.
    let out = tmp.path().join("rec.data");
    attacker.must("ln", &["-s", s(&victim), s(&out)]).unwrap();
    let mut rec = start_record(w.pid(), &out);
    let guessed = tmp.path().join(format!(".rec.data.tmp.{}", rec.pid()));
    attacker
        .must("ln", &["-s", s(&victim), s(&guessed)])
        .unwrap();
    let status = rec.wait_for(Duration::from_secs(60)).expect("exit");
    assert!(status.success(), "damon record: {status}");
    assert!(
        fs::read(&victim).unwrap() == b"precious\n",
        "{} was overwritten through a planted link",
        victim.display()
    );
    assert_private_to_root(&out, &attacker);
    let snapshots: usize = read_records(&out)
        .expect("our record")
        .iter()
        .map(|r| r.snapshots.len())
        .sum();
    assert!(snapshots > 0, "a record without snapshots");

    // A world-readable file of the attacker's at the temporary name, which they keep open
    // and read through once the recorder is gone: the record must not reach it.
    let out2 = tmp.path().join("rec2.data");
    let mut rec = start_record(w.pid(), &out2);
    let planted = tmp.path().join(format!(".rec2.data.tmp.{}", rec.pid()));
    let script = format!(
        "touch {p} && chmod 666 {p} && exec 3<{p} && while [ -d /proc/{pid} ]; do sleep 0.1; done \
         && cat <&3",
        p = s(&planted),
        pid = rec.pid()
    );
    let mut reader = ChildGuard(attacker.spawn("sh", &["-c", &script]).unwrap());
    let status = rec.wait_for(Duration::from_secs(60)).expect("exit");
    assert!(status.success(), "damon record: {status}");
    let read = reader
        .output(Duration::from_secs(10))
        .expect("the attacker's reader");
    assert!(
        read.status.success(),
        "planting failed: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert!(
        read.stdout.is_empty(),
        "{} read {} bytes of the record through the file they planted",
        attacker.name,
        read.stdout.len()
    );
    assert_private_to_root(&out2, &attacker);

    // Only what was planted, and our two files: no temporary file left.
    let mut expected = vec![
        ".rec.data.tmp.".to_string(),
        ".rec2.data.tmp.".to_string(),
        "rec.data".to_string(),
        "rec2.data".to_string(),
    ];
    expected.sort();
    let found: Vec<String> = names(tmp.path())
        .into_iter()
        .map(|n| match n.rfind(".tmp.") {
            Some(i) if n[i + 5..].chars().all(|c| c.is_ascii_digit()) => n[..i + 5].to_string(),
            _ => n,
        })
        .collect();
    assert_eq!(found, expected);
}

#[test]
#[ignore = "needs root"]
fn heatmap_images_never_write_through_a_planted_link() {
    let attacker = TestUser::create().expect("useradd");
    let tmp = sticky_dir().expect("sticky dir");
    let private = tempfile::tempdir().expect("private dir");
    let victim = victim(private.path());
    let record =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../damon-user/tests/data/stairs.data");
    for ext in ["png", "svg"] {
        let image = tmp.path().join(format!("heat.{ext}"));
        attacker.must("ln", &["-s", s(&victim), s(&image)]).unwrap();
        let out = Command::new(damon_bin())
            .args(["report", "heatmap", "-i", s(&record), "--output", s(&image)])
            .output()
            .expect("damon report");
        assert!(
            out.status.success(),
            "damon report heatmap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            fs::read(&victim).unwrap() == b"precious\n",
            ".{ext}: {} was overwritten through a planted link",
            victim.display()
        );
        assert_private_to_root(&image, &attacker);
    }
    assert_eq!(names(tmp.path()), ["heat.png", "heat.svg"]);
}

#[test]
#[ignore = "needs root"]
fn fs_refuses_a_mount_point_that_is_a_planted_link() {
    let attacker = TestUser::create().expect("useradd");
    let tmp = sticky_dir().expect("sticky dir");
    let private = tempfile::tempdir().expect("private dir");
    let hidden = private.path().join("config");
    fs::create_dir(&hidden).unwrap();
    fs::write(hidden.join("settings"), b"x").unwrap();
    // The old code mounted over the link's target.
    let _unmount = UnmountGuard(hidden.clone());
    let link = tmp.path().join("damon");
    attacker.must("ln", &["-s", s(&hidden), s(&link)]).unwrap();

    // As typed, and as a shell completes it (with a slash, which would follow the link).
    for arg in [s(&link).to_string(), format!("{}/", s(&link))] {
        let mut fs_server = ChildGuard(
            Command::new(damon_bin())
                .arg("fs")
                .arg(&arg)
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("damon fs"),
        );
        let status = fs_server.wait_for(Duration::from_secs(10));
        assert!(
            !mounted(&hidden),
            "damon fs {arg}: the tree was mounted over {}, the link's target",
            hidden.display()
        );
        let status = status.expect("damon fs should refuse at once");
        assert!(!status.success(), "damon fs {arg} succeeded");
        let mut err = String::new();
        if let Some(mut e) = fs_server.0.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(
            err.contains(s(&link)) && err.contains("symbolic link"),
            "damon fs {arg}: the error does not say why: {err}"
        );
        assert_eq!(names(&hidden), ["settings"]);
    }
}
