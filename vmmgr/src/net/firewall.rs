//! The appliance's firewall for VEs: one nftables table, `inet vz`, that VE
//! root cannot reach (it lives in the appliance's network namespace).
//!
//! Anti-spoofing: a packet that comes in from a VE's pair (`venet*`) with a
//! source address that is not that VE's is dropped before connection
//! tracking (prerouting, priority raw) and counted per VE (the counter of
//! the interface's element in `ve_if`). The allowed pairs are the sets
//! `ve_addr4` (`ifname . ipv4_addr`) and `ve_addr6`, changed element by
//! element as addresses come and go. A reverse-path check (`fib saddr .
//! iif oif missing`) is the second line. An interface without elements
//! sends nothing: a VE's addresses are allowed before its pair exists, and
//! a pair whose VE has no allowed address is dropped whole.
//!
//! Bridged interfaces (`NETIF`): a second table, `bridge vz`, sees every
//! frame a VE's port sends into a bridge (prerouting, before the bridge
//! forwards it or hands it to the appliance). A port (set `ve_port`) sends
//! only from the MAC its NETIF entry gives it (set `ve_mac`, `ifname .
//! ether_addr`), in the Ethernet header and in ARP; frames from another
//! MAC are dropped and counted on the port's element, as routed spoofing
//! is. It sends no VLAN-tagged frames, no DHCP or DHCPv6 server replies
//! (from the server ports or to the client ports) and no router
//! advertisements or redirects (IPv4 or IPv6): a VE on the appliance's LAN
//! cannot hand out addresses or routes to the appliance or its neighbours.
//! A veth port that is not in the table (no VE's, or its element already
//! gone) sends nothing: the table fails closed. The bridges themselves
//! learn no MAC from link-local frames (`no_linklocal_learn`, set by
//! `bridged`): those skip the bridge's netfilter hooks.
//! Which addresses a bridged VE uses is its own choice (it configures
//! them itself, as on OpenVZ). A port's elements are added before its pair
//! is made and enslaved, so no frame of it passes unchecked.
//!
//! Driven by Debian's `nft` with rules as text on its standard input: one
//! run is one kernel transaction. (nft 1.0.6's JSON input silently turns a
//! map with concatenated data into a plain set, and the `nftables` crate
//! emits exactly that form: text is the interface that works; see
//! docs/architecture.md.)

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use vzconfig::net::{IpNet, PortFwd};

/// Debian's nft, in the image (rootfs/files.list).
pub const NFT: &str = "/usr/sbin/nft";

/// What the table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Each VE interface and the source addresses it may use.
    pub allowed: Vec<(String, Vec<IpAddr>)>,
    /// Forwarded ports and the VE address each goes to.
    pub forwards: Vec<(PortFwd, IpAddr)>,
    /// Sources masqueraded behind the appliance when they leave through
    /// an interface that is not a VE's (net.conf's MASQUERADE).
    pub masquerade: Vec<IpNet>,
    /// Each bridged VE port (host end of a NETIF pair) and the MAC its VE
    /// end may send from (`None`: a port of unknown owner, which sends
    /// nothing).
    pub ports: Vec<(String, Option<[u8; 6]>)>,
}

fn mac(m: &[u8; 6]) -> String {
    vzconfig::net::render_mac(m).to_ascii_lowercase()
}

fn set_block(s: &mut String, name: &str, ty: &str, flags: &str, elems: &[String]) {
    let _ = writeln!(s, "\tset {name} {{\n\t\ttype {ty}");
    if !flags.is_empty() {
        let _ = writeln!(s, "\t\t{flags}");
    }
    if !elems.is_empty() {
        let _ = writeln!(s, "\t\telements = {{ {} }}", elems.join(", "));
    }
    s.push_str("\t}\n");
}

fn fwd_elem(f: &PortFwd, to: IpAddr) -> String {
    format!("{} . {} : {to} . {}", f.proto(), f.outer, f.inner)
}

/// The whole table as nft text (replacing an earlier one atomically).
pub fn ruleset(t: &Table) -> String {
    let mut s = String::from(
        "add table inet vz\n\
         delete table inet vz\n\
         table inet vz {\n",
    );
    let ifs: Vec<String> = t.allowed.iter().map(|(i, _)| format!("\"{i}\"")).collect();
    set_block(&mut s, "ve_if", "ifname", "counter", &ifs);
    for (name, v6) in [("ve_addr4", false), ("ve_addr6", true)] {
        let elems: Vec<String> = t
            .allowed
            .iter()
            .flat_map(|(i, ips)| {
                ips.iter()
                    .filter(move |ip| ip.is_ipv6() == v6)
                    .map(move |ip| format!("\"{i}\" . {ip}"))
            })
            .collect();
        let ty = if v6 {
            "ifname . ipv6_addr"
        } else {
            "ifname . ipv4_addr"
        };
        set_block(&mut s, name, ty, "", &elems);
    }
    for (name, v6) in [("fwd4", false), ("fwd6", true)] {
        let elems: Vec<String> = t
            .forwards
            .iter()
            .filter(|(_, ip)| ip.is_ipv6() == v6)
            .map(|(f, ip)| fwd_elem(f, *ip))
            .collect();
        let ty = if v6 {
            "inet_proto . inet_service : ipv6_addr . inet_service"
        } else {
            "inet_proto . inet_service : ipv4_addr . inet_service"
        };
        let _ = writeln!(s, "\tmap {name} {{\n\t\ttype {ty}");
        if !elems.is_empty() {
            let _ = writeln!(s, "\t\telements = {{ {} }}", elems.join(", "));
        }
        s.push_str("\t}\n");
    }
    for (name, v6) in [("masq4", false), ("masq6", true)] {
        let elems: Vec<String> = t
            .masquerade
            .iter()
            .filter(|n| n.ip.is_ipv6() == v6)
            .map(|n| format!("{}/{}", n.ip, n.prefix_or_host()))
            .collect();
        let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
        set_block(&mut s, name, ty, "flags interval", &elems);
    }
    s.push_str(
        "\tchain antispoof {\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tmeta iifkind \"veth\" iifname != @ve_if counter drop comment \"a veth that is no routed VE pair with addresses (a NETIF pair outside any bridge)\"\n\
         \t\tiifname != \"venet*\" fib saddr oifname \"venet*\" counter drop comment \"a VE's address from elsewhere\"\n\
         \t\tiifname != \"venet*\" return\n\
         \t\tiifname . ip saddr @ve_addr4 meta nfproto ipv4 fib saddr . iif oif != 0 return\n\
         \t\tiifname . ip6 saddr @ve_addr6 fib saddr . iif oif != 0 return\n\
         \t\tip6 saddr fe80::/10 ip6 daddr { fe80::/10, ff02::/16 } return\n\
         \t\tip6 saddr :: ip6 daddr ff02::/16 icmpv6 type { nd-neighbor-solicit, mld2-listener-report } return\n\
         \t\tgoto spoofed\n\
         \t}\n\
         \tchain spoofed {\n\
         \t\tiifname @ve_if drop\n\
         \t\tcounter drop\n\
         \t}\n\
         \tchain dstnat {\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tmeta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @fwd4\n\
         \t\tmeta nfproto ipv6 fib daddr type local dnat ip6 to meta l4proto . th dport map @fwd6\n\
         \t}\n\
         \tchain srcnat {\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname != \"venet*\" oifname != \"lo\" ip saddr @masq4 masquerade\n\
         \t\toifname != \"venet*\" oifname != \"lo\" ip6 saddr @masq6 masquerade\n\
         \t}\n\
         }\n",
    );
    bridge_table(&mut s, &t.ports);
    s
}

/// The `bridge vz` table (see the module's documentation).
fn bridge_table(s: &mut String, ports: &[(String, Option<[u8; 6]>)]) {
    s.push_str("add table bridge vz\ndelete table bridge vz\ntable bridge vz {\n");
    let names: Vec<String> = ports.iter().map(|(p, _)| format!("\"{p}\"")).collect();
    set_block(s, "ve_port", "ifname", "counter", &names);
    let macs: Vec<String> = ports
        .iter()
        .filter_map(|(p, m)| m.map(|m| format!("\"{p}\" . {}", mac(&m))))
        .collect();
    set_block(s, "ve_mac", "ifname . ether_addr", "", &macs);
    s.push_str(
        "\tchain from_ve {\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         \t\tmeta iifkind \"veth\" iifname != @ve_port counter drop comment \"a veth port of no VE\"\n\
         \t\tiifname != @ve_port return\n\
         \t\tiifname . ether saddr != @ve_mac goto spoofed\n\
         \t\tether type arp iifname . arp saddr ether != @ve_mac goto spoofed\n\
         \t\tether type { 0x8100, 0x88a8 } counter drop comment \"tagged frames from a VE\"\n\
         \t\tudp sport { 67, 547 } counter drop comment \"a DHCP server in a VE\"\n\
         \t\tudp dport { 68, 546 } counter drop comment \"a DHCP reply from a VE\"\n\
         \t\ticmpv6 type { nd-router-advert, nd-redirect } counter drop comment \"router advertisements from a VE\"\n\
         \t\ticmp type { redirect, router-advertisement } counter drop comment \"IPv4 redirects and router advertisements from a VE\"\n\
         \t}\n\
         \tchain spoofed {\n\
         \t\tiifname @ve_port drop\n\
         \t\tcounter drop\n\
         \t}\n\
         }\n",
    );
}

fn port_elements(ifname: &str, m: &[u8; 6], verb: &str) -> String {
    format!(
        "{verb} element bridge vz ve_port {{ \"{ifname}\" }}\n\
         {verb} element bridge vz ve_mac {{ \"{ifname}\" . {} }}\n",
        mac(m)
    )
}

/// Lets bridged port `ifname` into its bridge, sending from `m` only.
pub fn port_allow(ifname: &str, m: &[u8; 6]) -> io::Result<()> {
    nft(&["-f", "-"], &port_elements(ifname, m, "add")).map(drop)
}

/// Takes bridged port `ifname` out of the table (no error if it was not
/// there).
pub fn port_revoke(ifname: &str, m: &[u8; 6]) -> io::Result<()> {
    let mut s = port_elements(ifname, m, "add");
    s.push_str(&port_elements(ifname, m, "delete"));
    nft(&["-f", "-"], &s).map(drop)
}

/// Runs nft with `script` on its standard input (one transaction).
fn nft(args: &[&str], script: &str) -> io::Result<String> {
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {NFT}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "nft refused: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Loads the whole table (at vmmgr's start, with the running VEs'
/// addresses and forwards), replacing what was there, atomically.
pub fn load(t: &Table) -> io::Result<()> {
    nft(&["-f", "-"], &ruleset(t)).map(drop)
}

/// The nft lines adding (or, `delete`, removing) forwarded ports. A delete
/// adds first: nft 1.0.6 has no `destroy element`, and a delete of a
/// missing element would fail the whole run.
fn forward_script(fwds: &[(PortFwd, IpAddr)], delete: bool) -> String {
    let mut s = String::new();
    for (f, ip) in fwds {
        let map = if ip.is_ipv4() { "fwd4" } else { "fwd6" };
        let _ = writeln!(s, "add element inet vz {map} {{ {} }}", fwd_elem(f, *ip));
        if delete {
            let _ = writeln!(
                s,
                "delete element inet vz {map} {{ {} . {} }}",
                f.proto(),
                f.outer
            );
        }
    }
    s
}

/// Adds forwarded ports (port and the VE address it goes to).
pub fn forward_add(fwds: &[(PortFwd, IpAddr)]) -> io::Result<()> {
    if fwds.is_empty() {
        return Ok(());
    }
    nft(&["-f", "-"], &forward_script(fwds, false)).map(drop)
}

/// Debian's conntrack tool, in the image (rootfs/files.list).
pub const CONNTRACK: &str = "/usr/sbin/conntrack";

/// Removes forwarded ports (those already gone are no error), then ends
/// the connections made through them: their conntrack entries go, so the
/// next packet of one is no longer sent on to the VE (the appliance has no
/// listener there and resets it). A failure to end them is logged, not
/// returned: the port itself is gone.
pub fn forward_del(fwds: &[(PortFwd, IpAddr)]) -> io::Result<()> {
    if fwds.is_empty() {
        return Ok(());
    }
    nft(&["-f", "-"], &forward_script(fwds, true))?;
    for (f, ip) in fwds {
        if let Err(e) = forget_connections(f, *ip) {
            log::warn!("ending the connections of forwarded port {f}: {e}");
        }
    }
    Ok(())
}

/// conntrack's arguments selecting the connections forwarded through `f`
/// to `to`: the port the client asked for, answered from the VE.
fn conntrack_args(f: &PortFwd, to: IpAddr) -> Vec<String> {
    let family = if to.is_ipv6() { "ipv6" } else { "ipv4" };
    [
        "-D",
        "-f",
        family,
        "-p",
        f.proto(),
        "--orig-port-dst",
        &f.outer.to_string(),
        "--reply-src",
        &to.to_string(),
        "--reply-port-src",
        &f.inner.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn forget_connections(f: &PortFwd, to: IpAddr) -> io::Result<()> {
    let out = Command::new(CONNTRACK)
        .args(conntrack_args(f, to))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running {CONNTRACK}: {e}")))?;
    let err = String::from_utf8_lossy(&out.stderr);
    // No connection to end is no error (conntrack exits 1 then).
    if out.status.success() || err.contains(" 0 flow entries") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "conntrack refused: {}",
            err.trim()
        )))
    }
}

fn elements(ifname: &str, ips: &[IpAddr], verb: &str) -> String {
    let mut s = String::new();
    for ip in ips {
        let set = if ip.is_ipv4() { "ve_addr4" } else { "ve_addr6" };
        let _ = writeln!(s, "{verb} element inet vz {set} {{ \"{ifname}\" . {ip} }}");
    }
    s
}

/// Lets `ifname` send from `ips` (and registers it as a VE's interface).
pub fn allow(ifname: &str, ips: &[IpAddr]) -> io::Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    let mut s = format!("add element inet vz ve_if {{ \"{ifname}\" }}\n");
    s.push_str(&elements(ifname, ips, "add"));
    nft(&["-f", "-"], &s).map(drop)
}

/// Takes `ips` away from `ifname` (those already gone are no error).
pub fn revoke(ifname: &str, ips: &[IpAddr]) -> io::Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    // nft 1.0.6 has no `destroy element`: an add first makes the delete
    // of a missing element succeed.
    let mut s = elements(ifname, ips, "add");
    s.push_str(&elements(ifname, ips, "delete"));
    nft(&["-f", "-"], &s).map(drop)
}

/// Packets dropped per VE interface for a spoofed source (the element
/// counters of `ve_if` for routed pairs and `ve_port` for bridged ports).
pub fn dropped() -> io::Result<Vec<(String, u64)>> {
    // Two runs: nft 1.0.6 fails a batch of two list commands.
    let mut out = parse_counters(&nft(&["list", "set", "inet", "vz", "ve_if"], "")?);
    out.extend(parse_counters(&nft(
        &["list", "set", "bridge", "vz", "ve_port"],
        "",
    )?));
    Ok(out)
}

/// Reads `"venet101" counter packets 3 bytes 128` out of a set listing.
fn parse_counters(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(q) = rest.find('"') {
        let after = &rest[q + 1..];
        let Some(end) = after.find('"') else { break };
        let name = &after[..end];
        let tail = &after[end + 1..];
        let packets = tail
            .trim_start()
            .strip_prefix("counter packets ")
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        if let Some(p) = packets {
            out.push((name.to_owned(), p));
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_holds_each_pair_in_its_family() {
        let r = ruleset(&Table {
            allowed: vec![(
                "venet101".into(),
                vec![
                    "192.0.2.10".parse().expect("ip"),
                    "2001:db8::10".parse().expect("ip"),
                ],
            )],
            forwards: vec![(
                PortFwd {
                    udp: false,
                    outer: 8080,
                    inner: 80,
                },
                "192.0.2.10".parse().expect("ip"),
            )],
            masquerade: vec![vzconfig::net::parse_ip("192.0.2.0/24").expect("net")],
            ports: vec![
                ("veth104.0".into(), Some([0x02, 0, 0, 0, 0, 0x0a])),
                ("stray0".into(), None),
            ],
        });
        assert!(
            r.contains("elements = { \"veth104.0\", \"stray0\" }"),
            "{r}"
        );
        assert!(
            r.contains("elements = { \"veth104.0\" . 02:00:00:00:00:0a }"),
            "{r}"
        );
        assert!(r.contains("add table bridge vz\ndelete table bridge vz\n"));
        assert!(
            r.contains("elements = { tcp . 8080 : 192.0.2.10 . 80 }"),
            "{r}"
        );
        assert!(r.contains("elements = { 192.0.2.0/24 }"), "{r}");
        assert!(r.contains("elements = { \"venet101\" }"), "{r}");
        assert!(r.contains("\"venet101\" . 192.0.2.10 }"), "{r}");
        assert!(r.contains("\"venet101\" . 2001:db8::10 }"), "{r}");
        assert!(r.starts_with("add table inet vz\ndelete table inet vz\n"));
        let empty = ruleset(&Table::default());
        assert!(!empty.contains("elements"), "{empty}");
    }

    #[test]
    fn conntrack_selects_what_the_forward_sent_on() {
        let f = PortFwd {
            udp: false,
            outer: 8080,
            inner: 80,
        };
        assert_eq!(
            conntrack_args(&f, "198.51.100.20".parse().expect("ip")).join(" "),
            "-D -f ipv4 -p tcp --orig-port-dst 8080 --reply-src 198.51.100.20 --reply-port-src 80"
        );
        let u = PortFwd { udp: true, ..f };
        assert_eq!(
            conntrack_args(&u, "2001:db8::20".parse().expect("ip")).join(" "),
            "-D -f ipv6 -p udp --orig-port-dst 8080 --reply-src 2001:db8::20 --reply-port-src 80"
        );
    }

    #[test]
    fn revoke_tolerates_missing_elements() {
        let s = elements("venet7", &["198.51.100.1".parse().expect("ip")], "delete");
        assert_eq!(
            s,
            "delete element inet vz ve_addr4 { \"venet7\" . 198.51.100.1 }\n"
        );
    }

    #[test]
    fn counters_per_interface() {
        let text = "table inet vz {\n\tset ve_if {\n\t\ttype ifname\n\t\tcounter\n\t\telements = { \"venet101\" counter packets 3 bytes 128,\n\t\t\t     \"venet102\" counter packets 0 bytes 0 }\n\t}\n}\n";
        assert_eq!(
            parse_counters(text),
            vec![("venet101".to_owned(), 3), ("venet102".to_owned(), 0)]
        );
    }

    /// With nft on this machine and root: the ruleset loads in a network
    /// namespace of the test's own.
    #[test]
    fn ruleset_loads_in_a_scratch_namespace() {
        if !std::path::Path::new(NFT).exists() {
            eprintln!("skipping: no {NFT}");
            return;
        }
        let r = std::thread::spawn(|| {
            // SAFETY: only this thread's network namespace changes.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .map_err(io::Error::from)?;
            load(&Table {
                allowed: vec![("venet101".into(), vec!["192.0.2.10".parse().expect("ip")])],
                ports: vec![("veth104.0".into(), Some([2, 0, 0, 0, 0, 1]))],
                ..Table::default()
            })?;
            allow("venet101", &["2001:db8::10".parse().expect("ip")])?;
            revoke("venet101", &["192.0.2.99".parse().expect("ip")])?;
            port_allow("veth105.0", &[2, 0, 0, 0, 0, 2])?;
            port_revoke("veth105.0", &[2, 0, 0, 0, 0, 2])?;
            port_revoke("veth105.0", &[2, 0, 0, 0, 0, 2])?;
            dropped()
        })
        .join()
        .expect("thread");
        match r {
            Ok(d) => assert_eq!(
                d,
                vec![("venet101".to_owned(), 0), ("veth104.0".to_owned(), 0)]
            ),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("skipping: {e}")
            }
            Err(e) => panic!("{e}"),
        }
    }
}
