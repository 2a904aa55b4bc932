//! A VE's cgroup: `/sys/fs/cgroup/vz/<VEID>`, made before the VE starts and
//! owned by the appliance (the VE's limits live there), with the controllers
//! the limits use enabled for its children; and `<VEID>/ve`, delegated to
//! VE root (cgroup v2 delegation: the directory and the files a delegatee
//! writes), the root of the VE's cgroup namespace, where its init runs.
//! Commands of `vzctl exec` run in leaves the appliance makes beside `ve/`
//! (`vzctl-exec.<pid>.<n>`): whatever VE root does in its own tree (enable
//! controllers, make it a threaded root), it cannot make joining fail, nor
//! pre-create their names. Removed once the kernel reports it empty through
//! `cgroup.events` (no sleeping and guessing).
//!
//! The cgroupfs root is a parameter, so the tests run on a temp directory.

use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files a delegatee writes (cgroup-v2.rst, "Delegation Containment").
const DELEGATED_FILES: &[&str] = &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// The cgroup directory of VE `veid` under `root` (appliance-owned).
pub fn dir(root: &Path, veid: impl std::fmt::Display) -> PathBuf {
    root.join(veid.to_string())
}

/// Name of the delegated child, the VE's cgroup-namespace root.
pub const VE_CHILD: &str = "ve";

/// The delegated cgroup of the VE whose cgroup is `cg`.
pub fn delegated(cg: &Path) -> PathBuf {
    cg.join(VE_CHILD)
}

fn named(what: &str, p: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}

/// Controllers enabled below a VE's cgroup: those its limits and accounting
/// use. Not cpuset, hugetlb, rdma or misc: each enabled one costs a state
/// per child group (`ve/` and every exec leaf), for nothing here.
const CHILD_CONTROLLERS: &[&str] = &["cpu", "io", "memory", "pids"];

/// The most cgroups a VE may have below its own (its tree and the exec
/// leaves), and how deep.
pub const MAX_DESCENDANTS: u32 = 1024;
pub const MAX_DEPTH: u32 = 32;

fn mkdir(p: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(named("creating", p, e)),
    }
}

/// Creates the VE's cgroup `cg` (if missing) with [`CHILD_CONTROLLERS`]
/// enabled for its children, and its `ve/` child handed to VE root (host ids
/// `uid`/`gid`); the limit files stay the appliance's. Returns the delegated
/// directory.
pub fn create(cg: &Path, uid: u32, gid: u32) -> std::io::Result<PathBuf> {
    mkdir(cg)?;
    let available = std::fs::read_to_string(cg.join("cgroup.controllers")).unwrap_or_default();
    let enable: Vec<String> = available
        .split_whitespace()
        .filter(|c| CHILD_CONTROLLERS.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if !enable.is_empty() {
        let p = cg.join("cgroup.subtree_control");
        let what = enable.join(" ");
        std::fs::write(&p, &what).map_err(|e| named(&format!("writing {what:?} to"), &p, e))?;
    }
    // Bounds on what VE root may build in its tree (each group costs the
    // appliance kernel memory and every walk of the VE's accounting):
    // VZ7's num-memory-subgroups, fixed here.
    for (file, value) in [
        ("cgroup.max.descendants", MAX_DESCENDANTS),
        ("cgroup.max.depth", MAX_DEPTH),
    ] {
        let p = cg.join(file);
        if p.exists() {
            std::fs::write(&p, value.to_string())
                .map_err(|e| named(&format!("writing {value} to"), &p, e))?;
        }
    }
    let ve = delegated(cg);
    mkdir(&ve)?;
    let (u, g) = (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    );
    rustix::fs::chown(&ve, u, g).map_err(|e| named("delegating", &ve, e.into()))?;
    for f in DELEGATED_FILES {
        let p = ve.join(f);
        rustix::fs::chown(&p, u, g).map_err(|e| named("delegating", &p, e.into()))?;
    }
    Ok(ve)
}

/// Whether processes remain in the cgroup or below (`populated 1` in
/// `cgroup.events`). A missing cgroup is not populated.
pub fn populated(cg: &Path) -> std::io::Result<bool> {
    match std::fs::read_to_string(cg.join("cgroup.events")) {
        Ok(t) => Ok(parse_populated(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(named("reading", &cg.join("cgroup.events"), e)),
    }
}

fn parse_populated(events: &str) -> bool {
    events
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["populated", "1"])
}

/// The processes of the cgroup and of every group below it (cgroupfs has
/// no symlinks; a group gone meanwhile is skipped).
pub fn procs(cg: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![cg.to_owned()];
    while let Some(dir) = todo.pop() {
        if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(e.path());
                }
            }
        }
    }
    out
}

/// Kills every process of the cgroup (`cgroup.kill`).
pub fn kill(cg: &Path) -> std::io::Result<()> {
    let p = cg.join("cgroup.kill");
    std::fs::write(&p, "1").map_err(|e| named("writing 1 to", &p, e))
}

/// Waits until the cgroup is empty: the kernel signals every change of
/// `cgroup.events` as POLLPRI. Returns whether it emptied within `timeout`.
pub fn wait_empty(cg: &Path, timeout: Duration) -> std::io::Result<bool> {
    let path = cg.join("cgroup.events");
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(named("opening", &path, e)),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let mut text = String::new();
        f.rewind()
            .and_then(|_| f.read_to_string(&mut text))
            .map_err(|e| named("reading", &path, e))?;
        if !parse_populated(&text) {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(
            f.as_fd(),
            rustix::event::PollFlags::PRI,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(named("waiting on", &path, e.into())),
        }
    }
}

/// Removes the VE's cgroup and the groups VE root or `vzctl exec` made in it,
/// deepest first, once it is empty (waiting up to `timeout`). Nothing is
/// removed while a process remains.
pub fn remove(cg: &Path, timeout: Duration) -> std::io::Result<()> {
    if !cg.exists() {
        return Ok(());
    }
    if !wait_empty(cg, timeout)? {
        return Err(std::io::Error::other(format!(
            "{} still has processes after {} s",
            cg.display(),
            timeout.as_secs()
        )));
    }
    remove_tree(cg)
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| named("listing", dir, e))?;
    for e in entries.flatten() {
        // cgroupfs has no symlinks; a sub-directory is a child group.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(named("removing", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_is_read_from_cgroup_events() {
        assert!(parse_populated("populated 1\nfrozen 0\n"));
        assert!(!parse_populated("populated 0\nfrozen 0\n"));
        assert!(!parse_populated(""));
        let d = tempfile::tempdir().expect("tempdir");
        assert!(!populated(&d.path().join("nope")).expect("missing"));
        std::fs::write(d.path().join("cgroup.events"), "populated 1\n").expect("write");
        assert!(populated(d.path()).expect("read"));
        assert!(!wait_empty(d.path(), Duration::from_millis(50)).expect("wait"));
        std::fs::write(d.path().join("cgroup.events"), "populated 0\n").expect("write");
        assert!(wait_empty(d.path(), Duration::from_secs(5)).expect("wait"));
    }

    #[test]
    fn removal_waits_for_empty_and_takes_child_groups_first() {
        // A stand-in cgroupfs: plain directories; the files stand for the
        // kernel's (real cgroup directories can be removed with them inside).
        let d = tempfile::tempdir().expect("tempdir");
        let cg = d.path().join("101");
        std::fs::create_dir_all(cg.join("inner/deeper")).expect("mkdir");
        std::fs::create_dir_all(cg.join("vzctl-exec.7.0")).expect("mkdir");
        std::fs::write(cg.join("cgroup.events"), "populated 1\n").expect("write");
        assert!(remove(&cg, Duration::from_millis(20)).is_err());
        assert!(
            cg.join("inner/deeper").exists(),
            "nothing removed while populated"
        );
        std::fs::write(cg.join("cgroup.events"), "populated 0\n").expect("write");
        // Plain files block rmdir here, as they cannot in cgroupfs.
        std::fs::remove_file(cg.join("cgroup.events")).expect("rm");
        remove(&cg, Duration::from_secs(1)).expect("removed");
        assert!(!cg.exists());
    }

    #[test]
    fn create_enables_controllers_and_delegates_only_the_ve_child() {
        // A stand-in cgroupfs: the kernel would make these files itself.
        let d = tempfile::tempdir().expect("tempdir");
        let cg = d.path().join("101");
        let ve = delegated(&cg);
        std::fs::create_dir_all(&ve).expect("mkdir");
        std::fs::write(
            cg.join("cgroup.controllers"),
            "cpuset cpu memory pids rdma\n",
        )
        .expect("file");
        for f in DELEGATED_FILES {
            std::fs::write(ve.join(f), "").expect("file");
        }
        std::fs::write(ve.join("pids.max"), "max\n").expect("file");
        assert_eq!(create(&cg, 165536, 165537).expect("create"), ve);
        let on = std::fs::read_to_string(cg.join("cgroup.subtree_control")).expect("read");
        assert_eq!(on, "+cpu +memory +pids");
        use std::os::unix::fs::MetadataExt;
        for f in DELEGATED_FILES {
            let m = std::fs::metadata(ve.join(f)).expect("meta");
            assert_eq!((m.uid(), m.gid()), (165536, 165537), "{f}");
        }
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(
            std::fs::metadata(&cg).expect("meta").uid(),
            me,
            "the VE's cgroup stays ours"
        );
        assert_eq!(
            std::fs::metadata(ve.join("pids.max")).expect("meta").uid(),
            me
        );
    }
}
