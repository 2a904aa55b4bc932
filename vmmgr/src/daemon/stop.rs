//! `vzctl stop`: the template's halt signal, then `cgroup.kill`.

use super::{Layout, Manager, Outcome};
use crate::config::VeId;
use crate::exitcode::ExitCode;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Manager {
    /// Stops a VE: the template's halt signal to its init, then `cgroup.kill`
    /// after STOP_TIMEOUT.
    pub fn stop(&self, veid: VeId, fast: bool) -> Outcome {
        let Some((pidfd, pid)) = self
            .lock()
            .running
            .get(&veid)
            .map(|r| (Arc::clone(&r.pidfd), r.pid))
        else {
            return Outcome::fail(ExitCode::NotRunning, format!("VE {veid} is not running"));
        };
        let cfg = self.config_of(veid).and_then(|c| c.ok());
        let timeout = Duration::from_secs(u64::from(cfg.as_ref().map_or(120, |c| c.stop_timeout)));
        let template = cfg
            .as_ref()
            .map_or("busybox".to_owned(), |c| c.ostemplate.clone());
        let cg = self.layout.cgroup_root.join(veid.to_string());
        self.lock().stopping.insert(veid);
        if !fast {
            let sig = halt_signal(&self.layout, &template);
            if let Err(e) = rustix::process::pidfd_send_signal(pidfd.as_fd(), sig) {
                log::warn!("VE {veid}: signalling init {pid}: {e}");
            }
            if self.wait_stopped(veid, pid, timeout) {
                return Outcome::ok(format!("Stopping VE {veid} ...\nVE was stopped"));
            }
            log::warn!(
                "VE {veid}: still running {} s after the halt signal; killing it",
                timeout.as_secs()
            );
        }
        if let Err(e) = crate::daemon::cgroup::kill(&cg) {
            log::warn!("VE {veid}: {e}");
            let _ =
                rustix::process::pidfd_send_signal(pidfd.as_fd(), rustix::process::Signal::KILL);
        }
        if self.wait_stopped(veid, pid, Duration::from_secs(10)) {
            Outcome::ok(format!("Stopping VE {veid} ...\nVE was stopped"))
        } else {
            Outcome::fail(
                ExitCode::StopFailed,
                format!("Unable to stop VE {veid}: init {pid} survived cgroup.kill"),
            )
        }
    }

    pub(super) fn wait_stopped(&self, veid: VeId, pid: i32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.running.get(&veid).is_none_or(|r| r.pid != pid) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A template's halt signal (`HALT_SIGNAL` in `<name>.conf`), SIGUSR1 if unset.
fn halt_signal(layout: &Layout, template: &str) -> rustix::process::Signal {
    let name = layout.template(template).and_then(|t| t.halt_signal);
    match name.as_deref() {
        Some("SIGTERM") => rustix::process::Signal::TERM,
        Some("SIGINT") => rustix::process::Signal::INT,
        Some("SIGPWR") => rustix::process::Signal::POWER,
        Some("SIGUSR2") => rustix::process::Signal::USR2,
        Some("SIGRTMIN+3") => rustix::process::Signal::from_named_raw(libc::SIGRTMIN() + 3)
            .unwrap_or(rustix::process::Signal::TERM),
        _ => rustix::process::Signal::USR1,
    }
}
