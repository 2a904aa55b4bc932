//! How vmmgr gets a `vesetup` run for a start: forked by a long-lived
//! `vesetup server` it keeps (one exec per appliance boot, not one per
//! start), or, when that server cannot be had, executed as before.
//!
//! Why a server: under TCG, where the appliance is tested and benchmarked,
//! every exec of the static PIE `vesetup` puts it at new random addresses
//! and the emulator translates its code anew (QEMU keys translations by
//! virtual address): with address randomisation off in a test appliance a
//! start cost about 215 ms instead of 360. Children of one server share its
//! layout, so the translations are reused while the layout still differs
//! from boot to boot. It also saves the exec, the dynamic start-up and the
//! page faults of every run. On real hardware the gain is the exec alone.
//!
//! The server is vmmgr's child; the VE init a forked run starts is
//! orphaned to vmmgr (the subreaper) exactly as with an executed run, since
//! the server is no subreaper. Requests carry descriptors only, over a
//! socket pair no other process holds.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The body of a request to the server (two descriptors beside it: the
/// start's channel, then the write end of the run's stderr).
pub const REQUEST: &[u8] = b"setup";

/// What the server sends once, when it is ready for requests.
pub const READY: &[u8] = b"ready";

/// How long a new server may take to say it is ready (it is one exec).
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// A `vesetup` run, started.
#[derive(Debug)]
pub enum Run {
    /// Forked by the server: its stderr's read end (ends when it exits).
    Forked(std::fs::File),
    /// Executed by vmmgr.
    Executed(crate::sys::Spawned),
}

impl Run {
    /// Everything it wrote to stderr, once it has exited; and its exit
    /// status where vmmgr is its parent.
    pub fn finish(self) -> (String, Option<std::process::ExitStatus>) {
        let mut text = String::new();
        match self {
            Run::Forked(mut e) => {
                let _ = e.read_to_string(&mut text);
                (text, None)
            }
            Run::Executed(mut c) => {
                if let Some(mut e) = c.stderr.take() {
                    let _ = e.read_to_string(&mut text);
                }
                (text, c.wait().ok())
            }
        }
    }
}

struct Server {
    sock: OwnedFd,
    child: crate::sys::Spawned,
}

/// Gets `vesetup` runs (see the module's text).
pub struct Launcher {
    helper: PathBuf,
    server: Mutex<Option<Server>>,
    /// After a server could not be started or died at once: executed runs
    /// only, never a respawn per start.
    given_up: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("helper", &self.helper)
            .field("given_up", &self.given_up)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    pub fn new(helper: &Path) -> Launcher {
        Launcher {
            helper: helper.to_owned(),
            server: Mutex::new(None),
            given_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The helper's path (for messages).
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// A run with `chan` as its channel (fd 3 of an executed run).
    pub fn launch(&self, chan: BorrowedFd<'_>) -> std::io::Result<Run> {
        use std::sync::atomic::Ordering;
        if !self.given_up.load(Ordering::Relaxed) {
            match self.forked(chan) {
                Ok(r) => return Ok(r),
                Err(e) => log::warn!(
                    "{} server: {e}; running it once per start instead",
                    self.helper.display()
                ),
            }
        }
        crate::sys::spawn_passing(&self.helper, &[], chan, 3).map(Run::Executed)
    }

    /// Asks the server (started, or started again once, here) for a run.
    fn forked(&self, chan: BorrowedFd<'_>) -> std::io::Result<Run> {
        use std::sync::atomic::Ordering;
        let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let mut guard = self.server.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if guard.is_none() {
                match self.spawn_server() {
                    Ok(s) => *guard = Some(s),
                    Err(e) => {
                        self.given_up.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            let Some(s) = guard.as_ref() else { continue };
            match crate::fdpass::send_fds(s.sock.as_fd(), REQUEST, &[chan, err_w.as_fd()]) {
                Ok(()) => return Ok(Run::Forked(std::fs::File::from(err_r))),
                Err(e) => {
                    // It died (EPIPE, ECONNRESET): reap it, start another
                    // once; a second failure gives up on servers.
                    if let Some(mut dead) = guard.take() {
                        dead.child.kill();
                        let status = dead.child.wait();
                        log::warn!("{} server ended ({e}, {status:?})", self.helper.display());
                    }
                    if attempt == 1 {
                        self.given_up.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        Err(std::io::Error::other("no server"))
    }

    fn spawn_server(&self) -> std::io::Result<Server> {
        let (ours, theirs) = crate::fdpass::pair()?;
        let mut child =
            crate::sys::spawn_passing(&self.helper, &["server".to_owned()], theirs.as_fd(), 3)?;
        drop(theirs);
        // It must say it serves (a helper of another version would take the
        // socket for a start's channel and wait for a spec).
        let mut buf = [0u8; 16];
        let ready = rustix::net::sockopt::set_socket_timeout(
            &ours,
            rustix::net::sockopt::Timeout::Recv,
            Some(READY_WITHIN),
        )
        .map_err(std::io::Error::from)
        .and_then(|()| crate::fdpass::recv(ours.as_fd(), &mut buf))
        .and_then(|(n, fd)| match (&buf[..n] == READY, fd) {
            (true, None) => Ok(()),
            _ => Err(std::io::Error::other("it did not say it was ready")),
        })
        .and_then(|()| {
            rustix::net::sockopt::set_socket_timeout(
                &ours,
                rustix::net::sockopt::Timeout::Recv,
                None,
            )
            .map_err(std::io::Error::from)
        });
        if let Err(e) = ready {
            child.kill();
            let mut text = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut text);
            }
            let status = child.wait();
            return Err(std::io::Error::other(format!(
                "starting it: {e} ({status:?}) {}",
                text.trim()
            )));
        }
        // Its own messages (a refused request, a failed fork), logged as
        // they come; the pipe ends with it.
        if let Some(err) = child.stderr.take() {
            let name = format!("{} server", self.helper.display());
            let _ = std::thread::Builder::new()
                .name("vesetup-server".into())
                .spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                        log::warn!("{name}: {line}");
                    }
                });
        }
        log::info!(
            "{} server started (pid {})",
            self.helper.display(),
            child.pid
        );
        Ok(Server { sock: ours, child })
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.get_mut().ok().and_then(Option::take) {
            // Closing its socket ends it.
            drop(s.sock);
            let _ = s.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in helper: as a server it exits at once (a broken server);
    /// as a run it writes to fd 3 and stderr.
    fn helper(dir: &Path) -> PathBuf {
        let p = dir.join("vesetup");
        let mut f = std::fs::File::create(&p).expect("create");
        writeln!(
            f,
            "#!/bin/sh\n[ \"$1\" = server ] && exit 3\necho reply >&3\necho oops >&2\nexit 0"
        )
        .expect("write");
        drop(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn a_server_that_dies_gives_way_to_executed_runs() {
        let d = tempfile::tempdir().expect("tempdir");
        let l = Launcher::new(&helper(d.path()));
        for _ in 0..2 {
            let (ours, theirs) = crate::fdpass::pair().expect("pair");
            let run = l.launch(theirs.as_fd()).expect("launch");
            drop(theirs);
            let mut buf = [0u8; 32];
            let (n, _) = crate::fdpass::recv(ours.as_fd(), &mut buf).expect("recv");
            assert_eq!(&buf[..n], b"reply\n");
            assert!(matches!(run, Run::Executed(_)));
            let (err, status) = run.finish();
            assert_eq!(err, "oops\n");
            assert_eq!(status.and_then(|s| s.code()), Some(0));
        }
        assert!(l.given_up.load(std::sync::atomic::Ordering::Relaxed));
    }
}
