//! `damon top`
