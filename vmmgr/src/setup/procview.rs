//! The /proc view for a VE that outlived a vmmgr: `vesetup procview`, run
//! by a restarted vmmgr with the adopted VE init's pidfd on fd 3. The old
//! view died with the old vmmgr (its files read ENOTCONN in the VE); the
//! helper clones the new view's files read-only, joins the VE's mount
//! namespace and attaches each over the VE's `/proc/<file>` (opened inside
//! the VE's root without following links). The dead binds stay underneath,
//! locked; the VE sees the live ones.

use crate::mountfd;
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Binds the view's files in the VE whose init is `init` (single-threaded
/// callers only: joins a mount namespace).
pub fn run(init: BorrowedFd<'_>) -> Result<(), String> {
    let dir = std::path::Path::new(crate::procfs::MOUNT_DIR);
    let view = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let mut copies: Vec<(&str, OwnedFd)> = Vec::new();
    for name in crate::procfs::FILES {
        let Ok(src) =
            rustix::fs::openat(&view, *name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        else {
            continue;
        };
        let copy = mountfd::clone_tree(src.as_fd(), false)
            .map_err(|e| format!("copying {}/{name}: {e}", dir.display()))?;
        crate::sys::mount_setattr(
            copy.as_fd(),
            false,
            crate::sys::MountAttr::READONLY_NOSUID_NODEV_NOEXEC,
            None,
        )
        .map_err(|e| format!("making {name} read-only: {e}"))?;
        copies.push((name, copy));
    }
    let root = super::helper::enter_mount_ns(init)?;
    for (name, copy) in copies {
        let target = match mountfd::open_in_root(root.as_fd(), &format!("proc/{name}"), false) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(format!("opening the VE's /proc/{name}: {e}")),
        };
        mountfd::attach(copy.as_fd(), target.as_fd())
            .map_err(|e| format!("binding /proc/{name}: {e}"))?;
    }
    Ok(())
}

/// Runs `helper procview` for the VE whose init is `init`.
pub fn spawn(helper: &std::path::Path, init: &OwnedFd) -> Result<(), String> {
    super::helper::spawn(helper, init, &["procview".to_owned()])
}

/// Sets the VE's devpts `max=` (NUMPTY, live): joins the VE's mount
/// namespace, opens its `/dev/pts` inside its root without following links,
/// checks it is a devpts, and reconfigures that instance (mounted by the
/// appliance at start: VE root cannot do this itself).
pub fn set_pty_max(init: BorrowedFd<'_>, max: u32) -> Result<(), String> {
    let root = super::helper::enter_mount_ns(init)?;
    let pts = mountfd::open_in_root(root.as_fd(), "dev/pts", true)
        .map_err(|e| format!("opening the VE's /dev/pts: {e}"))?;
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let st = rustix::fs::fstatfs(&pts).map_err(|e| format!("statfs /dev/pts: {e}"))?;
    if st.f_type != DEVPTS_SUPER_MAGIC {
        return Err("the VE's /dev/pts is not its devpts".into());
    }
    let fs = rustix::mount::fspick(
        &pts,
        "",
        rustix::mount::FsPickFlags::FSPICK_EMPTY_PATH | rustix::mount::FsPickFlags::FSPICK_CLOEXEC,
    )
    .map_err(|e| format!("picking the VE's devpts: {e}"))?;
    // A reconfiguration resets every option it does not name: name them all
    // (as at setup, `setup::dev`), or ptmx would become 0000.
    for (k, v) in [
        ("ptmxmode", "0666".to_owned()),
        ("mode", "0620".to_owned()),
        ("max", max.to_string()),
    ] {
        rustix::mount::fsconfig_set_string(&fs, k, v.as_str())
            .map_err(|e| format!("devpts {k}={v}: {e}"))?;
    }
    rustix::mount::fsconfig_reconfigure(&fs).map_err(|e| format!("devpts max={max}: {e}"))?;
    Ok(())
}

/// Runs `helper ptymax N` for the VE whose init is `init`.
pub fn spawn_pty_max(helper: &std::path::Path, init: &OwnedFd, max: u32) -> Result<(), String> {
    super::helper::spawn(helper, init, &["ptymax".to_owned(), max.to_string()])
}
