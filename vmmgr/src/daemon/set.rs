//! `vzctl set`: validates the changed config before anything changes,
//! applies what can change on the running VE, saves atomically.

use super::{Manager, Outcome};
use crate::config::{self, VeId};
use crate::exitcode::ExitCode;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

impl Manager {
    pub(super) fn set(&self, veid: VeId, params: &[proto::SetParam], save: bool) -> Outcome {
        let path = self.conf_path(veid);
        let Ok(original) = std::fs::read_to_string(&path) else {
            return Outcome::fail(
                ExitCode::ConfNotFound,
                format!("VE {veid} has no config {}", path.display()),
            );
        };
        // --devnodes and --devices change one entry each (`none` removes
        // it); the key keeps the others.
        // On a running VE they change what is in force there.
        let (current, _) = config::parse(&original, &path);
        let in_force = self.lock().devices.get(&veid).cloned();
        let mut lists: std::collections::BTreeMap<&str, String> = ["DEVNODES", "DEVICES"]
            .into_iter()
            .map(|k| {
                let v = match (&in_force, k) {
                    (Some((n, _)), "DEVNODES") => render_devnodes(n),
                    (Some((_, d)), _) => render_devices(d),
                    (None, _) => current
                        .iter()
                        .rev()
                        .find(|e| e.key == k)
                        .map_or(String::new(), |e| e.value.clone()),
                };
                (k, v)
            })
            .collect();
        let mut updates: Vec<(&str, Option<String>)> = Vec::new();
        // --ipadd/--ipdel change the addresses in force (or, stopped, the
        // config's); `--ipdel all` takes them all.
        let ip_params: Vec<&proto::SetParam> = params
            .iter()
            .filter(|p| matches!(p, proto::SetParam::IpAdd(_) | proto::SetParam::IpDel(_)))
            .collect();
        if !ip_params.is_empty() {
            let mut list = if self.is_running(veid) {
                self.net_addresses(veid)
            } else {
                current
                    .iter()
                    .rev()
                    .find(|e| e.key == "IP_ADDRESS")
                    .and_then(|e| vzconfig::net::parse_ip_list(&e.value).ok())
                    .unwrap_or_default()
            };
            for p in ip_params {
                match p {
                    proto::SetParam::IpAdd(v) => {
                        for a in vzconfig::net::parse_ip_list(v).unwrap_or_default() {
                            if !list.iter().any(|l| l.ip == a.ip) {
                                list.push(a);
                            }
                        }
                    }
                    proto::SetParam::IpDel(v) if v.trim() == "all" => list.clear(),
                    proto::SetParam::IpDel(v) => {
                        let gone = vzconfig::net::parse_ip_list(v).unwrap_or_default();
                        list.retain(|l| !gone.iter().any(|g| g.ip == l.ip));
                    }
                    _ => {}
                }
            }
            let v = vzconfig::net::render_ip_list(&list);
            updates.push(("IP_ADDRESS", (!v.is_empty()).then_some(v)));
        }
        // --netif_add/--netif_del and --netdev_add/--netdev_del change the
        // config's lists one entry at a time.
        let value_of = |k: &str| {
            current
                .iter()
                .rev()
                .find(|e| e.key == k)
                .map_or(String::new(), |e| e.value.clone())
        };
        let mut netif = vzconfig::net::parse_netifs(&value_of("NETIF")).unwrap_or_default();
        let mut netdev = vzconfig::net::parse_netdevs(&value_of("NETDEV")).unwrap_or_default();
        let (mut netif_changed, mut netdev_changed) = (false, false);
        for p in params {
            match p {
                proto::SetParam::NetIfAdd(v) => {
                    for n in vzconfig::net::parse_netifs(v).unwrap_or_default() {
                        netif.retain(|o| o.ifname != n.ifname);
                        netif.push(n);
                        netif_changed = true;
                    }
                }
                proto::SetParam::NetIfDel(v) => {
                    if v.as_str() == "all" {
                        netif.clear();
                    } else {
                        netif.retain(|o| o.ifname != v.as_str());
                    }
                    netif_changed = true;
                }
                proto::SetParam::NetDevAdd(v) => {
                    if !netdev.iter().any(|d| d == v.as_str()) {
                        netdev.push(v.to_string());
                    }
                    netdev_changed = true;
                }
                proto::SetParam::NetDevDel(v) => {
                    netdev.retain(|d| d != v.as_str());
                    netdev_changed = true;
                }
                _ => {}
            }
        }
        if netif_changed {
            let v = vzconfig::net::render_netifs(&netif);
            updates.push(("NETIF", (!v.is_empty()).then_some(v)));
        }
        if netdev_changed {
            let v = netdev.join(" ");
            updates.push(("NETDEV", (!v.is_empty()).then_some(v)));
        }
        for (k, v) in params
            .iter()
            .filter(|p| {
                !matches!(
                    p,
                    proto::SetParam::IpAdd(_)
                        | proto::SetParam::IpDel(_)
                        | proto::SetParam::NetIfAdd(_)
                        | proto::SetParam::NetIfDel(_)
                        | proto::SetParam::NetDevAdd(_)
                        | proto::SetParam::NetDevDel(_)
                )
            })
            .map(config::set_param_entry)
        {
            let v = match lists.get_mut(k) {
                Some(list) => {
                    *list = merge_devices(k, list, &v);
                    list.clone()
                }
                None => v,
            };
            updates.push((k, (!v.is_empty()).then_some(v)));
        }
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
                ExitCode::BadValue,
                format!("nothing changed: {}", errors.join("; ")),
            );
        };
        if let Some((ip, other)) = self.address_taken(&cfg) {
            return Outcome::fail(
                ExitCode::IpInUse,
                format!("nothing changed: {ip} is already an address of VE {other}"),
            );
        }
        if let Some((f, other)) = cfg
            .portfwd
            .iter()
            .find_map(|f| self.port_owner(f, veid).map(|o| (*f, o)))
        {
            return Outcome::fail(
                ExitCode::BadValue,
                format!(
                    "nothing changed: the appliance's {} port {} already goes to VE {other}",
                    f.proto(),
                    f.outer
                ),
            );
        }
        if let Some(n) = &cfg.name {
            if let Some(other) = self.name_owner(n, Some(veid)) {
                return Outcome::fail(
                    ExitCode::BadValue,
                    format!("--name {n:?} is already used by VE {other}"),
                );
            }
        }
        let mut applied = Vec::new();
        // Each change to the kernel leaves how to take it back: a change
        // that fails takes back the ones before it, so a refused value
        // leaves the VE (and the config file) as they were.
        let before_cfg = self.config_of(veid).and_then(|c| c.ok());
        let mut undo = Undo::default();
        if let Err(o) = self.apply_changes(
            veid,
            &cfg,
            before_cfg.as_ref(),
            in_force,
            &updates,
            &mut applied,
            &mut undo,
        ) {
            undo.run();
            return o;
        }
        if save {
            if let Err(e) = crate::fsutil::write_atomic(&path, &new_text) {
                return Outcome::fail(
                    ExitCode::SaveFailed,
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
}

/// Steps to take back, last first.
#[derive(Default)]
struct Undo<'a>(Vec<Box<dyn FnOnce() + 'a>>);

impl<'a> Undo<'a> {
    fn push(&mut self, f: impl FnOnce() + 'a) {
        self.0.push(Box::new(f));
    }

    fn run(self) {
        for f in self.0.into_iter().rev() {
            f();
        }
    }
}

impl Manager {
    /// Applies `cfg` (the config after `vzctl set`) where it differs from
    /// `before`: the disk quota (running or not), then, on a running VE,
    /// its devpts limit, devices, cgroup limits, shmall and hostname.
    #[allow(clippy::too_many_arguments)]
    fn apply_changes<'a>(
        &'a self,
        veid: VeId,
        cfg: &'a config::VeConfig,
        before: Option<&'a config::VeConfig>,
        in_force: Option<super::Devices>,
        updates: &[(&str, Option<String>)],
        applied: &mut Vec<String>,
        undo: &mut Undo<'a>,
    ) -> Result<(), Outcome> {
        let fail =
            |code, e: String| Outcome::fail(code, format!("VE {veid}: nothing changed: {e}"));
        // The disk quota (one call, all or nothing), running or not.
        let disk =
            |c: &config::VeConfig| (c.limits.diskspace, c.limits.diskinodes, c.limits.quotatime);
        if before.map(disk) != Some(disk(cfg)) {
            self.apply_quota(veid, cfg)
                .map_err(|e| fail(ExitCode::BadValue, e))?;
            if let Some(b) = before {
                undo.push(move || {
                    let _ = self.apply_quota(veid, b);
                });
            }
            applied.push("disk quota".to_owned());
        }
        let Some(init) = self.lock().running.get(&veid).map(|r| Arc::clone(&r.pidfd)) else {
            return Ok(());
        };
        let helper = &self.layout.helper;
        // NUMPTY: the VE's devpts limit.
        let ptys = |c: &config::VeConfig| super::start::pty_max(&c.limits);
        if before.map(ptys) != Some(ptys(cfg)) {
            crate::setup::procview::spawn_pty_max(helper, &init, ptys(cfg))
                .map_err(|e| fail(ExitCode::System, format!("NUMPTY: {e}")))?;
            if let Some(old) = before.map(ptys) {
                let init = Arc::clone(&init);
                undo.push(move || {
                    let _ = crate::setup::procview::spawn_pty_max(helper, &init, old);
                });
            }
            applied.push(format!("numpty {}", ptys(cfg)));
        }
        // Devices: the new program, then the nodes.
        let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
        let devs = |c: &config::VeConfig| (c.limits.devnodes.clone(), c.limits.devices.clone());
        let old_devs = in_force.or_else(|| before.map(devs)).unwrap_or_default();
        if old_devs != devs(cfg) {
            // The programs in force now, held to be put back exactly if a
            // later step fails (no rules rebuilt, no load that could fail).
            let programs =
                crate::daemon::devices::InForce::of(&cg).map_err(|e| fail(ExitCode::System, e))?;
            crate::daemon::devices::apply(&cg, &cfg.limits.devnodes, &cfg.limits.devices)
                .map_err(|e| fail(ExitCode::BadValue, e))?;
            {
                let (old, new) = (old_devs.clone(), devs(cfg));
                undo.push(move || match programs.restore() {
                    Ok(()) => {
                        self.lock().devices.insert(veid, old);
                    }
                    Err(e) => {
                        // The new rules stay in force: say so, and record them.
                        log::error!("VE {veid}: {e}; its new DEVNODES and DEVICES stay in force");
                        self.lock().devices.insert(veid, new);
                    }
                });
            }
            let owner = (cfg.local_uid, cfg.local_gid);
            crate::setup::devnodes::spawn(
                helper,
                &init,
                owner,
                &node_changes(&old_devs.0, &cfg.limits.devnodes),
            )
            .map_err(|e| fail(ExitCode::System, format!("its /dev: {e}")))?;
            {
                let init = Arc::clone(&init);
                let back = node_changes(&cfg.limits.devnodes, &old_devs.0);
                undo.push(move || {
                    let _ = crate::setup::devnodes::spawn(helper, &init, owner, &back);
                });
            }
            self.lock().devices.insert(veid, devs(cfg));
            applied.push("devices".to_owned());
        }
        // The cgroup limits (their own undo: a refused write puts the
        // files before it back).
        if before.map(|b| &b.limits) != Some(&cfg.limits) {
            let values = crate::daemon::limits::cgroup_values(veid.get(), &cfg.limits, &self.host);
            let skipped = crate::daemon::limits::apply(&cg, &values)
                .map_err(|e| fail(ExitCode::BadValue, e))?;
            crate::daemon::limits::update_guarantees(&self.layout.cgroup_root);
            if let Some(b) = before {
                let cg = cg.clone();
                undo.push(move || {
                    let v = crate::daemon::limits::cgroup_values(veid.get(), &b.limits, &self.host);
                    let _ = crate::daemon::limits::apply(&cg, &v);
                    crate::daemon::limits::update_guarantees(&self.layout.cgroup_root);
                });
            }
            applied.push("limits".to_owned());
            for s in skipped {
                log::info!("VE {veid}: limit not enforced: {s}");
            }
        }
        // SHMPAGES: an extra bound (shared memory is charged to physpages
        // anyway), so a failure is said, not fatal.
        let shm = |c: &config::VeConfig| c.limits.ubc("shmpages").and_then(|b| b.limit.get());
        if before.map(shm) != Some(shm(cfg)) {
            match set_shmall(&init, cfg.local_uid, shm(cfg)) {
                Ok(()) => applied.push("shmpages".to_owned()),
                Err(e) => log::warn!("VE {veid}: SHMPAGES as kernel.shmall: {e}"),
            }
        }
        // Addresses: both sides at once, or neither.
        let had = self.net_addresses(veid);
        let add: Vec<vzconfig::net::IpNet> = cfg
            .ip_address
            .iter()
            .filter(|a| !had.iter().any(|h| h.ip == a.ip))
            .copied()
            .collect();
        let del: Vec<vzconfig::net::IpNet> = had
            .iter()
            .filter(|h| !cfg.ip_address.iter().any(|a| a.ip == h.ip))
            .copied()
            .collect();
        if !add.is_empty() || !del.is_empty() {
            self.net_change(veid, init.as_fd(), &add, &del)
                .map_err(|e| fail(ExitCode::IpAddFailed, e))?;
            {
                let init = Arc::clone(&init);
                let (add, del) = (add.clone(), del.clone());
                undo.push(move || {
                    let _ = self.net_change(veid, init.as_fd(), &del, &add);
                });
            }
            for a in &add {
                applied.push(format!("ipadd {a}"));
            }
            for d in &del {
                applied.push(format!("ipdel {d}"));
            }
        }
        // NETIF and NETDEV: pairs made or removed, devices moved in or out.
        let ifs = |c: &config::VeConfig| -> Vec<vzconfig::net::NetIf> {
            c.netif.iter().map(|n| n.filled(veid.get())).collect()
        };
        let (old_ifs, new_ifs) = (before.map(ifs).unwrap_or_default(), ifs(cfg));
        let old_devs = before.map(|b| b.netdev.clone()).unwrap_or_default();
        if old_ifs != new_ifs || old_devs != cfg.netdev {
            self.net_links(
                veid,
                init.as_fd(),
                &old_ifs,
                &new_ifs,
                &old_devs,
                &cfg.netdev,
            )
            .map_err(|e| fail(ExitCode::System, e))?;
            {
                let (o, n, od, nd) = (
                    old_ifs.clone(),
                    new_ifs.clone(),
                    old_devs.clone(),
                    cfg.netdev.clone(),
                );
                let init = Arc::clone(&init);
                undo.push(move || {
                    let _ = self.net_links(veid, init.as_fd(), &n, &o, &nd, &od);
                });
            }
            applied.push("interfaces".to_owned());
        }
        // Forwarded ports: to the VE's first address of each family now.
        let fwd_now = super::net::fwd_targets(&cfg.portfwd, &self.net_addresses(veid));
        let fwd_before = self.lock().fwd.get(&veid).cloned().unwrap_or_default();
        if fwd_now != fwd_before {
            self.fwd_apply(veid, fwd_now)
                .map_err(|e| fail(ExitCode::BadValue, e))?;
            undo.push(move || {
                let _ = self.fwd_apply(veid, fwd_before);
            });
            applied.push("forwarded ports".to_owned());
        }
        // Its resolv.conf, hosts and hostname files, when what they say
        // changed.
        let touched = !add.is_empty()
            || !del.is_empty()
            || updates
                .iter()
                .any(|(k, _)| matches!(*k, "HOSTNAME" | "NAMESERVER" | "SEARCHDOMAIN"));
        if touched {
            // The VE's own files: written if they can be, never a reason to
            // take the other changes back (VE root decides what its /etc is).
            match self.network_files(veid, cfg, &init) {
                Ok(()) => applied.push("network files".to_owned()),
                Err(e) => log::warn!("VE {veid}: its resolv.conf, hosts, hostname: {e}"),
            }
        }
        for (k, v) in updates {
            if let ("HOSTNAME", Some(h)) = (*k, v) {
                set_hostname(&init, h)
                    .map_err(|e| fail(ExitCode::System, format!("setting its hostname: {e}")))?;
                applied.push(format!("hostname {h}"));
            }
        }
        Ok(())
    }
}

/// The nodes to add to and remove from a VE's /dev when DEVNODES goes
/// from `old` to `new`.
pub(super) fn node_changes(
    old: &[vzconfig::resources::DevNode],
    new: &[vzconfig::resources::DevNode],
) -> Vec<crate::setup::devnodes::Change> {
    let on = |l: &[vzconfig::resources::DevNode]| -> Vec<String> {
        l.iter()
            .filter(|d| d.access.any())
            .map(|d| d.path.clone())
            .collect()
    };
    let (o, n) = (on(old), on(new));
    let mut out: Vec<crate::setup::devnodes::Change> = o
        .iter()
        .filter(|p| !n.contains(p))
        .map(|p| crate::setup::devnodes::Change {
            add: false,
            path: p.clone(),
        })
        .collect();
    out.extend(
        n.iter()
            .filter(|p| !o.contains(p))
            .map(|p| crate::setup::devnodes::Change {
                add: true,
                path: p.clone(),
            }),
    );
    out
}

fn render_devnodes(l: &[vzconfig::resources::DevNode]) -> String {
    l.iter()
        .map(|d| format!("{}:{}", d.path, d.access.render()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn render_devices(l: &[vzconfig::resources::DevRule]) -> String {
    l.iter().map(|d| d.render()).collect::<Vec<_>>().join(" ")
}

/// `list` (a DEVNODES or DEVICES value) with the entries of `add` put in
/// place of the same device's, and those with access `none` removed.
fn merge_devices(key: &str, list: &str, add: &str) -> String {
    use vzconfig::resources as r;
    if key == "DEVNODES" {
        let mut all = r::parse_devnodes(&format!("{list} {add}")).unwrap_or_default();
        all.retain(|d| d.access.any());
        render_devnodes(&all)
    } else {
        let mut all = r::parse_devices(&format!("{list} {add}")).unwrap_or_default();
        all.retain(|d| d.access.any());
        render_devices(&all)
    }
}

/// Runs `f` on a short-lived thread that joined the namespace `ns` of the
/// VE whose init is `init` (IPC and UTS membership are per thread, so
/// nothing else of vmmgr is moved; the thread ends with `f`).
fn in_ve_thread<F>(
    init: &OwnedFd,
    ns: rustix::thread::ThreadNameSpaceType,
    what: &str,
    f: F,
) -> std::io::Result<()>
where
    F: FnOnce() -> std::io::Result<()> + Send + 'static,
{
    let fd = init.try_clone()?;
    std::thread::Builder::new()
        .name(format!("ve-{what}"))
        .spawn(move || -> std::io::Result<()> {
            rustix::thread::move_into_thread_name_spaces(fd.as_fd(), ns)?;
            f()
        })?
        .join()
        .map_err(|_| std::io::Error::other(format!("{what} thread panicked")))?
}

/// Sets SHMPAGES as `kernel.shmall` of the VE's IPC namespace (the VE's
/// /proc/sys is read-only to it; the value is the limit in pages, no limit
/// is the kernel's default).
pub(super) fn set_shmall(init: &OwnedFd, ve_root: u32, pages: Option<u64>) -> std::io::Result<()> {
    // The kernel's default SHMALL: ULONG_MAX - 2^24.
    let value = pages.unwrap_or(u64::MAX - (1 << 24)).to_string();
    let ns = rustix::thread::ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION;
    in_ve_thread(init, ns, "shmall", move || {
        // The namespace's sysctls let only its owner (VE root, by host uid)
        // write, capabilities aside: the thread becomes it (this thread
        // only: the raw call, not libc's all-threads one) and then ends.
        let uid = rustix::process::Uid::from_raw(ve_root);
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        // /proc/sys/kernel/shm* are the writing thread's IPC namespace's.
        std::fs::write("/proc/sys/kernel/shmall", &value)
    })
}

/// Sets the hostname of the running VE whose init is `init`.
fn set_hostname(init: &OwnedFd, hostname: &str) -> std::io::Result<()> {
    let name = hostname.to_owned();
    let ns = rustix::thread::ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME;
    in_ve_thread(init, ns, "hostname", move || {
        rustix::system::sethostname(name.as_bytes())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_takes_back_last_first() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut u = Undo::default();
        u.push(|| order.borrow_mut().push("quota"));
        u.push(|| order.borrow_mut().push("devices"));
        u.push(|| order.borrow_mut().push("limits"));
        u.run();
        assert_eq!(*order.borrow(), ["limits", "devices", "quota"]);
    }

    #[test]
    fn device_lists_merge_entry_by_entry() {
        assert_eq!(
            merge_devices("DEVNODES", "net/tun:rw fuse:r", "fuse:rw"),
            "net/tun:rw fuse:rw"
        );
        assert_eq!(
            merge_devices("DEVNODES", "net/tun:rw fuse:r", "fuse:none"),
            "net/tun:rw"
        );
        assert_eq!(
            merge_devices("DEVICES", "c:10:200:rw", "b:8:all:r"),
            "c:10:200:rw b:8:all:r"
        );
        let old = vzconfig::resources::parse_devnodes("net/tun:rw fuse:r").expect("parses");
        let new = vzconfig::resources::parse_devnodes("fuse:rw kvm:rw").expect("parses");
        let c = node_changes(&old, &new);
        assert_eq!(c.len(), 2);
        assert!(!c[0].add && c[0].path == "net/tun");
        assert!(c[1].add && c[1].path == "kvm");
    }
}
