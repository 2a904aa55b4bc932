//! The VE's `/dev`: a small tmpfs made in the staging namespace A, with bind
//! mounts of the appliance's harmless device nodes (a user namespace cannot
//! create device nodes), its own devpts instance and `/dev/shm`.

use super::{Ctx, SetupError};
use crate::mountfd;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountAttrFlags, OpenTreeFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The most ptys a VE's devpts hands out when NUMPTY does not say.
pub const PTY_MAX_DEFAULT: u32 = 256;

/// The kernel's ceiling for a devpts instance (NR_UNIX98_PTY_MAX).
pub const PTY_MAX_KERNEL: u32 = 1 << 20;

/// Device nodes a VE gets.
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Mounts and fills `/dev` in the VE root `root`; `null` is the checked
/// appliance `/dev/null` (the VE's console reads EOF and discards).
/// `/dev` and `/dev/shm` belong to VE root (host ids `uid`, `gid`): its
/// services make sockets there (`/dev/log`).
pub(super) fn populate(
    cx: &Ctx,
    root: BorrowedFd<'_>,
    null: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    pty_max: u32,
    devnodes: &[String],
) -> Result<(), SetupError> {
    let pty_max = format!("max={}", pty_max.clamp(1, PTY_MAX_KERNEL));
    let owner = [format!("uid={uid}"), format!("gid={gid}")];
    let mount_point = cx.at(
        "opening the VE's /dev",
        mountfd::open_in_root(root, "dev", true),
    )?;
    let tmp = new_tmpfs(cx, uid, gid)?;
    cx.at(
        "attaching /dev",
        mountfd::attach(tmp.as_fd(), mount_point.as_fd()),
    )?;
    // From here on everything is in our fresh tmpfs.
    let dev = cx.at("opening /dev", mountfd::open_in_root(root, "dev", true))?;
    fill(cx, dev.as_fd(), uid, gid, devnodes)?;
    let target = |name: &str| {
        cx.at(
            format!("opening /dev/{name}"),
            mountfd::open_in_root(dev.as_fd(), name, false),
        )
    };
    for node in DEV_NODES {
        let at = target(node)?;
        let src = cx.at(
            format!("cloning the appliance's /dev/{node}"),
            rustix::mount::open_tree(
                rustix::fs::CWD,
                format!("/dev/{node}").as_str(),
                OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
            ),
        )?;
        cx.at(
            format!("binding /dev/{node}"),
            mountfd::attach(src.as_fd(), at.as_fd()),
        )?;
    }
    let console = target("console")?;
    let null_copy = cx.at("cloning /dev/null", mountfd::clone_tree(null, false))?;
    cx.at(
        "binding /dev/console",
        mountfd::attach(null_copy.as_fd(), console.as_fd()),
    )?;
    let nosuid_noexec = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    for (dir, fstype, opts) in [
        // Its own pool of ptys, bounded: the kernel's pty.max is shared by
        // every devpts instance outside the initial namespace.
        (
            "pts",
            "devpts",
            // (setup::procview::set_pty_max names the same options.)
            &["newinstance", "ptmxmode=0666", "mode=0620", &pty_max][..],
        ),
        ("shm", "tmpfs", &["mode=1777", &owner[0], &owner[1]][..]),
    ] {
        let at = cx.at(
            format!("opening /dev/{dir}"),
            mountfd::open_in_root(dev.as_fd(), dir, true),
        )?;
        let attrs = if dir == "shm" {
            nosuid_noexec | MountAttrFlags::MOUNT_ATTR_NODEV
        } else {
            nosuid_noexec
        };
        let fs = cx.at(
            format!("creating /dev/{dir}"),
            mountfd::new_fs(fstype, opts, attrs),
        )?;
        cx.at(
            format!("attaching /dev/{dir}"),
            mountfd::attach(fs.as_fd(), at.as_fd()),
        )?;
    }
    Ok(())
}

/// The VE's `/dev` tmpfs, detached and empty.
pub(super) fn new_tmpfs(cx: &Ctx, uid: u32, gid: u32) -> Result<OwnedFd, SetupError> {
    let owner = [format!("uid={uid}"), format!("gid={gid}")];
    cx.at(
        "creating /dev",
        mountfd::new_fs(
            "tmpfs",
            &["mode=0755", "size=64k", &owner[0], &owner[1]],
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        ),
    )
}

/// What `/dev` holds under its mounts: the files the appliance's nodes are
/// bound over, the directories of devpts and `/dev/shm`, the usual links,
/// and DEVNODES (real nodes: the VE's device program allows them;
/// `setup::devnodes` adds and removes them later, live). A restore gets
/// the same (`restore`), and CRIU mounts the rest on it.
pub(super) fn fill(
    cx: &Ctx,
    dev: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    devnodes: &[String],
) -> Result<(), SetupError> {
    for name in DEV_NODES.iter().chain(&["console"]) {
        cx.at(
            format!("creating /dev/{name}"),
            rustix::fs::openat(
                dev,
                *name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            ),
        )?;
    }
    for dir in ["pts", "shm"] {
        cx.at(
            format!("creating /dev/{dir}"),
            rustix::fs::mkdirat(dev, dir, Mode::from_raw_mode(0o755)),
        )?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        cx.at(
            format!("linking /dev/{link}"),
            rustix::fs::symlinkat(target, dev, link),
        )?;
    }
    for path in devnodes {
        let change = super::devnodes::Change {
            add: true,
            path: path.clone(),
        };
        super::devnodes::host_node(path)
            .and_then(|node| super::devnodes::apply(dev, (uid, gid), &change, node))
            .map_err(|e| cx.fail(format!("DEVNODES /dev/{path}"), e))?;
    }
    Ok(())
}
