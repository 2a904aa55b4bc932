//! The VE's own network files, written as OpenVZ's distribution scripts
//! write them: `/etc/resolv.conf` from NAMESERVER and SEARCHDOMAIN (the
//! `search` line replaced, the `nameserver` lines replaced, the rest kept),
//! `/etc/hosts` with the hostname on the VE's first address (in OpenVZ's
//! marked block), `/etc/hostname` with the short name.
//!
//! Written by the VE init itself, as VE root, after the pivot and before
//! the template's init runs: nothing of the appliance is in its reach. Each
//! file is opened beneath the VE's root without following any link
//! (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`); a file the VE made a link
//! (a resolvconf setup, say) is the VE's to keep, and left alone. A file is
//! replaced by renaming a new one over it.

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The comment OpenVZ marks its hosts line with.
pub const HOSTS_MARK: &str = "# Auto-generated hostname. Please do not remove this comment.";

/// `resolv.conf` with `servers` and `search` (either may be empty: that
/// part is left as it was).
pub fn render_resolv(old: &str, servers: &[IpAddr], search: &[String]) -> String {
    let mut out = String::new();
    let mut searched = false;
    for l in old.lines() {
        let word = l.split_whitespace().next().unwrap_or("");
        if !servers.is_empty() && word == "nameserver" {
            continue;
        }
        if !search.is_empty() && (word == "search" || word == "domain") {
            if !searched {
                out.push_str(&format!("search {}\n", search.join(" ")));
                searched = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !search.is_empty() && !searched {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

/// `/etc/hosts` with the localhost lines it needs and OpenVZ's marked line
/// for `hostname` (on `ip`, or 127.0.0.1 without one).
pub fn render_hosts(old: &str, hostname: &str, ip: Option<IpAddr>) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_owned()
    } else {
        format!("{hostname} {short}")
    };
    let mut out = String::new();
    let mut lines = old.lines().peekable();
    let mut v4_local = false;
    let mut v6_local = false;
    while let Some(l) = lines.next() {
        if l.trim() == HOSTS_MARK {
            // Our line follows the mark: both go, and come back below.
            lines.next();
            continue;
        }
        let first = l.split_whitespace().next().unwrap_or("");
        v4_local |= first == "127.0.0.1";
        v6_local |= first == "::1";
        out.push_str(l);
        out.push('\n');
    }
    let mut head = String::new();
    if !v4_local {
        head.push_str("127.0.0.1 localhost.localdomain localhost\n");
    }
    if !v6_local {
        head.push_str("::1 localhost ip6-localhost ip6-loopback\n");
    }
    let addr = ip.map_or("127.0.0.1".to_owned(), |i| i.to_string());
    format!("{head}{out}{HOSTS_MARK}\n{addr} {names}\n")
}

/// The largest file read (a hosts file of a million names is ~40 MiB; one
/// that size is the VE's to keep).
const MAX_SIZE: i64 = 4 << 20;

const IN_ROOT_NO_LINKS: rustix::fs::ResolveFlags = rustix::fs::ResolveFlags::IN_ROOT
    .union(rustix::fs::ResolveFlags::NO_SYMLINKS)
    .union(rustix::fs::ResolveFlags::NO_MAGICLINKS);

/// Replaces `etc/<name>` under `root` with what `render` makes of its old
/// text; a link there (or an `etc` that is one) is left alone.
pub fn update(
    root: BorrowedFd<'_>,
    name: &str,
    render: impl FnOnce(&str) -> String,
) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let etc: OwnedFd = match rustix::fs::openat2(
        root,
        "etc",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT_NO_LINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::XDEV) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => {
            rustix::fs::mkdirat(root, "etc", Mode::from_raw_mode(0o755))?;
            rustix::fs::openat2(
                root,
                "etc",
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                IN_ROOT_NO_LINKS,
            )?
        }
        Err(e) => return Err(e.into()),
    };
    // Non-blocking and checked before reading: a FIFO or a device the VE
    // put there is left alone (never waited on), and so is a file larger
    // than any of these files is (never read into memory).
    let old = match rustix::fs::openat(
        &etc,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
                || st.st_size > MAX_SIZE
            {
                return Ok(());
            }
            let mut s = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::fs::File::from(fd), MAX_SIZE as u64),
                &mut s,
            )?;
            s
        }
        // A link the VE made: its own.
        Err(rustix::io::Errno::LOOP) => return Ok(()),
        Err(rustix::io::Errno::NOENT) => String::new(),
        Err(e) => return Err(e.into()),
    };
    let text = render(&old);
    if text == old {
        return Ok(());
    }
    let tmp = format!(".{name}.vz-new");
    let _ = rustix::fs::unlinkat(&etc, &tmp, rustix::fs::AtFlags::empty());
    let fd = rustix::fs::openat(
        &etc,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    rustix::fs::renameat(&etc, &tmp, &etc, name)?;
    Ok(())
}

/// Writes the three files for `spec`, in the VE's root `/`.
pub(super) fn write_all(spec: &super::Spec) -> std::io::Result<()> {
    let root = std::fs::File::open("/")?;
    let root = root.as_fd();
    if !spec.nameservers.is_empty() || !spec.searchdomains.is_empty() {
        update(root, "resolv.conf", |old| {
            render_resolv(old, &spec.nameservers, &spec.searchdomains)
        })?;
    }
    let ip = spec.ipaddr.first().map(|a| a.ip);
    update(root, "hosts", |old| render_hosts(old, &spec.hostname, ip))?;
    let short = spec.hostname.split('.').next().unwrap_or(&spec.hostname);
    update(root, "hostname", |_| format!("{short}\n"))?;
    Ok(())
}

/// What a running VE's files are rewritten with (`vesetup netfiles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub hostname: String,
    pub ip: Option<IpAddr>,
    pub nameservers: Vec<IpAddr>,
    pub searchdomains: Vec<String>,
}

impl Live {
    /// `vesetup netfiles` arguments: hostname, first address, servers,
    /// domains (`-` for none; lists comma-separated).
    pub fn to_args(&self) -> Vec<String> {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        vec![
            self.hostname.clone(),
            self.ip.map_or("-".to_owned(), |i| i.to_string()),
            list(self.nameservers.iter().map(ToString::to_string).collect()),
            list(self.searchdomains.clone()),
        ]
    }

    pub fn from_args(a: &[String]) -> Result<Live, String> {
        let [hostname, ip, ns, sd] = a else {
            return Err("netfiles: HOSTNAME IP NAMESERVERS SEARCHDOMAINS".into());
        };
        let list = |s: &str| -> Vec<String> {
            if s == "-" {
                Vec::new()
            } else {
                s.split(',').map(str::to_owned).collect()
            }
        };
        Ok(Live {
            hostname: hostname.clone(),
            ip: ip.parse().ok(),
            nameservers: list(ns).iter().filter_map(|n| n.parse().ok()).collect(),
            searchdomains: list(sd),
        })
    }
}

/// In a running VE (helper mode, single-threaded): joins its mount
/// namespace, becomes its root's host ids (no capability left: only what
/// VE root may write), and rewrites the files.
pub fn run_live(init: BorrowedFd<'_>, owner: (u32, u32), live: &Live) -> Result<(), String> {
    let root = super::helper::enter_mount_ns(init)?;
    let root_dir = rustix::fs::openat(
        &root,
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening the VE's root: {e}"))?;
    let gid = rustix::process::Gid::from_raw(owner.1);
    let uid = rustix::process::Uid::from_raw(owner.0);
    rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    let r = root_dir.as_fd();
    if !live.nameservers.is_empty() || !live.searchdomains.is_empty() {
        update(r, "resolv.conf", |old| {
            render_resolv(old, &live.nameservers, &live.searchdomains)
        })
        .map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    }
    update(r, "hosts", |old| render_hosts(old, &live.hostname, live.ip))
        .map_err(|e| format!("/etc/hosts: {e}"))?;
    let short = live.hostname.split('.').next().unwrap_or(&live.hostname);
    update(r, "hostname", |_| format!("{short}\n")).map_err(|e| format!("/etc/hostname: {e}"))?;
    Ok(())
}

/// Runs `helper netfiles` for the running VE whose init is `init`.
pub fn spawn_live(
    helper: &std::path::Path,
    init: &OwnedFd,
    owner: (u32, u32),
    live: &Live,
) -> Result<(), String> {
    let mut args = vec!["netfiles".to_owned(), format!("{}:{}", owner.0, owner.1)];
    args.extend(live.to_args());
    super::helper::spawn(helper, init, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_args_round_trip() {
        let l = Live {
            hostname: "web.example.com".into(),
            ip: Some("192.0.2.10".parse().expect("ip")),
            nameservers: vec![
                "192.0.2.53".parse().expect("ip"),
                "2001:db8::53".parse().expect("ip"),
            ],
            searchdomains: vec![],
        };
        assert_eq!(Live::from_args(&l.to_args()), Ok(l));
    }

    #[test]
    fn resolv_keeps_other_lines() {
        let old = "# mine\nsearch old.example\nnameserver 192.0.2.1\noptions ndots:2\n";
        let new = render_resolv(
            old,
            &["198.51.100.53".parse().expect("ip")],
            &["example.com".into()],
        );
        assert_eq!(
            new,
            "# mine\nsearch example.com\noptions ndots:2\nnameserver 198.51.100.53\n"
        );
        assert_eq!(render_resolv(old, &[], &[]), old);
    }

    #[test]
    fn hosts_has_one_marked_line() {
        let first = render_hosts(
            "",
            "web.example.com",
            Some("192.0.2.10".parse().expect("ip")),
        );
        assert!(first.starts_with("127.0.0.1 localhost.localdomain localhost\n::1 "));
        assert!(first.ends_with(&format!("{HOSTS_MARK}\n192.0.2.10 web.example.com web\n")));
        let again = render_hosts(&first, "db", None);
        assert_eq!(again.matches(HOSTS_MARK).count(), 1, "{again}");
        assert!(again.ends_with("127.0.0.1 db\n"), "{again}");
        assert_eq!(again.matches("127.0.0.1 localhost").count(), 1);
    }

    #[test]
    fn a_link_is_left_alone_and_nothing_escapes() {
        let t = tempfile::tempdir().expect("tempdir");
        let outside = t.path().join("outside");
        std::fs::write(&outside, "precious\n").expect("write");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("etc/resolv.conf")).expect("link");
        let r = std::fs::File::open(&root).expect("root");
        update(r.as_fd(), "resolv.conf", |_| {
            "nameserver 192.0.2.1\n".into()
        })
        .expect("skip");
        assert_eq!(
            std::fs::read_to_string(&outside).expect("read"),
            "precious\n"
        );
        update(r.as_fd(), "hosts", |old| format!("{old}x\n")).expect("write");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hosts")).expect("read"),
            "x\n"
        );
        // A FIFO is never waited on.
        let root3 = t.path().join("root3");
        std::fs::create_dir_all(root3.join("etc")).expect("mkdir");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root3.join("etc/hostname"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        let r3 = std::fs::File::open(&root3).expect("root");
        update(r3.as_fd(), "hostname", |_| "x\n".into()).expect("skip");
        // An etc that is a link: nothing written.
        let root2 = t.path().join("root2");
        std::fs::create_dir_all(&root2).expect("mkdir");
        std::os::unix::fs::symlink(t.path(), root2.join("etc")).expect("link");
        let r2 = std::fs::File::open(&root2).expect("root");
        update(r2.as_fd(), "outside", |_| "owned\n".into()).expect("skip");
        assert_eq!(
            std::fs::read_to_string(&outside).expect("read"),
            "precious\n"
        );
    }
}
