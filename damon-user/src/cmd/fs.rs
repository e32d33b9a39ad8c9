//! `damon fs`
