//! DEVNODES in a running VE's /dev: `vesetup devnodes UID:GID +net/tun
//! -fuse`, run by vmmgr with the VE init's pidfd on fd 3. The helper reads
//! the numbers of the appliance's nodes, joins the VE's mount namespace and
//! there, every path opened inside the VE's root without following links,
//! makes the node (a user namespace cannot: the appliance can, on the VE's
//! /dev tmpfs, which it mounted) owned by VE root (host ids UID:GID), as
//! OpenVZ makes it in a container; a node is removed only if what is there
//! is that device. The cgroup device program (daemon::devices) is what
//! grants access; the node only makes it reachable by its usual name, and
//! nothing on the appliance's own /dev changes.

use crate::mountfd;
use rustix::fs::{FileType, Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// One change: add (`+path`) or remove (`-path`) `/dev/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub add: bool,
    pub path: String,
}

impl Change {
    /// Parses `+net/tun` / `-fuse` (paths checked like DEVNODES).
    pub fn parse(arg: &str) -> Result<Change, String> {
        let (add, path) = match arg.split_at_checked(1) {
            Some(("+", p)) => (true, p),
            Some(("-", p)) => (false, p),
            _ => return Err(format!("{arg:?}: use +path or -path")),
        };
        let ok = vzconfig::resources::parse_devnodes(&format!("{path}:rw"))?;
        Ok(Change {
            add,
            path: ok[0].path.clone(),
        })
    }
}

fn err(what: String) -> impl FnOnce(rustix::io::Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// Makes the file behind the `O_PATH` descriptor `fd` VE root's.
fn give(fd: &OwnedFd, owner: (u32, u32)) -> rustix::io::Result<()> {
    rustix::fs::chownat(
        fd,
        "",
        Some(rustix::process::Uid::from_raw(owner.0)),
        Some(rustix::process::Gid::from_raw(owner.1)),
        rustix::fs::AtFlags::EMPTY_PATH,
    )
}

/// The type (`S_IFCHR`/`S_IFBLK`) and number of the appliance's
/// `/dev/<path>`.
pub fn host_node(path: &str) -> Result<(u32, u64), String> {
    let host = format!("/dev/{path}");
    let st = rustix::fs::lstat(host.as_str()).map_err(err(host.clone()))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::CharacterDevice => Ok((libc::S_IFCHR, st.st_rdev)),
        FileType::BlockDevice => Ok((libc::S_IFBLK, st.st_rdev)),
        _ => Err(format!("{host} is not a device node on the appliance")),
    }
}

/// Applies `changes` in the mount namespace of the VE whose init is `init`.
/// Single-threaded callers only (joins a mount namespace).
pub fn run(init: BorrowedFd<'_>, owner: (u32, u32), changes: &[Change]) -> Result<(), String> {
    // The appliance's nodes, while we still see them.
    let mut sources = Vec::new();
    for c in changes {
        sources.push((c, host_node(&c.path)?));
    }
    let root = super::helper::enter_mount_ns(init)?;
    let dev = mountfd::open_in_root(root.as_fd(), "dev", true)
        .map_err(err("opening the VE's /dev".into()))?;
    for (c, node) in sources {
        apply(dev.as_fd(), owner, c, node)?;
    }
    Ok(())
}

/// Makes or removes one node in the VE's `/dev` (the directory `dev`),
/// owned by VE root (host ids `owner`); `node` is the appliance's (type,
/// number).
pub fn apply(
    dev: BorrowedFd<'_>,
    owner: (u32, u32),
    c: &Change,
    (kind, rdev): (u32, u64),
) -> Result<(), String> {
    let (parent, name) = match c.path.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, c.path.as_str()),
    };
    // The parent directories, made (as directories, never through a
    // link) when adding.
    let mut dir = rustix::io::dup(dev).map_err(err("dup".into()))?;
    if let Some(p) = parent {
        for part in p.split('/') {
            let next = match mountfd::open_in_root(dir.as_fd(), part, true) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if c.add => {
                    rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755))
                        .map_err(err(format!("creating /dev/.../{part}")))?;
                    let made = mountfd::open_in_root(dir.as_fd(), part, true)
                        .map_err(err(format!("opening /dev/.../{part}")))?;
                    // VE root's, as the rest of its /dev.
                    give(&made, owner)
                        .map_err(err(format!("giving /dev/.../{part} to VE root")))?;
                    made
                }
                Err(rustix::io::Errno::NOENT) => break,
                Err(e) => return Err(format!("opening /dev/{p}: {e}")),
            };
            dir = next;
        }
    }
    let existing = mountfd::open_in_root(dir.as_fd(), name, false);
    let is_ours = |fd: &OwnedFd| {
        rustix::fs::fstat(fd).is_ok_and(|s| {
            let ft = FileType::from_raw_mode(s.st_mode);
            (ft == FileType::CharacterDevice || ft == FileType::BlockDevice) && s.st_rdev == rdev
        })
    };
    match (c.add, existing) {
        (true, Ok(fd)) if is_ours(&fd) => {}
        (true, Ok(_)) => {
            return Err(format!(
                "/dev/{} exists in the VE and is not the appliance's node: remove it first",
                c.path
            ))
        }
        (true, Err(rustix::io::Errno::NOENT)) => {
            let path = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: a directory fd we own and a NUL-terminated name.
            let rc = unsafe {
                libc::mknodat(
                    std::os::fd::AsRawFd::as_raw_fd(&dir),
                    path.as_ptr(),
                    kind | 0o600,
                    rdev,
                )
            };
            if rc < 0 {
                return Err(format!(
                    "creating /dev/{}: {}",
                    c.path,
                    std::io::Error::last_os_error()
                ));
            }
            let made = rustix::fs::openat(
                &dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(err(format!("opening the new /dev/{}", c.path)))?;
            give(&made, owner).map_err(err(format!("giving /dev/{} to VE root", c.path)))?;
        }
        (true, Err(e)) => return Err(format!("opening /dev/{}: {e}", c.path)),
        (false, Ok(fd)) if is_ours(&fd) => {
            drop(fd);
            rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())
                .map_err(err(format!("removing /dev/{}", c.path)))?;
        }
        // Not there, or not the device: nothing of ours to remove.
        (false, _) => {}
    }
    Ok(())
}

/// Runs `helper devnodes UID:GID <changes>` for the VE whose init is `init`.
pub fn spawn(
    helper: &std::path::Path,
    init: &OwnedFd,
    owner: (u32, u32),
    changes: &[Change],
) -> Result<(), String> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut args = vec!["devnodes".to_owned(), format!("{}:{}", owner.0, owner.1)];
    args.extend(
        changes
            .iter()
            .map(|c| format!("{}{}", if c.add { '+' } else { '-' }, c.path)),
    );
    super::helper::spawn(helper, init, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_and_stay_below_dev() {
        assert_eq!(
            Change::parse("+net/tun"),
            Ok(Change {
                add: true,
                path: "net/tun".into()
            })
        );
        assert!(!Change::parse("-fuse").expect("ok").add);
        for bad in ["net/tun", "+../etc/passwd", "+", "*fuse", "+a//b"] {
            assert!(Change::parse(bad).is_err(), "{bad}");
        }
    }
}
