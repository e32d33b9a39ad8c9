//! Reports over records and live snapshots.
