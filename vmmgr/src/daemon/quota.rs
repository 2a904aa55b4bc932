//! A VE's disk quota: ext4 project quota on VZDATA (made `-O quota,project`,
//! mounted `prjquota`). The VE's private area is project `VEID`: its
//! directory carries the id and PROJINHERIT before `upper/` and `work/`
//! exist, so everything the VE writes is charged to it, and `df` on the VE's
//! overlay (its upper directory is in the project) shows the quota as the
//! filesystem's size. DISKSPACE (1 KiB blocks) and DISKINODES are the
//! project's soft and hard limits; QUOTATIME is the grace time, which the
//! kernel keeps per filesystem, not per project: the largest QUOTATIME of
//! the VEs applies to all.
//!
//! The private area of a VE made before quotas (or moved in) is walked once
//! while the VE is stopped, without following links; VE root cannot change
//! a project id (the kernel allows that from the initial user namespace
//! only) nor pass the limits (CAP_SYS_RESOURCE of the initial namespace).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use vzconfig::resources::{BarrierLimit, Limit};

const PRJQUOTA: u32 = 2;
const fn qcmd(cmd: u32) -> u32 {
    (cmd << 8) | PRJQUOTA
}
const Q_GETINFO: u32 = 0x80_0005;
const Q_SETINFO: u32 = 0x80_0006;
const Q_GETQUOTA: u32 = 0x80_0007;
const Q_SETQUOTA: u32 = 0x80_0008;
const QIF_BLIMITS: u32 = 1;
const QIF_ILIMITS: u32 = 4;
const QIF_BTIME: u32 = 16;
const QIF_ITIME: u32 = 32;
const IIF_BGRACE: u32 = 1;
const IIF_IGRACE: u32 = 2;

/// `struct if_dqblk` (include/uapi/linux/quota.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct IfDqblk {
    bhardlimit: u64,
    bsoftlimit: u64,
    curspace: u64,
    ihardlimit: u64,
    isoftlimit: u64,
    curinodes: u64,
    btime: u64,
    itime: u64,
    valid: u32,
}

/// `struct if_dqinfo`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct IfDqinfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

/// `struct fsxattr` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801C_581F;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401C_5820;
const FS_XFLAG_PROJINHERIT: u32 = 0x200;

fn quotactl<T>(fs: BorrowedFd<'_>, cmd: u32, id: u32, data: &mut T) -> std::io::Result<()> {
    // SAFETY: quotactl_fd reads or writes one `T`, the struct `cmd` names.
    let r = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            fs.as_raw_fd(),
            qcmd(cmd),
            id,
            data as *mut T,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn get_xattr(fd: BorrowedFd<'_>) -> std::io::Result<FsXattr> {
    let mut x = FsXattr::default();
    // SAFETY: the ioctl fills one `struct fsxattr`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR, &mut x as *mut FsXattr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(x)
}

fn set_project(fd: BorrowedFd<'_>, id: u32, dir: bool) -> std::io::Result<bool> {
    let mut x = get_xattr(fd)?;
    let inherit = if dir { FS_XFLAG_PROJINHERIT } else { 0 };
    if x.projid == id && x.xflags & FS_XFLAG_PROJINHERIT == inherit {
        return Ok(false);
    }
    x.projid = id;
    x.xflags = (x.xflags & !FS_XFLAG_PROJINHERIT) | inherit;
    // SAFETY: the ioctl reads one `struct fsxattr`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR, &x as *const FsXattr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Whether `dir` already is project `id` with PROJINHERIT.
pub fn is_assigned(dir: &Path, id: u32) -> bool {
    open_dir(dir)
        .and_then(|fd| get_xattr(fd.as_fd()))
        .is_ok_and(|x| x.projid == id && x.xflags & FS_XFLAG_PROJINHERIT != 0)
}

fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::{open, Mode, OFlags};
    Ok(open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Puts `dir` and everything below it in project `id` (directories with
/// PROJINHERIT), unless `dir` already is. Each entry is opened beneath
/// `dir` by its path, following no link and crossing no mount
/// (`openat2` BENEATH, NO_SYMLINKS, NO_XDEV); only directories and regular
/// files are opened. `dir` itself is marked last, and only if every
/// directory below it was: a walk cut short is done again at the next
/// start. For a stopped VE only. Returns how many inodes changed.
pub fn assign(dir: &Path, id: u32) -> std::io::Result<u64> {
    use rustix::fs::{openat2, statat, AtFlags, FileType, Mode, OFlags, ResolveFlags};
    let top = open_dir(dir)?;
    if is_assigned(dir, id) {
        return Ok(0);
    }
    let how = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut changed = 0u64;
    let mut incomplete = 0u64;
    // Paths relative to `dir`, not descriptors: a wide tree costs memory,
    // not vmmgr's descriptors.
    let mut stack: Vec<std::path::PathBuf> = vec![std::path::PathBuf::from(".")];
    while let Some(rel) = stack.pop() {
        let d = match openat2(&top, &rel, flags | OFlags::DIRECTORY, Mode::empty(), how) {
            Ok(fd) => fd,
            Err(_) => {
                incomplete += 1;
                continue;
            }
        };
        let Ok(entries) = rustix::fs::Dir::read_from(&d) else {
            incomplete += 1;
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let Ok(st) = statat(&d, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let path = rel.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    match openat2(&top, &path, flags | OFlags::DIRECTORY, Mode::empty(), how)
                        .map_err(std::io::Error::from)
                        .and_then(|fd| set_project(fd.as_fd(), id, true))
                    {
                        Ok(c) => {
                            changed += u64::from(c);
                            stack.push(path);
                        }
                        Err(_) => incomplete += 1,
                    }
                }
                FileType::RegularFile => {
                    let r = openat2(&top, &path, flags | OFlags::NOCTTY, Mode::empty(), how)
                        .map_err(std::io::Error::from)
                        .and_then(|fd| {
                            // Checked again on the open file.
                            if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode)
                                == FileType::RegularFile
                            {
                                set_project(fd.as_fd(), id, false)
                            } else {
                                Ok(false)
                            }
                        });
                    // A file that changed under the walk stays uncharged.
                    if let Ok(c) = r {
                        changed += u64::from(c);
                    }
                }
                // Links, devices, fifos, sockets: their few bytes stay in
                // the default project (6.1 cannot set them without opening).
                _ => {}
            }
        }
    }
    if incomplete > 0 {
        return Err(std::io::Error::other(format!(
            "{incomplete} directories of {} could not be put in project {id}; \
             tried again at the next start",
            dir.display()
        )));
    }
    changed += u64::from(set_project(top.as_fd(), id, true)?);
    Ok(changed)
}

fn kib(l: Limit) -> u64 {
    match l {
        Limit::Value(v) => v,
        Limit::Unlimited => 0,
    }
}

/// Usage of project `id` on the filesystem of `fs`: KiB and inodes.
pub fn usage(fs: &Path, id: u32) -> std::io::Result<(u64, u64)> {
    let fd = open_dir(fs)?;
    let mut q = IfDqblk::default();
    quotactl(fd.as_fd(), Q_GETQUOTA, id, &mut q)?;
    Ok((q.curspace.div_ceil(1024), q.curinodes))
}

/// Sets project `id`'s limits on the filesystem of `fs` (None: no limit).
/// Unchanged limits are not written again (that would restart a running
/// grace period); changed ones keep the current grace deadlines.
pub fn set_limits(
    fs: &Path,
    id: u32,
    space: Option<BarrierLimit>,
    inodes: Option<BarrierLimit>,
) -> std::io::Result<()> {
    let fd = open_dir(fs)?;
    let mut cur = IfDqblk::default();
    quotactl(fd.as_fd(), Q_GETQUOTA, id, &mut cur)?;
    let (bs, bh) = space.map_or((0, 0), |b| (kib(b.barrier), kib(b.limit)));
    let (is, ih) = inodes.map_or((0, 0), |b| (kib(b.barrier), kib(b.limit)));
    if (
        cur.bsoftlimit,
        cur.bhardlimit,
        cur.isoftlimit,
        cur.ihardlimit,
    ) == (bs, bh, is, ih)
    {
        return Ok(());
    }
    let mut q = IfDqblk {
        bsoftlimit: bs,
        bhardlimit: bh,
        isoftlimit: is,
        ihardlimit: ih,
        valid: QIF_BLIMITS | QIF_ILIMITS,
        ..IfDqblk::default()
    };
    if cur.btime != 0 {
        q.btime = cur.btime;
        q.valid |= QIF_BTIME;
    }
    if cur.itime != 0 {
        q.itime = cur.itime;
        q.valid |= QIF_ITIME;
    }
    quotactl(fd.as_fd(), Q_SETQUOTA, id, &mut q)
}

/// Sets the grace time of every project on the filesystem of `fs`.
pub fn set_grace(fs: &Path, secs: u64) -> std::io::Result<()> {
    let fd = open_dir(fs)?;
    let mut cur = IfDqinfo::default();
    quotactl(fd.as_fd(), Q_GETINFO, 0, &mut cur)?;
    if cur.bgrace == secs && cur.igrace == secs {
        return Ok(());
    }
    let mut i = IfDqinfo {
        bgrace: secs,
        igrace: secs,
        flags: 0,
        valid: IIF_BGRACE | IIF_IGRACE,
    };
    quotactl(fd.as_fd(), Q_SETINFO, 0, &mut i)
}

impl super::Manager {
    /// Writes VE `veid`'s DISKSPACE, DISKINODES and the filesystem's grace
    /// time (the largest QUOTATIME of all VEs). A private area outside any
    /// project (a filesystem without project quota) is said, not failed.
    pub(super) fn apply_quota(
        &self,
        veid: crate::config::VeId,
        cfg: &crate::config::VeConfig,
    ) -> Result<(), String> {
        let private = self.layout.on_disk(&cfg.ve_private);
        let l = &cfg.limits;
        let wanted = l.diskspace.is_some() || l.diskinodes.is_some();
        if !is_assigned(&private, veid.get()) {
            if wanted {
                log::warn!(
                    "VE {veid}: DISKSPACE/DISKINODES not enforced: {} is in no quota project \
                     (it is put in one at the VE's next start, on a filesystem that has them)",
                    private.display()
                );
            }
            return Ok(());
        }
        let fs = &self.layout.vz_dir;
        set_limits(fs, veid.get(), l.diskspace, l.diskinodes)
            .map_err(|e| format!("setting the disk quota of project {veid}: {e}"))?;
        let grace = {
            let st = self.lock();
            st.loaded
                .as_ref()
                .map(|ld| {
                    ld.ves
                        .values()
                        .filter_map(|c| c.as_ref().ok())
                        .filter_map(|c| c.limits.quotatime)
                        .chain(l.quotatime)
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        };
        if let Err(e) = set_grace(fs, u64::from(grace)) {
            log::warn!("disk quota grace time {grace} s: {e}");
        }
        Ok(())
    }

    /// VE `veid`'s disk usage (KiB, inodes) from its quota project.
    pub(super) fn quota_usage(&self, veid: crate::config::VeId) -> Option<(u64, u64)> {
        usage(&self.layout.vz_dir, veid.get()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_and_commands_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<IfDqblk>(), 72);
        assert_eq!(std::mem::size_of::<IfDqinfo>(), 24);
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(qcmd(Q_GETQUOTA), 0x8000_0702);
        assert_eq!(qcmd(Q_SETQUOTA), 0x8000_0802);
        assert_eq!(qcmd(Q_GETINFO), 0x8000_0502);
        assert_eq!(qcmd(Q_SETINFO), 0x8000_0602);
        assert_eq!(kib(Limit::Unlimited), 0);
    }

    #[test]
    fn a_filesystem_without_project_quota_says_so() {
        // The build machine's temp directory has no project quota enabled
        // (or no project feature): every call fails cleanly, none panics.
        let d = tempfile::tempdir().expect("tempdir");
        assert!(usage(d.path(), 101).is_err());
        assert!(!is_assigned(d.path(), 101));
    }
}
