//! damo-compatible record files.
