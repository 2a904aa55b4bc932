//! The cgroups a VE's own init made under its delegated group (systemd's
//! `init.scope`, `system.slice/<unit>.service`), with the controllers each
//! enabled for its children and VE root as their owner.
//!
//! CRIU 3.17 (`--manage-cgroups=soft`) makes the groups again as appliance
//! root and enables no controller in them (cgroup v2's
//! `cgroup.subtree_control` is not in its images): the VE's init would
//! come back unable to manage its own groups, and a watch on a controller's
//! file (systemd's on `memory.events`) fails the restore. So vmmgr records
//! the tree just before the dump ([`record`]) and vesetup makes it again,
//! as the VE had it, before CRIU runs ([`apply`]); CRIU then finds the
//! groups there and moves the processes into them.
//!
//! The walk reads groups VE root may make: directories are opened beneath
//! the delegated group without following links, and the record is
//! bounded. The apply side checks every name and works relative to
//! descriptors, before any VE process exists.

use rustix::fs::{AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The record's name in the images directory.
pub const RECORD: &str = "vz.cgroups";

const MAX_GROUPS: usize = 4096;
const MAX_DEPTH: usize = 16;

/// One group, by its path below the delegated group ("" for itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub path: String,
    /// `cgroup.subtree_control`, space-separated.
    pub controllers: String,
}

fn open_dir(at: BorrowedFd<'_>, rel: &str) -> rustix::io::Result<OwnedFd> {
    super::open_dir_below(at, rel, rustix::fs::ResolveFlags::empty())
}

/// Reads the tree below the VE's delegated group `delegated`.
pub fn record(delegated: &std::path::Path) -> Result<Vec<u8>, String> {
    let top = crate::mountfd::open_dir(delegated)
        .map_err(|e| format!("opening {}: {e}", delegated.display()))?;
    let groups = walk(top.as_fd())?;
    postcard::to_stdvec(&groups).map_err(|e| format!("encoding the cgroup record: {e}"))
}

fn walk(top: BorrowedFd<'_>) -> Result<Vec<Group>, String> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = match open_dir(top, &rel) {
            Ok(d) => d,
            // (Removed since its parent was read.)
            Err(rustix::io::Errno::NOENT) if !rel.is_empty() => continue,
            Err(e) => return Err(format!("opening the VE's cgroup {rel:?}: {e}")),
        };
        let controllers = match rustix::fs::openat(
            &dir,
            "cgroup.subtree_control",
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(f) => {
                let mut s = String::new();
                use std::io::Read;
                std::fs::File::from(f)
                    .take(4096)
                    .read_to_string(&mut s)
                    .map_err(|e| format!("reading {rel:?}/cgroup.subtree_control: {e}"))?;
                s.split_whitespace().collect::<Vec<_>>().join(" ")
            }
            Err(e) => return Err(format!("reading {rel:?}/cgroup.subtree_control: {e}")),
        };
        let list =
            rustix::fs::Dir::read_from(&dir).map_err(|e| format!("listing cgroup {rel:?}: {e}"))?;
        for e in list {
            let e = e.map_err(|e| format!("listing cgroup {rel:?}: {e}"))?;
            if e.file_type() != rustix::fs::FileType::Directory {
                continue;
            }
            let raw = e.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(raw) else {
                return Err(format!(
                    "cgroup {rel:?} has a child whose name is not UTF-8"
                ));
            };
            let path = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            if path.matches('/').count() >= MAX_DEPTH {
                return Err(format!(
                    "cgroup {path:?} is more than {MAX_DEPTH} levels deep"
                ));
            }
            stack.push(path);
        }
        out.push(Group {
            path: rel,
            controllers,
        });
        if out.len() > MAX_GROUPS {
            return Err(format!("the VE has more than {MAX_GROUPS} cgroups"));
        }
    }
    out.sort_by(|a, b| {
        let depth = |g: &Group| g.path.split('/').filter(|p| !p.is_empty()).count();
        depth(a).cmp(&depth(b)).then_with(|| a.path.cmp(&b.path))
    });
    Ok(out)
}

fn decode(raw: &[u8]) -> Result<Vec<Group>, String> {
    let groups: Vec<Group> =
        postcard::from_bytes(raw).map_err(|e| format!("the cgroup record is damaged: {e}"))?;
    if groups.len() > MAX_GROUPS {
        return Err(format!(
            "the cgroup record has more than {MAX_GROUPS} groups"
        ));
    }
    Ok(groups)
}

/// Makes the recorded groups below the delegated group `top` (which the
/// restore made, empty), owned by `owner` (the VE's root on the
/// appliance), parents first. Their controllers come later ([`enable`]):
/// CRIU first moves the VE's init through `top` itself, which the kernel
/// refuses once `top` hands controllers to its children.
pub fn apply(top: BorrowedFd<'_>, raw: &[u8], owner: (u32, u32)) -> Result<(), String> {
    for g in &decode(raw)? {
        make(top, g, owner).map_err(|e| format!("cgroup {:?}: {e}", g.path))?;
    }
    Ok(())
}

/// Enables each recorded group's controllers for its children, parents
/// first: at CRIU's `post-setup-namespaces`, when the VE's init has left
/// `top` for its own group and no other process is restored yet (and
/// before the VE's watches on controllers' files are).
pub fn enable(top: BorrowedFd<'_>, raw: &[u8]) -> Result<(), String> {
    for g in &decode(raw)? {
        controllers(top, g).map_err(|e| format!("cgroup {:?}: {e}", g.path))?;
    }
    Ok(())
}

/// "" (the top) or a plain relative path.
fn check(path: &str) -> Result<(), String> {
    if path.is_empty() || super::plain_relative(path, MAX_DEPTH) {
        Ok(())
    } else {
        Err("not a plain relative path".into())
    }
}

fn make(top: BorrowedFd<'_>, g: &Group, owner: (u32, u32)) -> Result<(), String> {
    check(&g.path)?;
    if g.path.is_empty() {
        return Ok(());
    }
    let (parent, name) = match g.path.rsplit_once('/') {
        Some((p, n)) => (
            open_dir(top, p).map_err(|e| format!("opening its parent: {e}"))?,
            n,
        ),
        None => (
            open_dir(top, "").map_err(|e| format!("opening the top: {e}"))?,
            g.path.as_str(),
        ),
    };
    match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(format!("making it: {e}")),
    }
    // As when VE root made it: the group and every file in it its own.
    let dir = open_dir(top, &g.path).map_err(|e| format!("opening it: {e}"))?;
    let (uid, gid) = (
        Some(rustix::fs::Uid::from_raw(owner.0)),
        Some(rustix::fs::Gid::from_raw(owner.1)),
    );
    rustix::fs::fchown(&dir, uid, gid).map_err(|e| format!("setting its owner: {e}"))?;
    let list = rustix::fs::Dir::read_from(&dir).map_err(|e| format!("listing it: {e}"))?;
    for e in list.flatten() {
        if e.file_type() == rustix::fs::FileType::RegularFile {
            rustix::fs::chownat(&dir, e.file_name(), uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|err| format!("setting the owner of {:?}: {err}", e.file_name()))?;
        }
    }
    Ok(())
}

fn controllers(top: BorrowedFd<'_>, g: &Group) -> Result<(), String> {
    check(&g.path)?;
    if g.controllers.is_empty() {
        return Ok(());
    }
    let line: String = g
        .controllers
        .split_whitespace()
        .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|c| format!("+{c} "))
        .collect();
    let dir = open_dir(top, &g.path).map_err(|e| format!("opening it: {e}"))?;
    let f = rustix::fs::openat(
        &dir,
        "cgroup.subtree_control",
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening cgroup.subtree_control: {e}"))?;
    std::fs::File::from(f)
        .write_all(line.trim_end().as_bytes())
        .map_err(|e| format!("enabling {}: {e}", g.controllers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree that looks like cgroupfs (directories with a
    /// `cgroup.subtree_control` each).
    fn fake(root: &std::path::Path, groups: &[(&str, &str)]) {
        for (p, c) in groups {
            let d = root.join(p);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(d.join("cgroup.subtree_control"), format!("{c}\n")).expect("file");
        }
    }

    #[test]
    fn the_tree_is_read_parents_first() {
        let t = tempfile::tempdir().expect("tempdir");
        fake(
            t.path(),
            &[
                ("", "cpu memory pids"),
                ("init.scope", ""),
                ("system.slice", "memory"),
                ("system.slice/systemd-journald.service", ""),
            ],
        );
        let top = crate::mountfd::open_dir(t.path()).expect("open");
        let groups = walk(top.as_fd()).expect("walk");
        let got: Vec<(&str, &str)> = groups
            .iter()
            .map(|g| (g.path.as_str(), g.controllers.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("", "cpu memory pids"),
                ("init.scope", ""),
                ("system.slice", "memory"),
                ("system.slice/systemd-journald.service", ""),
            ]
        );
    }

    #[test]
    fn a_record_names_only_groups_below_the_top() {
        let t = tempfile::tempdir().expect("tempdir");
        let top_dir = t.path().join("ve");
        std::fs::create_dir(&top_dir).expect("dir");
        std::os::unix::fs::symlink(t.path(), top_dir.join("out")).expect("link");
        let top = crate::mountfd::open_dir(&top_dir).expect("open");
        for bad in ["../x", "/abs", "a//b", "out/x", "."] {
            let raw = postcard::to_stdvec(&vec![Group {
                path: bad.into(),
                controllers: String::new(),
            }])
            .expect("encode");
            let owner = (
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw(),
            );
            let e = apply(top.as_fd(), &raw, owner).expect_err(bad);
            assert!(e.contains(bad) || e.contains("cgroup"), "{e}");
        }
        assert!(!t.path().join("x").exists());
        let e = apply(top.as_fd(), b"\xff\xff", (0, 0)).expect_err("damaged");
        assert!(e.contains("damaged"), "{e}");
    }
}
