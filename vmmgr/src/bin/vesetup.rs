//! `vesetup`: the single-threaded helper vmmgr runs to build one VE and start
//! its init (see `vmmgr::ve::setup`). Prints the init's pid on success.
//!
//! usage: vesetup --veid N --template DIR --private DIR --root DIR --cgroup DIR
//!                --uid-base N --gid-base N --id-count N --hostname H
//!                [--policy DIR] [--init PATH]

use std::path::PathBuf;
use vmmgr::ve::setup::{run, Spec};

fn main() {
    // Nothing inherited beyond stdio may reach the VE.
    let _ = vmmgr::ve::setup::close_inherited();
    let _ = rustix::thread::set_name(c"vesetup");
    let spec = match parse(std::env::args().skip(1).collect()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vesetup: {e}");
            std::process::exit(20);
        }
    };
    match run(&spec) {
        Ok(pid) => println!("{pid}"),
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            std::process::exit(1);
        }
    }
}

fn parse(args: Vec<String>) -> Result<Spec, String> {
    let mut spec = Spec {
        veid: 0,
        template: PathBuf::new(),
        private: PathBuf::new(),
        root: PathBuf::new(),
        cgroup: PathBuf::new(),
        uid_base: 0,
        gid_base: 0,
        id_count: 65536,
        hostname: String::new(),
        policy_dir: "/etc/vzpolicy".into(),
        init: "/sbin/init".into(),
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag} {v:?}: not a number"))
        };
        match flag.as_str() {
            "--veid" => spec.veid = num(&v)?,
            "--template" => spec.template = v.into(),
            "--private" => spec.private = v.into(),
            "--root" => spec.root = v.into(),
            "--cgroup" => spec.cgroup = v.into(),
            "--uid-base" => spec.uid_base = num(&v)?,
            "--gid-base" => spec.gid_base = num(&v)?,
            "--id-count" => spec.id_count = num(&v)?,
            "--hostname" => spec.hostname = v,
            "--policy" => spec.policy_dir = v.into(),
            "--init" => spec.init = v,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if spec.veid == 0 || spec.uid_base == 0 || spec.template.as_os_str().is_empty() {
        return Err("--veid, --uid-base and --template are required".into());
    }
    Ok(spec)
}
