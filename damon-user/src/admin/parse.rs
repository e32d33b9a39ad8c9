//! The kernel's parsers for sysfs input, reproduced exactly: `kstrto*` with base 0,
//! `kstrtobool` and `sysfs_streq` (lib/kstrtox.c, lib/string.c).
//!
//! Tools written for the kernel tree rely on the exact accept/reject behaviour (damo writes
//! numbers without a newline, `echo` adds one; `0x10` and `010` are accepted by the kernel), so
//! nothing here is "more helpful" than the kernel.

/// Why a number was rejected: the kernel returns `-EINVAL` for the first, `-ERANGE` for the
/// second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a number in the kernel's syntax (empty, junk, a sign where none is allowed).
    Invalid,
    /// A number, but too large for the destination type.
    Overflow,
}

/// C-string view of a sysfs write: the kernel NUL-terminates the buffer, so anything after an
/// embedded NUL byte is invisible to the parsers.
pub fn c_str(input: &[u8]) -> &[u8] {
    match input.iter().position(|&b| b == 0) {
        Some(n) => &input[..n],
        None => input,
    }
}

/// `_kstrtoull(s, 0, res)`: base detection (`0x` + hex digit → 16, leading `0` → 8, else 10),
/// digits, then an optional single `\n`, then the end.
fn kstrtoull_unsigned(s: &[u8]) -> Result<u64, ParseError> {
    let (base, digits) = match s {
        [b'0', x, h, ..] if x.eq_ignore_ascii_case(&b'x') && h.is_ascii_hexdigit() => (16, &s[2..]),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    let mut consumed = 0;
    for &c in digits {
        let digit = match (c as char).to_digit(16) {
            Some(d) if d < base => d,
            _ => break,
        };
        match value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(digit)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        consumed += 1;
    }
    if overflow {
        return Err(ParseError::Overflow);
    }
    if consumed == 0 {
        return Err(ParseError::Invalid);
    }
    match &digits[consumed..] {
        [] | [b'\n'] => Ok(value),
        _ => Err(ParseError::Invalid),
    }
}

/// `kstrtoull(s, 0)` (and `kstrtoul` on 64-bit): like `_kstrtoull` but one leading `+` is
/// allowed.
pub fn kstrtoull(input: &[u8]) -> Result<u64, ParseError> {
    let s = c_str(input);
    let s = s.strip_prefix(b"+").unwrap_or(s);
    kstrtoull_unsigned(s)
}

/// `kstrtouint(s, 0)`.
pub fn kstrtouint(input: &[u8]) -> Result<u32, ParseError> {
    let v = kstrtoull(input)?;
    u32::try_from(v).map_err(|_| ParseError::Overflow)
}

/// `kstrtoll(s, 0)`: a leading `-` negates the unsigned parse of the rest (which then may not
/// carry its own `+`); otherwise `kstrtoull` rules.
pub fn kstrtoll(input: &[u8]) -> Result<i64, ParseError> {
    let s = c_str(input);
    if let Some(rest) = s.strip_prefix(b"-") {
        let magnitude = kstrtoull_unsigned(rest)?;
        if magnitude > i64::MAX as u64 + 1 {
            return Err(ParseError::Overflow);
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        let v = kstrtoull(s)?;
        i64::try_from(v).map_err(|_| ParseError::Overflow)
    }
}

/// `kstrtoint(s, 0)`.
pub fn kstrtoint(input: &[u8]) -> Result<i32, ParseError> {
    let v = kstrtoll(input)?;
    i32::try_from(v).map_err(|_| ParseError::Overflow)
}

/// `kstrtobool`: only the first character (or the first two for `on`/`off`) is looked at, so
/// `yes`, `Y\n` and `1abc` are all true; anything else is `-EINVAL`.
pub fn kstrtobool(input: &[u8]) -> Option<bool> {
    match c_str(input) {
        [b'y' | b'Y' | b't' | b'T' | b'1', ..] => Some(true),
        [b'n' | b'N' | b'f' | b'F' | b'0', ..] => Some(false),
        [b'o' | b'O', b'n' | b'N', ..] => Some(true),
        [b'o' | b'O', b'f' | b'F', ..] => Some(false),
        _ => None,
    }
}

/// `sysfs_streq(input, keyword)`: equal, ignoring one trailing newline on either side.
pub fn sysfs_streq(input: &[u8], keyword: &str) -> bool {
    let s = c_str(input);
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    s == keyword.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParseError::*;

    #[test]
    fn unsigned_bases_and_newline() {
        assert_eq!(kstrtoull(b"10"), Ok(10));
        assert_eq!(kstrtoull(b"10\n"), Ok(10));
        assert_eq!(kstrtoull(b"0x10"), Ok(16));
        assert_eq!(kstrtoull(b"0X1f\n"), Ok(31));
        assert_eq!(kstrtoull(b"010"), Ok(8));
        assert_eq!(kstrtoull(b"0"), Ok(0));
        assert_eq!(kstrtoull(b"+7"), Ok(7));
        assert_eq!(kstrtoull(b"18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn unsigned_rejects() {
        for bad in [
            &b""[..],
            b"\n",
            b"abc",
            b"-1",
            b"1 ",
            b" 1",
            b"1\n\n",
            b"09",
            b"0x",
            b"0xg",
            b"++1",
            b"1.5",
        ] {
            assert_eq!(kstrtoull(bad), Err(Invalid), "{bad:?}");
        }
        assert_eq!(kstrtoull(b"18446744073709551616"), Err(Overflow));
        assert_eq!(kstrtoull(b"0x10000000000000000"), Err(Overflow));
        // The kernel keeps consuming digits after an overflow, so trailing junk still says
        // ERANGE.
        assert_eq!(kstrtoull(b"99999999999999999999x"), Err(Overflow));
    }

    #[test]
    fn embedded_nul_ends_the_input() {
        assert_eq!(kstrtoull(b"5\0junk"), Ok(5));
        assert!(sysfs_streq(b"on\0x", "on"));
    }

    #[test]
    fn signed() {
        assert_eq!(kstrtoint(b"-1"), Ok(-1));
        assert_eq!(kstrtoint(b"-0x10\n"), Ok(-16));
        assert_eq!(kstrtoint(b"-0"), Ok(0));
        assert_eq!(kstrtoint(b"2147483647"), Ok(i32::MAX));
        assert_eq!(kstrtoint(b"-2147483648"), Ok(i32::MIN));
        assert_eq!(kstrtoint(b"2147483648"), Err(Overflow));
        assert_eq!(kstrtoint(b"-2147483649"), Err(Overflow));
        assert_eq!(kstrtoint(b"-+1"), Err(Invalid));
        assert_eq!(kstrtoint(b"--1"), Err(Invalid));
        assert_eq!(kstrtoint(b"-"), Err(Invalid));
        assert_eq!(kstrtoll(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(kstrtoll(b"-9223372036854775809"), Err(Overflow));
    }

    #[test]
    fn uint_range() {
        assert_eq!(kstrtouint(b"4294967295"), Ok(u32::MAX));
        assert_eq!(kstrtouint(b"4294967296"), Err(Overflow));
    }

    #[test]
    fn bools() {
        for t in [&b"Y"[..], b"y\n", b"1", b"yes", b"true", b"on", b"ON"] {
            assert_eq!(kstrtobool(t), Some(true), "{t:?}");
        }
        for f in [&b"N"[..], b"n\n", b"0", b"no", b"false", b"off", b"Of"] {
            assert_eq!(kstrtobool(f), Some(false), "{f:?}");
        }
        for bad in [&b""[..], b"\n", b"o", b"ox", b"2", b"x"] {
            assert_eq!(kstrtobool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn streq() {
        assert!(sysfs_streq(b"on", "on"));
        assert!(sysfs_streq(b"on\n", "on"));
        assert!(!sysfs_streq(b"on\n\n", "on"));
        assert!(!sysfs_streq(b"on ", "on"));
        assert!(!sysfs_streq(b"o", "on"));
        assert!(!sysfs_streq(b"", "on"));
        assert!(!sysfs_streq(b"On", "on"));
    }
}
