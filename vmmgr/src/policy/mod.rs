//! The reviewed policy files of `/etc/vzpolicy` (sources in
//! `rootfs/etc/vzpolicy/`): what a VE may keep and what is hidden from it.
//! Each file has one parser here that names file and line on an error; the
//! image build parses the shipped files too (the unit tests below), so a bad
//! policy never reaches an appliance.
//!
//! - `capabilities`: the bounding set of every VE process (`caps`);
//! - `seccomp`: the syscall filter (`seccomp`);
//! - `masked-paths`, `readonly-paths`: /proc and /sys paths hidden or made
//!   read-only in every VE (`paths`).

pub mod caps;
pub mod paths;
pub mod seccomp;

/// Where the appliance keeps the policy files.
pub const POLICY_DIR: &str = "/etc/vzpolicy";
