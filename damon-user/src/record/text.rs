//! damo's numbers-as-text.
//!
//! damo writes most numbers of a record as strings: plain digits ("5000") when it writes raw
//! numbers, as `damo record` does, but older versions wrote thousands separators
//! ("94,827,419,009,024") and unit suffixes ("0 B", "1 s 500 ms"). These parsers accept what
//! damo's own `_damo_fmt_str.text_to_*` accept, so files from any damo version read.
use serde::Deserialize;

/// A number as damo stores it: a JSON number or a text form of one.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub(crate) enum NumOrText {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
}

impl NumOrText {
    /// The value as written, for error messages.
    pub(crate) fn shown(&self) -> String {
        match self {
            NumOrText::Unsigned(v) => v.to_string(),
            NumOrText::Signed(v) => v.to_string(),
            NumOrText::Float(v) => v.to_string(),
            NumOrText::Text(t) => t.clone(),
        }
    }

    /// A non-negative integer count; floats only when integral.
    pub(crate) fn count(&self) -> Option<u64> {
        match self {
            NumOrText::Unsigned(v) => Some(*v),
            NumOrText::Signed(_) => None,
            NumOrText::Float(f) => integral_float(*f),
            NumOrText::Text(t) => parse_count(t),
        }
    }

    /// A size or address; text may carry a binary unit, as damo's `text_to_bytes` allows.
    pub(crate) fn bytes(&self) -> Option<u64> {
        match self {
            NumOrText::Text(t) => parse_bytes(t),
            other => other.count(),
        }
    }

    /// A non-negative real number, e.g. a percentage.
    pub(crate) fn real(&self) -> Option<f64> {
        let v = match self {
            NumOrText::Unsigned(v) => *v as f64,
            NumOrText::Signed(v) => *v as f64,
            NumOrText::Float(f) => *f,
            NumOrText::Text(t) => parse_real(t)?,
        };
        (v.is_finite() && v >= 0.0).then_some(v)
    }

    /// A duration; bare numbers are in `bare_unit_ns` nanoseconds, as damo's `text_to_ns` and
    /// `text_to_us` take them.
    pub(crate) fn duration_ns(&self, bare_unit_ns: u64) -> Option<u64> {
        match self {
            NumOrText::Text(t) => parse_duration_ns(t, bare_unit_ns),
            other => other.count()?.checked_mul(bare_unit_ns),
        }
    }
}

fn integral_float(f: f64) -> Option<u64> {
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
}

fn strip_separators(text: &str) -> String {
    text.trim().chars().filter(|c| *c != ',').collect()
}

fn parse_real(text: &str) -> Option<f64> {
    strip_separators(text).parse::<f64>().ok()
}

/// "1,234" or "1234" (or an integral "1234.0").
pub(crate) fn parse_count(text: &str) -> Option<u64> {
    let plain = strip_separators(text);
    if let Ok(v) = plain.parse::<u64>() {
        return Some(v);
    }
    integral_float(plain.parse::<f64>().ok()?)
}

const NS_PER_UNIT: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// "1 s 500 ms", "1.5s", "250 ms" or a bare number of `bare_unit_ns` nanoseconds.
pub(crate) fn parse_duration_ns(text: &str, bare_unit_ns: u64) -> Option<u64> {
    let tokens = split_number_unit_tokens(text)?;
    if tokens.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    for (number, unit) in tokens {
        let unit_ns = match unit.as_str() {
            "" => bare_unit_ns,
            u => NS_PER_UNIT.iter().find(|(name, _)| *name == u)?.1,
        };
        total = total.checked_add(scale(&number, unit_ns)?)?;
    }
    Some(total)
}

const BYTES_PER_UNIT: [(&str, u64); 19] = [
    ("B", 1),
    ("K", 1 << 10),
    ("KB", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MB", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GB", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TB", 1 << 40),
    ("TiB", 1 << 40),
    ("P", 1 << 50),
    ("PB", 1 << 50),
    ("PiB", 1 << 50),
    ("E", 1 << 60),
    ("EB", 1 << 60),
    ("EiB", 1 << 60),
];

/// "4096", "4,096", "4 KiB", "1.5M": sizes in binary units, as damo's `text_to_bytes`.
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let tokens = split_number_unit_tokens(text)?;
    let [(number, unit)] = tokens.as_slice() else {
        return None;
    };
    let unit_bytes = match unit.as_str() {
        "" => 1,
        u => BYTES_PER_UNIT.iter().find(|(name, _)| *name == u)?.1,
    };
    scale(number, unit_bytes)
}

/// `number * unit`, exactly for integers, truncated for fractions ("1.5" KiB = 1536).
fn scale(number: &str, unit: u64) -> Option<u64> {
    if let Ok(v) = number.parse::<u64>() {
        return v.checked_mul(unit);
    }
    let v = number.parse::<f64>().ok()? * unit as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Splits "1 s 500ms" into [("1", "s"), ("500", "ms")]; separators are removed from numbers.
fn split_number_unit_tokens(text: &str) -> Option<Vec<(String, String)>> {
    let mut tokens = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while chars.peek().is_some() {
        let mut number = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                if c != ',' {
                    number.push(c);
                }
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut unit = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphabetic() {
                unit.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if number.is_empty() {
            return None;
        }
        tokens.push((number, unit));
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_damo_separators() {
        assert_eq!(parse_count("94,827,419,009,024"), Some(94_827_419_009_024));
        assert_eq!(parse_count("5000"), Some(5000));
        assert_eq!(parse_count("12.0"), Some(12));
        assert_eq!(parse_count("12.5"), None);
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("abc"), None);
    }

    #[test]
    fn durations_accept_units_and_bare_numbers() {
        assert_eq!(parse_duration_ns("1 s 500 ms", 1), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("1.5s", 1), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("5000", 1_000), Some(5_000_000));
        assert_eq!(parse_duration_ns("100 ms", 1_000), Some(100_000_000));
        assert_eq!(parse_duration_ns("3 fortnights", 1), None);
        assert_eq!(parse_duration_ns("", 1), None);
        assert_eq!(parse_duration_ns("ms", 1), None);
    }

    #[test]
    fn bytes_accept_binary_units() {
        assert_eq!(parse_bytes("0 B"), Some(0));
        assert_eq!(parse_bytes("4 KiB"), Some(4096));
        assert_eq!(parse_bytes("1.5M"), Some(3 << 19));
        assert_eq!(parse_bytes("4,096"), Some(4096));
        assert_eq!(parse_bytes("4 XB"), None);
        assert_eq!(parse_bytes("1 K 2 K"), None);
    }

    #[test]
    fn num_or_text_reads_json_numbers_and_strings() {
        let v: Vec<NumOrText> = serde_json::from_str(r#"[5, "5,000", 2.0, -1]"#).unwrap();
        assert_eq!(v[0].count(), Some(5));
        assert_eq!(v[1].count(), Some(5000));
        assert_eq!(v[2].count(), Some(2));
        assert_eq!(v[3].count(), None);
        assert_eq!(v[1].duration_ns(1_000), Some(5_000_000));
    }
}
