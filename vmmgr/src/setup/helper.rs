//! What the helper modes of `vesetup` share (`devnodes`, `procview`,
//! `ptymax`): vmmgr runs `vesetup <mode> ...` with a running VE init's pidfd
//! on fd 3, bounded in time; the helper joins that VE's mount namespace and
//! works inside its root by descriptor.

use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// How long a helper working in a VE's namespace may take: a path in the
/// VE can be made to block (a FUSE server of the VE behind its /dev), and
/// vmmgr must not wait on it for ever.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Joins the mount namespace of the VE whose init is `init` and returns its
/// root (single-threaded callers only).
pub fn enter_mount_ns(init: BorrowedFd<'_>) -> Result<OwnedFd, String> {
    rustix::thread::move_into_thread_name_spaces(init, rustix::thread::ThreadNameSpaceType::MOUNT)
        .map_err(|e| format!("joining the VE's mount namespace: {e}"))?;
    rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening the VE's root: {e}"))
}

/// Runs `helper <args>` with a copy of `init` (the VE init's pidfd) as fd 3,
/// to its end or [`TIMEOUT`]; its stderr is the error. A helper past its
/// time is killed and left to be reaped by a thread of its own (a task
/// blocked in a filesystem may not die at once).
pub fn spawn(helper: &std::path::Path, init: &OwnedFd, args: &[String]) -> Result<(), String> {
    let mut child = crate::sys::spawn_passing(helper, args, init.as_fd(), 3)
        .map_err(|e| format!("running {}: {e}", helper.display()))?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return if status.success() {
                    Ok(())
                } else {
                    Err(err.trim().to_owned())
                };
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(None) => {
                child.kill();
                let _ = std::thread::Builder::new()
                    .name("helper-reaper".into())
                    .spawn(move || child.wait());
                return Err(format!(
                    "{} {} did not finish within {} s (is something in the VE blocking \
                     its /dev or /proc?); it was killed",
                    helper.display(),
                    args.first().map_or("", String::as_str),
                    TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", helper.display())),
        }
    }
}
