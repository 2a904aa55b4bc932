//! Building a VE and starting its init: the single-threaded `vesetup` helper
//! that vmmgr runs for each start. It reads top to bottom in the order the
//! kernel needs (the recipe in DESIGN.md, "A VE"):
//!
//! 1. the policy files, while the appliance's files are in reach;
//! 2. a private mount namespace A, owned by the appliance's user namespace;
//! 3. the VE's user namespace, its id maps written from outside (`userns`);
//! 4. idmapped template (read-only) and private-area layers, attached in A
//!    on a staging tmpfs (`layers`);
//! 5. the overlay root, mounted by a helper inside the VE's user namespace
//!    (it must be, or its work dir fails with EOVERFLOW) and handed back as a
//!    detached mount, attached in A (`layers`);
//! 6. `/dev` in A (`dev`);
//! 7. the VE's first process: into its cgroup and user namespace as VE root,
//!    new PID, network, UTS, IPC and cgroup namespaces; it forks the VE init,
//!    which waits (`init`);
//! 8. /proc, read-only /sys and the cgroup2 tree mounted in A from the VE's
//!    PID, network and cgroup namespaces, then the masks and read-only paths
//!    on top, all by fd (`kernfs`);
//! 9. `pivot_root` in A (`pivot`);
//! 10. the VE init unshares its own mount namespace B: every mount inherited
//!     from A is locked there, so VE root can neither remove a mask nor mount a
//!     fresh proc or sysfs; it sets hostname, `lo`, session, capabilities and
//!     the seccomp filter, and executes the template's init (`init`).
//!
//! vmmgr gets back one typed frame and a pidfd of the VE init on fd 3.

pub mod dev;
pub mod devnodes;
pub mod helper;
mod init;
mod kernfs;
pub mod launch;
mod layers;
mod net;
pub mod netfiles;
mod pivot;
pub mod procview;
pub mod restore;
mod userns;

use crate::policy;
use proto::SetupReply;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// What `vesetup` is told to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub veid: u32,
    /// The template tree (read-only lower layer).
    pub template: PathBuf,
    /// The VE's private area: holds `upper/` and `work/`.
    pub private: PathBuf,
    /// Staging mount point (`/vz/root/<VEID>`).
    pub root: PathBuf,
    /// The VE's cgroup directory.
    pub cgroup: PathBuf,
    /// First host uid/gid of the VE's range; VE uid 0 maps to it.
    pub uid_base: u32,
    pub gid_base: u32,
    /// Size of the range.
    pub id_count: u32,
    pub hostname: String,
    /// The reviewed policy files.
    pub policy_dir: PathBuf,
    /// The program that becomes the VE's PID 1.
    pub init: String,
    /// The most ptys the VE's devpts hands out (NUMPTY).
    pub pty_max: u32,
    /// DEVNODES made in the VE's /dev (paths under /dev).
    pub devnodes: Vec<String>,
    /// IP_ADDRESS: `venet0` gets them before the init runs (`net`).
    pub ipaddr: Vec<vzconfig::net::IpNet>,
    /// NAMESERVER and SEARCHDOMAIN (`inherit` already resolved) for the
    /// VE's resolv.conf (`netfiles`); empty: left as it is.
    pub nameservers: Vec<std::net::IpAddr>,
    pub searchdomains: Vec<String>,
    /// NETIF (names and MACs filled in) and NETDEV, made or moved before
    /// the init runs (`net`).
    pub netif: Vec<vzconfig::net::NetIf>,
    pub netdev: Vec<String>,
    /// A restore from these CRIU images instead of a start (`restore`).
    pub restore: Option<PathBuf>,
    /// CHECKPOINT: the VE may not make namespaces of its own (its seccomp
    /// filter's `[nested-namespaces=deny]` section), so CRIU can dump it.
    pub checkpoint: bool,
}

/// The step that failed, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("VE {veid}: {step}")]
    Step {
        veid: u32,
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("VE {veid}: {message}")]
    Policy { veid: u32, message: String },
    /// The template's init program could not be executed (OpenVZ: 47).
    #[error("VE {veid}: executing the template's init {init}")]
    BrokenInit {
        veid: u32,
        init: String,
        #[source]
        source: std::io::Error,
    },
}

impl SetupError {
    /// The typed reply vmmgr gets for this error.
    pub fn reply(&self) -> SetupReply {
        let mut msg = self.to_string();
        let mut src = std::error::Error::source(self);
        let mut errno = 0;
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            if let Some(e) = s.downcast_ref::<std::io::Error>() {
                errno = e.raw_os_error().unwrap_or(errno);
            }
            src = s.source();
        }
        SetupReply::Failed {
            step: crate::appliance::truncated(&msg),
            errno,
            broken_init: matches!(self, SetupError::BrokenInit { .. }),
        }
    }
}

/// An error and its causes on one line.
pub use vzcommon::error_chain as chain;

/// Names the step of a fallible call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub veid: u32,
}

impl Ctx {
    pub fn at<T, E: Into<std::io::Error>>(
        &self,
        step: impl Into<String>,
        r: Result<T, E>,
    ) -> Result<T, SetupError> {
        r.map_err(|e| SetupError::Step {
            veid: self.veid,
            step: step.into(),
            source: e.into(),
        })
    }

    pub fn fail(&self, step: impl Into<String>, message: impl Into<String>) -> SetupError {
        SetupError::Step {
            veid: self.veid,
            step: step.into(),
            source: std::io::Error::other(message.into()),
        }
    }
}

/// Everything read from the policy files before the VE is built.
#[derive(Debug)]
pub(crate) struct Policy {
    pub keep_caps: Vec<u32>,
    pub masked: Vec<policy::paths::PolicyPath>,
    pub readonly: Vec<policy::paths::PolicyPath>,
    pub seccomp: policy::seccomp::Program,
}

fn read_policy(spec: &Spec) -> Result<Policy, SetupError> {
    read_policy_dir(spec.veid, &spec.policy_dir, spec.checkpoint)
}

fn read_policy_dir(
    veid: u32,
    dir: &std::path::Path,
    checkpoint: bool,
) -> Result<Policy, SetupError> {
    let err = |message: String| SetupError::Policy { veid, message };
    let process = policy::ProcessPolicy::load(dir, policy::nested_for(checkpoint)).map_err(err)?;
    Ok(Policy {
        keep_caps: process.keep_caps,
        seccomp: process.seccomp,
        masked: policy::paths::load(dir, "masked-paths").map_err(err)?,
        readonly: policy::paths::load(dir, "readonly-paths").map_err(err)?,
    })
}

/// The policy files read once by `vesetup server` before any start, for
/// both settings of CHECKPOINT: its forked runs use them instead of reading
/// the files and compiling the seccomp filter again. Only a directory on a
/// read-only mount is read ahead (the appliance's /etc/vzpolicy, on
/// VZROOT): its files cannot change while the server runs. Anything else,
/// or a directory that fails to read, is left to each run, which then
/// reports the error as before.
#[derive(Debug, Default)]
pub struct Preloaded {
    dir: PathBuf,
    plain: Option<Policy>,
    checkpoint: Option<Policy>,
}

impl Preloaded {
    /// Reads `dir`'s policy ahead if it is on a read-only mount.
    pub fn read(dir: &std::path::Path) -> Preloaded {
        let readonly = rustix::fs::statvfs(dir)
            .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
        if !readonly {
            return Preloaded::default();
        }
        Preloaded {
            dir: dir.to_owned(),
            plain: read_policy_dir(0, dir, false).ok(),
            checkpoint: read_policy_dir(0, dir, true).ok(),
        }
    }

    fn get(&self, spec: &Spec) -> Option<&Policy> {
        if self.dir.as_os_str().is_empty() || spec.policy_dir != self.dir {
            return None;
        }
        match spec.checkpoint {
            false => self.plain.as_ref(),
            true => self.checkpoint.as_ref(),
        }
    }
}

/// A VE init that runs the template's init program.
#[derive(Debug)]
pub struct Started {
    pub pid: rustix::process::Pid,
    /// Its start time (`/proc/<pid>/stat` field 22), read before the pivot.
    pub start_time: u64,
    pub pidfd: OwnedFd,
    /// How long each of [`proto::SETUP_STEPS`] took.
    pub steps: crate::timing::Steps,
}

/// Builds the VE and starts its init.
pub fn run(spec: &Spec) -> Result<Started, SetupError> {
    run_preloaded(spec, None)
}

/// [`run`], with the policy read ahead by the server when it has it.
pub fn run_preloaded(spec: &Spec, pre: Option<&Preloaded>) -> Result<Started, SetupError> {
    if let Some(images) = &spec.restore {
        return restore::run(spec, images);
    }
    let cx = Ctx { veid: spec.veid };
    // Marked in the order of `proto::SETUP_STEPS` (only the durations go
    // back to vmmgr, which names them from that list).
    let mut steps = crate::timing::Steps::new();
    // 1. Policy, while /etc/vzpolicy is in reach.
    let read;
    let policy = match pre.and_then(|p| p.get(spec)) {
        Some(p) => p,
        None => {
            read = read_policy(spec)?;
            &read
        }
    };
    steps.mark("policy");

    // 2. Mount namespace A, ours alone.
    staging_namespace(&cx)?;

    // The null device to bind over masked files, checked, from A's own tree
    // (a mount of another namespace cannot be cloned into this one).
    let null = cx.at("opening /dev/null", crate::mountfd::open_dev_null())?;
    steps.mark("mountns");

    // 3. The VE's user namespace.
    let userns = userns::create(spec, &cx)?;
    steps.mark("userns");

    // 4.-5. Layers and the overlay root, attached in A.
    let root = layers::build_root(spec, &cx, userns.as_fd())?;
    steps.mark("layers");

    // 6. /dev.
    dev::populate(
        &cx,
        root.as_fd(),
        null.as_fd(),
        spec.uid_base,
        spec.gid_base,
        spec.pty_max,
        &spec.devnodes,
    )?;
    steps.mark("dev");

    // 7. The VE's first process and its init, waiting; its network
    // interface while it waits.
    let waiting = init::spawn(spec, &cx, userns.as_fd(), policy)?;
    steps.mark("init");
    if let Err(e) = net::configure(&cx, spec, waiting.pidfd.as_fd()) {
        waiting.abort();
        return Err(e);
    }
    steps.mark("net");

    // 8. /proc, /sys, cgroup2 and the masks, from the VE's namespaces.
    // 9. The overlay becomes the root of A (and of the waiting init).
    let prepared = kernfs::mount_all(
        &cx,
        waiting.pidfd.as_fd(),
        root.as_fd(),
        null.as_fd(),
        policy,
    )
    .and_then(|()| {
        steps.mark("kernfs");
        pivot::pivot_into(&cx, root)
    });
    if let Err(e) = prepared {
        waiting.abort();
        return Err(e);
    }
    steps.mark("pivot");

    // 10. Let the init lock its mounts and execute the template's init.
    let mut started = waiting.release(spec, &cx, steps)?;
    started.steps.mark("exec");
    Ok(started)
}

/// A private mount namespace for vesetup alone (A): nothing mounted in it
/// propagates to the appliance's.
fn staging_namespace(cx: &Ctx) -> Result<(), SetupError> {
    cx.at(
        "creating the staging mount namespace",
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
    )?;
    cx.at(
        "making the staging mounts private",
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::PRIVATE
                | rustix::mount::MountPropagationFlags::REC,
        ),
    )
}

impl From<&proto::SetupSpec> for Spec {
    fn from(s: &proto::SetupSpec) -> Spec {
        Spec {
            veid: s.veid,
            template: s.template.as_str().into(),
            private: s.private.as_str().into(),
            root: s.root.as_str().into(),
            cgroup: s.cgroup.as_str().into(),
            uid_base: s.uid_base,
            gid_base: s.gid_base,
            id_count: s.id_count,
            hostname: s.hostname.as_str().into(),
            policy_dir: s.policy_dir.as_str().into(),
            init: s.init.as_str().into(),
            pty_max: s.pty_max,
            devnodes: s.devnodes.split_whitespace().map(str::to_owned).collect(),
            // Checked by vmmgr; a token that does not parse is dropped.
            ipaddr: s
                .ipaddr
                .split_whitespace()
                .filter_map(|t| vzconfig::net::parse_ip(t).ok())
                .collect(),
            nameservers: s
                .nameservers
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect(),
            searchdomains: s
                .searchdomains
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            netif: vzconfig::net::parse_netifs(&s.netif).unwrap_or_default(),
            netdev: vzconfig::net::parse_netdevs(&s.netdev).unwrap_or_default(),
            restore: (!s.restore.is_empty()).then(|| s.restore.as_str().into()),
            checkpoint: s.checkpoint,
        }
    }
}

impl Spec {
    /// The wire form; an error names the field that does not fit.
    pub fn to_wire(&self) -> Result<proto::SetupSpec, String> {
        fn text(field: &str, p: &std::path::Path) -> Result<proto::Text, String> {
            p.to_str()
                .and_then(|t| proto::Text::try_from(t).ok())
                .ok_or_else(|| {
                    format!(
                        "{field} {} is not UTF-8 or longer than 256 bytes: use a shorter path",
                        p.display()
                    )
                })
        }
        Ok(proto::SetupSpec {
            veid: self.veid,
            template: text("the template path", &self.template)?,
            private: text("VE_PRIVATE", &self.private)?,
            root: text("VE_ROOT", &self.root)?,
            cgroup: text("the cgroup path", &self.cgroup)?,
            uid_base: self.uid_base,
            gid_base: self.gid_base,
            id_count: self.id_count,
            hostname: proto::Name::try_from(self.hostname.as_str())
                .map_err(|_| format!("HOSTNAME {:?} is longer than 64 bytes", self.hostname))?,
            policy_dir: text("the policy directory", &self.policy_dir)?,
            init: proto::Text::try_from(self.init.as_str())
                .map_err(|_| format!("the init path {:?} is longer than 256 bytes", self.init))?,
            pty_max: self.pty_max,
            devnodes: proto::Text::try_from(self.devnodes.join(" ").as_str())
                .map_err(|_| "DEVNODES is longer than 256 bytes: grant fewer nodes".to_owned())?,
            ipaddr: proto::LongText::try_from(vzconfig::net::render_ip_list(&self.ipaddr).as_str())
                .map_err(|_| {
                    "IP_ADDRESS is longer than 1024 bytes: give the VE fewer addresses".to_owned()
                })?,
            nameservers: proto::Text::try_from(
                self.nameservers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .as_str(),
            )
            .map_err(|_| "NAMESERVER is longer than 256 bytes".to_owned())?,
            searchdomains: proto::Text::try_from(self.searchdomains.join(" ").as_str())
                .map_err(|_| "SEARCHDOMAIN is longer than 256 bytes".to_owned())?,
            netif: proto::LongText::try_from(vzconfig::net::render_netifs(&self.netif).as_str())
                .map_err(|_| "NETIF is longer than 1024 bytes".to_owned())?,
            netdev: proto::Text::try_from(self.netdev.join(" ").as_str())
                .map_err(|_| "NETDEV is longer than 256 bytes".to_owned())?,
            restore: match &self.restore {
                Some(d) => text("the dump directory", d)?,
                None => proto::Text::new(),
            },
            checkpoint: self.checkpoint,
        })
    }
}

/// What vmmgr learns from a `vesetup` run.
#[derive(Debug)]
pub enum Outcome {
    Started {
        pid: i32,
        start_time: u64,
        pidfd: OwnedFd,
        /// The helper's own steps ([`proto::SETUP_STEPS`]), then `process`:
        /// the rest of the time from its spawn to its reply (exec, exit).
        steps: Vec<(&'static str, std::time::Duration)>,
    },
    Failed {
        message: String,
        broken_init: bool,
    },
}

/// Runs `vesetup` (the daemon side; forked by its server or executed, see
/// [`launch`]): sends `spec` on its channel and waits for its typed reply
/// and the init's pidfd. `stderr` lines of the helper are returned with a
/// failure.
pub fn spawn_helper(launcher: &launch::Launcher, spec: &Spec) -> Outcome {
    let helper = launcher.helper();
    let failed = |message: String| Outcome::Failed {
        message,
        broken_init: false,
    };
    let wire = match spec.to_wire() {
        Ok(w) => w,
        Err(e) => return failed(e),
    };
    let (ours, theirs) = match crate::fdpass::pair() {
        Ok(p) => p,
        Err(e) => return failed(format!("socketpair: {e}")),
    };
    let t0 = std::time::Instant::now();
    let run = match launcher.launch(theirs.as_fd()) {
        Ok(r) => r,
        Err(e) => return failed(format!("running {}: {e}", helper.display())),
    };
    drop(theirs);
    let mut buf = [0u8; proto::HEADER_LEN + 8192];
    let frame = proto::encode(proto::Kind::Setup, &wire, &mut buf)
        .map_err(|e| std::io::Error::other(format!("{e:?}")))
        .and_then(|n| crate::fdpass::send(ours.as_fd(), &buf[..n], None));
    let reply = frame.and_then(|()| crate::fdpass::recv(ours.as_fd(), &mut buf));
    let (stderr, status) = run.finish();
    let stderr = stderr.trim().to_owned();
    if !stderr.is_empty() {
        log::warn!("VE {}: {}: {stderr}", spec.veid, helper.display());
    }
    let (n, fd) = match reply {
        Ok(r) => r,
        Err(e) => {
            return failed(format!(
                "no reply from {} ({e}): {stderr}",
                helper.display()
            ))
        }
    };
    match (proto::decode::<proto::SetupReply>(&buf[..n]), fd) {
        (
            Ok((
                proto::Kind::Setup,
                proto::SetupReply::Started {
                    pid,
                    start_time,
                    steps_us,
                },
            )),
            Some(pidfd),
        ) => Outcome::Started {
            pid: pid as i32,
            start_time,
            pidfd,
            steps: helper_steps(&steps_us, t0.elapsed()),
        },
        (
            Ok((
                _,
                proto::SetupReply::Failed {
                    step, broken_init, ..
                },
            )),
            _,
        ) => Outcome::Failed {
            message: step.as_str().to_owned(),
            broken_init,
        },
        _ => failed(format!(
            "the setup helper gave no valid reply (exit {status:?}): {stderr}"
        )),
    }
}

/// The helper's reported steps by name, then `process`: what remains of
/// `total` (its exec, start-up and exit).
fn helper_steps(
    us: &[u32],
    total: std::time::Duration,
) -> Vec<(&'static str, std::time::Duration)> {
    let mut v: Vec<_> = proto::SETUP_STEPS
        .iter()
        .zip(us)
        .map(|(n, u)| (*n, std::time::Duration::from_micros(u64::from(*u))))
        .collect();
    let inside: std::time::Duration = v.iter().map(|(_, d)| *d).sum();
    v.insert(0, ("process", total.saturating_sub(inside)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            veid: 101,
            template: "/usr/share/vz/template/busybox".into(),
            private: "/vz/private/101".into(),
            root: "/vz/root/101".into(),
            cgroup: "/sys/fs/cgroup/vz/101/ve".into(),
            uid_base: 6_719_936,
            gid_base: 6_719_936,
            id_count: 65_536,
            hostname: "ve101.example.com".into(),
            policy_dir: "/etc/vzpolicy".into(),
            init: "/sbin/init".into(),
            pty_max: 256,
            devnodes: vec!["net/tun".into()],
            ipaddr: vzconfig::net::parse_ip_list("192.0.2.5 2001:db8::5/64").expect("ips"),
            nameservers: vec!["192.0.2.53".parse().expect("ip")],
            searchdomains: vec!["example.com".into()],
            netif: vzconfig::net::parse_netifs("ifname=eth0,bridge=vmbr0")
                .expect("netif")
                .iter()
                .map(|n| n.filled(101))
                .collect(),
            netdev: vec!["eth1".into()],
            restore: Some("/vz/dump/Dump.101".into()),
            checkpoint: true,
        }
    }

    #[test]
    fn the_spec_crosses_to_the_helper_unchanged() {
        let wire = spec().to_wire().expect("fits");
        let mut buf = [0u8; proto::HEADER_LEN + 8192];
        let n = proto::encode(proto::Kind::Setup, &wire, &mut buf).expect("encode");
        let (kind, back): (proto::Kind, proto::SetupSpec) =
            proto::decode(&buf[..n]).expect("decode");
        assert_eq!(kind, proto::Kind::Setup);
        assert_eq!(Spec::from(&back), spec());
        let mut long = spec();
        long.private = format!("/vz/private/{}", "x".repeat(300)).into();
        let e = long
            .to_wire()
            .expect_err("too long for the wire: refused, not cut");
        assert!(e.contains("VE_PRIVATE"), "{e}");
    }

    #[test]
    fn the_servers_policy_serves_its_own_directory_only() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/etc/vzpolicy");
        let read = |checkpoint| read_policy_dir(0, &repo, checkpoint).expect("the shipped policy");
        let (plain, chk) = (read(false), read(true));
        // CHECKPOINT changes the filter (no nested namespaces), so which
        // one a run gets shows.
        assert_ne!(plain.seccomp, chk.seccomp);
        let pre = Preloaded {
            dir: repo.clone(),
            plain: Some(read(false)),
            checkpoint: Some(read(true)),
        };
        let mut s = spec();
        s.policy_dir = repo.clone();
        s.checkpoint = false;
        assert_eq!(pre.get(&s).map(|p| &p.seccomp), Some(&plain.seccomp));
        s.checkpoint = true;
        assert_eq!(pre.get(&s).map(|p| &p.seccomp), Some(&chk.seccomp));
        // Another directory is read by the run itself.
        s.policy_dir = "/etc/vzpolicy".into();
        assert!(pre.get(&s).is_none());
        // Nothing read ahead serves nothing.
        assert!(Preloaded::default().get(&s).is_none());
        // The source tree is writable: never read ahead.
        let writable = rustix::fs::statvfs(&repo)
            .is_ok_and(|v| !v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
        if writable {
            s.policy_dir = repo.clone();
            assert!(Preloaded::read(&repo).get(&s).is_none());
        }
    }

    #[test]
    fn setup_errors_become_typed_replies() {
        let e = SetupError::BrokenInit {
            veid: 101,
            init: "/sbin/init".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOEXEC),
        };
        match e.reply() {
            proto::SetupReply::Failed {
                step,
                errno,
                broken_init,
            } => {
                assert!(broken_init);
                assert_eq!(errno, libc::ENOEXEC);
                assert!(step.contains("/sbin/init"), "{step}");
            }
            other => panic!("{other:?}"),
        }
        let cx = Ctx { veid: 102 };
        match cx.fail("masking /proc/kcore", "gone").reply() {
            proto::SetupReply::Failed {
                broken_init, step, ..
            } => {
                assert!(!broken_init);
                assert!(step.contains("VE 102: masking /proc/kcore: gone"), "{step}");
            }
            other => panic!("{other:?}"),
        }
    }
}
