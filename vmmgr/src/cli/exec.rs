//! The client side of `vzctl exec`, `exec2`, `enter` and `--userpasswd`: runs
//! in the single-threaded `vzctl` process.
//!
//! Nothing of the appliance crosses into the VE: the command never gets our
//! terminal, session or descriptors. It runs in its own session on a pty of
//! the VE's own devpts when our stdin is a terminal (and always for `enter`),
//! on plain pipes otherwise; this process relays between the two sides.
//!
//! Processes: `vzctl` (relay, appliance) forks the joiner, which drops every
//! appliance descriptor, joins the VE (`crate::cli::join`) and forks the
//! command's process inside the VE's PID namespace; the joiner waits for it
//! and exits with its status.

use crate::cli::join;
use crate::exitcode::ExitCode;
use crate::policy::ProcessPolicy;
use proto::{Request, Response, VeOp};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

type Failure = (String, ExitCode);

const CGROUP_ROOT: &str = "/sys/fs/cgroup/vz";

/// The running VE's init, as vmmgr reports it.
#[derive(Debug, Clone, Copy)]
struct Init {
    veid: u32,
    pid: i32,
    start_time: u64,
    /// Started with CHECKPOINT=yes: commands get the same filter.
    checkpoint: bool,
}

fn running_init(veid: u32) -> Result<Init, Failure> {
    match crate::cli::call(&Request::Ve {
        veid,
        op: VeOp::Status,
    }) {
        Ok(Response::VeDone { info: Some(i), .. })
            if i.status.as_str() == "running" && i.init_pid > 0 =>
        {
            Ok(Init {
                veid,
                pid: i.init_pid as i32,
                start_time: i.init_start,
                checkpoint: i.checkpoint,
            })
        }
        Ok(Response::VeDone { info: Some(i), .. }) if !i.exists => {
            Err((format!("VE {veid} does not exist"), ExitCode::ConfNotFound))
        }
        Ok(_) => Err((format!("VE {veid} is not running"), ExitCode::NotRunning)),
        Err(e) => Err((e, ExitCode::System)),
    }
}

/// How the command's stdio is connected.
enum Stdio {
    /// A pty of the VE: the master stays here, the slave goes to the command.
    Pty(join::VePty),
    /// Pipes: (command's stdin, our writing end), (our reading end, its
    /// stdout), (our reading end, its stderr).
    Pipes {
        stdin: (OwnedFd, OwnedFd),
        stdout: (OwnedFd, OwnedFd),
        stderr: (OwnedFd, OwnedFd),
    },
}

fn sys_err(what: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| (format!("{what}: {e}"), ExitCode::System)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| (format!("pipe: {e}"), ExitCode::System))
}

fn stdin_is_tty() -> bool {
    rustix::termios::isatty(std::io::stdin())
}

fn open_pty(init: &Init) -> Result<join::VePty, Failure> {
    let map = |f: &str| {
        std::fs::read_to_string(format!("/proc/{}/{f}", init.pid))
            .ok()
            .and_then(|t| join::mapped_root(&t))
    };
    let (Some(uid), Some(gid)) = (map("uid_map"), map("gid_map")) else {
        return Err((
            format!("VE {}: cannot read its id maps", init.veid),
            ExitCode::System,
        ));
    };
    join::ve_pty(init.pid, init.start_time, uid, gid).map_err(|e| {
        (
            format!("allocating a pty in VE {}: {e}", init.veid),
            ExitCode::System,
        )
    })
}

/// Runs `argv` in VE `veid`; with `input`, that is its whole stdin. Returns
/// the command's exit code (128 + signal if it was killed).
pub fn exec_in(veid: u32, argv: &[OsString], input: Option<&[u8]>) -> Result<i32, Failure> {
    let init = running_init(veid)?;
    let stdio = if input.is_none() && stdin_is_tty() {
        Stdio::Pty(open_pty(&init)?)
    } else {
        Stdio::Pipes {
            stdin: pipe()?,
            stdout: pipe()?,
            stderr: pipe()?,
        }
    };
    run(&init, argv, stdio, input)
}

/// `vzctl enter`: a shell (or `command`) in the VE on a pty of the VE's own
/// devpts; this process relays between it and our terminal.
pub fn enter(veid: u32, command: &[OsString]) -> Result<(), Failure> {
    let init = running_init(veid)?;
    let pty = open_pty(&init)?;
    let argv: Vec<OsString> = if command.is_empty() {
        vec!["/bin/sh".into(), "-l".into()]
    } else {
        command.to_vec()
    };
    eprintln!("entered into VE {veid}");
    let rc = run(&init, &argv, Stdio::Pty(pty), None)?;
    eprintln!("exited from VE {veid}");
    if rc == 0 {
        Ok(())
    } else {
        Err((
            format!("the shell in VE {veid} ended with status {rc}"),
            ExitCode::System,
        ))
    }
}

fn run(init: &Init, argv: &[OsString], stdio: Stdio, input: Option<&[u8]>) -> Result<i32, Failure> {
    // Everything the joiner needs from the appliance is read now.
    let policy = ProcessPolicy::load(
        Path::new(crate::policy::POLICY_DIR),
        crate::policy::nested_for(init.checkpoint),
    )
    .map_err(|e| (format!("the VE policy: {e}"), ExitCode::System))?;
    let init_fd = crate::runstate::open_init(init.pid, init.start_time)
        .map_err(|e| (format!("VE {}: {e}", init.veid), ExitCode::NotRunning))?;
    let ve_cgroup = Path::new(CGROUP_ROOT).join(init.veid.to_string());
    if let Stdio::Pty(p) = &stdio {
        if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
            let _ = rustix::termios::tcsetwinsize(&p.slave, ws);
        }
    }
    // SAFETY: vzctl is single-threaded (no thread is ever started in it).
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match forked.map_err(sys_err("fork"))? {
        None => {
            let code = joiner(init, &init_fd, &ve_cgroup, &policy, argv, &stdio);
            std::process::exit(code)
        }
        Some(child) => {
            let child_fd = rustix::process::pidfd_open(child, rustix::process::PidfdFlags::empty())
                .map_err(|e| (format!("pidfd of our child: {e}"), ExitCode::System))?;
            drop(init_fd);
            match stdio {
                Stdio::Pty(p) => {
                    drop(p.slave);
                    let _raw = RawMode::enter();
                    let stdin = std::io::stdin();
                    relay(
                        &child_fd,
                        Some(stdin.as_fd()),
                        None,
                        Some(&p.master),
                        &[(p.master.as_fd(), Out::Stdout)],
                    );
                }
                Stdio::Pipes {
                    stdin,
                    stdout,
                    stderr,
                } => {
                    drop((stdin.0, stdout.1, stderr.1));
                    let mut to_child = Some(stdin.1);
                    if let Some(data) = input {
                        if let Some(w) = to_child.take() {
                            let mut f = std::fs::File::from(w);
                            let _ = f.write_all(data);
                            let _ = f.write_all(b"\n");
                        }
                    }
                    let stdin = std::io::stdin();
                    let from_stdin = to_child.is_some().then(|| stdin.as_fd());
                    relay(
                        &child_fd,
                        from_stdin,
                        to_child,
                        None,
                        &[
                            (stdout.0.as_fd(), Out::Stdout),
                            (stderr.0.as_fd(), Out::Stderr),
                        ],
                    );
                }
            }
            let rc = wait(&child_fd);
            for attempt in 0..8 {
                join::remove_exec_leaf(
                    &ve_cgroup,
                    &format!(
                        "{}{}.{attempt}",
                        join::EXEC_LEAF_PREFIX,
                        child.as_raw_nonzero()
                    ),
                );
            }
            Ok(rc)
        }
    }
}

/// The joiner (a child of vzctl): returns the exit code it ends with.
fn joiner(
    init: &Init,
    init_fd: &OwnedFd,
    ve_cgroup: &Path,
    policy: &ProcessPolicy,
    argv: &[OsString],
    stdio: &Stdio,
) -> i32 {
    let fail = |what: &str, e: std::io::Error| {
        // stderr is still ours until the stdio switch below.
        let _ = writeln!(std::io::stderr(), "vzctl: VE {}: {what}: {e}", init.veid);
        i32::from(ExitCode::System)
    };
    let pty = matches!(stdio, Stdio::Pty(_));
    // 1. Nothing of the appliance stays: not dumpable (no ptrace, no
    // /proc/<pid>/fd for the VE), stdio replaced, every other fd closed.
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        return fail("making the joiner undumpable", e.into());
    }
    let r = match stdio {
        Stdio::Pty(p) => rustix::stdio::dup2_stdin(&p.slave)
            .and_then(|()| rustix::stdio::dup2_stdout(&p.slave))
            .and_then(|()| rustix::stdio::dup2_stderr(&p.slave)),
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => rustix::stdio::dup2_stdin(&stdin.0)
            .and_then(|()| rustix::stdio::dup2_stdout(&stdout.1))
            .and_then(|()| rustix::stdio::dup2_stderr(&stderr.1)),
    };
    if let Err(e) = r {
        return fail("connecting stdio", e.into());
    }
    // From here on, errors go to the command's stderr (the pty or the pipe).
    if let Err(e) = crate::sys::close_fds_except(&[init_fd.as_fd()]) {
        return fail("closing descriptors", e);
    }
    // 2.-4. Cgroup leaf, namespaces, VE root, capabilities.
    if let Err(e) = join::enter_exec_leaf(ve_cgroup) {
        return fail("joining its cgroup", e);
    }
    if let Err(e) = join::join(init_fd.as_fd(), &policy.keep_caps) {
        return fail("entering its namespaces", e);
    }
    // SAFETY: the joiner is single-threaded (a fork of single-threaded vzctl).
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match forked {
        Ok(None) => {
            // PID 1's namespace: the command's own session, its terminal the pty.
            let r = rustix::process::setsid().map(|_| ()).and_then(|()| {
                if pty {
                    rustix::process::ioctl_tiocsctty(std::io::stdin())
                } else {
                    Ok(())
                }
            });
            if let Err(e) = r {
                std::process::exit(fail("new session", e.into()));
            }
            if let Err(e) = crate::sys::close_fds_except(&[]) {
                std::process::exit(fail("closing descriptors", e));
            }
            if let Err(e) = crate::policy::seccomp::install(&policy.seccomp) {
                std::process::exit(fail("installing the syscall filter", e));
            }
            use std::os::unix::process::CommandExt;
            let term = std::env::var_os("TERM").unwrap_or_else(|| "vt100".into());
            let err = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .env_clear()
                .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
                .env("HOME", "/root")
                .env("TERM", term)
                .exec();
            let _ = writeln!(
                std::io::stderr(),
                "vzctl: VE {}: executing {}: {err}",
                init.veid,
                argv[0].to_string_lossy()
            );
            std::process::exit(127)
        }
        Ok(Some(child)) => {
            match rustix::process::pidfd_open(child, rustix::process::PidfdFlags::empty()) {
                Ok(fd) => wait(&fd),
                Err(e) => fail("pidfd of the command", e.into()),
            }
        }
        Err(e) => fail("fork", e),
    }
}

/// Waits for our child behind `pidfd`; its exit code, or 128 + signal.
fn wait(pidfd: &OwnedFd) -> i32 {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                if let Some(c) = st.exit_status() {
                    return c;
                }
                if let Some(s) = st.terminating_signal() {
                    return 128 + s;
                }
                return 255;
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// Restores the terminal settings when dropped.
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.make_raw();
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
}

fn write_out(to: Out, data: &[u8]) {
    match to {
        Out::Stdout => {
            let mut o = std::io::stdout();
            let _ = o.write_all(data);
            let _ = o.flush();
        }
        Out::Stderr => {
            let _ = std::io::stderr().write_all(data);
        }
    }
}

/// How long output left behind by the command is still relayed once the
/// joiner has exited (a background process that writes without end must not
/// keep vzctl running).
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Relays until the joiner exits (then drains what is left, for at most
/// [`DRAIN_AFTER_EXIT`]): our stdin to `to_child` (a pipe) or `to_pty` (the
/// master), and each output source to our stdout or stderr. Input is written
/// without blocking (a command that does not read its stdin cannot stall the
/// output), and our stdin is not read while input is still pending.
fn relay(
    child: &OwnedFd,
    stdin: Option<BorrowedFd<'_>>,
    mut to_child: Option<OwnedFd>,
    to_pty: Option<&OwnedFd>,
    outputs: &[(BorrowedFd<'_>, Out)],
) {
    use rustix::event::{poll, PollFd, PollFlags};
    use std::time::Instant;
    for fd in to_child.iter().chain(to_pty) {
        let _ = set_nonblocking(fd);
    }
    let mut buf = [0u8; 4096];
    let mut open: Vec<bool> = vec![true; outputs.len()];
    let mut stdin_open = stdin.is_some();
    let mut pending: Vec<u8> = Vec::new();
    let mut input_done = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        if let Some(t) = drain_until {
            if Instant::now() >= t || !open.iter().any(|o| *o) {
                return;
            }
        }
        let target = to_child.as_ref().or(to_pty);
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(child, PollFlags::IN)];
        for (fd, _) in outputs {
            fds.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
        }
        let stdin_slot = fds.len();
        let read_stdin = stdin_open && pending.is_empty();
        if let (true, Some(s)) = (read_stdin, stdin) {
            fds.push(PollFd::from_borrowed_fd(s, PollFlags::IN));
        }
        let target_slot = fds.len();
        let write_target = !pending.is_empty() && target.is_some();
        if let (true, Some(t)) = (write_target, target) {
            fds.push(PollFd::new(t, PollFlags::OUT));
        }
        let left = drain_until.map(|t| {
            let d = t.saturating_duration_since(Instant::now());
            rustix::time::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            }
        });
        match poll(&mut fds, left.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] && drain_until.is_none() {
            drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
        }
        for (i, (fd, to)) in outputs.iter().enumerate() {
            if !open[i] || !ready[i + 1] {
                continue;
            }
            match rustix::io::read(fd, &mut buf) {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => write_out(*to, &buf[..n]),
            }
        }
        if read_stdin && ready.get(stdin_slot) == Some(&true) {
            match stdin.map_or(Ok(0), |s| rustix::io::read(s, &mut buf)) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    input_done = true;
                    // On the pty, end of input is an end-of-file character
                    // (^D) at the start of a line, as a terminal sends it.
                    if to_pty.is_some() && to_child.is_none() {
                        pending.extend_from_slice(b"\n\x04");
                    }
                }
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        if write_target && ready.get(target_slot) == Some(&true) {
            if let Some(t) = target {
                match rustix::io::write(t, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                    // The command closed its end: drop what it will not read.
                    Err(_) => pending.clear(),
                }
            }
        }
        if input_done && pending.is_empty() {
            // The command sees EOF on its pipe.
            to_child = None;
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> rustix::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)
}
