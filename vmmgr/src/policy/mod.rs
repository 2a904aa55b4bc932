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

use std::path::Path;

/// What every process of a VE runs under, read from the policy files before
/// anything of the VE is touched (inside it the appliance's files are out of
/// reach): the VE init (`crate::setup`) and each `vzctl exec` (`crate::cli`).
#[derive(Debug)]
pub struct ProcessPolicy {
    /// Capabilities the VE keeps in its bounding set.
    pub keep_caps: Vec<u32>,
    /// The VE's syscall filter, compiled.
    pub seccomp: seccomp::Program,
}

impl ProcessPolicy {
    /// Reads `capabilities` and `seccomp` of `dir` (with the rules for
    /// `nested` namespaces); errors name file and line.
    pub fn load(dir: &Path, nested: seccomp::NestedNamespaces) -> Result<ProcessPolicy, String> {
        let path = dir.join("capabilities");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let keep_caps = caps::parse_keep_list(&text).map_err(|(line, name)| {
            format!("{}:{line}: unknown capability {name:?}", path.display())
        })?;
        let seccomp = seccomp::load(dir, nested).map_err(|e| e.to_string())?;
        Ok(ProcessPolicy { keep_caps, seccomp })
    }
}

/// The nested-namespace rules of a VE whose CHECKPOINT is `checkpoint`.
pub fn nested_for(checkpoint: bool) -> seccomp::NestedNamespaces {
    if checkpoint {
        seccomp::NestedNamespaces::Deny
    } else {
        seccomp::NestedNamespaces::Allow
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_process_policy_loads_and_a_bad_one_is_named() {
        let dir = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../rootfs/etc/vzpolicy"
        ));
        let p = super::ProcessPolicy::load(dir, super::seccomp::NestedNamespaces::Deny)
            .expect("shipped policy");
        assert!(
            p.keep_caps.contains(&21),
            "SYS_ADMIN is kept in the VE's namespaces"
        );
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("capabilities"), "CHOWN\nNOT_A_CAP\n").expect("write");
        let e = super::ProcessPolicy::load(d.path(), super::seccomp::NestedNamespaces::Allow)
            .expect_err("bad cap");
        assert!(
            e.contains("capabilities:2") && e.contains("NOT_A_CAP"),
            "{e}"
        );
    }
}
