//! Watermarks: whether a scheme is active, from a system metric (`damos_wmark_wait_us()`,
//! `damos_wmark_metric_value()`).
use super::{Watermarks, WmarkMetric};

/// Updates `active` from the metric and returns how long to wait before the next check: 0
/// when the scheme is active (or has no metric), its `interval_us` when it is not.
///
/// Outside `[low, high]` a scheme is deactivated; between `mid` and `high` an inactive one
/// stays inactive; below `mid` (and at least `low`) it is activated.
pub fn wait_us(
    w: &Watermarks,
    active: &mut bool,
    metric: &mut dyn FnMut(WmarkMetric) -> u64,
) -> u64 {
    if w.metric == WmarkMetric::None {
        return 0;
    }
    let m = metric(w.metric);
    if m > w.high || m < w.low {
        if *active {
            log::debug!(
                "DAMOS watermarks: {} {m} outside [{}, {}]: inactive",
                w.metric,
                w.low,
                w.high
            );
        }
        *active = false;
        return w.interval_us;
    }
    if m >= w.mid && !*active {
        return w.interval_us;
    }
    if !*active {
        log::debug!("DAMOS watermarks: {} {m} below {}: active", w.metric, w.mid);
    }
    *active = true;
    0
}

/// The metric's value now: free memory in per-mille of all memory, as the kernel's
/// `NR_FREE_PAGES * 1000 / totalram_pages()` (`sysinfo(2)` reads the same two counters).
pub fn metric_value(metric: WmarkMetric) -> u64 {
    match metric {
        WmarkMetric::None => 0,
        WmarkMetric::FreeMemRate => {
            // SAFETY: sysinfo fills the struct it is given.
            let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
            if unsafe { libc::sysinfo(&mut info) } != 0 || info.totalram == 0 {
                return 0;
            }
            (info.freeram as u64).saturating_mul(1000) / info.totalram as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wmarks() -> Watermarks {
        Watermarks {
            metric: WmarkMetric::FreeMemRate,
            interval_us: 50_000,
            high: 500,
            mid: 400,
            low: 200,
        }
    }

    #[test]
    fn activation_follows_high_mid_and_low() {
        let w = wmarks();
        let mut active = true;
        let at = |v: u64, active: &mut bool| wait_us(&w, active, &mut |_| v);
        // Starts active: between mid and high it stays so.
        assert_eq!(at(450, &mut active), 0);
        assert!(active);
        // Above high: off, and waits the interval.
        assert_eq!(at(501, &mut active), 50_000);
        assert!(!active);
        // Back between mid and high: still off.
        assert_eq!(at(450, &mut active), 50_000);
        assert!(!active);
        // Below mid: on.
        assert_eq!(at(399, &mut active), 0);
        assert!(active);
        assert_eq!(at(200, &mut active), 0);
        // Below low: off.
        assert_eq!(at(199, &mut active), 50_000);
        assert!(!active);
    }

    #[test]
    fn no_metric_is_always_active() {
        let mut active = false;
        let w = Watermarks::default();
        assert_eq!(wait_us(&w, &mut active, &mut |_| unreachable!()), 0);
    }

    #[test]
    fn free_mem_rate_is_per_mille() {
        let v = metric_value(WmarkMetric::FreeMemRate);
        assert!(v > 0 && v <= 1000, "{v}");
    }
}
