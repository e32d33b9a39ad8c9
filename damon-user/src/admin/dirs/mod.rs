//! The directories of the admin tree, one type per directory (named `…Dir`), each a [`Dir`]
//! with the kernel's files, defaults, modes and errno. They only stage values:
//! [`super::config`] turns a kdamond's staged directories into the core's vocabulary at
//! `on`/`commit`.
//!
//! - [`kdamond`]: `kdamonds/` and `kdamonds/N/`, the `state` keywords.
//! - [`context`]: `contexts/N/`: operations, monitoring attributes, targets and their regions.
//! - [`scheme`]: `schemes/N/`: action, access pattern, `stats/`, `tried_regions/`.
//! - [`quotas`]: a scheme's `quotas/` and `watermarks/`; [`filters`]: its filters.
//!
//! [`Dir`]: super::node::Dir
pub mod context;
pub mod filters;
pub mod kdamond;
pub mod quotas;
pub mod scheme;
