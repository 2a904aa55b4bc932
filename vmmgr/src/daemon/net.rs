//! A VE's routed addresses from vmmgr's side (`net::routed` has the
//! design): the firewall's allowed sources before the VE runs, the routes
//! and neighbour answers once it runs, all of them again on `--ipadd` and
//! `--ipdel`, and away when it stops.

use super::Manager;
use crate::config::VeId;
use crate::net::{firewall, routed};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use vzcommon::rtnl::{self, Rtnl};
use vzconfig::net::{IpNet, NetIf, PortFwd};

/// Where each forwarded port goes: the VE's first address of each family.
pub fn fwd_targets(portfwd: &[PortFwd], addrs: &[IpNet]) -> Vec<(PortFwd, IpAddr)> {
    let first = |v6: bool| addrs.iter().find(|a| a.ip.is_ipv6() == v6).map(|a| a.ip);
    portfwd
        .iter()
        .flat_map(|f| {
            [first(false), first(true)]
                .into_iter()
                .flatten()
                .map(move |ip| (*f, ip))
        })
        .collect()
}

/// The appliance's interfaces that answer ARP and neighbour solicitations
/// for VE addresses: up, not loopback, not a VE's pair, not a bridge port,
/// holding a global address (OpenVZ's `NEIGHBOUR_DEVS=detect`-like rule).
pub fn neighbour_devs(nl: &mut Rtnl) -> io::Result<Vec<u32>> {
    let links = nl.links()?;
    let addrs = nl.addresses(None)?;
    Ok(links
        .iter()
        .filter(|l| l.up && !l.loopback && l.master.is_none())
        .filter(|l| !l.name.starts_with("venet") && l.kind.as_deref() != Some("veth"))
        .filter(|l| {
            addrs.iter().any(|a| {
                a.index == l.index
                    && match a.ip {
                        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_loopback(),
                        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80 && !v6.is_loopback(),
                    }
            })
        })
        .map(|l| l.index)
        .collect())
}

/// Every interface a proxy entry may sit on (for taking them away).
fn all_devs(nl: &mut Rtnl) -> io::Result<Vec<u32>> {
    Ok(nl
        .links()?
        .iter()
        .filter(|l| !l.loopback && !l.name.starts_with("venet"))
        .map(|l| l.index)
        .collect())
}

fn ips(list: &[IpNet]) -> Vec<IpAddr> {
    list.iter().map(|n| n.ip).collect()
}

/// A socket in the network namespace of the process behind `pidfd`, and a
/// file of that namespace (for moving links into it).
fn open_in(pidfd: BorrowedFd<'_>) -> io::Result<(std::fs::File, Rtnl)> {
    rtnl::in_netns(pidfd, || {
        let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
        Ok((ns, Rtnl::new()?))
    })
}

impl Manager {
    /// Before VE `veid` starts: its addresses become allowed sources on its
    /// pair's name, and its bridged ports (`netif`, filled) are held to
    /// their MACs (the firewall drops everything else from them, so a VE
    /// whose addresses or ports could not be entered has none that work:
    /// its start fails).
    pub(super) fn net_prepare(
        &self,
        veid: VeId,
        addrs: &[IpNet],
        netif: &[NetIf],
    ) -> Result<(), String> {
        for n in netif {
            if let Err(e) = self.port_add(veid, n) {
                self.ports_down(veid);
                return Err(e);
            }
        }
        if addrs.is_empty() {
            return Ok(());
        }
        firewall::allow(&routed::host_ifname(veid.get()), &ips(addrs)).map_err(|e| {
            self.ports_down(veid);
            format!("allowing its addresses in the appliance's firewall: {e}")
        })
    }

    /// Enters bridged port `n` (filled) in the firewall, before its pair is
    /// made.
    fn port_add(&self, veid: VeId, n: &NetIf) -> Result<(), String> {
        let (Some(port), Some(mac)) = (n.host_ifname.clone(), n.mac) else {
            return Err(format!("NETIF {}: no host_ifname or MAC", n.ifname));
        };
        // One port, one VE: another's element (and pair) is not this one's.
        // Checked and claimed in one step (starts run in parallel).
        {
            let mut st = self.lock();
            let owner = st
                .ports
                .iter()
                .find(|(v, l)| **v != veid && l.iter().any(|(p, _)| *p == port))
                .map(|(v, _)| *v);
            if let Some(other) = owner {
                return Err(format!(
                    "NETIF {}: host_ifname {port} is VE {other}'s port; give this one another \
                     host_ifname",
                    n.ifname
                ));
            }
            let mine = st.ports.entry(veid).or_default();
            if mine.iter().any(|(p, m)| *p == port && *m == mac) {
                // Already this VE's (its element is in): nothing to add.
                return Ok(());
            }
            mine.push((port.clone(), mac));
        }
        if let Err(e) = firewall::port_allow(&port, &mac) {
            // Only the claim made above goes.
            if let Some(l) = self.lock().ports.get_mut(&veid) {
                l.retain(|(p, m)| !(*p == port && *m == mac));
            }
            return Err(format!(
                "NETIF {}: entering {port} in the appliance's firewall: {e}",
                n.ifname
            ));
        }
        Ok(())
    }

    /// Takes bridged port `n` out of the firewall (after its pair went).
    fn port_del(&self, veid: VeId, n: &NetIf) {
        let port = n.host_ifname.clone().unwrap_or_default();
        let mut st = self.lock();
        let Some(list) = st.ports.get_mut(&veid) else {
            return;
        };
        let gone: Vec<_> = list.iter().filter(|(p, _)| *p == port).cloned().collect();
        list.retain(|(p, _)| *p != port);
        drop(st);
        for (p, mac) in gone {
            if let Err(e) = firewall::port_revoke(&p, &mac) {
                log::warn!("VE {veid}: taking {p} out of the firewall: {e}");
            }
        }
    }

    /// Takes all of VE `veid`'s bridged ports out of the firewall.
    fn ports_down(&self, veid: VeId) {
        let gone = self.lock().ports.remove(&veid).unwrap_or_default();
        for (p, mac) in gone {
            if let Err(e) = firewall::port_revoke(&p, &mac) {
                log::warn!("VE {veid}: taking {p} out of the firewall: {e}");
            }
        }
    }

    /// Once VE `veid` runs (its pair made by vesetup): the routes to its
    /// addresses and the neighbour answers on the uplinks.
    pub(super) fn net_up(&self, veid: VeId, addrs: &[IpNet]) -> Result<(), String> {
        if addrs.is_empty() {
            return Ok(());
        }
        let _answers = self.answers_lock();
        let run = || -> io::Result<()> {
            let mut nl = Rtnl::new()?;
            let host = nl.index(&routed::host_ifname(veid.get()))?;
            let devs = neighbour_devs(&mut nl)?;
            for a in addrs {
                routed::host_add(&mut nl, host, &devs, a.ip)?;
            }
            Ok(())
        };
        run().map_err(|e| format!("routing its addresses: {e}"))?;
        self.lock().net.insert(veid, addrs.to_vec());
        Ok(())
    }

    /// Makes VE `veid`'s forwarded ports `new` (what changed only).
    pub(super) fn fwd_apply(&self, veid: VeId, new: Vec<(PortFwd, IpAddr)>) -> Result<(), String> {
        let old = self.lock().fwd.get(&veid).cloned().unwrap_or_default();
        let gone: Vec<_> = old.iter().filter(|o| !new.contains(o)).copied().collect();
        let added: Vec<_> = new.iter().filter(|n| !old.contains(n)).copied().collect();
        firewall::forward_del(&gone).map_err(|e| format!("forwarded ports: {e}"))?;
        if let Err(e) = firewall::forward_add(&added) {
            let _ = firewall::forward_add(&gone);
            return Err(format!("forwarded ports: {e}"));
        }
        let mut st = self.lock();
        if new.is_empty() {
            st.fwd.remove(&veid);
        } else {
            st.fwd.insert(veid, new);
        }
        Ok(())
    }

    /// The forwarded ports in force for VE `veid`.
    pub fn fwd_in_force(&self, veid: VeId) -> Vec<PortFwd> {
        let mut v: Vec<PortFwd> = self
            .lock()
            .fwd
            .get(&veid)
            .map(|l| l.iter().map(|(f, _)| *f).collect())
            .unwrap_or_default();
        v.dedup();
        v
    }

    /// After VE `veid` ended (its pair went with its network namespace):
    /// its neighbour answers, allowed sources and forwarded ports go.
    pub(super) fn net_down(&self, veid: VeId) {
        self.ports_down(veid);
        let devs = self.lock().netdev.remove(&veid);
        if let Some(devs) = devs {
            if let Ok(mut nl) = Rtnl::new() {
                for m in crate::net::bridged::returned(&mut nl, &devs) {
                    log::warn!("VE {veid}: NETDEV {m}");
                }
            }
        }
        let fwd = self.lock().fwd.remove(&veid);
        if let Some(f) = fwd {
            if let Err(e) = firewall::forward_del(&f) {
                log::warn!("VE {veid}: removing its forwarded ports: {e}");
            }
        }
        let _answers = self.answers_lock();
        let Some(addrs) = self.lock().net.remove(&veid) else {
            return;
        };
        let list = ips(&addrs);
        let cleaned = Rtnl::new().and_then(|mut nl| {
            let devs = all_devs(&mut nl)?;
            for ip in &list {
                routed::host_del(&mut nl, None, &devs, *ip)?;
            }
            Ok(())
        });
        if let Err(e) = cleaned {
            log::warn!("VE {veid}: taking its neighbour answers away: {e}");
        }
        if let Err(e) = firewall::revoke(&routed::host_ifname(veid.get()), &list) {
            log::warn!("VE {veid}: taking its addresses out of the firewall: {e}");
        }
    }

    /// `--ipadd`/`--ipdel` on running VE `veid` (init behind `pidfd`): takes
    /// effect at once on both sides. On an error, what this call did is
    /// undone and the VE keeps the addresses it had.
    pub(super) fn net_change(
        &self,
        veid: VeId,
        pidfd: BorrowedFd<'_>,
        add: &[IpNet],
        del: &[IpNet],
    ) -> Result<(), String> {
        let _answers = self.answers_lock();
        let had = self.lock().net.get(&veid).cloned().unwrap_or_default();
        let add: Vec<IpNet> = add
            .iter()
            .filter(|a| !had.iter().any(|h| h.ip == a.ip))
            .copied()
            .collect();
        let del: Vec<IpNet> = del
            .iter()
            .filter_map(|d| had.iter().find(|h| h.ip == d.ip).copied())
            .collect();
        if add.is_empty() && del.is_empty() {
            return Ok(());
        }
        let name = routed::host_ifname(veid.get());
        firewall::allow(&name, &ips(&add))
            .map_err(|e| format!("allowing the new addresses in the appliance's firewall: {e}"))?;
        let result = (|| -> io::Result<()> {
            let (ns, mut ve) = open_in(pidfd)?;
            let mut nl = Rtnl::new()?;
            let fresh = nl.link(&name)?.is_none();
            if fresh {
                routed::make_pair(&mut nl, veid.get(), ns.as_fd())?;
                routed::ve_up(&mut ve, &[])?;
            }
            let host = nl.index(&name)?;
            let index = ve.index(routed::VE_IFNAME)?;
            let devs = neighbour_devs(&mut nl)?;
            let mut done: Vec<IpNet> = Vec::new();
            for a in &add {
                let step = routed::ve_add(&mut ve, index, a)
                    .and_then(|()| routed::host_add(&mut nl, host, &devs, a.ip));
                if let Err(e) = step {
                    for d in done.iter().chain(std::iter::once(a)) {
                        let _ = routed::ve_del(&mut ve, index, d);
                        let _ = routed::host_del(&mut nl, Some(host), &devs, d.ip);
                    }
                    return Err(e);
                }
                done.push(*a);
            }
            let all = all_devs(&mut nl)?;
            for d in &del {
                routed::ve_del(&mut ve, index, d)?;
                routed::host_del(&mut nl, Some(host), &all, d.ip)?;
            }
            routed::ve_routes(&mut ve, index)
        })();
        if let Err(e) = result {
            let _ = firewall::revoke(&name, &ips(&add));
            return Err(format!("changing its addresses: {e}"));
        }
        if let Err(e) = firewall::revoke(&name, &ips(&del)) {
            log::warn!("VE {veid}: taking deleted addresses out of the firewall: {e}");
        }
        let mut now: Vec<IpNet> = had
            .into_iter()
            .filter(|h| !del.iter().any(|d| d.ip == h.ip))
            .collect();
        now.extend(add);
        self.lock().net.insert(veid, now);
        Ok(())
    }

    /// After a vmmgr restart: what each adopted VE holds (read from its
    /// `venet0`), and the firewall loaded again with exactly those (a VE
    /// that ended while no vmmgr ran leaves nothing allowed behind).
    pub fn net_resync(&self, masquerade: &[IpNet]) {
        let running: Vec<VeId> = self.lock().running.keys().copied().collect();
        let mut allowed = Vec::new();
        let mut forwards = Vec::new();
        // What a VE holds is read from the appliance's own state, which VE
        // root cannot change: the host routes through its pair (they exist
        // only for the addresses vmmgr gave it, and die with the pair). The
        // addresses VE root put on its venet0 itself are not its.
        let routes = Rtnl::new().and_then(|mut nl| Ok((nl.links()?, nl.routes()?)));
        let (links, routes) = match routes {
            Ok(r) => r,
            Err(e) => {
                log::error!("reading the appliance's routes: {e}");
                (Vec::new(), Vec::new())
            }
        };
        for veid in running {
            let name = routed::host_ifname(veid.get());
            let Some(host) = links.iter().find(|l| l.name == name) else {
                continue;
            };
            let given: Vec<IpAddr> = routes
                .iter()
                .filter(|r| r.oif == Some(host.index) && r.gateway.is_none())
                .filter_map(|r| r.dst)
                .filter(|(ip, p)| *p == if ip.is_ipv4() { 32 } else { 128 })
                .map(|(ip, _)| ip)
                .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
                .collect();
            // The prefixes as configured (for vzlist); nothing is read from
            // the VE.
            let configured = match self.config_of(veid) {
                Some(Ok(c)) => c.ip_address,
                _ => Vec::new(),
            };
            let read: io::Result<Vec<IpNet>> = Ok(given
                .iter()
                .map(|ip| {
                    configured
                        .iter()
                        .find(|a| a.ip == *ip)
                        .copied()
                        .unwrap_or(IpNet {
                            ip: *ip,
                            prefix: None,
                        })
                })
                .collect());
            match read {
                Ok(addrs) if !addrs.is_empty() => {
                    allowed.push((routed::host_ifname(veid.get()), ips(&addrs)));
                    let portfwd = match self.config_of(veid) {
                        Some(Ok(c)) => c.portfwd,
                        _ => Vec::new(),
                    };
                    let f = fwd_targets(&portfwd, &addrs);
                    forwards.extend(f.iter().copied());
                    let mut st = self.lock();
                    st.net.insert(veid, addrs);
                    if !f.is_empty() {
                        st.fwd.insert(veid, f);
                    }
                }
                Ok(_) => {}
                Err(e) => log::warn!("VE {veid}: reading its addresses: {e}"),
            }
        }
        self.proxy_sweep(&allowed);
        // Bridged ports: each running VE's NETIF pairs that exist, held to
        // their configured MACs; any other veth port in a bridge (a VE's
        // whose config no longer says so) sends nothing.
        let mut ports: Vec<(String, Option<[u8; 6]>)> = Vec::new();
        let running: Vec<VeId> = self.lock().running.keys().copied().collect();
        for veid in running {
            let Some(Ok(c)) = self.config_of(veid) else {
                continue;
            };
            let mine: Vec<(String, [u8; 6])> = c
                .netif
                .iter()
                .map(|n| n.filled(veid.get()))
                .filter_map(|n| Some((n.host_ifname?, n.mac?)))
                .filter(|(p, _)| links.iter().any(|l| l.name == *p))
                .collect();
            ports.extend(mine.iter().map(|(p, m)| (p.clone(), Some(*m))));
            if !mine.is_empty() {
                self.lock().ports.insert(veid, mine);
            }
        }
        for l in &links {
            let bridged = l.kind.as_deref() == Some("veth") && l.master.is_some();
            // (A name nft could not take is left out: the table's veth rule
            // drops that port anyway.)
            if bridged
                && vzconfig::net::valid_ifname(&l.name)
                && !ports.iter().any(|(p, _)| *p == l.name)
            {
                log::warn!(
                    "{} is a veth port in a bridge of no running VE: it may send nothing",
                    l.name
                );
                ports.push((l.name.clone(), None));
            }
        }
        let table = firewall::Table {
            allowed,
            forwards,
            masquerade: masquerade.to_vec(),
            ports,
        };
        if let Err(e) = firewall::load(&table) {
            log::error!(
                "the VEs' firewall (nftables table inet vz) could not be loaded: {e};                  VEs with addresses will not start"
            );
        }
    }

    /// After a vmmgr restart: the neighbour answers match the addresses
    /// running VEs hold (`allowed`). Those of a VE that ended while no
    /// vmmgr ran go (its routes went with its pair; its proxy entries on
    /// the uplinks stay until taken away); a held address gets its answers
    /// on today's uplinks. Proxy entries are vmmgr's alone on the
    /// appliance: any other is taken away too.
    fn proxy_sweep(&self, allowed: &[(String, Vec<IpAddr>)]) {
        let held: Vec<IpAddr> = allowed
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .collect();
        let _answers = self.answers_lock();
        let swept = Rtnl::new().and_then(|mut nl| {
            let mut gone = Vec::new();
            for (index, ip) in nl.proxies()? {
                if !held.contains(&ip) {
                    nl.del_proxy(index, ip)?;
                    gone.push(ip);
                }
            }
            let devs = neighbour_devs(&mut nl)?;
            for ip in &held {
                for d in &devs {
                    nl.add_proxy(*d, *ip)?;
                }
            }
            Ok(gone)
        });
        match swept {
            Ok(gone) if !gone.is_empty() => {
                gone.iter().for_each(|ip| {
                    log::info!("neighbour answers for {ip} taken away: no running VE holds it")
                });
            }
            Ok(_) => {}
            Err(e) => log::warn!("matching the neighbour answers to the running VEs: {e}"),
        }
    }

    /// Keeps the neighbour answers for the running VEs' routed addresses
    /// on the uplinks as those change: the kernel drops an interface's
    /// proxy entries when it goes down, and IPv4's when its last IPv4
    /// address goes (a DHCP client's release or renewal does that), and an
    /// uplink may get its first address only after the VEs started.
    pub fn keep_neighbour_answers(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("neighbours".into())
            .spawn(move || {
                let mut changes = match rtnl::Changes::new() {
                    Ok(c) => c,
                    Err(e) => {
                        log::error!(
                            "listening for the uplinks' changes: {e}; neighbour answers \
                             lost to a link or address change are not made again"
                        );
                        return;
                    }
                };
                // VE pairs (made and removed with every start and stop, and
                // given link-local addresses) are no uplinks: their changes
                // are skipped without a look at the tables.
                let mut pairs: std::collections::BTreeSet<u32> = Default::default();
                loop {
                    match changes.wait(std::time::Duration::from_millis(300)) {
                        Ok(Some(touched)) => {
                            for (i, name) in &touched {
                                match name {
                                    Some(n) if n.starts_with("venet") || n.starts_with("veth") => {
                                        pairs.insert(*i);
                                    }
                                    Some(_) => {
                                        pairs.remove(i);
                                    }
                                    None => {}
                                }
                            }
                            let uplinks: Vec<u32> = touched
                                .iter()
                                .map(|(i, _)| *i)
                                .filter(|i| !pairs.contains(i))
                                .collect();
                            if !uplinks.is_empty() {
                                me.renew_answers(Some(&uplinks));
                            }
                        }
                        Ok(None) => me.renew_answers(None),
                        Err(e) => {
                            log::warn!("listening for the uplinks' changes: {e}");
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("starting the neighbour-answer thread: {e}");
        }
    }

    /// Makes the missing neighbour answers for every routed VE address on
    /// the uplinks, when one of `touched` (`None`: any) is an uplink.
    fn renew_answers(&self, touched: Option<&[u32]>) {
        let _answers = self.answers_lock();
        let want: Vec<IpAddr> = self
            .lock()
            .net
            .values()
            .flat_map(|l| l.iter().map(|n| n.ip))
            .collect();
        if want.is_empty() {
            return;
        }
        let renewed = Rtnl::new().and_then(|mut nl| {
            let devs = neighbour_devs(&mut nl)?;
            if let Some(t) = touched {
                if !t.iter().any(|i| devs.contains(i)) {
                    return Ok(Vec::new());
                }
            }
            let have = nl.proxies()?;
            let mut added = Vec::new();
            for ip in &want {
                for d in &devs {
                    if !have.contains(&(*d, *ip)) {
                        nl.add_proxy(*d, *ip)?;
                        added.push((*d, *ip));
                    }
                }
            }
            Ok(added)
        });
        match renewed {
            Ok(added) if !added.is_empty() => log::info!(
                "neighbour answers made again on the uplinks for {} VE address(es)",
                added.len()
            ),
            Ok(_) => {}
            Err(e) => log::warn!("making the neighbour answers again: {e}"),
        }
    }

    /// Writes running VE `veid`'s resolv.conf, hosts and hostname from
    /// `cfg` (through the helper, as VE root; its init behind `init`).
    pub(super) fn network_files(
        &self,
        veid: VeId,
        cfg: &crate::config::VeConfig,
        init: &std::os::fd::OwnedFd,
    ) -> Result<(), String> {
        let (nameservers, searchdomains) = super::start::dns(cfg);
        let live = crate::setup::netfiles::Live {
            hostname: cfg.hostname.clone().unwrap_or_else(|| format!("ve{veid}")),
            ip: self.net_addresses(veid).first().map(|a| a.ip),
            nameservers,
            searchdomains,
        };
        crate::setup::netfiles::spawn_live(
            &self.layout.helper,
            init,
            (cfg.local_uid, cfg.local_gid),
            &live,
        )
    }

    /// Follows the appliance's DNS (`/run/resolv.conf`, which DHCP may
    /// rewrite) into the running VEs whose NAMESERVER or SEARCHDOMAIN is
    /// `inherit`: called every few seconds; the first call only takes note.
    pub(super) fn follow_dns(self: &Arc<Self>) {
        let now = crate::net::uplink::appliance_resolv();
        let changed = {
            let mut st = self.lock();
            let changed = st.dns_seen.as_ref().is_some_and(|seen| *seen != now);
            st.dns_seen = Some(now);
            changed
        };
        if !changed {
            return;
        }
        let running: Vec<(VeId, Arc<std::os::fd::OwnedFd>)> = self
            .lock()
            .running
            .iter()
            .map(|(v, r)| (*v, Arc::clone(&r.pidfd)))
            .collect();
        // On a thread of their own: a VE whose helper is slow (up to its
        // timeout) holds up no sampling.
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("follow-dns".into())
            .spawn(move || me.rewrite_inherited(running));
        if let Err(e) = spawned {
            log::warn!("writing the appliance's new DNS servers into VEs: {e}");
        }
    }

    fn rewrite_inherited(&self, running: Vec<(VeId, Arc<std::os::fd::OwnedFd>)>) {
        for (veid, init) in running {
            let Some(Ok(cfg)) = self.config_of(veid) else {
                continue;
            };
            let inherits = matches!(cfg.nameserver, Some(vzconfig::net::NameServers::Inherit))
                || matches!(
                    cfg.searchdomain,
                    Some(vzconfig::net::SearchDomains::Inherit)
                );
            if !inherits {
                continue;
            }
            match self.network_files(veid, &cfg, &init) {
                Ok(()) => log::info!(
                    "VE {veid}: the appliance's DNS servers changed: resolv.conf written again"
                ),
                Err(e) => log::warn!(
                    "VE {veid}: writing the appliance's new DNS servers into its resolv.conf: {e}"
                ),
            }
        }
    }

    /// Says in the log which VE sent what the firewall dropped as spoofed
    /// since the last look: packets from a source address not its own
    /// (routed), frames from a MAC not its own (bridged).
    pub(super) fn report_drops(&self) {
        let now = match firewall::dropped() {
            Ok(d) => d,
            Err(e) => {
                log::warn!("reading the firewall's drop counters: {e}");
                return;
            }
        };
        let mut st = self.lock();
        for (ifname, count) in now {
            let was = st.drops_seen.insert(ifname.clone(), count).unwrap_or(0);
            // A counter that went down belongs to a new element (a VE
            // started again): all of it is new.
            let new = if count >= was { count - was } else { count };
            if new == 0 {
                continue;
            }
            let routed = ifname
                .strip_prefix("venet")
                .and_then(|v| v.parse::<VeId>().ok());
            let bridged = st
                .ports
                .iter()
                .find(|(_, l)| l.iter().any(|(p, _)| *p == ifname))
                .map(|(v, _)| *v);
            match (routed, bridged) {
                (Some(veid), _) => log::warn!(
                    "VE {veid}: {new} packet(s) from a source address not its own dropped on {ifname}"
                ),
                (None, Some(veid)) => log::warn!(
                    "VE {veid}: {new} frame(s) from a MAC not its own dropped on bridged port {ifname}"
                ),
                (None, None) => log::warn!(
                    "{new} frame(s) from {ifname}, a port of no running VE, dropped"
                ),
            }
        }
    }

    /// NETIF pairs and NETDEV devices of running VE `veid` from `old_*` to
    /// `new_*` (a failure leaves what it did undone by the caller's undo).
    pub(super) fn net_links(
        &self,
        veid: VeId,
        pidfd: BorrowedFd<'_>,
        old_ifs: &[vzconfig::net::NetIf],
        new_ifs: &[vzconfig::net::NetIf],
        old_devs: &[String],
        new_devs: &[String],
    ) -> Result<(), String> {
        use crate::net::bridged;
        let run = || -> io::Result<()> {
            let (ns, mut ve) = open_in(pidfd)?;
            let mut nl = Rtnl::new()?;
            let own = std::fs::File::open("/proc/self/ns/net")?;
            for n in old_ifs.iter().filter(|n| !new_ifs.contains(n)) {
                bridged::remove(&mut nl, n)?;
                self.port_del(veid, n);
            }
            for n in new_ifs.iter().filter(|n| !old_ifs.contains(n)) {
                self.port_add(veid, n).map_err(io::Error::other)?;
                if let Err(e) = bridged::add(&mut nl, n, ns.as_fd()) {
                    self.port_del(veid, n);
                    return Err(e);
                }
            }
            for d in old_devs.iter().filter(|d| !new_devs.contains(d)) {
                let perm = self
                    .lock()
                    .netdev
                    .get(&veid)
                    .and_then(|l| l.iter().find(|(n, _)| n == d).map(|(_, p)| *p));
                let Some(perm) = perm else { continue };
                bridged::move_out(&mut ve, perm, own.as_fd(), d)?;
                if let Some(l) = self.lock().netdev.get_mut(&veid) {
                    l.retain(|(n, _)| n != d);
                }
            }
            for d in new_devs.iter().filter(|d| !old_devs.contains(d)) {
                let perm = bridged::move_in(&mut nl, d, ns.as_fd())?;
                self.lock()
                    .netdev
                    .entry(veid)
                    .or_default()
                    .push((d.clone(), perm));
            }
            Ok(())
        };
        run().map_err(|e| format!("its interfaces: {e}"))
    }

    /// Before VE `veid` starts: where its NETDEV interfaces are on the
    /// appliance (they come back there, by index, when it stops).
    pub(super) fn netdev_prepare(&self, veid: VeId, devs: &[String]) {
        if devs.is_empty() {
            return;
        }
        let found: Vec<(String, [u8; 6])> = Rtnl::new()
            .map(|mut nl| {
                devs.iter()
                    .filter_map(|d| {
                        nl.link(d)
                            .ok()
                            .flatten()
                            .and_then(|l| l.perm_mac)
                            .map(|p| (d.clone(), p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.lock().netdev.insert(veid, found);
    }

    /// The bridges of VE `veid`'s NETIF and the interfaces of its NETDEV
    /// exist on the appliance.
    pub(super) fn check_links(
        &self,
        veid: VeId,
        cfg: &vzconfig::VeConfig,
    ) -> Result<(), super::Outcome> {
        use crate::exitcode::ExitCode;
        if cfg.netif.is_empty() && cfg.netdev.is_empty() {
            return Ok(());
        }
        let path = self.conf_path(veid);
        // Where the key is written (file:line, as every config error).
        let at = |key: &str| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let (entries, _) = vzconfig::parse(&text, &path);
            match entries.iter().rev().find(|e| e.key == key) {
                Some(e) => format!("{}:{}: {key}", path.display(), e.line),
                None => format!("{} (vz.conf's default): {key}", path.display()),
            }
        };
        let mut nl = Rtnl::new()
            .map_err(|e| super::Outcome::fail(ExitCode::System, format!("rtnetlink: {e}")))?;
        let mut names: Vec<String> = Vec::new();
        for n in cfg.netif.iter().map(|n| n.filled(veid.get())) {
            let h = n.host_ifname.unwrap_or_default();
            let bad = if !vzconfig::net::valid_ifname(&h) {
                Some("is not a usable interface name (15 characters at most): set host_ifname")
            } else if h.starts_with("venet") {
                Some("is a routed pair's name (venet*): choose another host_ifname")
            } else if names.contains(&h) {
                Some("is the appliance end of two of its NETIF entries: set host_ifname")
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(super::Outcome::fail(
                    ExitCode::VethFailed,
                    format!("VE {veid}: {}: {h} {why}", at("NETIF")),
                ));
            }
            names.push(h);
        }
        for b in cfg.netif.iter().filter_map(|n| n.bridge.as_ref()) {
            let ok = nl
                .link(b)
                .ok()
                .flatten()
                .is_some_and(|l| l.kind.as_deref() == Some("bridge"));
            if !ok {
                return Err(super::Outcome::fail(
                    ExitCode::VethFailed,
                    format!(
                        "VE {veid}: {}: bridge {b} does not exist on the appliance; \
                         define it in the boot config's net.conf \
                         (NETIF=\"ifname={b},type=bridge,ports=...\")",
                        at("NETIF")
                    ),
                ));
            }
        }
        for d in &cfg.netdev {
            let link = nl.link(d).ok().flatten();
            if link.as_ref().is_some_and(|l| l.perm_mac.is_none()) {
                return Err(super::Outcome::fail(
                    ExitCode::NetDevFailed,
                    format!(
                        "VE {veid}: {}: {d} is not a physical interface (no permanent MAC): \
                         give a VE a virtual one with NETIF",
                        at("NETDEV")
                    ),
                ));
            }
            if link.is_none() {
                return Err(super::Outcome::fail(
                    ExitCode::NetDevFailed,
                    format!(
                        "VE {veid}: {}: the appliance has no interface {d} \
                         (another VE may hold it)",
                        at("NETDEV")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The addresses VE `veid` holds now (running), for vzlist.
    pub fn net_addresses(&self, veid: VeId) -> Vec<IpNet> {
        self.lock().net.get(&veid).cloned().unwrap_or_default()
    }
}
