//! A directory tree as a tar stream, and back.
//!
//! `pack` walks a VE's private area while the VE may run (the first pass
//! of a live migration): every directory is opened beneath the top with
//! `openat2(BENEATH|NO_SYMLINKS|NO_XDEV)` and every file relative to its
//! directory's descriptor with `O_NOFOLLOW`, so a VE that swaps a
//! directory for a link mid-walk sends its own link, never the appliance's
//! files. Numeric owners, modes, times, device numbers (overlay's
//! whiteouts are 0:0 character devices), hard links and extended
//! attributes (overlay's `user.overlay.*`, file capabilities) go as pax
//! records. A manifest of what was sent lets a second pass send only what
//! changed.
//!
//! `unpack` writes into a directory no VE can reach yet (DEST's staging
//! area, a new dump directory): each entry's path is checked (relative, no
//! `..`), its parent opened beneath the top without following links, and
//! the entry made relative to that descriptor.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// What a walk saw of one entry (a later pass resends it if any differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    mode: u32,
}

/// Every entry a walk saw, by path relative to the top.
#[derive(Debug, Default, Clone)]
pub struct Manifest {
    pub entries: HashMap<PathBuf, Seen>,
    /// When the walk began (the real-time clock, seconds): an entry
    /// changed in the same moment may have changed again unseen.
    began: i64,
}

impl Manifest {
    /// The paths, NUL-separated (DEST removes what is not among them).
    pub fn paths(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in self.entries.keys() {
            out.extend_from_slice(p.as_os_str().as_bytes());
            out.push(0);
        }
        out
    }

    /// The sum of regular files' sizes.
    pub fn bytes(&self) -> u64 {
        self.entries
            .values()
            .filter(|s| FileType::from_raw_mode(s.mode) == FileType::RegularFile)
            .map(|s| s.size)
            .sum()
    }
}

/// What a pass sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub entries: u64,
    pub file_bytes: u64,
}

const WALK: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

fn open_top(dir: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_dir_beneath(top: &OwnedFd, rel: &Path) -> std::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    Ok(rustix::fs::openat2(
        top,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        WALK,
    )?)
}

/// Extended attributes of an open file or directory, all of them (a lost
/// `user.overlay.opaque` would bring back what the VE deleted).
fn xattrs(fd: &OwnedFd) -> std::io::Result<Vec<(OsString, Vec<u8>)>> {
    // Buffers grow until the list and each value fit (ERANGE).
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                names.resize(names.len() * 4, 0);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::fgetxattr(fd, name, &mut value[..]) {
                Ok(l) => break Some(l),
                // Removed since it was listed.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(rustix::io::Errno::RANGE) if value.len() < (1 << 20) => {
                    value.resize(value.len() * 4, 0);
                }
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((OsStr::from_bytes(name).to_owned(), value));
        }
    }
    Ok(out)
}

/// What a stream may hold, by where it is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A VE's private area: what a VE can make in its tree (no device but
    /// overlay's 0:0 whiteouts; extended attributes `user.*` and file
    /// capabilities only).
    Private,
    /// CRIU's images: regular files (root's, at most 0644), and a
    /// `parent` link to a pre-copy round beside them.
    Images,
}

/// Whether an extended attribute named `name` may come in.
fn xattr_allowed(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"security.capability"
}

/// A pre-copy round's `parent` link: `pre.N` or `../pre.N`.
fn round_link(target: &[u8]) -> bool {
    let t = target.strip_prefix(b"../").unwrap_or(target);
    t.strip_prefix(b"pre.")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// One pax record: `LEN KEY=VALUE\n`, LEN counting itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn header(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

fn seen(st: &rustix::fs::Stat) -> Seen {
    Seen {
        ino: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        mode: st.st_mode,
    }
}

/// The top entry's name in the stream (its owner, mode and xattrs).
const TOP: &str = ".";

/// Writes `dir`'s tree to `out` as tar. With `before` (an earlier pass's
/// manifest), entries that look unchanged since are left out; directories
/// always go (cheap, and they carry their contents' removals' times).
/// Returns this pass's manifest and what it sent. `strict` (the VE is
/// stopped or frozen: nothing changes under the walk): any entry that
/// cannot be read fails the pass, rather than being left to the next.
pub fn pack(
    dir: &Path,
    before: Option<&Manifest>,
    out: impl Write,
    strict: bool,
) -> std::io::Result<(Manifest, Sent)> {
    walk(dir, before, out, true, strict)
}

/// [`pack`] of `dir`'s own entries, leaving out its subdirectories (a
/// final dump beside the pre-copy rounds already sent).
pub fn pack_top(dir: &Path, out: impl Write) -> std::io::Result<()> {
    walk(dir, None, out, false, true).map(|_| ())
}

fn walk(
    dir: &Path,
    before: Option<&Manifest>,
    out: impl Write,
    descend: bool,
    strict: bool,
) -> std::io::Result<(Manifest, Sent)> {
    // An entry that cannot be read: skipped in a live pass, fatal in a
    // strict one.
    macro_rules! or_skip {
        ($e:expr, $what:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    if strict {
                        let e = std::io::Error::from(e);
                        return Err(std::io::Error::new(e.kind(), format!("{}: {e}", $what)));
                    }
                    continue;
                }
            }
        };
    }
    let top = open_top(dir)?;
    let mut ar = tar::Builder::new(out);
    let mut manifest = Manifest {
        entries: HashMap::new(),
        began: rustix::time::clock_gettime(rustix::time::ClockId::Realtime).tv_sec,
    };
    let mut sent = Sent::default();
    // Hard links: the first path of each inode with more than one link.
    let mut links: HashMap<u64, PathBuf> = HashMap::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    let mut first = true;
    while let Some(rel) = stack.pop() {
        // (A directory the VE removed or replaced since its parent was
        // read, in a live pass: what is there now goes in the next.)
        let d = if first {
            open_dir_beneath(&top, &rel)?
        } else {
            or_skip!(open_dir_beneath(&top, &rel), rel.display())
        };
        if first {
            first = false;
            let st = rustix::fs::fstat(&d)?;
            append(
                &mut ar,
                Path::new(TOP),
                &header(&st, tar::EntryType::Directory),
                &xattrs(&d)?,
                std::io::empty(),
            )?;
        }
        let list = or_skip!(rustix::fs::Dir::read_from(&d), rel.display());
        let mut names: Vec<OsString> = list
            .flatten()
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = rel.join(&name);
            let st = or_skip!(
                rustix::fs::statat(&d, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW),
                path.display()
            );
            let now = seen(&st);
            let kind = FileType::from_raw_mode(st.st_mode);
            let changed = match before.and_then(|b| b.entries.get(&path).map(|s| (s, b.began))) {
                None => true,
                Some((old, began)) => {
                    *old != now || now.ctime.0 >= began - 1 || kind == FileType::Directory
                }
            };
            match kind {
                FileType::Directory if !descend => {}
                FileType::Directory => {
                    manifest.entries.insert(path.clone(), now);
                    let sub = or_skip!(
                        rustix::fs::openat(
                            &d,
                            name.as_os_str(),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        ),
                        path.display()
                    );
                    let st = rustix::fs::fstat(&sub)?;
                    append(
                        &mut ar,
                        &path,
                        &header(&st, tar::EntryType::Directory),
                        &xattrs(&sub)?,
                        std::io::empty(),
                    )?;
                    sent.entries += 1;
                    subdirs.push(path);
                }
                FileType::RegularFile => {
                    if st.st_nlink > 1 {
                        if let Some(target) = links.get(&st.st_ino) {
                            manifest.entries.insert(path.clone(), now);
                            let mut h = header(&st, tar::EntryType::Link);
                            ar.append_link(&mut h, &path, target)?;
                            sent.entries += 1;
                            continue;
                        }
                    }
                    manifest.entries.insert(path.clone(), now);
                    if !changed {
                        // At DEST from an earlier pass, at this path.
                        if st.st_nlink > 1 {
                            links.insert(st.st_ino, path.clone());
                        }
                        continue;
                    }
                    let f = or_skip!(
                        rustix::fs::openat(
                            &d,
                            name.as_os_str(),
                            OFlags::RDONLY
                                | OFlags::NOFOLLOW
                                | OFlags::NONBLOCK
                                | OFlags::NOCTTY
                                | OFlags::CLOEXEC,
                            Mode::empty(),
                        ),
                        path.display()
                    );
                    let st = rustix::fs::fstat(&f)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                        // Replaced under a live walk.
                        or_skip!(Err(rustix::io::Errno::STALE), path.display());
                    }
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    let mut h = header(&st, tar::EntryType::Regular);
                    h.set_size(size);
                    let x = xattrs(&f)?;
                    let file = std::fs::File::from(f);
                    // A file that shrinks under the walk is padded, one
                    // that grows is cut: its new times send it again.
                    let data = file.take(size).chain(std::io::repeat(0)).take(size);
                    append(&mut ar, &path, &h, &x, data)?;
                    // Later links to it name it only once it went.
                    if st.st_nlink > 1 {
                        links.insert(st.st_ino, path.clone());
                    }
                    sent.entries += 1;
                    sent.file_bytes += size;
                }
                FileType::Symlink => {
                    manifest.entries.insert(path.clone(), now);
                    if !changed {
                        continue;
                    }
                    let target = or_skip!(
                        rustix::fs::readlinkat(&d, name.as_os_str(), Vec::new()),
                        path.display()
                    );
                    let mut h = header(&st, tar::EntryType::Symlink);
                    // (A GNU long-link entry for a target over 100 bytes.)
                    ar.append_link(&mut h, &path, OsStr::from_bytes(target.as_bytes()))?;
                    sent.entries += 1;
                }
                FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                    manifest.entries.insert(path.clone(), now);
                    if !changed {
                        continue;
                    }
                    let t = match kind {
                        FileType::CharacterDevice => tar::EntryType::Char,
                        FileType::BlockDevice => tar::EntryType::Block,
                        _ => tar::EntryType::Fifo,
                    };
                    let mut h = header(&st, t);
                    h.set_device_major(rustix::fs::major(st.st_rdev))?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
                    append(&mut ar, &path, &h, &[], std::io::empty())?;
                    sent.entries += 1;
                }
                // Sockets are made again by whoever listens on them.
                _ => {}
            }
        }
        // Depth first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    ar.finish()?;
    Ok((manifest, sent))
}

fn append<W: Write>(
    ar: &mut tar::Builder<W>,
    path: &Path,
    h: &tar::Header,
    xattrs: &[(OsString, Vec<u8>)],
    data: impl Read,
) -> std::io::Result<()> {
    if !xattrs.is_empty() {
        let mut pax = Vec::new();
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.as_bytes());
            pax_record(&mut pax, &key, v);
        }
        let mut ph = tar::Header::new_ustar();
        ph.set_entry_type(tar::EntryType::XHeader);
        ph.set_size(pax.len() as u64);
        ph.set_mode(0o644);
        ar.append_data(&mut ph, "PaxHeader", &pax[..])?;
    }
    let mut h = h.clone();
    ar.append_data(&mut h, path, data)
}

/// A path from the stream, checked: relative, no `..`, no `.` inside.
fn checked(raw: &[u8]) -> std::io::Result<PathBuf> {
    let bad = || {
        std::io::Error::other(format!(
            "refused path {:?} in the stream",
            String::from_utf8_lossy(raw)
        ))
    };
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    if trimmed == TOP.as_bytes() {
        return Ok(PathBuf::new());
    }
    if trimmed.is_empty() || trimmed.starts_with(b"/") {
        return Err(bad());
    }
    let mut p = PathBuf::new();
    for c in trimmed.split(|b| *b == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return Err(bad());
        }
        p.push(OsStr::from_bytes(c));
    }
    Ok(p)
}

/// Unpacks a stream `pack` made into `dir` (which exists). Entries already
/// there are replaced. Returns the entries written.
pub fn unpack(dir: &Path, input: impl Read, kind: Kind) -> std::io::Result<u64> {
    let top = open_top(dir)?;
    let mut ar = tar::Archive::new(input);
    let mut n = 0;
    // Directory times are set last: their contents change them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = checked(&entry.path_bytes())?;
        let mut attrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    attrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = entry.header().clone();
        let mut mode = h.mode()? & 0o7777;
        let (mut uid, mut gid) = (
            u32::try_from(h.uid()?).map_err(std::io::Error::other)?,
            u32::try_from(h.gid()?).map_err(std::io::Error::other)?,
        );
        let mtime = i64::try_from(h.mtime()?).map_err(std::io::Error::other)?;
        let etype = h.entry_type();
        let refuse = |what: String| std::io::Error::other(format!("refused in the stream: {what}"));
        if let Some((k, _)) = attrs
            .iter()
            .find(|(k, _)| kind == Kind::Images || !xattr_allowed(k))
        {
            return Err(refuse(format!(
                "extended attribute {:?}",
                String::from_utf8_lossy(k)
            )));
        }
        match (kind, etype) {
            (Kind::Private, tar::EntryType::Char) => {
                if (h.device_major()?, h.device_minor()?) != (Some(0), Some(0)) {
                    return Err(refuse(format!("device node {}", path.display())));
                }
            }
            (Kind::Private, tar::EntryType::Block) => {
                return Err(refuse(format!("device node {}", path.display())))
            }
            (Kind::Private, _) => {}
            (Kind::Images, tar::EntryType::Regular) if path.components().count() == 1 => {
                (uid, gid, mode) = (0, 0, mode & 0o644);
            }
            // The directory itself is the caller's (its mode differs for a
            // round and the final dump).
            (Kind::Images, tar::EntryType::Directory) if path.as_os_str().is_empty() => {
                n += 1;
                continue;
            }
            (Kind::Images, tar::EntryType::Symlink)
                if path == Path::new("parent")
                    && entry.link_name_bytes().is_some_and(|t| round_link(&t)) =>
            {
                (uid, gid) = (0, 0);
            }
            (Kind::Images, _) => {
                return Err(refuse(format!(
                    "{etype:?} {} among CRIU's images",
                    path.display()
                )))
            }
        }
        let kind = etype;
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (open_dir_beneath(&top, p)?, n.to_owned()),
            _ => {
                // The top itself.
                if kind != tar::EntryType::Directory {
                    return Err(std::io::Error::other("the stream's top is not a directory"));
                }
                finish(&top, uid, gid, mode, &attrs)?;
                dir_times.push((path, mtime));
                n += 1;
                continue;
            }
        };
        let name = name.as_os_str();
        // What is there already goes, unless it is a directory staying one.
        if let Ok(st) = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if !(is_dir && kind == tar::EntryType::Directory) {
                remove(&parent, name, is_dir)?;
            }
        }
        let uid = rustix::fs::Uid::from_raw(uid);
        let gid = rustix::fs::Gid::from_raw(gid);
        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                let d = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                finish(&d, uid.as_raw(), gid.as_raw(), mode, &attrs)?;
                dir_times.push((path, mtime));
            }
            tar::EntryType::Regular => {
                let f = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = std::fs::File::from(f);
                std::io::copy(&mut entry, &mut file)?;
                let f = OwnedFd::from(file);
                finish(&f, uid.as_raw(), gid.as_raw(), mode, &attrs)?;
                set_times(&f, mtime)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| std::io::Error::other("a hard link without its target"))?;
                let target = checked(&target)?;
                let (tp, tn) = match (target.parent(), target.file_name()) {
                    (Some(p), Some(n)) => (open_dir_beneath(&top, p)?, n.to_owned()),
                    _ => return Err(std::io::Error::other("a hard link to the top")),
                };
                rustix::fs::linkat(&tp, tn.as_os_str(), &parent, name, AtFlags::empty())?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| std::io::Error::other("a symlink without its target"))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name)?;
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                rustix::fs::utimensat(&parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let t = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    h.device_major()?.unwrap_or(0),
                    h.device_minor()?.unwrap_or(0),
                );
                rustix::fs::mknodat(&parent, name, t, Mode::from_raw_mode(0o600), dev)?;
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                rustix::fs::chmodat(&parent, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
                rustix::fs::utimensat(&parent, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "an entry of type {other:?} in the stream"
                )))
            }
        }
        n += 1;
    }
    for (path, mtime) in dir_times.iter().rev() {
        let d = open_dir_beneath(&top, path)?;
        set_times(&d, *mtime)?;
    }
    Ok(n)
}

fn times(mtime: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_times(fd: &OwnedFd, mtime: i64) -> std::io::Result<()> {
    Ok(rustix::fs::futimens(fd, &times(mtime))?)
}

/// Owner, then mode (a chown clears set-id bits), then xattrs.
fn finish(
    fd: &OwnedFd,
    uid: u32,
    gid: u32,
    mode: u32,
    attrs: &[(Vec<u8>, Vec<u8>)],
) -> std::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    for (k, v) in attrs {
        rustix::fs::fsetxattr(fd, k.as_slice(), v, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Removes `name` in `parent` (a directory with all it holds).
fn remove(parent: &OwnedFd, name: &OsStr, is_dir: bool) -> std::io::Result<()> {
    if !is_dir {
        return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?);
    }
    let d = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let names: Vec<OsString> = rustix::fs::Dir::read_from(&d)?
        .flatten()
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        let st = rustix::fs::statat(&d, n.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        remove(
            &d,
            &n,
            FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        )?;
    }
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

/// Removes from `dir` every entry whose path is not in `keep` (a
/// manifest's NUL-separated paths). Returns how many went.
pub fn prune(dir: &Path, keep: &[u8]) -> std::io::Result<u64> {
    let keep: HashSet<&[u8]> = keep.split(|b| *b == 0).filter(|p| !p.is_empty()).collect();
    let top = open_top(dir)?;
    let mut gone = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let d = open_dir_beneath(&top, &rel)?;
        let names: Vec<OsString> = rustix::fs::Dir::read_from(&d)?
            .flatten()
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        for n in names {
            let path = rel.join(&n);
            let st = rustix::fs::statat(&d, n.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if !keep.contains(path.as_os_str().as_bytes()) {
                remove(&d, &n, is_dir)?;
                gone += 1;
            } else if is_dir {
                stack.push(path);
            }
        }
    }
    Ok(gone)
}

/// Bytes of `pages-*.img` in a CRIU images directory: the memory a dump
/// or pre-dump round wrote.
pub fn pages_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().as_bytes().starts_with(b"pages-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The manifest's paths from bytes (for tests and logs).
pub fn manifest_paths(raw: &[u8]) -> Vec<PathBuf> {
    raw.split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(OsString::from_vec(p.to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn sample(dir: &Path) {
        std::fs::create_dir_all(dir.join("etc/deep")).expect("dirs");
        std::fs::write(dir.join("etc/hostname"), "ve101\n").expect("file");
        std::fs::write(dir.join("etc/deep/big"), vec![7u8; 200_000]).expect("big");
        std::fs::set_permissions(
            dir.join("etc/hostname"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("../etc/hostname", dir.join("link")).expect("symlink");
        let long = format!("../{}/x", "d".repeat(150));
        std::os::unix::fs::symlink(&long, dir.join("longlink")).expect("long symlink");
        std::fs::hard_link(dir.join("etc/hostname"), dir.join("hard")).expect("hardlink");
        let _ = rustix::fs::setxattr(
            dir.join("etc"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
    }

    fn pack_to_vec(dir: &Path, before: Option<&Manifest>) -> (Vec<u8>, Manifest, Sent) {
        let mut out = Vec::new();
        let (m, s) = pack(dir, before, &mut out, true).expect("pack");
        (out, m, s)
    }

    #[test]
    fn a_tree_comes_back_as_it_was_and_a_second_pass_sends_only_changes() {
        let src = tempfile::tempdir().expect("src");
        let dst = tempfile::tempdir().expect("dst");
        sample(src.path());
        let (tar, m1, s1) = pack_to_vec(src.path(), None);
        assert_eq!(s1.file_bytes, 200_006);
        unpack(dst.path(), &tar[..], Kind::Private).expect("unpack");
        let got = std::fs::read(dst.path().join("etc/deep/big")).expect("big");
        assert_eq!(got, vec![7u8; 200_000]);
        let meta = std::fs::metadata(dst.path().join("etc/hostname")).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.path().join("link")).expect("link"),
            Path::new("../etc/hostname")
        );
        let long = std::fs::read_link(dst.path().join("longlink")).expect("long link");
        assert_eq!(long.as_os_str().len(), 155, "a target over 100 bytes");
        let hard = std::fs::metadata(dst.path().join("hard")).expect("hard");
        assert_eq!(hard.ino(), meta.ino(), "the hard link is one file again");
        let src_mtime = std::fs::metadata(src.path().join("etc/deep"))
            .expect("m")
            .mtime();
        assert_eq!(
            std::fs::metadata(dst.path().join("etc/deep"))
                .expect("m")
                .mtime(),
            src_mtime
        );
        let mut v = [0u8; 8];
        if rustix::fs::getxattr(src.path().join("etc"), "user.overlay.opaque", &mut v).is_ok() {
            let n = rustix::fs::getxattr(dst.path().join("etc"), "user.overlay.opaque", &mut v)
                .expect("xattr came");
            assert_eq!(&v[..n], b"y");
        }

        // A change, a removal, a new file; the big file is not sent again
        // (its times are made old, as if the first pass was long ago).
        std::fs::write(src.path().join("etc/hostname"), "ve102\n").expect("change");
        std::fs::remove_file(src.path().join("link")).expect("rm");
        std::fs::write(src.path().join("new"), "n").expect("new");
        let (tar2, m2, _) = pack_to_vec(src.path(), Some(&m1));
        let _ = m2;
        // The ctimes are recent here, so everything changed in the last
        // second goes again; what matters is that the result is right.
        unpack(dst.path(), &tar2[..], Kind::Private).expect("unpack 2");
        let (_, m2b, _) = pack_to_vec(src.path(), None);
        let gone = prune(dst.path(), &m2b.paths()).expect("prune");
        assert_eq!(gone, 1);
        assert!(!dst.path().join("link").exists());
        assert_eq!(
            std::fs::read_to_string(dst.path().join("hard")).expect("h"),
            "ve102\n"
        );
        assert_eq!(
            std::fs::read_to_string(dst.path().join("new")).expect("n"),
            "n"
        );
    }

    #[test]
    fn an_unchanged_file_is_not_sent_again() {
        let src = tempfile::tempdir().expect("src");
        sample(src.path());
        let (_, mut m1, _) = pack_to_vec(src.path(), None);
        // As if the first pass began long after these files last changed.
        m1.began += 100;
        let (_, _, s2) = pack_to_vec(src.path(), Some(&m1));
        assert_eq!(s2.file_bytes, 0, "nothing changed, no file data: {s2:?}");
        std::fs::write(src.path().join("etc/deep/big"), vec![8u8; 10]).expect("change");
        let (_, _, s3) = pack_to_vec(src.path(), Some(&m1));
        assert_eq!(s3.file_bytes, 10);
    }

    #[test]
    fn only_what_a_ve_or_criu_makes_is_unpacked() {
        let one = |h: &mut tar::Header, path: &str, link: Option<&str>| {
            let mut ar = tar::Builder::new(Vec::new());
            h.set_size(0);
            if h.mode().is_err() {
                h.set_mode(0o777);
            }
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match link {
                Some(t) => ar.append_link(h, path, t).expect("link"),
                None => ar.append_data(h, path, std::io::empty()).expect("entry"),
            }
            ar.into_inner().expect("tar")
        };
        let dst = tempfile::tempdir().expect("dst");
        // A block device, a character device other than a whiteout.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Block);
        h.set_device_major(8).expect("major");
        h.set_device_minor(0).expect("minor");
        assert!(unpack(dst.path(), &one(&mut h, "sda", None)[..], Kind::Private).is_err());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).expect("major");
        h.set_device_minor(3).expect("minor");
        assert!(unpack(dst.path(), &one(&mut h, "null", None)[..], Kind::Private).is_err());
        // Among images: a link anywhere but to a round, a subdirectory.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        for (name, target) in [("restore.log", "/vz/migrate/key"), ("parent", "../../etc")] {
            let err = unpack(
                dst.path(),
                &one(&mut h, name, Some(target))[..],
                Kind::Images,
            );
            assert!(err.is_err(), "{name} -> {target}");
        }
        assert!(unpack(
            dst.path(),
            &one(&mut h, "parent", Some("pre.2"))[..],
            Kind::Images
        )
        .is_ok());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        assert!(unpack(dst.path(), &one(&mut h, "sub", None)[..], Kind::Images).is_err());
        // A regular image is root's and at most 0644 whatever it says.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4777);
        unpack(
            dst.path(),
            &one(&mut h, "pages-1.img", None)[..],
            Kind::Images,
        )
        .expect("image");
        let mode = std::fs::metadata(dst.path().join("pages-1.img"))
            .expect("m")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
    }

    #[test]
    fn paths_that_leave_the_top_are_refused() {
        for bad in [&b"../x"[..], b"/etc/passwd", b"a/../../x", b"a//b", b""] {
            assert!(checked(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(checked(b"a/b/").expect("ok"), Path::new("a/b"));
        assert_eq!(checked(b".").expect("top"), Path::new(""));
        // A stream whose symlink would lead a later entry out of the top.
        let mut ar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        ar.append_link(&mut h, "esc", "/").expect("link");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        ar.append_data(&mut h, "esc/owned", &b"x"[..])
            .expect("file");
        let data = ar.into_inner().expect("tar");
        let dst = tempfile::tempdir().expect("dst");
        assert!(unpack(dst.path(), &data[..], Kind::Private).is_err());
        assert!(!Path::new("/owned").exists());
    }
}
