//! Network values: a VE's `IP_ADDRESS`, `NAMESERVER` and `SEARCHDOMAIN`,
//! and the appliance's own interfaces (`vz/net.conf`, see [`Uplink`]).

use std::fmt;
use std::net::IpAddr;

/// An address with the prefix it was given (`IP_ADDRESS` keeps what the
/// administrator wrote: `192.0.2.5` or `192.0.2.5/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    pub ip: IpAddr,
    pub prefix: Option<u8>,
}

impl IpNet {
    /// The prefix, or the host prefix of the family.
    pub fn prefix_or_host(&self) -> u8 {
        self.prefix
            .unwrap_or(if self.ip.is_ipv4() { 32 } else { 128 })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// Why an address cannot be a VE's or an interface's.
fn unusable(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("the loopback address"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some("a link-local address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Some("an IPv4-mapped address (write the IPv4 address)")
        }
        _ => None,
    }
}

/// Parses `ADDR` or `ADDR/PREFIX` (IPv4 or IPv6), canonical on output.
pub fn parse_ip(token: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match token.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (token, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!("{token:?} is not an IPv4 or IPv6 address (e.g. 192.0.2.5, 2001:db8::5/64)")
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => None,
        Some(p) => Some(
            p.parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{token:?}: the prefix must be 0 to {max}"))?,
        ),
    };
    if let Some(why) = unusable(ip) {
        return Err(format!(
            "{token:?} is {why}: it cannot be given to a VE or an interface"
        ));
    }
    Ok(IpNet { ip, prefix })
}

/// Parses a space-separated address list (`IP_ADDRESS`, `--ipadd`) as
/// OpenVZ does: `0.0.0.0` and `::` are skipped, a repeated address (with
/// any prefix) counts once.
pub fn parse_ip_list(v: &str) -> Result<Vec<IpNet>, String> {
    let mut out: Vec<IpNet> = Vec::new();
    for token in v.split_whitespace() {
        let bare = token.split('/').next().unwrap_or(token);
        if matches!(bare.parse::<IpAddr>(), Ok(ip) if ip.is_unspecified()) {
            continue;
        }
        let net = parse_ip(token)?;
        if !out.iter().any(|n| n.ip == net.ip) {
            out.push(net);
        }
    }
    Ok(out)
}

/// Renders an address list back (`IP_ADDRESS="..."`).
pub fn render_ip_list(list: &[IpNet]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A forwarded port (`PORTFWD`, ours): the appliance's `outer` port of
/// `proto` goes to the VE's `inner` port (at its first address of the
/// packet's family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortFwd {
    pub udp: bool,
    pub outer: u16,
    pub inner: u16,
}

impl PortFwd {
    pub fn proto(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }
}

impl fmt::Display for PortFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.proto(), self.outer, self.inner)
    }
}

/// Parses `PORTFWD`: `[tcp|udp:]APPLIANCEPORT:VEPORT`, space-separated.
pub fn parse_portfwd(v: &str) -> Result<Vec<PortFwd>, String> {
    let mut out: Vec<PortFwd> = Vec::new();
    for t in v.split_whitespace() {
        let f: Vec<&str> = t.split(':').collect();
        let (proto, outer, inner) = match f.as_slice() {
            [o, i] if o.bytes().all(|b| b.is_ascii_digit()) => ("tcp", *o, *i),
            [p, o, i] => (*p, *o, *i),
            _ => {
                return Err(format!(
                    "{t:?}: write [tcp|udp:]APPLIANCEPORT:VEPORT, e.g. tcp:8080:80"
                ))
            }
        };
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(format!("{t:?}: the protocol is tcp or udp, not {proto:?}")),
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{t:?}: {p:?} is not a port (1-65535)"))
        };
        let fwd = PortFwd {
            udp,
            outer: port(outer)?,
            inner: port(inner)?,
        };
        if out.iter().any(|o| o.udp == fwd.udp && o.outer == fwd.outer) {
            return Err(format!(
                "{t:?}: the appliance's {} port {} is forwarded twice",
                fwd.proto(),
                fwd.outer
            ));
        }
        out.push(fwd);
    }
    Ok(out)
}

pub fn render_portfwd(l: &[PortFwd]) -> String {
    l.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A MAC address, `00:18:51:AB:CD:EF`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 || s.len() != 17 {
        return Err(format!(
            "{s:?} is not a MAC address (six hex pairs: 00:18:51:AB:CD:EF)"
        ));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| {
            format!("{s:?} is not a MAC address (six hex pairs: 00:18:51:AB:CD:EF)")
        })?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "{s:?} is a multicast MAC address: an interface needs a unicast one"
        ));
    }
    Ok(mac)
}

pub fn render_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A MAC from a name, stable (OpenVZ's prefix 00:18:51 and three bytes of
/// the name's hash).
pub fn stable_mac(seed: &str) -> [u8; 6] {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = h.to_be_bytes();
    [0x00, 0x18, 0x51, a, b, c]
}

/// A bridged interface of a VE (`NETIF`): a veth pair, `ifname` in the VE,
/// `host_ifname` on the appliance, enslaved to `bridge` when given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetIf {
    pub ifname: String,
    pub mac: Option<[u8; 6]>,
    pub host_ifname: Option<String>,
    pub host_mac: Option<[u8; 6]>,
    pub bridge: Option<String>,
}

impl NetIf {
    /// With the names and MACs OpenVZ generates when they are not given:
    /// `veth<VEID>.<N>` (N: the number in `ifname`), MACs stable per VE and
    /// name.
    pub fn filled(&self, veid: u32) -> NetIf {
        let n: String = self.ifname.chars().filter(char::is_ascii_digit).collect();
        let n = if n.is_empty() { "0".to_owned() } else { n };
        let host = self
            .host_ifname
            .clone()
            .unwrap_or_else(|| format!("veth{veid}.{n}"));
        NetIf {
            ifname: self.ifname.clone(),
            mac: Some(
                self.mac
                    .unwrap_or_else(|| stable_mac(&format!("{}:{veid}", self.ifname))),
            ),
            host_mac: Some(
                self.host_mac
                    .unwrap_or_else(|| stable_mac(&format!("{host}:{veid}:host"))),
            ),
            host_ifname: Some(host),
            bridge: self.bridge.clone(),
        }
    }

    /// OpenVZ's order: `ifname,bridge,mac,host_ifname,host_mac`.
    pub fn render(&self) -> String {
        let mut f = vec![format!("ifname={}", self.ifname)];
        if let Some(b) = &self.bridge {
            f.push(format!("bridge={b}"));
        }
        if let Some(m) = &self.mac {
            f.push(format!("mac={}", render_mac(m)));
        }
        if let Some(h) = &self.host_ifname {
            f.push(format!("host_ifname={h}"));
        }
        if let Some(m) = &self.host_mac {
            f.push(format!("host_mac={}", render_mac(m)));
        }
        f.join(",")
    }
}

/// Parses `NETIF` (entries `;`-separated, fields `key=value`).
pub fn parse_netifs(v: &str) -> Result<Vec<NetIf>, String> {
    let mut out: Vec<NetIf> = Vec::new();
    for entry in v.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let mut n = NetIf::default();
        for field in entry.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let Some((k, val)) = field.split_once('=') else {
                return Err(format!("{entry:?}: {field:?} is not a key=value field"));
            };
            let name = |val: &str| {
                if valid_ifname(val) {
                    Ok(val.to_owned())
                } else {
                    Err(format!(
                        "{entry:?}: {k}={val:?} is not an interface name (1 to 15 characters)"
                    ))
                }
            };
            match k {
                "ifname" => n.ifname = name(val)?,
                "host_ifname" => n.host_ifname = Some(name(val)?),
                "bridge" => n.bridge = Some(name(val)?),
                "mac" => n.mac = Some(parse_mac(val).map_err(|e| format!("{entry:?}: {e}"))?),
                "host_mac" => {
                    n.host_mac = Some(parse_mac(val).map_err(|e| format!("{entry:?}: {e}"))?)
                }
                // OpenVZ's MAC filter needs its kernel; accepted, not acted on.
                "mac_filter" if val == "on" || val == "off" => {}
                other => {
                    return Err(format!(
                        "{entry:?}: unknown field {other:?} (ifname, mac, host_ifname, host_mac, bridge)"
                    ))
                }
            }
        }
        if n.ifname.is_empty() {
            return Err(format!("{entry:?}: ifname= is missing"));
        }
        if out.iter().any(|o| o.ifname == n.ifname) {
            return Err(format!("{}: configured twice", n.ifname));
        }
        out.push(n);
    }
    Ok(out)
}

pub fn render_netifs(l: &[NetIf]) -> String {
    l.iter().map(NetIf::render).collect::<Vec<_>>().join(";")
}

/// `--netif_add ifname[,mac,host_ifname,host_mac,bridge]` (positional; an
/// empty field is generated).
pub fn parse_netif_cmd(v: &str) -> Result<NetIf, String> {
    let f: Vec<&str> = v.split(',').map(str::trim).collect();
    if f.len() > 5 {
        return Err(format!("{v:?}: ifname[,mac,host_ifname,host_mac,bridge]"));
    }
    let get = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
    let mut text = format!("ifname={}", get(0).unwrap_or(""));
    for (i, k) in [
        (1, "mac"),
        (2, "host_ifname"),
        (3, "host_mac"),
        (4, "bridge"),
    ] {
        if let Some(x) = get(i) {
            text.push_str(&format!(",{k}={x}"));
        }
    }
    parse_netifs(&text)?
        .pop()
        .ok_or_else(|| format!("{v:?}: ifname[,mac,host_ifname,host_mac,bridge]"))
}

/// Parses `NETDEV`: the appliance's interfaces moved into the VE.
pub fn parse_netdevs(v: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for n in v.split_whitespace() {
        if !valid_ifname(n) {
            return Err(format!("{n:?} is not an interface name"));
        }
        if n == "lo"
            || ["venet", "veth", "tun", "tap"]
                .iter()
                .any(|p| n.starts_with(p))
        {
            return Err(format!(
                "{n:?}: a physical interface of the appliance is moved in, not lo, venet, veth, tun or tap"
            ));
        }
        if !out.iter().any(|o| o == n) {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// `NAMESERVER`: addresses, or `inherit` (the appliance's own servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameServers {
    Inherit,
    List(Vec<IpAddr>),
}

pub fn parse_nameservers(v: &str) -> Result<NameServers, String> {
    if v.trim() == "inherit" {
        return Ok(NameServers::Inherit);
    }
    let mut list = Vec::new();
    for t in v.split_whitespace() {
        let ip: IpAddr = t
            .parse()
            .map_err(|_| format!("{t:?} is not an IPv4 or IPv6 address (or write inherit)"))?;
        if !list.contains(&ip) {
            list.push(ip);
        }
    }
    Ok(NameServers::List(list))
}

/// `SEARCHDOMAIN`: domain names, or `inherit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchDomains {
    Inherit,
    List(Vec<String>),
}

pub fn parse_searchdomains(v: &str) -> Result<SearchDomains, String> {
    if v.trim() == "inherit" {
        return Ok(SearchDomains::Inherit);
    }
    let mut list = Vec::new();
    for t in v.split_whitespace() {
        if !crate::valid_hostname(t) {
            return Err(format!(
                "{t:?} is not a domain name (letters, digits, - and ., 253 at most; or write inherit)"
            ));
        }
        list.push(t.to_owned());
    }
    Ok(SearchDomains::List(list))
}

/// Whether `name` can be an interface name here: 1 to 15 of letters,
/// digits, `_`, `.` and `-` (within the kernel's rules; nothing a shell or
/// an nft rule would read as syntax), not `.` or `..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// One of the appliance's interfaces (`NETIF` of `vz/net.conf`, in the
/// syntax of a VE's NETIF: `ifname=eth0,dhcp=yes;ifname=vmbr0,type=bridge,
/// ports=eth1,ip=192.0.2.2/24,gw=192.0.2.1`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uplink {
    pub ifname: String,
    /// IPv4 by DHCP.
    pub dhcp: bool,
    /// IPv6 by router advertisements (SLAAC).
    pub auto6: bool,
    pub addresses: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
    /// A bridge the appliance makes, with these ports (None: an existing
    /// interface).
    pub bridge_ports: Option<Vec<String>>,
}

/// Parses the appliance's `NETIF`. Errors name the entry and the field.
pub fn parse_uplinks(v: &str) -> Result<Vec<Uplink>, String> {
    let mut out: Vec<Uplink> = Vec::new();
    for (n, entry) in v.split(';').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let at = |msg: String| format!("entry {} ({entry:?}): {msg}", n + 1);
        let mut u = Uplink::default();
        let mut bridge = false;
        let mut ports: Option<Vec<String>> = None;
        for field in entry.split(',') {
            let field = field.trim();
            let Some((k, val)) = field.split_once('=') else {
                return Err(at(format!("{field:?} is not a field=value pair")));
            };
            let val = val.trim();
            let yes_no = |what: &str| match val {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err(at(format!("{what}= takes yes or no, not {val:?}"))),
            };
            match k.trim() {
                "ifname" => {
                    if !valid_ifname(val) {
                        return Err(at(format!(
                            "{val:?} is not an interface name (1 to 15 characters, no / : , =)"
                        )));
                    }
                    u.ifname = val.to_owned();
                }
                "dhcp" => u.dhcp = yes_no("dhcp")?,
                "dhcp6" | "auto6" => u.auto6 = yes_no(k.trim())?,
                "ip" | "ip6" => {
                    for t in val.split_whitespace() {
                        let net = parse_ip(t).map_err(at)?;
                        if net.prefix.is_none() {
                            return Err(at(format!(
                                "{t:?}: give the prefix of the interface's network, e.g. {t}/24"
                            )));
                        }
                        u.addresses.push(net);
                    }
                }
                "gw" => {
                    let ip: IpAddr = val
                        .parse()
                        .ok()
                        .filter(IpAddr::is_ipv4)
                        .ok_or_else(|| at(format!("gw={val:?} is not an IPv4 address")))?;
                    u.gateway = Some(ip);
                }
                "gw6" => {
                    let ip: IpAddr = val
                        .parse()
                        .ok()
                        .filter(IpAddr::is_ipv6)
                        .ok_or_else(|| at(format!("gw6={val:?} is not an IPv6 address")))?;
                    u.gateway6 = Some(ip);
                }
                "type" => match val {
                    "bridge" => bridge = true,
                    "ethernet" | "" => {}
                    _ => return Err(at(format!("type={val:?}: bridge or ethernet"))),
                },
                "ports" => {
                    let list: Vec<String> = val.split_whitespace().map(str::to_owned).collect();
                    if let Some(bad) = list.iter().find(|p| !valid_ifname(p)) {
                        return Err(at(format!("ports: {bad:?} is not an interface name")));
                    }
                    ports = Some(list);
                }
                other => {
                    return Err(at(format!(
                        "unknown field {other:?} (ifname, dhcp, auto6, ip, gw, gw6, type, ports)"
                    )))
                }
            }
        }
        if u.ifname.is_empty() {
            return Err(at("ifname= is missing".into()));
        }
        if ports.is_some() && !bridge {
            return Err(at("ports= is for type=bridge".into()));
        }
        if bridge {
            u.bridge_ports = Some(ports.unwrap_or_default());
        }
        if out.iter().any(|o| o.ifname == u.ifname) {
            return Err(at(format!("{} is configured twice", u.ifname)));
        }
        out.push(u);
    }
    // A port of a bridge is not configured on its own.
    for u in &out {
        for p in u.bridge_ports.iter().flatten() {
            if out.iter().any(|o| &o.ifname == p) {
                return Err(format!(
                    "{p} is a port of bridge {} and has an entry of its own: a bridge port has no addresses",
                    u.ifname
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_lists_as_openvz_reads_them() {
        let l = parse_ip_list("192.0.2.5 2001:DB8::5/64 0.0.0.0 192.0.2.5/24 ::").expect("ok");
        assert_eq!(render_ip_list(&l), "192.0.2.5 2001:db8::5/64");
        assert_eq!(l[0].prefix_or_host(), 32);
        assert_eq!(l[1].prefix_or_host(), 64);
        for bad in [
            "192.0.2.300",
            "192.0.2.5/33",
            "2001:db8::/129",
            "127.0.0.1",
            "fe80::1",
            "224.0.0.1",
            "x",
        ] {
            let e = parse_ip_list(bad).expect_err(bad);
            assert!(e.contains(bad.split('/').next().unwrap_or(bad)), "{e}");
        }
    }

    #[test]
    fn netif_as_openvz_writes_it() {
        let l = parse_netifs("ifname=eth0,mac=00:18:51:22:24:81,host_ifname=veth101.0,host_mac=00:18:51:B6:1A:F1,bridge=vmbr0;ifname=eth1").expect("ok");
        assert_eq!(l.len(), 2);
        assert_eq!(
            render_netifs(&l),
            "ifname=eth0,bridge=vmbr0,mac=00:18:51:22:24:81,host_ifname=veth101.0,host_mac=00:18:51:B6:1A:F1;ifname=eth1"
        );
        let f = l[1].filled(101);
        assert_eq!(f.host_ifname.as_deref(), Some("veth101.1"));
        assert_eq!(f, l[1].filled(101), "stable");
        assert_eq!(f.mac.expect("mac")[..3], [0x00, 0x18, 0x51]);
        assert_ne!(f.mac, f.host_mac);
        let c = parse_netif_cmd("eth2,,,,vmbr0").expect("cmd");
        assert_eq!(c.bridge.as_deref(), Some("vmbr0"));
        for (bad, says) in [
            ("mac=00:18:51:00:00:01", "ifname= is missing"),
            ("ifname=eth0,mac=01:18:51:00:00:01", "multicast"),
            ("ifname=eth0,mac=00:18:51", "not a MAC"),
            ("ifname=eth0;ifname=eth0", "twice"),
            ("ifname=eth0,speed=1", "unknown field"),
        ] {
            let e = parse_netifs(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            parse_netdevs("eth1 eth2 eth1").expect("ok"),
            vec!["eth1", "eth2"]
        );
        assert!(parse_netdevs("venet0").is_err());
    }

    #[test]
    fn forwarded_ports() {
        let l = parse_portfwd("tcp:8080:80 udp:5353:53 2222:22").expect("ok");
        assert_eq!(render_portfwd(&l), "tcp:8080:80 udp:5353:53 tcp:2222:22");
        for (bad, says) in [
            ("sctp:1:2", "tcp or udp"),
            ("tcp:0:80", "not a port"),
            ("tcp:8080", "APPLIANCEPORT:VEPORT"),
            ("tcp:8080:80 tcp:8080:81", "twice"),
        ] {
            let e = parse_portfwd(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn nameservers_and_domains() {
        assert_eq!(parse_nameservers("inherit"), Ok(NameServers::Inherit));
        assert_eq!(
            parse_nameservers("192.0.2.53 2001:db8::53"),
            Ok(NameServers::List(vec![
                "192.0.2.53".parse().expect("ip"),
                "2001:db8::53".parse().expect("ip")
            ]))
        );
        assert!(parse_nameservers("ns.example.com").is_err());
        assert_eq!(
            parse_searchdomains("example.com example.org"),
            Ok(SearchDomains::List(vec![
                "example.com".into(),
                "example.org".into()
            ]))
        );
        assert!(parse_searchdomains("bad_domain!").is_err());
    }

    #[test]
    fn uplinks_in_netif_syntax() {
        let u = parse_uplinks(
            "ifname=eth0,dhcp=yes; ifname=vmbr0,type=bridge,ports=eth1 eth2,ip=192.0.2.2/24,ip=2001:db8::2/64,gw=192.0.2.1,gw6=2001:db8::1",
        )
        .expect("ok");
        assert_eq!(u.len(), 2);
        assert!(u[0].dhcp && u[0].addresses.is_empty());
        assert_eq!(
            u[1].bridge_ports.as_deref(),
            Some(&["eth1".to_owned(), "eth2".to_owned()][..])
        );
        assert_eq!(u[1].addresses.len(), 2);
        assert_eq!(u[1].gateway, Some("192.0.2.1".parse().expect("ip")));
        for (bad, says) in [
            ("dhcp=yes", "ifname= is missing"),
            ("ifname=eth0,ip=192.0.2.2", "prefix"),
            ("ifname=eth0,gw=2001:db8::1", "not an IPv4"),
            ("ifname=eth0,speed=10", "unknown field"),
            ("ifname=eth0;ifname=eth0", "twice"),
            ("ifname=eth0,ports=eth1", "type=bridge"),
            (
                "ifname=vmbr0,type=bridge,ports=eth0;ifname=eth0,dhcp=yes",
                "port of bridge",
            ),
            ("ifname=eth0/1", "interface name"),
        ] {
            let e = parse_uplinks(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
