//! `vmmgr`: the VE manager daemon. Serves the control protocol on
//! `/run/vmmgr.sock` and on the management serial port.

use nix::sys::signal::{SigSet, Signal};
use std::path::Path;
use vmmgr::appliance::Paths;

fn main() {
    vmmgr::logger::install();
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    // Blocked before any thread starts, so only the wait below sees them.
    let _ = set.thread_block();
    let paths = Paths::default();
    let sock = Path::new(vmmgr::SOCKET_PATH);
    let listener = match vmmgr::server::bind(sock) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {}: {e}; is /run mounted?", sock.display());
            std::process::exit(1);
        }
    };
    let p = paths.clone();
    let _ = std::thread::Builder::new()
        .name("vmmgr-accept".into())
        .spawn(move || vmmgr::server::accept_loop(listener, p));
    let mgmt = Path::new(vmmgr::MGMT_TTY);
    match vmmgr::server::open_serial(mgmt) {
        Ok(tty) => {
            let p = paths.clone();
            let _ = std::thread::Builder::new()
                .name("vmmgr-serial".into())
                .spawn(move || vmmgr::server::serve_serial(tty, mgmt, p));
        }
        Err(e) => log::warn!(
            "management serial {}: {e}; only {} serves the protocol",
            mgmt.display(),
            sock.display()
        ),
    }
    log::info!("listening on {} and {}", sock.display(), mgmt.display());
    vmmgr::notify::ready();
    match set.wait() {
        Ok(sig) => log::info!("received {sig}: stopping"),
        Err(e) => log::error!("waiting for signals: {e}"),
    }
    let _ = std::fs::remove_file(sock);
}
