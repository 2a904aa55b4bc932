//! Watching VE inits: adoption after a vmmgr restart, a thread per running
//! VE waiting on its init's pidfd, reaping it (vmmgr is the VE inits'
//! subreaper) and what happens when it ends (a `reboot` inside the VE
//! starts it again).

use super::{Manager, Running};
use crate::config::VeId;
use crate::runstate::VeRecord;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A VE that reboots more than this often within [`REBOOT_WINDOW`] stays
/// stopped.
const MAX_REBOOTS: usize = 5;
const REBOOT_WINDOW: Duration = Duration::from_secs(60);

/// Records a reboot at `now` in `recent`; whether the VE may start again.
fn reboot_allowed(recent: &mut Vec<Instant>, now: Instant) -> bool {
    recent.retain(|t| now.duration_since(*t) < REBOOT_WINDOW);
    recent.push(now);
    if recent.len() > MAX_REBOOTS {
        recent.clear();
        return false;
    }
    true
}

impl Manager {
    /// Adopts VEs left running by a previous vmmgr (their state files in /run).
    pub fn adopt(self: &Arc<Self>) {
        let Ok(dir) = std::fs::read_dir(&self.layout.state_dir) else {
            return;
        };
        for e in dir.flatten() {
            let path = e.path();
            let Some(veid) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<VeId>().ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let Some(VeRecord {
                pid,
                start_time: st,
                checkpoint,
            }) = VeRecord::parse(&text)
            else {
                log::warn!(
                    "VE {veid}: {} is not a runtime record; removing it",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let fd = match crate::runstate::open_init(pid, st) {
                Ok(fd) => fd,
                Err(e) => {
                    log::info!("VE {veid}: init {pid}: {e}; forgetting it");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            log::info!("VE {veid}: adopted running init, pid {pid}");
            // Its /proc view died with the previous vmmgr: bind the new one
            // (off this thread: a VE can make that slow).
            if let Ok(view_fd) = fd.try_clone() {
                let helper = self.layout.helper.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("ve-{veid}-procview"))
                    .spawn(move || {
                        if let Err(e) = crate::setup::procview::spawn(&helper, &view_fd) {
                            log::warn!("VE {veid}: its /proc view could not be renewed: {e}");
                        }
                    });
            }
            // Adopted: the halt signal comes from the installed template.
            self.track(veid, pid, st, fd, None, checkpoint);
        }
    }

    pub(super) fn track(
        self: &Arc<Self>,
        veid: VeId,
        pid: i32,
        start_time: u64,
        fd: OwnedFd,
        halt_signal: Option<i32>,
        checkpoint: bool,
    ) {
        let fd = Arc::new(fd);
        let mut st = self.lock();
        st.sampled.remove(&veid);
        st.running.insert(
            veid,
            Running {
                pid,
                start_time,
                pidfd: Arc::clone(&fd),
                started: Instant::now(),
                halt_signal,
                checkpoint,
            },
        );
        drop(st);
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name(format!("ve-{veid}"))
            .spawn(move || {
                let mut fds = [rustix::event::PollFd::new(
                    &*fd,
                    rustix::event::PollFlags::IN,
                )];
                loop {
                    match rustix::event::poll(&mut fds, None) {
                        Ok(_) => break,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(_) => break,
                    }
                }
                // vmmgr is the child subreaper of the VE inits it started:
                // reap ours and learn how it ended (an adopted init belongs to
                // the appliance's init, and its status is not ours to read).
                let how = reap(&fd);
                me.exited(veid, pid, how);
            });
    }

    pub(super) fn exited(self: &Arc<Self>, veid: VeId, pid: i32, how: InitExit) {
        let mut st = self.lock();
        let mut restart = false;
        if st.running.get(&veid).is_some_and(|r| r.pid == pid) {
            st.running.remove(&veid);
            st.devices.remove(&veid);
            let stopping = st.stopping.remove(&veid);
            restart = how == InitExit::Reboot && !stopping;
            if restart && !reboot_allowed(st.reboots.entry(veid).or_default(), Instant::now()) {
                restart = false;
                log::error!(
                    "VE {veid}: rebooted {} times within {} s; not starting it again \
                     (look at its init; `vzctl start {veid}` starts it)",
                    MAX_REBOOTS + 1,
                    REBOOT_WINDOW.as_secs()
                );
            }
            log::info!("VE {veid}: init (pid {pid}) exited ({how:?}); VE stopped");
            let record = self.layout.state_dir.join(format!("{veid}"));
            if let Err(e) = std::fs::remove_file(&record) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::error!("VE {veid}: removing {}: {e}", record.display());
                }
            }
        }
        drop(st);
        self.cleanup_cgroup(veid);
        self.net_down(veid);
        self.changed.notify_all();
        if restart {
            // `reboot` inside the VE: OpenVZ starts it again (`halt` stops it).
            let me = Arc::clone(self);
            let _ = std::thread::Builder::new()
                .name(format!("ve-{veid}-reboot"))
                .spawn(move || {
                    let Some(busy) = me.begin(veid) else {
                        log::warn!("VE {veid}: rebooted, but another operation holds it");
                        return;
                    };
                    let o = me.start(veid, false);
                    drop(busy);
                    log::info!("VE {veid}: reboot: {}", o.message.replace('\n', "; "));
                });
        }
    }

    pub(super) fn cleanup_cgroup(&self, veid: VeId) {
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        // The kernel empties it as the last processes are reaped.
        if let Err(e) = crate::daemon::cgroup::remove(&cg, Duration::from_secs(10)) {
            log::warn!("VE {veid}: {e}");
        }
        crate::daemon::limits::update_guarantees(&self.layout.cgroup_root);
    }
}

/// How a VE init ended, as far as vmmgr can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitExit {
    /// `reboot` inside the VE: the kernel ends a PID namespace's init with
    /// SIGHUP for a restart (SIGINT for halt and power-off).
    Reboot,
    /// Any other end (halt, a stop, a crash).
    Stopped,
    /// Not our child (adopted after a vmmgr restart): status unknown.
    Unknown,
}

/// Reaps the VE init behind `pidfd` (a child of vmmgr, which is the child
/// subreaper of the VE inits it starts) and says how it ended.
pub fn reap(pidfd: &OwnedFd) -> InitExit {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                return if st.terminating_signal() == Some(libc::SIGHUP) {
                    InitExit::Reboot
                } else {
                    InitExit::Stopped
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return InitExit::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reboot_loop_is_stopped_and_slow_reboots_are_not() {
        let t0 = Instant::now();
        let mut recent = Vec::new();
        for i in 0..MAX_REBOOTS {
            assert!(reboot_allowed(
                &mut recent,
                t0 + Duration::from_secs(i as u64)
            ));
        }
        assert!(!reboot_allowed(&mut recent, t0 + Duration::from_secs(6)));
        let mut slow = Vec::new();
        for i in 0..20u64 {
            assert!(reboot_allowed(&mut slow, t0 + REBOOT_WINDOW * (i as u32)));
        }
    }
}
