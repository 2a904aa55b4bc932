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
    // Only a leftover pair of this very name (a VE whose namespace the
    // kernel had not freed yet) is taken away; any other interface of that
    // name is not the VE's to replace.
    if let Some(old) = host.link(&name)? {
        if old.kind.as_deref() != Some("veth") || !name.starts_with("veth") {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("the appliance already has an interface named {name}: choose another host_ifname"),
            ));
        }
        host.delete_link(old.index)?;
    }
    if let Some(b) = &bridge {
        no_linklocal_learn(&b.name)?;
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
    let enslaved = match bridge {
        Some(b) => host.set_master(index, b.index),
        None => Ok(()),
    };
    // A pair made here that could not be put in place goes again (and only
    // that one: never an interface this call did not make).
    if let Err(e) = enslaved.and_then(|()| host.set_up(index, true)) {
        let _ = host.delete_link(index);
        return Err(e);
    }
    Ok(())
}

/// Makes bridge `bridge` learn no MAC from link-local frames
/// (01:80:c2:00:00:0x: LLDP, and STP when it is on). Those skip the
/// bridge's netfilter hooks, so the `bridge vz` table could not stop a VE
/// from claiming another machine's MAC with one; the VE ports' other
/// frames pass the table, which holds them to their own MAC.
pub fn no_linklocal_learn(bridge: &str) -> io::Result<()> {
    let path = format!("/sys/class/net/{bridge}/bridge/no_linklocal_learn");
    std::fs::write(&path, "1")
        .map_err(|e| io::Error::new(e.kind(), format!("writing 1 to {path}: {e}")))
}

/// Removes the pair of `n` (its appliance end; the VE's goes with it).
pub fn remove(host: &mut Rtnl, n: &NetIf) -> io::Result<()> {
    let name = n.host_ifname.clone().unwrap_or_default();
    match host.link(&name)? {
        Some(l) => host.delete_link(l.index),
        None => Ok(()),
    }
}

/// Moves the appliance's interface `name` into `ve_ns`; returns its
/// permanent MAC, by which it is found again (inside the VE every name is
/// VE root's to choose). Only a device with one (a physical NIC) moves.
pub fn move_in(host: &mut Rtnl, name: &str, ve_ns: BorrowedFd<'_>) -> io::Result<[u8; 6]> {
    let l = host.link(name)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("the appliance has no interface {name}"),
        )
    })?;
    let perm = l.perm_mac.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} has no permanent MAC: only a physical interface moves into a VE"),
        )
    })?;
    host.set_up(l.index, false)?;
    host.move_to(l.index, ve_ns, None)?;
    Ok(perm)
}

/// Moves the device with permanent MAC `perm` out of the VE (a socket of
/// its namespace) into the appliance's namespace `own_ns`, named `back_as`.
pub fn move_out(
    ve: &mut Rtnl,
    perm: [u8; 6],
    own_ns: BorrowedFd<'_>,
    back_as: &str,
) -> io::Result<()> {
    let l = ve
        .links()?
        .into_iter()
        .find(|l| l.perm_mac == Some(perm))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the VE no longer holds {back_as} (permanent MAC {})",
                    vzconfig::net::render_mac(&perm)
                ),
            )
        })?;
    ve.set_up(l.index, false)?;
    ve.move_to(l.index, own_ns, Some(back_as))
}

/// After a VE ended: its NETDEV devices come back to the appliance as the
/// kernel frees the namespace (asynchronously); each is waited for by its
/// permanent MAC, given its name back if the VE renamed it, and left down.
pub fn returned(nl: &mut Rtnl, devs: &[(String, [u8; 6])]) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, perm) in devs {
        let mut found = None;
        for _ in 0..50 {
            if let Ok(links) = nl.links() {
                found = links.into_iter().find(|l| l.perm_mac == Some(*perm));
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
