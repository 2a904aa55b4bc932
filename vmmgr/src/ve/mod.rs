//! Virtual environments: identity, paths, setup and lifecycle.

pub mod caps;
pub mod setup;
