//! Virtual environments: identity, paths, setup and lifecycle.

pub mod join;
pub mod manager;
