//! What `vzlist` and `vzctl status` show of a VE.

use super::Manager;
use crate::appliance::truncated as text;
use crate::config::VeId;
use proto::{Name, Text, VeInfo};

impl Manager {
    /// What `vzlist`/`status` show for a VE.
    pub fn info(&self, veid: VeId) -> VeInfo {
        let st = self.lock();
        let cfg = st.loaded.as_ref().and_then(|l| l.ves.get(&veid).cloned());
        let running = st
            .running
            .get(&veid)
            .map(|r| (r.pid, r.started.elapsed().as_secs(), r.start_time));
        let checkpoint = st.running.get(&veid).is_some_and(|r| r.checkpoint);
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
            // Stopped with its checkpoint waiting (OpenVZ's word).
            _ if self.has_dump(veid) => "suspended",
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
            ip: proto::LongText::new(),
            portfwd: Text::new(),
            checkpoint,
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
                let ips = if running.is_some() {
                    self.net_addresses(veid)
                        .iter()
                        .map(|a| a.ip.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    vzconfig::net::render_ip_list(&c.ip_address)
                };
                info.ip = proto::LongText::try_from(ips.as_str()).unwrap_or_default();
                let fwd = if running.is_some() {
                    self.fwd_in_force(veid)
                } else {
                    c.portfwd.clone()
                };
                info.portfwd = text(&vzconfig::net::render_portfwd(&fwd));
            }
            Some(Err(diags)) => {
                let msg: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                info.error = text(&msg.join("; "));
            }
            None => {}
        }
        info
    }
}
