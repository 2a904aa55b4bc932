//! `vesetup`: the single-threaded helper vmmgr runs to build one VE and start
//! its init (see `vmmgr::setup`). vmmgr sends a `SetupSpec` frame on fd 3 and
//! gets back one `SetupReply` frame there, with a pidfd of the VE init beside
//! it on success. Diagnostics go to stderr (vmmgr logs them).
//!
//! `vesetup server` is the same run forked instead of executed: vmmgr keeps
//! one running and sends it, per start, the start's channel and a pipe for
//! its stderr (`vmmgr::setup::launch`); a child forked for it does exactly
//! what a fresh `vesetup` does with them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The descriptor vmmgr passes (a unix socket).
const CHANNEL_FD: i32 = 3;

fn main() {
    let _ = rustix::thread::set_name(c"vesetup");
    // Appliance root that works next to a VE's processes-to-be: nobody may
    // ptrace it or read its memory or fds through /proc.
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        eprintln!("vesetup: PR_SET_DUMPABLE: {e}");
        std::process::exit(2);
    }
    // CRIU runs us as its action script during a restore.
    if let Ok(action) = std::env::var("CRTOOLS_SCRIPT_ACTION") {
        std::process::exit(vmmgr::setup::restore::action_script(&action));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(mode @ ("devnodes" | "procview" | "ptymax" | "netfiles")) =
        args.first().map(String::as_str)
    {
        helper_mode(mode, &args[1..]);
    }
    // SAFETY: fd 3 is the channel vmmgr passed for this purpose, taken once.
    let Some(chan) = (unsafe { vmmgr::sys::take_inherited_fd(CHANNEL_FD) }) else {
        eprintln!("vesetup: run by vmmgr only (no channel on fd {CHANNEL_FD})");
        std::process::exit(2);
    };
    if args.first().map(String::as_str) == Some("server") {
        server(chan);
    }
    setup_one(chan, None)
}

/// One VE's setup over `chan`, then exit; `pre`: the policy the server
/// read ahead.
fn setup_one(chan: OwnedFd, pre: Option<&vmmgr::setup::Preloaded>) -> ! {
    // Nothing else inherited may reach the VE.
    if let Err(e) = vmmgr::sys::close_fds_except(&[chan.as_fd()]) {
        eprintln!("vesetup: closing inherited descriptors: {e}");
        std::process::exit(2);
    }
    let spec = match read_spec(chan.as_fd()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vesetup: {e}");
            std::process::exit(2);
        }
    };
    let (reply, pidfd) = match vmmgr::setup::run_preloaded(&spec, pre) {
        Ok(started) => (
            proto::SetupReply::Started {
                pid: started.pid.as_raw_nonzero().get() as u32,
                start_time: started.start_time,
                steps_us: started.steps.micros().map(|(_, us)| us).take(16).collect(),
            },
            Some(started.pidfd),
        ),
        Err(e) => {
            eprintln!("{}", vmmgr::setup::chain(&e));
            (e.reply(), None)
        }
    };
    let mut buf = [0u8; proto::HEADER_LEN + 8192];
    let sent = proto::encode(proto::Kind::Setup, &reply, &mut buf)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
        .and_then(|n| {
            vmmgr::fdpass::send(chan.as_fd(), &buf[..n], pidfd.as_ref().map(|f| f.as_fd()))
        });
    if let Err(e) = sent {
        eprintln!("vesetup: reporting to vmmgr: {e}");
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// `vesetup server`: `sock` is vmmgr's end of the requests. Each request is
/// [`vmmgr::setup::launch::REQUEST`] with two descriptors, the start's
/// channel and the write end of a pipe for its stderr; a child is forked for
/// it and runs [`setup_one`]. Ends when vmmgr closes `sock`.
///
/// Why: under emulation (TCG) every exec of this binary lays it out at new
/// random addresses, and the emulator translates its code again; forked
/// children share one layout, whose translations it keeps. It also saves
/// the exec and the start-up of every run.
fn server(sock: OwnedFd) -> ! {
    if let Err(e) = vmmgr::sys::close_fds_except(&[sock.as_fd()]) {
        eprintln!("vesetup server: closing inherited descriptors: {e}");
        std::process::exit(2);
    }
    // Children are reaped by the kernel; each child sets SIGCHLD back to
    // its default before it does anything (it waits for processes of its
    // own).
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler to
    // race with; this process is single-threaded.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    // The policy, once for every run (each would read the same files and
    // compile the same filter).
    let pre = vmmgr::setup::Preloaded::read(std::path::Path::new(vmmgr::policy::POLICY_DIR));
    if let Err(e) = vmmgr::fdpass::send(sock.as_fd(), vmmgr::setup::launch::READY, None) {
        eprintln!("vesetup server: saying it is ready: {e}");
        std::process::exit(1);
    }
    let mut buf = [0u8; 64];
    loop {
        let (n, mut fds) = match vmmgr::fdpass::recv_fds(sock.as_fd(), &mut buf) {
            Ok(r) => r,
            Err(e) => {
                // A malformed request (its descriptors are closed); the
                // next one may be fine. A broken socket ends us: vmmgr
                // starts another server or execs `vesetup` itself.
                eprintln!("vesetup server: a request: {e}");
                if e.raw_os_error().is_some() {
                    std::process::exit(1);
                }
                continue;
            }
        };
        if n == 0 && fds.is_empty() {
            std::process::exit(0);
        }
        if &buf[..n] != vmmgr::setup::launch::REQUEST || fds.len() != 2 {
            eprintln!("vesetup server: a request that is not a start's channel and stderr");
            continue;
        }
        let (Some(err), Some(chan)) = (fds.pop(), fds.pop()) else {
            continue;
        };
        // SAFETY: this process is single-threaded.
        match unsafe { vmmgr::sys::fork_single_threaded() } {
            Ok(None) => {
                drop(sock);
                // SAFETY: as above; restores the default in the child.
                unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
                if let Err(e) = rustix::stdio::dup2_stderr(&err) {
                    eprintln!("vesetup: its stderr: {e}");
                    std::process::exit(2);
                }
                drop(err);
                setup_one(chan, Some(&pre))
            }
            Ok(Some(_)) => drop((chan, err)),
            // vmmgr sees the channel close with no reply.
            Err(e) => eprintln!("vesetup server: fork: {e}"),
        }
    }
}

/// The helper modes: fd 3 is a running VE init's pidfd, and nothing else
/// inherited is kept.
fn helper_mode(mode: &str, args: &[String]) -> ! {
    // SAFETY: fd 3 is the pidfd vmmgr passed for this purpose, taken once.
    let Some(init) = (unsafe { vmmgr::sys::take_inherited_fd(CHANNEL_FD) }) else {
        eprintln!("vesetup {mode}: run by vmmgr only (no pidfd on fd {CHANNEL_FD})");
        std::process::exit(2);
    };
    if let Err(e) = vmmgr::sys::close_fds_except(&[init.as_fd()]) {
        eprintln!("vesetup {mode}: closing inherited descriptors: {e}");
        std::process::exit(2);
    }
    let r = match mode {
        "procview" => vmmgr::setup::procview::run(init.as_fd()),
        "ptymax" => match args.first().and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n > 0 => vmmgr::setup::procview::set_pty_max(init.as_fd(), n),
            _ => Err("ptymax: give a number of ptys".into()),
        },
        "netfiles" => netfiles(init.as_fd(), args),
        _ => devnodes(init.as_fd(), args),
    };
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// `vesetup netfiles UID:GID HOSTNAME IP NAMESERVERS SEARCHDOMAINS`.
fn netfiles(init: BorrowedFd<'_>, args: &[String]) -> Result<(), String> {
    let (owner, rest) = args
        .split_first()
        .ok_or("netfiles: the first argument is the VE root's UID:GID")?;
    let (u, g) = owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or("netfiles: the first argument is the VE root's UID:GID")?;
    let live = vmmgr::setup::netfiles::Live::from_args(rest)?;
    vmmgr::setup::netfiles::run_live(init, (u, g), &live)
}

/// `vesetup devnodes UID:GID +path -path ...`.
fn devnodes(init: BorrowedFd<'_>, args: &[String]) -> Result<(), String> {
    let owner = args
        .first()
        .and_then(|o| o.split_once(':'))
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .ok_or("devnodes: the first argument is the VE root's UID:GID")?;
    let changes = args[1..]
        .iter()
        .map(|a| vmmgr::setup::devnodes::Change::parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    vmmgr::setup::devnodes::run(init, owner, &changes)
}

fn read_spec(chan: BorrowedFd<'_>) -> Result<vmmgr::setup::Spec, String> {
    let mut buf = [0u8; proto::HEADER_LEN + 8192];
    let (n, _) =
        vmmgr::fdpass::recv(chan, &mut buf).map_err(|e| format!("reading the spec: {e}"))?;
    let (kind, s): (proto::Kind, proto::SetupSpec) =
        proto::decode(&buf[..n]).map_err(|e| format!("decoding the spec: {e:?}"))?;
    if kind != proto::Kind::Setup {
        return Err(format!("unexpected frame kind {kind:?}"));
    }
    Ok(vmmgr::setup::Spec::from(&s))
}
