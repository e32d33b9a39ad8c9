//! How errors are printed.
//!
//! The convention of this crate's errors: a message describes its own layer only, and the
//! error it wraps is reachable through [`source()`](Error::source), never repeated in the
//! message (or the variant is `#[error(transparent)]` and adds no layer). [`Chain`] prints an
//! error with all its causes; the CLI, the admin tree's log and a kdamond's exit reason all go
//! through it.
use std::{error::Error, fmt};

/// An error and its causes, `": "`-separated: `outer: cause: root cause`.
///
/// Each error of the chain is printed as it is, except the source of an aya 0.14 error whose
/// message already shows it (`EbpfError`'s `map error: {0}` and its kin, the `LoadError`s
/// that print their `io::Error`): that source is left out, its own causes are not.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut above = self.0;
        write!(f, "{above}")?;
        while let Some(cause) = above.source() {
            if !(repeats_its_source(above) && above.to_string().contains(&cause.to_string())) {
                write!(f, ": {cause}")?;
            }
            above = cause;
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The aya 0.14 errors whose message contains their source, which they also return from
/// `source()`: `EbpfError`'s `map error: {0}` and its kin, and the `LoadError`s that print the
/// `io::Error` (with the verifier's output). The chain shows that source once.
fn repeats_its_source(e: &(dyn Error + 'static)) -> bool {
    if let Some(e) = e.downcast_ref::<aya::EbpfError>() {
        return matches!(
            e,
            aya::EbpfError::ParseError(_)
                | aya::EbpfError::BtfError(_)
                | aya::EbpfError::MapError(_)
                | aya::EbpfError::ProgramError(_)
        );
    }
    if let Some(e) = e.downcast_ref::<aya::programs::ProgramError>() {
        return matches!(e, aya::programs::ProgramError::LoadError { .. });
    }
    if let Some(e) = e.downcast_ref::<aya::BtfError>() {
        return matches!(e, aya::BtfError::LoadError { .. });
    }
    false
}

