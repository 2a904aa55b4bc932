//! Virtual environments: identity, paths, setup and lifecycle.

pub mod caps;
pub mod exec;
pub mod exec_cli;
pub mod manager;
pub mod seccomp;
pub mod setup;
