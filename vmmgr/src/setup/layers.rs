//! The VE's root filesystem: idmapped layers attached in the staging mount
//! namespace A, and the overlay on them, mounted by a helper inside the VE's
//! user namespace and handed back as a detached mount.

use super::{userns, Ctx, SetupError, Spec};
use crate::mountfd;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountAttrFlags, OpenTreeFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Mount points the VE's root must have as plain directories: the overlay
/// helper creates missing ones (as VE root), and refuses symlinks.
const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys"];

/// Builds the overlay root and attaches it in A at `<stage>/root`; returns
/// an `O_PATH` fd of its root directory.
pub(super) fn build_root(
    spec: &Spec,
    cx: &Ctx,
    userns: BorrowedFd<'_>,
) -> Result<OwnedFd, SetupError> {
    let template = idmapped_tree(cx, &spec.template, userns, true)?;
    let private = idmapped_tree(cx, &spec.private, userns, false)?;

    // A staging tmpfs owned by VE root (the overlay helper works in it).
    let stage = &spec.root;
    let opts = [
        "mode=0700".to_owned(),
        format!("uid={}", spec.uid_base),
        format!("gid={}", spec.gid_base),
    ];
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let tmp = cx.at(
        "creating the staging tmpfs",
        mountfd::new_fs(
            "tmpfs",
            &opts,
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
        ),
    )?;
    cx.at(
        format!("attaching the staging tmpfs on {}", stage.display()),
        mountfd::attach_at(tmp.as_fd(), stage),
    )?;
    // Neutral names: they show in the overlay's options in the VE's mountinfo.
    for d in ["lower", "data", "root"] {
        cx.at(
            format!("creating {d} in the stage"),
            std::fs::create_dir(stage.join(d)),
        )?;
    }
    cx.at(
        "attaching the template layer",
        mountfd::attach_at(template.as_fd(), &stage.join("lower")),
    )?;
    cx.at(
        "attaching the private area",
        mountfd::attach_at(private.as_fd(), &stage.join("data")),
    )?;

    let overlay = overlay_from_helper(spec, cx, userns)?;
    let root_dir = stage.join("root");
    cx.at(
        "attaching the overlay root",
        mountfd::attach_at(overlay.as_fd(), &root_dir),
    )?;
    cx.at(
        "opening the overlay root",
        rustix::fs::open(
            &root_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ),
    )
}

/// A detached copy of the mount at `path`, idmapped through `userns`.
fn idmapped_tree(
    cx: &Ctx,
    path: &Path,
    userns: BorrowedFd<'_>,
    readonly: bool,
) -> Result<OwnedFd, SetupError> {
    let fd = cx.at(
        format!("open_tree {}", path.display()),
        rustix::mount::open_tree(
            rustix::fs::CWD,
            path,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        ),
    )?;
    let attr = if readonly {
        crate::sys::MountAttr::READONLY
    } else {
        crate::sys::MountAttr::NONE
    };
    cx.at(
        format!("idmapping {}", path.display()),
        crate::sys::mount_setattr(fd.as_fd(), false, attr, Some(userns)),
    )?;
    Ok(fd)
}

/// Forks the overlay helper: VE root in the VE's user namespace, in its own
/// copy of A, mounts the overlay (`userxattr`), makes the mount points, and
/// sends back a detached clone of the overlay mount.
fn overlay_from_helper(
    spec: &Spec,
    cx: &Ctx,
    userns: BorrowedFd<'_>,
) -> Result<OwnedFd, SetupError> {
    let (ours, theirs) = cx.at("socketpair", crate::fdpass::pair())?;
    // SAFETY: vesetup is single-threaded.
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match cx.at("forking the overlay helper", forked)? {
        None => {
            drop(ours);
            let _ = rustix::thread::set_name(c"vesetup-overlay");
            let msg = match overlay_helper(spec, cx, userns) {
                Ok(tree) => crate::fdpass::send(theirs.as_fd(), b"", Some(tree.as_fd())),
                Err(e) => crate::fdpass::send(theirs.as_fd(), super::chain(&e).as_bytes(), None),
            };
            std::process::exit(i32::from(msg.is_err()));
        }
        Some(pid) => {
            drop(theirs);
            let mut buf = [0u8; 2048];
            let got = crate::fdpass::recv(ours.as_fd(), &mut buf);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            match got {
                Ok((0, Some(tree))) => Ok(tree),
                Ok((n, _)) if n > 0 => Err(cx.fail(
                    "mounting the overlay root",
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Ok(_) => Err(cx.fail("mounting the overlay root", "the helper sent nothing")),
                Err(e) => Err(cx.fail("mounting the overlay root", e.to_string())),
            }
        }
    }
}

fn overlay_helper(spec: &Spec, cx: &Ctx, userns: BorrowedFd<'_>) -> Result<OwnedFd, SetupError> {
    userns::become_ve_root(cx, userns)?;
    cx.at(
        "unsharing the overlay helper's mount namespace",
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
    )?;
    cx.at("entering the stage", rustix::process::chdir(&spec.root))?;
    let opts = c"lowerdir=lower,upperdir=data/upper,workdir=data/work,userxattr";
    cx.at(
        "mounting the overlay (lowerdir=lower,upperdir=data/upper,workdir=data/work,userxattr)",
        rustix::mount::mount(
            "overlay",
            "root",
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(opts),
        ),
    )?;
    let root = cx.at(
        "opening the overlay root",
        rustix::fs::open(
            "root",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ),
    )?;
    for d in MOUNT_POINTS {
        ensure_dir(cx, root.as_fd(), d)?;
    }
    cx.at(
        "cloning the overlay mount",
        rustix::mount::open_tree(
            rustix::fs::CWD,
            "root",
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        ),
    )
}

/// Makes sure `rel` is a plain directory in the VE's root (creating it if
/// missing); a symlink or a file there fails the start.
fn ensure_dir(cx: &Ctx, root: BorrowedFd<'_>, rel: &str) -> Result<(), SetupError> {
    match mountfd::open_in_root(root, rel, true) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::NOENT) => cx.at(
            format!("creating /{rel} in the VE"),
            rustix::fs::mkdirat(root, rel, Mode::from_raw_mode(0o755)),
        ),
        Err(e) => Err(cx.fail(
            format!("checking /{rel} in the VE"),
            format!(
                "/{rel} must be a directory, not a symlink or a file ({e}); \
                 fix it with `vzctl mount` and look in the VE's root"
            ),
        )),
    }
}
