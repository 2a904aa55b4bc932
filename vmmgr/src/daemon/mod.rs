//! The vmmgr daemon: it owns all VE state. The registry (configs as loaded,
//! running VEs, busy marks), the dispatch of `vzctl` operations and the
//! OpenVZ exit codes they answer with live here; each verb has its own file.
//!
//! - `create`, `destroy`, `start`, `stop`, `mount` (and umount), `set`: verbs;
//! - `info`: what vzlist shows; `boot`: ONBOOT and shutdown order;
//! - `watch`: VE inits (pidfds, reaping, adoption after a restart, reboot);
//! - `cgroup`: a VE's cgroup, made, delegated and removed;
//! - `limits`: CPU, memory, process and I/O limits written into it;
//! - `beancounters`, `resources`: what the kernel counts, as OpenVZ shows it.
//!
//! Runs in the multi-threaded daemon only: the single-threaded VE setup
//! helper is `crate::setup`, the CLIs are `crate::cli`.

pub mod beancounters;
mod boot;
pub mod cgroup;
mod chkpnt;
mod create;
mod destroy;
pub mod devices;
mod info;
pub mod limits;
mod migrate;
mod mount;
mod net;
pub mod quota;
mod resources;
mod set;
mod start;
mod stop;
pub mod templates;
#[cfg(test)]
mod tests;
mod watch;

pub use migrate::Request as MigrateRequest;
pub use net::neighbour_devs;
pub use watch::{reap, InitExit};

use crate::config::{self, Diag, Loaded, VeConfig, VeId};
use crate::exitcode::ExitCode;
use proto::{VeInfo, VeOp};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Where things live; a struct so tests can point it at a tempdir.
#[derive(Debug, Clone)]
pub struct Layout {
    pub config_dir: PathBuf,
    /// Template trees on VZROOT (busybox).
    pub template_dir: PathBuf,
    /// Template images and their confs (OpenVZ's `$TEMPLATE/cache`).
    pub template_cache: PathBuf,
    /// Where each template image version is mounted.
    pub template_mounts: PathBuf,
    pub cgroup_root: PathBuf,
    pub state_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub helper: PathBuf,
    /// Where VZDATA is mounted: configs name `/vz/...` (OpenVZ's paths, and
    /// confined to them); this is where those paths are on disk.
    pub vz_dir: PathBuf,
}

impl Layout {
    /// Where the configured path `p` (under `/vz`) is on disk.
    pub fn on_disk(&self, p: &Path) -> PathBuf {
        match p.strip_prefix("/vz") {
            Ok(rest) => self.vz_dir.join(rest),
            Err(_) => p.to_owned(),
        }
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            config_dir: "/etc/vz".into(),
            template_dir: "/usr/share/vz/template".into(),
            template_cache: "/vz/template/cache".into(),
            template_mounts: "/run/vz/template".into(),
            cgroup_root: "/sys/fs/cgroup/vz".into(),
            state_dir: "/run/vz/ve".into(),
            policy_dir: crate::policy::POLICY_DIR.into(),
            helper: "/sbin/vesetup".into(),
            vz_dir: "/vz".into(),
        }
    }
}

/// The outcome of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: ExitCode,
    pub message: String,
}

impl Outcome {
    pub(crate) fn ok(message: impl Into<String>) -> Self {
        Outcome {
            code: ExitCode::Ok,
            message: message.into(),
        }
    }
    pub(crate) fn fail(code: ExitCode, message: impl Into<String>) -> Self {
        Outcome {
            code,
            message: message.into(),
        }
    }
}

/// Whether an operation reads the boot config again before it uses a
/// VE's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Configs {
    /// Read again (what a command does: edits on VZBOOT apply to it).
    Reread,
    /// As last read: when the boot began, or by a later command (a
    /// `create`, `set --save` or `destroy` reads them again when done).
    /// ONBOOT starts use it.
    AsLoaded,
}

#[derive(Debug)]
struct Running {
    pid: i32,
    /// Start time of the init (tells it from a later process with its pid).
    start_time: u64,
    pidfd: Arc<OwnedFd>,
    started: Instant,
    /// The halt signal of the template version it started with (`None`
    /// when adopted after a vmmgr restart).
    halt_signal: Option<i32>,
    /// Started with CHECKPOINT=yes (or restored): it cannot have made
    /// namespaces of its own, so CRIU can dump it.
    checkpoint: bool,
}

#[derive(Debug, Default)]
struct State {
    loaded: Option<Loaded>,
    /// Diagnostics already logged (each is logged once, not at every reload).
    logged: BTreeSet<String>,
    running: BTreeMap<VeId, Running>,
    busy: BTreeSet<VeId>,
    /// VEs vmmgr is stopping: their init's exit is not a reboot request.
    stopping: BTreeSet<VeId>,
    /// When each VE last rebooted itself (a VE rebooting in a loop is not
    /// started again without end).
    reboots: BTreeMap<VeId, Vec<Instant>>,
    /// VEs mounted on the appliance with `vzctl mount`.
    mounted: BTreeSet<VeId>,
    /// Peaks and load averages sampled from running VEs.
    sampled: BTreeMap<VeId, resources::Sampled>,
    /// DEVNODES and DEVICES in force in each running VE (a `vzctl set`
    /// without `--save` changes them and not the config).
    devices: BTreeMap<VeId, Devices>,
    /// The routed addresses in force in each running VE (`net`).
    net: BTreeMap<VeId, Vec<vzconfig::net::IpNet>>,
    /// Its forwarded ports in force, with the address each goes to.
    fwd: BTreeMap<VeId, Vec<(vzconfig::net::PortFwd, std::net::IpAddr)>>,
    /// Its NETDEV interfaces: name and permanent MAC.
    netdev: BTreeMap<VeId, Vec<(String, [u8; 6])>>,
    /// Its bridged ports in the firewall: host end and the VE end's MAC.
    ports: BTreeMap<VeId, Vec<(String, [u8; 6])>>,
    /// The appliance's DNS servers and domains when last looked at (VEs
    /// with `inherit` follow them).
    dns_seen: Option<(Vec<std::net::IpAddr>, Vec<String>)>,
    /// The firewall's spoofing drop counters per interface, last read.
    drops_seen: BTreeMap<String, u64>,
}

/// A VE's DEVNODES and DEVICES.
type Devices = (
    Vec<vzconfig::resources::DevNode>,
    Vec<vzconfig::resources::DevRule>,
);

/// The manager, shared by the server threads.
#[derive(Debug)]
pub struct Manager {
    layout: Layout,
    /// The appliance's CPUs and VZDATA's disk, for the limits.
    host: limits::Host,
    state: Mutex<State>,
    changed: Condvar,
    /// Held while neighbour answers change (start, stop, `--ipadd`/
    /// `--ipdel`, adoption, the keeper thread): one at a time, so none
    /// undoes another's. Taken before `state`, never while holding it.
    answers: Mutex<()>,
    /// Held across a reload's read of the boot config and its store, so an
    /// older read never replaces a newer one: ONBOOT starts use what was
    /// stored last (`Configs::AsLoaded`), and a `destroy` or `set --save`
    /// must not be undone by a reload that read the files before it.
    /// Taken before `state`.
    reloading: Mutex<()>,
    /// Gets the `vesetup` runs of starts (forked by its server).
    launcher: crate::setup::launch::Launcher,
}

impl Manager {
    pub fn new(layout: Layout) -> Arc<Manager> {
        let host = limits::Host::probe(&layout.vz_dir);
        if let Some(root) = layout.cgroup_root.parent() {
            if layout.cgroup_root == Path::new("/sys/fs/cgroup/vz") {
                limits::enable_io_cost(root, host.io_disk);
            }
        }
        Arc::new(Manager {
            host,
            launcher: crate::setup::launch::Launcher::new(&layout.helper),
            layout,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            answers: Mutex::new(()),
            reloading: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answers_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names of the installed templates.
    pub fn templates(&self) -> Vec<String> {
        self.layout.template_names()
    }

    /// (Re)reads the boot config; logs every diagnostic once.
    pub fn reload(&self) -> Vec<Diag> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = config::load_dir(&self.layout.config_dir, &self.templates());
        let diags = loaded.diags.clone();
        let mut st = self.lock();
        for d in &diags {
            let line = d.to_string();
            if st.logged.insert(line.clone()) {
                match d.severity {
                    config::Severity::Warning => log::warn!("{line}"),
                    config::Severity::Error => log::error!("{line}"),
                }
            }
        }
        let ve0 = loaded.global.get("VE0CPUUNITS").map(str::to_owned);
        st.loaded = Some(loaded);
        drop(st);
        if let Some(parent) = self.layout.cgroup_root.parent() {
            let app = parent.join("appliance");
            if app.is_dir() {
                limits::appliance_weight(&app, ve0.as_deref());
            }
        }
        diags
    }

    /// vz.conf's ZRAM_SWAP (off when absent; a bad value was reported
    /// with its line when the config was loaded, and counts as absent).
    pub fn zram_swap(&self) -> vzconfig::resources::ZramSwap {
        self.global()
            .get("ZRAM_SWAP")
            .and_then(|v| vzconfig::resources::parse_zram_swap(v).ok())
            .unwrap_or(vzconfig::resources::ZramSwap::Off)
    }

    /// vz.conf's `VE_STOP_MODE="suspend"`: running VEs are checkpointed at
    /// shutdown and restored at boot (absent or `stop`: stopped, started).
    pub fn suspend_at_shutdown(&self) -> bool {
        self.global().get("VE_STOP_MODE") == Some("suspend")
    }

    /// The global configuration as last loaded.
    fn global(&self) -> config::Global {
        self.lock()
            .loaded
            .as_ref()
            .map(|l| l.global.clone())
            .unwrap_or_default()
    }

    /// The VE (other than `except`) already named `name`.
    fn name_owner(&self, name: &str, except: Option<VeId>) -> Option<VeId> {
        self.veids()
            .into_iter()
            .filter(|v| Some(*v) != except)
            .find(|v| self.info(*v).name.as_str() == name)
    }

    /// The first address of `cfg` that another VE has, and that VE.
    fn address_taken(&self, cfg: &VeConfig) -> Option<(std::net::IpAddr, VeId)> {
        cfg.ip_address
            .iter()
            .find_map(|a| self.address_owner(a.ip, cfg.veid).map(|o| (a.ip, o)))
    }

    /// The VE other than `except` that has address `ip`: in force in a
    /// running VE, or in a config.
    fn address_owner(&self, ip: std::net::IpAddr, except: VeId) -> Option<VeId> {
        let st = self.lock();
        let in_force = st
            .net
            .iter()
            .find(|(v, l)| **v != except && l.iter().any(|a| a.ip == ip))
            .map(|(v, _)| *v);
        in_force.or_else(|| {
            st.loaded.as_ref().and_then(|l| {
                l.ves
                    .iter()
                    .filter(|(v, _)| **v != except)
                    .find(|(_, c)| {
                        c.as_ref()
                            .is_ok_and(|c| c.ip_address.iter().any(|a| a.ip == ip))
                    })
                    .map(|(v, _)| *v)
            })
        })
    }

    /// The VE other than `except` that an appliance port goes to.
    fn port_owner(&self, f: &vzconfig::net::PortFwd, except: VeId) -> Option<VeId> {
        let st = self.lock();
        st.loaded.as_ref().and_then(|l| {
            l.ves
                .iter()
                .filter(|(v, _)| **v != except)
                .find(|(_, c)| {
                    c.as_ref().is_ok_and(|c| {
                        c.portfwd
                            .iter()
                            .any(|p| p.udp == f.udp && p.outer == f.outer)
                    })
                })
                .map(|(v, _)| *v)
        })
    }

    pub(super) fn config_of(&self, veid: VeId) -> Option<Result<VeConfig, Vec<Diag>>> {
        self.lock()
            .loaded
            .as_ref()
            .and_then(|l| l.ves.get(&veid).cloned())
    }

    pub(super) fn conf_path(&self, veid: VeId) -> PathBuf {
        self.layout
            .config_dir
            .join("conf")
            .join(format!("{veid}.conf"))
    }

    /// Marks `veid` busy for one operation; `None` if another holds it.
    fn begin(&self, veid: VeId) -> Option<Busy<'_>> {
        let mut st = self.lock();
        if !st.busy.insert(veid) {
            return None;
        }
        Some(Busy { m: self, veid })
    }

    /// Runs one `vzctl` operation.
    pub fn op(self: &Arc<Self>, veid: VeId, op: &VeOp) -> (Outcome, Option<VeInfo>) {
        if matches!(op, VeOp::Status) {
            return (Outcome::ok(""), Some(self.info(veid)));
        }
        let Some(busy) = self.begin(veid) else {
            return (
                Outcome::fail(
                    ExitCode::Locked,
                    format!(
                        "VE {veid} is locked: another operation on it is in progress; try again"
                    ),
                ),
                Some(self.info(veid)),
            );
        };
        let out = match op {
            VeOp::Create {
                ostemplate,
                config,
                hostname,
                name,
            } => self.create(
                veid,
                ostemplate.as_deref(),
                config.as_deref(),
                hostname.as_deref(),
                name.as_deref(),
            ),
            VeOp::Destroy => self.destroy(veid),
            VeOp::Start { force } => self.start(veid, *force),
            VeOp::Stop { fast } => self.stop(veid, *fast),
            VeOp::Restart => {
                let s = if self.is_running(veid) {
                    self.stop(veid, false)
                } else {
                    Outcome::ok("")
                };
                if s.code == ExitCode::Ok {
                    self.start(veid, false)
                } else {
                    s
                }
            }
            VeOp::Chkpnt { dumpfile } => self.chkpnt(veid, dumpfile.as_deref()),
            VeOp::Restore { dumpfile } => self.restore(veid, dumpfile.as_deref()),
            VeOp::Mount => self.mount(veid),
            VeOp::Umount => self.umount(veid),
            VeOp::Set { params, save } => self.set(veid, params, *save),
            VeOp::Status => Outcome::ok(""),
        };
        drop(busy);
        (out, Some(self.info(veid)))
    }

    pub fn is_running(&self, veid: VeId) -> bool {
        self.lock().running.contains_key(&veid)
    }

    /// VEIDs known (configured or running), ascending.
    pub fn veids(&self) -> Vec<VeId> {
        let st = self.lock();
        let mut v: BTreeSet<VeId> = st.running.keys().copied().collect();
        if let Some(l) = &st.loaded {
            v.extend(l.ves.keys().copied());
        }
        v.into_iter().collect()
    }

    fn valid_config(&self, veid: VeId) -> Result<VeConfig, Outcome> {
        self.checked_config(veid, Configs::Reread)
    }

    /// VE `veid`'s config, read again first if `configs` says so (edits on
    /// VZBOOT apply at the next start), or an outcome that says why it
    /// cannot be used.
    fn checked_config(&self, veid: VeId, configs: Configs) -> Result<VeConfig, Outcome> {
        if configs == Configs::Reread {
            self.reload();
        }
        match self.config_of(veid) {
            None => Err(Outcome::fail(
                ExitCode::ConfNotFound,
                format!(
                    "VE {veid} has no config {}: create it with `vzctl create {veid}`",
                    self.conf_path(veid).display()
                ),
            )),
            Some(Err(d)) => {
                let msg: Vec<String> = d.iter().map(|d| d.to_string()).collect();
                Err(Outcome::fail(
                    ExitCode::ConfigInvalid,
                    format!("VE {veid} has an invalid config:\n  {}", msg.join("\n  ")),
                ))
            }
            Some(Ok(c)) => Ok(c),
        }
    }
}

struct Busy<'a> {
    m: &'a Manager,
    veid: VeId,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.m.lock().busy.remove(&self.veid);
    }
}
