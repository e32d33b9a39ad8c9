//! `damon record`
