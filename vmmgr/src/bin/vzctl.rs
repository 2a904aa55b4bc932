//! `vzctl`: OpenVZ's VE control tool (see `vmmgr::cli::vzctl`).

fn main() {
    // Arguments are bytes: never `env::args()`, which panics on non-UTF-8.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(vmmgr::cli::vzctl::main(&args));
}
