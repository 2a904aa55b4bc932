//! `vzctl chkpnt` (`suspend`) and `vzctl restore` (`resume`): a VE's whole
//! state to a directory of CRIU images and back (`crate::criu`).

use super::{Manager, Outcome};
use crate::config::VeId;
use crate::exitcode::ExitCode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where dumps go (OpenVZ's DUMPDIR), as configs name it.
const DUMP_DIR: &str = "/vz/dump";
/// The file every complete set of CRIU images has.
const INVENTORY: &str = "inventory.img";

impl Manager {
    /// Whether `veid` has a complete dump at its default place.
    pub(super) fn has_dump(&self, veid: VeId) -> bool {
        self.images_dir(veid, None)
            .is_ok_and(|d| d.join(INVENTORY).is_file())
    }

    /// Removes `veid`'s dump at its default place, if any: a fresh start or
    /// a destroy makes it stale (OpenVZ does the same).
    pub(super) fn drop_dump(&self, veid: VeId) {
        if let Ok(d) = self.images_dir(veid, None) {
            if d.join(INVENTORY).is_file() {
                match std::fs::remove_dir_all(&d) {
                    Ok(()) => log::info!("VE {veid}: removed its dump {}", d.display()),
                    Err(e) => log::warn!("VE {veid}: removing its dump {}: {e}", d.display()),
                }
            }
        }
    }

    /// Whether `veid`'s dump at its default place was made by the appliance's
    /// shutdown.
    pub(super) fn dump_at_shutdown(&self, veid: VeId) -> bool {
        self.images_dir(veid, None).is_ok_and(|d| {
            std::fs::read_to_string(d.join(crate::criu::NOTE))
                .is_ok_and(|t| crate::criu::note_at_shutdown(&t))
        })
    }

    /// Sets `veid`'s dump aside (`Dump.<VEID>.failed`, replacing an older
    /// one) after it failed to restore at boot: kept for inspection, and
    /// no longer in the way of a fresh start.
    pub(super) fn set_dump_aside(&self, veid: VeId) -> Option<PathBuf> {
        let d = self.images_dir(veid, None).ok()?;
        let aside = failed_dir(&d);
        let _ = std::fs::remove_dir_all(&aside);
        std::fs::rename(&d, &aside).ok().map(|()| aside)
    }

    /// The images directory of `veid` on disk; `given` (`--dumpfile`) must
    /// be an absolute path under `/vz/dump`: a restore runs CRIU on the
    /// images with the appliance's privileges, so they never come from a
    /// place a VE can write (its private area, its root).
    fn images_dir(&self, veid: VeId, given: Option<&str>) -> Result<PathBuf, Outcome> {
        if let Some(f) = given {
            let p = Path::new(f);
            let plain = p.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
            if !p.starts_with(DUMP_DIR) || p == Path::new(DUMP_DIR) || !plain {
                return Err(Outcome::fail(
                    ExitCode::BadValue,
                    format!(
                        "--dumpfile {f}: give a path under {DUMP_DIR} (e.g. \
                         {DUMP_DIR}/Dump.{veid}), without . or .."
                    ),
                ));
            }
        }
        let dir = crate::criu::images_dir(Path::new(DUMP_DIR), veid.get(), given);
        Ok(self.layout.on_disk(&dir))
    }

    /// Checkpoints a running VE into its images directory; it stops when
    /// the dump is complete, and keeps running if the dump fails.
    pub fn chkpnt(&self, veid: VeId, given: Option<&str>) -> Outcome {
        self.checkpoint(veid, given, false)
    }

    /// [`Manager::chkpnt`]; `at_shutdown` marks the dump as the appliance
    /// shutdown's (VE_STOP_MODE=suspend): the next boot restores it.
    pub(super) fn checkpoint(&self, veid: VeId, given: Option<&str>, at_shutdown: bool) -> Outcome {
        let fail = |m: String| Outcome::fail(ExitCode::ChkpntFailed, m);
        let Some(pid) = self.lock().running.get(&veid).map(|r| r.pid) else {
            return Outcome::fail(ExitCode::NotRunning, format!("VE {veid} is not running"));
        };
        let dir = match self.images_dir(veid, given) {
            Ok(d) => d,
            Err(o) => return o,
        };
        if let Some(Ok(cfg)) = self.config_of(veid) {
            if !cfg.netif.is_empty() || !cfg.netdev.is_empty() {
                return fail(format!(
                    "VE {veid}: a VE with NETIF or NETDEV interfaces cannot be checkpointed yet \
                     (only its routed venet0 is restored); stop it instead"
                ));
            }
        }
        if dir.join(INVENTORY).exists() {
            return fail(format!(
                "VE {veid}: a dump is already at {}: restore it (`vzctl restore {veid}`) or \
                 remove it first",
                dir.display()
            ));
        }
        // A failed attempt's log is kept beside, for inspection.
        let failed = failed_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // The VE's memory goes there: no listing for others. (Not 0700:
        // CRIU opens some images from the restored tasks, as VE root; only
        // the appliance's mount namespaces can reach the path at all.)
        let made = std::fs::create_dir_all(&dir).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        });
        if let Err(e) = made {
            return fail(format!("VE {veid}: creating {}: {e}", dir.display()));
        }
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        // Its init's end is the dump's, not a reboot.
        self.lock().stopping.insert(veid);
        let t0 = std::time::Instant::now();
        let done = crate::criu::run(
            crate::criu::dump_command(pid, &dir, &cg),
            &dir.join(crate::criu::DUMP_LOG),
        );
        if let Err(e) = done {
            self.lock().stopping.remove(&veid);
            let _ = std::fs::remove_dir_all(&failed);
            let kept = std::fs::rename(&dir, &failed).map_or_else(
                |_| dir.display().to_string(),
                |()| failed.display().to_string(),
            );
            log::error!("VE {veid}: checkpoint failed: {e}; its log is in {kept}");
            return fail(format!(
                "Unable to checkpoint VE {veid}: {e}; the VE keeps running (log kept in {kept})"
            ));
        }
        let took = t0.elapsed();
        if let Err(e) = std::fs::write(
            dir.join(crate::criu::NOTE),
            crate::criu::note(veid.get(), pid, at_shutdown),
        ) {
            log::error!(
                "VE {veid}: writing {}: {e}",
                dir.join(crate::criu::NOTE).display()
            );
        }
        // CRIU killed the tree; the watcher cleans up as for a stop.
        if !self.wait_stopped(veid, pid, Duration::from_secs(30)) {
            log::warn!("VE {veid}: init {pid} still tracked 30 s after its dump");
        }
        log::info!(
            "VE {veid}: checkpointed to {} in {} ms",
            dir.display(),
            took.as_millis()
        );
        Outcome::ok(format!(
            "Setting up checkpoint...\n\tsuspend...\n\tdump...\n\tkill...\nCheckpointing completed successfully ({}, {} ms)",
            dir.display(),
            took.as_millis()
        ))
    }

    /// Restores a VE from its images directory, which is removed once the
    /// VE runs again (kept if the restore fails).
    pub fn restore(self: &Arc<Self>, veid: VeId, given: Option<&str>) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(ExitCode::Running, format!("VE {veid} is already running"));
        }
        let dir = match self.images_dir(veid, given) {
            Ok(d) => d,
            Err(o) => return o,
        };
        if !dir.join(INVENTORY).is_file() {
            return Outcome::fail(
                ExitCode::RestoreFailed,
                format!(
                    "VE {veid}: no dump at {} (checkpoint it first with `vzctl chkpnt {veid}`)",
                    dir.display()
                ),
            );
        }
        let note = std::fs::read_to_string(dir.join(crate::criu::NOTE)).unwrap_or_default();
        match crate::criu::parse_note(&note) {
            Some((of, _)) if of == veid.get() => {}
            Some((of, _)) => {
                return Outcome::fail(
                    ExitCode::RestoreFailed,
                    format!("VE {veid}: the dump at {} is of VE {of}", dir.display()),
                )
            }
            None => {
                return Outcome::fail(
                    ExitCode::RestoreFailed,
                    format!(
                        "VE {veid}: the dump at {} has no readable {} (not made by vzctl chkpnt, \
                         or damaged); not restoring it",
                        dir.display(),
                        crate::criu::NOTE
                    ),
                )
            }
        }
        let t0 = std::time::Instant::now();
        let o = self.start_from(veid, false, Some(dir.clone()));
        if o.code != ExitCode::Ok {
            let log = dir.join(crate::criu::RESTORE_LOG);
            return Outcome::fail(
                if o.code == ExitCode::System {
                    ExitCode::RestoreFailed
                } else {
                    o.code
                },
                format!(
                    "{}; the dump is kept in {} (CRIU's log: {})",
                    o.message.replace("Unable to start", "Unable to restore"),
                    dir.display(),
                    log.display()
                ),
            );
        }
        let took = t0.elapsed();
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            log::warn!("VE {veid}: removing the used dump {}: {e}", dir.display());
        }
        log::info!("VE {veid}: restored in {} ms", took.as_millis());
        Outcome::ok(format!(
            "Restoring VE {veid} ...\n\tundump...\n\tresume...\nRestoration completed successfully ({} ms)",
            took.as_millis()
        ))
    }
}

fn failed_dir(dir: &Path) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(".failed");
    PathBuf::from(s)
}
