//! `vzpkg`: lists and installs OS templates (see `vmmgr::cli::vzpkg`).

fn main() {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                eprintln!(
                    "vzpkg: argument {:?} is not valid UTF-8\n{}",
                    bad.to_string_lossy(),
                    vmmgr::cli::vzpkg::USAGE
                );
                std::process::exit(21);
            }
        }
    }
    std::process::exit(vmmgr::cli::vzpkg::run(&args));
}
