//! Supervised services: start, readiness, log capture, restart with backoff.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the console reads the state of the services.
pub use vzcommon::run::SERVICES_FILE as STATE_FILE;

/// First restart delay; doubled on every quick failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A service that ran at least this long before dying is restarted quickly again.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next start, given the last delay and how long the
/// service ran.
pub fn next_backoff(last: Duration, ran_for: Duration) -> Duration {
    if ran_for >= STABLE_AFTER || last.is_zero() {
        MIN_BACKOFF
    } else {
        (last * 2).min(MAX_BACKOFF)
    }
}

/// How a service's standard streams are connected.
#[derive(Debug, Clone)]
pub enum Io {
    /// A terminal device, also made the controlling terminal.
    Tty(PathBuf),
    /// A pipe read by init: every line goes to the appliance log.
    Log,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub path: PathBuf,
    pub args: Vec<String>,
    pub io: Io,
    /// The service writes a line to the fd named by `NOTIFY_FD` once it is ready.
    pub notify: bool,
}

/// A supervised service and its runtime state.
#[derive(Debug)]
pub struct Service {
    pub spec: Spec,
    pub pid: Option<i32>,
    pub ready: bool,
    pub restarts: u32,
    pub started: Option<Instant>,
    pub next_start: Option<Instant>,
    pub backoff: Duration,
    pub last_exit: Option<String>,
    notify_rx: Option<File>,
    log_rx: Option<File>,
    log_buf: Vec<u8>,
}

impl Service {
    pub fn new(spec: Spec) -> Self {
        Service {
            spec,
            pid: None,
            ready: false,
            restarts: 0,
            started: None,
            next_start: Some(Instant::now()),
            backoff: Duration::ZERO,
            last_exit: None,
            notify_rx: None,
            log_rx: None,
            log_buf: Vec::new(),
        }
    }

    /// Starts the process. On failure the service is scheduled again.
    pub fn start(&mut self) {
        self.next_start = None;
        match self.spawn() {
            Ok(pid) => {
                log::info!("service {} started, pid {pid}", self.spec.name);
                self.pid = Some(pid);
                self.started = Some(Instant::now());
                self.ready = !self.spec.notify;
            }
            Err(e) => {
                self.backoff = next_backoff(self.backoff, Duration::ZERO);
                log::error!(
                    "service {}: starting {} failed: {e}; retrying in {} ms",
                    self.spec.name,
                    self.spec.path.display(),
                    self.backoff.as_millis()
                );
                self.next_start = Some(Instant::now() + self.backoff);
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<i32> {
        let mut cmd = Command::new(&self.spec.path);
        cmd.args(&self.spec.args);
        cmd.env_clear();
        cmd.env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin");
        cmd.env("TERM", "vt100");
        cmd.env("HOME", "/");
        let tty = match &self.spec.io {
            Io::Tty(path) => {
                let t = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)?;
                cmd.stdin(t.try_clone()?);
                cmd.stdout(t.try_clone()?);
                cmd.stderr(t);
                true
            }
            Io::Log => {
                let (rx, tx) = pipe()?;
                cmd.stdin(Stdio::null());
                cmd.stdout(File::from(tx.try_clone()?));
                cmd.stderr(File::from(tx));
                set_nonblocking(rx.as_fd())?;
                self.log_rx = Some(File::from(rx));
                false
            }
        };
        let mut notify_tx = None;
        if self.spec.notify {
            let (rx, tx) = pipe()?;
            set_nonblocking(rx.as_fd())?;
            self.notify_rx = Some(File::from(rx));
            cmd.env("NOTIFY_FD", tx.as_raw_fd().to_string());
            notify_tx = Some(tx);
        }
        crate::sys::service_pre_exec(&mut cmd, tty, notify_tx.as_ref().map(|f| f.as_raw_fd()));
        let child = cmd.spawn()?;
        // Our copies of the pipes' write ends close here, so EOF reaches us when
        // the service exits.
        drop(cmd);
        drop(notify_tx);
        Ok(child.id() as i32)
    }

    /// Called when the process exited; schedules the restart unless stopping.
    pub fn exited(&mut self, how: String, restart: bool) {
        let ran_for = self.started.map(|s| s.elapsed()).unwrap_or_default();
        self.pid = None;
        self.ready = false;
        self.notify_rx = None;
        self.drain_log();
        self.log_rx = None;
        self.last_exit = Some(how.clone());
        if restart {
            self.backoff = next_backoff(self.backoff, ran_for);
            self.restarts += 1;
            log::warn!(
                "service {} exited ({how}) after {} ms; restarting in {} ms",
                self.spec.name,
                ran_for.as_millis(),
                self.backoff.as_millis()
            );
            self.next_start = Some(Instant::now() + self.backoff);
        } else {
            log::info!("service {} exited ({how})", self.spec.name);
        }
    }

    /// Descriptors init should poll for this service.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = Vec::new();
        if let Some(f) = &self.notify_rx {
            v.push(f.as_fd());
        }
        if let Some(f) = &self.log_rx {
            v.push(f.as_fd());
        }
        v
    }

    /// Reads whatever the readiness and log pipes hold. Returns true if the
    /// service just became ready.
    pub fn service_io(&mut self) -> bool {
        let mut became_ready = false;
        if let Some(rx) = self.notify_rx.as_mut() {
            let mut buf = [0u8; 64];
            match rx.read(&mut buf) {
                Ok(0) => self.notify_rx = None,
                Ok(_) => {
                    self.notify_rx = None;
                    if !self.ready {
                        self.ready = true;
                        became_ready = true;
                        log::info!("service {} is ready", self.spec.name);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => self.notify_rx = None,
            }
        }
        self.drain_log();
        became_ready
    }

    fn drain_log(&mut self) {
        let Some(rx) = self.log_rx.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match rx.read(&mut buf) {
                Ok(0) => {
                    self.log_rx = None;
                    break;
                }
                Ok(n) => self.log_buf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        while let Some(pos) = self.log_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.log_buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            crate::klog::service_line(self.spec.name, &text);
        }
        // A service that never ends its lines must not make us hoard memory.
        if self.log_buf.len() > 8192 {
            let text = String::from_utf8_lossy(&self.log_buf).into_owned();
            crate::klog::service_line(self.spec.name, &text);
            self.log_buf.clear();
        }
    }

    /// One line for the state file: `name pid state restarts last-exit`.
    pub fn state_line(&self) -> String {
        let state = match (self.pid, self.ready) {
            (Some(_), true) => "running",
            (Some(_), false) => "starting",
            (None, _) if self.next_start.is_some() => "restarting",
            (None, _) => "stopped",
        };
        vzcommon::run::ServiceRecord {
            name: self.spec.name.to_owned(),
            pid: self.pid.and_then(|p| u32::try_from(p).ok()),
            state: state.to_owned(),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
        }
        .render()
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Writes the state of all services to [`STATE_FILE`] (atomically).
pub fn write_state(services: &[Service]) {
    let text: String = services.iter().map(|s| s.state_line() + "\n").collect();
    let tmp = format!("{STATE_FILE}.tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, STATE_FILE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_on_quick_failures_and_caps() {
        let mut b = Duration::ZERO;
        let mut seen = vec![];
        for _ in 0..12 {
            b = next_backoff(b, Duration::from_millis(50));
            seen.push(b.as_millis());
        }
        assert_eq!(&seen[..5], &[100, 200, 400, 800, 1600]);
        assert_eq!(*seen.last().expect("non-empty"), 30_000);
    }

    #[test]
    fn backoff_resets_after_a_stable_run() {
        let b = next_backoff(Duration::from_secs(8), STABLE_AFTER);
        assert_eq!(b, MIN_BACKOFF);
    }

    #[test]
    fn state_line_describes_a_fresh_service() {
        let s = Service::new(Spec {
            name: "vmmgr",
            path: "/sbin/vmmgr".into(),
            args: vec![],
            io: Io::Log,
            notify: true,
        });
        assert_eq!(s.state_line(), "vmmgr - restarting 0 -");
    }

    #[test]
    fn spawned_service_notifies_and_logs() {
        let mut s = Service::new(Spec {
            name: "echo",
            path: "/bin/sh".into(),
            // Through /proc: dash's `>&N` takes one digit only, and with
            // other tests' descriptors open NOTIFY_FD can be 10 or more.
            args: vec![
                "-c".into(),
                "echo hello; echo ready >/proc/self/fd/$NOTIFY_FD".into(),
            ],
            io: Io::Log,
            notify: true,
        });
        s.start();
        let pid = s.pid.expect("started");
        // Wait for the child so both pipes have seen everything.
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        assert!(status.is_ok());
        assert!(s.service_io());
        assert!(s.ready);
    }
}
