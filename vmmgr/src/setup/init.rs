//! The VE's first process and its init.
//!
//! The first process joins the VE's cgroup and user namespace as VE root and
//! creates the VE's PID, network, UTS, IPC and cgroup namespaces; it forks the
//! VE init (PID 1 of the new PID namespace), hands vesetup a pidfd of it and
//! exits. The init waits until vesetup has mounted /proc and the masks and
//! pivoted, then copies the mount namespace (locking every mount it inherits),
//! finishes itself and executes the template's init.

use super::{userns, Ctx, Policy, SetupError, Spec, Started};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A VE init that waits for [`Waiting::release`].
#[derive(Debug)]
pub(super) struct Waiting {
    pub pidfd: OwnedFd,
    pid: rustix::process::Pid,
    /// Read while the appliance's /proc is still our /proc (before the pivot).
    start_time: u64,
    go: OwnedFd,
    errors: OwnedFd,
}

/// What the init reports when it fails: a tag byte then the message.
const TAG_STEP: u8 = b'S';
const TAG_BROKEN: u8 = b'B';

pub(super) fn spawn(
    spec: &Spec,
    cx: &Ctx,
    userns: BorrowedFd<'_>,
    policy: &Policy,
) -> Result<Waiting, SetupError> {
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
    let (go_rx, go_tx) = cx.at("pipe", pipe())?;
    let (err_rx, err_tx) = cx.at("pipe", pipe())?;
    let (ours, theirs) = cx.at("socketpair", crate::fdpass::pair())?;
    // The init is orphaned when the first process exits: it must come to us
    // (to be killed and reaped if the start fails), not to vmmgr.
    cx.at(
        "becoming a child subreaper",
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())),
    )?;
    // SAFETY: vesetup is single-threaded.
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match cx.at("forking the VE's first process", forked)? {
        None => {
            drop((ours, go_tx, err_rx));
            let _ = rustix::thread::set_name(c"vesetup-first");
            let r = first_process(spec, cx, userns, policy, go_rx, err_tx, theirs.as_fd());
            if let Err(e) = r {
                let _ = crate::fdpass::send(theirs.as_fd(), super::chain(&e).as_bytes(), None);
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        Some(first) => {
            drop((go_rx, err_tx, theirs));
            let mut buf = [0u8; 2048];
            let got = crate::fdpass::recv(ours.as_fd(), &mut buf);
            let _ = rustix::process::waitpid(Some(first), rustix::process::WaitOptions::empty());
            let (n, fd) = got.map_err(|e| cx.fail("starting the VE init", e.to_string()))?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let pid = text
                .parse::<i32>()
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            // Orphaned to us (a subreaper) and not reaped: the pid is still
            // the init's while we hold it.
            let start = pid.and_then(|p| crate::runstate::start_time(p.as_raw_nonzero().get()));
            match (fd, pid, start) {
                (Some(pidfd), Some(pid), Some(start_time)) => Ok(Waiting {
                    start_time,
                    pidfd,
                    pid,
                    go: go_tx,
                    errors: err_rx,
                }),
                (fd, _, _) => {
                    // Never leave a waiting init behind (nor its zombie).
                    if let Some(fd) = fd {
                        kill_and_reap(&fd);
                    }
                    Err(cx.fail("starting the VE init", text))
                }
            }
        }
    }
}

/// `/proc/self/timens_offsets` text that moves CLOCK_MONOTONIC and
/// CLOCK_BOOTTIME back to just above zero (whole seconds: the kernel
/// refuses a clock below zero).
fn time_offsets() -> String {
    let secs = |id| rustix::time::clock_gettime(id).tv_sec;
    format!(
        "monotonic -{} 0\nboottime -{} 0\n",
        secs(rustix::time::ClockId::Monotonic),
        secs(rustix::time::ClockId::Boottime)
    )
}

fn first_process(
    spec: &Spec,
    cx: &Ctx,
    userns: BorrowedFd<'_>,
    policy: &Policy,
    go: OwnedFd,
    errors: OwnedFd,
    report: BorrowedFd<'_>,
) -> Result<(), SetupError> {
    let procs = spec.cgroup.join("cgroup.procs");
    cx.at(
        format!("joining cgroup {}", spec.cgroup.display()),
        std::fs::write(&procs, "0"),
    )?;
    userns::become_ve_root(cx, userns)?;
    use nix::sched::CloneFlags as F;
    cx.at(
        "creating the VE namespaces",
        nix::sched::unshare(
            F::CLONE_NEWPID
                | F::CLONE_NEWNET
                | F::CLONE_NEWUTS
                | F::CLONE_NEWIPC
                | F::CLONE_NEWCGROUP
                | F::from_bits_retain(libc::CLONE_NEWTIME),
        ),
    )?;
    // The VE's own clocks: its boot time and monotonic time start now, so
    // `uptime` (and sysinfo) in the VE say how long the VE has run, and the
    // offsets travel with it when it is checkpointed. Set before any
    // process enters the namespace (the init forked below is the first).
    // Our /proc files belong to the appliance's root while we are not
    // dumpable (the uid change made us so): dumpable for this one write, as
    // no process of the VE exists yet to take advantage of it.
    use rustix::process::{set_dumpable_behavior, DumpableBehavior};
    cx.at(
        "making /proc/self ours",
        set_dumpable_behavior(DumpableBehavior::Dumpable),
    )?;
    let written = std::fs::write("/proc/self/timens_offsets", time_offsets());
    cx.at(
        "making the VE's first process undumpable again",
        set_dumpable_behavior(DumpableBehavior::NotDumpable),
    )?;
    cx.at(
        "starting the VE's clocks at zero (time namespace offsets)",
        written,
    )?;
    // SAFETY: single-threaded (a fork of vesetup).
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match cx.at("forking the VE init", forked)? {
        None => {
            let mut b = [0u8; 1];
            // No go (vesetup failed and exited): end quietly.
            if !matches!(File::from(go).read(&mut b), Ok(1)) {
                std::process::exit(1);
            }
            let e = become_init(spec, policy, errors.as_fd());
            let (tag, msg) = match &e {
                SetupError::BrokenInit { .. } => (TAG_BROKEN, super::chain(&e)),
                _ => (TAG_STEP, super::chain(&e)),
            };
            let mut f = File::from(errors);
            let _ = f.write_all(&[tag]);
            let _ = f.write_all(msg.as_bytes());
            std::process::exit(1);
        }
        Some(init) => {
            let fd = cx.at(
                "pidfd of the VE init",
                rustix::process::pidfd_open(init, rustix::process::PidfdFlags::empty()),
            )?;
            let pid = init.as_raw_nonzero().to_string();
            cx.at(
                "handing over the VE init",
                crate::fdpass::send(report, pid.as_bytes(), Some(fd.as_fd())),
            )
        }
    }
}

impl Waiting {
    /// Lets the init go on, and waits until it executed the template's init
    /// (its error pipe closes on exec) or failed.
    pub(super) fn release(
        self,
        spec: &Spec,
        cx: &Ctx,
        steps: crate::timing::Steps,
    ) -> Result<Started, SetupError> {
        let Waiting {
            pidfd,
            pid,
            start_time,
            go,
            errors,
        } = self;
        if let Err(e) = rustix::io::write(&go, b"g") {
            kill_and_reap(&pidfd);
            return Err(cx.fail("releasing the VE init", e.to_string()));
        }
        drop(go);
        let mut msg = Vec::new();
        let _ = File::from(errors).read_to_end(&mut msg);
        if msg.is_empty() {
            return Ok(Started {
                pid,
                start_time,
                pidfd,
                steps,
            });
        }
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        let text = String::from_utf8_lossy(&msg[1..]).into_owned();
        Err(if msg[0] == TAG_BROKEN {
            SetupError::BrokenInit {
                veid: spec.veid,
                init: spec.init.clone(),
                source: std::io::Error::other(text),
            }
        } else {
            cx.fail("finishing the VE init", text)
        })
    }

    /// Kills the waiting init (the start failed before it ran).
    pub(super) fn abort(self) {
        kill_and_reap(&self.pidfd);
    }
}

/// Kills the process behind `pidfd` and reaps it (it is our child: the VE
/// init is orphaned to vesetup, a subreaper, until vesetup exits).
fn kill_and_reap(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
    let _ = rustix::process::waitid(
        rustix::process::WaitId::PidFd(pidfd.as_fd()),
        rustix::process::WaitIdOptions::EXITED,
    );
}

/// In the VE init: the last steps, then exec. Returns only on failure.
fn become_init(spec: &Spec, policy: &Policy, errors: BorrowedFd<'_>) -> SetupError {
    let cx = Ctx { veid: spec.veid };
    if let Err(e) = finish(&cx, spec, policy, errors) {
        return e;
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&spec.init)
        .env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .env("TERM", "linux")
        .env("HOME", "/root")
        .env("container", "vz")
        .exec();
    SetupError::BrokenInit {
        veid: spec.veid,
        init: spec.init.clone(),
        source: err,
    }
}

fn finish(
    cx: &Ctx,
    spec: &Spec,
    policy: &Policy,
    errors: BorrowedFd<'_>,
) -> Result<(), SetupError> {
    // The copy of A is owned by the VE's user namespace: what it inherits is
    // locked (no unmounting a mask, no fresh proc or sysfs).
    cx.at(
        "creating the VE mount namespace",
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
    )?;
    cx.at("chdir /", rustix::process::chdir("/"))?;
    cx.at(
        format!("setting hostname {:?}", spec.hostname),
        rustix::system::sethostname(spec.hostname.as_bytes()),
    )?;
    cx.at("bringing up lo", vzcommon::interface_up("lo"))?;
    cx.at("new session", rustix::process::setsid())?;
    let null = cx.at(
        "opening /dev/null",
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null"),
    )?;
    cx.at("connecting stdin", rustix::stdio::dup2_stdin(&null))?;
    cx.at("connecting stdout", rustix::stdio::dup2_stdout(&null))?;
    cx.at("connecting stderr", rustix::stdio::dup2_stderr(&null))?;
    drop(null);
    // Nothing of vesetup's is left open but the error pipe (close-on-exec).
    cx.at(
        "closing descriptors",
        crate::sys::close_fds_except(&[errors]),
    )?;
    // Its network files, as VE root with nothing of vesetup's open.
    cx.at(
        "writing /etc/resolv.conf, /etc/hosts and /etc/hostname",
        super::netfiles::write_all(spec),
    )?;
    for cap in crate::policy::caps::to_drop(&policy.keep_caps) {
        // A capability newer than this kernel is simply not there to drop.
        match crate::sys::drop_bounding_cap(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(cx.fail(format!("dropping capability {cap}"), e.to_string())),
        }
    }
    cx.at(
        "clearing ambient capabilities",
        rustix::thread::clear_ambient_capability_set(),
    )?;
    cx.at(
        "installing the syscall filter",
        crate::policy::seccomp::install(&policy.seccomp),
    )?;
    Ok(())
}
