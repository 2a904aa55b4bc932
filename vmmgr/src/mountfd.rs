//! Mounting by file descriptor (the kernel's new mount API), and opening
//! paths inside a VE's root without following anything the VE made.
//!
//! Every mount onto a VE's tree is made on a directory (or file) opened with
//! [`open_in_root`]; the VE's `/dev`, `/proc` or `/sys` being a symlink is an
//! error, not a redirection.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// `openat2` flags that keep a lookup inside `root` and follow no link.
pub const IN_ROOT_NO_LINKS: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Opens `rel` beneath the directory `root` as an `O_PATH` fd: no symlink,
/// no magic link, no escape. `dir` asks for a directory.
pub fn open_in_root(root: BorrowedFd<'_>, rel: &str, dir: bool) -> rustix::io::Result<OwnedFd> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    rustix::fs::openat2(root, rel, flags, Mode::empty(), IN_ROOT_NO_LINKS)
}

/// An `O_PATH` fd of the directory at `path`, an appliance path (never one
/// inside a VE root: use [`open_in_root`] there); a final symlink refused.
pub fn open_dir(path: impl AsRef<std::path::Path>) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        path.as_ref(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

/// A new, detached filesystem instance: `fsopen` + options + `fsmount`.
/// Options are `key=value` or a bare flag.
pub fn new_fs(
    fstype: &str,
    options: &[&str],
    attrs: MountAttrFlags,
) -> rustix::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for o in options {
        match o.split_once('=') {
            Some((k, v)) => rustix::mount::fsconfig_set_string(&fs, k, v)?,
            None => rustix::mount::fsconfig_set_flag(&fs, *o)?,
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
}

/// A detached copy of the mount at `fd` (a bind mount in waiting).
pub fn clone_tree(fd: BorrowedFd<'_>, recursive: bool) -> rustix::io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(fd, "", flags)
}

/// Attaches the detached mount `mnt` onto the file or directory `at`.
#[doc(alias = "move_mount")]
pub fn attach(mnt: BorrowedFd<'_>, at: BorrowedFd<'_>) -> rustix::io::Result<()> {
    rustix::mount::move_mount(
        mnt,
        "",
        at,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// Attaches `mnt` at the path `at` (for our own staging directories only).
pub fn attach_at(mnt: BorrowedFd<'_>, at: &std::path::Path) -> rustix::io::Result<()> {
    rustix::mount::move_mount(
        mnt,
        "",
        rustix::fs::CWD,
        at,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Covers the file or directory `target` so its content cannot be seen: a
/// file by a bind of `null` (the appliance's `/dev/null`, opened and checked
/// by the caller), a directory by an empty read-only tmpfs.
pub fn mask(target: BorrowedFd<'_>, null: BorrowedFd<'_>) -> std::io::Result<()> {
    let st = rustix::fs::fstat(target)?;
    let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    let cover = if is_dir {
        new_fs(
            "tmpfs",
            &["size=0", "mode=0555"],
            MountAttrFlags::MOUNT_ATTR_RDONLY
                | MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NODEV
                | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        )?
    } else {
        clone_tree(null, false)?
    };
    attach(cover.as_fd(), target)?;
    Ok(())
}

/// Stacks a read-only copy of the mount tree at `target` onto itself.
pub fn make_readonly(target: BorrowedFd<'_>) -> std::io::Result<()> {
    bind_readonly(target, target, true)
}

/// Attaches a read-only (and nosuid, nodev, noexec) copy of the mount at
/// `src` (with its submounts if `recursive`) onto `target`.
pub fn bind_readonly(
    src: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    recursive: bool,
) -> std::io::Result<()> {
    let copy = clone_tree(src, recursive)?;
    crate::sys::mount_setattr(
        copy.as_fd(),
        recursive,
        crate::sys::MountAttr::READONLY_NOSUID_NODEV_NOEXEC,
        None,
    )?;
    attach(copy.as_fd(), target)?;
    Ok(())
}

/// Opens the appliance's `/dev/null` and checks it is the real one (a
/// character device 1:3), as runc learned to (CVE-2025-31133).
pub fn open_dev_null() -> std::io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        "/dev/null",
        OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let chr =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice;
    if !chr || rustix::fs::major(st.st_rdev) != 1 || rustix::fs::minor(st.st_rdev) != 3 {
        return Err(std::io::Error::other(
            "/dev/null is not the null device (1:3)",
        ));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_in_root_refuses_symlinks_and_escapes() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("proc")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", d.path().join("dev")).expect("symlink");
        std::os::unix::fs::symlink("proc", d.path().join("sys")).expect("symlink");
        let root = rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .expect("root");
        assert!(open_in_root(root.as_fd(), "proc", true).is_ok());
        for bad in ["dev", "sys", "dev/passwd"] {
            // ELOOP for a link on the way, ENOTDIR for a final one (O_NOFOLLOW
            // with O_DIRECTORY): refused either way, never ENOENT.
            let e = open_in_root(root.as_fd(), bad, true).expect_err(bad);
            assert!(
                matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR),
                "{bad}: {e}"
            );
        }
        // `..` cannot climb out: it stays at the root.
        let up = open_in_root(root.as_fd(), "../../proc", true).expect("clamped to the root");
        let a = rustix::fs::fstat(&up).expect("stat");
        let b = rustix::fs::stat(d.path().join("proc")).expect("stat");
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
    }

    #[test]
    fn dev_null_is_checked() {
        assert!(open_dev_null().is_ok());
    }
}
