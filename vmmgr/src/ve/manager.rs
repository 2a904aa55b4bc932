//! vmmgr's VE state: configs, running VEs, the lifecycle operations, and
//! adoption of running VEs after a vmmgr restart.

use crate::config::{self, Diag, Loaded, VeConfig, VeId};
use crate::setup::Spec;
use proto::{Name, Text, VeInfo, VeOp};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// OpenVZ exit codes (reference §1.4) used here.
pub mod code {
    pub const OK: u8 = 0;
    pub const SYSTEM: u8 = 3;
    pub const LOCKED: u8 = 9;
    pub const CONF_NOT_FOUND: u8 = 14;
    pub const BAD_PARAM: u8 = 20;
    pub const BAD_VALUE: u8 = 21;
    pub const NOT_RUNNING: u8 = 31;
    pub const RUNNING: u8 = 32;
    pub const STOP_FAILED: u8 = 33;
    pub const NOT_MOUNTED: u8 = 40;
    pub const MOUNTED: u8 = 41;
    pub const PRIVATE_EXISTS: u8 = 44;
    pub const BROKEN: u8 = 47;
    pub const CREATE_PRIVATE: u8 = 48;
    pub const MOUNT_FAILED: u8 = 50;
    pub const UMOUNT_FAILED: u8 = 51;
    pub const DELETE_FAILED: u8 = 52;
    pub const TEMPLATE_NOT_FOUND: u8 = 91;
    pub const START_DISABLED: u8 = 105;
    pub const CONFIG_INVALID: u8 = 109;
    pub const SAVE_FAILED: u8 = 139;
}

/// Where things live; a struct so tests can point it at a tempdir.
#[derive(Debug, Clone)]
pub struct Layout {
    pub config_dir: PathBuf,
    pub template_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub state_dir: PathBuf,
    pub policy_dir: PathBuf,
    pub helper: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            config_dir: "/etc/vz".into(),
            template_dir: "/usr/share/vz/template".into(),
            cgroup_root: "/sys/fs/cgroup/vz".into(),
            state_dir: "/run/vz/ve".into(),
            policy_dir: "/etc/vzpolicy".into(),
            helper: "/sbin/vesetup".into(),
        }
    }
}

/// The outcome of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: u8,
    pub message: String,
}

impl Outcome {
    fn ok(message: impl Into<String>) -> Self {
        Outcome {
            code: code::OK,
            message: message.into(),
        }
    }
    fn fail(code: u8, message: impl Into<String>) -> Self {
        Outcome {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug)]
struct Running {
    pid: i32,
    /// Start time of the init (tells it from a later process with its pid).
    start_time: u64,
    pidfd: Arc<OwnedFd>,
    started: Instant,
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
    /// VEs mounted on the appliance with `vzctl mount`.
    mounted: BTreeSet<VeId>,
}

/// The manager, shared by the server threads.
#[derive(Debug)]
pub struct Manager {
    layout: Layout,
    state: Mutex<State>,
    changed: Condvar,
}

use crate::appliance::truncated as text;

/// A template's halt signal (`HALT_SIGNAL` in `<name>.conf`), SIGUSR1 if unset.
fn halt_signal(layout: &Layout, template: &str) -> rustix::process::Signal {
    let conf = std::fs::read_to_string(layout.template_dir.join(format!("{template}.conf")))
        .unwrap_or_default();
    let (entries, _) = config::parse(&conf, Path::new("template.conf"));
    let name = entries
        .iter()
        .find(|e| e.key == "HALT_SIGNAL")
        .map(|e| e.value.clone());
    match name.as_deref() {
        Some("SIGTERM") => rustix::process::Signal::TERM,
        Some("SIGINT") => rustix::process::Signal::INT,
        Some("SIGPWR") => rustix::process::Signal::POWER,
        Some("SIGUSR2") => rustix::process::Signal::USR2,
        Some("SIGRTMIN+3") => rustix::process::Signal::from_named_raw(libc::SIGRTMIN() + 3)
            .unwrap_or(rustix::process::Signal::TERM),
        _ => rustix::process::Signal::USR1,
    }
}

use crate::runstate::{start_time, VeRecord};

impl Manager {
    pub fn new(layout: Layout) -> Arc<Manager> {
        Arc::new(Manager {
            layout,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names of the installed templates.
    pub fn templates(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.layout.template_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// (Re)reads the boot config; logs every diagnostic once.
    pub fn reload(&self) -> Vec<Diag> {
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
        st.loaded = Some(loaded);
        diags
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

    fn config_of(&self, veid: VeId) -> Option<Result<VeConfig, Vec<Diag>>> {
        self.lock()
            .loaded
            .as_ref()
            .and_then(|l| l.ves.get(&veid).cloned())
    }

    fn conf_path(&self, veid: VeId) -> PathBuf {
        self.layout
            .config_dir
            .join("conf")
            .join(format!("{veid}.conf"))
    }

    /// Adopts VEs left running by a previous vmmgr (their state files in /run).
    pub fn adopt(self: &Arc<Self>) {
        let Ok(dir) = std::fs::read_dir(&self.layout.state_dir) else {
            return;
        };
        for e in dir.flatten() {
            let path = e.path();
            let Some(veid) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<VeId>().ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let Some(VeRecord {
                pid,
                start_time: st,
            }) = VeRecord::parse(&text)
            else {
                log::warn!(
                    "VE {veid}: {} is not a runtime record; removing it",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let Some(p) = rustix::process::Pid::from_raw(pid) else {
                continue;
            };
            // The pidfd first, then the start time: if it still matches, the fd
            // refers to the init the record names.
            let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
                Ok(fd) => fd,
                Err(e) => {
                    log::info!("VE {veid}: init {pid} is gone ({e}); forgetting it");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            if start_time(pid) != Some(st) {
                log::info!("VE {veid}: init {pid} is gone; forgetting it");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            log::info!("VE {veid}: adopted running init, pid {pid}");
            self.track(veid, pid, st, fd);
        }
    }
    fn track(self: &Arc<Self>, veid: VeId, pid: i32, start_time: u64, fd: OwnedFd) {
        let fd = Arc::new(fd);
        self.lock().running.insert(
            veid,
            Running {
                pid,
                start_time,
                pidfd: Arc::clone(&fd),
                started: Instant::now(),
            },
        );
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name(format!("ve-{veid}"))
            .spawn(move || {
                let mut fds = [rustix::event::PollFd::new(
                    &*fd,
                    rustix::event::PollFlags::IN,
                )];
                loop {
                    match rustix::event::poll(&mut fds, None) {
                        Ok(_) => break,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(_) => break,
                    }
                }
                // vmmgr is the child subreaper of the VE inits it started:
                // reap ours and learn how it ended (an adopted init belongs to
                // the appliance's init, and its status is not ours to read).
                let how = reap(&fd);
                me.exited(veid, pid, how);
            });
    }

    fn exited(self: &Arc<Self>, veid: VeId, pid: i32, how: InitExit) {
        let mut st = self.lock();
        let mut restart = false;
        if st.running.get(&veid).is_some_and(|r| r.pid == pid) {
            st.running.remove(&veid);
            let stopping = st.stopping.remove(&veid);
            restart = how == InitExit::Reboot && !stopping;
            log::info!("VE {veid}: init (pid {pid}) exited ({how:?}); VE stopped");
            let record = self.layout.state_dir.join(format!("{veid}"));
            if let Err(e) = std::fs::remove_file(&record) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::error!("VE {veid}: removing {}: {e}", record.display());
                }
            }
        }
        drop(st);
        self.cleanup_cgroup(veid);
        self.changed.notify_all();
        if restart {
            // `reboot` inside the VE: OpenVZ starts it again (`halt` stops it).
            let me = Arc::clone(self);
            let _ = std::thread::Builder::new()
                .name(format!("ve-{veid}-reboot"))
                .spawn(move || {
                    let Some(busy) = me.begin(veid) else {
                        log::warn!("VE {veid}: rebooted, but another operation holds it");
                        return;
                    };
                    let o = me.start(veid, false);
                    drop(busy);
                    log::info!("VE {veid}: reboot: {}", o.message.replace('\n', "; "));
                });
        }
    }

    fn cleanup_cgroup(&self, veid: VeId) {
        let cg = super::cgroup::dir(&self.layout.cgroup_root, veid);
        // The kernel empties it as the last processes are reaped.
        if let Err(e) = super::cgroup::remove(&cg, Duration::from_secs(10)) {
            log::warn!("VE {veid}: {e}");
        }
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
                    code::LOCKED,
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
                if s.code == code::OK {
                    self.start(veid, false)
                } else {
                    s
                }
            }
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

    /// What `vzlist`/`status` show for a VE.
    pub fn info(&self, veid: VeId) -> VeInfo {
        let st = self.lock();
        let cfg = st.loaded.as_ref().and_then(|l| l.ves.get(&veid).cloned());
        let running = st
            .running
            .get(&veid)
            .map(|r| (r.pid, r.started.elapsed().as_secs(), r.start_time));
        let mounted = st.mounted.contains(&veid);
        drop(st);
        let numproc = running.map(|_| {
            std::fs::read_to_string(
                self.layout
                    .cgroup_root
                    .join(veid.to_string())
                    .join("pids.current"),
            )
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
        });
        let status = match (&cfg, running, mounted) {
            (Some(Err(_)), _, _) => "invalid",
            (_, Some(_), _) => "running",
            (_, None, true) => "mounted",
            _ => "stopped",
        };
        let mut info = VeInfo {
            veid: veid.get(),
            exists: cfg.is_some(),
            status: text(status),
            mounted: mounted || running.is_some(),
            name: Name::new(),
            hostname: Name::new(),
            description: Text::new(),
            ostemplate: Name::new(),
            onboot: None,
            bootorder: 0,
            disabled: false,
            numproc,
            init_pid: running.map_or(0, |r| r.0 as u32),
            init_start: running.map_or(0, |r| r.2),
            uptime_s: running.map_or(0, |r| r.1),
            error: Text::new(),
            private: Text::new(),
            root: Text::new(),
        };
        match cfg {
            Some(Ok(c)) => {
                info.name = text(c.name.as_deref().unwrap_or(""));
                info.hostname = text(c.hostname.as_deref().unwrap_or(""));
                info.description = text(c.description.as_deref().unwrap_or(""));
                info.ostemplate = text(&c.ostemplate);
                info.onboot = Some(c.onboot);
                info.bootorder = c.bootorder;
                info.disabled = c.disabled;
                info.private = text(&c.ve_private.to_string_lossy());
                info.root = text(&c.ve_root.to_string_lossy());
            }
            Some(Err(diags)) => {
                let msg: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                info.error = text(&msg.join("; "));
            }
            None => {}
        }
        info
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
        // Configs are read again so edits on VZBOOT apply at the next start.
        self.reload();
        match self.config_of(veid) {
            None => Err(Outcome::fail(
                code::CONF_NOT_FOUND,
                format!(
                    "VE {veid} has no config {}: create it with `vzctl create {veid}`",
                    self.conf_path(veid).display()
                ),
            )),
            Some(Err(d)) => {
                let msg: Vec<String> = d.iter().map(|d| d.to_string()).collect();
                Err(Outcome::fail(
                    code::CONFIG_INVALID,
                    format!("VE {veid} has an invalid config:\n  {}", msg.join("\n  ")),
                ))
            }
            Some(Ok(c)) => Ok(c),
        }
    }

    fn create(
        &self,
        veid: VeId,
        ostemplate: Option<&str>,
        sample: Option<&str>,
        hostname: Option<&str>,
        name: Option<&str>,
    ) -> Outcome {
        self.reload();
        let path = self.conf_path(veid);
        if path.exists() {
            return Outcome::fail(
                code::PRIVATE_EXISTS,
                format!("VE {veid} already exists ({})", path.display()),
            );
        }
        let global = self.global();
        let template = ostemplate
            .map(str::to_owned)
            .or_else(|| global.get("DEF_OSTEMPLATE").map(str::to_owned));
        let Some(template) = template else {
            return Outcome::fail(
                code::BAD_PARAM,
                "no --ostemplate given and vz.conf has no DEF_OSTEMPLATE",
            );
        };
        if !self.templates().contains(&template) {
            return Outcome::fail(
                code::TEMPLATE_NOT_FOUND,
                format!(
                    "OS template {template:?} not found; available: {}",
                    self.templates().join(", ")
                ),
            );
        }
        if let Some(h) = hostname {
            if !config::valid_hostname(h) {
                return Outcome::fail(
                    code::BAD_VALUE,
                    format!("--hostname {h:?} is not a valid hostname"),
                );
            }
        }
        if let Some(n) = name {
            if !config::valid_name(n) {
                return Outcome::fail(
                    code::BAD_VALUE,
                    format!("--name {n:?}: use letters, digits, '-', '_', '.'"),
                );
            }
            if let Some(other) = self.name_owner(n, None) {
                return Outcome::fail(
                    code::BAD_VALUE,
                    format!("--name {n:?} is already used by VE {other}"),
                );
            }
        }
        let sample_name = sample
            .map(str::to_owned)
            .or_else(|| global.get("CONFIGFILE").map(str::to_owned));
        let mut text = String::new();
        if let Some(s) = &sample_name {
            let sp = self
                .layout
                .config_dir
                .join("conf")
                .join(format!("ve-{s}.conf-sample"));
            match std::fs::read_to_string(&sp) {
                Ok(t) => text.push_str(&t),
                Err(e) => {
                    if sample.is_some() {
                        return Outcome::fail(
                            code::CONF_NOT_FOUND,
                            format!("--config {s}: cannot read {}: {e}", sp.display()),
                        );
                    }
                }
            }
        }
        let mut updates = vec![("OSTEMPLATE", Some(template.clone()))];
        if let Some(s) = &sample_name {
            updates.push(("ORIGIN_SAMPLE", Some(s.clone())));
        }
        if let Some(h) = hostname {
            updates.push(("HOSTNAME", Some(h.to_owned())));
        }
        if let Some(n) = name {
            updates.push(("NAME", Some(n.to_owned())));
        }
        let text = config::render_update(&text, &updates);
        let private = PathBuf::from(format!("/vz/private/{veid}"));
        if let Err(o) = make_private(&private, true) {
            return o;
        }
        if let Err(e) = crate::fsutil::write_atomic(&path, &text) {
            let _ = std::fs::remove_dir_all(&private);
            return Outcome::fail(
                code::SAVE_FAILED,
                format!("writing {}: {e}", path.display()),
            );
        }
        self.reload();
        Outcome::ok(format!(
            "Creating VE private area ({template})\nVE private area was created"
        ))
    }

    fn destroy(&self, veid: VeId) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(
                code::RUNNING,
                format!("VE {veid} is running: stop it first (vzctl stop {veid})"),
            );
        }
        if self.lock().mounted.contains(&veid) {
            return Outcome::fail(
                code::MOUNTED,
                format!("VE {veid} is mounted: unmount it first (vzctl umount {veid})"),
            );
        }
        let path = self.conf_path(veid);
        let configured = match self.config_of(veid) {
            Some(Ok(c)) => c.ve_private,
            _ => PathBuf::from(format!("/vz/private/{veid}")),
        };
        // Only ever a VE private area under /vz/private, and never through a
        // symlink (remove_dir_all does not follow links inside either).
        let private = match config::confine_private(&configured) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::fail(
                    code::DELETE_FAILED,
                    format!(
                        "VE {veid}: refusing to remove {}: {e}; only a private area under \
                         /vz/private is ever removed",
                        configured.display()
                    ),
                )
            }
        };
        let is_dir = std::fs::symlink_metadata(&private).map(|m| m.file_type());
        if is_dir.as_ref().is_ok_and(|t| !t.is_dir()) {
            return Outcome::fail(
                code::DELETE_FAILED,
                format!(
                    "VE {veid}: {} is not a directory (a symlink?): refusing to remove it",
                    private.display()
                ),
            );
        }
        if super::cgroup::populated(&super::cgroup::dir(&self.layout.cgroup_root, veid))
            .unwrap_or(true)
        {
            return Outcome::fail(
                code::RUNNING,
                format!("VE {veid}: processes still run in its cgroup: not removing its files"),
            );
        }
        if !path.exists() && !private.exists() {
            return Outcome::fail(code::CONF_NOT_FOUND, format!("VE {veid} does not exist"));
        }
        if private.exists() {
            if let Err(e) = std::fs::remove_dir_all(&private) {
                return Outcome::fail(
                    code::DELETE_FAILED,
                    format!("removing {}: {e}", private.display()),
                );
            }
        }
        let mut destroyed = path.clone().into_os_string();
        destroyed.push(".destroyed");
        if path.exists() {
            if let Err(e) = std::fs::rename(&path, &destroyed) {
                return Outcome::fail(
                    code::DELETE_FAILED,
                    format!("moving {} aside: {e}", path.display()),
                );
            }
        }
        self.reload();
        Outcome::ok("Destroying VE private area\nVE private area was destroyed")
    }

    fn spec(&self, cfg: &VeConfig) -> Spec {
        let veid = cfg.veid;
        Spec {
            veid: veid.get(),
            template: self.layout.template_dir.join(&cfg.ostemplate),
            private: cfg.ve_private.clone(),
            root: cfg.ve_root.clone(),
            cgroup: self.layout.cgroup_root.join(veid.to_string()),
            uid_base: cfg.local_uid,
            gid_base: cfg.local_gid,
            id_count: config::ID_RANGE,
            hostname: cfg.hostname.clone().unwrap_or_else(|| format!("ve{veid}")),
            policy_dir: self.layout.policy_dir.clone(),
            init: "/sbin/init".into(),
        }
    }

    /// Starts a VE.
    pub fn start(self: &Arc<Self>, veid: VeId, force: bool) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(code::RUNNING, format!("VE {veid} is already running"));
        }
        if self.lock().mounted.contains(&veid) {
            // OpenVZ mounts before start; ours mounts inside the VE: unmount the
            // appliance-side view first.
            let _ = self.umount(veid);
        }
        let cfg = match self.valid_config(veid) {
            Ok(c) => c,
            Err(o) => return o,
        };
        if cfg.disabled && !force {
            return Outcome::fail(code::START_DISABLED, format!("VE {veid} is disabled (DISABLED=\"yes\"): use --force, or vzctl set {veid} --disabled no --save"));
        }
        let t0 = Instant::now();
        if let Err(o) = make_private(&cfg.ve_private, false) {
            return o;
        }
        let spec = self.spec(&cfg);
        if let Err(e) = std::fs::create_dir_all(&spec.root) {
            return Outcome::fail(
                code::SYSTEM,
                format!("creating {}: {e}", spec.root.display()),
            );
        }
        // Processes in the VE's cgroup that vmmgr does not track (it could not
        // adopt them): a second start would mount a second overlay on the same
        // private area. Refuse.
        match super::cgroup::populated(&spec.cgroup) {
            Ok(false) => {}
            Ok(true) => {
                return Outcome::fail(
                    code::RUNNING,
                    format!(
                        "VE {veid}: processes still run in {} though vmmgr has no record of \
                         them; not starting a second copy. Kill them with \
                         `echo 1 > {}/cgroup.kill` from the appliance shell, then start it",
                        spec.cgroup.display(),
                        spec.cgroup.display()
                    ),
                )
            }
            Err(e) => return Outcome::fail(code::SYSTEM, format!("VE {veid}: {e}")),
        }
        if let Err(e) = super::cgroup::create(&spec.cgroup, spec.uid_base, spec.gid_base) {
            self.cleanup_cgroup(veid);
            return Outcome::fail(code::SYSTEM, format!("VE {veid}: its cgroup: {e}"));
        }
        let (pid, start, fd) = match crate::setup::spawn_helper(&self.layout.helper, &spec) {
            crate::setup::Outcome::Started {
                pid,
                start_time,
                pidfd,
            } => (pid, start_time, pidfd),
            crate::setup::Outcome::Failed {
                message,
                broken_init,
            } => {
                self.cleanup_cgroup(veid);
                log::error!("VE {veid}: start failed: {message}");
                let c = if broken_init {
                    code::BROKEN
                } else {
                    code::SYSTEM
                };
                return Outcome::fail(c, format!("Unable to start VE {veid}: {message}"));
            }
        };
        // Without its record a restarted vmmgr could not adopt the VE, and a
        // later start would put a second overlay on the same private area:
        // a VE that cannot be recorded does not run.
        let record = VeRecord {
            pid,
            start_time: start,
        };
        let path = self.layout.state_dir.join(veid.to_string());
        if let Err(e) = record.write(&path) {
            log::error!("VE {veid}: writing {}: {e}; stopping it", path.display());
            let cg = self.layout.cgroup_root.join(veid.to_string());
            let _ = super::cgroup::kill(&cg);
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
            let _ = reap(&fd);
            self.cleanup_cgroup(veid);
            return Outcome::fail(
                code::SYSTEM,
                format!(
                    "Unable to start VE {veid}: recording it in {}: {e}",
                    path.display()
                ),
            );
        }
        self.track(veid, pid, start, fd);
        log::info!(
            "VE {veid}: started, init pid {pid}, in {} ms",
            t0.elapsed().as_millis()
        );
        Outcome::ok(format!(
            "Starting VE {veid} ...\nVE start in progress...\nVE {veid} started (init pid {pid})"
        ))
    }

    /// Stops a VE: the template's halt signal to its init, then `cgroup.kill`
    /// after STOP_TIMEOUT.
    pub fn stop(&self, veid: VeId, fast: bool) -> Outcome {
        let Some((pidfd, pid)) = self
            .lock()
            .running
            .get(&veid)
            .map(|r| (Arc::clone(&r.pidfd), r.pid))
        else {
            return Outcome::fail(code::NOT_RUNNING, format!("VE {veid} is not running"));
        };
        let cfg = self.config_of(veid).and_then(|c| c.ok());
        let timeout = Duration::from_secs(u64::from(cfg.as_ref().map_or(120, |c| c.stop_timeout)));
        let template = cfg
            .as_ref()
            .map_or("busybox".to_owned(), |c| c.ostemplate.clone());
        let cg = self.layout.cgroup_root.join(veid.to_string());
        self.lock().stopping.insert(veid);
        if !fast {
            let sig = halt_signal(&self.layout, &template);
            if let Err(e) = rustix::process::pidfd_send_signal(pidfd.as_fd(), sig) {
                log::warn!("VE {veid}: signalling init {pid}: {e}");
            }
            if self.wait_stopped(veid, pid, timeout) {
                return Outcome::ok(format!("Stopping VE {veid} ...\nVE was stopped"));
            }
            log::warn!(
                "VE {veid}: still running {} s after the halt signal; killing it",
                timeout.as_secs()
            );
        }
        if let Err(e) = super::cgroup::kill(&cg) {
            log::warn!("VE {veid}: {e}");
            let _ =
                rustix::process::pidfd_send_signal(pidfd.as_fd(), rustix::process::Signal::KILL);
        }
        if self.wait_stopped(veid, pid, Duration::from_secs(10)) {
            Outcome::ok(format!("Stopping VE {veid} ...\nVE was stopped"))
        } else {
            Outcome::fail(
                code::STOP_FAILED,
                format!("Unable to stop VE {veid}: init {pid} survived cgroup.kill"),
            )
        }
    }

    fn wait_stopped(&self, veid: VeId, pid: i32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.running.get(&veid).is_none_or(|r| r.pid != pid) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn mount(&self, veid: VeId) -> Outcome {
        if self.is_running(veid) || self.lock().mounted.contains(&veid) {
            return Outcome::fail(code::MOUNTED, format!("VE {veid} is already mounted"));
        }
        let cfg = match self.valid_config(veid) {
            Ok(c) => c,
            Err(o) => return o,
        };
        if let Err(o) = make_private(&cfg.ve_private, false) {
            return o;
        }
        let _ = std::fs::create_dir_all(&cfg.ve_root);
        // On the appliance side files are seen unshifted: VE root's files as
        // root, as OpenVZ administrators see /vz/root/<VEID>. So a setuid file
        // made in the VE would be setuid root here: nosuid, and nodev.
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.layout.template_dir.join(&cfg.ostemplate).display(),
            cfg.ve_private.join("upper").display(),
            cfg.ve_private.join("work").display()
        );
        let c = std::ffi::CString::new(opts).unwrap_or_default();
        match rustix::mount::mount(
            "overlay",
            &cfg.ve_root,
            "overlay",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(c.as_c_str()),
        ) {
            Ok(()) => {
                self.lock().mounted.insert(veid);
                Outcome::ok(format!("VE {veid} is mounted at {}", cfg.ve_root.display()))
            }
            Err(e) => Outcome::fail(
                code::MOUNT_FAILED,
                format!(
                    "Unable to mount VE {veid} at {}: {e}",
                    cfg.ve_root.display()
                ),
            ),
        }
    }

    fn umount(&self, veid: VeId) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(
                code::RUNNING,
                format!("VE {veid} is running: stop it to unmount"),
            );
        }
        if !self.lock().mounted.contains(&veid) {
            return Outcome::fail(code::NOT_MOUNTED, format!("VE {veid} is not mounted"));
        }
        let root = self
            .config_of(veid)
            .and_then(|c| c.ok())
            .map_or(PathBuf::from(format!("/vz/root/{veid}")), |c| c.ve_root);
        match rustix::mount::unmount(&root, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => {
                self.lock().mounted.remove(&veid);
                Outcome::ok(format!("VE {veid} is unmounted"))
            }
            Err(e) => Outcome::fail(
                code::UMOUNT_FAILED,
                format!(
                    "Unable to unmount {}: {e} (is a shell using it?)",
                    root.display()
                ),
            ),
        }
    }

    fn set(&self, veid: VeId, params: &[(Name, Text)], save: bool) -> Outcome {
        let path = self.conf_path(veid);
        let Ok(original) = std::fs::read_to_string(&path) else {
            return Outcome::fail(
                code::CONF_NOT_FOUND,
                format!("VE {veid} has no config {}", path.display()),
            );
        };
        let updates: Vec<(&str, Option<String>)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), (!v.is_empty()).then(|| v.to_string())))
            .collect();
        let new_text = config::render_update(&original, &updates);
        // Validate the result before anything changes.
        let (entries, mut diags) = config::parse(&new_text, &path);
        let global = self.global();
        let (cfg, d) = config::validate_ve(veid, &entries, &global, &self.templates(), &path);
        diags.extend(d);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == config::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        let Some(cfg) = cfg.filter(|_| errors.is_empty()) else {
            return Outcome::fail(
                code::BAD_VALUE,
                format!("nothing changed: {}", errors.join("; ")),
            );
        };
        if let Some(n) = &cfg.name {
            if let Some(other) = self.name_owner(n, Some(veid)) {
                return Outcome::fail(
                    code::BAD_VALUE,
                    format!("--name {n:?} is already used by VE {other}"),
                );
            }
        }
        let mut applied = Vec::new();
        let init = self.lock().running.get(&veid).map(|r| Arc::clone(&r.pidfd));
        if let Some(init) = init {
            for (k, v) in &updates {
                if *k == "HOSTNAME" {
                    if let Some(h) = v {
                        match super::join::set_hostname(&init, h) {
                            Ok(()) => applied.push(format!("hostname {h}")),
                            Err(e) => {
                                return Outcome::fail(
                                    code::SYSTEM,
                                    format!("setting the hostname of running VE {veid}: {e}"),
                                )
                            }
                        }
                    }
                }
            }
        }
        if save {
            if let Err(e) = crate::fsutil::write_atomic(&path, &new_text) {
                return Outcome::fail(
                    code::SAVE_FAILED,
                    format!("writing {}: {e}", path.display()),
                );
            }
            self.reload();
            return Outcome::ok("Saved parameters for VE ".to_owned() + &veid.to_string());
        }
        if applied.is_empty() {
            Outcome::ok("nothing to apply to the running VE; use --save to keep the values")
        } else {
            Outcome::ok(format!("applied: {}", applied.join(", ")))
        }
    }

    /// Stops every running VE, in reverse boot order (lower BOOTORDER first),
    /// equal ones in parallel. Called when the appliance shuts down.
    pub fn shutdown(self: &Arc<Self>) {
        let mut groups: BTreeMap<u32, Vec<VeId>> = BTreeMap::new();
        for veid in self.lock().running.keys().copied().collect::<Vec<_>>() {
            let order = self
                .config_of(veid)
                .and_then(|c| c.ok())
                .map_or(0, |c| c.bootorder);
            groups.entry(order).or_default().push(veid);
        }
        self.in_groups(groups.into_values(), |me, veid| {
            let o = me.stop(veid, false);
            log::info!("VE {veid}: {}", o.message.replace('\n', "; "));
        });
    }

    /// Runs `f` on every VE, group after group, the VEs of a group in parallel.
    /// Returns how many VEs it ran on.
    fn in_groups(
        self: &Arc<Self>,
        groups: impl IntoIterator<Item = Vec<VeId>>,
        f: fn(&Arc<Self>, VeId),
    ) -> usize {
        let mut count = 0;
        for group in groups {
            let handles: Vec<_> = group
                .into_iter()
                .map(|veid| {
                    let me = Arc::clone(self);
                    std::thread::spawn(move || f(&me, veid))
                })
                .collect();
            count += handles.len();
            for h in handles {
                let _ = h.join();
            }
        }
        count
    }

    /// Starts the ONBOOT VEs: higher BOOTORDER first, equal ones in parallel.
    pub fn boot(self: &Arc<Self>) {
        let mut groups: BTreeMap<std::cmp::Reverse<u32>, Vec<VeId>> = BTreeMap::new();
        {
            let st = self.lock();
            let Some(l) = &st.loaded else { return };
            for (veid, cfg) in &l.ves {
                if let Ok(c) = cfg {
                    if c.onboot && !c.disabled && !st.running.contains_key(veid) {
                        groups
                            .entry(std::cmp::Reverse(c.bootorder))
                            .or_default()
                            .push(*veid);
                    }
                }
            }
        }
        let t0 = Instant::now();
        let count = self.in_groups(groups.into_values(), |me, veid| {
            let Some(busy) = me.begin(veid) else { return };
            let o = me.start(veid, false);
            drop(busy);
            if o.code != code::OK {
                log::error!("VE {veid}: ONBOOT start failed: {}", o.message);
            }
        });
        if count > 0 {
            log::info!(
                "boot: {count} ONBOOT VEs handled in {} ms",
                t0.elapsed().as_millis()
            );
        }
    }
}

/// How a VE init ended, as far as vmmgr can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitExit {
    /// `reboot` inside the VE: the kernel ends a PID namespace's init with
    /// SIGHUP for a restart (SIGINT for halt and power-off).
    Reboot,
    /// Any other end (halt, a stop, a crash).
    Stopped,
    /// Not our child (adopted after a vmmgr restart): status unknown.
    Unknown,
}

/// Reaps the VE init behind `pidfd` (a child of vmmgr, which is the child
/// subreaper of the VE inits it starts) and says how it ended.
pub fn reap(pidfd: &OwnedFd) -> InitExit {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                return if st.terminating_signal() == Some(libc::SIGHUP) {
                    InitExit::Reboot
                } else {
                    InitExit::Stopped
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return InitExit::Unknown,
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

/// Creates a VE's private area (`upper/`, `work/`); `fresh` refuses an
/// existing one.
fn make_private(private: &Path, fresh: bool) -> Result<(), Outcome> {
    if fresh && private.exists() {
        return Err(Outcome::fail(
            code::PRIVATE_EXISTS,
            format!("private area {} already exists", private.display()),
        ));
    }
    for d in ["upper", "work"] {
        if let Err(e) = std::fs::create_dir_all(private.join(d)) {
            return Err(Outcome::fail(
                code::CREATE_PRIVATE,
                format!("creating {}: {e}", private.join(d).display()),
            ));
        }
    }
    Ok(())
}
