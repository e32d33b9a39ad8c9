//! Unit tests of the tree model: every file's default, parsing and errors ([`files`]), and the
//! `state` keywords against the fake backend ([`state`]).
mod files;
mod state;

use std::sync::Arc;

use super::fake::FakeBackend;
use super::{AdminError, Tree};
use crate::core::Region;

/// A tree on a fake backend, and a handle to steer the backend.
pub fn tree() -> (Tree, FakeBackend) {
    let fake = FakeBackend::new();
    (Tree::new(Arc::new(fake.clone())), fake)
}

pub fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

pub fn write(tree: &mut Tree, path: &str, input: &str) -> Result<(), AdminError> {
    tree.write(&split(path), input.as_bytes())
}

/// Write that must succeed.
pub fn set(tree: &mut Tree, path: &str, input: &str) {
    if let Err(e) = write(tree, path, input) {
        panic!("writing {input:?} to {path}: {e}");
    }
}

pub fn read(tree: &Tree, path: &str) -> String {
    match tree.read(&split(path)) {
        Ok(s) => s,
        Err(e) => panic!("reading {path}: {e}"),
    }
}

/// The errno of a write that must fail.
pub fn write_errno(tree: &mut Tree, path: &str, input: &str) -> i32 {
    match write(tree, path, input) {
        Ok(()) => panic!("writing {input:?} to {path} succeeded"),
        Err(e) => e.errno(),
    }
}

/// One kdamond with one context, as the seed's example makes.
pub fn one_context(tree: &mut Tree) {
    set(tree, "kdamonds/nr_kdamonds", "1");
    set(tree, "kdamonds/0/contexts/nr_contexts", "1");
}

pub const K: &str = "kdamonds/0";
pub const C: &str = "kdamonds/0/contexts/0";
pub const S: &str = "kdamonds/0/contexts/0/schemes/0";

/// A live region whose moving estimate agrees with its count.
pub fn region(start: u64, end: u64, nr_accesses: u32, age: u32) -> Region {
    Region {
        last_nr_accesses: nr_accesses,
        nr_accesses_bp: nr_accesses * 10_000,
        age,
        ..Region::new(start, end)
    }
}
