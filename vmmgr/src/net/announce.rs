//! Telling the neighbours on the uplinks that an address is answered here
//! now (a VE that arrived by migration): a gratuitous ARP request for
//! IPv4, an unsolicited neighbour advertisement (override set) to all
//! nodes for IPv6, from the uplink's MAC, as OpenVZ's `vzarpipdetect` and
//! the kernel's own `arp_notify` do. Peers that still hold the old
//! appliance's MAC for it change at once instead of after their entry
//! goes stale.
//!
//! A bridged VE (`NETIF`) keeps its own MAC, so no neighbour's entry is
//! wrong; but the switches of the segment still send its frames to the old
//! appliance's port. For each of its MACs the new appliance sends a RARP
//! request from that MAC into the VE's bridge (as QEMU and libvirt do for a
//! migrated guest): every switch on the way learns where the MAC is now.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_RARP: u16 = 0x8035;

/// A broadcast RARP request ("who am I") from `mac`, Ethernet header
/// included and padded to Ethernet's 60-byte minimum: its source MAC is
/// what the switches learn.
pub fn rarp_frame(mac: [u8; 6]) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_RARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&3u16.to_be_bytes()); // reverse request
    f[22..28].copy_from_slice(&mac);
    f[32..38].copy_from_slice(&mac);
    f
}

/// An ARP request from `ip` for `ip`, by `mac`.
pub fn arp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut f = [0u8; 28];
    f[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[4] = 6;
    f[5] = 4;
    f[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    f[8..14].copy_from_slice(&mac);
    f[14..18].copy_from_slice(&ip.octets());
    f[24..28].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement of `ip` at `mac` (ICMPv6; the
/// kernel fills the checksum).
pub fn na_message(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // neighbour advertisement
    m[4] = 0x20; // override
    m[8..24].copy_from_slice(&ip.octets());
    m[24] = 2; // target link-layer address
    m[25] = 1; // 8 bytes
    m[26..32].copy_from_slice(&mac);
    m
}

fn send_arp(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<()> {
    send_packet(index, libc::SOCK_DGRAM, ETH_P_ARP, &arp_frame(mac, ip))
}

/// Sends `frame` to the broadcast MAC on link `index` through a packet
/// socket of `kind`: `SOCK_DGRAM` (the kernel adds an Ethernet header from
/// the link's own MAC) or `SOCK_RAW` (`frame` carries its header).
fn send_packet(index: u32, kind: i32, proto: u16, frame: &[u8]) -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            kind | libc::SOCK_CLOEXEC,
            i32::from(proto.to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = proto.to_be();
    to.sll_ifindex = i32::try_from(index).map_err(std::io::Error::other)?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and the address are valid for the lengths given,
    // for the duration of the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn send_na(index: u32, mac: [u8; 6], ip: Ipv6Addr) -> std::io::Result<()> {
    use rustix::net::{ipproto, AddressFamily, SendFlags, SocketType};
    let s = rustix::net::socket(AddressFamily::INET6, SocketType::RAW, Some(ipproto::ICMPV6))?;
    // Neighbour discovery is only believed with a hop limit of 255.
    rustix::net::sockopt::set_ipv6_multicast_hops(&s, 255)?;
    rustix::net::sockopt::set_ipv6_multicast_if(&s, index)?;
    let to = std::net::SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    rustix::net::sendto(&s, &na_message(mac, ip), SendFlags::empty(), &to)?;
    Ok(())
}

/// Announces bridged `macs` (bridge name, a VE's MAC on it) into their
/// bridges, a few times. Returns what failed.
pub fn announce_macs(macs: &[(String, [u8; 6])]) -> Vec<String> {
    let mut failed = Vec::new();
    let mut nl = match vzcommon::rtnl::Rtnl::new() {
        Ok(n) => n,
        Err(e) => return vec![format!("rtnetlink: {e}")],
    };
    let mut to: Vec<(u32, &str, [u8; 6])> = Vec::new();
    for (bridge, mac) in macs {
        match nl.index(bridge) {
            Ok(i) => to.push((i, bridge, *mac)),
            Err(e) => failed.push(format!("bridge {bridge}: {e}")),
        }
    }
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        for (index, bridge, mac) in &to {
            if let Err(e) = send_packet(*index, libc::SOCK_RAW, ETH_P_RARP, &rarp_frame(*mac)) {
                if round == 0 {
                    failed.push(format!("{} into {bridge}: {e}", mac_text(*mac)));
                }
            }
        }
    }
    failed
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Announces `addrs` on every uplink that answers for VEs, a few times
/// (a lost frame is not retried by anyone). Returns what failed.
pub fn announce(addrs: &[IpAddr]) -> Vec<String> {
    let mut failed = Vec::new();
    let uplinks = vzcommon::rtnl::Rtnl::new().and_then(|mut nl| {
        let devs = crate::daemon::neighbour_devs(&mut nl)?;
        Ok(nl
            .links()?
            .into_iter()
            .filter(|l| devs.contains(&l.index))
            .filter_map(|l| Some((l.index, l.name, l.mac?)))
            .collect::<Vec<_>>())
    });
    let uplinks = match uplinks {
        Ok(u) => u,
        Err(e) => return vec![format!("listing the uplinks: {e}")],
    };
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        for (index, name, mac) in &uplinks {
            for ip in addrs {
                let sent = match ip {
                    IpAddr::V4(v4) => send_arp(*index, *mac, *v4),
                    IpAddr::V6(v6) => send_na(*index, *mac, *v6),
                };
                if let Err(e) = sent {
                    if round == 0 {
                        failed.push(format!("{ip} on {name}: {e}"));
                    }
                }
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_laid_out_as_the_rfcs_say() {
        let mac = [0x52, 0x54, 0, 0, 1, 2];
        let f = arp_frame(mac, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(&f[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[8..14], &mac);
        assert_eq!(&f[14..18], &[192, 0, 2, 10]);
        assert_eq!(&f[18..24], &[0; 6]);
        assert_eq!(&f[24..28], &[192, 0, 2, 10]);
        let ip: Ipv6Addr = "2001:db8:2::10".parse().expect("ip");
        let m = na_message(mac, ip);
        assert_eq!(m[0], 136);
        assert_eq!(m[4] & 0xe0, 0x20, "override, not router, not solicited");
        assert_eq!(&m[8..24], &ip.octets());
        assert_eq!(&m[24..26], &[2, 1]);
        assert_eq!(&m[26..32], &mac);
        let r = rarp_frame(mac);
        assert_eq!(&r[..6], &[0xff; 6]);
        assert_eq!(&r[6..12], &mac, "the source MAC the switches learn");
        assert_eq!(&r[12..14], &[0x80, 0x35]);
        assert_eq!(&r[14..22], &[0, 1, 8, 0, 6, 4, 0, 3]);
        assert_eq!((&r[22..28], &r[32..38]), (&mac[..], &mac[..]));
        assert_eq!(&r[38..], &[0; 22], "target address and padding");
        assert_eq!(mac_text(mac), "52:54:00:00:01:02");
    }
}
