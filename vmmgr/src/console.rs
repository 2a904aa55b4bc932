//! The serial console shell: what an operator types at the appliance.

use crate::appliance::{self, Paths, ServiceState};
use proto::ApplianceStatus;
use std::fmt::Write as _;
use std::io::{BufRead, Write};

/// The prompt.
pub const PROMPT: &str = "vz# ";
/// Where init points the appliance log.
pub const LOG_LINK: &str = "/run/vz/log";

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Exit,
}

/// The commands, for `help` and for suggestions.
pub const COMMANDS: &[(&str, &str)] = &[
    ("help", "show this list"),
    (
        "status",
        "kernel, uptime, health, partitions, cgroups, services, memory, boot timeline",
    ),
    (
        "log [N]",
        "the last N lines of the appliance log (default 40)",
    ),
    (
        "shell",
        "an appliance root shell (busybox sh); 'exit' comes back here",
    ),
    ("reboot", "stop everything cleanly and restart the machine"),
    (
        "poweroff",
        "stop everything cleanly and power the machine off",
    ),
];

/// Something that can be done to the machine; a trait so tests record it.
pub trait Machine {
    /// Runs an appliance tool (`vzctl`, `vzlist`) on the console; its exit code.
    fn tool(&mut self, name: &str, args: &[&str]) -> Result<i32, String>;
    fn reboot(&mut self) -> Result<(), String>;
    fn poweroff(&mut self) -> Result<(), String>;
    fn shell(&mut self) -> Result<(), String>;
}

/// The real machine: signals to init, a real shell.
#[derive(Debug, Default)]
pub struct RealMachine;

impl Machine for RealMachine {
    fn tool(&mut self, name: &str, args: &[&str]) -> Result<i32, String> {
        let path = format!("/sbin/{name}");
        let mut cmd = std::process::Command::new(&path);
        cmd.args(args);
        crate::sys::default_signals_in_child(&mut cmd);
        let status = cmd.status().map_err(|e| format!("starting {path}: {e}"))?;
        Ok(status.code().unwrap_or(128))
    }
    fn reboot(&mut self) -> Result<(), String> {
        signal_init(nix::sys::signal::Signal::SIGTERM)
    }
    fn poweroff(&mut self) -> Result<(), String> {
        signal_init(nix::sys::signal::Signal::SIGUSR2)
    }
    fn shell(&mut self) -> Result<(), String> {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.env("PS1", "vz-shell# ");
        crate::sys::default_signals_in_child(&mut cmd);
        let status = cmd.status().map_err(|e| format!("starting /bin/sh: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("shell ended with {status}"))
        }
    }
}

fn signal_init(sig: nix::sys::signal::Signal) -> Result<(), String> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), sig)
        .map_err(|e| format!("asking init (pid 1) to shut down with {sig}: {e}"))
}

/// The help text.
pub fn help() -> String {
    let mut s = String::from("Appliance console commands:\n");
    for (cmd, what) in COMMANDS {
        let _ = writeln!(s, "  {cmd:<10} {what}");
    }
    s
}

fn unknown(word: &str) -> String {
    let close: Vec<&str> = COMMANDS
        .iter()
        .map(|(c, _)| c.split(' ').next().unwrap_or(c))
        .filter(|c| c.starts_with(&word[..1.min(word.len())]) || word.starts_with(c))
        .collect();
    let mut s = format!("unknown command '{word}': type 'help' for the list of commands");
    if !close.is_empty() {
        let _ = write!(s, " (did you mean: {}?)", close.join(", "));
    }
    s
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

/// Renders `status`.
pub fn format_status(
    st: &ApplianceStatus,
    services: &[ServiceState],
    timeline: &[(u64, String)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Appliance");
    let _ = writeln!(s, "  kernel      {}", st.kernel);
    let _ = writeln!(
        s,
        "  uptime      {}.{:03} s",
        st.uptime_ms / 1000,
        st.uptime_ms % 1000
    );
    if st.degraded.is_empty() {
        let _ = writeln!(s, "  health      ok");
    } else {
        let _ = writeln!(s, "  health      DEGRADED");
        for d in &st.degraded {
            let _ = writeln!(s, "              - {d}");
        }
    }
    let _ = writeln!(
        s,
        "  memory      total {} MiB, available {} MiB",
        mib(st.mem_total_kib),
        mib(st.mem_available_kib)
    );
    let _ = writeln!(s, "  processes   {} ({} zombies)", st.processes, st.zombies);
    let _ = writeln!(s, "Network (interface, state, addresses; default routes)");
    for l in &st.network {
        let _ = writeln!(s, "  {l}");
    }
    let _ = writeln!(
        s,
        "Partitions (label, device, mount point, state at boot, options)"
    );
    for p in &st.partitions {
        let _ = writeln!(
            s,
            "  {:<7} {:<10} {:<6} {:<10} {}",
            p.label,
            p.device,
            p.mount_point,
            p.state_at_boot,
            if p.options.is_empty() {
                "NOT MOUNTED"
            } else {
                p.options.as_str()
            }
        );
    }
    let _ = writeln!(s, "cgroup2");
    let _ = writeln!(
        s,
        "  controllers for VEs (/sys/fs/cgroup/vz): {}",
        if st.ve_controllers.is_empty() {
            "none"
        } else {
            st.ve_controllers.as_str()
        }
    );
    let _ = writeln!(s, "Services");
    for sv in services {
        let _ = writeln!(
            s,
            "  {:<8} pid {:<6} {:<10} restarts {:<3} last exit: {}",
            sv.name,
            sv.pid.map_or("-".to_owned(), |p| p.to_string()),
            sv.state,
            sv.restarts,
            sv.last_exit.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(s, "Boot timeline (ms since kernel start)");
    for (ms, what) in timeline {
        let _ = writeln!(s, "  {ms:>6}  {what}");
    }
    s
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Runs one command line, writing its output to `out`.
pub fn dispatch(
    line: &str,
    out: &mut dyn Write,
    paths: &Paths,
    machine: &mut dyn Machine,
) -> std::io::Result<Next> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&cmd, args)) = words.split_first() else {
        return Ok(Next::Continue);
    };
    match (cmd, args) {
        ("help" | "?", []) => write!(out, "{}", help())?,
        ("status", []) => {
            let st = appliance::status(paths);
            let text = format_status(
                &st,
                &appliance::services(paths),
                &appliance::timeline(paths),
            );
            write!(out, "{text}")?;
        }
        ("log", [] | [_]) => {
            let n = match args.first() {
                None => 40,
                Some(a) => match a.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        writeln!(out, "log: '{a}' is not a line count: use e.g. 'log 100'")?;
                        return Ok(Next::Continue);
                    }
                },
            };
            let path = paths.run.join("log");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for l in tail(&text, n) {
                        writeln!(out, "{l}")?;
                    }
                }
                Err(e) => writeln!(
                    out,
                    "log: cannot read {}: {e} (init writes it at boot; see 'status')",
                    path.display()
                )?,
            }
        }
        ("reboot", []) | ("poweroff", []) => {
            writeln!(out, "{cmd}: stopping services and VEs...")?;
            out.flush()?;
            let r = if cmd == "reboot" {
                machine.reboot()
            } else {
                machine.poweroff()
            };
            if let Err(e) = r {
                writeln!(out, "{cmd}: {e}")?;
            }
        }
        ("shell", []) => {
            writeln!(out, "appliance shell: type 'exit' to return to the console")?;
            out.flush()?;
            if let Err(e) = machine.shell() {
                writeln!(out, "shell: {e}")?;
            }
        }
        ("vzctl" | "vzlist" | "vzpkg" | "vzmigrate", args) => match machine.tool(cmd, args) {
            Ok(0) => {}
            Ok(code) => writeln!(out, "({cmd} exit code {code})")?,
            Err(e) => writeln!(out, "{cmd}: {e}")?,
        },
        ("exit" | "logout", []) => {
            writeln!(
                out,
                "the console cannot be closed; use 'poweroff' or 'reboot'"
            )?;
        }
        ("help" | "status" | "reboot" | "poweroff" | "shell" | "exit" | "logout" | "log", _) => {
            writeln!(
                out,
                "{cmd}: unexpected argument '{}'; usage: {}",
                args.join(" "),
                COMMANDS
                    .iter()
                    .find(|(c, _)| c.split(' ').next() == Some(cmd))
                    .map_or(cmd, |(c, _)| c)
            )?;
        }
        (other, _) => writeln!(out, "{}", unknown(other))?,
    }
    Ok(Next::Continue)
}

/// The console loop on stdin/stdout.
pub fn run(paths: &Paths, machine: &mut dyn Machine) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    writeln!(out, "\nvz appliance console: type 'help' for commands")?;
    write!(out, "{PROMPT}")?;
    out.flush()?;
    crate::notify::ready();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if stdin.lock().read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        // Bytes that are not UTF-8 (a wrong terminal encoding, line noise)
        // are refused with a message, never a console that exits.
        let Ok(line) = std::str::from_utf8(&raw) else {
            writeln!(
                out,
                "console: the line is not valid UTF-8 (check the terminal's encoding); \
                 nothing was run. For arbitrary bytes use `shell`"
            )?;
            write!(out, "{PROMPT}")?;
            out.flush()?;
            continue;
        };
        if dispatch(line, &mut out, paths, machine)? == Next::Exit {
            return Ok(());
        }
        write!(out, "{PROMPT}")?;
        out.flush()?;
    }
}

/// Puts the terminal in the cooked mode a person expects (a shell may have left
/// it raw) and makes ctrl-c at the prompt harmless.
pub fn prepare_terminal() {
    use rustix::termios::{self, LocalModes, OptionalActions};
    crate::sys::ignore_interrupts();
    let stdin = std::io::stdin();
    if let Ok(mut t) = termios::tcgetattr(&stdin) {
        t.local_modes |=
            LocalModes::ICANON | LocalModes::ECHO | LocalModes::ECHOE | LocalModes::ISIG;
        t.input_modes |= termios::InputModes::ICRNL;
        t.output_modes |= termios::OutputModes::OPOST | termios::OutputModes::ONLCR;
        let _ = termios::tcsetattr(&stdin, OptionalActions::Now, &t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<&'static str>);

    impl Machine for Recorder {
        fn tool(&mut self, name: &str, _args: &[&str]) -> Result<i32, String> {
            self.0
                .push(if name == "vzctl" { "vzctl" } else { "vzlist" });
            Ok(9)
        }
        fn reboot(&mut self) -> Result<(), String> {
            self.0.push("reboot");
            Ok(())
        }
        fn poweroff(&mut self) -> Result<(), String> {
            self.0.push("poweroff");
            Ok(())
        }
        fn shell(&mut self) -> Result<(), String> {
            self.0.push("shell");
            Err("no shell here".into())
        }
    }

    fn run_line(line: &str, paths: &Paths) -> (String, Vec<&'static str>) {
        let mut out = Vec::new();
        let mut m = Recorder::default();
        dispatch(line, &mut out, paths, &mut m).expect("dispatch");
        (String::from_utf8(out).expect("utf8"), m.0)
    }

    #[test]
    fn help_lists_every_command() {
        let (out, _) = run_line("help\n", &Paths::default());
        for (c, _) in COMMANDS {
            assert!(out.contains(c), "{c} missing from {out}");
        }
    }

    #[test]
    fn unknown_command_points_to_help() {
        let (out, acts) = run_line("reboto\n", &Paths::default());
        assert!(out.starts_with("unknown command 'reboto'"), "{out}");
        assert!(out.contains("help"));
        assert!(out.contains("did you mean: reboot"), "{out}");
        assert!(acts.is_empty());
    }

    #[test]
    fn power_commands_reach_the_machine() {
        assert_eq!(run_line("reboot", &Paths::default()).1, vec!["reboot"]);
        assert_eq!(
            run_line("  poweroff  ", &Paths::default()).1,
            vec!["poweroff"]
        );
        let (out, acts) = run_line("reboot now", &Paths::default());
        assert!(acts.is_empty());
        assert!(out.contains("unexpected argument 'now'"), "{out}");
    }

    #[test]
    fn tools_run_and_report_failure_codes() {
        let (out, acts) = run_line("vzctl start 101", &Paths::default());
        assert_eq!(acts, vec!["vzctl"]);
        assert_eq!(out, "(vzctl exit code 9)\n");
    }

    #[test]
    fn shell_failure_is_reported() {
        let (out, acts) = run_line("shell", &Paths::default());
        assert_eq!(acts, vec!["shell"]);
        assert!(out.contains("shell: no shell here"));
    }

    #[test]
    fn log_shows_the_tail_and_rejects_bad_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("log"), text).expect("write");
        let paths = Paths {
            run: dir.path().into(),
            ..Paths::default()
        };
        let (out, _) = run_line("log 3", &paths);
        assert_eq!(out, "line 98\nline 99\nline 100\n");
        let (out, _) = run_line("log x", &paths);
        assert!(out.contains("'x' is not a line count"));
    }

    #[test]
    fn blank_line_does_nothing() {
        assert_eq!(
            run_line("   \n", &Paths::default()),
            (String::new(), vec![])
        );
    }
}
