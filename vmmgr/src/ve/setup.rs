//! Building a VE and starting its init: run by the single-threaded `vesetup`
//! helper that vmmgr spawns for each start. Reads top to bottom in the order
//! the kernel needs:
//!
//! 1. a user namespace for the VE, its uid/gid map written from outside;
//! 2. idmapped detached mounts of the template (read-only) and of the VE's
//!    private area, made from the initial namespace;
//! 3. into the VE's cgroup, then into its user namespace as its root;
//! 4. new mount, UTS, IPC, network, cgroup and PID namespaces;
//! 5. the overlay root on the two idmapped layers (`userxattr`), /dev;
//! 6. fork: the child is PID 1 of the VE: /proc, read-only /sys, cgroup2,
//!    masked and read-only proc paths, pivot_root, hostname, `lo`,
//!    capability bounding set, closed descriptors, exec the template's init.

use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use rustix::thread::LinkNameSpaceType;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What `vesetup` is told to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub veid: u32,
    /// The template tree (read-only lower layer).
    pub template: PathBuf,
    /// The VE's private area: holds `upper/` and `work/`.
    pub private: PathBuf,
    /// Mount point used while building the root (`/vz/root/<VEID>`).
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
    #[error("VE {veid}: the VE init failed before it ran: {message}")]
    Init { veid: u32, message: String },
}

struct Ctx {
    veid: u32,
}

impl Ctx {
    fn at<T, E: Into<std::io::Error>>(
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
}

/// Builds the VE and starts its init. Returns the init's pid (in the initial
/// PID namespace) once it has executed the template's init program.
pub fn run(spec: &Spec) -> Result<i32, SetupError> {
    let cx = Ctx { veid: spec.veid };
    let keep = read_policy_caps(spec)?;
    let masked = read_policy_list(&spec.policy_dir.join("masked-paths"));
    let readonly = read_policy_list(&spec.policy_dir.join("readonly-paths"));

    // 1. The user namespace.
    let userns = make_userns(spec, &cx)?;

    // 2. Idmapped layers, made while we are still root of the initial namespace.
    let template = idmapped_tree(&cx, &spec.template, &userns, true)?;
    let private = idmapped_tree(&cx, &spec.private, &userns, false)?;

    // 3. Our cgroup first (so the cgroup namespace is rooted there), then the
    // user namespace, as its root.
    cx.at(
        format!("joining cgroup {}", spec.cgroup.display()),
        std::fs::write(spec.cgroup.join("cgroup.procs"), "0"),
    )?;
    cx.at(
        "joining the VE user namespace",
        rustix::thread::move_into_link_name_space(userns.as_fd(), Some(LinkNameSpaceType::User)),
    )?;
    cx.at(
        "setgroups in the VE",
        rustix::thread::set_thread_groups(&[]),
    )?;
    let root_gid = rustix::process::Gid::from_raw(0);
    let root_uid = rustix::process::Uid::from_raw(0);
    cx.at(
        "becoming VE root (gid)",
        rustix::thread::set_thread_res_gid(root_gid, root_gid, root_gid),
    )?;
    cx.at(
        "becoming VE root (uid)",
        rustix::thread::set_thread_res_uid(root_uid, root_uid, root_uid),
    )?;

    // 4. The other namespaces (PID applies to our next child).
    use nix::sched::CloneFlags;
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWPID;
    cx.at("creating the VE namespaces", nix::sched::unshare(flags))?;
    cx.at(
        "making mounts private",
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        ),
    )?;

    // 5. The root filesystem.
    let stage = &spec.root;
    cx.at(
        format!("mounting the staging tmpfs on {}", stage.display()),
        rustix::mount::mount(
            "vzstage",
            stage,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=0700"),
        ),
    )?;
    for d in ["lower", "data", "root"] {
        cx.at(
            format!("creating {d} in the stage"),
            std::fs::create_dir(stage.join(d)),
        )?;
    }
    let lower = stage.join("lower");
    let data = stage.join("data");
    let root = stage.join("root");
    cx.at(
        "attaching the template layer",
        rustix::mount::move_mount(
            template.as_fd(),
            "",
            rustix::fs::CWD,
            &lower,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        ),
    )?;
    cx.at(
        "attaching the private area",
        rustix::mount::move_mount(
            private.as_fd(),
            "",
            rustix::fs::CWD,
            &data,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        ),
    )?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.display(),
        data.join("upper").display(),
        data.join("work").display()
    );
    let opts_c = std::ffi::CString::new(opts.clone()).unwrap_or_default();
    cx.at(
        format!("mounting the overlay root ({opts})"),
        rustix::mount::mount(
            "overlay",
            &root,
            "overlay",
            MountFlags::empty(),
            Some(opts_c.as_c_str()),
        ),
    )?;
    setup_dev(&cx, &root)?;

    // 6. PID 1 of the VE.
    let (rx, tx) = cx.at(
        "creating the start pipe",
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC),
    )?;
    match cx.at("forking the VE init", crate::sys::fork_single_threaded())? {
        None => {
            drop(rx);
            let mut tx = File::from(tx);
            let err = become_init(spec, &root, &masked, &readonly, &keep);
            // Only reached on failure: tell the helper why, then give up.
            let _ = tx.write_all(err.to_string().as_bytes());
            std::process::exit(1);
        }
        Some(pid) => {
            drop(tx);
            let mut msg = String::new();
            let _ = File::from(rx).read_to_string(&mut msg);
            if msg.is_empty() {
                Ok(pid)
            } else {
                Err(SetupError::Init {
                    veid: spec.veid,
                    message: msg,
                })
            }
        }
    }
}

fn read_policy_caps(spec: &Spec) -> Result<Vec<u32>, SetupError> {
    let path = spec.policy_dir.join("capabilities");
    let text = std::fs::read_to_string(&path).map_err(|e| SetupError::Policy {
        veid: spec.veid,
        message: format!("reading {}: {e}", path.display()),
    })?;
    super::caps::parse_keep_list(&text).map_err(|(line, name)| SetupError::Policy {
        veid: spec.veid,
        message: format!("{}:{line}: unknown capability {name:?}", path.display()),
    })
}

fn read_policy_list(path: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| l.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// A user namespace with the VE's id maps. A short-lived child creates it; we
/// write its maps (we are root of the parent namespace) and keep a handle.
fn make_userns(spec: &Spec, cx: &Ctx) -> Result<OwnedFd, SetupError> {
    let (ready_rx, ready_tx) = cx.at(
        "pipe",
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC),
    )?;
    let (done_rx, done_tx) = cx.at(
        "pipe",
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC),
    )?;
    match cx.at(
        "forking the namespace holder",
        crate::sys::fork_single_threaded(),
    )? {
        None => {
            drop(ready_rx);
            drop(done_tx);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = File::from(ready_tx).write_all(if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            let _ = File::from(done_rx).read(&mut b);
            std::process::exit(0);
        }
        Some(pid) => {
            drop(ready_tx);
            drop(done_rx);
            let mut b = [0u8; 1];
            let n = File::from(ready_rx).read(&mut b).unwrap_or(0);
            let result = if n == 1 && b[0] == b'1' {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let uid_map = format!("0 {} {}\n", spec.uid_base, spec.id_count);
                let gid_map = format!("0 {} {}\n", spec.gid_base, spec.id_count);
                cx.at(
                    "writing uid_map",
                    std::fs::write(proc.join("uid_map"), uid_map),
                )
                .and_then(|_| {
                    cx.at(
                        "writing gid_map",
                        std::fs::write(proc.join("gid_map"), gid_map),
                    )
                })
                .and_then(|_| {
                    cx.at(
                        "opening the user namespace",
                        File::open(proc.join("ns/user")),
                    )
                })
                .map(OwnedFd::from)
            } else {
                Err(SetupError::Step {
                    veid: spec.veid,
                    step: "creating the user namespace".into(),
                    source: std::io::Error::other("unshare(CLONE_NEWUSER) failed"),
                })
            };
            drop(done_tx);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            result
        }
    }
}

/// A detached copy of the mount at `path`, idmapped through `userns`.
fn idmapped_tree(
    cx: &Ctx,
    path: &Path,
    userns: &OwnedFd,
    readonly: bool,
) -> Result<OwnedFd, SetupError> {
    let fd = cx.at(
        format!("open_tree {}", path.display()),
        rustix::mount::open_tree(
            rustix::fs::CWD,
            path,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        ),
    )?;
    cx.at(
        format!("idmapping {}", path.display()),
        crate::sys::idmap_mount(fd.as_fd(), userns.as_fd(), readonly),
    )?;
    Ok(fd)
}

/// Device nodes a VE gets: bind mounts of the host's nodes (a user namespace
/// cannot create device nodes, and needs none other).
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn setup_dev(cx: &Ctx, root: &Path) -> Result<(), SetupError> {
    let dev = root.join("dev");
    let _ = std::fs::create_dir_all(&dev);
    cx.at(
        "mounting /dev",
        rustix::mount::mount(
            "tmpfs",
            &dev,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(c"mode=0755,size=64k"),
        ),
    )?;
    for node in DEV_NODES {
        let target = dev.join(node);
        cx.at(format!("creating /dev/{node}"), File::create(&target))?;
        cx.at(
            format!("binding /dev/{node}"),
            rustix::mount::mount_bind(Path::new("/dev").join(node), &target),
        )?;
    }
    // The VE's console: nothing is attached yet, so it reads EOF and discards.
    let console = dev.join("console");
    cx.at("creating /dev/console", File::create(&console))?;
    cx.at(
        "binding /dev/console",
        rustix::mount::mount_bind("/dev/null", &console),
    )?;
    for (dir, fstype, opts) in [
        ("pts", "devpts", c"newinstance,ptmxmode=0666,mode=0620"),
        ("shm", "tmpfs", c"mode=1777"),
    ] {
        let d = dev.join(dir);
        cx.at(format!("creating /dev/{dir}"), std::fs::create_dir(&d))?;
        cx.at(
            format!("mounting /dev/{dir}"),
            rustix::mount::mount(
                dir,
                &d,
                fstype,
                MountFlags::NOSUID | MountFlags::NOEXEC,
                Some(opts),
            ),
        )?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        cx.at(
            format!("linking /dev/{link}"),
            std::os::unix::fs::symlink(target, dev.join(link)),
        )?;
    }
    Ok(())
}

/// In the forked child, PID 1 of the new PID namespace: finishes the root and
/// executes the VE init. Returns only on failure.
fn become_init(
    spec: &Spec,
    root: &Path,
    masked: &[PathBuf],
    readonly: &[PathBuf],
    keep: &[u32],
) -> SetupError {
    let cx = Ctx { veid: spec.veid };
    match finish_root(&cx, spec, root, masked, readonly, keep) {
        Ok(()) => {}
        Err(e) => return e,
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&spec.init)
        .env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .env("TERM", "linux")
        .env("HOME", "/root")
        .env("container", "vz")
        .exec();
    SetupError::Step {
        veid: spec.veid,
        step: format!("executing the template's init {}", spec.init),
        source: err,
    }
}

fn finish_root(
    cx: &Ctx,
    spec: &Spec,
    root: &Path,
    masked: &[PathBuf],
    readonly: &[PathBuf],
    keep: &[u32],
) -> Result<(), SetupError> {
    let nodev = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let proc = root.join("proc");
    let sys = root.join("sys");
    let _ = std::fs::create_dir_all(&proc);
    let _ = std::fs::create_dir_all(&sys);
    cx.at(
        "mounting /proc",
        rustix::mount::mount("proc", &proc, "proc", nodev, None),
    )?;
    cx.at(
        "mounting /sys",
        rustix::mount::mount("sysfs", &sys, "sysfs", nodev | MountFlags::RDONLY, None),
    )?;
    cx.at(
        "mounting /sys/fs/cgroup",
        rustix::mount::mount("cgroup2", sys.join("fs/cgroup"), "cgroup2", nodev, None),
    )?;
    for p in masked {
        let target = root.join(p.strip_prefix("/").unwrap_or(p));
        let Ok(meta) = std::fs::symlink_metadata(&target) else {
            continue;
        };
        let r = if meta.is_dir() {
            rustix::mount::mount(
                "tmpfs",
                &target,
                "tmpfs",
                nodev | MountFlags::RDONLY,
                Some(c"size=0"),
            )
        } else {
            rustix::mount::mount_bind("/dev/null", &target)
        };
        cx.at(format!("masking {}", p.display()), r)?;
    }
    for p in readonly {
        let target = root.join(p.strip_prefix("/").unwrap_or(p));
        if !target.exists() {
            continue;
        }
        cx.at(
            format!("binding {}", p.display()),
            rustix::mount::mount_bind(&target, &target),
        )?;
        cx.at(
            format!("making {} read-only", p.display()),
            rustix::mount::mount_remount(
                &target,
                MountFlags::BIND | MountFlags::RDONLY | nodev,
                "",
            ),
        )?;
    }
    cx.at("entering the root", rustix::process::chdir(root))?;
    cx.at("pivot_root", rustix::process::pivot_root(".", "."))?;
    cx.at(
        "detaching the old root",
        rustix::mount::unmount(".", UnmountFlags::DETACH),
    )?;
    cx.at("chdir /", rustix::process::chdir("/"))?;
    cx.at(
        format!("setting hostname {:?}", spec.hostname),
        rustix::system::sethostname(spec.hostname.as_bytes()),
    )?;
    cx.at("bringing up lo", crate::sys::interface_up("lo"))?;
    cx.at("new session", rustix::process::setsid())?;
    let null = cx.at(
        "opening /dev/null",
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null"),
    )?;
    cx.at("connecting stdin", rustix::stdio::dup2_stdin(&null))?;
    cx.at("connecting stdout", rustix::stdio::dup2_stdout(&null))?;
    cx.at("connecting stderr", rustix::stdio::dup2_stderr(&null))?;
    drop(null);
    for cap in super::caps::to_drop(keep) {
        // A capability newer than this kernel is simply not there to drop.
        match crate::sys::drop_bounding_cap(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => {
                return Err(SetupError::Step {
                    veid: spec.veid,
                    step: format!("dropping capability {cap}"),
                    source: e,
                })
            }
        }
    }
    cx.at(
        "clearing ambient capabilities",
        rustix::thread::clear_ambient_capability_set(),
    )?;
    Ok(())
}

/// Closes every descriptor above stdio (the helper starts with nothing else).
pub fn close_inherited() -> std::io::Result<()> {
    crate::sys::close_fds_from(3)
}

/// The command line that runs `vesetup` for `spec`.
pub fn command(helper: &Path, spec: &Spec) -> std::process::Command {
    let mut c = std::process::Command::new(helper);
    c.arg("--veid")
        .arg(spec.veid.to_string())
        .arg("--template")
        .arg(&spec.template)
        .arg("--private")
        .arg(&spec.private)
        .arg("--root")
        .arg(&spec.root)
        .arg("--cgroup")
        .arg(&spec.cgroup)
        .arg("--uid-base")
        .arg(spec.uid_base.to_string())
        .arg("--gid-base")
        .arg(spec.gid_base.to_string())
        .arg("--id-count")
        .arg(spec.id_count.to_string())
        .arg("--hostname")
        .arg(&spec.hostname)
        .arg("--policy")
        .arg(&spec.policy_dir)
        .arg("--init")
        .arg(&spec.init);
    c
}
