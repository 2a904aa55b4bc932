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

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_EMPTY_PATH: libc::c_int = 0x1000;

/// Makes the detached mount `mnt` idmapped through user namespace `userns`
/// (and read-only if asked): `mount_setattr(MOUNT_ATTR_IDMAP)`.
#[doc(alias = "mount_setattr")]
pub fn idmap_mount(
    mnt: std::os::fd::BorrowedFd<'_>,
    userns: std::os::fd::BorrowedFd<'_>,
    readonly: bool,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: both descriptors are open for the call (borrowed), the path is a
    // valid empty C string used with AT_EMPTY_PATH, and `attr` is a properly
    // sized and initialised struct mount_attr that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
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

/// Closes every descriptor from `first` up (`close_range`).
pub fn close_fds_from(first: u32) -> std::io::Result<()> {
    // SAFETY: close_range only closes descriptors; the caller makes sure none of
    // them is owned by a live Rust object it still uses (called right before
    // exec).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `fork(2)` for a single-threaded process (the VE setup helper).
///
/// Returns `None` in the child, `Some(pid)` in the parent.
pub fn fork_single_threaded() -> std::io::Result<Option<i32>> {
    // SAFETY: only called from the `vesetup` helper, which never starts a
    // thread, so the child inherits no lock held by another thread and may use
    // the allocator and any library code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        p => Ok(Some(p)),
    }
}

/// Sets `IFF_UP` on a network interface of the current network namespace.
#[doc(alias = "SIOCSIFFLAGS")]
pub fn interface_up(name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "interface name length",
        ));
    }
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is open and `req` is a valid NUL-terminated ifreq that
    // outlives the call; SIOCGIFFLAGS writes only into it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS initialised the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the terminal on `fd` the controlling terminal of the calling session
/// leader (`TIOCSCTTY`).
#[doc(alias = "TIOCSCTTY")]
pub fn set_controlling_tty(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is open for the call and TIOCSCTTY takes an int argument.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
