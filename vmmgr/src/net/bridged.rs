//! OpenVZ's other two ways of giving a VE a network interface, beside the
//! routed `venet0`:
//!
//! - `NETIF` (bridged veth): a veth pair, the VE's end (`eth0`) straight in
//!   its namespace, the appliance's end (`veth<VEID>.<N>`) enslaved to a
//!   bridge of net.conf. The VE configures its end itself (DHCP or static,
//!   its own tools), as on OpenVZ; the appliance checks no addresses on it.
//! - `NETDEV`: an interface of the appliance moved into the VE, and back
//!   (with its name) when the VE stops.

use std::io;
use std::os::fd::BorrowedFd;
use vzcommon::rtnl::Rtnl;
use vzconfig::net::NetIf;

/// Makes the pair for `n` (filled: names and MACs set) with its VE end in
/// `ve_ns`, the appliance's end in its bridge and up.
pub fn add(host: &mut Rtnl, n: &NetIf, ve_ns: BorrowedFd<'_>) -> io::Result<()> {
    let name = n.host_ifname.clone().unwrap_or_default();
    let bridge = match &n.bridge {
        Some(b) => Some(
            host.link(b)?
                .filter(|l| l.kind.as_deref() == Some("bridge"))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "bridge {b} does not exist on the appliance (define it in the boot \
                         config's net.conf: NETIF=\"ifname={b},type=bridge,ports=...\")"
                        ),
                    )
                })?,
        ),
        None => None,
    };
    if let Some(old) = host.link(&name)? {
        host.delete_link(old.index)?;
    }
    host.add_veth(
        &name,
        n.host_mac.unwrap_or_default(),
        &n.ifname,
        n.mac.unwrap_or_default(),
        ve_ns,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("creating {name}/{}: {e}", n.ifname)))?;
    let index = host.index(&name)?;
    if let Some(b) = bridge {
        host.set_master(index, b.index)?;
    }
    host.set_up(index, true)
}

/// Removes the pair of `n` (its appliance end; the VE's goes with it).
pub fn remove(host: &mut Rtnl, n: &NetIf) -> io::Result<()> {
    let name = n.host_ifname.clone().unwrap_or_default();
    match host.link(&name)? {
        Some(l) => host.delete_link(l.index),
        None => Ok(()),
    }
}

/// Moves the appliance's interface `name` into `ve_ns`; returns its index
/// on the appliance (the kernel keeps it when it comes back, if free).
pub fn move_in(host: &mut Rtnl, name: &str, ve_ns: BorrowedFd<'_>) -> io::Result<u32> {
    let l = host.link(name)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("the appliance has no interface {name}"),
        )
    })?;
    host.set_up(l.index, false)?;
    host.move_to(l.index, ve_ns, None)?;
    Ok(l.index)
}

/// Moves interface `name` of the VE (a socket of its namespace) back into
/// the appliance's namespace `own_ns`, renamed `back_as`.
pub fn move_out(
    ve: &mut Rtnl,
    name: &str,
    own_ns: BorrowedFd<'_>,
    back_as: &str,
) -> io::Result<()> {
    let l = ve.link(name)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("the VE has no interface {name}"),
        )
    })?;
    ve.set_up(l.index, false)?;
    ve.move_to(l.index, own_ns, Some(back_as))
}

/// After a VE ended: its NETDEV interfaces come back to the appliance as
/// the kernel frees the namespace (asynchronously); each is waited for by
/// its index, given its name back if the VE renamed it, and left down.
pub fn returned(nl: &mut Rtnl, devs: &[(String, u32)]) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, index) in devs {
        let mut found = None;
        for _ in 0..50 {
            if let Ok(links) = nl.links() {
                found = links
                    .into_iter()
                    .find(|l| l.index == *index || &l.name == name);
            }
            if found.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        match found {
            Some(l) if &l.name != name => {
                let _ = nl.set_up(l.index, false);
                if nl.set_name(l.index, name).is_err() {
                    missing.push(format!("{name} came back as {}", l.name));
                }
            }
            Some(_) => {}
            None => missing.push(format!("{name} did not come back within 5 s")),
        }
    }
    missing
}
