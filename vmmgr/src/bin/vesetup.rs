//! `vesetup`: the single-threaded helper vmmgr runs to build one VE and start
//! its init (see `vmmgr::setup`). vmmgr sends a `SetupSpec` frame on fd 3 and
//! gets back one `SetupReply` frame there, with a pidfd of the VE init beside
//! it on success. Diagnostics go to stderr (vmmgr logs them).

use std::os::fd::{AsFd, BorrowedFd};

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("devnodes") => devnodes(&args[1..]),
        Some("procview") => procview(None),
        Some("ptymax") => procview(args.get(1).and_then(|n| n.parse().ok()).or(Some(0))),
        _ => {}
    }
    // SAFETY: fd 3 is the channel vmmgr passed for this purpose, taken once.
    let Some(chan) = (unsafe { vmmgr::sys::take_inherited_fd(CHANNEL_FD) }) else {
        eprintln!("vesetup: run by vmmgr only (no channel on fd {CHANNEL_FD})");
        std::process::exit(2);
    };
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
    let (reply, pidfd) = match vmmgr::setup::run(&spec) {
        Ok(started) => (
            proto::SetupReply::Started {
                pid: started.pid.as_raw_nonzero().get() as u32,
                start_time: started.start_time,
            },
            Some(started.pidfd),
        ),
        Err(e) => {
            eprintln!("{}", vmmgr::setup::chain(&e));
            (e.reply(), None)
        }
    };
    let mut buf = [0u8; proto::HEADER_LEN + 2048];
    let sent = proto::encode(proto::Kind::Setup, &reply, &mut buf)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
        .and_then(|n| {
            vmmgr::fdpass::send(chan.as_fd(), &buf[..n], pidfd.as_ref().map(|f| f.as_fd()))
        });
    if let Err(e) = sent {
        eprintln!("vesetup: reporting to vmmgr: {e}");
        std::process::exit(1);
    }
}

/// `vesetup procview` (the /proc view again) or `vesetup ptymax N` (the
/// devpts limit): fd 3 is the VE init's pidfd.
fn procview(pty_max: Option<u32>) -> ! {
    // SAFETY: fd 3 is the pidfd vmmgr passed for this purpose, taken once.
    let Some(init) = (unsafe { vmmgr::sys::take_inherited_fd(CHANNEL_FD) }) else {
        eprintln!("vesetup procview: run by vmmgr only (no pidfd on fd {CHANNEL_FD})");
        std::process::exit(2);
    };
    if let Err(e) = vmmgr::sys::close_fds_except(&[init.as_fd()]) {
        eprintln!("vesetup procview: closing inherited descriptors: {e}");
        std::process::exit(2);
    }
    let r = match pty_max {
        None => vmmgr::setup::procview::run(init.as_fd()),
        Some(0) => Err("ptymax: give a number of ptys".into()),
        Some(n) => vmmgr::setup::procview::set_pty_max(init.as_fd(), n),
    };
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// `vesetup devnodes UID:GID +path -path ...`: fd 3 is the VE init's pidfd.
fn devnodes(args: &[String]) -> ! {
    // SAFETY: fd 3 is the pidfd vmmgr passed for this purpose, taken once.
    let Some(init) = (unsafe { vmmgr::sys::take_inherited_fd(CHANNEL_FD) }) else {
        eprintln!("vesetup devnodes: run by vmmgr only (no pidfd on fd {CHANNEL_FD})");
        std::process::exit(2);
    };
    if let Err(e) = vmmgr::sys::close_fds_except(&[init.as_fd()]) {
        eprintln!("vesetup devnodes: closing inherited descriptors: {e}");
        std::process::exit(2);
    }
    let owner = args
        .first()
        .and_then(|o| o.split_once(':'))
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)));
    let Some(owner) = owner else {
        eprintln!("vesetup devnodes: the first argument is the VE root's UID:GID");
        std::process::exit(2);
    };
    let changes: Result<Vec<_>, _> = args[1..]
        .iter()
        .map(|a| vmmgr::setup::devnodes::Change::parse(a))
        .collect();
    let r = changes.and_then(|c| vmmgr::setup::devnodes::run(init.as_fd(), owner, &c));
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn read_spec(chan: BorrowedFd<'_>) -> Result<vmmgr::setup::Spec, String> {
    let mut buf = [0u8; proto::HEADER_LEN + 4096];
    let (n, _) =
        vmmgr::fdpass::recv(chan, &mut buf).map_err(|e| format!("reading the spec: {e}"))?;
    let (kind, s): (proto::Kind, proto::SetupSpec) =
        proto::decode(&buf[..n]).map_err(|e| format!("decoding the spec: {e:?}"))?;
    if kind != proto::Kind::Setup {
        return Err(format!("unexpected frame kind {kind:?}"));
    }
    Ok(vmmgr::setup::Spec::from(&s))
}
