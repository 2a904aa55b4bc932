//! `vzctl`: OpenVZ's VE control tool (see `vmmgr::cli::vzctl`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(vmmgr::cli::vzctl::main(&args));
}
