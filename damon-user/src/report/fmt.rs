//! One formatter per quantity, each with a raw switch.
//!
//! Human form: thousands separators, binary units, trimmed fractions ("1.5 MiB", "300 ms").
//! Raw form (`--raw-numbers`): plain integers in base units (bytes, nanoseconds), for scripts.

/// Formats numbers for reports; `raw` selects plain integers in base units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Numbers {
    pub raw: bool,
}

const BINARY_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

impl Numbers {
    pub fn new(raw: bool) -> Self {
        Numbers { raw }
    }

    /// A count: "1,234,567", raw "1234567".
    pub fn count(&self, n: u64) -> String {
        if self.raw {
            n.to_string()
        } else {
            group_thousands(&n.to_string())
        }
    }

    /// A size in the largest binary unit below it: "1.5 MiB", raw "1572864".
    pub fn bytes(&self, n: u64) -> String {
        if self.raw {
            return n.to_string();
        }
        let mut unit = 0;
        while unit + 1 < BINARY_UNITS.len() && n >= 1u64 << (10 * (unit + 1)) {
            unit += 1;
        }
        if unit == 0 {
            return format!("{n} B");
        }
        let value = n as f64 / (1u64 << (10 * unit)) as f64;
        format!(
            "{} {}",
            trim_fraction(&format!("{value:.3}")),
            BINARY_UNITS[unit]
        )
    }

    /// A size for a `SIZE(KiB)` column: "1,536", "0.5"; raw bytes for `SIZE(B)`.
    pub fn size_column(&self, n: u64) -> String {
        if self.raw {
            return n.to_string();
        }
        let whole = group_thousands(&(n / 1024).to_string());
        match n % 1024 {
            0 => whole,
            rest => format!(
                "{whole}{}",
                &trim_fraction(&format!("{:.3}", rest as f64 / 1024.0))[1..]
            ),
        }
    }

    pub fn size_header(&self) -> &'static str {
        if self.raw { "SIZE(B)" } else { "SIZE(KiB)" }
    }

    /// A duration: "300 ms", "1.5 s", "2 m 3.5 s", raw nanoseconds.
    pub fn duration_ns(&self, ns: u64) -> String {
        if self.raw {
            return ns.to_string();
        }
        const UNITS: [(u64, &str); 4] = [
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        if ns >= 60 * 1_000_000_000 {
            let minutes = ns / (60 * 1_000_000_000);
            let rest = ns % (60 * 1_000_000_000);
            let seconds = trim_fraction(&format!("{:.3}", rest as f64 / 1e9));
            return format!("{} m {seconds} s", group_thousands(&minutes.to_string()));
        }
        let (unit_ns, name) = UNITS
            .iter()
            .copied()
            .find(|(unit_ns, _)| ns >= *unit_ns)
            .unwrap_or((1, "ns"));
        let value = ns as f64 / unit_ns as f64;
        format!("{} {name}", trim_fraction(&format!("{value:.3}")))
    }

    /// A duration in prose (headers, legends): as [`duration_ns`](Self::duration_ns), but
    /// raw numbers keep their unit, "300000000 ns".
    pub fn duration_label(&self, ns: u64) -> String {
        if self.raw {
            format!("{ns} ns")
        } else {
            self.duration_ns(ns)
        }
    }

    /// A size in prose: as [`bytes`](Self::bytes), raw numbers with their unit, "4096 B".
    pub fn bytes_label(&self, n: u64) -> String {
        if self.raw {
            format!("{n} B")
        } else {
            self.bytes(n)
        }
    }

    /// Seconds with three decimals for an `AGE(s)` column; raw microseconds for `AGE(us)`.
    pub fn age_column(&self, age_us: Option<u64>) -> String {
        match age_us {
            None => "-".into(),
            Some(us) if self.raw => us.to_string(),
            Some(us) => group_fraction(&format!("{:.3}", us as f64 / 1e6)),
        }
    }

    pub fn age_header(&self) -> &'static str {
        if self.raw { "AGE(us)" } else { "AGE(s)" }
    }

    /// A real number with two decimals ("12.50", "1,200.00"); raw has no separators.
    /// A share in basis points: "4 %", or the bare number with `raw`.
    pub fn ratio_bp(&self, bp: u64) -> String {
        if self.raw {
            format!("{bp} bp")
        } else {
            format!("{} %", self.real(bp as f64 / 100.0))
        }
    }

    pub fn real(&self, v: f64) -> String {
        let s = format!("{v:.2}");
        if self.raw { s } else { group_fraction(&s) }
    }

    /// `[start, end)`: "0x7f0000001000-0x7f0000003000", raw "139637976731648-139637976739840".
    pub fn addr_range(&self, start: u64, end: u64) -> String {
        if self.raw {
            format!("{start}-{end}")
        } else {
            format!("{start:#x}-{end:#x}")
        }
    }

    pub fn addr(&self, addr: u64) -> String {
        if self.raw {
            addr.to_string()
        } else {
            format!("{addr:#x}")
        }
    }
}

/// "1234567" → "1,234,567".
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1234.50" → "1,234.50".
fn group_fraction(s: &str) -> String {
    match s.split_once('.') {
        Some((whole, fraction)) => format!("{}.{fraction}", group_thousands(whole)),
        None => group_thousands(s),
    }
}

/// "1.500" → "1.5", "4.000" → "4"; the whole part gets separators.
fn trim_fraction(s: &str) -> String {
    let trimmed = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    };
    group_fraction(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUMAN: Numbers = Numbers { raw: false };
    const RAW: Numbers = Numbers { raw: true };

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(HUMAN.count(0), "0");
        assert_eq!(HUMAN.count(999), "999");
        assert_eq!(HUMAN.count(1_000), "1,000");
        assert_eq!(HUMAN.count(1_234_567), "1,234,567");
        assert_eq!(HUMAN.count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(RAW.count(1_234_567), "1234567");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(HUMAN.bytes(0), "0 B");
        assert_eq!(HUMAN.bytes(1023), "1023 B");
        assert_eq!(HUMAN.bytes(1024), "1 KiB");
        assert_eq!(HUMAN.bytes(1536), "1.5 KiB");
        assert_eq!(HUMAN.bytes(3 << 19), "1.5 MiB");
        assert_eq!(HUMAN.bytes(1_466_277_888), "1.366 GiB");
        assert_eq!(HUMAN.bytes(u64::MAX), "16 EiB");
        assert_eq!(RAW.bytes(3 << 19), "1572864");
    }

    #[test]
    fn size_columns_are_kib() {
        assert_eq!(HUMAN.size_column(4096), "4");
        assert_eq!(HUMAN.size_column(512), "0.5");
        assert_eq!(HUMAN.size_column(1_466_277_888), "1,431,912");
        assert_eq!(HUMAN.size_column(1_466_277_888 + 256), "1,431,912.25");
        assert_eq!(RAW.size_column(4096), "4096");
        assert_eq!(
            (HUMAN.size_header(), RAW.size_header()),
            ("SIZE(KiB)", "SIZE(B)")
        );
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(HUMAN.duration_ns(0), "0 ns");
        assert_eq!(HUMAN.duration_ns(999), "999 ns");
        assert_eq!(HUMAN.duration_ns(5_000_000), "5 ms");
        assert_eq!(HUMAN.duration_ns(1_500_000_000), "1.5 s");
        assert_eq!(HUMAN.duration_ns(104_599_000), "104.599 ms");
        assert_eq!(HUMAN.duration_ns(123_500_000_000), "2 m 3.5 s");
        assert_eq!(RAW.duration_ns(1_500_000_000), "1500000000");
        assert_eq!(RAW.duration_label(1_500_000_000), "1500000000 ns");
        assert_eq!(HUMAN.duration_label(1_500_000_000), "1.5 s");
        assert_eq!(RAW.bytes_label(4096), "4096 B");
    }

    #[test]
    fn address_ranges_are_hex_or_raw_decimal() {
        assert_eq!(HUMAN.addr_range(0x1000, 0x3000), "0x1000-0x3000");
        assert_eq!(RAW.addr_range(0x1000, 0x3000), "4096-12288");
        assert_eq!(HUMAN.addr(0x7fff_0000_0000), "0x7fff00000000");
    }

    #[test]
    fn reals_and_ages() {
        assert_eq!(HUMAN.real(1234.5), "1,234.50");
        assert_eq!(RAW.real(1234.5), "1234.50");
        assert_eq!(HUMAN.age_column(Some(1_200_000)), "1.200");
        assert_eq!(HUMAN.age_column(Some(3_600_000_000)), "3,600.000");
        assert_eq!(RAW.age_column(Some(1_200_000)), "1200000");
        assert_eq!(HUMAN.age_column(None), "-");
    }
}
