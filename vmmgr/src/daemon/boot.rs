//! ONBOOT starts at appliance boot and the ordered stop at shutdown.

use super::Manager;
use crate::config::VeId;
use crate::exitcode::ExitCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl Manager {
    /// Stops every running VE, in reverse boot order (lower BOOTORDER first),
    /// equal ones in parallel. Called when the appliance shuts down.
    pub fn shutdown(self: &Arc<Self>) {
        // vz.conf as it is now (VE_STOP_MODE may have been edited since).
        self.reload();
        let mut groups: BTreeMap<u32, Vec<VeId>> = BTreeMap::new();
        // (Bound first: a guard in the loop's head would be held through
        // the loop, and config_of locks again.)
        let running: Vec<VeId> = self.lock().running.keys().copied().collect();
        for veid in running {
            let order = self
                .config_of(veid)
                .and_then(|c| c.ok())
                .map_or(0, |c| c.bootorder);
            groups.entry(order).or_default().push(veid);
        }
        // Stops mostly wait for the VEs' inits: all of a group at once.
        self.in_groups(groups.into_values(), usize::MAX, |me, veid| {
            if me.suspend_at_shutdown() {
                // Not beside a user's operation on it (a chkpnt of its own).
                let mut busy = me.begin(veid);
                for _ in 0..100 {
                    if busy.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    busy = me.begin(veid);
                }
                if busy.is_some() && me.is_running(veid) {
                    let o = me.checkpoint(veid, None, true);
                    if o.code == ExitCode::Ok {
                        log::info!("VE {veid}: suspended: {}", o.message.replace('\n', "; "));
                        return;
                    }
                    log::error!("VE {veid}: {}; stopping it instead", o.message);
                } else if busy.is_none() {
                    log::error!("VE {veid}: busy with another operation; stopping it instead");
                }
                // (busy, if taken, is held through the stop.)
                let o = me.stop(veid, false);
                drop(busy);
                log::info!("VE {veid}: {}", o.message.replace('\n', "; "));
                return;
            }
            let o = me.stop(veid, false);
            log::info!("VE {veid}: {}", o.message.replace('\n', "; "));
        });
    }

    /// Runs `f` on every VE, group after group, the VEs of a group in
    /// parallel on at most `workers` threads. Returns how many VEs it ran on.
    pub(super) fn in_groups(
        self: &Arc<Self>,
        groups: impl IntoIterator<Item = Vec<VeId>>,
        workers: usize,
        f: fn(&Arc<Self>, VeId),
    ) -> usize {
        let mut count = 0;
        for group in groups {
            let n = group.len();
            count += n;
            let queue = Arc::new(std::sync::Mutex::new(group.into_iter()));
            let handles: Vec<_> = (0..workers.clamp(1, n.max(1)))
                .map(|_| {
                    let me = Arc::clone(self);
                    let queue = Arc::clone(&queue);
                    std::thread::spawn(move || loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        match next {
                            Some(veid) => f(&me, veid),
                            None => return,
                        }
                    })
                })
                .collect();
            for h in handles {
                let _ = h.join();
            }
        }
        count
    }

    /// Starts the ONBOOT VEs: higher BOOTORDER first, equal ones in parallel.
    /// A VE with a dump is restored instead when the shutdown made it
    /// (VE_STOP_MODE=suspend) or it is ONBOOT; one that fails to restore is
    /// started fresh, its dump set aside.
    pub fn boot(self: &Arc<Self>) {
        let mut groups: BTreeMap<std::cmp::Reverse<u32>, Vec<VeId>> = BTreeMap::new();
        {
            let st = self.lock();
            let Some(l) = &st.loaded else { return };
            for (veid, cfg) in &l.ves {
                if let Ok(c) = cfg {
                    let resume = self.has_dump(*veid) && (c.onboot || self.dump_at_shutdown(*veid));
                    if (c.onboot || resume) && !c.disabled && !st.running.contains_key(veid) {
                        groups
                            .entry(std::cmp::Reverse(c.bootorder))
                            .or_default()
                            .push(*veid);
                    }
                }
            }
        }
        let t0 = Instant::now();
        // Starts are CPU work (and compete with the console for it): as
        // many at a time as the machine has CPUs, twice, so one waiting on
        // the kernel leaves the CPU to another; a hundred threads at once
        // only fight over the same locks.
        let workers = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = self.in_groups(groups.into_values(), workers, |me, veid| {
            let Some(busy) = me.begin(veid) else { return };
            if me.has_dump(veid) {
                let o = me.restore(veid, None);
                if o.code == ExitCode::Ok {
                    log::info!("VE {veid}: resumed at boot");
                    return;
                }
                // A dump still in place is set aside for inspection before a
                // fresh start (which would remove it); one that cannot be is
                // left alone, and so is the VE.
                if me.has_dump(veid) && o.code != ExitCode::RestoreFailed {
                    // Not CRIU's failure (an address in use, a config
                    // error): a fresh start would fail the same way.
                    log::error!(
                        "VE {veid}: not restored at boot: {}; its dump is kept for \
                         `vzctl restore {veid}`",
                        o.message
                    );
                    return;
                }
                if me.has_dump(veid) {
                    match me.set_dump_aside(veid) {
                        Some(aside) => log::error!(
                            "VE {veid}: restoring at boot failed: {}; starting it afresh, its \
                             dump kept in {}",
                            o.message,
                            aside.display()
                        ),
                        None => {
                            log::error!(
                                "VE {veid}: restoring at boot failed: {}; its dump could not be \
                                 set aside, so the VE is not started (restore or start it by hand)",
                                o.message
                            );
                            return;
                        }
                    }
                } else {
                    log::error!(
                        "VE {veid}: restoring at boot failed: {}; starting it afresh",
                        o.message
                    );
                }
            }
            let o = me.start_at_boot(veid);
            drop(busy);
            if o.code != ExitCode::Ok {
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
