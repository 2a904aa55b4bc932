//! `vzmigrate`: both ends (the protocol is drawn in `crate::migrate::wire`).
//!
//! Source: offline, the VE is stopped, its private area sent, and DEST
//! starts it. Online, the private area is sent while the VE runs, then
//! its memory in pre-copy rounds (CRIU pre-dump with soft-dirty tracking)
//! until little changes between rounds; then the VE is frozen and dumped
//! (only what changed since the last round), what changed in its files
//! and the dump follow, and DEST restores it. The source's copy goes only
//! after DEST says the VE runs there and has acknowledged the commit;
//! until DEST could have started it, any failure brings the VE back here.
//!
//! DEST: everything arrives in places no VE can reach
//! (`/vz/private/<dir>.incoming`, `/vz/dump/Migrate.<VEID>*`) and is
//! checked (length and SHA-256 of each stream) before use; the VE's config
//! is written only for the restore, and a marker (`/vz/dump/Incoming.<VEID>`)
//! says the VE is not committed: a broken link, an abort or a timeout
//! before the commit removes all of it, and a boot after a crash removes
//! what a marker names.

use super::chkpnt::suffixed;
use super::Manager;
use crate::config::VeId;
use crate::exitcode::ExitCode;
use crate::migrate::channel::{Channel, Error};
use crate::migrate::wire::{Msg, Offer, Part};
use crate::migrate::{tree, Code, Conf, Keys};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `vzmigrate` asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub dest: String,
    pub online: bool,
    /// `--remove-area yes` (default): the source's private area goes after
    /// success; `no` keeps it (its config is set aside either way).
    pub remove_area: bool,
    /// `--keep-dst`: on failure DEST keeps what it received, for
    /// inspection, as `<private>.partial`.
    pub keep_dst: bool,
    /// `--new-id`: DEST takes the VE under this VEID (offline only).
    pub new_id: Option<u32>,
}

/// Pre-copy rounds at most, and when to stop early: the round wrote
/// little, or not much less than the one before (the VE writes memory as
/// fast as it is copied).
const MAX_ROUNDS: u32 = 5;
const SMALL_ROUND: u64 = 1 << 20;
/// DEST waits this long for the commit once the VE runs there.
const COMMIT_WAIT: Duration = Duration::from_secs(20);
/// Migrations DEST serves at once.
const MAX_INCOMING: usize = 2;

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The dump directories of a migration of `veid`: the final one, and
/// pre-copy round `n`'s.
fn final_name(veid: VeId) -> String {
    format!("Migrate.{veid}")
}
/// (Inside the final one: the restored tasks open the rounds through the
/// images directory's `parent` link, and cannot search `/vz/dump`.)
fn round_name(veid: VeId, n: u32) -> String {
    format!("Migrate.{veid}/{ROUND}{n}")
}
const ROUND: &str = "pre.";

fn marker_name(veid: VeId) -> String {
    format!("Incoming.{veid}")
}

/// Names the stage an error came in; a link that broke or timed out there
/// gets the stage's exit code (what DEST said keeps its own).
fn at(stage: &str, code: Code) -> impl Fn(Error) -> Error + '_ {
    move |mut e| {
        if !e.said && matches!(e.code, Code::Broken | Code::Timeout) {
            e.code = code;
        }
        e.message = format!("{stage}: {}", e.message);
        e
    }
}

/// Expects `want` (by name) next; `Failed`/`Refuse` become their error.
fn expect(ch: &mut Channel, want: &str) -> Result<Msg, Error> {
    match ch.recv()? {
        m if m.name() == want => Ok(m),
        Msg::Refuse { code, message } | Msg::Failed { code, message } => {
            let mut e = Error::new(Code::from_u8(code), format!("{}: {message}", ch.peer.name));
            e.said = true;
            Err(e)
        }
        Msg::Abort { message } => Err(Error::new(Code::Broken, message)),
        other => Err(Error::new(
            Code::Protocol,
            format!("{} sent {}, expected {want}", ch.peer.name, other.name()),
        )),
    }
}

impl Manager {
    fn dump_path(&self, name: &str) -> PathBuf {
        self.layout
            .on_disk(&Path::new(super::chkpnt::DUMP_DIR).join(name))
    }

    /// Removes every dump directory of a migration of `veid` here.
    fn drop_migration_dumps(&self, veid: VeId) {
        let top = self.layout.on_disk(Path::new(super::chkpnt::DUMP_DIR));
        let prefix = final_name(veid);
        let Ok(entries) = std::fs::read_dir(&top) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name == prefix
                || name
                    .strip_prefix(&format!("{prefix}."))
                    .is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit()) || r == "used");
            if ours {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn private_of(&self, veid: VeId) -> Result<PathBuf, String> {
        match self.config_of(veid) {
            Some(Ok(c)) => crate::config::confine_private(&c.ve_private)
                .map(|p| self.layout.on_disk(&p))
                .map_err(|e| format!("VE {veid}: its VE_PRIVATE: {e}")),
            _ => Err(format!(
                "VE {veid}: its config is missing or invalid (see `vzlist -a`)"
            )),
        }
    }

    /// This appliance's migration key pair.
    pub fn migration_keys(&self) -> std::io::Result<Keys> {
        crate::migrate::keys(&self.layout.on_disk(Path::new(crate::migrate::KEY_DIR)))
    }

    // ---------------------------------------------------------------
    // Source
    // ---------------------------------------------------------------

    /// Migrates `veid` to `req.dest`, saying each stage through `say`.
    pub fn migrate(
        self: &Arc<Self>,
        veid: VeId,
        req: &Request,
        say: &mut dyn FnMut(&str),
    ) -> (Code, String) {
        let t0 = Instant::now();
        self.reload();
        if self.config_of(veid).is_none() {
            return (Code::NotHere, format!("VE {veid} does not exist here"));
        }
        let Some(busy) = self.begin(veid) else {
            return (
                Code::Locked,
                format!("VE {veid} is locked: another operation on it is in progress; try again"),
            );
        };
        let (conf, diags) = Conf::load(&self.layout.config_dir);
        if let Some(d) = diags
            .iter()
            .find(|d| d.severity == crate::config::Severity::Error)
        {
            return (Code::Usage, format!("{d}"));
        }
        let Some(peer) = conf.peer(&req.dest).cloned() else {
            let known: Vec<&str> = conf.peers.iter().map(|p| p.name.as_str()).collect();
            return (
                Code::Connect,
                format!(
                    "{} is not a peer in {}: known peers: {}; add it to MIGRATE_PEERS \
                     (name=,address=,port=,key=)",
                    req.dest,
                    self.layout.config_dir.join(crate::migrate::CONF).display(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        };
        let keys = match self.migration_keys() {
            Ok(k) => k,
            Err(e) => {
                return (
                    Code::Connect,
                    format!("this appliance's migration key: {e}"),
                )
            }
        };
        let running = self.is_running(veid);
        let online = req.online && running;
        if req.online && !running {
            say(&format!("VE {veid} is not running: migrating it offline"));
        }
        let cfg = match self.config_of(veid) {
            Some(Ok(c)) => c,
            _ => {
                return (
                    Code::NotHere,
                    format!("VE {veid}: its config is invalid (see `vzlist -a`): fix it first"),
                )
            }
        };
        if online {
            // What would make the final dump fail, said before anything moves.
            let pid = self.lock().running.get(&veid).map_or(0, |r| r.pid);
            if let Err(why) = self.checkpointable(veid, pid) {
                return (
                    Code::StopSource,
                    format!("{why}; or migrate it offline (without --online)"),
                );
            }
        }
        let private = match self.private_of(veid) {
            Ok(p) => p,
            Err(m) => return (Code::NotHere, m),
        };
        let config = match std::fs::read_to_string(self.conf_path(veid)) {
            Ok(t) => t,
            Err(e) => {
                return (
                    Code::NotHere,
                    format!("reading {}: {e}", self.conf_path(veid).display()),
                )
            }
        };
        say(&format!(
            "Connecting to {} ({}:{})",
            peer.name, peer.address, peer.port
        ));
        let mut ch = match Channel::connect(&peer, &keys) {
            Ok(c) => c,
            Err(e) => return (e.code, e.message),
        };
        say(&format!("{}: authenticated", peer.name));
        let upper = private.join("upper");
        let memory = std::fs::read_to_string(
            super::cgroup::dir(&self.layout.cgroup_root, veid).join("memory.current"),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
        let offer = Offer {
            veid: veid.get(),
            online,
            start: running,
            config,
            ostemplate: cfg.ostemplate.clone(),
            private_bytes: self.quota_usage(veid).map_or(0, |(kib, _)| kib * 1024),
            memory_bytes: if online { memory } else { 0 },
            source: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            keep: req.keep_dst,
            dst_id: req.new_id,
        };
        let mut sent_total = 0u64;
        let mut run = || -> Result<Outcome2, Failure> {
            ch.send(&Msg::Offer(offer.clone()))
                .map_err(at("offer", Code::Connect))
                .map_err(Failure::before)?;
            expect(&mut ch, "Accept")
                .map_err(at("DEST's checks", Code::Connect))
                .map_err(Failure::before)?;
            say(&format!("{}: accepted VE {veid}", peer.name));
            if !online && running {
                say(&format!("Stopping VE {veid}"));
                let o = self.stop(veid, false);
                if o.code != ExitCode::Ok {
                    return Err(Failure::before(Error::new(Code::StopSource, o.message)));
                }
            }
            // The private area, all of it (live when online).
            let t = Instant::now();
            let mut first = None;
            let n = ch
                .send_part(Part::Private, |w| {
                    // Live, what changes under the walk goes again later.
                    let (m, s) = tree::pack(&upper, None, w, !online)?;
                    first = Some((m, s));
                    Ok(())
                })
                .map_err(at("private area", Code::Copy))
                .map_err(|e| Failure::stopped_if(!online && running, e))?;
            expect(&mut ch, "Received")
                .map_err(at("private area", Code::Copy))
                .map_err(|e| Failure::stopped_if(!online && running, e))?;
            sent_total += n;
            let (manifest, s) = first.unwrap_or_default();
            say(&format!(
                "Private area: {} entries, {} of files ({} sent) in {}",
                s.entries,
                mib(s.file_bytes),
                mib(n),
                secs(t.elapsed())
            ));
            if !online {
                // DEST starts it only on the commit: until then the source
                // may start it again.
                ch.send(&Msg::Start { run: running })
                    .map_err(at("putting it in place at DEST", Code::Copy))
                    .map_err(|e| Failure::stopped_if(running, e))?;
                expect(&mut ch, "Ran")
                    .map_err(at("putting it in place at DEST", Code::Copy))
                    .map_err(|e| Failure::stopped_if(running, e))?;
                return Ok(Outcome2 { frozen: None });
            }
            // Memory pre-copy rounds while the VE runs.
            let tracking = crate::criu::mem_tracking();
            // The last round, relative to the final dump's directory.
            let mut prev: Option<String> = None;
            if tracking {
                let mut last = u64::MAX;
                for round in 1..=MAX_ROUNDS {
                    let name = round_name(veid, round);
                    let dir = self.dump_path(&name);
                    let t = Instant::now();
                    let from_round = prev.as_ref().map(|p| format!("../{p}"));
                    let pages = self
                        .pre_dump(veid, &dir, from_round.as_deref())
                        .map_err(|m| {
                            Failure::before(Error::new(
                                Code::StopSource,
                                format!("memory pre-copy round {round}: {m}"),
                            ))
                        })?;
                    let n = ch
                        .send_part(Part::Images(name.clone()), |w| {
                            tree::pack(&dir, None, w, true).map(|_| ())
                        })
                        .map_err(at(&format!("memory pre-copy round {round}"), Code::Copy))
                        .map_err(Failure::before)?;
                    expect(&mut ch, "Received")
                        .map_err(at(&format!("memory pre-copy round {round}"), Code::Copy))
                        .map_err(Failure::before)?;
                    sent_total += n;
                    say(&format!(
                        "Memory pre-copy round {round} (soft-dirty tracking): {} of memory, {} sent in {}",
                        mib(pages),
                        mib(n),
                        secs(t.elapsed())
                    ));
                    prev = Some(format!("{ROUND}{round}"));
                    if pages <= SMALL_ROUND || pages * 10 > last * 9 {
                        break;
                    }
                    last = pages;
                }
            } else {
                say("Memory pre-copy: none (the kernel does not track written pages): one-shot dump");
            }
            // Freeze: from here the VE runs nowhere until DEST restores it
            // or it is restored here.
            let frozen = Instant::now();
            say(&format!("Freezing VE {veid}: final dump"));
            let fin = final_name(veid);
            let given = format!("{}/{fin}", super::chkpnt::DUMP_DIR);
            let o = self.checkpoint_after(veid, Some(&given), false, prev.as_deref());
            if o.code != ExitCode::Ok {
                // (A dump that failed half-way may have ended the VE.)
                return Err(Failure::stopped_if(
                    !self.is_running(veid),
                    Error::new(Code::StopSource, o.message),
                ));
            }
            let dumped = frozen.elapsed();
            // vmmgr's figure for CRIU alone, as `vzctl chkpnt` prints it.
            let criu_ms = o
                .message
                .rsplit(", ")
                .next()
                .and_then(|t| t.split(' ').next())
                .unwrap_or("?")
                .to_owned();
            let fin_dir = self.dump_path(&fin);
            // What changed in the files since the first pass, and what
            // is left of them.
            let mut changed = tree::Sent::default();
            let mut now = tree::Manifest::default();
            let n = ch
                .send_part(Part::PrivateChanges, |w| {
                    let (m, s) = tree::pack(&upper, Some(&manifest), w, true)?;
                    changed = s;
                    now = m;
                    Ok(())
                })
                .map_err(at("changed files", Code::Copy))
                .map_err(Failure::dumped)?;
            expect(&mut ch, "Received")
                .map_err(at("changed files", Code::Copy))
                .map_err(Failure::dumped)?;
            sent_total += n;
            let paths = now.paths();
            sent_total += ch
                .send_part(Part::Manifest, |w| std::io::Write::write_all(w, &paths))
                .map_err(at("list of files", Code::Copy))
                .map_err(Failure::dumped)?;
            expect(&mut ch, "Received")
                .map_err(at("list of files", Code::Copy))
                .map_err(Failure::dumped)?;
            let t = Instant::now();
            let n = ch
                .send_part(Part::Images(fin.clone()), |w| tree::pack_top(&fin_dir, w))
                .map_err(at("final dump", Code::Copy))
                .map_err(Failure::dumped)?;
            expect(&mut ch, "Received")
                .map_err(at("final dump", Code::Copy))
                .map_err(Failure::dumped)?;
            sent_total += n;
            say(&format!(
                "Final dump: {} of memory in {} (CRIU {criu_ms} ms); changed files: {} entries, {}; dump sent ({}) in {}",
                mib(tree::pages_bytes(&fin_dir)),
                secs(dumped),
                changed.entries,
                mib(changed.file_bytes),
                mib(n),
                secs(t.elapsed())
            ));
            ch.send(&Msg::Restore { dump: fin })
                .map_err(at("restore at DEST", Code::StartDest))
                .map_err(Failure::dumped)?;
            let t = Instant::now();
            let Msg::Ran { ms } = expect(&mut ch, "Ran")
                .map_err(at("restore at DEST", Code::StartDest))
                .map_err(Failure::uncertain)?
            else {
                unreachable!("expect returns what it was asked for")
            };
            say(&format!(
                "{}: VE {veid} restored, stopped until the commit, in {} ({ms} ms there)",
                peer.name,
                secs(t.elapsed())
            ));
            Ok(Outcome2 {
                frozen: Some(frozen),
            })
        };
        let result = run();
        let outcome = match result {
            Ok(o) => o,
            Err(f) => {
                let _ = ch.send(&Msg::Abort {
                    message: f.error.message.clone(),
                });
                let r = self.undo_source(veid, f, say);
                drop(busy);
                return r;
            }
        };
        // Before the commit the config goes aside, durably: whatever
        // happens from here (no answer, a crash, a reboot), this appliance
        // does not start the VE again by itself.
        let conf = self.conf_path(veid);
        let aside = suffixed(&conf, "migrating");
        let set_aside = std::fs::rename(&conf, &aside)
            .and_then(|()| sync_dir(conf.parent().unwrap_or(Path::new("/"))));
        self.reload();
        if let Err(e) = set_aside {
            let _ = std::fs::rename(&aside, &conf);
            self.reload();
            let _ = ch.send(&Msg::Abort {
                message: format!("the source cannot set its config aside: {e}"),
            });
            let f = Failure {
                state: State::after_freeze(online, running),
                error: Error::new(
                    Code::StopSource,
                    format!("setting {} aside: {e}", conf.display()),
                ),
            };
            let r = self.undo_source(veid, f, say);
            drop(busy);
            return r;
        }
        // The commit: DEST keeps the VE; then (only then) it goes here.
        let committed = ch.send(&Msg::Commit).and_then(|()| expect(&mut ch, "Done"));
        // It runs at DEST from here: the end of the freeze.
        let freeze = outcome.frozen.map(|f| f.elapsed());
        if let Ok(Msg::Done { warning }) = &committed {
            if !warning.is_empty() {
                say(warning);
            } else if offer.start && !online {
                say(&format!("{}: VE {veid} started", peer.name));
            }
        }
        match committed {
            Ok(_) => {}
            // DEST said no, after undoing all: the VE comes back here.
            Err(e) if e.said => {
                let _ = std::fs::rename(&aside, &conf);
                self.reload();
                let f = Failure {
                    state: State::after_freeze(online, running),
                    error: e,
                };
                let r = self.undo_source(veid, f, say);
                drop(busy);
                return r;
            }
            Err(e) => {
                return (
                    e.code,
                    format!(
                        "VE {veid}: no answer from {} to the commit ({}): it may run there. Here \
                         it is stopped, its config kept as {}{}; check {} (`vzlist {veid}`) and, \
                         if it does not run there, rename the config back and `vzctl {} {veid}`",
                        peer.name,
                        e.message,
                        aside.display(),
                        if online {
                            ", its dump in /vz/dump/Migrate.<VEID>"
                        } else {
                            ""
                        },
                        peer.name,
                        if online {
                            "restore --dumpfile /vz/dump/Migrate.<VEID>"
                        } else {
                            "start"
                        }
                    ),
                );
            }
        }
        let removed = self.retire(veid, req.remove_area);
        drop(busy);
        let total = t0.elapsed();
        let mut last = format!(
            "Migration of VE {veid} to {} completed in {}, {} sent",
            peer.name,
            secs(total),
            mib(sent_total)
        );
        if let Some(f) = freeze {
            last.push_str(&format!("; freeze time {} ms", f.as_millis()));
            log::info!(
                "VE {veid}: migrated to {} live; freeze time {} ms",
                peer.name,
                f.as_millis()
            );
        } else {
            log::info!("VE {veid}: migrated to {} offline", peer.name);
        }
        if let Err(m) = removed {
            say(&m);
        }
        (Code::Ok, last)
    }

    /// After a failure: the VE back as it was here, as far as it can be.
    fn undo_source(
        self: &Arc<Self>,
        veid: VeId,
        f: Failure,
        say: &mut dyn FnMut(&str),
    ) -> (Code, String) {
        let e = f.error;
        let fin = format!("{}/{}", super::chkpnt::DUMP_DIR, final_name(veid));
        // What became of the VE first: a long reason is cut at the end.
        match f.state {
            State::Untouched => {
                self.drop_migration_dumps(veid);
                (
                    e.code,
                    format!("VE {veid} is unchanged here. {}", e.message),
                )
            }
            State::Stopped => {
                say(&format!("Starting VE {veid} here again"));
                let o = self.start(veid, false);
                let state = if o.code == ExitCode::Ok {
                    format!("VE {veid} runs here again.")
                } else {
                    format!("VE {veid} did not start here again ({}).", o.message)
                };
                (e.code, format!("{state} {}", e.message))
            }
            // DEST restores a VE stopped, and resumes it only on the
            // commit, which was not sent: whatever it made never runs,
            // and goes when its wait for the commit ends.
            State::Dumped | State::Uncertain => {
                say(&format!("Resuming VE {veid} here"));
                let o = self.restore(veid, Some(&fin));
                let state = if o.code == ExitCode::Ok {
                    self.drop_migration_dumps(veid);
                    format!("VE {veid} was resumed here.")
                } else {
                    format!(
                        "VE {veid} could not be resumed here ({}); its dump is kept in {fin}.",
                        o.message
                    )
                };
                (e.code, format!("{state} {}", e.message))
            }
        }
    }

    /// The source's copy after a committed migration: its config set
    /// aside as `<VEID>.conf.migrated`, its private area removed unless
    /// `keep`, its dumps removed.
    fn retire(&self, veid: VeId, remove_area: bool) -> Result<(), String> {
        let conf = self.conf_path(veid);
        let migrated = suffixed(&conf, "migrated");
        // Set aside as `.migrating` before the commit.
        let aside = suffixed(&conf, "migrating");
        let _ = std::fs::rename(&aside, &migrated);
        let r = if remove_area {
            let o = self.destroy(veid);
            let destroyed = suffixed(&conf, "destroyed");
            if destroyed.exists() {
                let _ = std::fs::rename(&destroyed, &migrated);
            }
            if o.code == ExitCode::Ok {
                Ok(())
            } else {
                Err(format!("removing VE {veid}'s copy here: {}", o.message))
            }
        } else {
            Ok(())
        };
        self.drop_migration_dumps(veid);
        self.reload();
        r
    }

    // ---------------------------------------------------------------
    // DEST
    // ---------------------------------------------------------------

    /// Accepts migrations on `MIGRATE_PORT` (if `migrate.conf` sets it),
    /// each on its own thread; peers are read again for each.
    pub fn serve_migrations(self: &Arc<Self>) {
        let (conf, diags) = Conf::load(&self.layout.config_dir);
        for d in &diags {
            log::error!("{d}");
        }
        let keys = match self.migration_keys() {
            Ok(k) => k,
            Err(e) => {
                log::error!("migration key: {e}; no migration to or from here");
                return;
            }
        };
        log::info!(
            "migration key of this appliance: {}",
            crate::migrate::render_key(&keys.public)
        );
        let Some(port) = conf.port else {
            return;
        };
        let listener = match std::net::TcpListener::bind(("::", port))
            .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))
        {
            Ok(l) => l,
            Err(e) => {
                log::error!("migrate.conf MIGRATE_PORT {port}: cannot listen: {e}");
                return;
            }
        };
        log::info!("accepting migrations on port {port}");
        let m = Arc::clone(self);
        let active = Arc::new(AtomicUsize::new(0));
        let _ = std::thread::Builder::new()
            .name("vmmgr-migrate".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    // Only the peers' addresses get as far as a handshake.
                    let from = conn.peer_addr().map(|a| match a.ip() {
                        std::net::IpAddr::V6(v6) => v6
                            .to_ipv4_mapped()
                            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
                        v4 => v4,
                    });
                    let (conf, _) = Conf::load(&m.layout.config_dir);
                    match from {
                        Ok(ip) if conf.peers.iter().any(|p| p.address == ip) => {}
                        Ok(ip) => {
                            log::warn!("migration: refused a connection from {ip}: not a peer in migrate.conf");
                            continue;
                        }
                        Err(_) => continue,
                    }
                    if active.load(Ordering::SeqCst) >= MAX_INCOMING {
                        log::warn!("migration: refusing a connection: {MAX_INCOMING} in progress");
                        continue;
                    }
                    active.fetch_add(1, Ordering::SeqCst);
                    let (m, slot, keys) = (Arc::clone(&m), Arc::clone(&active), keys.clone());
                    let spawned = std::thread::Builder::new()
                        .name("vmmgr-migrate-in".into())
                        .spawn(move || {
                            let (conf, _) = Conf::load(&m.layout.config_dir);
                            match Channel::accept(conn, &keys, &conf.peers) {
                                Ok(ch) => m.receive(ch),
                                Err(e) => log::warn!("migration: {e}"),
                            }
                            slot.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(e) = spawned {
                        log::error!("migration: cannot start a thread: {e}");
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            });
    }

    /// Removes what an incoming migration left uncommitted (a crash or a
    /// power cut mid-way): called at vmmgr's start, before ONBOOT.
    pub fn sweep_incoming(&self) {
        let top = self.layout.on_disk(Path::new(super::chkpnt::DUMP_DIR));
        let Ok(entries) = std::fs::read_dir(&top) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(veid) = name
                .strip_prefix("Incoming.")
                .and_then(|v| v.parse::<VeId>().ok())
            else {
                continue;
            };
            // (A VE restored but not committed is still stopped: adopted
            // after a vmmgr restart, it is stopped for good here.)
            if self.undo_incoming(veid, false) {
                log::warn!("VE {veid}: an uncommitted incoming migration was removed");
            } else {
                log::error!(
                    "VE {veid}: an uncommitted incoming migration could not be removed (its \
                     VE does not stop); kept: see {}",
                    e.path().display()
                );
            }
        }
    }

    /// Removes everything an incoming migration of `veid` made (its
    /// private area is always `/vz/private/<VEID>`, which did not exist
    /// before: see `check_offer`). Returns false, keeping all, if its VE
    /// does not stop.
    fn undo_incoming(&self, veid: VeId, keep: bool) -> bool {
        if self.is_running(veid) {
            let o = self.stop(veid, true);
            if o.code != ExitCode::Ok || self.is_running(veid) {
                log::error!("VE {veid}: stopping the uncommitted VE: {}", o.message);
                return false;
            }
        }
        let private = self.incoming_private(veid);
        let staging = suffixed(&private, "incoming");
        if keep {
            let partial = suffixed(&private, "partial");
            let _ = std::fs::remove_dir_all(&partial);
            let from = if staging.exists() { &staging } else { &private };
            let _ = std::fs::rename(from, &partial);
        }
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_dir_all(&private);
        let _ = std::fs::remove_file(self.conf_path(veid));
        self.drop_migration_dumps(veid);
        let _ = std::fs::remove_file(self.dump_path(&marker_name(veid)));
        self.reload();
        true
    }

    /// Where an incoming VE's private area goes: OpenVZ's default, always.
    fn incoming_private(&self, veid: VeId) -> PathBuf {
        self.layout
            .on_disk(Path::new(&format!("/vz/private/{veid}")))
    }

    /// One incoming migration, on an authenticated channel.
    fn receive(self: &Arc<Self>, mut ch: Channel) {
        let from = ch.peer.name.clone();
        let offer = match ch.recv() {
            Ok(Msg::Offer(o)) => o,
            Ok(other) => {
                log::warn!("migration from {from}: it began with {}", other.name());
                return;
            }
            Err(e) => {
                log::warn!("migration from {from}: {e}");
                return;
            }
        };
        // `--new-id` moves a stopped copy only: a live VE's images name
        // its VEID throughout (cgroups, dump names, vmmgr's records).
        let veid = match (offer.dst_id, offer.online) {
            (Some(_), true) => {
                Err("a live migration under a new VEID (--new-id) is not supported".to_owned())
            }
            (id, _) => id.unwrap_or(offer.veid).to_string().parse::<VeId>(),
        };
        let veid = match veid {
            Ok(v) => v,
            Err(m) => {
                let _ = ch.send(&Msg::Refuse {
                    code: Code::Protocol.get(),
                    message: m,
                });
                return;
            }
        };
        let checked = self.check_offer(veid, &offer);
        let (private, busy) = match checked {
            Ok(p) => p,
            Err((code, message)) => {
                log::warn!("migration of VE {veid} from {from} refused: {message}");
                let _ = ch.send(&Msg::Refuse {
                    code: code.get(),
                    message,
                });
                return;
            }
        };
        log::info!(
            "VE {veid}: incoming {} migration from {from}",
            if offer.online { "live" } else { "offline" }
        );
        let marker = self.dump_path(&marker_name(veid));
        let keep = std::sync::atomic::AtomicBool::new(false);
        // Ok: committed (with what went wrong after, if anything).
        let r = (|| -> Result<String, Error> {
            std::fs::create_dir_all(marker.parent().unwrap_or(Path::new("/")))
                .and_then(|()| crate::fsutil::write_atomic(&marker, ""))
                .and_then(|()| sync_dir(marker.parent().unwrap_or(Path::new("/"))))
                .map_err(|e| {
                    Error::new(Code::Copy, format!("writing {}: {e}", marker.display()))
                })?;
            ch.send(&Msg::Accept)?;
            self.receive_parts(veid, &offer, &private, &mut ch, &keep)
        })();
        if let Err(e) = &r {
            log::warn!("VE {veid}: migration from {from} failed: {}", e.message);
            // Undone first: the source resumes its copy on this answer.
            if self.undo_incoming(veid, offer.keep && keep.load(Ordering::SeqCst)) {
                let _ = ch.send(&Msg::Failed {
                    code: e.code.get(),
                    message: e.message.clone(),
                });
            }
            drop(busy);
            return;
        }
        drop(busy);
        log::info!("VE {veid}: migration from {from} committed");
        if let Ok(warning) = r {
            self.committed(veid, &mut ch, warning);
        }
    }

    /// DEST's checks of an offer; holds the VE busy from here.
    fn check_offer(
        &self,
        veid: VeId,
        offer: &Offer,
    ) -> Result<(PathBuf, super::Busy<'_>), (Code, String)> {
        // Held from the first check: no local create comes in between.
        let Some(busy) = self.begin(veid) else {
            return Err((Code::Locked, format!("VE {veid} is locked here")));
        };
        if self.dump_path(&marker_name(veid)).exists() {
            return Err((
                Code::Exists,
                format!(
                    "an earlier migration of VE {veid} here was not undone ({} is there): \
                     see the log; restart vmmgr to remove it",
                    self.dump_path(&marker_name(veid)).display()
                ),
            ));
        }
        self.reload();
        if self.conf_path(veid).exists() || self.is_running(veid) {
            return Err((
                Code::Exists,
                format!(
                    "VE {veid} already exists here; destroy it first (vzctl destroy {veid}), or \
                     give the incoming VE another VEID here (vzmigrate --new-id=VEID, offline)"
                ),
            ));
        }
        let file = self.conf_path(veid);
        let (entries, mut diags) = crate::config::parse(&offer.config, &file);
        let (cfg, d) =
            crate::config::validate_ve(veid, &entries, &self.global(), &self.templates(), &file);
        diags.extend(d);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == crate::config::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        if !self.templates().contains(&offer.ostemplate) {
            return Err((
                Code::Template,
                format!(
                    "OS template {:?} is not here (present: {}); install it first (vzpkg install)",
                    offer.ostemplate,
                    self.templates().join(", ")
                ),
            ));
        }
        let cfg = match cfg {
            Some(c) if errors.is_empty() => c,
            _ => {
                return Err((
                    Code::Usage,
                    format!(
                        "VE {veid}'s config is not valid here: {}",
                        errors.join("; ")
                    ),
                ))
            }
        };
        // OpenVZ's default place, always: a peer does not choose where
        // DEST writes.
        if cfg.ve_private != Path::new(&format!("/vz/private/{veid}")) {
            return Err((
                Code::Usage,
                format!(
                    "VE {veid}'s VE_PRIVATE is {}: only /vz/private/{veid} is accepted here",
                    cfg.ve_private.display()
                ),
            ));
        }
        // What names the source's own hardware stays there.
        let local: Vec<&str> = ["DEVNODES", "DEVICES", "NETDEV"]
            .into_iter()
            .filter(|k| {
                entries
                    .iter()
                    .any(|e| e.key == *k && !e.value.trim().is_empty())
            })
            .collect();
        if !local.is_empty() {
            return Err((
                Code::Usage,
                format!(
                    "VE {veid}'s config grants it devices of the source ({}): remove them \
                     there before migrating, and grant DEST's here after",
                    local.join(", ")
                ),
            ));
        }
        let private = self.incoming_private(veid);
        if private.exists() {
            return Err((
                Code::Exists,
                format!("{} already exists here", private.display()),
            ));
        }
        if let Some((ip, other)) = self.address_taken(&cfg) {
            return Err((Code::IpInUse, format!("address {ip} is VE {other}'s here")));
        }
        // What the loader checks across files, checked before the commit
        // (under `--new-id` the config may still say the source's VEID, and
        // a name or port another VE has here would make one of the two
        // configs invalid at the next load).
        if let Some(e) = entries
            .iter()
            .rev()
            .find(|e| e.key == "VEID" && e.value.trim() != veid.to_string())
        {
            return Err((
                Code::Usage,
                format!(
                    "VE {veid}'s config says VEID={} (line {}): remove that line there, or make \
                     it {veid}",
                    e.value.trim(),
                    e.line
                ),
            ));
        }
        if let Some(other) = cfg
            .name
            .as_deref()
            .and_then(|n| self.name_owner(n, Some(veid)))
        {
            return Err((
                Code::Exists,
                format!(
                    "VE {other} here is named {:?} already: rename one of them first (vzctl set \
                     VEID --name)",
                    cfg.name.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let Some((f, other)) = cfg
            .portfwd
            .iter()
            .find_map(|f| self.port_owner(f, veid).map(|o| (f, o)))
        {
            return Err((
                Code::Exists,
                format!(
                    "the appliance's {} port {} is forwarded to VE {other} here already",
                    if f.udp { "UDP" } else { "TCP" },
                    f.outer
                ),
            ));
        }
        // Nor an address of this appliance's own (announced, it would take
        // it over on the link).
        let own: Vec<std::net::IpAddr> = vzcommon::rtnl::Rtnl::new()
            .and_then(|mut nl| nl.addresses(None))
            .map(|l| l.into_iter().map(|a| a.ip).collect())
            .unwrap_or_default();
        if let Some(a) = cfg.ip_address.iter().find(|a| own.contains(&a.ip)) {
            return Err((
                Code::IpInUse,
                format!("address {} is this appliance's own", a.ip),
            ));
        }
        let need = offer
            .private_bytes
            .saturating_add(offer.memory_bytes)
            .saturating_add(64 << 20);
        let free = rustix::fs::statvfs(&self.layout.vz_dir)
            .map(|s| s.f_bavail * s.f_frsize)
            .unwrap_or(0);
        if free < need {
            return Err((
                Code::DiskSpace,
                format!(
                    "not enough free space on VZDATA: {} free, {} needed (private area {}, \
                     memory {}, 64 MiB spare)",
                    mib(free),
                    mib(need),
                    mib(offer.private_bytes),
                    mib(offer.memory_bytes)
                ),
            ));
        }
        Ok((private, busy))
    }

    fn receive_parts(
        self: &Arc<Self>,
        veid: VeId,
        offer: &Offer,
        private: &Path,
        ch: &mut Channel,
        keep: &std::sync::atomic::AtomicBool,
    ) -> Result<String, Error> {
        let staging = suffixed(private, "incoming");
        let upper = staging.join("upper");
        // At most what the offer declared, with room for the pre-copy
        // rounds sending pages again.
        let cap = offer
            .private_bytes
            .saturating_add(offer.memory_bytes)
            .saturating_mul(3)
            .saturating_add(256 << 20);
        let mut got = 0u64;
        let copy_err =
            |what: &str, e: std::io::Error| Error::new(Code::Copy, format!("{what}: {e}"));
        loop {
            match ch.recv()? {
                Msg::Begin(Part::Private) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    super::create::make_private(&staging, true, veid)
                        .map_err(|o| Error::new(Code::Copy, o.message))?;
                    keep.store(true, Ordering::SeqCst);
                    let n = ch
                        .recv_part(cap - got, |r| tree::unpack(&upper, r, tree::Kind::Private))?
                        .1;
                    count(&mut got, cap, n)?;
                    ch.send(&Msg::Received)?;
                }
                Msg::Begin(Part::PrivateChanges) => {
                    let n = ch
                        .recv_part(cap - got, |r| tree::unpack(&upper, r, tree::Kind::Private))?
                        .1;
                    count(&mut got, cap, n)?;
                    ch.send(&Msg::Received)?;
                }
                Msg::Begin(Part::Manifest) => {
                    // (Held in memory: a bound of its own.)
                    let (paths, n) = ch.recv_part((cap - got).min(64 << 20), |r| {
                        let mut v = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::Read::take(r, cap), &mut v)?;
                        Ok(v)
                    })?;
                    count(&mut got, cap, n)?;
                    tree::prune(&upper, &paths)
                        .map_err(|e| copy_err("removing what the source removed", e))?;
                    ch.send(&Msg::Received)?;
                }
                Msg::Begin(Part::Images(name)) => {
                    let is_final = name == final_name(veid);
                    let is_round = name
                        .strip_prefix(&format!("{}/{ROUND}", final_name(veid)))
                        .is_some_and(|n| {
                            n.parse::<u32>()
                                .is_ok_and(|n| (1..=MAX_ROUNDS).contains(&n))
                        });
                    if !(is_final || is_round) || !offer.online {
                        return Err(Error::new(Code::Protocol, format!("images named {name:?}")));
                    }
                    let (top, fin, dir) = (
                        self.dump_path(""),
                        self.dump_path(&final_name(veid)),
                        self.dump_path(&name),
                    );
                    // The final dump lands beside the rounds already there.
                    if is_round {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| {
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o700))?;
                            std::fs::set_permissions(&fin, std::fs::Permissions::from_mode(0o711))?;
                            // (A round is opened by its `parent` link, see
                            // `Manager::pre_dump`.)
                            let mode = if is_round { 0o755 } else { 0o711 };
                            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                        })
                        .map_err(|e| copy_err(&format!("making {}", dir.display()), e))?;
                    let n = ch
                        .recv_part(cap - got, |r| tree::unpack(&dir, r, tree::Kind::Images))?
                        .1;
                    count(&mut got, cap, n)?;
                    ch.send(&Msg::Received)?;
                }
                Msg::Restore { dump } if offer.online && dump == final_name(veid) => {
                    self.install(veid, offer, &staging, private)?;
                    // Restored stopped: it runs once the source commits.
                    let fin = self.dump_path(&dump);
                    let note = fin.join(crate::criu::NOTE);
                    std::fs::read_to_string(&note)
                        .map(|t| format!("{}\n{}\n", t.trim_end(), crate::criu::NOTE_STOPPED))
                        .and_then(|t| std::fs::write(&note, t))
                        .map_err(|e| copy_err("marking the dump to be restored stopped", e))?;
                    // CRIU writes these, following links: never the peer's.
                    for f in [crate::criu::RESTORE_LOG, "stats-restore"] {
                        let _ = std::fs::remove_file(fin.join(f));
                    }
                    let t = Instant::now();
                    let o =
                        self.restore(veid, Some(&format!("{}/{dump}", super::chkpnt::DUMP_DIR)));
                    if o.code != ExitCode::Ok {
                        return Err(Error::new(Code::StartDest, o.message));
                    }
                    // Stopped tasks can be continued (a timer's SIGCONT, a
                    // `vzctl exec`): the VE's cgroup is frozen as well, which
                    // nothing in it can undo, until the commit.
                    let cg = super::cgroup::dir(&self.layout.cgroup_root, veid);
                    std::fs::write(cg.join("cgroup.freeze"), "1").map_err(|e| {
                        Error::new(Code::StartDest, format!("freezing the restored VE: {e}"))
                    })?;
                    self.sync_vz()?;
                    ch.send(&Msg::Ran {
                        ms: t.elapsed().as_millis() as u64,
                    })?;
                    return self.await_commit(veid, ch, After::Resume);
                }
                Msg::Start { run } if !offer.online => {
                    // In place now, started once committed (never two
                    // running copies).
                    self.install(veid, offer, &staging, private)?;
                    self.sync_vz()?;
                    ch.send(&Msg::Ran { ms: 0 })?;
                    return self.await_commit(
                        veid,
                        ch,
                        if run { After::Start } else { After::Keep },
                    );
                }
                Msg::Abort { message } => {
                    return Err(Error::new(
                        Code::Broken,
                        format!("the source gave up: {message}"),
                    ))
                }
                other => {
                    return Err(Error::new(
                        Code::Protocol,
                        format!("unexpected {} from the source", other.name()),
                    ))
                }
            }
        }
    }

    /// The received private area in its place, and the VE's config.
    fn install(
        &self,
        veid: VeId,
        offer: &Offer,
        staging: &Path,
        private: &Path,
    ) -> Result<(), Error> {
        if !staging.join("upper").is_dir() {
            return Err(Error::new(Code::Protocol, "no private area came"));
        }
        std::fs::rename(staging, private).map_err(|e| {
            Error::new(Code::Copy, format!("moving the private area in place: {e}"))
        })?;
        crate::fsutil::write_atomic(&self.conf_path(veid), &offer.config).map_err(|e| {
            Error::new(
                Code::Copy,
                format!("writing {}: {e}", self.conf_path(veid).display()),
            )
        })?;
        self.reload();
        Ok(())
    }

    /// VZDATA on disk (what came, the config, the marker's removal)
    /// before the source is told: it removes its copy on that word.
    fn sync_vz(&self) -> Result<(), Error> {
        std::fs::File::open(&self.layout.vz_dir)
            .and_then(|f| rustix::fs::syncfs(&f).map_err(std::io::Error::from))
            .map_err(|e| Error::new(Code::Copy, format!("syncing VZDATA: {e}")))
    }

    /// Waits for the source's commit; then the VE stays (`stopped`: a
    /// restored VE is resumed now), and its addresses are announced on
    /// the uplinks.
    fn await_commit(
        self: &Arc<Self>,
        veid: VeId,
        ch: &mut Channel,
        then: After,
    ) -> Result<String, Error> {
        ch.set_read_timeout(COMMIT_WAIT);
        expect(ch, "Commit")?;
        let marker = self.dump_path(&marker_name(veid));
        std::fs::remove_file(&marker)
            .and_then(|()| sync_dir(marker.parent().unwrap_or(Path::new("/"))))
            .map_err(|e| Error::new(Code::Copy, format!("removing {}: {e}", marker.display())))?;
        // Committed: from here the VE is DEST's whatever happens.
        let mut warning = String::new();
        match then {
            After::Resume => {
                let cg = super::cgroup::dir(&self.layout.cgroup_root, veid);
                if let Err(e) = resume(&cg) {
                    warning = format!("VE {veid}: resuming it after the commit: {e}");
                }
            }
            After::Start => {
                let o = self.start(veid, false);
                if o.code != ExitCode::Ok {
                    warning = format!(
                        "VE {veid} is at {} but did not start there: {}",
                        rustix::system::uname().nodename().to_string_lossy(),
                        o.message
                    );
                }
            }
            After::Keep => {}
        }
        if !warning.is_empty() {
            log::error!("{warning}");
        }
        self.drop_migration_dumps(veid);
        Ok(warning)
    }

    /// After the commit, with the VE no longer busy (the source may move
    /// it on at once): `Done`, then the VE's addresses announced.
    fn committed(&self, veid: VeId, ch: &mut Channel, warning: String) {
        let _ = ch.send(&Msg::Done { warning });
        let addrs: Vec<std::net::IpAddr> = self
            .lock()
            .net
            .get(&veid)
            .map(|l| l.iter().map(|a| a.ip).collect())
            .unwrap_or_default();
        for e in crate::net::announce::announce(&addrs) {
            log::warn!("VE {veid}: announcing its address: {e}");
        }
        // Its bridged interfaces keep their MACs: the segment's switches
        // learn that those are here now.
        // Only the ports the VE has here now, each into the bridge it is
        // in (never a name the config gives, which came from the peer).
        let ports: Vec<(String, [u8; 6])> =
            self.lock().ports.get(&veid).cloned().unwrap_or_default();
        let links = vzcommon::rtnl::Rtnl::new()
            .and_then(|mut nl| nl.links())
            .unwrap_or_default();
        let macs: Vec<(String, [u8; 6])> = ports
            .iter()
            .filter_map(|(port, mac)| {
                let l = links
                    .iter()
                    .find(|l| l.name == *port && l.kind.as_deref() == Some("veth"))?;
                let br = links
                    .iter()
                    .find(|b| Some(b.index) == l.master && b.kind.as_deref() == Some("bridge"))?;
                Some((br.name.clone(), *mac))
            })
            .collect();
        for e in crate::net::announce::announce_macs(&macs) {
            log::warn!("VE {veid}: announcing its bridged MAC: {e}");
        }
    }
}

/// Adds `n` to what came, failing past `cap` (what the offer declared).
fn count(got: &mut u64, cap: u64, n: u64) -> Result<(), Error> {
    *got = got.saturating_add(n);
    if *got > cap {
        return Err(Error::new(
            Code::Copy,
            format!(
                "the source sent {} where it declared at most {}",
                mib(*got),
                mib(cap)
            ),
        ));
    }
    Ok(())
}

/// What DEST does once the source commits.
#[derive(Debug, Clone, Copy)]
enum After {
    /// Resume the VE restored stopped.
    Resume,
    /// Start the VE (offline, it ran at the source).
    Start,
    Keep,
}

/// fsync of a directory (a rename or unlink in it made durable).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Thaws cgroup `cg`, then SIGCONT to every process in it and below: a
/// VE CRIU left stopped goes on. (A process the VE itself had stopped
/// goes on too.)
fn resume(cg: &Path) -> std::io::Result<()> {
    std::fs::write(cg.join("cgroup.freeze"), "0")?;
    let mut stack = vec![cg.to_owned()];
    while let Some(d) = stack.pop() {
        for pid in std::fs::read_to_string(d.join("cgroup.procs"))?.lines() {
            if let Some(p) = pid
                .trim()
                .parse()
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::CONT);
            }
        }
        for e in std::fs::read_dir(&d)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// The source's VE after a failure: where it stands.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Running (or stopped) as before.
    Untouched,
    /// Stopped for an offline migration: start it again.
    Stopped,
    /// Dumped (not running anywhere): restore it here.
    Dumped,
    /// DEST may have started it: it stops it without a commit.
    Uncertain,
}

impl State {
    /// Once frozen (live: dumped) or stopped (offline, if it ran).
    fn after_freeze(online: bool, running: bool) -> State {
        if online {
            State::Dumped
        } else if running {
            State::Stopped
        } else {
            State::Untouched
        }
    }
}

#[derive(Debug)]
struct Failure {
    state: State,
    error: Error,
}

impl Failure {
    fn before(error: Error) -> Failure {
        Failure {
            state: State::Untouched,
            error,
        }
    }
    fn stopped_if(stopped: bool, error: Error) -> Failure {
        Failure {
            state: if stopped {
                State::Stopped
            } else {
                State::Untouched
            },
            error,
        }
    }
    fn dumped(error: Error) -> Failure {
        Failure {
            state: State::Dumped,
            error,
        }
    }
    fn uncertain(error: Error) -> Failure {
        // DEST's answer that it failed is certain: it undid everything.
        let state = if error.said {
            State::Dumped
        } else {
            State::Uncertain
        };
        Failure { state, error }
    }
}

#[derive(Debug)]
struct Outcome2 {
    /// When the VE was frozen (live).
    frozen: Option<Instant>,
}
