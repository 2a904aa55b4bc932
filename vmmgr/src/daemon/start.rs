//! `vzctl start`: checks, the VE's cgroup, then the `vesetup` helper
//! (`crate::setup`), and the runtime record.

use super::create::make_private;
use super::watch::reap;
use super::{Configs, Manager, Outcome};
use crate::config::{self, VeConfig, VeId};
use crate::exitcode::ExitCode;
use crate::runstate::VeRecord;
use crate::setup::Spec;
use std::sync::Arc;
use vzconfig::net::{NameServers, SearchDomains};

impl Manager {
    /// The template's lower layer for a VE of `cfg` (mounting its image if
    /// needed), and the template.
    pub(super) fn lower(
        &self,
        cfg: &VeConfig,
    ) -> Result<(std::path::PathBuf, super::templates::Template), Outcome> {
        let veid = cfg.veid;
        let Some(t) = self.layout.template(&cfg.ostemplate) else {
            return Err(Outcome::fail(
                ExitCode::TemplateNotFound,
                format!(
                    "VE {veid}: OS template {:?} not found; available: {}",
                    cfg.ostemplate,
                    self.templates().join(", ")
                ),
            ));
        };
        self.layout
            .template_lower(&t)
            .map(|l| (l, t))
            .map_err(|e| Outcome::fail(ExitCode::TemplateNotFound, format!("VE {veid}: {e}")))
    }

    pub(super) fn spec(&self, cfg: &VeConfig, lower: std::path::PathBuf) -> Spec {
        let veid = cfg.veid;
        Spec {
            veid: veid.get(),
            template: lower,
            private: self.layout.on_disk(&cfg.ve_private),
            root: self.layout.on_disk(&cfg.ve_root),
            cgroup: crate::daemon::cgroup::delegated(&crate::daemon::cgroup::dir(
                &self.layout.cgroup_root,
                veid,
            )),
            uid_base: cfg.local_uid,
            gid_base: cfg.local_gid,
            id_count: config::ID_RANGE,
            hostname: cfg.hostname.clone().unwrap_or_else(|| format!("ve{veid}")),
            policy_dir: self.layout.policy_dir.clone(),
            init: "/sbin/init".into(),
            pty_max: pty_max(&cfg.limits),
            devnodes: cfg
                .limits
                .devnodes
                .iter()
                .filter(|d| d.access.any())
                .map(|d| d.path.clone())
                .collect(),
            ipaddr: cfg.ip_address.clone(),
            nameservers: dns(cfg).0,
            searchdomains: dns(cfg).1,
            netif: cfg.netif.iter().map(|n| n.filled(veid.get())).collect(),
            netdev: cfg.netdev.clone(),
            restore: None,
            checkpoint: cfg.checkpoint,
        }
    }

    /// Starts a VE.
    pub fn start(self: &Arc<Self>, veid: VeId, force: bool) -> Outcome {
        self.start_from(veid, force, None, Configs::Reread)
    }

    /// Starts an ONBOOT VE with the configs as last read (when the boot
    /// began, or by a command since). Reading them again for each start
    /// would read every VE's config at every one of them: with a hundred
    /// ONBOOT VEs, ten thousand reads.
    pub(super) fn start_at_boot(self: &Arc<Self>, veid: VeId) -> Outcome {
        self.start_from(veid, false, None, Configs::AsLoaded)
    }

    /// Starts a VE, or with `restore` (a CRIU images directory) brings it
    /// back from its checkpoint: everything around the VE (cgroup, limits,
    /// devices, firewall, routes, record) is made as for a start.
    pub(super) fn start_from(
        self: &Arc<Self>,
        veid: VeId,
        force: bool,
        restore: Option<std::path::PathBuf>,
        configs: Configs,
    ) -> Outcome {
        if self.is_running(veid) {
            return Outcome::fail(ExitCode::Running, format!("VE {veid} is already running"));
        }
        if self.lock().mounted.contains(&veid) {
            // OpenVZ mounts before start; ours mounts inside the VE: unmount the
            // appliance-side view first, and never start on top of it (two
            // overlays on one private area corrupt it).
            let o = self.umount(veid);
            if o.code != ExitCode::Ok {
                return Outcome::fail(
                    ExitCode::Mounted,
                    format!(
                        "VE {veid} is mounted and could not be unmounted: {}",
                        o.message
                    ),
                );
            }
        }
        let cfg = match self.checked_config(veid, configs) {
            Ok(c) => c,
            Err(o) => return o,
        };
        if cfg.disabled && !force {
            return Outcome::fail(ExitCode::StartDisabled, format!("VE {veid} is disabled (DISABLED=\"yes\"): use --force, or vzctl set {veid} --disabled no --save"));
        }
        // What its interfaces need of the appliance, before anything of it
        // is made: a VE whose bridge or device is not there does not start.
        if let Err(o) = self.check_links(veid, &cfg) {
            return o;
        }
        // An address another VE holds now (given it live, unsaved) is not
        // routed to this one as well.
        if let Some((ip, other)) = self.address_taken(&cfg) {
            return Outcome::fail(
                ExitCode::IpInUse,
                format!("VE {veid}: {ip} is an address of VE {other}; not starting"),
            );
        }
        let mut steps = crate::timing::Steps::new();
        // Processes in the VE's cgroup that vmmgr does not track (it could not
        // adopt them): a second start would mount a second overlay on the same
        // private area. Refuse.
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        match crate::daemon::cgroup::populated(&cg) {
            Ok(false) => {}
            Ok(true) => {
                return Outcome::fail(
                    ExitCode::Running,
                    format!(
                        "VE {veid}: processes still run in {} though vmmgr has no record of \
                         them; not starting a second copy. Kill them with \
                         `echo 1 > {}/cgroup.kill` from the appliance shell, then start it",
                        cg.display(),
                        cg.display()
                    ),
                )
            }
            Err(e) => return Outcome::fail(ExitCode::System, format!("VE {veid}: {e}")),
        }
        steps.mark("checks");
        if let Err(o) = make_private(&self.layout.on_disk(&cfg.ve_private), false, veid) {
            return o;
        }
        steps.mark("private");
        if let Err(e) = self.apply_quota(veid, &cfg) {
            return Outcome::fail(ExitCode::System, format!("VE {veid}: {e}"));
        }
        steps.mark("quota");
        let (lower, template) = match self.lower(&cfg) {
            Ok(l) => l,
            Err(o) => return o,
        };
        steps.mark("template");
        // The halt signal of the version it runs, whatever is installed later.
        let halt = super::stop::halt_signal_of(&template);
        let fresh = restore.is_none();
        let mut spec = self.spec(&cfg, lower);
        spec.restore = restore;
        // A restored VE runs under the filter it was dumped with: its
        // dump's note says whether that one denies namespaces.
        let checkpoint = match &spec.restore {
            None => spec.checkpoint,
            Some(dir) => crate::criu::note_checkpoint(
                &std::fs::read_to_string(dir.join(crate::criu::NOTE)).unwrap_or_default(),
            ),
        };
        if let Err(e) = std::fs::create_dir_all(&spec.root) {
            return Outcome::fail(
                ExitCode::System,
                format!("creating {}: {e}", spec.root.display()),
            );
        }
        if let Err(e) = crate::daemon::cgroup::create(&cg, spec.uid_base, spec.gid_base) {
            self.cleanup_cgroup(veid);
            return Outcome::fail(ExitCode::System, format!("VE {veid}: its cgroup: {e}"));
        }
        steps.mark("cgroup");
        // Its limits, before anything of it runs.
        let values = crate::daemon::limits::cgroup_values(veid.get(), &cfg.limits, &self.host);
        match crate::daemon::limits::apply(&cg, &values) {
            Ok(skipped) => {
                for s in skipped {
                    log::info!("VE {veid}: limit not enforced: {s}");
                }
                // A VE that asks no memory guarantee leaves their sums as
                // they are (its fresh cgroup holds 0): no walk over every
                // VE's cgroup for it.
                if crate::daemon::limits::guarantees(&values) {
                    crate::daemon::limits::update_guarantees(&self.layout.cgroup_root);
                }
            }
            Err(e) => {
                self.cleanup_cgroup(veid);
                return Outcome::fail(ExitCode::System, format!("VE {veid}: its limits: {e}"));
            }
        }
        steps.mark("limits");
        // Which devices it may open, before anything of it runs (fails
        // closed: no program, no start).
        if let Err(e) =
            crate::daemon::devices::apply(&cg, &cfg.limits.devnodes, &cfg.limits.devices)
        {
            self.cleanup_cgroup(veid);
            return Outcome::fail(ExitCode::System, format!("VE {veid}: its devices: {e}"));
        }
        steps.mark("devices");
        self.netdev_prepare(veid, &cfg.netdev);
        // Its addresses and bridged ports in the firewall before its pairs
        // exist (fails closed: an interface with none sends nothing).
        if let Err(e) = self.net_prepare(veid, &cfg.ip_address, &spec.netif) {
            self.cleanup_cgroup(veid);
            return Outcome::fail(ExitCode::System, format!("VE {veid}: {e}"));
        }
        steps.mark("firewall");
        let (pid, start, fd) = match crate::setup::spawn_helper(&self.launcher, &spec) {
            crate::setup::Outcome::Started {
                pid,
                start_time,
                pidfd,
                steps: helper,
            } => {
                steps.mark("vesetup");
                for (name, d) in helper {
                    steps.add(name, d);
                }
                (pid, start_time, pidfd)
            }
            crate::setup::Outcome::Failed {
                message,
                broken_init,
            } => {
                // Whatever the helper left running (its reply may be lost
                // after the init started) must not outlive the failure.
                let _ = crate::daemon::cgroup::kill(&cg);
                self.cleanup_cgroup(veid);
                self.lock().net.insert(veid, cfg.ip_address.clone());
                self.net_down(veid);
                log::error!("VE {veid}: start failed: {message}");
                let c = if broken_init {
                    ExitCode::Broken
                } else {
                    ExitCode::System
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
            checkpoint,
        };
        let path = self.layout.state_dir.join(veid.to_string());
        if let Err(e) = crate::runstate::write(&record, &path) {
            log::error!("VE {veid}: writing {}: {e}; stopping it", path.display());
            let _ = crate::daemon::cgroup::kill(&cg);
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
            let _ = reap(&fd);
            self.cleanup_cgroup(veid);
            return Outcome::fail(
                ExitCode::System,
                format!(
                    "Unable to start VE {veid}: recording it in {}: {e}",
                    path.display()
                ),
            );
        }
        steps.mark("record");
        // The routes to its addresses and the neighbour answers: a VE
        // whose addresses cannot be routed does not run half-reachable.
        self.lock().net.insert(veid, cfg.ip_address.clone());
        let net = self.net_up(veid, &cfg.ip_address).and_then(|()| {
            let f = super::net::fwd_targets(&cfg.portfwd, &cfg.ip_address);
            self.fwd_apply(veid, f)
        });
        if let Err(e) = net {
            log::error!("VE {veid}: {e}; stopping it");
            let _ = crate::daemon::cgroup::kill(&cg);
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
            let _ = reap(&fd);
            let _ = std::fs::remove_file(&path);
            self.cleanup_cgroup(veid);
            self.net_down(veid);
            return Outcome::fail(ExitCode::System, format!("Unable to start VE {veid}: {e}"));
        }
        steps.mark("routes");
        // SHMPAGES: the VE's System V shared memory, in its IPC namespace.
        if let Some(pages) = cfg.limits.ubc("shmpages").and_then(|b| b.limit.get()) {
            if let Err(e) = super::set::set_shmall(&fd, cfg.local_uid, Some(pages)) {
                log::warn!("VE {veid}: SHMPAGES as kernel.shmall: {e}");
            }
        }
        self.lock().devices.insert(
            veid,
            (cfg.limits.devnodes.clone(), cfg.limits.devices.clone()),
        );
        self.track(veid, pid, start, fd, Some(halt), checkpoint);
        steps.mark("track");
        // The step breakdown (ms; `vesetup` is its whole run, the steps
        // after it are its parts): the start benchmarks read this line.
        log::info!(
            "VE {veid}: started, init pid {pid}, in {} ms; steps (ms): {}",
            steps.total().as_millis(),
            steps.render()
        );
        if fresh {
            // Its files change from now on: a checkpoint taken before is stale.
            self.drop_dump(veid);
        }
        Outcome::ok(format!(
            "Starting VE {veid} ...\nVE start in progress...\nVE {veid} started (init pid {pid})"
        ))
    }
}

/// A VE's NAMESERVER and SEARCHDOMAIN with `inherit` resolved to the
/// appliance's own.
pub(super) fn dns(cfg: &VeConfig) -> (Vec<std::net::IpAddr>, Vec<String>) {
    let servers = match &cfg.nameserver {
        None => Vec::new(),
        Some(NameServers::Inherit) => crate::net::uplink::appliance_resolv().0,
        Some(NameServers::List(l)) => l.clone(),
    };
    let search = match &cfg.searchdomain {
        None => Vec::new(),
        Some(SearchDomains::Inherit) => crate::net::uplink::appliance_resolv().1,
        Some(SearchDomains::List(l)) => l.clone(),
    };
    (servers, search)
}

/// The devpts `max=` of a VE: NUMPTY's limit, or the default.
pub(super) fn pty_max(l: &vzconfig::resources::Limits) -> u32 {
    use crate::setup::dev::{PTY_MAX_DEFAULT, PTY_MAX_KERNEL};
    match l.ubc("numpty").map(|b| b.limit) {
        None => PTY_MAX_DEFAULT,
        Some(vzconfig::resources::Limit::Unlimited) => PTY_MAX_KERNEL,
        Some(vzconfig::resources::Limit::Value(v)) => u32::try_from(v)
            .unwrap_or(PTY_MAX_KERNEL)
            .clamp(1, PTY_MAX_KERNEL),
    }
}
