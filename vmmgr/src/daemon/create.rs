//! `vzctl create`: a config from a sample, and an empty private area.

use super::{Manager, Outcome};
use crate::config::{self, VeId};
use crate::exitcode::ExitCode;
use std::path::Path;

impl Manager {
    pub(super) fn create(
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
                ExitCode::PrivateExists,
                format!("VE {veid} already exists ({})", path.display()),
            );
        }
        let global = self.global();
        let template = ostemplate
            .map(str::to_owned)
            .or_else(|| global.get("DEF_OSTEMPLATE").map(str::to_owned));
        let Some(template) = template else {
            return Outcome::fail(
                ExitCode::BadParam,
                "no --ostemplate given and vz.conf has no DEF_OSTEMPLATE",
            );
        };
        if !self.templates().contains(&template) {
            return Outcome::fail(
                ExitCode::TemplateNotFound,
                format!(
                    "OS template {template:?} not found; available: {}",
                    self.templates().join(", ")
                ),
            );
        }
        if let Some(h) = hostname {
            if !config::valid_hostname(h) {
                return Outcome::fail(
                    ExitCode::BadValue,
                    format!("--hostname {h:?} is not a valid hostname"),
                );
            }
        }
        if let Some(n) = name {
            if !config::valid_name(n) {
                return Outcome::fail(
                    ExitCode::BadValue,
                    format!("--name {n:?}: use letters, digits, '-', '_', '.'"),
                );
            }
            if let Some(other) = self.name_owner(n, None) {
                return Outcome::fail(
                    ExitCode::BadValue,
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
                            ExitCode::ConfNotFound,
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
        let private = self
            .layout
            .on_disk(Path::new(&format!("/vz/private/{veid}")));
        if let Err(o) = make_private(&private, true, veid) {
            return o;
        }
        if let Err(e) = crate::fsutil::write_atomic(&path, &text) {
            let _ = std::fs::remove_dir_all(&private);
            return Outcome::fail(
                ExitCode::SaveFailed,
                format!("writing {}: {e}", path.display()),
            );
        }
        self.reload();
        Outcome::ok(format!(
            "Creating VE private area ({template})\nVE private area was created"
        ))
    }
}

/// Creates a VE's private area (`upper/`, `work/`); `fresh` refuses an
/// existing one.
pub(super) fn make_private(private: &Path, fresh: bool, veid: VeId) -> Result<(), Outcome> {
    if fresh && private.exists() {
        return Err(Outcome::fail(
            ExitCode::PrivateExists,
            format!("private area {} already exists", private.display()),
        ));
    }
    if let Err(e) = std::fs::create_dir_all(private) {
        return Err(Outcome::fail(
            ExitCode::CreatePrivate,
            format!("creating {}: {e}", private.display()),
        ));
    }
    // The VE's disk quota project, before anything of the VE is in it (and,
    // for an area made before quotas, over what is there: the VE is not
    // running, nothing moves under the walk).
    match super::quota::assign(private, veid.get()) {
        Ok(0) => {}
        Ok(n) => log::info!(
            "VE {veid}: {n} files of {} put in disk quota project {veid}",
            private.display()
        ),
        Err(e) => log::warn!(
            "VE {veid}: {} cannot carry a disk quota project ({e}): DISKSPACE and DISKINODES \
             are not enforced (VZDATA needs ext4 with the project feature, mounted prjquota)",
            private.display()
        ),
    }
    for d in ["upper", "work"] {
        if let Err(e) = std::fs::create_dir_all(private.join(d)) {
            return Err(Outcome::fail(
                ExitCode::CreatePrivate,
                format!("creating {}: {e}", private.join(d).display()),
            ));
        }
    }
    Ok(())
}
