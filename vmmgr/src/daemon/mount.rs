//! `vzctl mount`/`umount`: the appliance-side view of a stopped VE at
//! `/vz/root/<VEID>` (nosuid, nodev).

use super::create::make_private;
use super::{Manager, Outcome};
use crate::config::VeId;
use crate::exitcode::ExitCode;
use std::path::PathBuf;

impl Manager {
    pub(super) fn mount(&self, veid: VeId) -> Outcome {
        if self.is_running(veid) || self.lock().mounted.contains(&veid) {
            return Outcome::fail(ExitCode::Mounted, format!("VE {veid} is already mounted"));
        }
        let cfg = match self.valid_config(veid) {
            Ok(c) => c,
            Err(o) => return o,
        };
        // Processes of the VE that vmmgr does not track still use its private
        // area: a second overlay on it would corrupt it.
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        if crate::daemon::cgroup::populated(&cg).unwrap_or(true) {
            return Outcome::fail(
                ExitCode::Running,
                format!(
                    "VE {veid}: processes still run in {}: not mounting it",
                    cg.display()
                ),
            );
        }
        let lower = match self.lower(&cfg) {
            Ok((l, _)) => l,
            Err(o) => return o,
        };
        let private = self.layout.on_disk(&cfg.ve_private);
        let root = self.layout.on_disk(&cfg.ve_root);
        if let Err(o) = make_private(&private, false, veid) {
            return o;
        }
        let _ = std::fs::create_dir_all(&root);
        // On the appliance side files are seen unshifted: VE root's files as
        // root, as OpenVZ administrators see /vz/root/<VEID>. So a setuid file
        // made in the VE would be setuid root here: nosuid, and nodev. The
        // VE's overlay keeps its markers in user.overlay.* (userxattr): so
        // must this one, or it would show what the VE deleted.
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            lower.display(),
            private.join("upper").display(),
            private.join("work").display()
        );
        let c = std::ffi::CString::new(opts).unwrap_or_default();
        match rustix::mount::mount(
            "overlay",
            &root,
            "overlay",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(c.as_c_str()),
        ) {
            Ok(()) => {
                self.lock().mounted.insert(veid);
                Outcome::ok(format!("VE {veid} is mounted at {}", cfg.ve_root.display()))
            }
            Err(e) => Outcome::fail(
                ExitCode::MountFailed,
                format!(
                    "Unable to mount VE {veid} at {}: {e}",
                    cfg.ve_root.display()
                ),
            ),
        }
    }

    pub(super) fn umount(&self, veid: VeId) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(
                ExitCode::Running,
                format!("VE {veid} is running: stop it to unmount"),
            );
        }
        if !self.lock().mounted.contains(&veid) {
            return Outcome::fail(ExitCode::NotMounted, format!("VE {veid} is not mounted"));
        }
        let root = self
            .config_of(veid)
            .and_then(|c| c.ok())
            .map_or(PathBuf::from(format!("/vz/root/{veid}")), |c| c.ve_root);
        let root = self.layout.on_disk(&root);
        match rustix::mount::unmount(&root, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => {
                self.lock().mounted.remove(&veid);
                Outcome::ok(format!("VE {veid} is unmounted"))
            }
            Err(e) => Outcome::fail(
                ExitCode::UmountFailed,
                format!(
                    "Unable to unmount {}: {e} (is a shell using it?)",
                    root.display()
                ),
            ),
        }
    }
}
