//! The VE's view of `/proc`: a read-only FUSE filesystem served by vmmgr
//! (one mount, `/run/vz/proc`, for every VE, as LXCFS does) whose files are
//! bound over the VE's `/proc/meminfo`, `cpuinfo`, `stat` and `loadavg` when
//! the VE starts (`setup::kernfs`, so the binds are locked like the masks).
//! Its `user_beancounters` is bound over `/proc/user_beancounters`, a name
//! procfs gets from our kernel module `vzproc` (rootfs/kmod), in every VE
//! and in the appliance. Each read is answered for the VE the reading
//! process belongs to (its cgroup, from the pid the kernel puts in the FUSE
//! request); a process of the appliance sees the appliance's own files, and
//! `user_beancounters` of every running VE.
//!
//! - meminfo: the VE's memory limit as MemTotal, its usage from its cgroup,
//!   its swap limit as SwapTotal; procps `free` in the VE shows its RAM.
//! - cpuinfo, stat: only the CPUs of the VE's cpuset, numbered from 0.
//! - loadavg: the VE's own load average (`daemon::beancounters::LoadAvg`).
//! - uptime is not here: the VE's time namespace gives it its own.
//!
//! If vmmgr dies, the mount dies with it (reads fail with ENOTCONN, nothing
//! hangs); the next vmmgr mounts a new one and binds it over the old files
//! in every running VE it adopts (`setup::procview`).

use crate::config::VeId;
use crate::daemon::Manager;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where vmmgr mounts it.
pub const MOUNT_DIR: &str = "/run/vz/proc";

/// The files, bound over the VE's `/proc/<name>`.
pub const FILES: &[&str] = &["meminfo", "cpuinfo", "stat", "loadavg", "user_beancounters"];

/// Who reads: a VE, the appliance, or neither for sure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reader {
    Ve(VeId),
    Appliance,
    /// Under `/vz` but not a VE's group, or unreadable: served nothing.
    Unknown,
}

/// Who a process is, from its cgroup path (`0::/vz/<VEID>/...` is a VE;
/// only a path positively outside `/vz` is the appliance).
pub fn reader_of_cgroup(text: &str) -> Reader {
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Reader::Unknown;
    };
    match path.strip_prefix("/vz") {
        None => Reader::Appliance,
        Some(rest) => match rest
            .strip_prefix('/')
            .and_then(|r| r.split('/').next())
            .and_then(|v| v.parse::<VeId>().ok())
        {
            Some(v) => Reader::Ve(v),
            None => Reader::Unknown,
        },
    }
}

fn kb_lines(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?.parse().ok()?;
            Some((k.to_owned(), n))
        })
        .collect()
}

/// What a VE's meminfo is made of (bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemView {
    /// `memory.max` (None: no limit).
    pub limit: Option<u64>,
    pub current: u64,
    pub swap_limit: Option<u64>,
    pub swap_current: u64,
    /// `memory.stat`.
    pub stat: String,
}

impl MemView {
    pub fn read(cg: &Path) -> MemView {
        let num = |f: &str| -> Option<u64> {
            std::fs::read_to_string(cg.join(f))
                .ok()
                .and_then(|t| t.trim().parse().ok())
        };
        MemView {
            limit: num("memory.max"),
            current: num("memory.current").unwrap_or(0),
            swap_limit: num("memory.swap.max"),
            swap_current: num("memory.swap.current").unwrap_or(0),
            stat: std::fs::read_to_string(cg.join("memory.stat")).unwrap_or_default(),
        }
    }
}

/// The VE's `/proc/meminfo`: the appliance's, with the memory lines
/// replaced by the VE's (in kB, as the kernel writes them).
pub fn meminfo(host: &str, v: &MemView) -> String {
    let hostv = kb_lines(host);
    let get = |k: &str| hostv.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    let st = |k: &str| {
        v.stat
            .lines()
            .find_map(|l| {
                let (a, b) = l.split_once(' ')?;
                (a == k).then(|| b.trim().parse::<u64>().ok()).flatten()
            })
            .unwrap_or(0)
            / 1024
    };
    let total = v
        .limit
        .map_or(get("MemTotal"), |l| (l / 1024).min(get("MemTotal")));
    let used = v.current / 1024;
    let free = total.saturating_sub(used);
    let file = st("file");
    let shmem = st("shmem");
    let available = (free + file.saturating_sub(shmem) + st("slab_reclaimable")).min(total);
    let swap_total = v
        .swap_limit
        .map_or(get("SwapTotal"), |l| (l / 1024).min(get("SwapTotal")));
    let swap_free = swap_total.saturating_sub(v.swap_current / 1024);
    let ours: &[(&str, u64)] = &[
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", 0),
        ("Cached", file),
        ("SwapCached", st("swapcached")),
        ("Active", st("active_anon") + st("active_file")),
        ("Inactive", st("inactive_anon") + st("inactive_file")),
        ("Active(anon)", st("active_anon")),
        ("Inactive(anon)", st("inactive_anon")),
        ("Active(file)", st("active_file")),
        ("Inactive(file)", st("inactive_file")),
        ("Unevictable", st("unevictable")),
        ("SwapTotal", swap_total),
        ("SwapFree", swap_free),
        ("Dirty", st("file_dirty")),
        ("Writeback", st("file_writeback")),
        ("AnonPages", st("anon")),
        ("Mapped", st("file_mapped")),
        ("Shmem", shmem),
        ("Slab", st("slab")),
        ("SReclaimable", st("slab_reclaimable")),
        ("SUnreclaim", st("slab_unreclaimable")),
        ("KernelStack", st("kernel_stack")),
        ("PageTables", st("pagetables")),
    ];
    let mut out = String::new();
    for line in host.lines() {
        let key = line.split(':').next().unwrap_or_default();
        match ours.iter().find(|(k, _)| *k == key) {
            Some((k, v)) => out.push_str(&format!("{:<16}{:>8} kB\n", format!("{k}:"), v)),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `/proc/cpuinfo` with only the processors in `cpus`, numbered from 0.
pub fn cpuinfo(host: &str, cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut n = 0;
    for block in host.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let id = block.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "processor").then(|| v.trim().parse::<u32>().ok())?
        });
        if id.is_some_and(|id| cpus.contains(&id)) {
            for l in block.lines() {
                if l.split(':').next().map(str::trim) == Some("processor") {
                    out.push_str(&format!("processor\t: {n}\n"));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            out.push('\n');
            n += 1;
        }
    }
    out
}

/// `/proc/stat` with only the `cpuN` lines of `cpus` (numbered from 0),
/// their sum as the `cpu` line, and `btime` moved `boot_shift` seconds
/// later (the VE's clocks start at its start: its time namespace).
pub fn stat(host: &str, cpus: &[u32], boot_shift: u64) -> String {
    let mut sum: Vec<u64> = Vec::new();
    let mut per = String::new();
    let mut n = 0;
    for l in host.lines() {
        let mut f = l.split_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(id) = name.strip_prefix("cpu").and_then(|i| i.parse::<u32>().ok()) else {
            continue;
        };
        if !cpus.contains(&id) {
            continue;
        }
        let vals: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        if sum.len() < vals.len() {
            sum.resize(vals.len(), 0);
        }
        for (s, v) in sum.iter_mut().zip(&vals) {
            *s += v;
        }
        let rest: Vec<String> = vals.iter().map(u64::to_string).collect();
        per.push_str(&format!("cpu{n} {}\n", rest.join(" ")));
        n += 1;
    }
    let mut out = format!(
        "cpu  {}\n",
        sum.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    );
    out.push_str(&per);
    for l in host.lines().filter(|l| !l.starts_with("cpu")) {
        match l
            .strip_prefix("btime ")
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            Some(b) => out.push_str(&format!("btime {}\n", b + boot_shift)),
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// `/proc/loadavg`: averages in hundredths, runnable and total threads.
pub fn loadavg(avg: [u32; 3], runnable: u64, total: u64) -> String {
    let f = |v: u32| format!("{}.{:02}", v / 100, v % 100);
    format!(
        "{} {} {} {runnable}/{total} 0\n",
        f(avg[0]),
        f(avg[1]),
        f(avg[2])
    )
}

/// How long a rendered file is served again to readers of the same VE (a
/// VE reading its /proc in a loop costs one rendering per second).
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The most files of the view one reader (a VE, the appliance) may hold
/// open at once: each open keeps its text until it is closed.
const OPEN_PER_READER: usize = 256;

type Text = Arc<[u8]>;

struct VzProc {
    manager: Arc<Manager>,
    /// Open handles: the text each was opened with, and whose it is.
    open: Mutex<HashMap<u64, (Reader, Text)>>,
    cache: Mutex<HashMap<(Reader, u64), (std::time::Instant, Text)>>,
    next: AtomicU64,
}

const TTL: Duration = Duration::ZERO;

fn attr(ino: u64) -> FileAttr {
    let dir = ino == 1;
    let t = SystemTime::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if dir { 0o555 } else { 0o444 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn ino_of(name: &OsStr) -> Option<u64> {
    FILES
        .iter()
        .position(|f| OsStr::new(f) == name)
        .map(|i| i as u64 + 2)
}

impl VzProc {
    /// Who the process `pid` is.
    fn reader(pid: u32) -> Reader {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|t| reader_of_cgroup(&t))
            .unwrap_or(Reader::Unknown)
    }

    /// The file `ino` as `reader` should see it, rendered at most once per
    /// [`CACHE_FOR`].
    fn cached(&self, ino: u64, reader: Reader) -> Option<Text> {
        let now = std::time::Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, t)) = cache.get(&(reader, ino)) {
            if now.duration_since(*at) < CACHE_FOR {
                return Some(Arc::clone(t));
            }
        }
        cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
        drop(cache);
        let text: Text = self.content(ino, reader)?.into_bytes().into();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((reader, ino), (now, Arc::clone(&text)));
        Some(text)
    }

    /// The file `ino` as `reader` should see it.
    fn content(&self, ino: u64, reader: Reader) -> Option<String> {
        let name = *FILES.get(usize::try_from(ino.checked_sub(2)?).ok()?)?;
        let host =
            |f: &str| std::fs::read_to_string(Path::new("/proc").join(f)).unwrap_or_default();
        let m = &self.manager;
        let veid = match reader {
            Reader::Ve(v) => v,
            Reader::Unknown => return None,
            // The appliance's own view.
            Reader::Appliance => {
                return Some(match name {
                    // The appliance's services as uid 0, then every
                    // running VE: what `vzctl ubc` prints.
                    "user_beancounters" => {
                        let all: Vec<_> = std::iter::once(m.appliance_resources())
                            .chain(
                                m.veids()
                                    .into_iter()
                                    .map(|v| m.resources(v))
                                    .filter(|r| r.running),
                            )
                            .collect();
                        let blocks: Vec<(u32, &[proto::UbcRow])> =
                            all.iter().map(|r| (r.veid, &r.ubc[..])).collect();
                        crate::ubc::render(&blocks)
                    }
                    other => host(other),
                });
            }
        };
        let cg = m.cgroup_dir(veid);
        let cpus = || {
            std::fs::read_to_string(cg.join("cpuset.cpus.effective"))
                .ok()
                .and_then(|t| vzconfig::resources::parse_cpulist(t.trim()).ok().flatten())
                .unwrap_or_default()
        };
        Some(match name {
            "meminfo" => meminfo(&host("meminfo"), &MemView::read(&cg)),
            "cpuinfo" => cpuinfo(&host("cpuinfo"), &cpus()),
            "stat" => {
                // The VE's boot is its init's start (clock ticks since the
                // appliance's boot, USER_HZ 100).
                let shift = m.info(veid).init_start / 100;
                stat(&host("stat"), &cpus(), shift)
            }
            // The sampler's figures and pids.current: no walk of the VE's
            // processes per read.
            "loadavg" => {
                let tasks = m.info(veid).numproc.map_or(0, u64::from);
                loadavg(m.laverage(veid), m.runnable(veid), tasks)
            }
            _ => {
                let r = m.resources(veid);
                crate::ubc::render(&[(veid.get(), &r.ubc[..])])
            }
        })
    }
}

impl Filesystem for VzProc {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match ino_of(name).filter(|_| parent.0 == 1) {
            Some(ino) => reply.entry(&TTL, &attr(ino), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 >= 1 && ino.0 < FILES.len() as u64 + 2 {
            reply.attr(&TTL, &attr(ino.0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let reader = Self::reader(req.pid());
        {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if open.values().filter(|(r, _)| *r == reader).count() >= OPEN_PER_READER {
                return reply.error(Errno::EMFILE);
            }
        }
        let Some(text) = self.cached(ino.0, reader) else {
            return reply.error(Errno::ENOENT);
        };
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, (reader, text));
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.get(&fh.0) {
            Some((_, data)) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            None => reply.error(Errno::EIO),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    // What fuser would log as "not implemented" on every `cat` and `ps`:
    // nothing to flush, access is the mode bits' business (default_permissions),
    // and these files are no terminals.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        reply.ok();
    }

    fn access(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mask: fuser::AccessFlags,
        reply: fuser::ReplyEmpty,
    ) {
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (1, FileType::Directory, "."),
            (1, FileType::Directory, ".."),
        ];
        for (i, f) in FILES.iter().enumerate() {
            entries.push((i as u64 + 2, FileType::RegularFile, f));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts the filesystem at [`MOUNT_DIR`] (a dead one left by an earlier
/// vmmgr is detached first) and serves it from a thread for as long as
/// vmmgr runs.
pub fn start(manager: Arc<Manager>) -> std::io::Result<()> {
    let dir = Path::new(MOUNT_DIR);
    // First the dead mount of an earlier vmmgr (stat on it fails).
    let _ = rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH);
    std::fs::create_dir_all(dir)?;
    let fs = VzProc {
        manager,
        open: Mutex::new(HashMap::new()),
        cache: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("vzproc".into()),
        fuser::MountOption::RO,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoExec,
    ];
    config.acl = fuser::SessionACL::All;
    let session = fuser::Session::new(fs, dir, &config)?;
    let bg = session.spawn()?;
    // Served until vmmgr exits.
    std::mem::forget(bg);
    if let Err(e) = bind_appliance_ubc(dir) {
        log::warn!(
            "cannot show every VE's beancounters as the appliance's /proc/user_beancounters: {e}"
        );
    }
    Ok(())
}

/// Where the kernel module `vzproc` (rootfs/kmod) gives procfs the name.
const UBC_PATH: &str = "/proc/user_beancounters";

/// The appliance's `/proc/user_beancounters` shows every running VE, as an
/// OpenVZ host's does: the view's file bound read-only over the module's
/// placeholder in the appliance's mount namespace. The binds of earlier
/// vmmgrs (dead, their statfs fails) are taken off first, so restarts do not
/// stack them. Without the module there is no name to bind over: nothing
/// to do.
fn bind_appliance_ubc(view: &Path) -> std::io::Result<()> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    for _ in 0..16 {
        match rustix::fs::statfs(UBC_PATH) {
            Ok(s) if s.f_type == PROC_SUPER_MAGIC => break,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            _ => rustix::mount::unmount(UBC_PATH, rustix::mount::UnmountFlags::DETACH)?,
        }
    }
    let src = rustix::fs::open(
        view.join("user_beancounters"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let target = rustix::fs::open(
        UBC_PATH,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )?;
    crate::mountfd::bind_readonly(
        std::os::fd::AsFd::as_fd(&src),
        std::os::fd::AsFd::as_fd(&target),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_placed_by_their_cgroup() {
        assert!(matches!(
            reader_of_cgroup("0::/vz/101/ve/init.scope\n"),
            Reader::Ve(v) if v.get() == 101
        ));
        assert!(matches!(
            reader_of_cgroup("0::/vz/205/vzctl-exec.1.2\n"),
            Reader::Ve(v) if v.get() == 205
        ));
        assert_eq!(reader_of_cgroup("0::/appliance\n"), Reader::Appliance);
        assert_eq!(reader_of_cgroup("0::/\n"), Reader::Appliance);
        // Under /vz but no VE's: nothing, never the appliance's view.
        assert_eq!(reader_of_cgroup("0::/vz\n"), Reader::Unknown);
        assert_eq!(reader_of_cgroup("0::/vz/x/ve\n"), Reader::Unknown);
        assert_eq!(reader_of_cgroup(""), Reader::Unknown);
    }

    #[test]
    fn meminfo_shows_the_ve_limit_and_usage() {
        let host = "MemTotal:        1000000 kB\nMemFree:          800000 kB\nMemAvailable:     900000 kB\nBuffers:            1000 kB\nCached:            50000 kB\nSwapTotal:        500000 kB\nSwapFree:         500000 kB\nHugePages_Total:       0\n";
        let v = MemView {
            limit: Some(256 << 20),
            current: 64 << 20,
            swap_limit: None,
            swap_current: 0,
            stat: "anon 33554432\nfile 16777216\nshmem 0\n".into(),
        };
        let m = meminfo(host, &v);
        assert!(m.contains("MemTotal:         262144 kB"), "{m}");
        assert!(m.contains("MemFree:          196608 kB"), "{m}");
        assert!(m.contains("MemAvailable:     212992 kB"), "{m}");
        assert!(m.contains("Cached:            16384 kB"), "{m}");
        assert!(m.contains("SwapTotal:        500000 kB"), "{m}");
        assert!(m.contains("HugePages_Total:       0"), "{m}");
        // No limit: the appliance's total.
        let m = meminfo(host, &MemView::default());
        assert!(m.contains("MemTotal:        1000000 kB"), "{m}");
    }

    #[test]
    fn cpuinfo_and_stat_show_only_the_ves_cpus() {
        let host = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\nprocessor\t: 2\nmodel name\t: X\n\n";
        let c = cpuinfo(host, &[2]);
        assert_eq!(c, "processor\t: 0\nmodel name\t: X\n\n");
        let s = "cpu  30 0 30 300\ncpu0 10 0 10 100\ncpu1 10 0 10 100\ncpu2 10 0 10 100\nintr 5\nbtime 17\n";
        assert_eq!(
            stat(s, &[0, 2], 3),
            "cpu  20 0 20 200\ncpu0 10 0 10 100\ncpu1 10 0 10 100\nintr 5\nbtime 20\n"
        );
        assert_eq!(loadavg([5, 101, 0], 1, 12), "0.05 1.01 0.00 1/12 0\n");
    }
}
