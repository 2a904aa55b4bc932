//! Virtual environments: identity, paths, setup and lifecycle.

pub mod cgroup;
pub mod join;
pub mod manager;
