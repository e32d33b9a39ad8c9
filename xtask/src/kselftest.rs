//! `cargo xtask kselftest`: the kernel's own DAMON selftests, run unmodified against our admin
//! tree.
//!
//! The tests come from Debian's `linux-source-6.12` (downloaded through the VM matrix's private
//! apt state into `target/kselftest/`, never copied into the project). Each runs in a private
//! mount namespace where a `damon fs` mount of its own is bound over
//! `/sys/kernel/mm/damon/admin`; before the test starts, a guard script checks that the path
//! now is that FUSE mount (file system type and device) and aborts otherwise, so a test never
//! reaches the kernel's tree. `/sys/module/damon_*` are hidden under empty tmpfs mounts, and a
//! stand-in `dmesg` comes first on `PATH` (one test runs `dmesg -C`).
use std::{
    fs,
    io::Write,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::vm::{apt::Apt, cmd};

/// The selftests that use the admin tree only (the `debugfs_*` ones, `reclaim.sh` and
/// `lru_sort.sh` drive other kernel interfaces).
pub const TESTS: &[&str] = &[
    "sysfs.sh",
    "sysfs_update_removed_scheme_dir.sh",
    "sysfs_update_schemes_tried_regions_hang.py",
    "sysfs_update_schemes_tried_regions_wss_estimation.py",
    "damos_quota.py",
    "damos_quota_goal.py",
    "damos_apply_interval.py",
    "damos_tried_regions.py",
    "damon_nr_regions.py",
];

/// The package the tests come from, and the suites searched for it.
const SOURCE_PKG: &str = "linux-source-6.12";
const SOURCE_SUITES: &[&str] = &["trixie", "trixie-security"];
/// Helper programs the tests start, built from the selftests' own C files.
const HELPERS: &[&str] = &["access_memory", "access_memory_even"];
/// A test that runs longer is stopped and fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What one test did.
pub struct Outcome {
    pub test: String,
    pub passed: bool,
    pub detail: String,
    pub took: Duration,
}

/// Runs `names` (all of [`TESTS`] when empty) with the `damon` at `damon`; returns every
/// outcome, or an error when the tests could not be set up.
pub fn run(target: &Path, damon: &Path, names: &[String]) -> Result<Vec<Outcome>> {
    for n in names {
        if !TESTS.contains(&n.as_str()) {
            bail!("unknown selftest {n:?}; known: {}", TESTS.join(", "));
        }
    }
    let dir = target.join("kselftest");
    let tests = selftests(&dir)?;
    build_helpers(&tests)?;
    let bin = stand_ins(&dir)?;
    let guard = guard_script(&dir)?;
    check_guard(&dir, &guard)?;
    let mut outcomes = Vec::new();
    for test in TESTS
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == *t))
    {
        let outcome =
            run_one(&dir, &tests, &bin, &guard, damon, test).unwrap_or_else(|e| Outcome {
                test: test.to_string(),
                passed: false,
                detail: format!("{e:#}"),
                took: Duration::ZERO,
            });
        println!(
            "kselftest: {} {} [{:.1} s]{}",
            if outcome.passed { "PASS" } else { "FAIL" },
            outcome.test,
            outcome.took.as_secs_f64(),
            if outcome.passed {
                String::new()
            } else {
                format!(": {}", outcome.detail)
            }
        );
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// `tools/testing/selftests/damon` of the source package, from the cache or downloaded and
/// extracted into it.
fn selftests(dir: &Path) -> Result<PathBuf> {
    let tests = dir.join("damon");
    if tests.join("_damon_sysfs.py").is_file() {
        return Ok(tests);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let apt = Apt::new(&dir.parent().unwrap_or(dir).join("vm").join("apt"))?;
    println!("kselftest: fetching {SOURCE_PKG} (private apt state, once)");
    apt.update()?;
    let version = apt.newest(SOURCE_PKG, SOURCE_SUITES)?;
    let deb = apt.download(SOURCE_PKG, &version, dir)?;
    let scratch = cmd::TempDir::new(dir.join(".extract"))?;
    cmd::status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&scratch.0))?;
    let tarball = fs::read_dir(scratch.0.join("usr/src"))
        .context("the source package has no usr/src")?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .context("the source package holds no .tar.xz")?;
    let top = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.xz"))
        .context("a tarball without a name")?
        .to_string();
    cmd::status(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(&scratch.0)
            .arg(format!("{top}/tools/testing/selftests/damon")),
    )?;
    let extracted = scratch.0.join(&top).join("tools/testing/selftests/damon");
    fs::rename(&extracted, &tests)
        .with_context(|| format!("moving {} to {}", extracted.display(), tests.display()))?;
    Ok(tests)
}

/// The C helpers some tests start (`./access_memory`), built as the selftests' Makefile does.
fn build_helpers(tests: &Path) -> Result<()> {
    for h in HELPERS {
        let src = tests.join(format!("{h}.c"));
        if src.is_file() && !tests.join(h).is_file() {
            cmd::output(
                Command::new("cc")
                    .arg("-O2")
                    .arg("-o")
                    .arg(tests.join(h))
                    .arg(&src),
            )?;
        }
    }
    Ok(())
}

/// A directory put first on the tests' `PATH`: a `dmesg` that prints nothing and clears
/// nothing.
fn stand_ins(dir: &Path) -> Result<PathBuf> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin)?;
    let dmesg = bin.join("dmesg");
    fs::write(
        &dmesg,
        "#!/bin/sh\n# Stand-in: the selftests must not read or clear this machine's kernel log.\nexit 0\n",
    )?;
    fs::set_permissions(&dmesg, fs::Permissions::from_mode(0o755))?;
    Ok(bin)
}

/// The script that runs in the test's mount namespace: checks that the namespace is not the
/// machine's, binds our mount over the admin tree, checks the bind, hides
/// `/sys/module/damon_*`, then runs the test.
fn guard_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("guard.sh");
    let mut f = fs::File::create(&path)?;
    f.write_all(
        br#"#!/bin/sh
# guard.sh HOST_NS MOUNT TESTDIR TEST: run TEST with MOUNT (our FUSE tree) bound over the admin
# tree, in the private mount namespace this script was started in. HOST_NS is the mount
# namespace of the caller (`readlink /proc/self/ns/mnt` there).
set -eu
host_ns=$1 mnt=$2 dir=$3 test=$4
admin=/sys/kernel/mm/damon/admin
# Nothing is mounted, and no test runs, outside a mount namespace of our own: there the admin
# path is the machine's real tree, whose kdamond must never be touched.
own_ns=$(readlink /proc/self/ns/mnt || true)
if [ -z "$own_ns" ] || [ -z "$host_ns" ] || [ "$own_ns" = "$host_ns" ]; then
    echo "guard: not in a mount namespace of our own (\"$own_ns\"): not running $test" >&2
    exit 98
fi
# Mounts made here must not propagate back.
mount --make-rprivate /
case "$(findmnt -n -o PROPAGATION --mountpoint /sys || true)" in
    private*) ;;
    *) echo "guard: /sys is not private in this namespace: not running $test" >&2; exit 98 ;;
esac
# The selftests find sysfs as the first sysfs mount listed: it must be /sys.
if [ "$(awk '$3 == "sysfs" { print $2; exit }' /proc/mounts)" != /sys ]; then
    echo "guard: the first sysfs mount is not /sys: not running $test" >&2
    exit 98
fi
if [ ! -d "$admin" ]; then
    # A kernel without DAMON's sysfs: a scratch directory tree to bind onto.
    mount -t tmpfs none /sys/kernel/mm
    mkdir -p "$admin"
fi
mount --bind "$mnt" "$admin"
want=$(findmnt -n -o MAJ:MIN --mountpoint "$mnt" || true)
got=$(findmnt -n -o FSTYPE,MAJ:MIN --mountpoint "$admin" | tail -n 1 || true)
[ -n "$want" ] || want="(not a mount point)"
case "$got" in
    fuse*" $want") ;;
    *) echo "guard: $admin is \"$got\", not our FUSE mount ($want): not running $test" >&2
       exit 99 ;;
esac
for m in /sys/module/damon_*; do
    [ -d "$m" ] && mount -t tmpfs -o ro,mode=0555 none "$m"
done
cd "$dir"
exec "./$test"
"#,
    )?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Our own mount namespace, which the guard refuses to run in.
fn host_ns() -> Result<String> {
    let ns = fs::read_link("/proc/self/ns/mnt").context("reading our mount namespace")?;
    Ok(ns.to_string_lossy().into_owned())
}

/// The guard's two refusals, each with a probe test that would leave a marker: with a plain
/// directory in place of our mount it must exit 99, and in what it is told is the caller's
/// namespace (here the new one itself, so nothing outside is at risk) 98, without starting
/// the probe either time.
fn check_guard(dir: &Path, guard: &Path) -> Result<()> {
    let scratch = cmd::TempDir::new(dir.join(".guard-check"))?;
    let (plain, tests) = (scratch.0.join("plain"), scratch.0.join("tests"));
    fs::create_dir_all(&plain)?;
    fs::create_dir_all(&tests)?;
    let marker = scratch.0.join("ran");
    let probe = tests.join("probe.sh");
    fs::write(&probe, format!("#!/bin/sh\ntouch {}\n", marker.display()))?;
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o755))?;
    let cases = [
        (
            99,
            format!(
                "exec {} {} {} {} probe.sh",
                guard.display(),
                host_ns()?,
                plain.display(),
                tests.display()
            ),
        ),
        (
            98,
            format!(
                "exec {} \"$(readlink /proc/self/ns/mnt)\" {} {} probe.sh",
                guard.display(),
                plain.display(),
                tests.display()
            ),
        ),
    ];
    for (code, script) in cases {
        let status = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stderr(Stdio::null())
            .status()
            .context("starting unshare for the guard check")?;
        if status.code() != Some(code) || marker.exists() {
            bail!(
                "the selftest guard did not refuse as it must (expected exit {code}, got {status}); \
                 not running the selftests"
            );
        }
    }
    Ok(())
}

/// `damon fs` serving a tree of its own; stopped (and unmounted) on drop.
struct Server {
    child: Child,
    mnt: PathBuf,
}

impl Server {
    fn start(damon: &Path, mnt: PathBuf, log: &Path) -> Result<Self> {
        fs::create_dir_all(&mnt)?;
        let log = fs::File::create(log)?;
        let child = Command::new(damon)
            .arg("fs")
            .arg(&mnt)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} fs", damon.display()))?;
        let server = Server { child, mnt };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.mnt.join("kdamonds").is_dir() {
            if Instant::now() > deadline {
                bail!(
                    "damon fs did not mount {} within 10 s",
                    server.mnt.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: the server stops its kdamonds and unmounts.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = fs::remove_dir(&self.mnt);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = fs::remove_dir(&self.mnt);
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

fn run_one(
    dir: &Path,
    tests: &Path,
    bin: &Path,
    guard: &Path,
    damon: &Path,
    test: &str,
) -> Result<Outcome> {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let server = Server::start(
        damon,
        dir.join(format!("mnt-{}", std::process::id())),
        &logs.join(format!("{test}.server.log")),
    )?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let t = Instant::now();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(guard)
        .arg(host_ns()?)
        .arg(&server.mnt)
        .arg(tests)
        .arg(test)
        .env("PATH", path)
        // A group of its own, so that a test stopped on timeout takes its children along.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting unshare")?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let read = |p: Option<std::process::ChildStdout>| std::thread::spawn(move || drain(p));
    let out = read(out);
    let err = std::thread::spawn(move || drain(err));
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if t.elapsed() > TEST_TIMEOUT {
            // SAFETY: kill(2) of the process group we created above.
            unsafe { libc_kill(-(child.id() as i32), 9) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t.elapsed();
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    fs::write(
        logs.join(format!("{test}.log")),
        format!("{out}\n--- stderr\n{err}"),
    )?;
    drop(server);
    let (passed, detail) = match status {
        None => (false, format!("stopped after {} s", TEST_TIMEOUT.as_secs())),
        Some(s) if s.success() => (true, String::new()),
        // kselftest's "skip" is a failure here: every listed test must run.
        Some(s) => {
            let last = |t: &str| {
                t.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            };
            (
                false,
                format!(
                    "{s}: {}",
                    last(&err).or_else(|| last(&out)).unwrap_or_default()
                ),
            )
        }
    };
    Ok(Outcome {
        test: test.to_string(),
        passed,
        detail,
        took,
    })
}

fn drain(pipe: Option<impl std::io::Read>) -> String {
    let mut s = String::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_string(&mut s);
    }
    s
}
