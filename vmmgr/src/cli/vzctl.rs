//! `vzctl`: OpenVZ's container control tool, as a client of vmmgr. Grammar and
//! exit codes as OpenVZ's (`vzctl [flags] command VEID|name [options]`).

use crate::exitcode::ExitCode;
use proto::{Request, Response, SetParam, VeInfo, VeOp};
use std::ffi::{OsStr, OsString};

pub const USAGE: &str = "\
Usage: vzctl [--quiet] [--verbose] <command> <VEID|name> [options]
  create <VEID> [--ostemplate T] [--config SAMPLE] [--hostname H] [--name N]
  destroy | delete <VEID>
  start <VEID> [--force] [--wait]
  stop <VEID> [--fast]
  restart <VEID>
  chkpnt | suspend <VEID> [--dumpfile DIR]   (state to DIR, default /vz/dump/Dump.<VEID>; the VE stops)
  restore | resume <VEID> [--dumpfile DIR]  (the VE back from DIR, which is then removed)
  status <VEID> [-j]           (-j: JSON, with the VE's addresses)
  mount <VEID> | umount <VEID>
  exec <VEID> <command...>     (exit code 8 if the command fails; '-' reads stdin)
  exec2 <VEID> <command...>    (exit code is the command's)
  enter <VEID> [--exec command...]
  set <VEID> [--hostname H] [--name N] [--description D] [--onboot yes|no]
             [--bootorder N] [--disabled yes|no] [--stop-timeout SECONDS]
             [--cpuunits N] [--cpulimit N[%]] [--cpus N] [--numproc N[:N]]
             [--cpumask LIST] [--nodemask LIST] [--ram SIZE] [--swap SIZE]
             [--<beancounter> B[:L]] (--numproc, --physpages, --swappages,
               --kmemsize, --privvmpages, --oomguarpages, --vmguarpages, ...)
             [--vm_overcommit F] [--ioprio 0-7] [--iolimit N[BKMG]] [--iopslimit N]
             [--diskspace S[:H]] [--diskinodes S[:H]] [--quotatime SECONDS]
             [--devnodes dev:rw|none] [--devices c|b:major:minor|all:rw|none]
             [--ipadd ADDR[/PREFIX]] [--ipdel ADDR|all] [--portfwd tcp:8080:80 ...]
             [--nameserver ADDR|inherit] [--searchdomain DOMAIN|inherit]
             [--netif_add ifname[,mac,host_ifname,host_mac,bridge]] [--netif_del ifname|all]
             [--netdev_add NAME] [--netdev_del NAME]
             [--userpasswd user:password] [--save]
  ubc [<VEID|name|0>...]       (/proc/user_beancounters: 0 is the appliance; all running by default)";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Op(String, Box<VeOp>),
    /// The command is bytes, passed to the VE unchanged (arguments need not
    /// be UTF-8).
    Exec {
        target: String,
        command: Vec<OsString>,
        exec2: bool,
    },
    Enter {
        target: String,
        command: Vec<OsString>,
    },
    Set {
        target: String,
        params: Vec<SetParam>,
        userpasswd: Option<String>,
        save: bool,
    },
    /// `/proc/user_beancounters` of these VEs (every running one if none).
    Ubc(Vec<String>),
    /// `status -j`: the status as a JSON object, with the VE's addresses.
    StatusJson(String),
}

/// A command-line error: the message and OpenVZ's exit code (20 or 21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String, pub ExitCode);

fn short<const N: usize>(flag: &str, v: &str) -> Result<heapless::String<N>, Usage> {
    heapless::String::try_from(v).map_err(|_| {
        Usage(
            format!("{flag}: value longer than {N} characters"),
            ExitCode::BadValue,
        )
    })
}

/// An argument as text; arguments that are not UTF-8 are refused here (only
/// the command of `exec`/`exec2`/`enter` is passed on as bytes).
fn text_arg(a: &OsStr) -> Result<String, Usage> {
    a.to_str().map(str::to_owned).ok_or_else(|| {
        Usage(
            format!(
                "argument {:?} is not valid UTF-8: VEIDs, names, options and their values \
                 must be text (only the command given to exec, exec2 and enter may be any bytes)",
                a.to_string_lossy()
            ),
            ExitCode::BadParam,
        )
    })
}

/// Parses `vzctl` arguments (without the program name).
pub fn parse(args: &[OsString]) -> Result<(Cmd, bool), Usage> {
    let mut quiet = false;
    let mut it = args.iter().peekable();
    while let Some(a) = it.peek() {
        match a.to_str() {
            Some("--quiet") => quiet = true,
            Some("--verbose" | "--skiplock") => {}
            _ => break,
        }
        it.next();
    }
    let cmd = text_arg(
        it.next()
            .ok_or_else(|| Usage("no command given".into(), ExitCode::BadParam))?,
    )?;
    if cmd == "ubc" {
        let targets = it.map(|a| text_arg(a)).collect::<Result<_, _>>()?;
        return Ok((Cmd::Ubc(targets), quiet));
    }
    let target = text_arg(
        it.next()
            .ok_or_else(|| Usage(format!("{cmd}: VEID or name missing"), ExitCode::BadParam))?,
    )?;
    let rest_os: Vec<OsString> = it.cloned().collect();
    let rest: Vec<String> = if matches!(cmd.as_str(), "exec" | "exec2" | "enter") {
        Vec::new()
    } else {
        rest_os
            .iter()
            .map(|a| text_arg(a))
            .collect::<Result<_, _>>()?
    };
    let flags_only = |allowed: &[&str]| -> Result<Vec<String>, Usage> {
        for r in &rest {
            if !allowed.contains(&r.as_str()) {
                return Err(Usage(
                    format!("{cmd}: unexpected argument {r:?}"),
                    ExitCode::BadParam,
                ));
            }
        }
        Ok(rest.clone())
    };
    let op = |o| Ok((Cmd::Op(target.clone(), Box::new(o)), quiet));
    match cmd.as_str() {
        "create" => {
            let mut ostemplate = None;
            let mut config = None;
            let mut hostname = None;
            let mut name = None;
            let mut i = rest.iter();
            while let Some(f) = i.next() {
                let v = i
                    .next()
                    .ok_or_else(|| Usage(format!("{f} needs a value"), ExitCode::BadParam))?;
                match f.as_str() {
                    "--ostemplate" => ostemplate = Some(short::<64>(f, v)?),
                    "--config" => config = Some(short::<64>(f, v)?),
                    "--hostname" => hostname = Some(short::<64>(f, v)?),
                    "--name" => name = Some(short::<64>(f, v)?),
                    _ => {
                        return Err(Usage(
                            format!("create: unknown option {f}"),
                            ExitCode::BadParam,
                        ))
                    }
                }
            }
            op(VeOp::Create {
                ostemplate,
                config,
                hostname,
                name,
            })
        }
        "destroy" | "delete" => {
            flags_only(&[])?;
            op(VeOp::Destroy)
        }
        "start" => {
            let f = flags_only(&["--force", "--wait"])?;
            op(VeOp::Start {
                force: f.iter().any(|x| x == "--force"),
            })
        }
        "stop" => {
            let f = flags_only(&["--fast", "--skip-umount"])?;
            op(VeOp::Stop {
                fast: f.iter().any(|x| x == "--fast"),
            })
        }
        "restart" => {
            flags_only(&["--force", "--wait", "--fast"])?;
            op(VeOp::Restart)
        }
        "chkpnt" | "suspend" | "restore" | "resume" => {
            let mut dumpfile = None;
            let mut i = rest.iter();
            while let Some(f) = i.next() {
                match f.as_str() {
                    "--dumpfile" => {
                        let v = i.next().ok_or_else(|| {
                            Usage(format!("{f} needs a value"), ExitCode::BadParam)
                        })?;
                        dumpfile = Some(proto::Text::try_from(v.as_str()).map_err(|_| {
                            Usage(
                                format!("{f}: {v:?} is longer than 256 bytes"),
                                ExitCode::BadValue,
                            )
                        })?);
                    }
                    _ => {
                        return Err(Usage(
                            format!("{cmd}: unknown option {f}"),
                            ExitCode::BadParam,
                        ))
                    }
                }
            }
            if matches!(cmd.as_str(), "chkpnt" | "suspend") {
                op(VeOp::Chkpnt { dumpfile })
            } else {
                op(VeOp::Restore { dumpfile })
            }
        }
        "status" => {
            if !flags_only(&["-j", "--json"])?.is_empty() {
                return Ok((Cmd::StatusJson(target.clone()), quiet));
            }
            op(VeOp::Status)
        }
        "mount" => {
            flags_only(&[])?;
            op(VeOp::Mount)
        }
        "umount" => {
            flags_only(&[])?;
            op(VeOp::Umount)
        }
        "exec" | "exec2" => {
            if rest_os.is_empty() {
                return Err(Usage(
                    format!("{cmd}: no command given"),
                    ExitCode::BadParam,
                ));
            }
            Ok((
                Cmd::Exec {
                    target,
                    command: rest_os,
                    exec2: cmd == "exec2",
                },
                quiet,
            ))
        }
        "enter" => {
            let command = match rest_os.split_first() {
                None => vec![],
                Some((f, c)) if f == "--exec" && !c.is_empty() => c.to_vec(),
                Some((f, _)) => {
                    return Err(Usage(
                        format!("enter: unexpected argument {:?}", f.to_string_lossy()),
                        ExitCode::BadParam,
                    ))
                }
            };
            Ok((Cmd::Enter { target, command }, quiet))
        }
        "set" => {
            let mut params = Vec::new();
            let mut save = false;
            let mut userpasswd = None;
            let mut i = rest.iter();
            while let Some(f) = i.next() {
                if f == "--save" {
                    save = true;
                    continue;
                }
                if f == "--setmode" || f == "--force" {
                    continue;
                }
                let v = i
                    .next()
                    .ok_or_else(|| Usage(format!("{f} needs a value"), ExitCode::BadParam))?;
                // --ipdel ADDR or all: the daemon takes it from the
                // addresses in force.
                if f == "--ipdel" {
                    let list = if v == "all" {
                        "all".to_owned()
                    } else {
                        vzconfig::net::parse_ip_list(v)
                            .map(|l| vzconfig::net::render_ip_list(&l))
                            .map_err(|m| Usage(format!("--ipdel: {m}"), ExitCode::BadValue))?
                    };
                    let text = proto::LongText::try_from(list.as_str()).map_err(|_| {
                        Usage("--ipdel: too many addresses".into(), ExitCode::BadValue)
                    })?;
                    params.push(SetParam::IpDel(text));
                    continue;
                }
                // --netif_add/--netif_del, --netdev_add/--netdev_del: one
                // entry each, merged into the lists by vmmgr.
                if f == "--netif_add" {
                    let n = vzconfig::net::parse_netif_cmd(v)
                        .map_err(|m| Usage(format!("--netif_add: {m}"), ExitCode::BadValue))?;
                    let text = proto::Text::try_from(n.render().as_str())
                        .map_err(|_| Usage("--netif_add: too long".into(), ExitCode::BadValue))?;
                    params.push(SetParam::NetIfAdd(text));
                    continue;
                }
                if f == "--netif_del" || f == "--netdev_add" || f == "--netdev_del" {
                    if f != "--netif_del" || v != "all" {
                        vzconfig::net::parse_netdevs(v)
                            .ok()
                            .filter(|l| l.len() == 1)
                            .or_else(|| {
                                (f == "--netif_del" && vzconfig::net::valid_ifname(v))
                                    .then(Vec::new)
                            })
                            .ok_or_else(|| {
                                Usage(
                                    format!("{f}: {v:?} is not an interface name"),
                                    ExitCode::BadValue,
                                )
                            })?;
                    }
                    let name = proto::Name::try_from(v.as_str())
                        .map_err(|_| Usage(format!("{f}: too long"), ExitCode::BadValue))?;
                    params.push(match f.as_str() {
                        "--netif_del" => SetParam::NetIfDel(
                            proto::Text::try_from(name.as_str()).unwrap_or_default(),
                        ),
                        "--netdev_add" => SetParam::NetDevAdd(name),
                        _ => SetParam::NetDevDel(name),
                    });
                    continue;
                }
                if f == "--userpasswd" {
                    if !v.contains(':') {
                        return Err(Usage(
                            "--userpasswd: use user:password".into(),
                            ExitCode::BadValue,
                        ));
                    }
                    userpasswd = Some(v.clone());
                    continue;
                }
                // --ram and --swap are OpenVZ's shortcuts for a physpages and
                // swappages limit with barrier 0.
                let (f, v) = match f.as_str() {
                    "--ram" | "--memory" => ("--physpages", format!("0:{v}")),
                    "--swap" => ("--swappages", format!("0:{v}")),
                    _ => (f.as_str(), v.clone()),
                };
                // The config's key table says which key an option sets and
                // how its value is checked.
                let Some(def) = crate::config::key_for_option(f) else {
                    return Err(Usage(
                        format!("set: unknown or unsupported option {f}"),
                        ExitCode::BadParam,
                    ));
                };
                let param = crate::config::set_param(def, &v)
                    .map_err(|m| Usage(format!("{f}: {m}"), ExitCode::BadValue))?;
                params.push(param);
            }
            if params.is_empty() && userpasswd.is_none() {
                return Err(Usage("set: nothing to set".into(), ExitCode::BadParam));
            }
            if params.iter().any(|p| matches!(p, SetParam::Name(_))) && !save {
                return Err(Usage("--name requires --save".into(), ExitCode::BadParam));
            }
            Ok((
                Cmd::Set {
                    target,
                    params,
                    userpasswd,
                    save,
                },
                quiet,
            ))
        }
        other => Err(Usage(
            format!("unknown command {other:?}"),
            ExitCode::BadParam,
        )),
    }
}

/// `vzctl ubc`: the beancounters of the named VEs (`0`: the appliance), or
/// of the appliance and every running VE, as OpenVZ's host shows them.
fn run_ubc(targets: &[String]) -> i32 {
    let veids: Vec<u32> = if targets.is_empty() {
        match super::list_all() {
            Ok(all) => std::iter::once(0)
                .chain(
                    all.iter()
                        .filter(|v| v.status.as_str() == "running")
                        .map(|v| v.veid),
                )
                .collect(),
            Err(e) => {
                eprintln!("vzctl: {e}");
                return super::NO_VMMGR;
            }
        }
    } else {
        let mut v = Vec::new();
        for t in targets {
            if t == "0" {
                v.push(0);
                continue;
            }
            match resolve(t) {
                Ok(id) => v.push(id),
                Err((m, c)) => {
                    eprintln!("vzctl: {m}");
                    return i32::from(c);
                }
            }
        }
        v
    };
    let mut blocks = Vec::new();
    for veid in veids {
        match super::call(&Request::Resources { veid }) {
            Ok(Response::Resources(r)) if r.running => blocks.push((veid, r.ubc)),
            Ok(Response::Resources(r)) if !r.exists => {
                eprintln!("vzctl: VE {veid} does not exist");
                return i32::from(ExitCode::ConfNotFound);
            }
            Ok(Response::Resources(_)) => {
                eprintln!(
                    "vzctl: VE {veid} is not running: its beancounters exist while it runs \
                     (vzlist -a -o numproc.b,numproc.l shows its limits)"
                );
                return i32::from(ExitCode::NotRunning);
            }
            Ok(other) => {
                eprintln!("vzctl: unexpected reply from vmmgr: {other:?}");
                return i32::from(ExitCode::System);
            }
            Err(e) => {
                eprintln!("vzctl: {e}");
                return super::NO_VMMGR;
            }
        }
    }
    let refs: Vec<(u32, &[proto::UbcRow])> = blocks.iter().map(|(v, r)| (*v, &r[..])).collect();
    print!("{}", crate::ubc::render(&refs));
    0
}

/// The one-line `status` output (VZ7 form, always five words).
pub fn status_line(veid: u32, info: &VeInfo) -> String {
    format!(
        "VEID {veid} {} {} {}",
        if info.exists { "exist" } else { "deleted" },
        if info.mounted { "mounted" } else { "unmounted" },
        match info.status.as_str() {
            s @ ("running" | "suspended") => s,
            _ => "down",
        }
    )
}

/// Resolves a VEID or a name.
pub fn resolve(target: &str) -> Result<u32, (String, ExitCode)> {
    if let Ok(v) = target.parse::<crate::config::VeId>() {
        return Ok(v.get());
    }
    if target.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            format!("{target:?} is not a valid VEID (101 to 2147483644)"),
            ExitCode::BadValue,
        ));
    }
    let all = super::list_all().map_err(|e| (e, ExitCode::System))?;
    all.iter()
        .find(|v| v.name.as_str() == target)
        .map(|v| v.veid)
        .ok_or_else(|| (format!("no VE is named {target:?}"), ExitCode::ConfNotFound))
}

/// Sends an operation; `done` gets vmmgr's answer (code, message, info)
/// and returns the exit code; an error reaching vmmgr is said here.
fn run_op_with(veid: u32, op: VeOp, done: impl FnOnce(u8, &str, Option<VeInfo>) -> i32) -> i32 {
    match super::call(&Request::Ve { veid, op }) {
        Ok(Response::VeDone {
            code,
            message,
            info,
        }) => done(code, &message, info),
        Ok(other) => {
            eprintln!("unexpected reply from vmmgr: {other:?}");
            super::NO_VMMGR
        }
        Err(e) => {
            eprintln!("{e}");
            super::NO_VMMGR
        }
    }
}

/// Sends an operation; prints the outcome; returns the exit code.
pub fn run_op(veid: u32, op: VeOp, quiet: bool) -> i32 {
    let is_status = matches!(op, VeOp::Status);
    run_op_with(veid, op, |code, message, info| {
        if is_status {
            if let Some(i) = info {
                println!("{}", status_line(veid, &i));
            }
        } else if code == 0 {
            if !quiet && !message.is_empty() {
                println!("{message}");
            }
        } else {
            eprintln!("{message}");
        }
        i32::from(code)
    })
}

/// `set`: parameters go to vmmgr; `--userpasswd` changes the password in the VE.
pub fn run_set(
    veid: u32,
    params: &[SetParam],
    userpasswd: Option<&str>,
    save: bool,
    quiet: bool,
) -> i32 {
    if !params.is_empty() {
        let mut p = heapless::Vec::new();
        for param in params {
            if p.push(param.clone()).is_err() {
                eprintln!("set: too many parameters in one call (8 at most)");
                return i32::from(ExitCode::BadParam);
            }
        }
        let rc = run_op(veid, VeOp::Set { params: p, save }, quiet);
        if rc != 0 {
            return rc;
        }
    }
    if let Some(up) = userpasswd {
        // busybox has no chpasswd: hash with mkpasswd and edit /etc/shadow, all
        // inside the VE; the password travels on stdin, never on a command line.
        let script = r#"IFS= read -r up; u=${up%%:*}; p=${up#*:}
grep -q "^$u:" /etc/passwd || { echo "no user $u in the VE" >&2; exit 2; }
h=$(printf '%s' "$p" | mkpasswd -m sha512 -P 0) || exit 3
[ -f /etc/shadow ] || : > /etc/shadow
if grep -q "^$u:" /etc/shadow; then sed -i "s|^$u:[^:]*:|$u:$h:|" /etc/shadow
else echo "$u:$h:19000:0:99999:7:::" >> /etc/shadow; fi"#;
        let argv = ["/bin/sh".into(), "-c".into(), script.into()];
        let rc = crate::cli::exec::exec_in(veid, &argv, Some(up.as_bytes()));
        return match rc {
            Ok(0) => 0,
            Ok(c) => {
                eprintln!("changing the password failed (exit code {c})");
                74
            }
            Err((m, c)) => {
                eprintln!("{m}");
                i32::from(c)
            }
        };
    }
    0
}

/// Entry point of the `vzctl` binary.
pub fn main(args: &[OsString]) -> i32 {
    if args.iter().any(|a| a == "--help") || args.is_empty() {
        println!("{USAGE}");
        return if args.is_empty() {
            i32::from(ExitCode::BadParam)
        } else {
            0
        };
    }
    if args.iter().any(|a| a == "--version") {
        println!("vzctl (vz appliance) {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let (cmd, quiet) = match parse(args) {
        Ok(c) => c,
        Err(Usage(msg, code)) => {
            eprintln!("vzctl: {msg}\n{USAGE}");
            return i32::from(code);
        }
    };
    let target = match &cmd {
        Cmd::Op(t, _)
        | Cmd::Exec { target: t, .. }
        | Cmd::Enter { target: t, .. }
        | Cmd::Set { target: t, .. }
        | Cmd::StatusJson(t) => t.clone(),
        Cmd::Ubc(targets) => return run_ubc(targets),
    };
    let veid = match resolve(&target) {
        Ok(v) => v,
        Err((m, c)) => {
            eprintln!("vzctl: {m}");
            return i32::from(c);
        }
    };
    match cmd {
        Cmd::Op(_, op) => run_op(veid, *op, quiet),
        Cmd::Set {
            params,
            userpasswd,
            save,
            ..
        } => run_set(veid, &params, userpasswd.as_deref(), save, quiet),
        Cmd::Exec { command, exec2, .. } => {
            let stdin_script = command.len() == 1 && command[0] == "-";
            let r = if stdin_script {
                crate::cli::exec::exec_in(veid, &["/bin/sh".into(), "-s".into()], None)
            } else {
                // OpenVZ joins the words with spaces for `sh -c`, as bytes.
                let line = command.join(OsStr::new(" "));
                crate::cli::exec::exec_in(veid, &["/bin/sh".into(), "-c".into(), line], None)
            };
            match r {
                Ok(0) => 0,
                Ok(c) if exec2 => c,
                Ok(_) => 8,
                Err((m, c)) => {
                    eprintln!("vzctl: {m}");
                    i32::from(c)
                }
            }
        }
        Cmd::Enter { command, .. } => match crate::cli::exec::enter(veid, &command) {
            Ok(()) => 0,
            Err((m, c)) => {
                eprintln!("vzctl: {m}");
                i32::from(c)
            }
        },
        Cmd::Ubc(targets) => run_ubc(&targets),
        Cmd::StatusJson(_) => run_op_with(veid, VeOp::Status, |code, _, info| {
            if let Some(i) = info {
                println!("{}", status_json(veid, &i));
            }
            i32::from(code)
        }),
    }
}

/// `status -j`: the five words' facts and the VE's addresses.
pub fn status_json(veid: u32, info: &VeInfo) -> String {
    let ips: Vec<String> = info
        .ip
        .split_whitespace()
        .map(|a| format!("\"{a}\""))
        .collect();
    format!(
        "{{\"veid\": {veid}, \"exist\": {}, \"mounted\": {}, \"status\": \"{}\", \"ip\": [{}]}}",
        info.exists,
        info.mounted,
        if info.status.as_str() == "running" {
            "running"
        } else {
            "down"
        },
        ips.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<(Cmd, bool), Usage> {
        parse(&a.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_that_are_not_utf8_pass_through_exec_and_are_refused_elsewhere() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'e', 0xff, b'x']);
        let args = vec!["exec2".into(), "101".into(), "echo".into(), bad.clone()];
        match parse(&args).expect("exec takes bytes").0 {
            Cmd::Exec { command, .. } => assert_eq!(command[1], bad),
            other => panic!("{other:?}"),
        }
        let args = vec!["set".into(), "101".into(), "--hostname".into(), bad.clone()];
        let e = parse(&args).expect_err("set needs text");
        assert_eq!(e.1, 20);
        assert!(e.0.contains("not valid UTF-8"), "{}", e.0);
        let e = parse(&["start".into(), bad]).expect_err("a VEID is text");
        assert_eq!(e.1, 20);
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            p(&["start", "101"]).expect("ok").0,
            Cmd::Op("101".into(), Box::new(VeOp::Start { force: false }))
        );
        assert_eq!(
            p(&["--quiet", "stop", "web", "--fast"]).expect("ok"),
            (
                Cmd::Op("web".into(), Box::new(VeOp::Stop { fast: true })),
                true
            )
        );
        assert!(matches!(
            p(&["exec2", "101", "ls", "-l"]).expect("ok").0,
            Cmd::Exec { exec2: true, .. }
        ));
        let (c, _) = p(&[
            "set",
            "101",
            "--hostname",
            "h.example",
            "--onboot",
            "yes",
            "--save",
        ])
        .expect("ok");
        assert_eq!(
            c,
            Cmd::Set {
                target: "101".into(),
                params: vec![
                    SetParam::Hostname(proto::Name::try_from("h.example").expect("fits")),
                    SetParam::OnBoot(true)
                ],
                userpasswd: None,
                save: true
            }
        );
    }

    #[test]
    fn resource_options_are_typed_and_checked() {
        let (c, _) = p(&[
            "set",
            "101",
            "--ram",
            "256M",
            "--cpulimit",
            "25%",
            "--numproc",
            "64",
            "--save",
        ])
        .expect("ok");
        match c {
            Cmd::Set { params, .. } => assert_eq!(
                params,
                vec![
                    SetParam::Beancounter {
                        resource: 6,
                        value: proto::Ubc {
                            barrier: 0,
                            limit: 65_536
                        }
                    },
                    SetParam::CpuLimit(25),
                    SetParam::Beancounter {
                        resource: 5,
                        value: proto::Ubc {
                            barrier: 64,
                            limit: 64
                        }
                    },
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p(&["set", "101", "--cpuunits", "5"]).expect_err("range").1,
            21
        );
        assert_eq!(
            p(&["set", "101", "--numproc", "10K"])
                .expect_err("suffix")
                .1,
            21
        );
        assert_eq!(
            p(&["set", "101", "--numproc", "9:8"]).expect_err("b>l").1,
            21
        );
    }

    #[test]
    fn bad_arguments_get_openvz_codes() {
        assert_eq!(p(&[]).expect_err("no cmd").1, 20);
        assert_eq!(p(&["start"]).expect_err("no veid").1, 20);
        assert_eq!(p(&["frob", "101"]).expect_err("unknown").1, 20);
        assert_eq!(p(&["start", "101", "--bogus"]).expect_err("flag").1, 20);
        assert_eq!(
            p(&["set", "101", "--onboot", "maybe"])
                .expect_err("value")
                .1,
            21
        );
        assert_eq!(
            p(&["set", "101", "--name", "x"]).expect_err("needs save").1,
            20
        );
        assert_eq!(p(&["exec", "101"]).expect_err("no command").1, 20);
    }

    #[test]
    fn status_line_has_five_words() {
        let mut i = crate::cli::vzlist::tests_support::info(101, "running");
        i.mounted = true;
        assert_eq!(status_line(101, &i), "VEID 101 exist mounted running");
        let mut i = crate::cli::vzlist::tests_support::info(102, "stopped");
        i.exists = false;
        assert_eq!(status_line(102, &i), "VEID 102 deleted unmounted down");
        let i = crate::cli::vzlist::tests_support::info(103, "suspended");
        assert_eq!(status_line(103, &i), "VEID 103 exist unmounted suspended");
        let mut r = crate::cli::vzlist::tests_support::info(101, "running");
        r.ip = "192.0.2.10 2001:db8::10".try_into().expect("fits");
        assert_eq!(
            status_json(101, &r),
            "{\"veid\": 101, \"exist\": true, \"mounted\": false, \"status\": \"running\", \"ip\": [\"192.0.2.10\", \"2001:db8::10\"]}"
        );
    }
}
