//! `vzctl restore`: the VE's root is built as for a start (the policy is
//! not needed: the seccomp filter, capabilities and mounts come back from
//! the images), then CRIU brings back the VE's processes, namespaces,
//! mounts and network namespace onto it.
//!
//! CRIU runs here, in the staging namespace A (a copy of the appliance's,
//! with the overlay root attached at `<VE_ROOT>/root`): every program it
//! runs is the appliance's (`crate::criu`). The restored init is detached
//! from CRIU; vesetup is the child subreaper meanwhile, so the init is its
//! child when it opens a pidfd of it (no pid reuse race), and vmmgr's once
//! vesetup exits.

use super::{layers, userns, Ctx, SetupError, Spec, Started};
use std::os::fd::AsFd;
use std::path::Path;

/// What CRIU passes the action script (`relock`), besides its own
/// `CRTOOLS_*` variables.
const ENV_VEID: &str = "VZ_VEID";
const ENV_ROOT: &str = "VZ_STAGE_ROOT";
const ENV_POLICY: &str = "VZ_POLICY_DIR";
/// "1": the VE has a routed pair, whose appliance end CRIU made.
const ENV_ROUTED: &str = "VZ_ROUTED";
/// The VE's cgroup (vmmgr's, above the delegated one).
const ENV_CGROUP: &str = "VZ_CGROUP";
/// The appliance's ends of the VE's bridged pairs, `NAME=MAC` each.
const ENV_BRIDGED: &str = "VZ_BRIDGED";
/// The images directory (renamed `.used` once the VE is about to run).
const ENV_IMAGES: &str = "VZ_IMAGES";
/// "UID_BASE GID_BASE": the id map the VE must come back with.
const ENV_IDS: &str = "VZ_IDS";

pub(super) fn run(spec: &Spec, images: &Path) -> Result<Started, SetupError> {
    let cx = Ctx { veid: spec.veid };
    let mut steps = crate::timing::Steps::new();
    steps.mark("policy");
    super::staging_namespace(&cx)?;
    // CRIU mounts proc and sysfs inside the VE's new user namespace, which
    // the kernel allows only where a whole instance is already visible: the
    // appliance's /proc has the beancounter view bound over a file. A is
    // ours alone, so the mounts on top of /proc go here.
    for m in mounts_below(Path::new("/proc")).into_iter().rev() {
        cx.at(
            format!("detaching {} in the staging namespace", m.display()),
            rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH),
        )?;
    }
    steps.mark("mountns");
    // The overlay is mounted inside a user namespace with the VE's id map
    // (the kernel needs one for its work dir); CRIU makes the VE's own.
    let userns = userns::create(spec, &cx)?;
    steps.mark("userns");
    let _root = layers::build_root(spec, &cx, userns.as_fd())?;
    drop(userns);
    steps.mark("layers");
    // /dev is the VE's own tmpfs, made here as for a start and handed to
    // CRIU as an external mount (its dump holds no device nodes, which the
    // VE's user namespace could not make again); CRIU mounts devpts,
    // /dev/shm and the appliance's nodes on it.
    let vedev = spec.root.join(crate::criu::DEV_KEY);
    cx.at("creating the staged /dev", std::fs::create_dir(&vedev))?;
    let tmp = super::dev::new_tmpfs(&cx, spec.uid_base, spec.gid_base)?;
    cx.at(
        "attaching the staged /dev",
        crate::mountfd::attach_at(tmp.as_fd(), &vedev),
    )?;
    let dev = cx.at("opening the staged /dev", crate::mountfd::open_dir(&vedev))?;
    super::dev::fill(
        &cx,
        dev.as_fd(),
        spec.uid_base,
        spec.gid_base,
        &spec.devnodes,
    )?;
    // What the VE had made on its /dev, recorded at the dump.
    let raw = record(images, crate::criu::dev::RECORD).map_err(|e| cx.fail("the dump", e))?;
    if let Some(raw) = raw {
        crate::criu::dev::apply(
            dev.as_fd(),
            &raw,
            (spec.uid_base, spec.gid_base),
            crate::config::ID_RANGE,
        )
        .map_err(|e| cx.fail("putting back the VE's /dev", e))?;
    }
    // What CRIU binds on the masks until `relock` replaces them: a mask
    // of its own (an empty, read-only tmpfs made for this restore), so that
    // a bind of a mask the VE made elsewhere comes back as a bind of the
    // same kind of thing, and nothing of the staging area.
    let empty = spec.root.join(crate::criu::MASK_KEY);
    cx.at("creating the masks' stand-in", std::fs::create_dir(&empty))?;
    let point = cx.at(
        "opening the masks' stand-in",
        crate::mountfd::open_dir(&empty),
    )?;
    let null = cx.at("opening /dev/null", crate::mountfd::open_dev_null())?;
    cx.at(
        "mounting the masks' stand-in",
        crate::mountfd::mask(point.as_fd(), null.as_fd()),
    )?;
    steps.mark("dev");
    // The VE's own cgroups, as it had them, before CRIU moves its
    // processes in.
    let raw = record(images, crate::criu::cgroups::RECORD).map_err(|e| cx.fail("the dump", e))?;
    if let Some(raw) = raw {
        let top = cx.at(
            format!("opening {}", spec.cgroup.display()),
            crate::mountfd::open_dir(&spec.cgroup),
        )?;
        crate::criu::cgroups::apply(top.as_fd(), &raw, (spec.uid_base, spec.gid_base))
            .map_err(|e| cx.fail("making the VE's cgroups again", e))?;
    }

    cx.at(
        "becoming the child subreaper",
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())),
    )?;
    // In the stage (ours alone): the images directory is renamed at
    // post-restore, before CRIU writes the pid.
    let pidfile = spec.root.join(crate::criu::PIDFILE);
    let venet = (!spec.ipaddr.is_empty()).then(|| crate::net::routed::host_ifname(spec.veid));
    let root = spec.root.join("root");
    let note = std::fs::read_to_string(images.join(crate::criu::NOTE)).unwrap_or_default();
    // Each bridged pair by the name its VE end had at the dump.
    let dumped = crate::criu::parse_note_veths(&note);
    let mut veths = Vec::new();
    for n in &spec.netif {
        let host = n.host_ifname.clone().unwrap_or_default();
        let ve = dumped
            .iter()
            .find(|(_, h)| *h == host)
            .map(|(v, _)| v.clone())
            .ok_or_else(|| {
                cx.fail(
                    "the dump",
                    format!(
                        "it has no bridged pair {host}: NETIF changed since the dump; start the \
                         VE afresh"
                    ),
                )
            })?;
        veths.push((ve, host, n.bridge.clone()));
    }
    let bridged: Vec<String> = spec
        .netif
        .iter()
        .map(|n| {
            format!(
                "{}={}",
                n.host_ifname.as_deref().unwrap_or_default(),
                vzconfig::net::render_mac(&n.host_mac.unwrap_or_default())
            )
        })
        .collect();
    let mut cmd = crate::criu::restore_command(
        images,
        &crate::criu::Staged {
            root: &root,
            dev: &vedev,
            empty: &empty,
            pidfile: &pidfile,
        },
        venet.as_deref(),
        &veths,
        crate::criu::note_leave_stopped(&note),
    );
    // CRIU makes the VE's mounts again inside its user namespace, where
    // none is locked: VE root could take the masks off /proc and /sys. At
    // `post-restore` (everything made, nothing resumed yet) this same
    // program puts locked ones in their place (`relock`).
    // CRIU runs the script at every one of its actions: the image's
    // dispatcher runs vesetup only for the two that need it (without it,
    // say outside the image, vesetup itself, which ends the others).
    let helper = match Path::new(ACTION_SCRIPT) {
        p if p.is_file() => p.to_path_buf(),
        _ => cx.at("finding vesetup", std::env::current_exe())?,
    };
    cmd.arg("--action-script")
        .arg(&helper)
        .env(ENV_VEID, spec.veid.to_string())
        .env(ENV_ROOT, &root)
        .env(ENV_POLICY, &spec.policy_dir)
        .env(ENV_ROUTED, if venet.is_some() { "1" } else { "" })
        .env(ENV_BRIDGED, bridged.join(" "))
        .env(ENV_IMAGES, images)
        .env(ENV_CGROUP, spec.cgroup.parent().unwrap_or(&spec.cgroup))
        .env(ENV_IDS, format!("{} {}", spec.uid_base, spec.gid_base));
    crate::criu::run(cmd, &images.join(crate::criu::RESTORE_LOG)).map_err(|e| {
        // Past post-restore the images (and CRIU's log) are `.used`.
        let mut used = images.as_os_str().to_owned();
        used.push(".used");
        let moved = Path::new(&used).join(crate::criu::RESTORE_LOG);
        let e = if moved.exists() {
            format!(
                "{} failed after the VE's images were marked used: {} (the whole log: {})",
                crate::criu::CRIU,
                crate::criu::last_errors(&moved),
                moved.display()
            )
        } else {
            e
        };
        cx.fail("restoring with CRIU", e)
    })?;
    let text = cx.at("reading CRIU's pid file", std::fs::read_to_string(&pidfile))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| cx.fail("reading CRIU's pid file", format!("{text:?} is no pid")))?;
    let pidfd = cx.at(
        "opening a pidfd of the restored init",
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()),
    )?;
    // It is ours (a child, see above) and in the VE's cgroup, or nothing
    // of it is trusted.
    let start_time = crate::runstate::start_time(pid.as_raw_nonzero().get())
        .ok_or_else(|| cx.fail("reading the restored init's start time", "it is gone"))?;
    let group = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.as_raw_nonzero()))
        .unwrap_or_default();
    let want = format!("0::/vz/{}/", spec.veid);
    if !group.trim_end().starts_with(&want) {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
        return Err(cx.fail(
            "checking the restored init",
            format!("it is not in the VE's cgroup ({})", group.trim()),
        ));
    }
    steps.mark("init");
    steps.mark("net");
    Ok(Started {
        pid,
        start_time,
        pidfd,
        steps,
    })
}

/// Mount points strictly below `top`, in mount order.
fn mounts_below(top: &Path) -> Vec<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    vzcommon::mountinfo::mount_points(&info)
        .into_iter()
        .map(std::path::PathBuf::from)
        .filter(|p| p != top && p.starts_with(top))
        .collect()
}

/// The image's action script for CRIU (`rootfs/etc/vzcriu/action`): it
/// runs vesetup at `post-setup-namespaces` and `post-restore` only.
pub const ACTION_SCRIPT: &str = "/etc/vzcriu/action";

/// `vesetup` run by CRIU as its action script (`CRTOOLS_SCRIPT_ACTION` in
/// the environment): at `post-setup-namespaces`, the controllers of the
/// VE's own cgroups; at `post-restore`, [`relock`] and the appliance's end
/// of the VE's routed pair; nothing at the other actions. Returns the exit
/// code (not 0: CRIU fails the restore, and kills what it made).
pub fn action_script(action: &str) -> i32 {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if action == "post-setup-namespaces" {
        return match (var(ENV_CGROUP), var(ENV_IMAGES)) {
            (Some(cg), Some(images)) => match enable_cgroups(Path::new(&cg), Path::new(&images)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("vesetup: post-setup-namespaces: {e}");
                    1
                }
            },
            _ => {
                eprintln!("vesetup: post-setup-namespaces: {ENV_CGROUP} or {ENV_IMAGES} missing");
                1
            }
        };
    }
    if action != "post-restore" {
        return 0;
    }
    let ids = var(ENV_IDS).and_then(|v| {
        let (u, g) = v.split_once(' ')?;
        Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?))
    });
    let (Some(veid), Some(root), Some(policy), Some(cgroup), Some(pid), Some(images), Some(ids)) = (
        var(ENV_VEID).and_then(|v| v.parse::<u32>().ok()),
        var(ENV_ROOT),
        var(ENV_POLICY),
        var(ENV_CGROUP),
        var("CRTOOLS_INIT_PID").and_then(|v| v.parse::<i32>().ok()),
        var(ENV_IMAGES),
        ids,
    ) else {
        eprintln!(
            "vesetup: post-restore: {ENV_VEID}, {ENV_ROOT}, {ENV_POLICY}, {ENV_CGROUP}, {ENV_IMAGES}, \
             {ENV_IDS} or CRTOOLS_INIT_PID missing"
        );
        return 1;
    };
    let restored = Restored {
        root: root.into(),
        policy: policy.into(),
        cgroup: cgroup.into(),
        pid,
        images: images.into(),
        ids,
        routed: var(ENV_ROUTED).is_some(),
        bridged: var(ENV_BRIDGED)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|e| {
                let (name, mac) = e.split_once('=')?;
                Some((name.to_owned(), vzconfig::net::parse_mac(mac).ok()?))
            })
            .collect(),
    };
    let done = post_restore(&Ctx { veid }, &restored);
    match done {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vesetup: {}", super::chain(&e));
            1
        }
    }
}

/// vmmgr's record `name` beside the images; `None` if the dump has none
/// (one made before there were records).
fn record(images: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
    let path = images.join(name);
    match std::fs::read(&path) {
        Ok(raw) => Ok(Some(raw)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// The controllers of the VE's own cgroups (`criu::cgroups`), once its
/// init has left the delegated group.
fn enable_cgroups(cgroup: &Path, images: &Path) -> Result<(), String> {
    let Some(raw) = record(images, crate::criu::cgroups::RECORD)? else {
        return Ok(());
    };
    let delegated = crate::daemon::cgroup::delegated(cgroup);
    let top = crate::mountfd::open_dir(&delegated)
        .map_err(|e| format!("opening {}: {e}", delegated.display()))?;
    crate::criu::cgroups::enable(top.as_fd(), &raw)
}

/// What CRIU and vesetup's restore tell the post-restore step.
struct Restored {
    /// The overlay root in the staging namespace.
    root: std::path::PathBuf,
    policy: std::path::PathBuf,
    /// The VE's cgroup (vmmgr's, above the delegated one).
    cgroup: std::path::PathBuf,
    /// The restored init (appliance's PID namespace).
    pid: i32,
    images: std::path::PathBuf,
    /// UID and GID base the VE's config gives it.
    ids: (u32, u32),
    /// It has a routed pair.
    routed: bool,
    /// The appliance's ends of its bridged pairs, with the MAC a start
    /// gives them.
    bridged: Vec<(String, [u8; 6])>,
}

/// Everything between CRIU's restore and the VE's first instruction: its id
/// map checked, its masks locked, CRIU's old network lock gone, the
/// appliance's end of its pair set up, and its images marked used (from
/// here on the VE runs, and its dump would run old memory over newer
/// files).
fn post_restore(cx: &Ctx, r: &Restored) -> Result<(), SetupError> {
    let Restored {
        root,
        policy,
        cgroup,
        pid,
        images,
        ids: (uid, gid),
        routed,
        bridged,
    } = r;
    let (pid, uid, gid, routed) = (*pid, *uid, *gid, *routed);
    let veid = cx.veid;
    for (file, base) in [("uid_map", uid), ("gid_map", gid)] {
        let map = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
        let want = [0, base, crate::config::ID_RANGE];
        let got: Vec<u32> = map
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if got != want {
            return Err(cx.fail(
                format!("checking the restored {file}"),
                format!(
                    "it is {:?}, the VE's config says 0 {base} {}: LOCAL_UID or LOCAL_GID changed \
                     since the dump; start the VE afresh",
                    map.trim(),
                    crate::config::ID_RANGE
                ),
            ));
        }
    }
    relock(veid, root, policy, cgroup, pid)?;
    let init = cx.at(
        "opening a pidfd of the restored init",
        rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).ok_or_else(|| cx.fail("post-restore", "pid 0"))?,
            rustix::process::PidfdFlags::empty(),
        ),
    )?;
    if let Some((_, dump_pid)) = std::fs::read_to_string(images.join(crate::criu::NOTE))
        .ok()
        .and_then(|t| crate::criu::parse_note(&t))
    {
        cx.at(
            "removing the dump's network lock",
            crate::criu::delete_lock_table(init.as_fd(), dump_pid),
        )?;
    }
    if routed {
        // The appliance's end as a start makes it, before the VE runs.
        let name = crate::net::routed::host_ifname(veid);
        vzcommon::rtnl::Rtnl::new()
            .and_then(|mut host| crate::net::routed::host_side(&mut host, veid))
            .map_err(|e| cx.fail(format!("setting up {name}"), e.to_string()))?;
    }
    // CRIU made the bridged pairs' appliance ends (in their bridges) with
    // MACs of its own: the ones a start gives, and up, before the VE runs.
    for (name, mac) in bridged {
        vzcommon::rtnl::Rtnl::new()
            .and_then(|mut host| {
                let index = host.index(name)?;
                host.set_mac(index, *mac)?;
                host.set_up(index, true)
            })
            .map_err(|e| cx.fail(format!("setting up {name}"), e.to_string()))?;
    }
    let mut used = images.as_os_str().to_owned();
    used.push(".used");
    cx.at(
        format!("marking {} used", images.display()),
        std::fs::rename(images, &used),
    )
}

/// Replaces the VE's /proc and /sys, as CRIU made them, by trees whose
/// masks the VE cannot remove: they are mounted here (the staging
/// namespace, from the restored VE's namespaces, as for a start), copied
/// into a mount namespace owned by the VE's user namespace (the kernel
/// locks every mount of such a copy), cloned from there with their locks,
/// and moved into the VE's mount namespace over CRIU's.
fn relock(
    veid: u32,
    root_dir: &Path,
    policy_dir: &Path,
    cgroup: &Path,
    pid: i32,
) -> Result<(), SetupError> {
    use rustix::thread::ThreadNameSpaceType as T;
    let cx = Ctx { veid };
    // (Only the masks: the seccomp filter came back with the processes.)
    let policy = super::read_policy_dir(veid, policy_dir, true)?;
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| cx.fail("post-restore", "CRTOOLS_INIT_PID is 0"))?;
    let init = cx.at(
        "opening a pidfd of the restored init",
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()),
    )?;
    let root = cx.at(
        format!("opening {}", root_dir.display()),
        crate::mountfd::open_dir(root_dir),
    )?;
    let null = cx.at("opening /dev/null", crate::mountfd::open_dev_null())?;
    super::kernfs::mount_all(&cx, init.as_fd(), root.as_fd(), null.as_fd(), &policy)?;

    // SAFETY: CRIU's action script is single-threaded.
    let forked = unsafe { crate::sys::fork_single_threaded() };
    match cx.at("forking the relocker", forked)? {
        None => {
            let r = (|| -> Result<(), SetupError> {
                // The appliance's proc, to read this process's own mount
                // table once in the VE's namespace: listed from that
                // namespace's root, not from where the VE's init may have
                // chrooted.
                let proc = cx.at("opening /proc", crate::mountfd::open_dir("/proc"))?;
                cx.at(
                    "joining the VE's user namespace",
                    rustix::thread::move_into_thread_name_spaces(init.as_fd(), T::USER),
                )?;
                cx.at(
                    "copying the staging mount namespace",
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
                )?;
                let mut trees = Vec::new();
                for at in ["proc", "sys"] {
                    let tree = cx.at(
                        format!("cloning the locked /{at}"),
                        rustix::mount::open_tree(
                            rustix::fs::CWD,
                            root_dir.join(at).as_path(),
                            rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
                                | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC
                                | rustix::mount::OpenTreeFlags::AT_RECURSIVE
                                | rustix::mount::OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
                        ),
                    )?;
                    trees.push((at, tree));
                }
                cx.at(
                    "entering the VE's mount namespace",
                    rustix::thread::move_into_thread_name_spaces(init.as_fd(), T::MOUNT),
                )?;
                let ve_root = cx.at("opening the VE's root", crate::mountfd::open_dir("/"))?;
                for (at, tree) in trees {
                    // Everything CRIU stacked there (a VE may have mounted
                    // over its /proc before the dump), down to the
                    // directory: nothing unlocked stays under ours.
                    let mut layers = 0;
                    loop {
                        match rustix::mount::unmount(
                            format!("/{at}").as_str(),
                            rustix::mount::UnmountFlags::DETACH
                                | rustix::mount::UnmountFlags::NOFOLLOW,
                        ) {
                            Ok(()) => layers += 1,
                            Err(rustix::io::Errno::INVAL) if layers > 0 => break,
                            Err(e) => {
                                return Err(
                                    cx.fail(format!("detaching CRIU's /{at}"), e.to_string())
                                )
                            }
                        }
                    }
                    let point = cx.at(
                        format!("opening /{at}"),
                        crate::mountfd::open_in_root(ve_root.as_fd(), at, true),
                    )?;
                    cx.at(
                        format!("attaching the locked /{at}"),
                        crate::mountfd::attach(tree.as_fd(), point.as_fd()),
                    )?;
                }
                // What could not be replaced fails the restore: a proc or
                // sysfs anywhere else in the VE's namespace.
                let info = cx.at(
                    "reading the restored mount table",
                    rustix::fs::openat(
                        &proc,
                        "thread-self/mountinfo",
                        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                        rustix::fs::Mode::empty(),
                    )
                    .map_err(std::io::Error::from)
                    .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd))),
                )?;
                let stray = crate::criu::stray_kernfs(&info);
                if !stray.is_empty() {
                    return Err(cx.fail(
                        "checking the restored mounts",
                        format!("proc or sysfs outside /proc and /sys: {}", stray.join(", ")),
                    ));
                }
                Ok(())
            })();
            if let Err(e) = &r {
                eprintln!("vesetup: {}", super::chain(e));
            }
            std::process::exit(i32::from(r.is_err()));
        }
        Some(child) => {
            let st = cx.at(
                "waiting for the relocker",
                rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty()),
            )?;
            if !matches!(st, Some((_, s)) if s.exit_status() == Some(0)) {
                return Err(cx.fail("locking the VE's masks", "the relocker failed"));
            }
            // A namespace of its own fails it too (chkpnt refuses one;
            // this is the check of the images as they came back).
            let pid = pid.as_raw_nonzero().get();
            crate::criu::own_namespaces(cgroup, pid)
                .map_err(|why| cx.fail("checking the restored processes", why))
        }
    }
}
