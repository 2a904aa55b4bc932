//! The VE's user namespace: a short-lived child creates it, we (root of the
//! parent namespace) write its id maps and keep a handle to it.

use super::{Ctx, SetupError, Spec};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};

/// Creates the VE's user namespace with VE id 0..id_count mapped to the VE's
/// host range.
pub(super) fn create(spec: &Spec, cx: &Ctx) -> Result<OwnedFd, SetupError> {
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
    let (ready_rx, ready_tx) = cx.at("pipe", pipe())?;
    let (done_rx, done_tx) = cx.at("pipe", pipe())?;
    // SAFETY: vesetup is single-threaded.
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match cx.at("forking the namespace holder", forked)? {
        None => {
            drop(ready_rx);
            drop(done_tx);
            // The namespace is owned by the VE's own host uid, not by uid 0:
            // the kernel charges per-user limits (inotify instances, user
            // namespaces, ...) to the owner, so each VE gets its own count
            // instead of sharing appliance root's with every other VE.
            let g = rustix::process::Gid::from_raw(spec.gid_base);
            let u = rustix::process::Uid::from_raw(spec.uid_base);
            let ok = rustix::thread::set_thread_groups(&[]).is_ok()
                && rustix::thread::set_thread_res_gid(g, g, g).is_ok()
                && rustix::thread::set_thread_res_uid(u, u, u).is_ok()
                && nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = File::from(ready_tx).write_all(if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            let _ = File::from(done_rx).read(&mut b);
            std::process::exit(0);
        }
        Some(pid) => {
            drop(ready_tx);
            drop(done_rx);
            let holder = cx.at(
                "pidfd of the namespace holder",
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()),
            );
            let mut b = [0u8; 1];
            let n = File::from(ready_rx).read(&mut b).unwrap_or(0);
            let result = holder.and_then(|holder| {
                if n != 1 || b[0] != b'1' {
                    return Err(cx.fail(
                        "creating the user namespace",
                        "unshare(CLONE_NEWUSER) failed",
                    ));
                }
                let _pinned = holder;
                write_maps(spec, cx, pid.as_raw_nonzero().get())?;
                open_userns(cx, pid.as_raw_nonzero().get())
            });
            drop(done_tx);
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            result
        }
    }
}

fn write_maps(spec: &Spec, cx: &Ctx, pid: i32) -> Result<(), SetupError> {
    // Our own child, not yet reaped: its pid cannot have been reused.
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let uid_map = format!("0 {} {}\n", spec.uid_base, spec.id_count);
    let gid_map = format!("0 {} {}\n", spec.gid_base, spec.id_count);
    cx.at(
        "writing uid_map",
        std::fs::write(proc.join("uid_map"), uid_map),
    )?;
    cx.at(
        "writing gid_map",
        std::fs::write(proc.join("gid_map"), gid_map),
    )?;
    Ok(())
}

/// The user namespace of our (unreaped) child `pid`, as an `nsfs` fd.
fn open_userns(cx: &Ctx, pid: i32) -> Result<OwnedFd, SetupError> {
    let f = cx.at(
        "opening the user namespace",
        File::open(format!("/proc/{pid}/ns/user")),
    )?;
    Ok(OwnedFd::from(f))
}

/// Joins the VE's user namespace as its root (uid and gid 0, no groups).
pub(super) fn become_ve_root(cx: &Ctx, userns: BorrowedFd<'_>) -> Result<(), SetupError> {
    cx.at(
        "joining the VE user namespace",
        rustix::thread::move_into_link_name_space(
            userns,
            Some(rustix::thread::LinkNameSpaceType::User),
        ),
    )?;
    cx.at(
        "setgroups in the VE",
        rustix::thread::set_thread_groups(&[]),
    )?;
    let g = rustix::process::Gid::from_raw(0);
    let u = rustix::process::Uid::from_raw(0);
    cx.at(
        "becoming VE root (gid)",
        rustix::thread::set_thread_res_gid(g, g, g),
    )?;
    cx.at(
        "becoming VE root (uid)",
        rustix::thread::set_thread_res_uid(u, u, u),
    )?;
    Ok(())
}
