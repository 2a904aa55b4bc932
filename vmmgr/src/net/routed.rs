//! Routed addresses (`IP_ADDRESS`), as OpenVZ's venet on a mainline kernel
//! (libvzctl's "routed" veth): a veth pair per VE, `venet<VEID>` on the
//! appliance's side and `venet0` in the VE.
//!
//! - In the VE: `venet0` holds the VE's addresses (the prefix given, else
//!   /32 and /128), the IPv4 default route goes straight out of `venet0`, the
//!   IPv6 one via [`GW6`], a link-local address of the appliance's end.
//! - On the appliance: proxy ARP on `venet<VEID>` (it answers the VE's ARP
//!   for anything, so the VE reaches every address through it), `GW6` on
//!   it, a host route per address through it, and a proxy neighbour entry
//!   per address on each uplink, so machines on the appliance's LAN find the
//!   VE's addresses at the appliance (as OpenVZ does).
//! - Source addresses are checked by the firewall (`net::firewall`), on the
//!   appliance's side.
//!
//! The pair is made by `vesetup` before the VE's init runs (`setup::net`);
//! the routes and neighbour entries by vmmgr once it runs, and again on
//! every `--ipadd`/`--ipdel`.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::BorrowedFd;
use vzcommon::rtnl::{Route, Rtnl};
use vzconfig::net::IpNet;

/// The VE's interface.
pub const VE_IFNAME: &str = "venet0";

/// The IPv6 gateway a VE routes through: a link-local address of the
/// appliance's end of its pair (libvzctl's choice).
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xffff, 1, 1);

/// The appliance's end of VE `veid`'s pair.
pub fn host_ifname(veid: u32) -> String {
    format!("venet{veid}")
}

/// Stable MACs for VE `veid`'s pair (appliance end, VE end): locally
/// administered, `56:5a` ("VZ") and three bytes of the VEID's hash.
pub fn macs(veid: u32) -> ([u8; 6], [u8; 6]) {
    // FNV-1a: the same VEID always gets the same MACs.
    let mut h: u32 = 0x811c_9dc5;
    for b in veid.to_le_bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = h.to_be_bytes();
    ([0xfe, 0x56, 0x5a, a, b, c], [0x02, 0x56, 0x5a, a, b, c])
}

fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {path}: {e}")))
}

/// Makes the pair (the VE's end straight in `ve_ns`) and sets up the
/// appliance's end. Returns its index.
pub fn make_pair(host: &mut Rtnl, veid: u32, ve_ns: BorrowedFd<'_>) -> io::Result<u32> {
    let name = host_ifname(veid);
    // A leftover of a VE that died before its namespace was freed.
    if let Some(old) = host.link(&name)? {
        host.delete_link(old.index)?;
    }
    let (hmac, vmac) = macs(veid);
    host.add_veth(&name, hmac, VE_IFNAME, vmac, ve_ns)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("creating the pair {name}/{VE_IFNAME}: {e}"),
            )
        })?;
    host_side(host, veid)
}

/// The appliance's end of a VE's pair as routing needs it, on a pair that
/// exists (made by [`make_pair`], or by CRIU at a restore): its fixed MAC
/// (a restored VE's neighbour entries name it), proxy ARP, strict
/// reverse-path filtering, no router advertisements, up, and the VE's IPv6
/// gateway address.
pub fn host_side(host: &mut Rtnl, veid: u32) -> io::Result<u32> {
    let name = host_ifname(veid);
    let index = host.index(&name)?;
    host.set_mac(index, macs(veid).0)?;
    sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/proxy_arp"), "1")?;
    // Strict reverse-path filtering: behind the firewall's check.
    sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"), "1")?;
    // The appliance's end takes no router advertisements from the VE.
    sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/accept_ra"), "0")?;
    host.set_up(index, true)?;
    host.add_address(index, IpAddr::V6(GW6), 128)
        .or_else(exists_is_fine)?;
    Ok(index)
}

fn exists_is_fine(e: io::Error) -> io::Result<()> {
    if vzcommon::rtnl::errno(&e) == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(e)
    }
}

fn missing_is_fine(e: io::Error) -> io::Result<()> {
    match vzcommon::rtnl::errno(&e) {
        Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT) | Some(libc::ENODEV) => {
            Ok(())
        }
        _ => Err(e),
    }
}

/// Inside the VE (a socket of its namespace): `venet0` up with `addrs` and
/// the default routes. Run before the VE's init, and when the first address
/// comes to a running VE.
pub fn ve_up(ve: &mut Rtnl, addrs: &[IpNet]) -> io::Result<()> {
    if let Some(lo) = ve.link("lo")? {
        ve.set_up(lo.index, true)?;
    }
    let index = ve.index(VE_IFNAME)?;
    ve.set_up(index, true)?;
    for a in addrs {
        ve_add(ve, index, a)?;
    }
    ve_routes(ve, index)
}

/// The VE's default routes through `venet0` (again after a change: the
/// kernel drops a device's IPv4 routes with its last IPv4 address).
pub fn ve_routes(ve: &mut Rtnl, index: u32) -> io::Result<()> {
    ve.add_route(&Route::default_via(false, index, None))?;
    ve.add_route(&Route::default_via(true, index, Some(IpAddr::V6(GW6))))
}

/// Adds one address to the VE's `venet0` (index `index`).
pub fn ve_add(ve: &mut Rtnl, index: u32, a: &IpNet) -> io::Result<()> {
    ve.add_address(index, a.ip, a.prefix_or_host())
        .or_else(exists_is_fine)
        .map_err(|e| io::Error::new(e.kind(), format!("adding {a} to {VE_IFNAME}: {e}")))
}

/// Removes one address from the VE's `venet0`.
pub fn ve_del(ve: &mut Rtnl, index: u32, a: &IpNet) -> io::Result<()> {
    ve.del_address(index, a.ip, a.prefix_or_host())
        .or_else(missing_is_fine)
}

/// The appliance's side of one address: its host route through the VE's
/// pair and the neighbour answers on each uplink.
pub fn host_add(host: &mut Rtnl, host_index: u32, uplinks: &[u32], ip: IpAddr) -> io::Result<()> {
    host.add_route(&Route::host(ip, host_index))
        .map_err(|e| io::Error::new(e.kind(), format!("routing {ip} to the VE: {e}")))?;
    for &u in uplinks {
        host.add_proxy(u, ip).map_err(|e| {
            io::Error::new(e.kind(), format!("answering for {ip} on the uplink: {e}"))
        })?;
    }
    Ok(())
}

/// Takes the appliance's side of one address away (what is already gone is
/// no error: the route dies with the pair).
pub fn host_del(
    host: &mut Rtnl,
    host_index: Option<u32>,
    uplinks: &[u32],
    ip: IpAddr,
) -> io::Result<()> {
    for &u in uplinks {
        host.del_proxy(u, ip)?;
    }
    if let Some(i) = host_index {
        host.del_route(&Route::host(ip, i))
            .or_else(missing_is_fine)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_macs_are_stable_and_fit() {
        assert_eq!(host_ifname(4_294_967_295).len(), 15);
        assert_eq!(macs(101), macs(101));
        assert_ne!(macs(101), macs(102));
        let (h, v) = macs(101);
        assert_eq!(h[0] & 1, 0, "unicast");
        assert_eq!(v[0] & 3, 2, "locally administered unicast");
        assert_eq!(h[3..], v[3..]);
    }
}
