//! Joining a running VE from the appliance: what `vzctl exec`, `exec2`,
//! `enter` and `set --userpasswd` do in their child before the VE's program
//! runs, and the VE-side pty they use.
//!
//! Order (for a single-threaded child of `vzctl`):
//! 1. not dumpable, and nothing of the appliance left open: stdio is already
//!    the pty slave or pipes, every other descriptor is closed;
//! 2. into a fresh leaf cgroup under the VE's cgroup that the appliance owns
//!    (the VE cannot make joining fail by enabling controllers there);
//! 3. every namespace of the VE's init at once, through a pidfd;
//! 4. VE root, the VE's capability bounding set and seccomp filter;
//! 5. (the caller forks the VE-side child, which calls `setsid` and takes the
//!    pty as its controlling terminal, then executes the command).
//!
//! Every path under a VE's root is opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, checked, and used as a fd.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

/// Name prefix of the leaf cgroups `vzctl` commands run in.
pub const EXEC_LEAF_PREFIX: &str = "vzctl-exec.";

/// Makes a fresh leaf cgroup owned by the appliance under the VE's cgroup
/// directory `ve_cgroup` and moves the calling process into it. Returns the
/// leaf's name (relative to `ve_cgroup`).
///
/// The VE owns its cgroup directory (delegation) and may enable controllers
/// in it, which forbids processes there; a leaf made by the appliance, with a
/// `cgroup.subtree_control` only the appliance can write, always takes one.
pub fn enter_exec_leaf(ve_cgroup: &Path) -> std::io::Result<String> {
    let dir = rustix::fs::open(
        ve_cgroup,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    )
    .map_err(|e| path_err("opening", ve_cgroup, e))?;
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut last = None;
    for attempt in 0..8 {
        let name = format!("{EXEC_LEAF_PREFIX}{me}.{attempt}");
        match rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) => {}
            // A name the VE took first: take another.
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(path_err("creating", &ve_cgroup.join(&name), e)),
        }
        let procs = rustix::fs::openat2(
            &dir,
            format!("{name}/cgroup.procs").as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        );
        let written = procs.and_then(|fd| rustix::io::write(&fd, b"0"));
        match written {
            Ok(_) => return Ok(name),
            // Removed or replaced by the VE between mkdir and the write.
            Err(e) => last = Some(path_err("joining", &ve_cgroup.join(&name), e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::other(format!(
            "no free leaf cgroup name under {}",
            ve_cgroup.display()
        ))
    }))
}

/// Removes a leaf made by [`enter_exec_leaf`] once its processes are gone (a
/// daemon started by the command keeps it, and it stays).
pub fn remove_exec_leaf(ve_cgroup: &Path, name: &str) {
    if name.starts_with(EXEC_LEAF_PREFIX) && !name.contains('/') {
        let _ = std::fs::remove_dir(ve_cgroup.join(name));
    }
}

fn path_err(what: &str, path: &Path, e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::new(
        std::io::Error::from(e).kind(),
        format!("{what} {}: {e}", path.display()),
    )
}

/// Joins the VE of `init` (every namespace, atomically) as VE root, keeping
/// only the VE's capabilities. For a single-threaded process that already
/// dropped everything of the appliance; the caller installs the seccomp
/// filter last, right before it forks the VE-side child.
pub fn join(init: BorrowedFd<'_>, keep: &[u32]) -> std::io::Result<()> {
    use rustix::thread::ThreadNameSpaceType as T;
    rustix::thread::move_into_thread_name_spaces(
        init,
        T::USER
            | T::MOUNT
            | T::PROCESS_ID
            | T::HOST_NAME_AND_NIS_DOMAIN_NAME
            | T::INTER_PROCESS_COMMUNICATION
            | T::NETWORK
            | T::CONTROL_GROUP
            | T::TIME,
    )?;
    rustix::thread::set_thread_groups(&[])?;
    let g = rustix::process::Gid::from_raw(0);
    let u = rustix::process::Uid::from_raw(0);
    rustix::thread::set_thread_res_gid(g, g, g)?;
    rustix::thread::set_thread_res_uid(u, u, u)?;
    // The credential change may reset it: say it again.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    for cap in crate::policy::caps::to_drop(keep) {
        match crate::sys::drop_bounding_cap(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    rustix::process::chdir("/")?;
    Ok(())
}

/// `DEVPTS_SUPER_MAGIC`.
const DEVPTS_MAGIC: i64 = 0x1cd1;

/// A pty of the VE's own devpts instance: the master for the appliance-side
/// relay and the slave (owned by VE root) for the command.
#[derive(Debug)]
pub struct VePty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a pty in the devpts instance that the VE of init `pid` sees at
/// `/dev/pts`, without following anything the VE controls: the VE's root is
/// opened through the init's `/proc/<pid>/root`, `dev/pts/ptmx` is resolved
/// inside it with no symlinks, and what was opened must be devpts's ptmx.
/// The slave comes from the master (`TIOCGPTPEER`), never by name, and is
/// handed to VE root by fd.
pub fn ve_pty(pid: i32, start_time: u64, uid: u32, gid: u32) -> std::io::Result<VePty> {
    let root = rustix::fs::open(
        format!("/proc/{pid}/root").as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // The root was opened through the pid: make sure it is still that init.
    if crate::runstate::start_time(pid) != Some(start_time) {
        return Err(std::io::Error::other(format!(
            "the VE init (pid {pid}) is gone or was replaced"
        )));
    }
    let master = open_ptmx_in(&root)?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )?;
    // The slave was created by appliance root, an id the VE cannot see: give it
    // to VE root, or the shell inside could not use its own terminal.
    rustix::fs::fchown(
        &slave,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    Ok(VePty { master, slave })
}

/// Opens `dev/pts/ptmx` beneath `root` (a VE's root directory) and checks it.
pub fn open_ptmx_in(root: &OwnedFd) -> std::io::Result<OwnedFd> {
    let master = rustix::fs::openat2(
        root,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| {
        std::io::Error::other(format!(
            "opening the VE's /dev/pts/ptmx: {e} (something in the VE replaced /dev or \
             /dev/pts; unmount it there, or restart the VE)"
        ))
    })?;
    let st = rustix::fs::fstat(&master)?;
    let fs = rustix::fs::fstatfs(&master)?;
    let is_chr =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice;
    if !is_chr
        || rustix::fs::major(st.st_rdev) != 5
        || rustix::fs::minor(st.st_rdev) != 2
        || fs.f_type != DEVPTS_MAGIC
    {
        return Err(std::io::Error::other(
            "the VE's /dev/pts/ptmx is not a devpts ptmx: refusing it (something in the VE \
             replaced /dev/pts; unmount it there, or restart the VE)",
        ));
    }
    Ok(master)
}

/// The host id VE id 0 maps to, from a `uid_map`/`gid_map` text.
pub fn mapped_root(map: &str) -> Option<u32> {
    map.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&"0"))
            .then(|| f.get(1)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_root_reads_the_zero_line() {
        assert_eq!(
            mapped_root("         0     165536      65536\n"),
            Some(165536)
        );
        assert_eq!(mapped_root("1 2 3\n"), None);
    }

    #[test]
    fn ptmx_behind_a_symlink_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("dev")).expect("mkdir");
        // A VE that points its /dev/pts at the appliance's own devpts.
        std::os::unix::fs::symlink("/dev/pts", d.path().join("dev/pts")).expect("symlink");
        let root = rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .expect("open root");
        let e = open_ptmx_in(&root).expect_err("symlink must be refused");
        assert!(e.to_string().contains("ptmx"), "{e}");
    }

    #[test]
    fn a_plain_file_named_ptmx_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("dev/pts")).expect("mkdir");
        std::fs::write(d.path().join("dev/pts/ptmx"), b"").expect("file");
        let root = rustix::fs::open(d.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .expect("open root");
        let e = open_ptmx_in(&root).expect_err("not a ptmx");
        assert!(e.to_string().contains("not a devpts ptmx"), "{e}");
    }

    #[test]
    fn exec_leaf_names_taken_first_are_never_joined() {
        // A plain directory stands in for the VE's cgroup. Without the
        // kernel's cgroup.procs files no leaf can be joined, so every attempt
        // is made and the error names the cgroup; a name that was taken in
        // advance is skipped, never joined.
        let d = tempfile::tempdir().expect("tempdir");
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let taken = d.path().join(format!("{EXEC_LEAF_PREFIX}{me}.0"));
        std::fs::create_dir(&taken).expect("mkdir");
        std::fs::write(taken.join("cgroup.procs"), "").expect("file");
        let e = enter_exec_leaf(d.path()).expect_err("no cgroup.procs in a plain dir");
        assert!(e.to_string().contains(EXEC_LEAF_PREFIX), "{e}");
        assert_eq!(
            std::fs::read_to_string(taken.join("cgroup.procs")).expect("read"),
            "",
            "a leaf made by someone else must not be joined"
        );
        for n in 1..8 {
            assert!(d
                .path()
                .join(format!("{EXEC_LEAF_PREFIX}{me}.{n}"))
                .is_dir());
            remove_exec_leaf(d.path(), &format!("{EXEC_LEAF_PREFIX}{me}.{n}"));
        }
        remove_exec_leaf(d.path(), "../etc");
        std::fs::remove_file(taken.join("cgroup.procs")).expect("rm");
        remove_exec_leaf(d.path(), &format!("{EXEC_LEAF_PREFIX}{me}.0"));
        assert_eq!(std::fs::read_dir(d.path()).expect("read").count(), 0);
    }
}
