//! The client side of `vzctl exec`, `exec2`, `enter` and `--userpasswd`: runs
//! in the single-threaded `vzctl` process.

use super::exec;
use crate::ve::manager::code;
use proto::{Request, Response, VeOp};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

type Failure = (String, u8);

const CGROUP_ROOT: &str = "/sys/fs/cgroup/vz";
const POLICY_DIR: &str = "/etc/vzpolicy";

/// The running VE's init pid.
fn init_pid(veid: u32) -> Result<i32, Failure> {
    match crate::cli::call(&Request::Ve {
        veid,
        op: VeOp::Status,
    }) {
        Ok(Response::VeDone { info: Some(i), .. })
            if i.status.as_str() == "running" && i.init_pid > 0 =>
        {
            Ok(i.init_pid as i32)
        }
        Ok(Response::VeDone { info: Some(i), .. }) if !i.exists => {
            Err((format!("VE {veid} does not exist"), code::CONF_NOT_FOUND))
        }
        Ok(_) => Err((format!("VE {veid} is not running"), code::NOT_RUNNING)),
        Err(e) => Err((e, code::SYSTEM)),
    }
}

fn wait(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// In a forked child: joins the VE, forks its PID-namespace child that runs
/// `prepare` then `argv`, waits for it and exits with its status.
fn run_in_ve(
    veid: u32,
    pid: i32,
    argv: &[String],
    prepare: impl FnOnce() -> std::io::Result<()>,
) -> ! {
    let joined = exec::policy_caps(Path::new(POLICY_DIR))
        .and_then(|keep| exec::join(veid, pid, Path::new(CGROUP_ROOT), &keep));
    if let Err(e) = joined {
        eprintln!("vzctl: entering VE {veid}: {e}");
        std::process::exit(i32::from(code::SYSTEM));
    }
    match crate::sys::fork_single_threaded() {
        Ok(None) => {
            if let Err(e) = prepare() {
                eprintln!("vzctl: VE {veid}: {e}");
                std::process::exit(i32::from(code::SYSTEM));
            }
            let _ = crate::sys::close_fds_from(3);
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .env_clear()
                .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
                .env("HOME", "/root")
                .env(
                    "TERM",
                    std::env::var("TERM").unwrap_or_else(|_| "vt100".into()),
                )
                .exec();
            eprintln!("vzctl: VE {veid}: executing {}: {err}", argv[0]);
            std::process::exit(127);
        }
        Ok(Some(child)) => std::process::exit(wait(child)),
        Err(e) => {
            eprintln!("vzctl: fork: {e}");
            std::process::exit(i32::from(code::SYSTEM));
        }
    }
}

/// Runs `argv` in VE `veid` with our stdio (or `input` on its stdin); returns
/// its exit code.
pub fn exec_in(veid: u32, argv: &[String], input: Option<&[u8]>) -> Result<i32, Failure> {
    let pid = init_pid(veid)?;
    let pipe = match input {
        Some(_) => Some(rustix::pipe::pipe().map_err(|e| (format!("pipe: {e}"), code::SYSTEM))?),
        None => None,
    };
    match crate::sys::fork_single_threaded() {
        Ok(None) => {
            let (rx, tx) = pipe.map_or((None, None), |(r, t)| (Some(r), Some(t)));
            drop(tx);
            run_in_ve(veid, pid, argv, move || {
                if let Some(r) = rx {
                    rustix::stdio::dup2_stdin(&r)?;
                }
                Ok(())
            })
        }
        Ok(Some(child)) => {
            if let (Some((rx, tx)), Some(data)) = (pipe, input) {
                drop(rx);
                let mut f = std::fs::File::from(tx);
                let _ = f.write_all(data);
                let _ = f.write_all(b"\n");
            }
            Ok(wait(child))
        }
        Err(e) => Err((format!("fork: {e}"), code::SYSTEM)),
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

/// `vzctl enter`: a shell (or `command`) in the VE on a pty of the VE's own
/// devpts; this process relays between it and our terminal.
pub fn enter(veid: u32, command: &[String]) -> Result<(), Failure> {
    let pid = init_pid(veid)?;
    let (master, slave) = exec::ve_pty(pid)
        .map_err(|e| (format!("allocating a pty in VE {veid}: {e}"), code::SYSTEM))?;
    let argv: Vec<String> = if command.is_empty() {
        vec!["/bin/sh".into(), "-l".into()]
    } else {
        command.to_vec()
    };
    eprintln!("entered into VE {veid}");
    let child = match crate::sys::fork_single_threaded() {
        Ok(None) => {
            drop(master);
            run_in_ve(veid, pid, &argv, move || {
                rustix::process::setsid()?;
                let tty: OwnedFd = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&slave)?
                    .into();
                crate::sys::set_controlling_tty(tty.as_fd())?;
                rustix::stdio::dup2_stdin(&tty)?;
                rustix::stdio::dup2_stdout(&tty)?;
                rustix::stdio::dup2_stderr(&tty)?;
                Ok(())
            })
        }
        Ok(Some(c)) => c,
        Err(e) => return Err((format!("fork: {e}"), code::SYSTEM)),
    };
    relay(&master);
    let rc = wait(child);
    eprintln!("exited from VE {veid}");
    if rc == 0 {
        Ok(())
    } else {
        Err((
            format!("the shell in VE {veid} ended with status {rc}"),
            code::SYSTEM,
        ))
    }
}

fn relay(master: &OwnedFd) {
    let _raw = RawMode::enter();
    let stdin = std::io::stdin();
    let mut m = std::fs::File::from(master.try_clone().expect("dup of an open pty master"));
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    let mut stdin_open = true;
    loop {
        let mut fds = vec![rustix::event::PollFd::new(
            master,
            rustix::event::PollFlags::IN,
        )];
        if stdin_open {
            fds.push(rustix::event::PollFd::new(
                &stdin,
                rustix::event::PollFlags::IN,
            ));
        }
        if rustix::event::poll(&mut fds, None).is_err() {
            continue;
        }
        let m_ready = !fds[0].revents().is_empty();
        let s_ready = stdin_open && !fds[1].revents().is_empty();
        if m_ready {
            match m.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if s_ready {
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = m.write_all(&buf[..n]);
                }
            }
        }
    }
}
