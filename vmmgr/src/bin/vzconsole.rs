//! `vzconsole`: the shell on the serial console, started by init on ttyS0.

fn main() {
    vmmgr::console::prepare_terminal();
    let paths = vmmgr::appliance::Paths::default();
    let mut machine = vmmgr::console::RealMachine;
    if let Err(e) = vmmgr::console::run(&paths, &mut machine) {
        eprintln!("console: {e}");
        std::process::exit(1);
    }
}
