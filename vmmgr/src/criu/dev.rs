//! What a VE keeps on its `/dev` besides the nodes it is given: the
//! directories its init made (systemd's `/dev/mqueue`), its links
//! (`/dev/log`, `/dev/core`, `/dev/initctl`), small files and fifos.
//!
//! `/dev` is an external mount to CRIU (the nodes on it could not be made
//! again inside the VE's user namespace), so its images hold nothing of it.
//! vmmgr records it beside the images just before the dump ([`record`]),
//! and vesetup puts it back on the fresh `/dev` before CRIU restores
//! ([`apply`]), so the mounts CRIU makes there find their mount points and
//! the VE's links are where its programs left them. Owners are kept
//! relative to the VE's id range: DEST of a migration maps the VE
//! elsewhere.
//!
//! The walk reads a tree the VE can write: every directory is opened
//! beneath the one before without following links, nothing is followed
//! across a mount (a mount point is recorded as an empty directory or
//! file), and the record is bounded (the tmpfs itself holds 64 KiB). The
//! apply side writes only into the fresh `/dev`, which no VE process can
//! reach yet, relative to directory descriptors, each path checked.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The record's name in the images directory.
pub const RECORD: &str = "vz.dev";

/// At most this many entries, this deep, this many bytes of file data.
const MAX_ENTRIES: usize = 1024;
const MAX_DEPTH: usize = 8;
const MAX_BYTES: usize = 256 * 1024;

/// One entry of the VE's `/dev`, by its path relative to `/dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    /// Owner inside the VE (0 is VE root).
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (with setgid and sticky).
    pub mode: u32,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum What {
    Dir,
    Link(String),
    File(Vec<u8>),
    Fifo,
}

/// Reads the `/dev` of the VE whose init is `init` (ids `base` = its
/// range's first uid and gid on the appliance) into a record.
pub fn record(init: i32, base: (u32, u32), range: u32) -> Result<Vec<u8>, String> {
    let root = rustix::fs::open(
        format!("/proc/{init}/root").as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening the VE's root: {e}"))?;
    let dev = super::open_dir_below(root.as_fd(), "dev", ResolveFlags::empty())
        .map_err(|e| format!("opening its /dev: {e}"))?;
    let entries = walk(dev, base, range)?;
    postcard::to_stdvec(&entries).map_err(|e| format!("encoding the /dev record: {e}"))
}

/// The entries of the directory `dev`, parents before children.
fn walk(dev: OwnedFd, base: (u32, u32), range: u32) -> Result<Vec<Entry>, String> {
    let top = rustix::fs::fstat(&dev).map_err(|e| format!("reading /dev: {e}"))?;
    let inside = |id: u32, b: u32| id.checked_sub(b).filter(|i| *i < range);
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut stack: Vec<(String, OwnedFd, usize)> = vec![(String::new(), dev, 0)];
    while let Some((rel, dir, depth)) = stack.pop() {
        let list =
            rustix::fs::Dir::read_from(&dir).map_err(|e| format!("listing /dev/{rel}: {e}"))?;
        let mut names: Vec<String> = Vec::new();
        let mut not_utf8 = 0usize;
        for e in list {
            let e = e.map_err(|e| format!("listing /dev/{rel}: {e}"))?;
            let raw = e.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            // (Bounded while reading: inodes cost a tmpfs no blocks.)
            if out.len() + names.len() + not_utf8 >= MAX_ENTRIES {
                return Err(format!("the VE's /dev has more than {MAX_ENTRIES} entries"));
            }
            match std::str::from_utf8(raw) {
                Ok(n) => names.push(n.to_owned()),
                Err(_) => not_utf8 += 1,
            }
        }
        if not_utf8 > 0 {
            log::warn!("/dev/{rel}: {not_utf8} entries whose names are not UTF-8 are not kept");
        }
        names.sort();
        for name in names {
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let st = match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // (Removed since the listing.)
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(format!("reading /dev/{path}: {e}")),
            };
            let kind = FileType::from_raw_mode(st.st_mode);
            let (Some(uid), Some(gid)) = (inside(st.st_uid, base.0), inside(st.st_gid, base.1))
            else {
                // Not the VE's (a node the appliance bound there).
                continue;
            };
            let mode = st.st_mode & 0o7777;
            let entry = |what| Entry {
                path: path.clone(),
                uid,
                gid,
                mode,
                what,
            };
            if st.st_dev != top.st_dev {
                // A mount point: what is mounted there is CRIU's (or the
                // restore's own); only its place is kept.
                out.push(if kind == FileType::Directory {
                    entry(What::Dir)
                } else {
                    entry(What::File(Vec::new()))
                });
            } else {
                match kind {
                    FileType::Directory => {
                        if depth + 1 >= MAX_DEPTH {
                            return Err(format!(
                                "/dev/{path} is more than {MAX_DEPTH} levels deep"
                            ));
                        }
                        out.push(entry(What::Dir));
                        let sub = super::open_dir_below(dir.as_fd(), &name, ResolveFlags::NO_XDEV)
                            .map_err(|e| format!("opening /dev/{path}: {e}"))?;
                        stack.push((path.clone(), sub, depth + 1));
                    }
                    FileType::Symlink => {
                        let target = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new())
                            .map_err(|e| format!("reading the link /dev/{path}: {e}"))?;
                        match target.into_string() {
                            Ok(t) => out.push(entry(What::Link(t))),
                            Err(_) => log::warn!(
                                "/dev/{path}: a link to a name that is not UTF-8 is not kept"
                            ),
                        }
                    }
                    FileType::RegularFile => {
                        // The VE runs: what is there now may not be what
                        // was seen. Never across a mount (a pty or a /proc
                        // file bound over it), never as a terminal, and
                        // only the very file seen.
                        let f = rustix::fs::openat2(
                            &dir,
                            name.as_str(),
                            OFlags::RDONLY
                                | OFlags::NOFOLLOW
                                | OFlags::NOCTTY
                                | OFlags::CLOEXEC
                                | OFlags::NONBLOCK,
                            Mode::empty(),
                            rustix::fs::ResolveFlags::BENEATH
                                | rustix::fs::ResolveFlags::NO_XDEV
                                | rustix::fs::ResolveFlags::NO_SYMLINKS
                                | rustix::fs::ResolveFlags::NO_MAGICLINKS,
                        )
                        .map_err(|e| format!("opening /dev/{path}: {e}"))?;
                        let now = rustix::fs::fstat(&f)
                            .map_err(|e| format!("reading /dev/{path}: {e}"))?;
                        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)
                            || FileType::from_raw_mode(now.st_mode) != FileType::RegularFile
                        {
                            return Err(format!("/dev/{path} changed while it was read"));
                        }
                        let mut data = Vec::new();
                        let left = (MAX_BYTES - bytes) as u64 + 1;
                        std::fs::File::from(f)
                            .take(left)
                            .read_to_end(&mut data)
                            .map_err(|e| format!("reading /dev/{path}: {e}"))?;
                        bytes += data.len();
                        if bytes > MAX_BYTES {
                            return Err(format!(
                                "the files in the VE's /dev hold more than {} KiB",
                                MAX_BYTES / 1024
                            ));
                        }
                        out.push(entry(What::File(data)));
                    }
                    FileType::Fifo => out.push(entry(What::Fifo)),
                    // Sockets are bound again by CRIU; nodes are the
                    // appliance's (DEVNODES: the restore makes them).
                    _ => {}
                }
            }
            if out.len() > MAX_ENTRIES {
                return Err(format!("the VE's /dev has more than {MAX_ENTRIES} entries"));
            }
        }
    }
    // Parents before children whatever order the stack gave.
    out.sort_by(|a, b| {
        let depth = |e: &Entry| e.path.matches('/').count();
        depth(a).cmp(&depth(b)).then_with(|| a.path.cmp(&b.path))
    });
    Ok(out)
}

/// Puts the record `raw` back on the fresh `/dev` opened as `dev` (ids
/// shifted by `base`; an id outside `range` is refused). What is already
/// there (what the restore made itself) is left as it is.
pub fn apply(dev: BorrowedFd<'_>, raw: &[u8], base: (u32, u32), range: u32) -> Result<(), String> {
    let entries: Vec<Entry> =
        postcard::from_bytes(raw).map_err(|e| format!("the /dev record is damaged: {e}"))?;
    if entries.len() > MAX_ENTRIES {
        return Err(format!(
            "the /dev record has more than {MAX_ENTRIES} entries"
        ));
    }
    for e in &entries {
        made(dev, e, base, range).map_err(|err| format!("/dev/{}: {err}", e.path))?;
    }
    Ok(())
}

fn made(dev: BorrowedFd<'_>, e: &Entry, base: (u32, u32), range: u32) -> Result<(), String> {
    if !super::plain_relative(&e.path, MAX_DEPTH) {
        return Err("not a plain relative path".into());
    }
    if e.uid >= range || e.gid >= range {
        return Err(format!("owner {}:{} is outside the VE's ids", e.uid, e.gid));
    }
    let (parent_rel, name) = match e.path.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, e.path.as_str()),
    };
    let parent = match parent_rel {
        Some(p) => Some(
            super::open_dir_below(dev, p, ResolveFlags::empty())
                .map_err(|err| format!("opening its directory: {err}"))?,
        ),
        None => None,
    };
    let at = parent.as_ref().map_or(dev, |p| p.as_fd());
    let mode = Mode::from_raw_mode(e.mode & 0o7777);
    let result = match &e.what {
        What::Dir => rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o700)),
        What::Link(target) => rustix::fs::symlinkat(OsStr::from_bytes(target.as_bytes()), at, name),
        What::Fifo => rustix::fs::mknodat(at, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0),
        What::File(data) => rustix::fs::openat(
            at,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .and_then(|f| {
            use std::io::Write;
            std::fs::File::from(f).write_all(data).map_err(|err| {
                rustix::io::Errno::from_io_error(&err).unwrap_or(rustix::io::Errno::IO)
            })
        }),
    };
    match result {
        Ok(()) => {}
        // The restore's own (fill's nodes, pts, shm, the usual links).
        Err(rustix::io::Errno::EXIST) => return Ok(()),
        Err(err) => return Err(format!("making it: {err}")),
    }
    rustix::fs::chownat(
        at,
        name,
        Some(rustix::fs::Uid::from_raw(base.0 + e.uid)),
        Some(rustix::fs::Gid::from_raw(base.1 + e.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|err| format!("setting its owner: {err}"))?;
    if !matches!(e.what, What::Link(_)) {
        rustix::fs::chmodat(at, name, mode, AtFlags::empty())
            .map_err(|err| format!("setting its mode: {err}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> (u32, u32) {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    }

    #[test]
    fn a_dev_tree_goes_round() {
        let src = tempfile::tempdir().expect("tempdir");
        let p = src.path();
        std::fs::create_dir(p.join("mqueue")).expect("dir");
        std::fs::create_dir_all(p.join("a/b")).expect("dirs");
        std::os::unix::fs::symlink("/run/systemd/journal/dev-log", p.join("log")).expect("link");
        std::os::unix::fs::symlink("../mqueue", p.join("a/b/up")).expect("link");
        std::fs::write(p.join("a/note"), b"kept").expect("file");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .expect("fifo");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p.join("mqueue"), std::fs::Permissions::from_mode(0o1777))
            .expect("mode");
        let dev = crate::mountfd::open_dir(p).expect("open");
        let dev = rustix::fs::openat(&dev, ".", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .expect("reopen");
        // Our own ids are the VE's range start: owners are 0 inside.
        let entries = walk(dev, me(), 65536).expect("walk");
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            ["a", "fifo", "log", "mqueue", "a/b", "a/note", "a/b/up"]
        );
        assert!(entries.iter().all(|e| e.uid == 0 && e.gid == 0));
        let raw = postcard::to_stdvec(&entries).expect("encode");

        let dst = tempfile::tempdir().expect("tempdir");
        // What the restore made itself stays.
        std::fs::write(dst.path().join("log"), b"fill's").expect("file");
        let d = crate::mountfd::open_dir(dst.path()).expect("open");
        apply(d.as_fd(), &raw, me(), 65536).expect("apply");
        let q = dst.path();
        let md = std::fs::symlink_metadata(q.join("mqueue")).expect("mqueue");
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(std::fs::read(q.join("a/note")).expect("note"), b"kept");
        assert_eq!(
            std::fs::read_link(q.join("a/b/up")).expect("up"),
            std::path::Path::new("../mqueue")
        );
        assert_eq!(std::fs::read(q.join("log")).expect("log"), b"fill's");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(q.join("fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo());
        assert_eq!(
            std::fs::symlink_metadata(q.join("fifo"))
                .expect("fifo")
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
    }

    #[test]
    fn a_record_cannot_write_outside_or_lend_foreign_ids() {
        let dst = tempfile::tempdir().expect("tempdir");
        let inner = dst.path().join("dev");
        std::fs::create_dir(&inner).expect("dir");
        std::os::unix::fs::symlink(dst.path(), inner.join("out")).expect("link");
        let d = crate::mountfd::open_dir(&inner).expect("open");
        let one = |path: &str, uid: u32| {
            postcard::to_stdvec(&vec![Entry {
                path: path.into(),
                uid,
                gid: 0,
                mode: 0o644,
                what: What::File(b"x".to_vec()),
            }])
            .expect("encode")
        };
        for bad in ["../escape", "/abs", "a//b", "out/escape", "."] {
            let e = apply(d.as_fd(), &one(bad, 0), me(), 65536).expect_err(bad);
            assert!(e.contains("/dev/"), "{e}");
        }
        assert!(!dst.path().join("escape").exists());
        let e = apply(d.as_fd(), &one("x", 70000), me(), 65536).expect_err("id");
        assert!(e.contains("outside the VE's ids"), "{e}");
        let e = apply(d.as_fd(), b"\xff\xff\xff", me(), 65536).expect_err("damaged");
        assert!(e.contains("damaged"), "{e}");
    }

    #[test]
    fn the_walk_is_bounded() {
        let src = tempfile::tempdir().expect("tempdir");
        std::fs::write(src.path().join("big"), vec![0u8; MAX_BYTES + 1]).expect("file");
        let dev = rustix::fs::open(
            src.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("open");
        let e = walk(dev, me(), 65536).expect_err("too big");
        assert!(e.contains("KiB"), "{e}");
    }
}
