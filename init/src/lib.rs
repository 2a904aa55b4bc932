//! PID 1 of the appliance.
//!
//! One binary, two stages. In the initramfs (`/` is a ramfs/tmpfs) it loads the
//! reviewed kernel modules, finds `VZROOT` by its GPT label, mounts it read-only
//! and switches root, then executes itself from the real root. There it mounts
//! the rest (cgroup2, `/run`, `/vz`, the boot config), names the host, brings up
//! `lo`, starts and supervises the services, reaps every orphan and, when asked,
//! shuts the machine down cleanly. No step may kill PID 1: a failure is logged
//! with what to do and the console comes up in a degraded mode that says so.

pub mod blockdev;
pub mod cgroup;
pub mod fsstate;
pub mod klog;
pub mod modules;
pub mod mounts;
pub mod supervisor;
mod sys;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rustix::mount::MountFlags;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use supervisor::{Io, Service, Spec};

/// Runtime state directory shared with the console and vmmgr.
pub const RUN_DIR: &str = "/run/vz";
/// Problems found during boot, one per line (empty when healthy).
pub use vzcommon::run::DEGRADED_FILE;
/// `LABEL DEVICE MOUNTPOINT STATE-AT-BOOT` per partition.
pub use vzcommon::run::PARTITIONS_FILE;
/// The console's terminal.
pub const CONSOLE_TTY: &str = "/dev/ttyS0";

const NEW_ROOT: &str = "/newroot";
const RAMFS_MAGIC: u32 = 0x8584_58f6;
const DEVICE_WAIT: Duration = Duration::from_secs(15);
/// How long the root disk may take on the initramfs's own drivers before
/// the fallback drivers are loaded too.
const FALLBACK_WAIT: Duration = Duration::from_secs(1);
const SERVICE_STOP_TIMEOUT: Duration = Duration::from_secs(15);
const KILL_TIMEOUT: Duration = Duration::from_secs(3);

/// What the machine does after shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    Reboot,
    PowerOff,
}

/// The signal meanings, as busybox init and sysvinit users know them:
/// SIGTERM and SIGINT (ctrl-alt-del) reboot; SIGUSR2, SIGUSR1 and SIGPWR power off.
pub fn power_action(sig: Signal) -> Option<PowerAction> {
    match sig {
        Signal::SIGTERM | Signal::SIGINT => Some(PowerAction::Reboot),
        Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGPWR => Some(PowerAction::PowerOff),
        _ => None,
    }
}

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        set.add(s);
    }
    set
}

/// Problems that put the appliance in degraded mode.
#[derive(Debug, Default)]
struct Degraded(Vec<String>);

impl Degraded {
    fn add(&mut self, what: String) {
        log::error!("{what}");
        self.0.push(what);
        let _ = std::fs::write(DEGRADED_FILE, self.0.join("\n") + "\n");
    }
}

/// Entry point: never returns.
pub fn run() -> ! {
    // Block the signals we handle before anything else, so none is lost and
    // children restore the default mask (std::process does that before exec).
    let mask = handled_signals();
    let _ = mask.thread_block();
    if std::process::id() != 1 {
        eprintln!("init: must run as PID 1 (the appliance's first process)");
        std::process::exit(2);
    }
    let in_initramfs = rustix::fs::statfs("/")
        .map(|s| s.f_type as u32 == RAMFS_MAGIC || s.f_type as u32 == libc::TMPFS_MAGIC as u32)
        .unwrap_or(false);
    if in_initramfs {
        early_mounts();
        klog::install();
        klog::step("init started in initramfs");
        match stage_initramfs() {
            Ok(()) => exec_real_init(),
            Err(why) => {
                let mut degraded = Degraded::default();
                degraded.add(why);
                supervise(mask, degraded, false)
            }
        }
    } else {
        early_mounts();
        klog::install();
        klog::reload_timeline();
        klog::step("init started on VZROOT");
        let degraded = stage_root();
        supervise(mask, degraded, true)
    }
}

/// /dev, /proc, /sys and /run: needed by everything else. Already there after the
/// root switch (moved from the initramfs).
fn early_mounts() {
    let nodev = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    // /proc first: whether the others are mounted is read from it.
    let wanted: [(&str, &str, &str, MountFlags, &str); 4] = [
        ("proc", "/proc", "proc", nodev, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        ("sysfs", "/sys", "sysfs", nodev, ""),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
    ];
    for (src, target, fstype, flags, data) in wanted {
        let target = Path::new(target);
        let present = match fstype {
            "proc" => target.join("self").exists(),
            _ => mounts::is_mountpoint(target),
        };
        if !present {
            if let Err(e) = mounts::mount_fs(src, target, fstype, flags, data) {
                // No logger yet: the console is all we have.
                eprintln!("init: {}", error_chain(&e));
            }
        }
    }
    let _ = std::fs::create_dir_all(RUN_DIR);
}

fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

use vzcommon::error_chain;

/// Waits (polling sysfs, at most `wait`) for the partition labelled `label`.
fn wait_for_partition(label: &str, wait: Duration) -> Option<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(dev) = blockdev::find_by_partlabel(Path::new("/sys"), label) {
            if dev.exists() {
                return Some(dev);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Devices appear asynchronously after their driver loads; there is no
        // event to wait on without udev, so look again shortly.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Loads the modules of `list`: on VZROOT the whole list, on `workers`
/// threads, skipping what the initramfs loaded; in the initramfs its own
/// list, in order.
fn load_modules(list: &str, workers: usize) -> Result<(), String> {
    let dir = Path::new("/lib/modules").join(kernel_release());
    let loaded = if workers > 1 {
        modules::load_parallel(Path::new(list), &dir, Path::new("/sys"), workers)
    } else {
        modules::load_all(Path::new(list), &dir)
    };
    match loaded {
        Ok(r) => {
            klog::step(&format!(
                "modules of {list} loaded: {} new, {} already present, {} failed; slowest: {}",
                r.loaded,
                r.already,
                r.failed.len(),
                r.slowest_text()
            ));
            if r.failed.is_empty() {
                Ok(())
            } else {
                let names: Vec<_> = r.failed.iter().map(|(m, _)| m.as_str()).collect();
                Err(format!(
                    "kernel modules failed to load: {} (see `log`; rebuild the image so \
                     the modules match its kernel)",
                    names.join(", ")
                ))
            }
        }
        Err(e) => Err(format!(
            "reading {list}: {e}; the image is incomplete: rebuild the image",
        )),
    }
}

/// The initramfs stage: modules, VZROOT, switch root. An `Err` is the reason
/// the appliance stays in the initramfs in degraded mode.
fn stage_initramfs() -> Result<(), String> {
    if let Err(why) = load_modules(modules::LOAD_LIST, 1) {
        // Not fatal by itself: VZROOT may still mount.
        log::error!("{why}");
    }
    // The root disk is on virtio where the appliance usually runs; on
    // another controller its driver is in the fallback list.
    let dev = wait_for_partition(blockdev::ROOT_LABEL, FALLBACK_WAIT)
        .or_else(|| {
            if !Path::new(modules::FALLBACK_LIST).exists() {
                return None;
            }
            klog::step(&format!(
                "no {} yet: loading the other disk drivers",
                blockdev::ROOT_LABEL
            ));
            if let Err(why) = load_modules(modules::FALLBACK_LIST, 1) {
                log::error!("{why}");
            }
            wait_for_partition(blockdev::ROOT_LABEL, DEVICE_WAIT)
        })
        .ok_or_else(|| {
            format!(
                "no partition labelled {} appeared within {} s: is the disk attached, and was \
             the image written to it whole (`image flash`)?",
                blockdev::ROOT_LABEL,
                DEVICE_WAIT.as_secs()
            )
        })?;
    klog::step(&format!(
        "found {} at {}",
        blockdev::ROOT_LABEL,
        dev.display()
    ));
    let dev_s = dev.to_string_lossy().into_owned();
    let new_root = Path::new(NEW_ROOT);
    let ro = MountFlags::RDONLY;
    mounts::mount_fs(&dev_s, new_root, "erofs", ro, "")
        .or_else(|_| mounts::mount_fs(&dev_s, new_root, "ext4", ro, ""))
        .map_err(|e| {
            format!(
                "{}; {} must hold an erofs or ext4 filesystem: rebuild or re-flash the image",
                error_chain(&e),
                blockdev::ROOT_LABEL
            )
        })?;
    klog::step(&format!("mounted {} read-only", blockdev::ROOT_LABEL));
    let real_init = new_root.join("sbin/init");
    if !real_init.exists() {
        let _ = rustix::mount::unmount(new_root, rustix::mount::UnmountFlags::empty());
        return Err(format!(
            "{} has no /sbin/init: the root filesystem is not this appliance's; re-flash the image",
            blockdev::ROOT_LABEL
        ));
    }
    let _ = std::fs::write(
        PARTITIONS_FILE,
        format!("{} {} / read-only\n", blockdev::ROOT_LABEL, dev.display()),
    );
    for m in ["/dev", "/proc", "/sys", "/run"] {
        mounts::move_mount(Path::new(m), &new_root.join(&m[1..])).map_err(|e| error_chain(&e))?;
    }
    mounts::free_initramfs(new_root);
    mounts::switch_root(new_root).map_err(|e| error_chain(&e))?;
    Ok(())
}

fn exec_real_init() -> ! {
    use std::os::unix::process::CommandExt;
    klog::step("switched root; executing /sbin/init");
    let err = std::process::Command::new("/sbin/init").arg0("init").exec();
    // Only reached if exec failed: carry on as PID 1 here, degraded.
    let mut degraded = Degraded::default();
    degraded.add(format!(
        "executing /sbin/init on {} failed: {err}; re-flash the image",
        blockdev::ROOT_LABEL
    ));
    supervise(handled_signals(), degraded, false)
}

/// Mounts a data partition after recording whether it was cleanly unmounted.
fn mount_partition(
    label: &str,
    target: &str,
    fstype: &str,
    data: &str,
    degraded: &mut Degraded,
) -> bool {
    let Some(dev) = blockdev::find_by_partlabel(Path::new("/sys"), label) else {
        degraded.add(format!(
            "no partition labelled {label}: {target} is not mounted; re-flash the image"
        ));
        return false;
    };
    let state = fsstate::probe(&dev)
        .map(|s| s.as_str())
        .unwrap_or("unreadable");
    if state == "unknown" || state == "unreadable" {
        log::warn!(
            "{label} ({}): no {fstype} superblock found ({state}); mounting will likely fail",
            dev.display()
        );
    } else if state != "clean" {
        log::warn!(
            "{label} ({}) was not cleanly unmounted (state: {state}); the kernel recovers it \
             while mounting",
            dev.display()
        );
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME;
    match mounts::mount_fs(
        &dev.to_string_lossy(),
        Path::new(target),
        fstype,
        flags,
        data,
    ) {
        Ok(()) => {
            let record = vzcommon::run::PartitionRecord {
                label: label.to_owned(),
                device: dev.display().to_string(),
                mount_point: target.to_owned(),
                state: state.to_string(),
            };
            let line = record.render() + "\n";
            let mut text = std::fs::read_to_string(PARTITIONS_FILE).unwrap_or_default();
            text.push_str(&line);
            let _ = std::fs::write(PARTITIONS_FILE, text);
            klog::step(&format!("mounted {label} on {target} (was {state})"));
            true
        }
        Err(e) => {
            degraded.add(format!(
                "{}; {target} is unavailable: check the partition from another machine \
                 (fsck) or re-flash",
                error_chain(&e)
            ));
            false
        }
    }
}

/// The stage on the real root. Returns the problems found (empty when healthy).
fn stage_root() -> Degraded {
    let mut degraded = Degraded::default();
    let _ = std::fs::remove_file(DEGRADED_FILE);
    let nosuid = MountFlags::NOSUID | MountFlags::NOEXEC;
    let cgroup_options = vzcommon::cgroupfs::OPTIONS.join(",");
    let basic: [(&str, &str, &str, MountFlags, &str); 4] = [
        (
            "devpts",
            "/dev/pts",
            "devpts",
            nosuid,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            nosuid | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid | MountFlags::NODEV,
            &cgroup_options,
        ),
    ];
    for (src, target, fstype, flags, data) in basic {
        if let Err(e) = mounts::mount_fs(src, Path::new(target), fstype, flags, data) {
            degraded.add(format!("{}; report this as a bug", error_chain(&e)));
        }
    }
    // /dev/ptmx must use our devpts instance.
    let _ = std::fs::remove_file("/dev/ptmx");
    let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    match cgroup::enable_all(Path::new("/sys/fs/cgroup")) {
        Ok(list) => klog::step(&format!("cgroup2 controllers for VEs: {list}")),
        Err(e) => degraded.add(format!(
            "cgroup set-up failed: {}; VEs cannot be resource-limited",
            error_chain(&e)
        )),
    }
    if let Err(e) = cgroup::appliance_group(Path::new("/sys/fs/cgroup")) {
        degraded.add(format!(
            "the appliance's cgroup: {}; VE load may starve the console",
            error_chain(&e)
        ));
    }
    // The modules the root switch did not need (networking, FUSE, overlay,
    // loop, ...), on every CPU while the partitions are mounted; the
    // services that use them start after. Not before the cgroup step: both
    // patch kernel code (static keys), and a boot in CI once stalled with
    // both vCPUs in soft lockup while they ran side by side under TCG.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let later = std::thread::Builder::new()
        .name("modules".into())
        .spawn(move || load_modules(modules::LOAD_LIST, workers));
    let data_ok = mount_partition(
        blockdev::DATA_LABEL,
        "/vz",
        "ext4",
        "prjquota",
        &mut degraded,
    );
    if data_ok {
        for d in ["private", "root", "dump", "log", "lock"] {
            let _ = std::fs::create_dir_all(Path::new("/vz").join(d));
        }
        if let Err(e) = klog::log_to_file(Path::new("/vz/log/appliance.log")) {
            log::warn!("cannot write /vz/log/appliance.log: {e}; logging to /run only");
        }
    }
    if !data_ok {
        let _ = klog::log_to_file(Path::new("/run/vz/appliance.log"));
    }
    mount_partition(
        blockdev::BOOT_LABEL,
        "/boot",
        "vfat",
        "flush,fmask=0133,dmask=0022,shortname=mixed,utf8",
        &mut degraded,
    );
    let hostname = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vz".to_owned());
    match rustix::system::sethostname(hostname.as_bytes()) {
        Ok(()) => klog::step(&format!("hostname {hostname}")),
        Err(e) => degraded.add(format!("setting hostname {hostname:?}: {e}")),
    }
    match vzcommon::interface_up("lo") {
        Ok(()) => klog::step("lo up"),
        Err(e) => degraded.add(format!("bringing up lo: {e}; local services will not work")),
    }
    let loaded = match later {
        Ok(h) => h
            .join()
            .unwrap_or_else(|_| Err("the module loader failed".to_owned())),
        Err(e) => Err(format!("starting the module loader: {e}")),
    };
    if let Err(why) = loaded {
        degraded.add(why);
    }
    degraded
}

fn services(on_root: bool) -> Vec<Service> {
    let mut v = Vec::new();
    if on_root {
        v.push(Service::new(Spec {
            name: "vmmgr",
            path: "/sbin/vmmgr".into(),
            args: vec![],
            io: Io::Log,
            notify: true,
        }));
    }
    v.push(Service::new(Spec {
        name: "console",
        path: "/sbin/vzconsole".into(),
        args: vec![],
        io: Io::Tty(CONSOLE_TTY.into()),
        notify: true,
    }));
    v
}

/// The main loop: start and supervise services, reap orphans, act on signals.
fn supervise(mask: SigSet, degraded: Degraded, on_root: bool) -> ! {
    // Ctrl-alt-del sends us SIGINT instead of rebooting at once.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let sfd = loop {
        match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
            Ok(fd) => break fd,
            Err(e) => {
                log::error!("signalfd: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let mut services = services(on_root);
    let mut announced = false;
    loop {
        let now = Instant::now();
        for s in services.iter_mut() {
            if s.next_start.is_some_and(|t| t <= now) {
                s.start();
            }
        }
        supervisor::write_state(&services);

        let next = services.iter().filter_map(|s| s.next_start).min();
        let timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
        let mut fds: Vec<rustix::event::PollFd<'_>> = vec![rustix::event::PollFd::new(
            &sfd,
            rustix::event::PollFlags::IN,
        )];
        for s in &services {
            for fd in s.fds() {
                fds.push(rustix::event::PollFd::from_borrowed_fd(
                    fd,
                    rustix::event::PollFlags::IN,
                ));
            }
        }
        let ts = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        });
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
        drop(fds);

        for s in services.iter_mut() {
            s.service_io();
        }
        if !announced && services.iter().all(|s| s.ready) {
            announced = true;
            announce_ready(&degraded);
        }

        let mut action = None;
        while let Ok(Some(info)) = sfd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            if sig == Signal::SIGCHLD {
                continue;
            }
            if let Some(a) = power_action(sig) {
                klog::console_line(&format!("init: received {sig}"));
                log::info!("received {sig}: {a:?}");
                action = Some(a);
            }
        }
        reap(&mut services, true);
        if let Some(a) = action {
            shutdown(&sfd, services, a);
        }
    }
}

fn announce_ready(degraded: &Degraded) {
    let ms = klog::since_boot_ms();
    klog::step("console ready");
    let line = if degraded.0.is_empty() {
        format!("init: ready in {ms} ms: type 'help' on the console")
    } else {
        format!(
            "init: ready in {ms} ms (DEGRADED: {}): type 'status' on the console",
            degraded.0.join("; ")
        )
    };
    klog::console_line(&line);
    log::info!("{}", line.trim_start_matches("init: "));
}

/// Reaps every exited child (orphans included). Returns false when init has no
/// children left.
fn reap(services: &mut [Service], restart: bool) -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                let how = match status {
                    WaitStatus::Exited(_, code) => format!("exit code {code}"),
                    WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
                    other => format!("{other:?}"),
                };
                if let Some(s) = services.iter_mut().find(|s| s.pid == Some(pid.as_raw())) {
                    s.exited(how, restart);
                    supervisor::write_state(services);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits until `done` or the deadline, reaping and draining signals meanwhile.
fn wait_until(
    sfd: &SignalFd,
    services: &mut [Service],
    deadline: Instant,
    done: impl Fn(&[Service], bool) -> bool,
) {
    loop {
        let children = reap(services, false);
        if done(services, children) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let left = left.min(Duration::from_millis(100));
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: left.as_nanos() as _,
        };
        let mut fds = [rustix::event::PollFd::from_borrowed_fd(
            sfd.as_fd(),
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        while let Ok(Some(_)) = sfd.read_signal() {}
    }
}

fn shutdown(sfd: &SignalFd, mut services: Vec<Service>, action: PowerAction) -> ! {
    let verb = match action {
        PowerAction::Reboot => "reboot",
        PowerAction::PowerOff => "power off",
    };
    klog::console_line(&format!("init: shutting down to {verb}"));
    log::info!("shutting down to {verb}: stopping services");
    for s in services.iter_mut() {
        s.next_start = None;
    }
    // In start order: vmmgr first (it stops the VEs in reverse boot order), the
    // console last so the operator sees what happens.
    for i in 0..services.len() {
        let Some(pid) = services[i].pid else { continue };
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + SERVICE_STOP_TIMEOUT;
        wait_until(sfd, &mut services, deadline, |s, _| s[i].pid.is_none());
        if services[i].pid.is_some() {
            let line = format!(
                "service {} did not stop within {} s; killing it",
                services[i].spec.name,
                SERVICE_STOP_TIMEOUT.as_secs()
            );
            log::warn!("{line}");
            // On the console too: the operator sees why the VEs were killed
            // rather than stopped.
            klog::console_line(&format!("init: {line}"));
        }
    }
    for sig in [Signal::SIGTERM, Signal::SIGKILL] {
        // kill(-1) from PID 1 reaches every process but itself.
        if nix::sys::signal::kill(Pid::from_raw(-1), sig).is_ok() {
            let deadline = Instant::now() + KILL_TIMEOUT;
            wait_until(sfd, &mut services, deadline, |_, children| !children);
        }
    }
    log::info!("all processes stopped; unmounting");
    klog::close_file();
    rustix::fs::sync();
    unmount_all();
    rustix::fs::sync();
    let mode = match action {
        PowerAction::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        PowerAction::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
    };
    klog::console_line(&format!("init: {verb} now"));
    let err = nix::sys::reboot::reboot(mode);
    log::error!("reboot(2) failed: {err:?}; the machine is stopped, power it off by hand");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Unmounts everything but the root and the kernel's own filesystems, newest
/// first; a busy filesystem is remounted read-only instead.
fn unmount_all() {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let keep = ["/", "/dev", "/proc", "/sys"];
    for target in mounts::mount_points(&text).iter().rev() {
        if keep.contains(&target.as_str()) {
            continue;
        }
        let path = Path::new(target);
        match mounts::unmount_or_remount_readonly(path) {
            Ok(()) => {}
            Err(e) => log::warn!("{target}: {e}"),
        }
    }
    let _ = rustix::mount::mount_remount("/", MountFlags::RDONLY, "");
    let parts = std::fs::read_to_string(PARTITIONS_FILE).unwrap_or_default();
    for p in vzcommon::run::parse_lines(&parts, vzcommon::run::PartitionRecord::parse) {
        if p.mount_point != "/" && !mounts::is_mountpoint(Path::new(&p.mount_point)) {
            klog::console_line(&format!("init: unmounted {} ({})", p.label, p.mount_point));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_power_actions() {
        assert_eq!(power_action(Signal::SIGINT), Some(PowerAction::Reboot));
        assert_eq!(power_action(Signal::SIGTERM), Some(PowerAction::Reboot));
        assert_eq!(power_action(Signal::SIGPWR), Some(PowerAction::PowerOff));
        assert_eq!(power_action(Signal::SIGUSR2), Some(PowerAction::PowerOff));
        assert_eq!(power_action(Signal::SIGHUP), None);
    }
}
