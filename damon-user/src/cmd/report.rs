//! `damon report`
