//! DAMON admin tree (sysfs ABI) model and its FUSE server.
