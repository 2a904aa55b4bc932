//! The few system calls that neither rustix nor nix wrap safely.
//!
//! Every `unsafe` block of the crate lives here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Loads a kernel module from an open file (`finit_module(2)`).
#[doc(alias = "finit_module")]
pub fn load_module(file: &File, params: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: the fd is open for the duration of the call (borrowed from `file`),
    // `params` is a valid NUL-terminated string, and flags 0 asks for no special
    // behaviour. The kernel reads nothing else from our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Prepares `cmd` to start a supervised service: an empty signal mask (init
/// blocks the signals it reads from its signalfd, and masks survive exec), a
/// new session, the terminal on
/// stdin as controlling terminal when `tty` is set, and the write end of the
/// readiness pipe kept open across exec (its number is in `NOTIFY_FD`) when given.
pub fn service_pre_exec(
    cmd: &mut std::process::Command,
    tty: bool,
    notify: Option<std::os::fd::RawFd>,
) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (sigprocmask, setsid, ioctl, fcntl) on
    // descriptors that the
    // parent keeps open until `spawn` returns; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if tty && libc::ioctl(0, libc::TIOCSCTTY, 1 as libc::c_int) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = notify {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
