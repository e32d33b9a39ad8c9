//! The guest's results channel (ttyS1): `@@vm TAG key=value ...` lines and files framed by
//! `@@vm begin NAME` / `@@vm end NAME`.
use std::collections::BTreeMap;

const PREFIX: &str = "@@vm ";

#[derive(Default)]
pub struct Results {
    /// Result lines by tag, in order: the words after the tag.
    lines: Vec<(String, String)>,
    pub files: BTreeMap<String, String>,
}

impl Results {
    pub fn parse(text: &str) -> Self {
        let mut r = Results::default();
        let mut open: Option<(String, String)> = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some((name, body)) = &mut open {
                if line
                    .strip_prefix(PREFIX)
                    .and_then(|l| l.strip_prefix("end "))
                    == Some(name.as_str())
                {
                    let (name, mut body) = open.take().unwrap_or_default();
                    if body.ends_with("\n\n") {
                        body.pop();
                    }
                    r.files.insert(name, body);
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
                continue;
            }
            let Some(rest) = line.strip_prefix(PREFIX) else {
                continue;
            };
            if let Some(name) = rest.strip_prefix("begin ") {
                open = Some((name.to_string(), String::new()));
                continue;
            }
            let (tag, words) = rest.split_once(' ').unwrap_or((rest, ""));
            r.lines.push((tag.to_string(), words.to_string()));
        }
        r
    }

    /// The words of the first line tagged `tag`.
    pub fn line(&self, tag: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, w)| w.as_str())
    }

    /// The words of every line tagged `tag`.
    pub fn all(&self, tag: &str) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |(t, _)| t == tag)
            .map(|(_, w)| w.as_str())
    }

    /// `key=value` from the first line tagged `tag`.
    pub fn get(&self, tag: &str, key: &str) -> Option<&str> {
        field(self.line(tag)?, key)
    }

    pub fn file(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(String::as_str)
    }
}

/// The value of `key=` among whitespace-separated words.
pub fn field<'a>(words: &'a str, key: &str) -> Option<&'a str> {
    words
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// `0xA-0xB` as (A, B).
pub fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    let hex = |x: &str| u64::from_str_radix(x.trim().trim_start_matches("0x"), 16).ok();
    Some((hex(a)?, hex(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_files() {
        let text = "noise\n@@vm boot release=6.1.0 uptime=2.5\n@@vm begin record\n[1,\n2]\n\n@@vm end record\n\
                    @@vm check rc=0\n@@vm done\n";
        let r = Results::parse(text);
        assert_eq!(r.get("boot", "release"), Some("6.1.0"));
        assert_eq!(r.get("check", "rc"), Some("0"));
        assert_eq!(r.file("record"), Some("[1,\n2]\n"));
        assert!(r.line("done").is_some());
        assert_eq!(parse_range("0x10-0x20"), Some((16, 32)));
    }
}
