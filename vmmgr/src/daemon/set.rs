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
        let (current, _) = config::parse(&original, &path);
        let mut lists: std::collections::BTreeMap<&str, String> = ["DEVNODES", "DEVICES"]
            .into_iter()
            .map(|k| {
                let v = current
                    .iter()
                    .rev()
                    .find(|e| e.key == k)
                    .map_or(String::new(), |e| e.value.clone());
                (k, v)
            })
            .collect();
        let mut updates: Vec<(&str, Option<String>)> = Vec::new();
        for (k, v) in params.iter().map(config::set_param_entry) {
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
        if let Some(n) = &cfg.name {
            if let Some(other) = self.name_owner(n, Some(veid)) {
                return Outcome::fail(
                    ExitCode::BadValue,
                    format!("--name {n:?} is already used by VE {other}"),
                );
            }
        }
        let mut applied = Vec::new();
        let init = self.lock().running.get(&veid).map(|r| Arc::clone(&r.pidfd));
        if let Some(init) = init {
            // Limits first: a value the kernel refuses changes nothing, not
            // the other limits, not the config file.
            let cg = crate::daemon::cgroup::dir(&self.layout.cgroup_root, veid);
            let before = self.config_of(veid).and_then(|c| c.ok()).map(|c| c.limits);
            if before.as_ref() != Some(&cfg.limits) {
                let values =
                    crate::daemon::limits::cgroup_values(veid.get(), &cfg.limits, &self.host);
                match crate::daemon::limits::apply(&cg, &values) {
                    Ok(skipped) => {
                        crate::daemon::limits::update_guarantees(&self.layout.cgroup_root);
                        applied.push("limits".to_owned());
                        for s in skipped {
                            log::warn!("VE {veid}: {s}");
                        }
                    }
                    Err(e) => {
                        return Outcome::fail(
                            ExitCode::BadValue,
                            format!("VE {veid}: nothing changed: {e}"),
                        )
                    }
                }
            }
            for (k, v) in &updates {
                if *k == "HOSTNAME" {
                    if let Some(h) = v {
                        match set_hostname(&init, h) {
                            Ok(()) => applied.push(format!("hostname {h}")),
                            Err(e) => {
                                return Outcome::fail(
                                    ExitCode::System,
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

/// `list` (a DEVNODES or DEVICES value) with the entries of `add` put in
/// place of the same device's, and those with access `none` removed.
fn merge_devices(key: &str, list: &str, add: &str) -> String {
    use vzconfig::resources as r;
    if key == "DEVNODES" {
        let mut all = r::parse_devnodes(&format!("{list} {add}")).unwrap_or_default();
        all.retain(|d| d.access.any());
        all.iter()
            .map(|d| format!("{}:{}", d.path, d.access.render()))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        let mut all = r::parse_devices(&format!("{list} {add}")).unwrap_or_default();
        all.retain(|d| d.access.any());
        all.iter().map(|d| d.render()).collect::<Vec<_>>().join(" ")
    }
}

/// Sets the hostname of the running VE whose init is `init` (from a
/// short-lived thread: UTS membership is per thread).
fn set_hostname(init: &OwnedFd, hostname: &str) -> std::io::Result<()> {
    let fd = init.try_clone()?;
    let name = hostname.to_owned();
    std::thread::Builder::new()
        .name("ve-hostname".into())
        .spawn(move || -> std::io::Result<()> {
            rustix::thread::move_into_thread_name_spaces(
                fd.as_fd(),
                rustix::thread::ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME,
            )?;
            rustix::system::sethostname(name.as_bytes())?;
            Ok(())
        })?
        .join()
        .map_err(|_| std::io::Error::other("hostname thread panicked"))?
}
