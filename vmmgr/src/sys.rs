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

/// Makes the child of `cmd` get `fd` as descriptor `target` (and nothing else
/// of ours: every other descriptor of vmmgr is close-on-exec).
pub fn pass_fd_as(cmd: &mut std::process::Command, fd: OwnedFd, target: i32) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // SAFETY: runs between fork and exec; dup2 and fcntl are
    // async-signal-safe, and the closure only uses `fd`, which the closure
    // owns (moved in) and keeps open until exec.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fd;
            if raw == target {
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
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
