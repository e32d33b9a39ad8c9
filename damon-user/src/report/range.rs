//! Parsing of the ranges and sizes users give on the command line.
use super::ReportError;
use crate::core::AddrRange;
use crate::record::text::{parse_bytes, parse_duration_ns};

const NS_PER_S: u64 = 1_000_000_000;

/// `START-END` of addresses: each hexadecimal with `0x`, or decimal with an optional binary
/// unit (`4K`, `1GiB`). The range is `[START, END)`.
pub fn parse_address_range(value: &str) -> Result<AddrRange, ReportError> {
    let bad = |reason| ReportError::BadAddressRange {
        value: value.to_string(),
        reason,
    };
    let (start, end) = value
        .split_once('-')
        .ok_or_else(|| bad("expected START-END, e.g. 0x7f0000000000-0x7f0000100000"))?;
    let start = parse_address(start).ok_or_else(|| bad("START is not an address"))?;
    let end = parse_address(end).ok_or_else(|| bad("END is not an address"))?;
    if end <= start {
        return Err(bad("END must be above START"));
    }
    Ok(AddrRange::new(start, end))
}

fn parse_address(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => parse_bytes(text),
    }
}

/// `START-END` of time since the first snapshot started, e.g. `2s-5s`, `500ms-1.5s`; bare
/// numbers are seconds; either end may be left out (`10s-`, `-1m`).
pub fn parse_time_range(value: &str) -> Result<(Option<u64>, Option<u64>), ReportError> {
    let bad = |reason| ReportError::BadTimeRange {
        value: value.to_string(),
        reason,
    };
    let (start, end) = value
        .split_once('-')
        .ok_or_else(|| bad("expected START-END, e.g. 2s-5s"))?;
    let parse = |text: &str, which| -> Result<Option<u64>, ReportError> {
        match text.trim() {
            "" => Ok(None),
            t => parse_duration_ns(t, NS_PER_S)
                .map(Some)
                .ok_or_else(|| bad(which)),
        }
    };
    let start = parse(start, "START is not a duration such as 1.5s or 300ms")?;
    let end = parse(end, "END is not a duration such as 1.5s or 300ms")?;
    if let (Some(s), Some(e)) = (start, end)
        && e <= s
    {
        return Err(bad("END must be after START"));
    }
    Ok((start, end))
}

/// Upper bound of either side of a resolution: enough for any screen or image.
pub const MAX_RESOLUTION: usize = 4096;

/// `ROWSxCOLUMNS`, e.g. `40x80`.
pub fn parse_resolution(value: &str) -> Result<(usize, usize), ReportError> {
    let bad = || ReportError::BadResolution {
        value: value.to_string(),
        max: MAX_RESOLUTION,
    };
    let (rows, cols) = value.split_once(['x', 'X']).ok_or_else(bad)?;
    let parse = |t: &str| {
        t.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESOLUTION).contains(n))
            .ok_or_else(bad)
    };
    Ok((parse(rows)?, parse(cols)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges() {
        assert_eq!(
            parse_address_range("0x1000-0x3000").unwrap(),
            AddrRange::new(0x1000, 0x3000)
        );
        assert_eq!(
            parse_address_range("4096-12K").unwrap(),
            AddrRange::new(4096, 12288)
        );
        assert_eq!(
            parse_address_range("0x7f00_0000-0x7f00_1000").unwrap(),
            AddrRange::new(0x7f00_0000, 0x7f00_1000)
        );
    }

    #[test]
    fn bad_address_ranges_name_the_value() {
        let msg = |v: &str| parse_address_range(v).unwrap_err().to_string();
        assert_eq!(
            msg("0x3000"),
            "bad address range \"0x3000\": expected START-END, e.g. 0x7f0000000000-0x7f0000100000"
        );
        assert_eq!(
            msg("0x3000-0x1000"),
            "bad address range \"0x3000-0x1000\": END must be above START"
        );
        assert_eq!(
            msg("heap-0x1000"),
            "bad address range \"heap-0x1000\": START is not an address"
        );
        assert_eq!(
            msg("0x10-0xzz"),
            "bad address range \"0x10-0xzz\": END is not an address"
        );
    }

    #[test]
    fn time_ranges() {
        assert_eq!(
            parse_time_range("2s-5s").unwrap(),
            (Some(2 * NS_PER_S), Some(5 * NS_PER_S))
        );
        assert_eq!(
            parse_time_range("500ms-1.5").unwrap(),
            (Some(NS_PER_S / 2), Some(3 * NS_PER_S / 2))
        );
        assert_eq!(
            parse_time_range("10s-").unwrap(),
            (Some(10 * NS_PER_S), None)
        );
        assert_eq!(
            parse_time_range("-1m").unwrap(),
            (None, Some(60 * NS_PER_S))
        );
        let msg = parse_time_range("5s-2s").unwrap_err().to_string();
        assert_eq!(msg, "bad time range \"5s-2s\": END must be after START");
        let msg = parse_time_range("soon-later").unwrap_err().to_string();
        assert!(
            msg.starts_with("bad time range \"soon-later\": START"),
            "{msg}"
        );
    }

    #[test]
    fn resolutions() {
        assert_eq!(parse_resolution("40x80").unwrap(), (40, 80));
        let msg = parse_resolution("0x80").unwrap_err().to_string();
        assert_eq!(
            msg,
            "bad resolution \"0x80\": expected ROWSxCOLUMNS, e.g. 40x80, each 1-4096"
        );
        assert!(parse_resolution("40").is_err());
    }
}
