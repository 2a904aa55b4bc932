//! `vzlist`: lists VEs in OpenVZ's formats (see `vmmgr::cli::vzlist`).

use vmmgr::cli::vzlist;

fn main() {
    // Arguments are bytes: `env::args()` would panic on one that is not UTF-8.
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                eprintln!(
                    "vzlist: argument {:?} is not valid UTF-8: options, fields and names are text\n{}",
                    bad.to_string_lossy(),
                    vzlist::USAGE
                );
                std::process::exit(20);
            }
        }
    }
    let opts = match vzlist::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vzlist: {e}\n{}", vzlist::USAGE);
            std::process::exit(20);
        }
    };
    if opts.list_fields {
        print!("{}", vzlist::field_list());
        return;
    }
    let all = match vmmgr::cli::list_all() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vzlist: {e}");
            std::process::exit(vmmgr::cli::NO_VMMGR);
        }
    };
    let need = vzlist::needs_resources(&opts);
    let mut rows = Vec::new();
    for info in vzlist::select(&opts, all) {
        let res = if need {
            match vmmgr::cli::call(&proto::Request::Resources { veid: info.veid }) {
                Ok(proto::Response::Resources(r)) => Some(r),
                Ok(other) => {
                    eprintln!("vzlist: unexpected reply from vmmgr: {other:?}");
                    std::process::exit(3);
                }
                Err(e) => {
                    eprintln!("vzlist: {e}");
                    std::process::exit(vmmgr::cli::NO_VMMGR);
                }
            }
        } else {
            None
        };
        rows.push(vzlist::Row { info, res });
    }
    let rows = vzlist::sort(&opts, rows);
    if opts.json {
        print!("{}", vzlist::json(&opts, &rows));
    } else if rows.is_empty() && !opts.json {
        // OpenVZ prints this to stderr and still exits 0.
        if !opts.no_header {
            print!("{}", vzlist::table(&opts, &rows));
        }
        eprintln!("VE not found");
    } else {
        print!("{}", vzlist::table(&opts, &rows));
    }
}
