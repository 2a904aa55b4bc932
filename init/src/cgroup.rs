//! cgroup v2 set-up: every available controller enabled down to the VE subtree.

use std::path::{Path, PathBuf};

/// The subtree that holds one cgroup per VE (`vz/<VEID>`).
pub const VE_SUBTREE: &str = "vz";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn read(path: PathBuf) -> Result<String, CgroupError> {
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

/// The appliance's own services (init, vmmgr, the console and what they
/// run): a sibling of [`VE_SUBTREE`], so VE load competes with them as one
/// group, whatever the number of VEs (vmmgr sets its `cpu.weight` from
/// `VE0CPUUNITS`).
pub const APPLIANCE: &str = "appliance";

/// Memory never reclaimed from the appliance's services for VEs' sake.
pub const APPLIANCE_MEMORY_MIN: u64 = 64 << 20;

/// Makes the appliance's group with its memory floor and moves every
/// process of the root group into it (init first; kernel threads stay).
pub fn appliance_group(root: &Path) -> Result<(), CgroupError> {
    let dir = root.join(APPLIANCE);
    if !dir.exists() {
        std::fs::create_dir(&dir).map_err(|source| CgroupError::Create {
            path: dir.clone(),
            source,
        })?;
    }
    if let Err(e) = std::fs::write(dir.join("memory.min"), APPLIANCE_MEMORY_MIN.to_string()) {
        log::warn!("cgroup: no memory floor for the appliance: {e}");
    }
    let procs = read(root.join("cgroup.procs"))?;
    for pid in procs.lines() {
        // Kernel threads refuse to move (EINVAL): they stay in the root.
        let _ = std::fs::write(dir.join("cgroup.procs"), pid.trim());
    }
    Ok(())
}

/// Turns `"cpu io memory"` into `"+cpu +io +memory"`.
pub fn enable_line(controllers: &str) -> String {
    controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Enables every controller listed in `<root>/cgroup.controllers` for the root's
/// children and again inside `<root>/vz`, so each VE cgroup can use them all.
/// Returns the controllers enabled for the VE subtree.
pub fn enable_all(root: &Path) -> Result<String, CgroupError> {
    let available = read(root.join("cgroup.controllers"))?;
    let line = enable_line(&available);
    let mut levels = vec![root.to_owned()];
    let ve = root.join(VE_SUBTREE);
    if !ve.exists() {
        std::fs::create_dir(&ve).map_err(|source| CgroupError::Create {
            path: ve.clone(),
            source,
        })?;
    }
    levels.push(ve.clone());
    for dir in levels {
        let path = dir.join("cgroup.subtree_control");
        // Written one controller at a time: a controller the kernel refuses at one
        // level (for example one that needs a real-time budget) must not keep the
        // others off.
        for one in line.split_whitespace() {
            if let Err(source) = std::fs::write(&path, one) {
                log::warn!(
                    "cgroup: could not enable {one} in {}: {source}",
                    path.display()
                );
            }
        }
    }
    Ok(read(ve.join("cgroup.subtree_control"))?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_line_prefixes_each_controller() {
        assert_eq!(enable_line("cpuset cpu io\n"), "+cpuset +cpu +io");
        assert_eq!(enable_line(""), "");
    }

    #[test]
    fn enables_controllers_at_root_and_ve_subtree() {
        // On a plain directory the writes simply land in files; this proves the
        // order and the paths, the real kernel semantics are tested in qemu-tests.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").expect("write");
        let enabled = enable_all(dir.path()).expect("enable");
        // A plain file keeps only the last write.
        assert_eq!(enabled, "+pids");
        assert!(dir.path().join("vz").is_dir());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.subtree_control")).expect("read"),
            "+pids"
        );
    }

    #[test]
    fn appliance_group_takes_the_root_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cgroup.procs"), "1\n42\n").expect("procs");
        appliance_group(dir.path()).expect("made");
        let g = dir.path().join(APPLIANCE);
        // A plain file keeps only the last write; the kernel's takes each pid.
        assert_eq!(
            std::fs::read_to_string(g.join("cgroup.procs")).expect("read"),
            "42"
        );
        assert_eq!(
            std::fs::read_to_string(g.join("memory.min")).expect("read"),
            (64u64 << 20).to_string()
        );
    }

    #[test]
    fn missing_controllers_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = enable_all(dir.path()).expect_err("must fail");
        assert!(err.to_string().contains("cgroup.controllers"), "{err}");
    }
}
