//! The crate's only `unsafe`: taking ownership of inherited descriptors.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// Takes ownership of descriptor `fd` inherited from our parent, if it is open
/// and not one of the standard streams. Call once per descriptor.
pub fn take_inherited_fd(fd: i32) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: the borrow lives only for one fcntl(F_GETFD) probe, which is
    // harmless on any number (a closed one gives EBADF).
    let probe = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(probe).ok()?;
    // SAFETY: the descriptor is open (checked above), was passed to us by our
    // parent for one purpose, and the caller takes it once, so nothing else in
    // this process owns or closes it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the child of `cmd` start with SIGINT and SIGQUIT at their defaults
/// (the console ignores them, and ignored signals survive exec).
pub fn default_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec; signal(2) is async-signal-safe and the
    // closure touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGQUIT, libc::SIG_DFL);
            Ok(())
        });
    }
}

/// Ignores SIGINT and SIGQUIT in this process (ctrl-c at the console prompt
/// must not kill the console).
pub fn ignore_interrupts() {
    // SAFETY: SIG_IGN installs no handler code; this only changes the signal
    // disposition of this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
}
