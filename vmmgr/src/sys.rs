//! The crate's `unsafe`: syscalls neither rustix nor nix wraps, fork, and
//! taking ownership of inherited descriptors.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// Takes ownership of descriptor `fd` inherited from our parent, if it is open
/// and not one of the standard streams.
///
/// # Safety
/// `fd` must have been passed by our parent for the caller's purpose, and be
/// taken once: nothing else in this process may own or close it.
pub unsafe fn take_inherited_fd(fd: i32) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: the borrow lives only for one fcntl(F_GETFD) probe, which is
    // harmless on any number (a closed one gives EBADF).
    let probe = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(probe).ok()?;
    // SAFETY: the descriptor is open (checked above) and, as the caller
    // guarantees, owned by nothing else in this process.
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

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttrArg {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attributes [`mount_setattr`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountAttr(u64);

impl MountAttr {
    pub const NONE: MountAttr = MountAttr(0);
    pub const READONLY: MountAttr = MountAttr(0x1);
    /// Read-only, no setuid, no device nodes, no executables.
    pub const READONLY_NOSUID_NODEV_NOEXEC: MountAttr = MountAttr(0x1 | 0x2 | 0x4 | 0x8);
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Sets `attr` on the mount (tree, if `recursive`) at `mnt`, and makes it
/// idmapped through `userns` if given: `mount_setattr(2)`, which neither
/// rustix nor nix wraps.
pub fn mount_setattr(
    mnt: BorrowedFd<'_>,
    recursive: bool,
    attr: MountAttr,
    userns: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let arg = MountAttrArg {
        attr_set: attr.0
            | if userns.is_some() {
                MOUNT_ATTR_IDMAP
            } else {
                0
            },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let flags = AT_EMPTY_PATH | if recursive { AT_RECURSIVE } else { 0 };
    let empty = c"";
    // SAFETY: the descriptors are open for the call (borrowed), the path is a
    // valid empty C string used with AT_EMPTY_PATH, and `arg` is a properly
    // sized and initialised struct mount_attr that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &arg as *const MountAttrArg,
            std::mem::size_of::<MountAttrArg>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Drops capability number `cap` from the bounding set (`PR_CAPBSET_DROP`).
pub fn drop_bounding_cap(cap: u32) -> std::io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer capability number and touches no
    // memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `fork(2)`. Returns `None` in the child, `Some(pid)` in the parent.
///
/// # Safety
/// The calling process must be single-threaded (`vesetup`, `vzctl` and the
/// children they fork never start a thread): the child then inherits no lock
/// held by another thread and may use the allocator and any library code.
pub unsafe fn fork_single_threaded() -> std::io::Result<Option<rustix::process::Pid>> {
    // SAFETY: the caller guarantees a single-threaded process (see above).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        p => Ok(rustix::process::Pid::from_raw(p)),
    }
}

/// Closes every descriptor above stdio except those in `keep`
/// (`close_range` over the gaps). Called right before joining or entering a
/// VE, where no Rust object may still use a closed descriptor.
pub fn close_fds_except(keep: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|f| u32::try_from(f.as_raw_fd()).ok())
        .filter(|f| *f >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > first {
            close_range(first, k - 1)?;
        }
        first = k.saturating_add(1);
    }
    Ok(())
}

fn close_range(first: u32, last: u32) -> std::io::Result<()> {
    // SAFETY: close_range only closes descriptors; callers run right before an
    // exec or a namespace switch and keep no Rust object on the closed ones.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `struct sock_fprog`: a classic BPF program as `seccomp(2)` takes it.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const seccompiler::sock_filter,
}

/// Installs `filter` on the calling thread:
/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`.
///
/// Sets no `no_new_privs` (setuid programs keep working under the filter), so
/// the caller needs CAP_SYS_ADMIN in its user namespace; no TSYNC, so other
/// threads are not filtered. Neither allocates nor locks: safe to call in a
/// forked child of a multi-threaded process.
#[doc(alias = "seccomp")]
pub fn seccomp_install_filter(filter: &[seccompiler::sock_filter]) -> std::io::Result<()> {
    let len = u16::try_from(filter.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = SockFprog {
        len,
        filter: filter.as_ptr(),
    };
    // SAFETY: `prog` describes `len` instructions at `filter`, a live slice of
    // seccompiler's `sock_filter`, which is `#[repr(C)]` {u16 code, u8 jt,
    // u8 jf, u32 k} like the kernel's; `prog` and the slice outlive the call and
    // the kernel only copies the program in (it checks the program itself).
    // Flags 0: no listener fd is returned, nothing else is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const SockFprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A child started by [`spawn_passing`].
#[derive(Debug)]
pub struct Spawned {
    pub pid: libc::pid_t,
    /// The read end of its stderr.
    pub stderr: Option<std::fs::File>,
    reaped: bool,
}

impl Spawned {
    fn waitpid(&mut self, flags: libc::c_int) -> std::io::Result<Option<std::process::ExitStatus>> {
        use std::os::unix::process::ExitStatusExt;
        if self.reaped {
            return Err(std::io::Error::other("already reaped"));
        }
        loop {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if rc == self.pid {
                self.reaped = true;
                return Ok(Some(std::process::ExitStatus::from_raw(status)));
            }
            if rc == 0 {
                return Ok(None);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.waitpid(0)
            .and_then(|s| s.ok_or_else(|| std::io::Error::other("waitpid returned no status")))
    }

    /// Its status if it ended, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.waitpid(libc::WNOHANG)
    }

    /// SIGKILL (it is still ours to reap: no other process can have its pid).
    pub fn kill(&self) {
        if !self.reaped {
            // SAFETY: a plain kill(2) of our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// Runs `program args` with `fd` as its descriptor `target`, stdin and
/// stdout on /dev/null and stderr on a pipe, through posix_spawn: the C
/// library starts it with `CLONE_VM | CLONE_VFORK`, so vmmgr's address space
/// (every thread's stack, the FUSE server's buffers) is never copied, as
/// `Command` with a `pre_exec` hook would by forking. The child gets an empty
/// signal mask and SIGPIPE at its default, as `Command` gives.
pub fn spawn_passing(
    program: &std::path::Path,
    args: &[String],
    fd: BorrowedFd<'_>,
    target: i32,
) -> std::io::Result<Spawned> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::ffi::OsStrExt;
    let cstr = |b: &[u8]| CString::new(b).map_err(std::io::Error::other);
    let prog = cstr(program.as_os_str().as_bytes())?;
    let mut argv_owned = vec![prog.clone()];
    for a in args {
        argv_owned.push(cstr(a.as_bytes())?);
    }
    let mut argv: Vec<*mut libc::c_char> =
        argv_owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    // The descriptor to hand over, at a number that is not `target` (a
    // dup2 onto itself would keep close-on-exec).
    let src = rustix::io::fcntl_dupfd_cloexec(fd, target + 1)?;
    let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let null = c"/dev/null";
    let check = |rc: libc::c_int| -> std::io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    };
    // SAFETY: the file actions and attributes are initialised before use and
    // destroyed on every path; every pointer given to posix_spawn (program,
    // argv, environ) is valid and NUL-terminated for the duration of the
    // call, and the descriptors named stay open until it returns.
    unsafe {
        extern "C" {
            static environ: *const *mut libc::c_char;
        }
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut fa))?;
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let mut pid: libc::pid_t = 0;
        let r = (|| {
            check(libc::posix_spawn_file_actions_addopen(
                &mut fa,
                0,
                null.as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            check(libc::posix_spawn_file_actions_addopen(
                &mut fa,
                1,
                null.as_ptr(),
                libc::O_WRONLY,
                0,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                err_w.as_raw_fd(),
                2,
            ))?;
            check(libc::posix_spawn_file_actions_adddup2(
                &mut fa,
                src.as_raw_fd(),
                target,
            ))?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut pipe_default: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe_default);
            libc::sigaddset(&mut pipe_default, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(
                &mut attr,
                &pipe_default,
            ))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            check(libc::posix_spawn(
                &mut pid,
                prog.as_ptr(),
                &fa,
                &attr,
                argv.as_mut_ptr(),
                environ.cast(),
            ))
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        r?;
        drop((src, err_w));
        Ok(Spawned {
            pid,
            stderr: Some(std::fs::File::from_raw_fd(err_r.into_raw_fd())),
            reaped: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn spawned_child_gets_the_descriptor_as_target_and_its_stderr_is_ours() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let args = [
            "-c".to_owned(),
            "echo to-three >&3; echo to-stderr >&2; read x; echo \"stdin:$x\" >&3; exit 7"
                .to_owned(),
        ];
        let mut child =
            spawn_passing(std::path::Path::new("/bin/sh"), &args, w.as_fd(), 3).expect("spawn");
        drop(w);
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(7));
        assert_eq!(err, "to-stderr\n");
        let mut out = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut out)
            .expect("read fd 3");
        // stdin is /dev/null: `read` sees its end.
        assert_eq!(out, "to-three\nstdin:\n");
        assert!(child.wait().is_err(), "reaped once");
    }

    #[test]
    fn a_running_child_is_polled_and_killed() {
        let (_r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        let mut child = spawn_passing(
            std::path::Path::new("/bin/sh"),
            &["-c".to_owned(), "sleep 30".to_owned()],
            w.as_fd(),
            3,
        )
        .expect("spawn");
        assert!(child.try_wait().expect("poll").is_none());
        child.kill();
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
