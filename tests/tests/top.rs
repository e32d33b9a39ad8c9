//! `damon top` in a real terminal (tmux): the hot region shows, `q` exits and restores it.
use std::{process::Command, time::Duration};

use damon_tests::{Workload, damon_bin, field, parse_range, wait_until};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (cargo xtask test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the tmux session on drop, whatever the test's outcome.
struct Session(String);
impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
#[ignore = "needs root"]
fn top_shows_the_hot_region_and_quits_on_q() {
    let (w, ready) =
        Workload::start(&["hotcold", "--hot-mib", "32", "--cold-mib", "64"]).expect("workload");
    let hot = parse_range(field(&ready, "hot").unwrap()).unwrap();
    let (hot_start, hot_end) = (hot.start, hot.end);
    let name = format!("damon-top-test-{}", std::process::id());
    let cmd = format!(
        "{} top -p {}; echo TOP-EXITED-$?; sleep 30",
        damon_bin().display(),
        w.pid()
    );
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "160",
            "-y",
            "50",
            &cmd,
        ])
        .status()
        .expect("tmux new-session");
    assert!(st.success());
    let session = Session(name.clone());

    // Wait for a screen that shows a region inside the hot buffer among the hottest.
    let hot_prefix = format!("{:x}", hot_start >> 24); // the buffer's top address digits
    let mut screen = String::new();
    // On timeout the assertion below fails, showing the last screen.
    let _shown = wait_until(
        "the hot buffer on the screen",
        Duration::from_secs(15),
        || {
            screen = tmux(&["capture-pane", "-p", "-t", &name]);
            screen.contains("damon top")
                && screen.contains(&hot_prefix)
                && screen_shows_hot(&screen, hot_start, hot_end)
        },
    );
    assert!(
        screen_shows_hot(&screen, hot_start, hot_end),
        "hot buffer {hot_start:#x}-{hot_end:#x} not shown hot:\n{screen}"
    );

    tmux(&["send-keys", "-t", &name, "q"]);
    // On timeout the assertion below fails, showing the last screen.
    let _exited = wait_until("top to exit", Duration::from_secs(5), || {
        screen = tmux(&["capture-pane", "-p", "-t", &name]);
        screen.contains("TOP-EXITED")
    });
    assert!(
        screen.contains("TOP-EXITED-0"),
        "damon top did not exit 0 on q:\n{screen}"
    );
    // Back on the normal screen: the live view's lines are gone.
    assert!(
        !screen.contains("aggregations, Ctrl-C to end"),
        "alternate screen not restored:\n{screen}"
    );
    drop(session);
}

/// Whether a line of the screen names an address range inside the hot buffer at >= 80 %.
fn screen_shows_hot(screen: &str, start: u64, end: u64) -> bool {
    screen.lines().any(|line| {
        let Some(range) = line
            .split_whitespace()
            .find(|w| w.starts_with("0x") && w.contains('-'))
        else {
            return false;
        };
        let Ok(damon_user::core::AddrRange { start: s, end: e }) = damon_tests::parse_range(range)
        else {
            return false;
        };
        let pct = line
            .split_whitespace()
            .filter_map(|w| w.trim_end_matches('%').parse::<f64>().ok())
            .find(|v| (80.0..=100.0).contains(v));
        s >= start.saturating_sub(2 << 20) && e <= end + (2 << 20) && pct.is_some()
    })
}
