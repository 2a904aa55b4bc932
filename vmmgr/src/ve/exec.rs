//! Running programs inside a running VE: `vzctl exec`, `exec2`, `enter`, and
//! changing a running VE's hostname.
//!
//! The client joins the VE's cgroup and all its namespaces through a pidfd of
//! its init (one atomic `setns`), becomes VE root, drops the capabilities the
//! VE may not have, and only then executes the VE's own `/bin/sh`. Nothing of
//! the appliance stays open: every descriptor but stdio is closed first.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// The capabilities a VE keeps, from the appliance's policy file. Read before
/// joining a VE: inside it, the appliance's files are out of reach.
pub fn policy_caps(policy_dir: &Path) -> std::io::Result<Vec<u32>> {
    let path = policy_dir.join("capabilities");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    super::caps::parse_keep_list(&text).map_err(|(line, name)| {
        std::io::Error::other(format!(
            "{}:{line}: unknown capability {name}",
            path.display()
        ))
    })
}

/// Joins the VE of init `pid` (cgroup, then every namespace) as its root,
/// keeping only the capabilities in `keep`. For a single-threaded process
/// about to fork or exec.
pub fn join(veid: u32, pid: i32, cgroup_root: &Path, keep: &[u32]) -> std::io::Result<()> {
    let pidfd = pidfd(pid)?;
    std::fs::write(cgroup_root.join(veid.to_string()).join("cgroup.procs"), "0")?;
    use rustix::thread::ThreadNameSpaceType as T;
    rustix::thread::move_into_thread_name_spaces(
        pidfd.as_fd(),
        T::USER
            | T::MOUNT
            | T::PROCESS_ID
            | T::HOST_NAME_AND_NIS_DOMAIN_NAME
            | T::INTER_PROCESS_COMMUNICATION
            | T::NETWORK
            | T::CONTROL_GROUP,
    )?;
    rustix::thread::set_thread_groups(&[])?;
    let g = rustix::process::Gid::from_raw(0);
    let u = rustix::process::Uid::from_raw(0);
    rustix::thread::set_thread_res_gid(g, g, g)?;
    rustix::thread::set_thread_res_uid(u, u, u)?;
    for cap in super::caps::to_drop(keep) {
        match crate::sys::drop_bounding_cap(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    rustix::process::chdir("/")?;
    Ok(())
}

fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Sets the hostname of the running VE whose init is `pid` (from a
/// short-lived thread: UTS membership is per thread).
pub fn set_hostname(pid: i32, hostname: &str) -> std::io::Result<()> {
    let fd = pidfd(pid)?;
    let name = hostname.to_owned();
    std::thread::spawn(move || -> std::io::Result<()> {
        rustix::thread::move_into_thread_name_spaces(
            fd.as_fd(),
            rustix::thread::ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME,
        )?;
        rustix::system::sethostname(name.as_bytes())?;
        Ok(())
    })
    .join()
    .map_err(|_| std::io::Error::other("hostname thread panicked"))?
}

/// Opens a pty master in the VE's own devpts instance (through the init's root)
/// and returns it with the slave's path as the VE sees it.
pub fn ve_pty(pid: i32) -> std::io::Result<(OwnedFd, String)> {
    use rustix::fs::{Mode, OFlags};
    let ptmx = format!("/proc/{pid}/root/dev/pts/ptmx");
    let master = rustix::fs::open(
        ptmx.as_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?
        .to_string_lossy()
        .into_owned();
    // The slave was created by appliance root, an id the VE cannot see: give it
    // to VE root, or the shell inside could not open its own terminal.
    let root_uid = mapped_root(&format!("/proc/{pid}/uid_map"))?;
    let root_gid = mapped_root(&format!("/proc/{pid}/gid_map"))?;
    let slave = format!("/proc/{pid}/root{name}");
    rustix::fs::chown(
        slave.as_str(),
        Some(rustix::fs::Uid::from_raw(root_uid)),
        Some(rustix::fs::Gid::from_raw(root_gid)),
    )?;
    Ok((master, name))
}

/// The host id VE id 0 maps to, from a `uid_map`/`gid_map` file.
fn mapped_root(map: &str) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(map)?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"0"))
                .then(|| f.get(1)?.parse().ok())
                .flatten()
        })
        .ok_or_else(|| std::io::Error::other(format!("{map} maps no id 0")))
}
