//! `schemes/N/{filters,core_filters,ops_filters}/M/`: DAMOS filters.
//!
//! Stored as written; `on`/`commit` turns them into the core's [`Filter`]s
//! (`admin::config`).
//!
//! [`Filter`]: crate::core::scheme::Filter

use crate::admin::error::AdminError;
use crate::admin::node::{
    Access, Dir, OnError, line, store_bool, store_int, store_keyword, store_ul, yes_no,
};
pub use crate::core::scheme::FilterType;

/// Which filter types a filters directory accepts: `core_filters/` only core types,
/// `ops_filters/` only operations-set types, the older `filters/` both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Both,
    Core,
    Ops,
}

/// One DAMOS filter directory. Defaults are the kernel's `kzalloc()`: type `anon`, not
/// matching, not allowing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterDir {
    pub layer: Layer,
    pub filter_type: FilterType,
    pub matching: bool,
    pub allow: bool,
    /// Stored verbatim, newline included, as the kernel's `memcg_path_store()` does.
    pub memcg_path: String,
    pub addr_start: u64,
    pub addr_end: u64,
    pub damon_target_idx: i32,
    pub min: u64,
    pub max: u64,
}

impl FilterDir {
    pub fn new(layer: Layer) -> Self {
        Self {
            layer,
            filter_type: FilterType::Anon,
            matching: false,
            allow: false,
            memcg_path: String::new(),
            addr_start: 0,
            addr_end: 0,
            damon_target_idx: 0,
            min: 0,
            max: 0,
        }
    }

    fn accepts(&self, t: FilterType) -> bool {
        match self.layer {
            Layer::Both => true,
            Layer::Core => t.is_core(),
            Layer::Ops => !t.is_core(),
        }
    }
}

impl Dir for FilterDir {
    fn files(&self) -> Vec<(&'static str, Access)> {
        [
            "type",
            "matching",
            "allow",
            "memcg_path",
            "addr_start",
            "addr_end",
            "damon_target_idx",
            "min",
            "max",
        ]
        .map(|f| (f, Access::ReadWrite))
        .to_vec()
    }
    fn show(&self, name: &str) -> String {
        match name {
            "type" => line(self.filter_type.as_str()),
            "matching" => yes_no(self.matching),
            "allow" => yes_no(self.allow),
            "memcg_path" => line(&self.memcg_path),
            "addr_start" => line(self.addr_start),
            "addr_end" => line(self.addr_end),
            "damon_target_idx" => line(self.damon_target_idx),
            "min" => line(self.min),
            _ => line(self.max),
        }
    }
    fn store(&mut self, name: &str, input: &[u8]) -> Result<(), AdminError> {
        match name {
            "type" => {
                let t = store_keyword(name, input, FilterType::NAMES)?;
                if !self.accepts(t) {
                    return Err(AdminError::Refused {
                        file: name.into(),
                        reason: format!(
                            "filter type {} does not belong in this directory",
                            t.as_str()
                        ),
                    });
                }
                self.filter_type = t;
            }
            "matching" => self.matching = store_bool(name, input)?,
            "allow" => self.allow = store_bool(name, input)?,
            "memcg_path" => {
                self.memcg_path =
                    String::from_utf8_lossy(crate::admin::parse::c_str(input)).into_owned()
            }
            "addr_start" => self.addr_start = store_ul(name, input, OnError::AsIs)?,
            "addr_end" => self.addr_end = store_ul(name, input, OnError::AsIs)?,
            "damon_target_idx" => self.damon_target_idx = store_int(name, input, OnError::AsIs)?,
            "min" => self.min = store_ul(name, input, OnError::AsIs)?,
            _ => self.max = store_ul(name, input, OnError::AsIs)?,
        }
        Ok(())
    }
}
