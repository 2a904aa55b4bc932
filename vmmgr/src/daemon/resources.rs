//! What `vzctl ubc`, `vzlist` and a VE's own `/proc` show of its resources:
//! beancounters from the kernel's counters with the config's limits, the
//! disk quota, and a load average sampled every
//! [`beancounters::SAMPLE_EVERY`] (or more, see
//! [`beancounters::next_sample`]) by [`Manager::sample`].

use super::beancounters::{self, Counters, LoadAvg, Scope};
use super::Manager;
use crate::config::VeId;
use proto::{Quota, Resources, UBC_COUNT};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest held values seen and the load average of a running VE.
#[derive(Debug, Clone, Default)]
pub(super) struct Sampled {
    pub seen: [u64; UBC_COUNT],
    pub load: LoadAvg,
    /// Threads running or waiting for I/O at the last sample.
    pub runnable: u32,
    /// failcnt at the last sample (a rise is logged).
    pub failcnt: [u64; UBC_COUNT],
}

impl Manager {
    /// The kernel's counters of running VE `veid` (None when stopped).
    fn counters(&self, veid: VeId, scope: Scope) -> Option<Counters> {
        let pid = self.lock().running.get(&veid).map(|r| r.pid)?;
        let cg = super::cgroup::dir(&self.layout.cgroup_root, veid);
        Some(beancounters::read_counters(
            &cg,
            Path::new("/proc"),
            Some(pid),
            scope,
        ))
    }

    /// Samples every running VE, `dt` after the last sample: maxheld (of
    /// the counters `scope` reads) and the load average.
    pub fn sample(&self, scope: Scope, dt: Duration) {
        let running: Vec<VeId> = self.lock().running.keys().copied().collect();
        for veid in running {
            if let Some(c) = self.counters(veid, scope) {
                let mut st = self.lock();
                let s = st.sampled.entry(veid).or_default();
                for (seen, held) in s.seen.iter_mut().zip(c.held) {
                    *seen = (*seen).max(held);
                }
                s.load.update(c.runnable, dt);
                s.runnable = c.runnable;
                // Say which VE hit which limit, once per rise.
                for (i, (was, now)) in s.failcnt.iter_mut().zip(c.failcnt).enumerate() {
                    if now > *was {
                        let what = proto::UBC_NAMES[i];
                        let oom = if what == "oomguarpages" {
                            " (processes of this VE were killed: out of memory within its limit)"
                        } else {
                            ""
                        };
                        log::warn!(
                            "VE {veid}: hit its {what} limit {} time(s) since the last check{oom}",
                            now - *was
                        );
                    }
                    *was = now;
                }
            }
        }
    }

    /// Starts the sampling thread (beancounters, and the appliance's DNS
    /// for the VEs that inherit it).
    pub fn start_sampler(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                me.follow_dns();
                let mut wait = beancounters::SAMPLE_EVERY;
                let (mut last, mut whole, mut drops) =
                    (Instant::now(), Instant::now(), Instant::now());
                loop {
                    std::thread::sleep(wait);
                    let t0 = Instant::now();
                    let scope = if t0.duration_since(whole) >= beancounters::WHOLE_EVERY {
                        whole = t0;
                        Scope::Whole
                    } else {
                        Scope::Cheap
                    };
                    me.sample(scope, t0.duration_since(last));
                    last = t0;
                    me.follow_dns();
                    // The drop counters cost an nft run: every 30 s.
                    if t0.duration_since(drops) >= Duration::from_secs(30) {
                        drops = t0;
                        me.report_drops();
                    }
                    wait = beancounters::next_sample(t0.elapsed());
                }
            });
    }

    /// VE `veid`'s cgroup directory.
    pub fn cgroup_dir(&self, veid: VeId) -> std::path::PathBuf {
        super::cgroup::dir(&self.layout.cgroup_root, veid)
    }

    /// Threads of VE `veid` running at the last sample.
    pub fn runnable(&self, veid: VeId) -> u64 {
        self.lock()
            .sampled
            .get(&veid)
            .map_or(0, |s| u64::from(s.runnable))
    }

    /// The load average of VE `veid`, in hundredths.
    pub fn laverage(&self, veid: VeId) -> [u32; 3] {
        self.lock()
            .sampled
            .get(&veid)
            .map_or([0; 3], |s| s.load.hundredths())
    }

    /// VE `veid`'s resources now.
    pub fn resources(&self, veid: VeId) -> Resources {
        let cfg = self.config_of(veid);
        let mut limits = match &cfg {
            Some(Ok(c)) => c.limits.clone(),
            _ => vzconfig::resources::Limits::default(),
        };
        let devices = self.lock().devices.get(&veid).cloned();
        if let Some((n, d)) = devices {
            limits.devnodes = n;
            limits.devices = d;
        }
        let counters = self.counters(veid, Scope::Whole);
        let seen = {
            let mut st = self.lock();
            let s = st.sampled.entry(veid).or_default();
            if let Some(c) = &counters {
                for (seen, held) in s.seen.iter_mut().zip(c.held) {
                    *seen = (*seen).max(held);
                }
            }
            s.seen
        };
        let rows = beancounters::rows(counters.as_ref(), &limits, &seen);
        let unl = proto::Ubc::UNLIMITED;
        let quota = |bl: Option<vzconfig::resources::BarrierLimit>, usage: u64| Quota {
            usage,
            soft: bl.and_then(|b| b.barrier.get()).unwrap_or(unl),
            hard: bl.and_then(|b| b.limit.get()).unwrap_or(unl),
        };
        let (space, inodes) = self.disk_usage(veid).unwrap_or((0, 0));
        let list = |v: &Option<Vec<u32>>| {
            crate::appliance::truncated(
                &v.as_ref()
                    .map_or("all".to_owned(), |c| vzconfig::resources::render_cpulist(c)),
            )
        };
        let text = |s: String| crate::appliance::text(&s);
        Resources {
            veid: veid.get(),
            exists: cfg.is_some(),
            running: counters.is_some(),
            ubc: rows.into_iter().collect(),
            diskspace: quota(limits.diskspace, space),
            diskinodes: quota(limits.diskinodes, inodes),
            cpuunits: limits.cpuunits.unwrap_or(1000),
            cpulimit: limits.cpulimit.unwrap_or(0),
            cpus: limits.cpus.unwrap_or(0),
            cpumask: list(&limits.cpumask),
            nodemask: list(&limits.nodemask),
            ioprio: limits.ioprio.unwrap_or(4),
            iolimit: limits.iolimit.unwrap_or(0),
            iopslimit: limits.iopslimit.unwrap_or(0),
            laverage: if counters.is_some() {
                self.laverage(veid)
            } else {
                [0; 3]
            },
            vm_overcommit: limits.vm_overcommit.unwrap_or(0),
            devnodes: text(
                limits
                    .devnodes
                    .iter()
                    .map(|d| format!("{}:{}", d.path, d.access.render()))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            devices: text(
                limits
                    .devices
                    .iter()
                    .map(|d| d.render())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }

    /// The appliance's own beancounters (OpenVZ's CT0, uid 0): the counters
    /// of its services' cgroup, with no limits (maxheld is the kernel's peak
    /// where it keeps one, else the current value).
    pub fn appliance_resources(&self) -> Resources {
        let cg = self
            .layout
            .cgroup_root
            .parent()
            .map(|p| p.join("appliance"))
            .unwrap_or_default();
        let c = beancounters::read_counters(&cg, Path::new("/proc"), Some(1), Scope::Whole);
        let rows = beancounters::rows(
            Some(&c),
            &vzconfig::resources::Limits::default(),
            &[0; UBC_COUNT],
        );
        let unl = proto::Ubc::UNLIMITED;
        let none = Quota {
            usage: 0,
            soft: unl,
            hard: unl,
        };
        Resources {
            veid: 0,
            exists: true,
            running: true,
            ubc: rows.into_iter().collect(),
            diskspace: none,
            diskinodes: none,
            cpuunits: 1000,
            cpulimit: 0,
            cpus: 0,
            cpumask: crate::appliance::truncated("all"),
            nodemask: crate::appliance::truncated("all"),
            ioprio: 4,
            iolimit: 0,
            iopslimit: 0,
            laverage: [0; 3],
            vm_overcommit: 0,
            devnodes: proto::Text::new(),
            devices: proto::Text::new(),
        }
    }

    /// Disk usage of VE `veid` (KiB, inodes) from its project quota.
    fn disk_usage(&self, veid: VeId) -> Option<(u64, u64)> {
        self.quota_usage(veid)
    }
}
