//! `vzmigrate`: moves a VE to another appliance (see `vmmgr::cli::vzmigrate`).

fn main() {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                eprintln!(
                    "vzmigrate: argument {:?} is not valid UTF-8\n{}",
                    bad.to_string_lossy(),
                    vmmgr::cli::vzmigrate::USAGE
                );
                std::process::exit(1);
            }
        }
    }
    std::process::exit(vmmgr::cli::vzmigrate::run(&args));
}
