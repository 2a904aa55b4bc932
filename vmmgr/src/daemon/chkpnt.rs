//! `vzctl chkpnt` (`suspend`) and `vzctl restore` (`resume`): a VE's whole
//! state to a directory of CRIU images and back (`crate::criu`).
//!
//! Names under `/vz/dump` (appliance root's alone, 0700): `Dump.<VEID>`
//! is a complete dump (vmmgr's note `vz.dump` names its VE); `.failed` is
//! a dump CRIU could not finish (its log); `.used` is a dump the VE ran
//! from, never restored again (it would run old memory over newer files);
//! `.notrestored` is a complete dump that failed to restore at boot.

use super::{Configs, Manager, Outcome};
use crate::config::VeId;
use crate::exitcode::ExitCode;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where dumps go (OpenVZ's DUMPDIR), as configs name it.
pub(super) const DUMP_DIR: &str = "/vz/dump";
/// Suffixes of dumps never restored (see the top of this file).
const RESERVED: [&str; 3] = [".failed", ".used", ".notrestored"];
/// The file every complete set of CRIU images has.
const INVENTORY: &str = "inventory.img";

/// What [`Manager::checkpointable`] found: the VE's id range's start, and
/// the in-VE name of each bridged pair's end with its appliance end's name.
pub(super) struct Dumpable {
    pub ids: (u32, u32),
    pub veths: Vec<(String, String)>,
    /// Its masks, external to CRIU (`criu::mask_mounts`).
    pub masks: Vec<String>,
}

impl Manager {
    /// Whether `veid` has a complete dump of its own at its default place.
    pub(super) fn has_dump(&self, veid: VeId) -> bool {
        self.images_dir(veid, None)
            .is_ok_and(|d| d.join(INVENTORY).is_file() && note_of(&d).0 == Some(veid.get()))
    }

    /// Removes `veid`'s dump at its default place, if any: a fresh start or
    /// a destroy makes it stale (OpenVZ does the same).
    pub(super) fn drop_dump(&self, veid: VeId) {
        // Every restorable one: its own and any `--dumpfile` that names it.
        let top = self.layout.on_disk(Path::new(DUMP_DIR));
        let Ok(entries) = std::fs::read_dir(&top) else {
            return;
        };
        for e in entries.flatten() {
            let d = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let restorable = !RESERVED.iter().any(|s| name.ends_with(s))
                && e.file_type().is_ok_and(|t| t.is_dir())
                && d.join(INVENTORY).is_file()
                && note_of(&d).0 == Some(veid.get());
            if restorable {
                match std::fs::remove_dir_all(&d) {
                    Ok(()) => log::info!("VE {veid}: removed its stale dump {}", d.display()),
                    Err(e) => log::warn!("VE {veid}: removing its dump {}: {e}", d.display()),
                }
            }
        }
    }

    /// Whether `veid`'s dump at its default place was made by the appliance's
    /// shutdown.
    pub(super) fn dump_at_shutdown(&self, veid: VeId) -> bool {
        self.has_dump(veid) && self.images_dir(veid, None).is_ok_and(|d| note_of(&d).1)
    }

    /// Sets `veid`'s dump aside (`Dump.<VEID>.notrestored`, replacing an
    /// older one) after it failed to restore at boot: kept for inspection,
    /// and no longer in the way of a fresh start.
    pub(super) fn set_dump_aside(&self, veid: VeId) -> Option<PathBuf> {
        let d = self.images_dir(veid, None).ok()?;
        let aside = suffixed(&d, "notrestored");
        let _ = std::fs::remove_dir_all(&aside);
        std::fs::rename(&d, &aside).ok().map(|()| aside)
    }

    /// The images directory of `veid` on disk. `given` (`--dumpfile`) must
    /// name a directory right under `/vz/dump`: a restore runs CRIU on the
    /// images with the appliance's privileges, so they never come from a
    /// place a VE can write; and `Dump.<VEID>` names only that VE's.
    fn images_dir(&self, veid: VeId, given: Option<&str>) -> Result<PathBuf, Outcome> {
        if let Some(f) = given {
            let name = Path::new(f)
                .strip_prefix(DUMP_DIR)
                .ok()
                .and_then(|r| r.to_str())
                .unwrap_or("");
            let plain = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            let others = name.starts_with("Dump.") && name != format!("Dump.{veid}");
            let reserved = RESERVED.iter().any(|s| name.ends_with(s));
            if !plain || others || reserved {
                return Err(Outcome::fail(
                    ExitCode::BadValue,
                    format!(
                        "--dumpfile {f}: give {DUMP_DIR}/NAME, NAME of letters, digits, '.', \
                         '-' and '_' (not Dump.<another VEID>, not ending in .failed, .used \
                         or .notrestored), e.g. {DUMP_DIR}/Dump.{veid}"
                    ),
                ));
            }
        }
        let dir = crate::criu::images_dir(Path::new(DUMP_DIR), veid.get(), given);
        Ok(self.layout.on_disk(&dir))
    }

    /// What CRIU cannot bring back as it was, said before anything is
    /// frozen: `Err` says why running VE `veid` (init `pid`) cannot be
    /// checkpointed and what to do; `Ok` has its id range's start.
    pub(super) fn checkpointable(&self, veid: VeId, pid: i32) -> Result<Dumpable, String> {
        let started_for_it = self.lock().running.get(&veid).is_some_and(|r| r.checkpoint);
        let (ids, veths) = match self.config_of(veid) {
            Some(Ok(cfg)) if cfg.netdev.is_empty() => {
                let netif: Vec<_> = cfg.netif.iter().map(|n| n.filled(veid.get())).collect();
                let veths = crate::criu::veths_of(pid, &netif)
                    .map_err(|e| format!("VE {veid}: {e}; it cannot be checkpointed"))?;
                ((cfg.local_uid, cfg.local_gid), veths)
            }
            Some(Ok(_)) => {
                return Err(format!(
                    "VE {veid}: a VE with NETDEV interfaces cannot be checkpointed (the \
                     appliance's device would have to be given back and taken again); stop it \
                     instead"
                ))
            }
            _ => {
                return Err(format!(
                    "VE {veid}: its config is missing or invalid (see `vzlist -a`); fix it \
                     before checkpointing"
                ))
            }
        };
        if !started_for_it {
            return Err(format!(
                "VE {veid} was started with CHECKPOINT=\"no\" (it may make namespaces of its \
                 own, which CRIU cannot dump): `vzctl set {veid} --checkpoint yes --save` and \
                 restart it, or stop it instead"
            ));
        }
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        crate::criu::own_namespaces(&cg, pid).map_err(|why| {
            format!("VE {veid}: {why}; it cannot be checkpointed, stop it instead")
        })?;
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        let stray = crate::criu::stray_kernfs(&info);
        if !stray.is_empty() {
            return Err(format!(
                "VE {veid}: proc or sysfs is mounted outside /proc and /sys ({}), which a \
                 restore cannot lock; unmount it in the VE first",
                stray.join(", ")
            ));
        }
        let undumpable = crate::criu::undumpable_mounts(&info);
        if !undumpable.is_empty() {
            return Err(format!(
                "VE {veid}: CRIU cannot save what is mounted at {} (a systemd unit with \
                 LoadCredential= mounts one: reset it in a drop-in, as the debian-12 templates \
                 do); unmount it or stop that unit in the VE first",
                undumpable.join(", ")
            ));
        }
        Ok(Dumpable {
            ids,
            veths,
            masks: crate::criu::mask_mounts(&info),
        })
    }

    /// CRIU (`--manage-cgroups`) mounts cgroup2 for itself in the
    /// appliance's cgroup namespace, which resets the hierarchy's options
    /// (`vzcommon::cgroupfs`): they are set again after each of its runs.
    fn keep_cgroup_options(&self) {
        // Only the appliance's hierarchy (not a test's scratch layout).
        if self.layout.cgroup_root != std::path::Path::new("/sys/fs/cgroup/vz") {
            return;
        }
        let root = std::path::Path::new("/sys/fs/cgroup");
        let want = vzcommon::cgroupfs::OPTIONS.join(",");
        match vzcommon::cgroupfs::restore(root) {
            Ok(None) => {}
            Ok(Some(was)) => {
                log::warn!(
                    "cgroup2: CRIU's own mount had reset the options to {was}; set again: {want}"
                )
            }
            Err(e) => log::error!(
                "cgroup2: setting {want} again on {} after CRIU: {e}; the appliance runs \
                 without them until it reboots",
                root.display()
            ),
        }
    }

    /// Checkpoints a running VE into its images directory; it stops when
    /// the dump is complete, and keeps running if the dump fails.
    pub fn chkpnt(&self, veid: VeId, given: Option<&str>) -> Outcome {
        self.checkpoint(veid, given, false)
    }

    /// [`Manager::chkpnt`]; `at_shutdown` marks the dump as the appliance
    /// shutdown's (VE_STOP_MODE=suspend): the next boot restores it.
    pub(super) fn checkpoint(&self, veid: VeId, given: Option<&str>, at_shutdown: bool) -> Outcome {
        self.checkpoint_after(veid, given, at_shutdown, None)
    }

    /// [`Manager::checkpoint`]; `prev` names a live migration's last
    /// pre-copy round (relative to the images directory).
    pub(super) fn checkpoint_after(
        &self,
        veid: VeId,
        given: Option<&str>,
        at_shutdown: bool,
        prev: Option<&str>,
    ) -> Outcome {
        let fail = |m: String| Outcome::fail(ExitCode::ChkpntFailed, m);
        let Some((pid, pidfd)) = self
            .lock()
            .running
            .get(&veid)
            .map(|r| (r.pid, Arc::clone(&r.pidfd)))
        else {
            return Outcome::fail(ExitCode::NotRunning, format!("VE {veid} is not running"));
        };
        let dir = match self.images_dir(veid, given) {
            Ok(d) => d,
            Err(o) => return o,
        };
        let Dumpable { ids, veths, masks } = match self.checkpointable(veid, pid) {
            Ok(d) => d,
            Err(why) => return fail(why),
        };
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        if dir.join(INVENTORY).exists() {
            return fail(format!(
                "VE {veid}: a dump is already at {}: restore it (`vzctl restore {veid}`) or \
                 remove it first",
                dir.display()
            ));
        }
        // A failed attempt's log is kept beside, for inspection.
        let failed = suffixed(&dir, "failed");
        // (A live migration's pre-copy rounds are inside: CRIU opens a
        // round from the restored tasks, so it must be beneath the images
        // directory, not beside it in /vz/dump.)
        if prev.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        // The VE's memory goes there: appliance root's alone. (The images
        // directory itself is searchable: CRIU opens some images from the
        // restored tasks, as VE root, through its descriptor.)
        let made = std::fs::create_dir_all(&dir).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            if let Some(top) = dir.parent() {
                std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o700))?;
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
            std::fs::write(
                dir.join(crate::criu::NOTE),
                crate::criu::note(veid.get(), pid, at_shutdown) + &crate::criu::note_veths(&veths),
            )
        });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return fail(format!("VE {veid}: preparing {}: {e}", dir.display()));
        }
        // Its /dev, which CRIU leaves to us (`criu::dev`): read just before
        // the freeze.
        // And its own cgroups, which CRIU makes again without their
        // controllers and owner (`criu::cgroups`).
        let delegated = crate::daemon::cgroup::delegated(&cg);
        let records = [
            (
                "its /dev",
                crate::criu::dev::RECORD,
                crate::criu::dev::record(pid, ids, crate::config::ID_RANGE),
            ),
            (
                "its cgroups",
                crate::criu::cgroups::RECORD,
                crate::criu::cgroups::record(&delegated),
            ),
        ];
        for (what, name, raw) in records {
            let written = raw.and_then(|raw| {
                std::fs::write(dir.join(name), raw).map_err(|e| format!("writing {name}: {e}"))
            });
            if let Err(e) = written {
                let _ = std::fs::remove_dir_all(&dir);
                return fail(format!(
                    "VE {veid}: recording {what}: {e}; nothing was frozen, the VE keeps running"
                ));
            }
        }
        // Its init's end is the dump's, not a reboot.
        self.lock().stopping.insert(veid);
        let t0 = std::time::Instant::now();
        let done = crate::criu::run(
            crate::criu::dump_command(
                &crate::criu::Subject {
                    pid,
                    cgroup: &cg,
                    masks: &masks,
                },
                &dir,
                prev,
            ),
            &dir.join(crate::criu::DUMP_LOG),
        );
        self.keep_cgroup_options();
        if let Err(e) = done {
            // CRIU thaws and unlocks on its own errors, not if it died.
            let _ = std::fs::write(cg.join("cgroup.freeze"), "0");
            if let Err(u) = crate::criu::delete_lock_table(pidfd.as_fd(), pid) {
                log::warn!("VE {veid}: {u}");
            }
            let alive = self.is_running(veid);
            self.lock().stopping.remove(&veid);
            let _ = std::fs::remove_dir_all(&failed);
            let kept = std::fs::rename(&dir, &failed).map_or_else(
                |_| dir.display().to_string(),
                |()| failed.display().to_string(),
            );
            log::error!("VE {veid}: checkpoint failed: {e}; its log is in {kept}");
            let state = if alive {
                "the VE keeps running"
            } else {
                "the VE stopped"
            };
            return fail(format!(
                "Unable to checkpoint VE {veid}: {e}; {state} (log kept in {kept})"
            ));
        }
        let took = t0.elapsed();
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

    /// Restores a VE from its images directory. Once its processes have run
    /// the dump is never restored again: it is removed after a restore, and
    /// kept as `.used` if a step after CRIU's failed.
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
        match note_of(&dir).0 {
            Some(of) if of == veid.get() => {}
            Some(of) => {
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
        let used = suffixed(&dir, "used");
        let _ = std::fs::remove_dir_all(&used);
        let t0 = std::time::Instant::now();
        let o = self.start_from(veid, false, Some(dir.clone()), Configs::Reread);
        self.keep_cgroup_options();
        if o.code != ExitCode::Ok {
            let message = o.message.replace("Unable to start", "Unable to restore");
            let code = if o.code == ExitCode::System {
                ExitCode::RestoreFailed
            } else {
                o.code
            };
            // The post-restore step renames it when the VE is about to run.
            let what = if used.exists() {
                format!(
                    "the dump was marked used at the restore's last step (the VE may have run \
                     from it), so it is kept as {} and not restored again; start the VE with \
                     `vzctl start {veid}`",
                    used.display()
                )
            } else {
                format!(
                    "the dump is kept in {} (CRIU's log: {}); try again, or start the VE afresh \
                     with `vzctl start {veid}` (which removes the dump)",
                    dir.display(),
                    dir.join(crate::criu::RESTORE_LOG).display()
                )
            };
            return Outcome::fail(code, format!("{message}; {what}"));
        }
        let took = t0.elapsed();
        for d in [&used, &dir] {
            if d.exists() {
                if let Err(e) = std::fs::remove_dir_all(d) {
                    log::warn!("VE {veid}: removing the used dump {}: {e}", d.display());
                }
            }
        }
        log::info!("VE {veid}: restored in {} ms", took.as_millis());
        Outcome::ok(format!(
            "Restoring VE {veid} ...\n\tundump...\n\tresume...\nRestoration completed successfully ({} ms)",
            took.as_millis()
        ))
    }
}

impl Manager {
    /// One pre-copy round of a live migration: the running VE's memory
    /// (what changed since `prev`, relative to `dir`) into `dir` under
    /// `/vz/dump`, made here; the VE goes on running. Returns the bytes of
    /// memory written.
    pub(super) fn pre_dump(
        &self,
        veid: VeId,
        dir: &Path,
        prev: Option<&str>,
    ) -> Result<u64, String> {
        let Some(pid) = self.lock().running.get(&veid).map(|r| r.pid) else {
            return Err(format!("VE {veid} is not running"));
        };
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                if let Some(up) = dir.parent() {
                    std::fs::set_permissions(up, std::fs::Permissions::from_mode(0o711))?;
                }
                // The restored tasks open a round by its `parent` link
                // (O_RDONLY, as VE root): readable, its images are anyway.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("preparing {}: {e}", dir.display()))?;
        let log = dir.join(crate::criu::PRE_DUMP_LOG);
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        let masks = crate::criu::mask_mounts(&info);
        let ve = crate::criu::Subject {
            pid,
            cgroup: &cg,
            masks: &masks,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let done = crate::criu::run(crate::criu::pre_dump_command(&ve, dir, prev), &log);
            self.keep_cgroup_options();
            if done.is_err() {
                // As after a failed dump: CRIU thaws on its own errors only.
                let _ = std::fs::write(cg.join("cgroup.freeze"), "0");
            }
            match done {
                // A task that stayed in uninterruptible sleep while CRIU
                // froze the VE (a vfork parent, a page being swapped in):
                // the VE runs on, unharmed; the round is tried again.
                Err(e) if tries < 3 && crate::criu::freeze_timed_out(&e) => {
                    log::warn!("VE {veid}: memory pre-copy: {e}; trying again");
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                done => return done.map(|()| crate::migrate::tree::pages_bytes(dir)),
            }
        }
    }
}

/// The VEID a dump's note names and whether the shutdown made it.
fn note_of(dir: &Path) -> (Option<u32>, bool) {
    let text = std::fs::read_to_string(dir.join(crate::criu::NOTE)).unwrap_or_default();
    (
        crate::criu::parse_note(&text).map(|(v, _)| v),
        crate::criu::note_at_shutdown(&text),
    )
}

/// `dir` with `.suffix` appended (`Dump.101` -> `Dump.101.used`).
pub(super) fn suffixed(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}
