//! `vzctl destroy`: removes a VE's private area (only ever a confined one)
//! and moves its config aside.

use super::{Manager, Outcome};
use crate::config::{self, VeId};
use crate::exitcode::ExitCode;
use std::path::PathBuf;

impl Manager {
    pub(super) fn destroy(&self, veid: VeId) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(
                ExitCode::Running,
                format!("VE {veid} is running: stop it first (vzctl stop {veid})"),
            );
        }
        if self.lock().mounted.contains(&veid) {
            return Outcome::fail(
                ExitCode::Mounted,
                format!("VE {veid} is mounted: unmount it first (vzctl umount {veid})"),
            );
        }
        let path = self.conf_path(veid);
        let configured = match self.config_of(veid) {
            Some(Ok(c)) => c.ve_private,
            _ => PathBuf::from(format!("/vz/private/{veid}")),
        };
        // Only ever a VE private area under /vz/private, and never through a
        // symlink (remove_dir_all does not follow links inside either).
        let private = match config::confine_private(&configured) {
            Ok(p) => self.layout.on_disk(&p),
            Err(e) => {
                return Outcome::fail(
                    ExitCode::DeleteFailed,
                    format!(
                        "VE {veid}: refusing to remove {}: {e}; only a private area under \
                         /vz/private is ever removed",
                        configured.display()
                    ),
                )
            }
        };
        let is_dir = std::fs::symlink_metadata(&private).map(|m| m.file_type());
        if is_dir.as_ref().is_ok_and(|t| !t.is_dir()) {
            return Outcome::fail(
                ExitCode::DeleteFailed,
                format!(
                    "VE {veid}: {} is not a directory (a symlink?): refusing to remove it",
                    private.display()
                ),
            );
        }
        if crate::daemon::cgroup::populated(&crate::daemon::cgroup::dir(
            &self.layout.cgroup_root,
            veid,
        ))
        .unwrap_or(true)
        {
            return Outcome::fail(
                ExitCode::Running,
                format!("VE {veid}: processes still run in its cgroup: not removing its files"),
            );
        }
        if !path.exists() && !private.exists() {
            return Outcome::fail(ExitCode::ConfNotFound, format!("VE {veid} does not exist"));
        }
        if private.exists() {
            if let Err(e) = std::fs::remove_dir_all(&private) {
                return Outcome::fail(
                    ExitCode::DeleteFailed,
                    format!("removing {}: {e}", private.display()),
                );
            }
        }
        // Its checkpoint is of files that are gone.
        self.drop_dump(veid);
        let mut destroyed = path.clone().into_os_string();
        destroyed.push(".destroyed");
        if path.exists() {
            if let Err(e) = std::fs::rename(&path, &destroyed) {
                return Outcome::fail(
                    ExitCode::DeleteFailed,
                    format!("moving {} aside: {e}", path.display()),
                );
            }
        }
        self.reload();
        Outcome::ok("Destroying VE private area\nVE private area was destroyed")
    }
}
