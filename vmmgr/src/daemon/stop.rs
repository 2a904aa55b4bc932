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
        let Some((pidfd, pid, recorded)) = self
            .lock()
            .running
            .get(&veid)
            .map(|r| (Arc::clone(&r.pidfd), r.pid, r.halt_signal))
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
            let sig = recorded.unwrap_or_else(|| halt_signal(&self.layout, &template));
            if let Err(e) = pidfd_signal(pidfd.as_fd(), sig) {
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

/// The installed template's halt signal (for a VE adopted after a vmmgr
/// restart, whose start vmmgr did not see).
fn halt_signal(layout: &Layout, template: &str) -> i32 {
    layout
        .template(template)
        .map_or(libc::SIGUSR1, |t| halt_signal_of(&t))
}

/// A template's halt signal (`HALT_SIGNAL` in `<name>.conf`), SIGUSR1 if
/// unset or unusable: a raw number, as real-time signals (systemd's
/// SIGRTMIN+3) have no named constant.
pub(super) fn halt_signal_of(t: &super::templates::Template) -> i32 {
    match t.halt_signal.as_deref().map(|n| (n, signal_number(n))) {
        None => libc::SIGUSR1,
        Some((_, Some(sig))) => sig,
        Some((name, None)) => {
            log::warn!(
                "template {}: HALT_SIGNAL={name:?} is not a signal vzctl stop can use; sending SIGUSR1",
                t.name
            );
            libc::SIGUSR1
        }
    }
}

/// `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3` ... as a number.
pub fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim();
    let n = n.strip_prefix("SIG").unwrap_or(n);
    if let Ok(v) = n.parse::<i32>() {
        // KILL and STOP are no requests to halt: the stop would wait out
        // STOP_TIMEOUT for nothing.
        let usable =
            (1..=libc::SIGRTMAX()).contains(&v) && ![libc::SIGKILL, libc::SIGSTOP].contains(&v);
        return usable.then_some(v);
    }
    if let Some(off) = n.strip_prefix("RTMIN") {
        let k: i32 = if off.is_empty() {
            0
        } else {
            off.strip_prefix('+')?.parse().ok()?
        };
        let v = libc::SIGRTMIN() + k;
        return (v <= libc::SIGRTMAX()).then_some(v);
    }
    Some(match n {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "PWR" => libc::SIGPWR,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "QUIT" => libc::SIGQUIT,
        _ => return None,
    })
}

/// `pidfd_send_signal(2)` with a raw signal number.
fn pidfd_signal(pidfd: std::os::fd::BorrowedFd<'_>, sig: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::signal_number;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(signal_number("SIGPWR"), Some(libc::SIGPWR));
        assert_eq!(signal_number("USR1"), Some(libc::SIGUSR1));
        assert_eq!(signal_number("15"), Some(15));
        assert_eq!(signal_number("SIGRTMIN+99"), None);
        assert_eq!(signal_number("9"), None);
        assert_eq!(signal_number("SIGBOGUS"), None);
    }
}
