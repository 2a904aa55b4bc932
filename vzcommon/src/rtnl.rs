//! rtnetlink, synchronously: links, addresses, routes and neighbours of the
//! network namespace the socket was made in. Messages are built and parsed
//! by `netlink-packet-route` (a maintained crate, no hand-made encodings);
//! the socket is `netlink-sys`'s blocking one: no async runtime.
//!
//! A socket acts on the namespace of the thread that made it. To work in a
//! VE's namespace, make the socket in a thread that entered it
//! ([`in_netns`]); the socket keeps working there after the thread returns.

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
        RouteScope, RouteType,
    },
    AddressFamily, RouteNetlinkMessage as Rt,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// How long one request may wait for the kernel's answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The kernel's refusal with its words (extended ack) beside the errno.
#[derive(Debug)]
struct KernelError {
    errno: i32,
    text: String,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            io::Error::from_raw_os_error(self.errno),
            self.text
        )
    }
}

impl std::error::Error for KernelError {}

/// The errno of an error from this module (kept when the kernel also gave
/// its reason in words).
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<KernelError>())
            .map(|k| k.errno)
    })
}

/// An rtnetlink socket of one network namespace.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnl").field("seq", &self.seq).finish()
    }
}

/// A link a change touched: its index, and its name when the change was
/// the link's own (not one of its addresses).
pub type Touched = (u32, Option<String>);

/// Changes of the namespace's links and addresses, as the kernel
/// announces them (rtnetlink's multicast groups).
#[derive(Debug)]
pub struct Changes {
    sock: Socket,
    buf: Vec<u8>,
}

impl Changes {
    /// Listens for link and address changes (both families).
    pub fn new() -> io::Result<Changes> {
        const GROUPS: u32 =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, GROUPS))?;
        Ok(Changes {
            sock,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Waits for a change, then for the burst it starts to end (`settle`
    /// without another). Returns the links changed (with their names) or
    /// whose addresses changed (without); `None` when messages were lost (a
    /// full socket buffer): anything may have changed.
    pub fn wait(&mut self, settle: Duration) -> io::Result<Option<Vec<Touched>>> {
        use rustix::net::sockopt::{set_socket_timeout, Timeout};
        let mut touched = Some(Vec::new());
        set_socket_timeout(&self.sock, Timeout::Recv, None)?;
        let mut timeout = None;
        let mut first = None;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    touched = None;
                    0
                }
                Err(e)
                    if timeout.is_some()
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    return Ok(touched);
                }
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while off < n {
                let raw = &self.buf[off..n];
                let Ok(b) = NetlinkBuffer::new_checked(raw) else {
                    break;
                };
                let len = b.length() as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if let Ok(m) = NetlinkMessage::<Rt>::deserialize(&raw[..len.min(raw.len())]) {
                    let entry = match m.payload {
                        NetlinkPayload::InnerMessage(Rt::NewLink(l) | Rt::DelLink(l)) => {
                            Some((l.header.index, Some(link_of(&l).name)))
                        }
                        NetlinkPayload::InnerMessage(Rt::NewAddress(a) | Rt::DelAddress(a)) => {
                            Some((a.header.index, None))
                        }
                        _ => None,
                    };
                    if let (Some(list), Some(e)) = (touched.as_mut(), entry) {
                        match list.iter_mut().find(|(i, _)| *i == e.0) {
                            Some(have) if have.1.is_none() => have.1 = e.1,
                            Some(_) => {}
                            None => list.push(e),
                        }
                    }
                }
            }
            match first {
                None => {
                    first = Some(std::time::Instant::now());
                    timeout = Some(settle);
                    set_socket_timeout(&self.sock, Timeout::Recv, timeout)?;
                }
                // A burst that does not end (a link flapping) is reported
                // in parts: a caller is never kept waiting past 8 settles.
                Some(t) if t.elapsed() >= settle * 8 => return Ok(touched),
                Some(_) => {}
            }
        }
    }
}

/// A link as a dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// The carrier is there (`IFF_LOWER_UP`).
    pub carrier: bool,
    pub loopback: bool,
    pub mac: Option<[u8; 6]>,
    /// The hardware's own MAC (`IFLA_PERM_ADDRESS`, physical devices):
    /// whoever holds the device cannot change it.
    pub perm_mac: Option<[u8; 6]>,
    /// The bridge it is enslaved to.
    pub master: Option<u32>,
    /// `veth`, `bridge`, ... (None for physical devices).
    pub kind: Option<String>,
}

/// An address of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination and prefix; `None` is the default route.
    pub dst: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// The gateway is on the link even without an address of its subnet.
    pub onlink: bool,
    /// IPv6 when there is neither destination nor gateway to tell.
    pub v6: bool,
}

impl Route {
    /// A host route (`/32`, `/128`) to `ip` through link `oif`.
    pub fn host(ip: IpAddr, oif: u32) -> Route {
        Route {
            dst: Some((ip, if ip.is_ipv4() { 32 } else { 128 })),
            gateway: None,
            oif: Some(oif),
            onlink: false,
            v6: ip.is_ipv6(),
        }
    }

    /// The default route of a family through link `oif`, via `gateway`
    /// when given (on the link), else straight out of the device.
    pub fn default_via(v6: bool, oif: u32, gateway: Option<IpAddr>) -> Route {
        Route {
            dst: None,
            gateway,
            oif: Some(oif),
            onlink: gateway.is_some_and(|g| g.is_ipv4()),
            v6,
        }
    }

    fn is_v6(&self) -> bool {
        self.dst.map(|(ip, _)| ip.is_ipv6()).unwrap_or(false)
            || self.gateway.is_some_and(|g| g.is_ipv6())
            || self.v6
    }
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // The kernel's reason in words (extended ack), where it gives one.
        let _ = sock.set_ext_ack(true);
        rustix::net::sockopt::set_socket_timeout(
            &sock,
            rustix::net::sockopt::Timeout::Recv,
            Some(TIMEOUT),
        )?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// One request. Without `NLM_F_DUMP` the kernel's ack (or error) ends
    /// it; with it, `NLMSG_DONE`. Returns the replies before the end.
    fn request(&mut self, msg: Rt, flags: u16) -> io::Result<Vec<Rt>> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let mut replies = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let raw = &self.buf[off..n];
                let len = NetlinkBuffer::new_checked(raw)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
                    .length() as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                let msg = match NetlinkMessage::<Rt>::deserialize(&raw[..len.min(raw.len())]) {
                    Ok(m) => m,
                    // A message the crate cannot read (a newer kernel's
                    // attribute): skipped, the rest of the dump still counts.
                    Err(_) => continue,
                };
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                if msg.header.flags & NLM_F_DUMP_INTR != 0 {
                    return Err(io::Error::from_raw_os_error(libc::EINTR));
                }
                let hflags = msg.header.flags;
                match msg.payload {
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        let why = ext_ack_text(hflags, &e.header);
                        let err = e.to_io();
                        return Err(match (why, err.raw_os_error()) {
                            (Some(text), Some(errno)) => {
                                io::Error::new(err.kind(), KernelError { errno, text })
                            }
                            _ => err,
                        });
                    }
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(io::Error::from_raw_os_error(-d.code))
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }

    fn ack(&mut self, msg: Rt, flags: u16) -> io::Result<()> {
        self.request(msg, flags).map(drop)
    }

    fn dump(&mut self, msg: Rt) -> io::Result<Vec<Rt>> {
        // A dump the kernel marks interrupted (the table changed under it)
        // is asked again.
        for _ in 0..4 {
            match self.request(msg.clone(), NLM_F_DUMP) {
                Err(e) if errno(&e) == Some(libc::EINTR) => continue,
                other => return other,
            }
        }
        self.request(msg, NLM_F_DUMP)
    }

    // ---- links ----

    /// Every link.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        for r in self.dump(Rt::GetLink(LinkMessage::default()))? {
            if let Rt::NewLink(l) = r {
                out.push(link_of(&l));
            }
        }
        out.sort_by_key(|l| l.index);
        Ok(out)
    }

    /// The link named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(Rt::GetLink(m), 0) {
            // The kernel also finds a link by an alternative name: only
            // the link that has this name counts.
            Ok(mut v) => Ok(match v.pop() {
                Some(Rt::NewLink(l)) => Some(link_of(&l)).filter(|l| l.name == name),
                _ => None,
            }),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of link `name`, or ENODEV naming it.
    pub fn index(&mut self, name: &str) -> io::Result<u32> {
        self.link(name)?.map(|l| l.index).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface {name:?}"),
            )
        })
    }

    /// Sets a link up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        m.header.change_mask = LinkFlags::Up;
        self.ack(Rt::SetLink(m), 0)
    }

    /// Creates a veth pair: `name` here, `peer` made directly in the network
    /// namespace `peer_ns` (a `/proc/PID/ns/net` fd).
    pub fn add_veth(
        &mut self,
        name: &str,
        mac: [u8; 6],
        peer: &str,
        peer_mac: [u8; 6],
        peer_ns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut p = LinkMessage::default();
        p.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_ns.as_raw_fd()),
        ];
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
            ]),
        ];
        self.ack(Rt::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Creates a bridge.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.ack(Rt::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Enslaves link `index` to bridge `master` (0 takes it out).
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Controller(master));
        self.ack(Rt::SetLink(m), 0)
    }

    /// Moves link `index` into the network namespace `ns`, renamed to
    /// `name` when given (a link must be down to be renamed).
    pub fn move_to(
        &mut self,
        index: u32,
        ns: BorrowedFd<'_>,
        name: Option<&str>,
    ) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        if let Some(n) = name {
            m.attributes.push(LinkAttribute::IfName(n.into()));
        }
        self.ack(Rt::SetLink(m), 0)
    }

    /// Renames link `index` (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        self.ack(Rt::SetLink(m), 0)
    }

    /// Sets the hardware address of link `index`.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.ack(Rt::SetLink(m), 0)
    }

    /// Deletes link `index` (a veth takes its peer with it).
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack(Rt::DelLink(m), 0)
    }

    // ---- addresses ----

    /// Every address (of link `index` when given).
    pub fn addresses(&mut self, index: Option<u32>) -> io::Result<Vec<Addr>> {
        let mut out = Vec::new();
        for r in self.dump(Rt::GetAddress(AddressMessage::default()))? {
            let Rt::NewAddress(a) = r else { continue };
            if index.is_some_and(|i| i != a.header.index) {
                continue;
            }
            let pick = |local: bool| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) if local => Some(*ip),
                    AddressAttribute::Address(ip) if !local => Some(*ip),
                    _ => None,
                })
            };
            if let Some(ip) = pick(true).or_else(|| pick(false)) {
                out.push(Addr {
                    index: a.header.index,
                    ip,
                    prefix: a.header.prefix_len,
                });
            }
        }
        Ok(out)
    }

    /// Adds an address (IPv6 without duplicate detection: the appliance
    /// decides who holds an address). EEXIST when it is there already.
    pub fn add_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let mut m = addr_msg(index, ip, prefix);
        match ip {
            IpAddr::V4(v4) if prefix < 31 => {
                let brd = Ipv4Addr::from(u32::from(v4) | (u32::MAX >> prefix));
                m.attributes.push(AddressAttribute::Broadcast(brd));
            }
            IpAddr::V6(_) => {
                m.header.flags = AddressHeaderFlags::Nodad;
                m.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            _ => {}
        }
        self.ack(Rt::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Removes an address. EADDRNOTAVAIL when it is not there.
    pub fn del_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        self.ack(Rt::DelAddress(addr_msg(index, ip, prefix)), 0)
    }

    // ---- routes ----

    /// Adds (or replaces) a route of the main table.
    pub fn add_route(&mut self, r: &Route) -> io::Result<()> {
        self.ack(
            Rt::NewRoute(route_msg(r, false)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Deletes a route. ESRCH when it is not there.
    pub fn del_route(&mut self, r: &Route) -> io::Result<()> {
        self.ack(Rt::DelRoute(route_msg(r, true)), 0)
    }

    /// The main table's routes, both families.
    pub fn routes(&mut self) -> io::Result<Vec<Route>> {
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RouteMessage::default();
            q.header.address_family = fam;
            for r in self.dump(Rt::GetRoute(q))? {
                let Rt::NewRoute(r) = r else { continue };
                if r.header.table != RouteHeader::RT_TABLE_MAIN
                    || r.header.kind != RouteType::Unicast
                {
                    continue;
                }
                let v6 = fam == AddressFamily::Inet6;
                let mut route = Route {
                    dst: None,
                    gateway: None,
                    oif: None,
                    onlink: r.header.flags.contains(RouteFlags::Onlink),
                    v6,
                };
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(d) => {
                            route.dst = ip_of(d).map(|ip| (ip, r.header.destination_prefix_length));
                        }
                        RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                        RouteAttribute::Oif(i) => route.oif = Some(*i),
                        _ => {}
                    }
                }
                out.push(route);
            }
        }
        Ok(out)
    }

    // ---- neighbours ----

    /// Answers ARP / neighbour solicitations for `ip` on link `index` (a
    /// proxy entry; the link needs `proxy_arp` / `proxy_ndp` on and
    /// forwarding for the kernel to use it).
    pub fn add_proxy(&mut self, index: u32, ip: IpAddr) -> io::Result<()> {
        let m = proxy_msg(index, ip);
        match self.ack(Rt::NewNeighbour(m), NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Every proxy entry: its link and address.
    pub fn proxies(&mut self) -> io::Result<Vec<(u32, IpAddr)>> {
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = NeighbourMessage::default();
            q.header.family = fam;
            // With only NTF_PROXY in the request the kernel dumps the
            // proxy table instead of the neighbour cache.
            q.header.flags = NeighbourFlags::Proxy;
            for r in self.dump(Rt::GetNeighbour(q))? {
                let Rt::NewNeighbour(n) = r else { continue };
                if !n.header.flags.contains(NeighbourFlags::Proxy) {
                    continue;
                }
                for a in &n.attributes {
                    if let NeighbourAttribute::Destination(d) = a {
                        let ip = match d {
                            NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
                            NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            out.push((n.header.ifindex, ip));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes a proxy entry; one that is not there is no error.
    pub fn del_proxy(&mut self, index: u32, ip: IpAddr) -> io::Result<()> {
        match self.ack(Rt::DelNeighbour(proxy_msg(index, ip)), 0) {
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        carrier: l.header.flags.contains(LinkFlags::LowerUp),
        loopback: l.header.flags.contains(LinkFlags::Loopback),
        mac: None,
        perm_mac: None,
        master: None,
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(m) => link.mac = m.as_slice().try_into().ok(),
            LinkAttribute::PermAddress(m) => {
                link.perm_mac = m
                    .as_slice()
                    .try_into()
                    .ok()
                    .filter(|m: &[u8; 6]| m.iter().any(|b| *b != 0))
            }
            LinkAttribute::Controller(c) if *c != 0 => link.master = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn addr_msg(index: u32, ip: IpAddr, prefix: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = prefix;
    m.header.scope = AddressScope::Universe;
    m.header.family = family(ip);
    m.attributes.push(AddressAttribute::Local(ip));
    m.attributes.push(AddressAttribute::Address(ip));
    m
}

fn route_msg(r: &Route, delete: bool) -> RouteMessage {
    let v6 = r.is_v6();
    let mut m = RouteMessage::default();
    m.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    if delete {
        // What iproute2 sends: match any scope, protocol and type.
        m.header.scope = RouteScope::NoWhere;
        m.header.protocol = RouteProtocol::Unspec;
        m.header.kind = RouteType::Unspec;
    } else {
        m.header.protocol = RouteProtocol::Boot;
        m.header.kind = RouteType::Unicast;
        m.header.scope = if r.gateway.is_none() && !v6 {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
    }
    if let Some((ip, len)) = r.dst {
        m.header.destination_prefix_length = len;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(ip)));
    }
    if let Some(g) = r.gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    if r.onlink {
        m.header.flags |= RouteFlags::Onlink;
    }
    if let Some(oif) = r.oif {
        m.attributes.push(RouteAttribute::Oif(oif));
    }
    m
}

fn proxy_msg(index: u32, ip: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = index;
    m.header.kind = RouteType::Unspec;
    m.header.flags = NeighbourFlags::Proxy;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    m
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The kernel's words in an extended ack (`NLMSGERR_ATTR_MSG`), if any.
fn ext_ack_text(hflags: u16, after_code: &[u8]) -> Option<String> {
    if hflags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = u32::from_ne_bytes(after_code.get(..4)?.try_into().ok()?) as usize;
    let skip = if hflags & NLM_F_CAPPED != 0 {
        16
    } else {
        (echoed + 3) & !3
    };
    for nla in NlasIterator::new(after_code.get(skip..)?) {
        let nla = nla.ok()?;
        if nla.kind() == 1 {
            let v = nla.value();
            return Some(String::from_utf8_lossy(v.strip_suffix(&[0]).unwrap_or(v)).into_owned());
        }
    }
    None
}

/// Runs `f` in a thread that entered the network namespace `ns` (a
/// `/proc/PID/ns/net` fd): an [`Rtnl`] made there works in that namespace.
/// The caller's thread never changes namespace.
pub fn in_netns<T: Send>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            rustix::thread::move_into_link_name_space(
                ns,
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (it makes a network namespace of its own): skipped
    /// otherwise. Works on the build machine's kernel; the appliance's is
    /// exercised by qemu-tests.
    fn scratch_netns() -> Option<std::fs::File> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: only this thread's network namespace changes; it
            // shares nothing namespace-dependent with the test's threads.
            let made =
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) };
            let f = made
                .map_err(std::io::Error::from)
                .and_then(|()| std::fs::File::open("/proc/thread-self/ns/net"));
            let _ = tx.send(f.ok());
        });
        rx.recv().ok().flatten()
    }

    #[test]
    fn veth_addresses_routes_and_proxies_in_a_scratch_namespace() {
        use std::os::fd::AsFd;
        let (Some(a), Some(b)) = (scratch_netns(), scratch_netns()) else {
            eprintln!("skipping: cannot make network namespaces (not root?)");
            return;
        };
        let b_fd = b.as_fd();
        in_netns(a.as_fd(), || {
            let mut nl = Rtnl::new()?;
            let lo = nl.index("lo")?;
            nl.set_up(lo, true)?;
            let mac = [0xfe, 0x37, 0x72, 0, 0, 1];
            let peer_mac = [0xc4, 0x37, 0x72, 0, 0, 1];
            nl.add_veth("venet101", mac, "venet0", peer_mac, b_fd)?;
            let host = nl.link("venet101")?.expect("host end");
            assert_eq!(host.mac, Some(mac));
            assert_eq!(host.kind.as_deref(), Some("veth"));
            nl.set_up(host.index, true)?;
            let ip: IpAddr = "192.0.2.10".parse().expect("ip");
            nl.add_route(&Route::host(ip, host.index))?;
            assert!(nl.routes()?.contains(&Route {
                dst: Some((ip, 32)),
                gateway: None,
                oif: Some(host.index),
                onlink: false,
                v6: false
            }));
            nl.del_route(&Route::host(ip, host.index))?;
            assert!(nl.routes()?.iter().all(|r| r.dst != Some((ip, 32))));
            nl.add_proxy(lo, ip)?;
            nl.add_proxy(lo, ip)?;
            assert_eq!(nl.proxies()?, vec![(lo, ip)]);
            nl.del_proxy(lo, ip)?;
            assert_eq!(nl.proxies()?, vec![]);
            nl.del_proxy(lo, ip)?;
            let err = nl.index("nosuch0").expect_err("absent");
            assert!(err.to_string().contains("nosuch0"), "{err}");
            Ok(())
        })
        .expect("namespace a");
        in_netns(b.as_fd(), || {
            let mut nl = Rtnl::new()?;
            let v = nl.link("venet0")?.expect("peer made in b");
            assert_eq!(v.mac, Some([0xc4, 0x37, 0x72, 0, 0, 1]));
            nl.set_up(v.index, true)?;
            let ip4: IpAddr = "203.0.113.5".parse().expect("ip");
            let ip6: IpAddr = "2001:db8::5".parse().expect("ip");
            nl.add_address(v.index, ip4, 32)?;
            nl.add_address(v.index, ip6, 128)?;
            let e = nl.add_address(v.index, ip4, 32).expect_err("twice");
            assert_eq!(errno(&e), Some(libc::EEXIST), "{e}");
            let addrs = nl.addresses(Some(v.index))?;
            assert!(addrs.contains(&Addr {
                index: v.index,
                ip: ip4,
                prefix: 32
            }));
            assert!(addrs.iter().any(|a| a.ip == ip6 && a.prefix == 128));
            nl.add_route(&Route::default_via(false, v.index, None))?;
            let gw6: IpAddr = "fe80::ffff:1:1".parse().expect("gw");
            nl.add_route(&Route::default_via(true, v.index, Some(gw6)))?;
            let routes = nl.routes()?;
            assert!(routes.iter().any(|r| r.dst.is_none() && !r.v6));
            assert!(routes
                .iter()
                .any(|r| r.dst.is_none() && r.gateway == Some(gw6)));
            nl.del_address(v.index, ip4, 32)?;
            assert!(nl.addresses(Some(v.index))?.iter().all(|a| a.ip != ip4));
            nl.delete_link(v.index)?;
            assert!(nl.link("venet0")?.is_none());
            Ok(())
        })
        .expect("namespace b");
    }

    #[test]
    fn changes_name_the_links_touched() {
        let Some(ns) = scratch_netns() else {
            eprintln!("skipping: cannot make network namespaces (not root?)");
            return;
        };
        use std::os::fd::AsFd;
        in_netns(ns.as_fd(), || {
            let mut changes = Changes::new()?;
            let mut nl = Rtnl::new()?;
            let lo = nl.index("lo")?;
            nl.set_up(lo, true)?;
            nl.add_address(lo, "192.0.2.1".parse().expect("ip"), 32)?;
            let touched = changes.wait(Duration::from_millis(100))?;
            assert_eq!(touched, Some(vec![(lo, Some("lo".to_owned()))]));
            nl.add_address(lo, "192.0.2.2".parse().expect("ip"), 32)?;
            let touched = changes.wait(Duration::from_millis(100))?;
            assert_eq!(touched, Some(vec![(lo, None)]));
            Ok(())
        })
        .expect("scratch namespace");
    }
}
