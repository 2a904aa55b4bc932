//! /proc, a read-only /sys and the VE's cgroup2 tree, mounted in the staging
//! namespace A by an appliance process that joined the VE's PID, network and
//! cgroup namespaces (so each shows the VE's view), then the masks and
//! read-only paths of the policy on top. All of it is owned by the
//! appliance's user namespace: once the VE init copies A into its own mount
//! namespace, the kernel locks every one of these mounts.

use super::{Ctx, Policy, SetupError};
use crate::mountfd;
use rustix::mount::MountAttrFlags;
use std::os::fd::{AsFd, BorrowedFd};

/// Mounts proc, sysfs, cgroup2 and the masks into the VE root `root`, from
/// the namespaces of the waiting VE init `init` (a pidfd).
///
/// One child does it. A PID namespace applies to the children forked after
/// joining it, so we join the VE's for the fork alone and at once return to
/// ours (the one we are in); the child joins the VE's network and cgroup
/// namespaces itself. (Before, a child joined all three and forked a
/// grandchild into the PID namespace: a process more per start.)
pub(super) fn mount_all(
    cx: &Ctx,
    init: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    policy: &Policy,
) -> Result<(), SetupError> {
    use rustix::thread::ThreadNameSpaceType as T;
    let (ours, theirs) = cx.at("socketpair", crate::fdpass::pair())?;
    let own = cx.at(
        "opening our own pidfd",
        rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        ),
    )?;
    cx.at(
        "joining the VE's PID namespace for the /proc mounter",
        rustix::thread::move_into_thread_name_spaces(init, T::PROCESS_ID),
    )?;
    // SAFETY: vesetup is single-threaded.
    let forked = match unsafe { crate::sys::fork_single_threaded() } {
        Ok(None) => {
            drop((ours, own));
            let _ = rustix::thread::set_name(c"vesetup-proc");
            let r = in_ve_namespaces(cx, init, root, null, policy);
            let msg = match &r {
                Ok(()) => String::new(),
                Err(e) => super::chain(e),
            };
            let _ = crate::fdpass::send(theirs.as_fd(), msg.as_bytes(), None);
            std::process::exit(i32::from(r.is_err()));
        }
        Ok(Some(pid)) => Ok(pid),
        Err(e) => Err(e),
    };
    drop(theirs);
    // Our later children (none in a start; CRIU in a restore) are born in
    // our own PID namespace again; if that fails, we fail below, before
    // anything else is forked.
    let back = rustix::thread::move_into_thread_name_spaces(own.as_fd(), T::PROCESS_ID);
    let pid = match forked {
        Ok(pid) => pid,
        Err(e) => {
            cx.at("returning to our own PID namespace", back)?;
            return cx.at("forking the /proc mounter", Err(e));
        }
    };
    let mut buf = [0u8; 2048];
    let got = crate::fdpass::recv(ours.as_fd(), &mut buf);
    let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    cx.at("returning to our own PID namespace", back)?;
    let clean = matches!(status, Ok(Some((_, s))) if s.exit_status() == Some(0));
    match got {
        Ok((0, _)) if clean => Ok(()),
        Ok((n, _)) if n > 0 => Err(cx.fail(
            "mounting /proc and /sys",
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )),
        _ => Err(cx.fail("mounting /proc and /sys", "the mounter died")),
    }
}

/// In the mounter, born in the VE's PID namespace: joins its network and
/// cgroup namespaces (so sysfs and cgroup2 show the VE's view) and mounts.
fn in_ve_namespaces(
    cx: &Ctx,
    init: BorrowedFd<'_>,
    root: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    policy: &Policy,
) -> Result<(), SetupError> {
    use rustix::thread::ThreadNameSpaceType as T;
    cx.at(
        "joining the VE's network and cgroup namespaces",
        rustix::thread::move_into_thread_name_spaces(init, T::NETWORK | T::CONTROL_GROUP),
    )?;
    mount_kernfs(cx, root, null, policy)
}

/// Binds vmmgr's /proc view (`crate::procfs`) over the VE's files of the
/// same names, read-only. `user_beancounters` is a name procfs has only
/// with our module `vzproc` loaded; a name procfs does not have is skipped
/// (a bind needs an existing file). Without the view mounted (no FUSE in
/// this kernel), the VE keeps the kernel's files.
fn bind_procfs(cx: &Ctx, root: BorrowedFd<'_>) -> Result<(), SetupError> {
    let dir = std::path::Path::new(crate::procfs::MOUNT_DIR);
    let view = match rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    // Only a live vzproc mount (FUSE_SUPER_MAGIC), never a plain directory.
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    match rustix::fs::fstatfs(&view) {
        Ok(s) if s.f_type == FUSE_SUPER_MAGIC => {}
        _ => return Ok(()),
    }
    for name in crate::procfs::FILES {
        let target = match mountfd::open_in_root(root, &format!("proc/{name}"), false) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(cx.fail(format!("opening the VE's /proc/{name}"), e.to_string())),
        };
        let src = cx.at(
            format!("opening {}/{name}", dir.display()),
            rustix::fs::openat(
                &view,
                *name,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ),
        )?;
        cx.at(
            format!("binding {}/{name} read-only on /proc/{name}", dir.display()),
            mountfd::bind_readonly(src.as_fd(), target.as_fd(), false),
        )?;
    }
    Ok(())
}

fn mount_kernfs(
    cx: &Ctx,
    root: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    policy: &Policy,
) -> Result<(), SetupError> {
    let nosuid_nodev_noexec = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    for (at, fstype, attrs) in [
        ("proc", "proc", nosuid_nodev_noexec),
        (
            "sys",
            "sysfs",
            nosuid_nodev_noexec | MountAttrFlags::MOUNT_ATTR_RDONLY,
        ),
        ("sys/fs/cgroup", "cgroup2", nosuid_nodev_noexec),
    ] {
        let point = cx.at(
            format!("opening the VE's /{at}"),
            mountfd::open_in_root(root, at, true),
        )?;
        let fs = cx.at(
            format!("creating {fstype}"),
            mountfd::new_fs(fstype, &[], attrs),
        )?;
        cx.at(
            format!("attaching /{at}"),
            mountfd::attach(fs.as_fd(), point.as_fd()),
        )?;
    }
    bind_procfs(cx, root)?;
    for p in &policy.masked {
        match mountfd::open_in_root(root, &p.rel, false) {
            Ok(fd) => cx.at(
                format!("masking /{}", p.rel),
                mountfd::mask(fd.as_fd(), null),
            )?,
            Err(rustix::io::Errno::NOENT) if p.optional => {}
            Err(e) => {
                return Err(cx.fail(
                    format!("masking /{}", p.rel),
                    format!("{e} (masked-paths: mark it `?` if this kernel may lack it)"),
                ))
            }
        }
    }
    for p in &policy.readonly {
        match mountfd::open_in_root(root, &p.rel, false) {
            Ok(fd) => cx.at(
                format!("making /{} read-only", p.rel),
                mountfd::make_readonly(fd.as_fd()),
            )?,
            Err(rustix::io::Errno::NOENT) if p.optional => {}
            Err(e) => {
                return Err(cx.fail(
                    format!("making /{} read-only", p.rel),
                    format!("{e} (readonly-paths: mark it `?` if this kernel may lack it)"),
                ))
            }
        }
    }
    Ok(())
}
