//! The building blocks of the tree: the [`Dir`] trait every directory implements, numbered
//! child directories behind an `nr_*` file ([`Numbered`]), and the per-file value parsers
//! with the kernel's error conventions.

use super::error::AdminError;
use super::parse::{self, ParseError};

/// Whether a file has a store method; decides its mode like the kernel's `__ATTR_RW_MODE(x,
/// 0600)` / `__ATTR_RO_MODE(x, 0400)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

impl Access {
    /// Permission bits of a file with this access.
    pub fn mode(self) -> u16 {
        match self {
            Access::ReadWrite => 0o600,
            Access::ReadOnly => 0o400,
        }
    }
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory, mode 0755.
    Dir,
    File(Access),
}

/// Permission bits of every directory of the tree.
pub const DIR_MODE: u16 = 0o755;

/// Directories the whole tree may hold, `admin/` included. A write to an `nr_*` file that
/// would take the tree past this fails with ENOMEM, as the kernel's does when it cannot
/// allocate the directories, and changes nothing; so no count makes the server run out of
/// memory (a tree at the limit with every one of its 215 000 paths looked up takes about
/// 50 MiB). 65536 is far more than DAMON's tools create: a kdamond with a context, 1000
/// targets and a scheme is about 2000.
pub const MAX_DIRS: usize = 1 << 16;

/// One directory of the tree. Values are rendered with the kernel's `sysfs_emit` formats and
/// parsed with its rules; a failed store changes nothing.
///
/// The provided methods describe an empty directory: a leaf directory implements only
/// `files`, `show` and (if it has writable files) `store`.
pub trait Dir: Send {
    /// The files of this directory.
    fn files(&self) -> Vec<(&'static str, Access)> {
        Vec::new()
    }
    /// The names of the subdirectories.
    fn dirs(&self) -> Vec<String> {
        Vec::new()
    }
    fn dir(&self, _name: &str) -> Option<&dyn Dir> {
        None
    }
    fn dir_mut(&mut self, _name: &str) -> Option<&mut dyn Dir> {
        None
    }
    /// Content of file `name`; only called for names listed by [`files`](Self::files).
    fn show(&self, _name: &str) -> String {
        String::new()
    }
    /// Store into writable file `name`; only called for names listed as
    /// [`Access::ReadWrite`].
    fn store(&mut self, name: &str, _input: &[u8]) -> Result<(), AdminError> {
        Err(AdminError::ReadOnly { path: name.into() })
    }
    /// Store into an `nr_*` file, which creates directories: `room` is how many directories
    /// this directory's subtree (itself included) may hold afterwards. Only directories with
    /// `nr_*` files create any; the others store as [`store`](Self::store) does.
    fn store_nr(&mut self, name: &str, input: &[u8], room: usize) -> Result<(), AdminError> {
        let _ = room;
        self.store(name, input)
    }
    /// Directories in this directory's subtree, itself included.
    fn nr_dirs(&self) -> usize {
        1 + self
            .dirs()
            .iter()
            .filter_map(|name| self.dir(name))
            .map(|d| d.nr_dirs())
            .sum::<usize>()
    }
}

/// A directory whose children are `0`..`N-1`, created by writing `N` to its `nr_*` file.
///
/// Writing `N` removes every child and creates `N` fresh ones with default contents, even
/// when `N` equals the current count (the kernel's `*_add_dirs()` start with `*_rm_dirs()`).
pub struct Numbered<T> {
    nr_file: &'static str,
    /// Largest accepted count; `nr_contexts` accepts only 0 or 1.
    max: Option<usize>,
    make: fn() -> T,
    pub items: Vec<T>,
}

impl<T: Dir> Numbered<T> {
    pub fn new(nr_file: &'static str, make: fn() -> T) -> Self {
        Self {
            nr_file,
            max: None,
            make,
            items: Vec::new(),
        }
    }

    /// Limit the count accepted by the `nr_*` file; larger counts are EINVAL.
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = Some(max);
        self
    }

    /// Parse a count for the `nr_*` file: `kstrtoint`, errors as is (ERANGE on overflow),
    /// negative → EINVAL.
    pub fn parse_count(&self, input: &[u8]) -> Result<usize, AdminError> {
        let nr = store_int(self.nr_file, input, OnError::AsIs)?;
        let nr = usize::try_from(nr).map_err(|_| AdminError::Refused {
            file: self.nr_file.to_string(),
            reason: format!("negative count {nr}"),
        })?;
        if let Some(max) = self.max.filter(|&max| nr > max) {
            return Err(AdminError::Refused {
                file: self.nr_file.to_string(),
                reason: format!("{nr} is more than this build supports ({max})"),
            });
        }
        Ok(nr)
    }

    /// Checks that `nr` fresh children fit in `room` directories (this one included):
    /// ENOMEM, naming the count, when they do not.
    pub fn check_room(&self, nr: usize, room: usize) -> Result<(), AdminError> {
        let each = (self.make)().nr_dirs();
        let needed = nr.saturating_mul(each).saturating_add(1);
        if needed > room {
            return Err(AdminError::OutOfMemory {
                file: self.nr_file.to_string(),
                reason: format!(
                    "{nr} new directories of {each} directories each would take the tree past \
                     its limit of {MAX_DIRS} directories"
                ),
            });
        }
        Ok(())
    }

    /// Replace all children with `nr` fresh ones.
    pub fn recreate(&mut self, nr: usize) {
        self.items = (0..nr).map(|_| (self.make)()).collect();
    }
}

/// Index of a numbered child directory: the kernel names them `"%d"`, so only canonical
/// decimal names exist (`01` or `+1` do not).
pub fn child_index(name: &str) -> Option<usize> {
    let idx: usize = name.parse().ok()?;
    (idx.to_string() == name).then_some(idx)
}

impl<T: Dir> Dir for Numbered<T> {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![(self.nr_file, Access::ReadWrite)]
    }

    fn dirs(&self) -> Vec<String> {
        (0..self.items.len()).map(|i| i.to_string()).collect()
    }

    fn dir(&self, name: &str) -> Option<&dyn Dir> {
        child_index(name)
            .and_then(|i| self.items.get(i))
            .map(|d| d as &dyn Dir)
    }

    fn dir_mut(&mut self, name: &str) -> Option<&mut dyn Dir> {
        child_index(name)
            .and_then(|i| self.items.get_mut(i))
            .map(|d| d as &mut dyn Dir)
    }

    fn show(&self, _name: &str) -> String {
        format!("{}\n", self.items.len())
    }

    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        self.store_nr(name, input, MAX_DIRS)
    }

    fn store_nr(&mut self, _name: &str, input: &[u8], room: usize) -> Result<(), AdminError> {
        let nr = self.parse_count(input)?;
        self.check_room(nr, room)?;
        self.recreate(nr);
        Ok(())
    }

    fn nr_dirs(&self) -> usize {
        1 + self.items.iter().map(Dir::nr_dirs).sum::<usize>()
    }
}

/// What a store reports for input its parser rejects. Kernel store functions differ here:
/// some `return err` (so ERANGE reaches the writer), others `return -EINVAL` for everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Pass the parser's error on: EINVAL or ERANGE.
    AsIs,
    /// Report every parse failure as EINVAL.
    Einval,
}

fn parse_error(file: &str, input: &[u8], e: ParseError, on_error: OnError) -> AdminError {
    let file = file.to_string();
    let input = String::from_utf8_lossy(input).into_owned();
    match (e, on_error) {
        (ParseError::Overflow, OnError::AsIs) => AdminError::OutOfRange { file, input },
        _ => AdminError::InvalidValue { file, input },
    }
}

/// A `kstrtoul` store.
pub fn store_ul(file: &str, input: &[u8], on_error: OnError) -> Result<u64, AdminError> {
    parse::kstrtoull(input).map_err(|e| parse_error(file, input, e, on_error))
}

/// A `kstrtouint` store.
pub fn store_uint(file: &str, input: &[u8], on_error: OnError) -> Result<u32, AdminError> {
    parse::kstrtouint(input).map_err(|e| parse_error(file, input, e, on_error))
}

/// A `kstrtoint` store.
pub fn store_int(file: &str, input: &[u8], on_error: OnError) -> Result<i32, AdminError> {
    parse::kstrtoint(input).map_err(|e| parse_error(file, input, e, on_error))
}

/// A `kstrtobool` store (always EINVAL on failure).
pub fn store_bool(file: &str, input: &[u8]) -> Result<bool, AdminError> {
    parse::kstrtobool(input).ok_or_else(|| AdminError::InvalidValue {
        file: file.to_string(),
        input: String::from_utf8_lossy(input).into_owned(),
    })
}

/// A keyword store: the first entry of `table` whose word `sysfs_streq`-matches the input.
pub fn store_keyword<T: Copy>(
    file: &str,
    input: &[u8],
    table: &[(T, &'static str)],
) -> Result<T, AdminError> {
    table
        .iter()
        .find(|(_, word)| parse::sysfs_streq(input, word))
        .map(|&(value, _)| value)
        .ok_or_else(|| AdminError::UnknownKeyword {
            file: file.to_string(),
            input: String::from_utf8_lossy(input).into_owned(),
            accepted: table.iter().map(|(_, w)| *w).collect::<Vec<_>>().join(", "),
        })
}

/// The word of `value` in `table`, for `show`.
pub fn keyword<T: PartialEq>(value: T, table: &[(T, &'static str)]) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("", |(_, w)| w)
}

/// `sysfs_emit(buf, "%lu\n", v)` and friends.
pub fn line(v: impl std::fmt::Display) -> String {
    format!("{v}\n")
}

/// `sysfs_emit(buf, "%c\n", v ? 'Y' : 'N')`.
pub fn yes_no(v: bool) -> String {
    line(if v { 'Y' } else { 'N' })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_are_canonical() {
        assert_eq!(child_index("0"), Some(0));
        assert_eq!(child_index("12"), Some(12));
        assert_eq!(child_index("01"), None);
        assert_eq!(child_index("+1"), None);
        assert_eq!(child_index("-1"), None);
        assert_eq!(child_index(""), None);
    }

    #[test]
    fn keyword_table() {
        let table = [(1, "one"), (2, "two")];
        assert_eq!(store_keyword("f", b"two\n", &table).unwrap(), 2);
        let err = store_keyword("f", b"three", &table).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert!(err.to_string().contains("three"), "{err}");
        assert_eq!(keyword(1, &table), "one");
    }

    #[test]
    fn error_conventions() {
        let big = b"99999999999999999999999";
        assert_eq!(
            store_ul("f", big, OnError::AsIs).unwrap_err().errno(),
            libc::ERANGE
        );
        assert_eq!(
            store_ul("f", big, OnError::Einval).unwrap_err().errno(),
            libc::EINVAL
        );
        assert_eq!(
            store_int("f", b"abc", OnError::AsIs).unwrap_err().errno(),
            libc::EINVAL
        );
    }
}

/// `[min, max]` directory of unsigned longs (`nr_regions/`, the access pattern ranges). Its
/// stores report every parse failure as EINVAL, as the kernel's `damon_sysfs_ul_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UlRangeDir {
    pub min: u64,
    pub max: u64,
}

impl Dir for UlRangeDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        vec![("min", Access::ReadWrite), ("max", Access::ReadWrite)]
    }
    fn show(&self, name: &str) -> String {
        line(if name == "min" { self.min } else { self.max })
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        let v = store_ul(name, input, OnError::Einval)?;
        if name == "min" {
            self.min = v;
        } else {
            self.max = v;
        }
        Ok(())
    }
}
