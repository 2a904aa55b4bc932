//! `vzmigrate`: moves a VE to another appliance (OpenVZ's grammar; the work
//! is vmmgr's, `daemon/migrate.rs`, which reports each stage).

use proto::{Kind, Request, Response};
use std::os::unix::net::UnixStream;

pub const USAGE: &str = "\
usage: vzmigrate [--online|--live] [--keep-dst] [-r|--remove-area yes|no]
                 [--new-id=VEID] DEST VE
       vzmigrate --key

  DEST   a peer named in the boot config's migrate.conf (its name or address)
  VE     the VEID (or name) of a VE on this appliance
  --online, --live  move it while it runs: its private area and memory are
         copied while it runs, then it is frozen, the rest copied, and it
         is restored at DEST (the last line gives the freeze time)
  --keep-dst        on failure DEST keeps what it received, for inspection
  -r, --remove-area yes|no  remove the private area here after success
         (default yes); the config is kept as VEID.conf.migrated either way
  --new-id=VEID     DEST takes it under this VEID (when DEST has a VE of
         its VEID already); offline only
  --key  print this appliance's public key (for the peers' migrate.conf)

exit codes: 0 done, 1 usage, 4 cannot connect or authenticate, 6 copy failed,
7 restore or start at DEST failed, 8 checkpoint or stop here failed, 9 the VE
exists at DEST, 10 no such VE here, 12 an address is in use at DEST, 20
locked, 21 connection broken, 22 timeout, 26 protocol error, 31 not enough
space at DEST, 91 its OS template is not at DEST";

/// Runs `vzmigrate` with `args`; its exit code.
pub fn run(args: &[String]) -> i32 {
    let mut online = false;
    let mut keep_dst = false;
    let mut new_id: Option<String> = None;
    let mut remove_area = true;
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--online" | "--live" => online = true,
            "--keep-dst" => keep_dst = true,
            "--new-id" => new_id = Some(it.next().cloned().unwrap_or_default()),
            s if s.starts_with("--new-id=") => new_id = Some(s["--new-id=".len()..].to_owned()),
            "--key" => {
                let dir = std::path::Path::new(crate::migrate::KEY_DIR);
                return match crate::migrate::public_key(dir) {
                    Ok(k) => {
                        println!("{k}");
                        0
                    }
                    Err(e) => {
                        eprintln!(
                            "vzmigrate: {}/key.pub: {e} (vmmgr makes it at its start)",
                            dir.display()
                        );
                        3
                    }
                };
            }
            "-r" | "--remove-area" => match it.next().map(String::as_str) {
                Some("yes") => remove_area = true,
                Some("no") => remove_area = false,
                other => {
                    eprintln!(
                        "vzmigrate: --remove-area takes yes or no, not {:?}\n{USAGE}",
                        other.unwrap_or("")
                    );
                    return 1;
                }
            },
            s if s.starts_with("--remove-area=") => match &s["--remove-area=".len()..] {
                "yes" => remove_area = true,
                "no" => remove_area = false,
                v => {
                    eprintln!("vzmigrate: --remove-area takes yes or no, not {v:?}\n{USAGE}");
                    return 1;
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            s if s.starts_with('-') => {
                eprintln!("vzmigrate: unknown option {s}\n{USAGE}");
                return 1;
            }
            _ => pos.push(a.clone()),
        }
    }
    let [dest, ve] = &pos[..] else {
        eprintln!("vzmigrate: give DEST and VE\n{USAGE}");
        return 1;
    };
    let veid = match super::vzctl::resolve(ve) {
        Ok(v) => v,
        Err((m, _)) => {
            eprintln!("vzmigrate: {m}");
            return 10;
        }
    };
    let new_id = match new_id.as_deref().map(str::parse::<crate::config::VeId>) {
        None => None,
        Some(Ok(id)) if online => {
            eprintln!(
                "vzmigrate: --new-id={id} moves a stopped copy: migrate without --online (the VE \
                 is stopped here and started at DEST under {id})"
            );
            return 1;
        }
        Some(Ok(id)) => Some(id.get()),
        Some(Err(e)) => {
            eprintln!("vzmigrate: --new-id: {e}\n{USAGE}");
            return 1;
        }
    };
    let Ok(dest_name) = proto::Name::try_from(dest.as_str()) else {
        eprintln!("vzmigrate: DEST {dest:?} is too long");
        return 1;
    };
    let req = Request::Migrate {
        veid,
        dest: dest_name,
        online,
        remove_area,
        keep_dst,
        new_id,
    };
    match talk(&req) {
        Ok(code) => code,
        Err(m) => {
            eprintln!("vzmigrate: {m}");
            super::NO_VMMGR
        }
    }
}

/// Sends the request; prints each progress line as it comes; the code.
fn talk(req: &Request) -> Result<i32, String> {
    let mut s = UnixStream::connect(crate::SOCKET_PATH)
        .map_err(|e| format!("cannot reach vmmgr at {}: {e}", crate::SOCKET_PATH))?;
    let mut st = crate::stream::Stream(&mut s);
    proto::write_frame(&mut st, Kind::Request, req)
        .map_err(|e| format!("talking to vmmgr: {e}"))?;
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
    loop {
        let (_, resp) = proto::read_frame::<_, Response>(&mut st, &mut buf)
            .map_err(|e| format!("talking to vmmgr: {e}"))?;
        match resp {
            Response::Progress { line } => println!("{line}"),
            Response::VeDone { code, message, .. } => {
                if code == 0 {
                    println!("{message}");
                } else {
                    eprintln!("vzmigrate: {message}");
                }
                return Ok(i32::from(code));
            }
            Response::Error { message, .. } => return Err(message.to_string()),
            other => return Err(format!("unexpected reply from vmmgr: {other:?}")),
        }
    }
}
