//! The appliance's own interfaces, from `vz/net.conf` on VZBOOT (ours:
//! OpenVZ leaves the host's network to its distribution). Its `NETIF` has
//! the syntax of a VE's (`vzconfig::net::parse_uplinks`): per interface,
//! DHCP (busybox `udhcpc`, whose script is `/etc/udhcpc/default.script`),
//! router advertisements, static addresses and gateways; bridges the
//! appliance makes, with their ports. `NAMESERVER` and `SEARCHDOMAIN` make
//! the appliance's `/etc/resolv.conf` (which DHCP fills otherwise).
//!
//! A mistake in the file is logged with its file, line and key, and only
//! what it names is left out: the console works regardless, and VEs start
//! (their routed addresses do not depend on the uplink's configuration).

use std::io;
use std::net::IpAddr;
use std::path::Path;
use vzcommon::rtnl::{Route, Rtnl};
use vzconfig::net::{IpNet, NameServers, SearchDomains, Uplink};

/// Where it is read from (the boot config directory).
pub const FILE: &str = "net.conf";
/// The appliance's resolv.conf (`/etc/resolv.conf` links here).
pub const RESOLV: &str = "/run/resolv.conf";
/// The DHCP client's script.
pub const DHCP_SCRIPT: &str = "/etc/udhcpc/default.script";

/// `net.conf`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetConf {
    pub uplinks: Vec<Uplink>,
    pub nameservers: Vec<IpAddr>,
    pub searchdomains: Vec<String>,
    /// Sources masqueraded behind the appliance on the way out (VE
    /// addresses the uplink's network cannot route back).
    pub masquerade: Vec<IpNet>,
}

/// Parses `MASQUERADE`: prefixes (`192.0.2.0/24 2001:db8:1::/64`), or
/// `all` (every VE address).
pub fn parse_masquerade(v: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for t in v.split_whitespace() {
        if t == "all" {
            out.push(IpNet {
                ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                prefix: Some(0),
            });
            out.push(IpNet {
                ip: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                prefix: Some(0),
            });
            continue;
        }
        let n = vzconfig::net::parse_ip(t)?;
        let Some(p) = n.prefix else {
            return Err(format!("{t:?}: give a prefix (e.g. {t}/24), or write all"));
        };
        // The network address itself, as nft wants an interval.
        let ip = match n.ip {
            IpAddr::V4(v4) => {
                let mask = if p == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(p))
                };
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = if p == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(p))
                };
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        out.push(IpNet {
            ip,
            prefix: Some(p),
        });
    }
    Ok(out)
}

/// The configuration the appliance has without a `net.conf`: DHCP on eth0.
pub fn default_uplinks() -> Vec<Uplink> {
    vec![Uplink {
        ifname: "eth0".into(),
        dhcp: true,
        auto6: true,
        ..Uplink::default()
    }]
}

/// Parses `net.conf`; every problem is a diagnostic with file and line.
pub fn parse(text: &str, file: &Path) -> (NetConf, Vec<vzconfig::Diag>) {
    let (entries, mut diags) = vzconfig::parse(text, file);
    let mut conf = NetConf {
        uplinks: default_uplinks(),
        ..NetConf::default()
    };
    let err = |line: usize, key: &str, message: String| vzconfig::Diag {
        severity: vzconfig::Severity::Error,
        file: file.to_owned(),
        line,
        key: Some(key.to_owned()),
        message,
    };
    for e in entries {
        match e.key.as_str() {
            "NETIF" => match vzconfig::net::parse_uplinks(&e.value) {
                Ok(u) => conf.uplinks = u,
                Err(m) => {
                    diags.push(err(
                        e.line,
                        &e.key,
                        format!("{m}; the appliance's interfaces are left unconfigured"),
                    ));
                    conf.uplinks = Vec::new();
                }
            },
            "NAMESERVER" => match vzconfig::net::parse_nameservers(&e.value) {
                Ok(NameServers::List(l)) => conf.nameservers = l,
                Ok(NameServers::Inherit) => diags.push(err(
                    e.line,
                    &e.key,
                    "inherit is for VEs; the appliance's servers are addresses (or from DHCP)"
                        .into(),
                )),
                Err(m) => diags.push(err(e.line, &e.key, m)),
            },
            "MASQUERADE" => match parse_masquerade(&e.value) {
                Ok(l) => conf.masquerade = l,
                Err(m) => diags.push(err(e.line, &e.key, format!("{m}; nothing is masqueraded"))),
            },
            "SEARCHDOMAIN" => match vzconfig::net::parse_searchdomains(&e.value) {
                Ok(SearchDomains::List(l)) => conf.searchdomains = l,
                Ok(SearchDomains::Inherit) => diags.push(err(
                    e.line,
                    &e.key,
                    "inherit is for VEs; write the appliance's domains".into(),
                )),
                Err(m) => diags.push(err(e.line, &e.key, m)),
            },
            other => diags.push(vzconfig::Diag {
                severity: vzconfig::Severity::Warning,
                file: file.to_owned(),
                line: e.line,
                key: Some(other.to_owned()),
                message: "unknown key (net.conf has NETIF, NAMESERVER, SEARCHDOMAIN, \
                          MASQUERADE); ignored"
                    .into(),
            }),
        }
    }
    (conf, diags)
}

/// Reads `<config_dir>/net.conf` (absent: the default).
pub fn load(config_dir: &Path) -> (NetConf, Vec<vzconfig::Diag>) {
    let path = config_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(b) => parse(&String::from_utf8_lossy(&b), &path),
        Err(_) => (
            NetConf {
                uplinks: default_uplinks(),
                ..NetConf::default()
            },
            Vec::new(),
        ),
    }
}

fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {path}: {e}")))
}

/// Brings one uplink up as configured.
fn apply_one(nl: &mut Rtnl, u: &Uplink) -> io::Result<()> {
    if let Some(ports) = &u.bridge_ports {
        // Every port there before anything changes: a name that is not
        // leaves the other ports as they were.
        let indexes = ports
            .iter()
            .map(|p| {
                nl.index(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("port {p}: {e}")))
            })
            .collect::<io::Result<Vec<u32>>>()?;
        if nl.link(&u.ifname)?.is_none() {
            nl.add_bridge(&u.ifname)?;
        }
        let br = nl.index(&u.ifname)?;
        // VEs' ports join it (NETIF): no MAC learned from link-local frames.
        crate::net::bridged::no_linklocal_learn(&u.ifname)?;
        for (p, &port) in ports.iter().zip(&indexes) {
            nl.set_master(port, br)?;
            nl.set_up(port, true)?;
            clear_port(nl, p, port)?;
        }
        // The bridge keeps one MAC: its first port's (else its own). Left
        // to the kernel, it would take the lowest of its ports' and change
        // as VEs' veth ends come and go (00:18:51:.. is below QEMU's and
        // most vendors'), and neighbours would see the address move.
        let links = nl.links()?;
        let mac_of = |name: &str| links.iter().find(|l| l.name == name).and_then(|l| l.mac);
        if let Some(mac) = ports
            .first()
            .and_then(|p| mac_of(p))
            .or_else(|| mac_of(&u.ifname))
        {
            nl.set_mac(br, mac)?;
        }
    }
    let index = nl.index(&u.ifname)?;
    // Router advertisements even though the appliance forwards (2), when
    // asked for; never otherwise.
    let ra = if u.auto6 { "2" } else { "0" };
    sysctl(
        &format!("/proc/sys/net/ipv6/conf/{}/accept_ra", u.ifname),
        ra,
    )?;
    nl.set_up(index, true)?;
    for a in &u.addresses {
        match nl.add_address(index, a.ip, a.prefix_or_host()) {
            Err(e) if vzcommon::rtnl::errno(&e) == Some(libc::EEXIST) => {}
            other => other.map_err(|e| io::Error::new(e.kind(), format!("address {a}: {e}")))?,
        }
    }
    if let Some(gw) = u.gateway {
        nl.add_route(&Route::default_via(false, index, Some(gw)))
            .map_err(|e| io::Error::new(e.kind(), format!("gateway {gw}: {e}")))?;
    }
    if let Some(gw) = u.gateway6 {
        let mut r = Route::default_via(true, index, Some(gw));
        r.onlink = false;
        nl.add_route(&r)
            .map_err(|e| io::Error::new(e.kind(), format!("gateway {gw}: {e}")))?;
    }
    if u.dhcp {
        start_dhcp(&u.ifname)?;
    }
    Ok(())
}

/// The addresses a bridge's port gives up: all but IPv6 link-local ones
/// (the kernel's own). An address left on a port answers beside the bridge's
/// and keeps a second route to its network, through the port, where replies
/// get lost.
fn port_drops(addrs: &[vzcommon::rtnl::Addr]) -> Vec<vzcommon::rtnl::Addr> {
    addrs
        .iter()
        .filter(|a| !matches!(a.ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .copied()
        .collect()
}

/// A bridge's port holds no address and runs no DHCP client: what an
/// earlier net.conf gave it (the interface before it became a port) goes.
fn clear_port(nl: &mut Rtnl, name: &str, index: u32) -> io::Result<()> {
    stop_dhcp(name);
    for a in port_drops(&nl.addresses(Some(index))?) {
        match nl.del_address(index, a.ip, a.prefix) {
            Err(e) if vzcommon::rtnl::errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
            other => other.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("removing {}/{} from port {name}: {e}", a.ip, a.prefix),
                )
            })?,
        }
        log::info!(
            "network: {name} is a bridge port now: its address {}/{} removed (give it to the bridge in {FILE})",
            a.ip,
            a.prefix
        );
    }
    Ok(())
}

/// Stops the DHCP client an earlier vmmgr started for `ifname`, if any:
/// the process its pid file names, if that is still `udhcpc -i ifname` (a
/// stale file's pid may be another process's by now); waits up to a
/// second for it to end (its script could put an address back).
fn stop_dhcp(ifname: &str) {
    let pidfile = format!("/run/udhcpc.{ifname}.pid");
    let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = std::fs::remove_file(&pidfile);
    let raw = pid.as_raw_nonzero().get();
    let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{raw}/cmdline")).unwrap_or_default();
    if !is_dhcp_client_of(&cmdline, ifname) {
        return;
    }
    let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::TERM);
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let second = rustix::time::Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let _ = rustix::event::poll(&mut fds, Some(&second));
}

/// Whether a `/proc/PID/cmdline` is busybox udhcpc's for `ifname`.
fn is_dhcp_client_of(cmdline: &[u8], ifname: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.iter().any(|a| *a == b"udhcpc")
        && args
            .windows(2)
            .any(|w| w[0] == b"-i" && w[1] == ifname.as_bytes())
}

/// busybox udhcpc in the background for `ifname` (it keeps the lease).
fn start_dhcp(ifname: &str) -> io::Result<()> {
    let pidfile = format!("/run/udhcpc.{ifname}.pid");
    // The client of an earlier vmmgr keeps the lease no more.
    stop_dhcp(ifname);
    let mut child = std::process::Command::new("/bin/busybox")
        .args(["udhcpc", "-b", "-R", "-t", "5", "-T", "2", "-S"])
        .args(["-i", ifname, "-s", DHCP_SCRIPT, "-p", &pidfile])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting udhcpc: {e}")))?;
    // Its first lease (or its move to the background) is not waited for:
    // vmmgr answers meanwhile, and DHCP's address comes when it comes.
    let name = ifname.to_owned();
    let _ = std::thread::Builder::new()
        .name("udhcpc-wait".into())
        .spawn(move || match child.wait() {
            Ok(s) if s.success() => log::info!("network: {name}: DHCP client running"),
            Ok(s) => log::error!("network: {name}: udhcpc ended ({s}): no DHCP lease"),
            Err(e) => log::error!("network: {name}: waiting for udhcpc: {e}"),
        });
    Ok(())
}

/// The appliance's resolv.conf from `conf` (when it names servers).
fn write_resolv(conf: &NetConf) -> io::Result<()> {
    if conf.nameservers.is_empty() && conf.searchdomains.is_empty() {
        return Ok(());
    }
    let mut s = String::from("# written by vmmgr from the boot config's net.conf\n");
    if !conf.searchdomains.is_empty() {
        s.push_str(&format!("search {}\n", conf.searchdomains.join(" ")));
    }
    for n in &conf.nameservers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    crate::fsutil::write_atomic(Path::new(RESOLV), &s)
}

/// Configures the appliance's interfaces (at vmmgr's start). Each uplink
/// is done or logged on its own: one that fails does not hold the others.
pub fn apply(conf: &NetConf) {
    let mut nl = match Rtnl::new() {
        Ok(n) => n,
        Err(e) => {
            log::error!("network: rtnetlink: {e}; the appliance's interfaces are not configured");
            return;
        }
    };
    for u in &conf.uplinks {
        match apply_one(&mut nl, u) {
            Ok(()) => log::info!("network: {} configured", u.ifname),
            Err(e) => log::error!("network: {} ({FILE}, NETIF): {e}; left as it is", u.ifname),
        }
    }
    if let Err(e) = write_resolv(conf) {
        log::error!("network: writing {RESOLV}: {e}");
    }
}

/// The appliance's own DNS servers and search domains (its resolv.conf,
/// read as glibc does: every `nameserver`, the last `search`/`domain`):
/// what a VE's `NAMESERVER=inherit` and `SEARCHDOMAIN=inherit` copy.
pub fn appliance_resolv() -> (Vec<IpAddr>, Vec<String>) {
    parse_resolv(&std::fs::read_to_string(RESOLV).unwrap_or_default())
}

fn parse_resolv(text: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => servers.extend(w.next().and_then(|a| a.parse::<IpAddr>().ok())),
            Some("search") | Some("domain") => search = w.map(str::to_owned).collect(),
            _ => {}
        }
    }
    (servers, search)
}

/// The appliance's interfaces, addresses and routes, one line each, for
/// `status`.
pub fn describe() -> Vec<String> {
    let Ok(mut nl) = Rtnl::new() else {
        return vec!["(rtnetlink unavailable)".into()];
    };
    let links = nl.links().unwrap_or_default();
    let addrs = nl.addresses(None).unwrap_or_default();
    let mut out = Vec::new();
    for l in links.iter().filter(|l| !l.name.starts_with("venet")) {
        let mut line = format!(
            "{} {}{}",
            l.name,
            if l.up { "up" } else { "down" },
            if l.up && !l.carrier && !l.loopback {
                " (no carrier)"
            } else {
                ""
            }
        );
        if let Some(m) = l.master.and_then(|m| links.iter().find(|x| x.index == m)) {
            line.push_str(&format!(" in {}", m.name));
        }
        for a in addrs.iter().filter(|a| a.index == l.index) {
            line.push_str(&format!(" {}/{}", a.ip, a.prefix));
        }
        out.push(line);
    }
    let name = |i: Option<u32>| {
        i.and_then(|i| links.iter().find(|l| l.index == i))
            .map_or("?".to_owned(), |l| l.name.clone())
    };
    let mut to_ves = 0;
    for r in nl.routes().unwrap_or_default() {
        let dev = name(r.oif);
        if dev.starts_with("venet") {
            to_ves += 1;
            continue;
        }
        match (r.dst, r.gateway) {
            (None, Some(gw)) => out.push(format!("default via {gw} dev {dev}")),
            (Some((d, p)), Some(gw)) => out.push(format!("{d}/{p} via {gw} dev {dev}")),
            _ => {}
        }
    }
    if to_ves > 0 {
        out.push(format!("{to_ves} routes to VE addresses"));
    }
    let venets = links.iter().filter(|l| l.name.starts_with("venet")).count();
    if venets > 0 {
        out.push(format!("{venets} VE interfaces (venet*)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_conf_with_diagnostics() {
        let (c, d) = parse(
            "NETIF=\"ifname=eth1,ip=192.0.2.2/24,gw=192.0.2.1\"\nNAMESERVER=\"192.0.2.53\"\n",
            Path::new("net.conf"),
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.uplinks.len(), 1);
        assert_eq!(
            c.nameservers,
            vec!["192.0.2.53".parse::<IpAddr>().expect("ip")]
        );
        let (c, d) = parse(
            "# x\nNETIF=\"ifname=eth0,ip=192.0.2.2\"\nFOO=1\n",
            Path::new("net.conf"),
        );
        assert!(c.uplinks.is_empty());
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].line, d[0].key.as_deref()), (2, Some("NETIF")));
        assert!(
            d[0].to_string().starts_with("net.conf:2: error: NETIF:"),
            "{}",
            d[0]
        );
        let (c, _) = parse("", Path::new("net.conf"));
        assert_eq!(c.uplinks, default_uplinks());
        let m = parse_masquerade("198.51.100.7/24 2001:db8:1::5/64").expect("ok");
        assert_eq!(m[0].to_string(), "198.51.100.0/24");
        assert_eq!(m[1].to_string(), "2001:db8:1::/64");
        assert_eq!(parse_masquerade("all").expect("all").len(), 2);
        assert!(parse_masquerade("198.51.100.7").is_err());
        let addr = |ip: &str, prefix| vzcommon::rtnl::Addr {
            index: 3,
            ip: ip.parse().expect("ip"),
            prefix,
        };
        let on_port = [
            addr("192.0.2.1", 24),
            addr("fe80::5054:ff:fe00:101", 64),
            addr("2001:db8:2::1", 64),
            addr("febf::1", 64),
        ];
        let drops: Vec<String> = port_drops(&on_port)
            .iter()
            .map(|a| a.ip.to_string())
            .collect();
        assert_eq!(drops, ["192.0.2.1", "2001:db8:2::1"]);
        let client = b"/bin/busybox\0udhcpc\0-b\0-i\0eth1\0-s\0/etc/udhcpc/default.script\0";
        assert!(is_dhcp_client_of(client, "eth1"));
        assert!(!is_dhcp_client_of(client, "eth0"));
        assert!(!is_dhcp_client_of(b"/bin/sh\0-c\0udhcpc -i eth1\0", "eth1"));
        let (s, d) = parse_resolv(
            "# x\nsearch a.example\nnameserver 192.0.2.53\ndomain b.example\nnameserver bad\n",
        );
        assert_eq!(s, vec!["192.0.2.53".parse::<IpAddr>().expect("ip")]);
        assert_eq!(d, vec!["b.example".to_owned()]);
    }
}
