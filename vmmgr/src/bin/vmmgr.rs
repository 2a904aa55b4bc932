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
    // The VE inits we start are orphaned when their setup helper exits: they
    // come to us, so that we can reap them and read how they ended (a
    // `reboot` inside a VE restarts it).
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        log::error!("cannot become the VE inits' subreaper: {e}; a VE's reboot will stop it");
    }
    // Every VE has its own devpts instance, and all of them share the
    // kernel's pty.max (less pty.reserve, kept for the appliance's own):
    // raised to the kernel's ceiling so that one VE opening ptys cannot
    // leave the others none (each pty is charged to its VE's memory).
    if let Err(e) = std::fs::write("/proc/sys/kernel/pty/max", "1048576") {
        log::warn!("kernel.pty.max: {e}; VEs share the default pool of ptys");
    }
    let manager = vmmgr::daemon::Manager::new(vmmgr::daemon::Layout::default());
    manager.reload();
    // The kernel's reclaim settings (swap.rs) and the compressed swap
    // (vz.conf's ZRAM_SWAP), on their own thread: nothing waits for them,
    // and they are in place before the ONBOOT VEs need memory.
    let zram = manager.zram_swap();
    let _ = std::thread::Builder::new()
        .name("vmmgr-zram".into())
        .spawn(move || {
            match vmmgr::swap::lru_gen() {
                Ok(what) => log::info!("reclaim: {what}"),
                Err(e) => log::warn!("reclaim: {e}; the kernel keeps its two-list LRU"),
            }
            match vmmgr::swap::free_floor() {
                Ok(what) => log::info!("reclaim: {what}"),
                Err(e) => log::warn!("reclaim: {e}; the kernel keeps its free-memory floor"),
            }
            match vmmgr::swap::setup(zram) {
                Ok(what) => log::info!("swap: {what}"),
                Err(e) => log::error!("swap (vz.conf ZRAM_SWAP): {e}; running without it"),
            }
        });
    // The VEs' /proc view, before any VE starts (their setup binds it).
    if let Err(e) = vmmgr::procfs::start(std::sync::Arc::clone(&manager)) {
        log::error!(
            "cannot mount the VEs' /proc view at {}: {e}; VEs will see the appliance's \
             meminfo, cpuinfo, stat and loadavg, and a user_beancounters without rows",
            vmmgr::procfs::MOUNT_DIR
        );
    }
    if let Err(e) = vmmgr::net::appliance_sysctls() {
        log::error!("routing for VEs: {e}; VE addresses may not be reachable");
    }
    // The appliance's own interfaces (the boot config's net.conf), before
    // any VE starts.
    let (net, diags) = vmmgr::net::uplink::load(&vmmgr::daemon::Layout::default().config_dir);
    for d in diags {
        match d.severity {
            vzconfig::Severity::Error => log::error!("{d}"),
            vzconfig::Severity::Warning => log::warn!("{d}"),
        }
    }
    // The VEs' firewall (with what the adopted ones hold) is loaded while
    // the interfaces are configured: each is a few hundred ms under
    // emulation, and neither needs the other.
    manager.adopt();
    // Listening for the uplinks' changes from before they are configured:
    // an address that comes after the firewall's load (DHCP) still gets
    // the adopted VEs' neighbour answers.
    manager.keep_neighbour_answers();
    let firewall = {
        let m = std::sync::Arc::clone(&manager);
        let masquerade = net.masquerade.clone();
        std::thread::Builder::new()
            .name("vmmgr-firewall".into())
            .spawn(move || m.net_resync(&masquerade))
    };
    vmmgr::net::uplink::apply(&net);
    match firewall {
        Ok(h) => {
            let _ = h.join();
        }
        Err(e) => {
            log::warn!("loading the firewall on a thread: {e}; loading it now");
            manager.net_resync(&net.masquerade);
        }
    }
    manager.start_sampler();
    // What an incoming migration left uncommitted (a crash mid-way) goes
    // before anything starts; then migrations are accepted.
    manager.sweep_incoming();
    manager.serve_migrations();
    let ctx = vmmgr::server::Ctx {
        paths: Paths::default(),
        ves: Some(std::sync::Arc::clone(&manager)),
    };
    let sock = Path::new(vmmgr::SOCKET_PATH);
    let listener = match vmmgr::server::bind(sock) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {}: {e}; is /run mounted?", sock.display());
            std::process::exit(1);
        }
    };
    let c = ctx.clone();
    let _ = std::thread::Builder::new()
        .name("vmmgr-accept".into())
        .spawn(move || vmmgr::server::accept_loop(listener, c));
    let mgmt = Path::new(vmmgr::MGMT_TTY);
    match vmmgr::server::open_serial(mgmt) {
        Ok(tty) => {
            let c = ctx.clone();
            let _ = std::thread::Builder::new()
                .name("vmmgr-serial".into())
                .spawn(move || vmmgr::server::serve_serial(tty, mgmt, c));
        }
        Err(e) => log::warn!(
            "management serial {}: {e}; only {} serves the protocol",
            mgmt.display(),
            sock.display()
        ),
    }
    log::info!("listening on {} and {}", sock.display(), mgmt.display());
    vmmgr::notify::ready();
    // ONBOOT VEs start once per appliance boot, not again after a vmmgr restart.
    let booted = Path::new("/run/vz/ve/.booted");
    if !booted.exists() {
        let m = std::sync::Arc::clone(&manager);
        let _ = std::thread::Builder::new()
            .name("vmmgr-boot".into())
            .spawn(move || {
                m.boot();
                let _ = std::fs::create_dir_all("/run/vz/ve");
                let _ = std::fs::write("/run/vz/ve/.booted", "");
            });
    }
    match set.wait() {
        Ok(sig) => log::info!("received {sig}: stopping the VEs"),
        Err(e) => log::error!("waiting for signals: {e}"),
    }
    manager.shutdown();
    let _ = std::fs::remove_file(sock);
}
