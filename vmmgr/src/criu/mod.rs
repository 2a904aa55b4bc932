//! How vmmgr drives CRIU (Debian's 3.17) for `vzctl chkpnt` and `restore`:
//! the options, the programs it may run and the log it leaves.
//!
//! CRIU runs programs by name (`ip addr save|restore`, the iptables probes,
//! `tar` for tmpfs contents, `sh`) through the PATH it is given, from the
//! mount namespace it runs in. Both are the appliance's here: the dump runs
//! from vmmgr, the restore from `vesetup`'s staging namespace before any VE
//! process exists, and PATH names only VZROOT's directories, so no program
//! of a VE's tree ever runs with the appliance's privileges.

pub mod cgroups;
pub mod dev;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's CRIU on VZROOT.
pub const CRIU: &str = "/usr/sbin/criu";
/// The programs CRIU may run: VZROOT's, read-only. Not the sbin
/// directories: CRIU 3.17 runs `iptables-save -V` and `ip6tables-save -V`
/// at every dump only to learn that their backend is nftables (whose rules
/// it saves itself) and then skips them; a name it cannot find ends that
/// probe sooner, under the freeze. (It needs `tar` and `gzip` from here;
/// `ip` is named whole, `CR_IP_TOOL`.)
const PATH: &str = "/usr/bin:/bin";
/// iproute2's `ip` (busybox's, earlier on PATH, cannot save or restore).
const IP_TOOL: &str = "/bin/ip";

/// The key the VE's `/dev` goes by in the images: an external mount (see
/// `setup::restore`).
pub const DEV_KEY: &str = "vedev";

/// The key every tmpfs mask below `/proc` and `/sys` goes by in the images:
/// external mounts, so that CRIU neither archives their (empty) contents
/// with `tar` at the dump nor unpacks them at the restore, each a fork and
/// exec under the freeze. The restore binds an empty directory there, and
/// the post-restore step replaces the whole of `/proc` and `/sys` with
/// locked trees anyway (`setup::restore`).
pub const MASK_KEY: &str = "vzmask";

/// The log CRIU writes into the images directory.
pub const DUMP_LOG: &str = "dump.log";
pub const RESTORE_LOG: &str = "restore.log";
pub const PRE_DUMP_LOG: &str = "pre-dump.log";
/// vmmgr's note beside the images: which VE they are of, and the pid its
/// init had, which names CRIU's network-lock table (see [`lock_table`]).
pub const NOTE: &str = "vz.dump";

/// The restored VE init's pid (appliance's PID namespace).
pub const PIDFILE: &str = "restore.pid";

/// Options of both directions, as LXC and OpenVZ 7 pass them: established
/// TCP connections, file locks, files unlinked while open, the network
/// locked with nftables (not iptables) while the VE is frozen, and mounts
/// from outside the VE (the masks' /dev/null, the /proc view) named by
/// their appliance paths.
fn common(cmd: &mut Command, dir: &Path, log: &str) {
    cmd.env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("CR_IP_TOOL", IP_TOOL)
        .arg("--images-dir")
        .arg(dir)
        .args(["--log-file", log, "-v4"])
        .args([
            "--tcp-established",
            "--file-locks",
            "--link-remap",
            "--ext-mount-map",
            "auto",
            "--enable-external-sharing",
            "--enable-external-masters",
        ]);
}

/// What a dump and a pre-dump are of: the tree of VE init `pid`, frozen
/// through its cgroup `cgroup` (the VE's whole group: `ve/` and the exec
/// leaves), with its `/dev` and its masks `masks` ([`mask_mounts`])
/// external mounts.
#[derive(Debug)]
pub struct Subject<'a> {
    pub pid: i32,
    pub cgroup: &'a Path,
    pub masks: &'a [String],
}

/// `criu dump` of `ve` into `dir`. `prev` (a live migration's last
/// pre-copy round, relative to `dir`): only the memory written since goes
/// into this dump.
pub fn dump_command(ve: &Subject<'_>, dir: &Path, prev: Option<&str>) -> Command {
    let mut cmd = Command::new(CRIU);
    cmd.arg("dump");
    common(&mut cmd, dir, DUMP_LOG);
    if let Some(p) = prev {
        cmd.args(["--track-mem", "--prev-images-dir", p]);
    }
    the_ve(&mut cmd, ve);
    // The restore takes the method from the images.
    cmd.args(["--network-lock", "nftables"]);
    cmd
}

/// Both dumps' options naming their subject.
fn the_ve(cmd: &mut Command, ve: &Subject<'_>) {
    cmd.arg("--tree")
        .arg(ve.pid.to_string())
        .arg("--freeze-cgroup")
        .arg(ve.cgroup)
        .arg("--manage-cgroups")
        .arg("--external")
        .arg(format!("mnt[/dev]:{DEV_KEY}"));
    for m in ve.masks {
        cmd.arg("--external").arg(format!("mnt[{m}]:{MASK_KEY}"));
    }
}

/// `criu pre-dump`: the memory of `ve` into `dir` while it goes on running
/// (frozen only while its pages are collected), with soft-dirty tracking so
/// that the next round (`prev`, relative to `dir`) writes only what changed
/// since.
pub fn pre_dump_command(ve: &Subject<'_>, dir: &Path, prev: Option<&str>) -> Command {
    let mut cmd = Command::new(CRIU);
    cmd.arg("pre-dump");
    common(&mut cmd, dir, PRE_DUMP_LOG);
    the_ve(&mut cmd, ve);
    cmd.arg("--track-mem");
    if let Some(p) = prev {
        cmd.args(["--prev-images-dir", p]);
    }
    cmd
}

/// Whether the kernel tracks written pages for CRIU (soft-dirty bits):
/// without it a live migration copies the memory once, frozen.
pub fn mem_tracking() -> bool {
    Command::new(CRIU)
        .env_clear()
        .env("PATH", PATH)
        .args(["check", "--feature", "mem_dirty_track"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where vesetup staged a restore: paths of its staging namespace.
#[derive(Debug)]
pub struct Staged<'a> {
    /// The VE's overlay root.
    pub root: &'a Path,
    /// The VE's `/dev` tmpfs.
    pub dev: &'a Path,
    /// The empty directory bound on the masks until they are replaced.
    pub empty: &'a Path,
    /// Where CRIU writes the restored init's pid.
    pub pidfile: &'a Path,
}

/// `criu restore` of the images in `dir` onto the VE root staged at `at`
/// (its `/dev` the tmpfs there, its masks binds of the empty directory),
/// detached (the restored init ends up vmmgr's child, as a started one).
/// `venet` names the appliance's end of the VE's routed pair, when it has
/// one.
pub fn restore_command(
    dir: &Path,
    at: &Staged<'_>,
    venet: Option<&str>,
    veths: &[(String, String, Option<String>)],
    stopped: bool,
) -> Command {
    let mut cmd = Command::new(CRIU);
    cmd.arg("restore");
    common(&mut cmd, dir, RESTORE_LOG);
    cmd.arg("--root")
        .arg(at.root)
        .arg("--restore-detached")
        .arg("--pidfile")
        .arg(at.pidfile)
        .arg("--manage-cgroups=soft")
        .arg("--external")
        .arg(format!("mnt[{DEV_KEY}]:{}", at.dev.display()))
        .arg("--external")
        .arg(format!("mnt[{MASK_KEY}]:{}", at.empty.display()));
    if stopped {
        // Each task detached with SIGSTOP: nothing of the VE runs until
        // it is sent SIGCONT.
        cmd.arg("--leave-stopped");
    }
    if let Some(host) = venet {
        cmd.arg("--external")
            .arg(format!("veth[{}]:{host}", crate::net::routed::VE_IFNAME));
    }
    // Bridged pairs: CRIU makes the appliance's end and puts it in its
    // bridge (`@`).
    for (ve, host, bridge) in veths {
        let to = bridge.as_ref().map_or(String::new(), |b| format!("@{b}"));
        cmd.arg("--external").arg(format!("veth[{ve}]:{host}{to}"));
    }
    cmd
}

/// Runs `cmd` (a CRIU command) to its end; an error carries CRIU's last
/// error lines from `log`.
pub fn run(mut cmd: Command, log: &Path) -> Result<(), String> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().map_err(|e| format!("running {CRIU}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    // What it printed before its log was open (a bad option, a bad path).
    let early = String::from_utf8_lossy(&out.stderr);
    let errors = match last_errors(log) {
        e if e == NO_ERROR => {
            let lines: Vec<&str> = early.lines().filter(|l| l.contains("Error")).collect();
            if lines.is_empty() {
                early.trim().replace('\n', "; ")
            } else {
                lines.join("; ")
            }
        }
        e => e,
    };
    Err(format!(
        "{CRIU} failed ({}): {errors} (the whole log: {})",
        out.status,
        log.display()
    ))
}

const NO_ERROR: &str = "no error in its log";

/// Whether CRIU's error `e` ([`run`]) is its freeze timing out on a task
/// that would not stop (uninterruptible sleep), which leaves the VE
/// running and may pass on another try.
pub fn freeze_timed_out(e: &str) -> bool {
    e.contains("Timeout reached") || e.contains("Unseizable non-zombie")
}

/// The note's text; `at_shutdown`: made by the appliance's shutdown
/// (VE_STOP_MODE=suspend), to be restored at the next boot.
/// (Only VEs started with CHECKPOINT="yes" are dumped: the note says so,
/// and the restored VE keeps the filter that denies it namespaces.)
pub fn note(veid: u32, init_pid: i32, at_shutdown: bool) -> String {
    let by = if at_shutdown { "SHUTDOWN=yes\n" } else { "" };
    format!("VEID={veid}\nLOCK_PID={init_pid}\n{NOTE_CHECKPOINT}\n{by}")
}

/// The note's lines naming each bridged pair (NETIF): the name the VE's
/// end had at the dump (VE root's to choose) and the appliance's end.
pub fn note_veths(veths: &[(String, String)]) -> String {
    veths
        .iter()
        .map(|(ve, host)| format!("VETH={ve}:{host}\n"))
        .collect()
}

/// The bridged pairs of a note: (the VE's end, the appliance's end); a
/// name that is not a plain interface name is left out.
pub fn parse_note_veths(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("VETH=")?.split_once(':'))
        .filter(|(ve, host)| vzconfig::net::valid_ifname(ve) && vzconfig::net::valid_ifname(host))
        .map(|(ve, host)| (ve.to_owned(), host.to_owned()))
        .collect()
}

/// For each bridged interface `netif` (filled) of the running VE whose
/// init is `init`: the name its end has inside the VE now (found by the
/// appliance end's peer index), with the appliance end's name.
pub fn veths_of(
    init: i32,
    netif: &[vzconfig::net::NetIf],
) -> Result<Vec<(String, String)>, String> {
    use std::os::fd::AsFd;
    if netif.is_empty() {
        return Ok(Vec::new());
    }
    let mut peers = Vec::new();
    for n in netif {
        let host = n.host_ifname.clone().unwrap_or_default();
        let path = format!("/sys/class/net/{host}/iflink");
        let peer = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("its NETIF {} is not in force ({host} is missing)", n.ifname))?;
        peers.push((host, peer));
    }
    let ns = std::fs::File::open(format!("/proc/{init}/ns/net"))
        .map_err(|e| format!("opening its network namespace: {e}"))?;
    let links = vzcommon::rtnl::in_netns(ns.as_fd(), || vzcommon::rtnl::Rtnl::new()?.links())
        .map_err(|e| format!("listing its interfaces: {e}"))?;
    peers
        .into_iter()
        .map(|(host, peer)| {
            links
                .iter()
                .find(|l| l.index == peer && l.kind.as_deref() == Some("veth"))
                .map(|l| (l.name.clone(), host.clone()))
                .ok_or_else(|| format!("the VE's end of {host} is gone"))
        })
        .collect()
}

/// The note's line saying the dumped processes run under the filter that
/// denies new namespaces (a dump made before there was one lacks it).
pub const NOTE_CHECKPOINT: &str = "CHECKPOINT=yes";

pub fn note_checkpoint(text: &str) -> bool {
    text.lines().any(|l| l.trim() == NOTE_CHECKPOINT)
}

/// Whether the note says the appliance's shutdown made the dump.
/// The note's line asking the restore to leave the VE stopped (a live
/// migration's DEST: it resumes only once the source commits).
pub const NOTE_STOPPED: &str = "RESUME=commit";

pub fn note_leave_stopped(text: &str) -> bool {
    text.lines().any(|l| l.trim() == NOTE_STOPPED)
}

pub fn note_at_shutdown(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "SHUTDOWN=yes")
}

/// The note's VEID and init pid, if it parses.
pub fn parse_note(text: &str) -> Option<(u32, i32)> {
    let mut veid = None;
    let mut pid = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("VEID", v)) => veid = v.trim().parse().ok(),
            Some(("LOCK_PID", v)) => pid = v.trim().parse().ok(),
            _ => {}
        }
    }
    Some((veid?, pid?))
}

/// The nftables table CRIU 3.17 locks a VE's network with while it dumps
/// it: named after the init's pid in the appliance. The table is part of
/// the dumped state, and the restore's unlock looks for one named after the
/// restored init's pid, so the dumped one stays: vesetup deletes it once
/// the restore is complete (the VE's traffic flows from then on).
pub fn lock_table(dump_pid: i32) -> String {
    format!("CRIU-{dump_pid}")
}

/// Deletes the network-lock table a dump of VE init `dump_pid` left in the
/// network namespace of `init` (a pidfd of the VE's init; see
/// [`lock_table`]), with the appliance's `nft` run in that namespace only;
/// gone already is fine.
pub fn delete_lock_table(init: std::os::fd::BorrowedFd<'_>, dump_pid: i32) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    let ns = rustix::thread::ThreadNameSpaceType::NETWORK;
    let init = init.try_clone_to_owned()?;
    let mut cmd = Command::new(crate::net::firewall::NFT);
    cmd.args(["delete", "table", "inet", &lock_table(dump_pid)])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setns is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            rustix::thread::move_into_thread_name_spaces(init.as_fd(), ns).map_err(Into::into)
        });
    }
    let out = cmd.output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains("No such file") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "deleting CRIU's lock table {}: nft: {}",
            lock_table(dump_pid),
            err.trim()
        )))
    }
}

/// Checks that every process in the VE's cgroup `cg` shares its init's
/// (`init`) namespaces: CRIU cannot dump nested user or PID namespaces, a
/// nested mount namespace would come back with its masks unlocked, and a
/// nested network namespace would need programs of the VE to restore.
/// (A VE started with CHECKPOINT="yes" cannot make any; one left from
/// before is named here.)
pub fn own_namespaces(cg: &Path, init: i32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    const KINDS: [(&str, &str); 8] = [
        ("user", "a user namespace"),
        ("mnt", "a mount namespace (a systemd service with PrivateTmp= or ProtectSystem=, or unshare -m)"),
        ("pid", "a PID namespace"),
        ("net", "a network namespace (PrivateNetwork=, ip netns)"),
        ("uts", "a UTS namespace (ProtectHostname=)"),
        ("ipc", "an IPC namespace"),
        ("cgroup", "a cgroup namespace"),
        ("time", "a time namespace"),
    ];
    let ns = |pid: i32, kind: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).map(|m| (m.dev(), m.ino()))
    };
    let mut theirs = Vec::new();
    for (kind, _) in KINDS {
        theirs
            .push(ns(init, kind).map_err(|e| format!("reading its init's {kind} namespace: {e}"))?);
    }
    // Every thread: a thread may hold a namespace of its own.
    let tasks = crate::daemon::cgroup::procs(cg)
        .into_iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .collect::<Vec<_>>()
        });
    for pid in tasks {
        for ((kind, what), init_ns) in KINDS.iter().zip(&theirs) {
            if matches!(ns(pid, kind), Ok(n) if n != *init_ns) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                return Err(format!(
                    "its process {pid} ({}) has {what} of its own",
                    comm.trim()
                ));
            }
        }
    }
    Ok(())
}

/// One line of a mount table (`/proc/<pid>/mountinfo`).
struct Mount {
    id: String,
    parent: String,
    /// The superblock's `major:minor`.
    dev: String,
    /// What of its filesystem is mounted (`/` for the whole of it).
    root: String,
    point: String,
    /// Mounted read-only.
    ro: bool,
    fstype: String,
}

/// Each mount of mount table `mountinfo`.
fn mounts(mountinfo: &str) -> impl Iterator<Item = Mount> + '_ {
    mountinfo.lines().filter_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        Some(Mount {
            id: f.first()?.to_string(),
            parent: f.get(1)?.to_string(),
            dev: f.get(2)?.to_string(),
            root: vzcommon::mountinfo::unescape(f.get(3)?),
            point: vzcommon::mountinfo::unescape(f.get(4)?),
            ro: f.get(5)?.split(',').any(|o| o == "ro"),
            fstype: right.split(' ').next()?.to_owned(),
        })
    })
}

/// Proc and sysfs mounts of mount table `mountinfo` outside `/proc` and
/// `/sys` (a VE's copy of either would come back from CRIU unlocked).
pub fn stray_kernfs(mountinfo: &str) -> Vec<String> {
    mounts(mountinfo)
        .filter_map(|m| {
            let inside = ["/proc", "/sys"]
                .iter()
                .any(|t| m.point == *t || m.point.starts_with(&format!("{t}/")));
            (matches!(m.fstype.as_str(), "proc" | "sysfs") && !inside).then_some(m.point)
        })
        .collect()
}

/// The masks of mount table `mountinfo`, as CRIU names external mounts:
/// each read-only tmpfs mounted whole (root `/`) strictly below `/proc` or
/// `/sys`, alone at its point, with nothing mounted below it and its
/// superblock mounted nowhere else, at a plain path (a `]` or `:` would end
/// CRIU's `mnt[...]:` syntax). CRIU applies an external mount to every
/// mount at its path and to every bind of its superblock, so anything else
/// (a VE's own tmpfs with files, a bind of a mask elsewhere, a file bound
/// over a /proc file) is archived as before.
pub fn mask_mounts(mountinfo: &str) -> Vec<String> {
    let all: Vec<Mount> = mounts(mountinfo).collect();
    all.iter()
        .filter(|m| {
            let below = ["/proc/", "/sys/"].iter().any(|t| m.point.starts_with(t));
            let plain = m
                .point
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
            m.fstype == "tmpfs"
                && below
                && plain
                && m.ro
                && m.root == "/"
                && all.iter().filter(|o| o.point == m.point).count() == 1
                && all.iter().filter(|o| o.dev == m.dev).count() == 1
                && !all.iter().any(|o| o.parent == m.id)
        })
        .map(|m| m.point.clone())
        .collect()
}

/// Mounts of mount table `mountinfo` whose contents CRIU 3.17 cannot dump
/// (ramfs: systemd's credentials outside a private namespace), each as
/// "point (type)".
pub fn undumpable_mounts(mountinfo: &str) -> Vec<String> {
    mounts(mountinfo)
        .filter(|m| m.fstype == "ramfs")
        .map(|m| format!("{} ({})", m.point, m.fstype))
        .collect()
}

/// A readable directory `rel` ("" for `at` itself) beneath `at`, opened
/// without following a link or leaving `at`; `extra` adds resolve flags
/// (`NO_XDEV` where the VE may have mounted something since it was seen).
pub(crate) fn open_dir_below(
    at: std::os::fd::BorrowedFd<'_>,
    rel: &str,
    extra: rustix::fs::ResolveFlags,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::OFlags;
    rustix::fs::openat2(
        at,
        if rel.is_empty() { "." } else { rel },
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
        crate::mountfd::IN_ROOT_NO_LINKS | extra,
    )
}

/// Whether `path` (of a record beside the images) is a plain relative path
/// of at most `depth` components: no `.`, `..`, empty part or NUL.
pub(crate) fn plain_relative(path: &str, depth: usize) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() <= depth
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'))
}

/// The last few `Error` lines of a CRIU log, joined.
pub fn last_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // (CRIU's iptables probes fail by design, see PATH: their lines, and
    // the exit status logged right after each, are noise.)
    let probe = |l: &str| l.contains("legacy") || l.contains("tables-save");
    let mut after_probe = false;
    let mut errors: Vec<&str> = Vec::new();
    for l in text.lines() {
        let noise = probe(l) || (after_probe && l.contains("exited, status="));
        after_probe = probe(l);
        if l.contains("Error (") && !noise {
            errors.push(l.split_once("): ").map_or(l, |(_, m)| m).trim());
        }
    }
    let tail = &errors[errors.len().saturating_sub(3)..];
    if tail.is_empty() {
        NO_ERROR.to_owned()
    } else {
        tail.join("; ")
    }
}

/// The images directory of a VE: `--dumpfile` if given, else
/// `<dump_dir>/Dump.<VEID>` (OpenVZ's name, a directory of CRIU images).
pub fn images_dir(dump_dir: &Path, veid: u32, given: Option<&str>) -> PathBuf {
    match given {
        Some(f) => PathBuf::from(f),
        None => dump_dir.join(format!("Dump.{veid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_errors_keeps_the_messages_not_the_noise() {
        let d = tempfile::tempdir().expect("tmp");
        let log = d.path().join("restore.log");
        std::fs::write(
            &log,
            "(00.1) Warn  (criu/mount.c:1259): mnt: something\n\
             Error (criu/util.c:627): execvp(\"iptables-legacy-save\", ...) failed\n\
             Error (criu/util.c:627): execvp(\"ip6tables-save\", ...) failed\n\
             (00.15) Error (criu/util.c:1567): ip6tables-save -V failed\n\
             (00.16) Error (criu/util.c:642): exited, status=1\n\
             (00.2) Error (criu/net.c:100): net: a\n\
             (00.3) Error (criu/cr-restore.c:7): Restoring FAILED.\n",
        )
        .expect("write");
        assert_eq!(last_errors(&log), "net: a; Restoring FAILED.");
        assert_eq!(last_errors(&d.path().join("none")), "no error in its log");
    }

    #[test]
    fn kernfs_outside_proc_and_sys_is_found() {
        let info = "84 80 0:29 / / rw - overlay overlay rw\n\
                    106 84 0:41 / /proc rw - proc none rw\n\
                    134 106 0:41 /sys /proc/sys ro - proc none rw\n\
                    138 84 0:43 / /sys ro - sysfs none rw\n\
                    140 138 0:26 / /sys/fs/cgroup rw - cgroup2 none rw\n\
                    150 84 0:41 / /mnt/p rw - proc none rw\n\
                    151 84 0:43 / /proc2 rw - sysfs none rw\n";
        assert_eq!(stray_kernfs(info), vec!["/mnt/p", "/proc2"]);
        assert!(undumpable_mounts(info).is_empty());
        let creds = "160 99 0:50 / /run/credentials/a\\040b.service rw - ramfs ramfs rw,mode=700\n\
                     161 99 0:51 / /run/lock rw - tmpfs tmpfs rw\n";
        assert_eq!(
            undumpable_mounts(creds),
            vec!["/run/credentials/a b.service (ramfs)"]
        );
    }

    #[test]
    fn a_freeze_timeout_is_told_apart() {
        assert!(freeze_timed_out(
            "/usr/sbin/criu failed (exit status: 1): Timeout reached. Try to interrupt: 0; \
             Unseizable non-zombie 507 found, state D, err -1/4; Pre-dumping FAILED."
        ));
        assert!(!freeze_timed_out(
            "/usr/sbin/criu failed (exit status: 1): net: a; Dumping FAILED."
        ));
    }

    #[test]
    fn masks_are_the_plain_tmpfs_mounts_below_proc_and_sys() {
        let info = "84 80 0:29 / / rw - overlay overlay rw\n\
                    86 84 0:30 / /dev rw - tmpfs none rw\n\
                    104 86 0:31 / /dev/shm rw - tmpfs none rw\n\
                    106 84 0:41 / /proc rw - proc none rw\n\
                    107 106 0:45 / /proc/acpi ro - tmpfs none ro,size=0k\n\
                    108 106 0:5 /null /proc/kcore ro - devtmpfs devtmpfs rw\n\
                    138 84 0:43 / /sys ro - sysfs none rw\n\
                    139 138 0:46 / /sys/firmware ro - tmpfs none ro,size=0k\n\
                    140 138 0:47 / /sys/fs/cgroup/a]:b ro - tmpfs none ro\n\
                    141 84 0:48 / /tmp rw - tmpfs none rw\n\
                    142 84 0:49 / /sys rw - tmpfs none rw\n";
        assert_eq!(mask_mounts(info), vec!["/proc/acpi", "/sys/firmware"]);
        // What CRIU would restore from the stand-in, or could not: a mask
        // bound elsewhere too, a writable tmpfs, a file bound from a tmpfs
        // over a /proc file, a tmpfs with a mount below it, a tmpfs under
        // another mount at the same point.
        let tricks = "106 84 0:41 / /proc rw - proc none rw\n\
                      107 106 0:45 / /proc/acpi ro - tmpfs none ro,size=0k\n\
                      150 84 0:45 / /mnt/x ro - tmpfs none ro,size=0k\n\
                      151 106 0:50 / /proc/fs rw - tmpfs none rw\n\
                      152 106 0:31 /f /proc/meminfo ro - tmpfs none ro\n\
                      153 106 0:51 / /proc/bus ro - tmpfs none ro\n\
                      154 153 0:52 / /proc/bus/pci ro - tmpfs none ro\n\
                      155 106 0:53 / /proc/irq ro - tmpfs none ro\n\
                      156 155 0:54 / /proc/irq ro - tmpfs none ro\n\
                      138 84 0:43 / /sys ro - sysfs none rw\n\
                      139 138 0:46 / /sys/firmware ro - tmpfs none ro,size=0k\n";
        assert_eq!(mask_mounts(tricks), vec!["/proc/bus/pci", "/sys/firmware"]);
    }

    #[test]
    fn note_round_trips() {
        assert_eq!(parse_note(&note(101, 4321, false)), Some((101, 4321)));
        assert_eq!(parse_note(&note(101, 4321, true)), Some((101, 4321)));
        assert!(note_at_shutdown(&note(101, 1, true)));
        assert!(!note_at_shutdown(&note(101, 1, false)));
        assert!(note_checkpoint(&note(101, 1, false)));
        let veths = vec![("eth0".to_owned(), "veth101.0".to_owned())];
        let text = note(101, 1, false) + &note_veths(&veths) + "VETH=../x:veth1\nVETH=a b:c\n";
        assert_eq!(parse_note_veths(&text), veths);
        assert_eq!(parse_note(&text), Some((101, 1)));
        assert!(!note_checkpoint("VEID=101\nLOCK_PID=1\n"));
        let moved = format!("{}{NOTE_STOPPED}\n", note(101, 1, false));
        assert!(note_leave_stopped(&moved) && !note_leave_stopped(&note(101, 1, false)));
        assert_eq!(parse_note(&moved), Some((101, 1)));
        assert_eq!(parse_note("VEID=101\n"), None);
        assert_eq!(lock_table(138), "CRIU-138");
    }

    fn args_of(c: &Command) -> Vec<String> {
        c.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn commands_name_appliance_programs_only() {
        let c = restore_command(
            Path::new("/vz/dump/Dump.101"),
            &Staged {
                root: Path::new("/r"),
                dev: Path::new("/s/vedev"),
                empty: Path::new("/s/vzmask"),
                pidfile: Path::new("/s/restore.pid"),
            },
            Some("venet101"),
            &[
                ("eth0".into(), "veth101.0".into(), Some("vmbr0".into())),
                ("lan".into(), "veth101.1".into(), None),
            ],
            true,
        );
        let args = args_of(&c);
        assert!(
            args.contains(&"veth[venet0]:venet101".to_owned())
                && args.contains(&"--leave-stopped".to_owned()),
            "{args:?}"
        );
        assert!(args.contains(&"--restore-detached".to_owned()));
        assert!(
            args.contains(&"veth[eth0]:veth101.0@vmbr0".to_owned()),
            "{args:?}"
        );
        assert!(args.contains(&"veth[lan]:veth101.1".to_owned()), "{args:?}");
        assert!(args.contains(&"mnt[vedev]:/s/vedev".to_owned()), "{args:?}");
        assert!(
            args.contains(&"mnt[vzmask]:/s/vzmask".to_owned()),
            "{args:?}"
        );
        let masks = ["/proc/acpi".to_owned(), "/sys/firmware".to_owned()];
        let d = dump_command(
            &Subject {
                pid: 7,
                cgroup: Path::new("/sys/fs/cgroup/vz/101"),
                masks: &masks,
            },
            Path::new("/vz/dump/Dump.101"),
            None,
        );
        let args = args_of(&d);
        assert!(
            args.contains(&"mnt[/proc/acpi]:vzmask".to_owned())
                && args.contains(&"mnt[/sys/firmware]:vzmask".to_owned())
                && args.contains(&"mnt[/dev]:vedev".to_owned()),
            "{args:?}"
        );
        let envs: Vec<(String, String)> = c
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into(), v?.to_string_lossy().into())))
            .collect();
        assert!(envs.contains(&("PATH".into(), PATH.into())));
        assert!(envs.contains(&("CR_IP_TOOL".into(), "/bin/ip".into())));
        assert_eq!(
            images_dir(Path::new("/vz/dump"), 101, None),
            PathBuf::from("/vz/dump/Dump.101")
        );
    }
}
