//! The VE's routed interface, made before its init runs (`net::routed`):
//! the pair from the appliance's network namespace with the VE's end put
//! straight into the VE's, then `venet0`'s addresses and routes through a
//! socket of the VE's namespace. vesetup enters that namespace only to make
//! the socket (it is single-threaded) and comes straight back.

use super::{Ctx, SetupError, Spec};
use crate::net::routed;
use nix::sched::CloneFlags;
use std::os::fd::{AsFd, BorrowedFd};
use vzcommon::rtnl::Rtnl;

pub(super) fn configure(cx: &Ctx, spec: &Spec, init: BorrowedFd<'_>) -> Result<(), SetupError> {
    if spec.ipaddr.is_empty() && spec.netif.is_empty() && spec.netdev.is_empty() {
        return Ok(());
    }
    let own = cx.at(
        "opening the appliance's network namespace",
        std::fs::File::open("/proc/thread-self/ns/net"),
    )?;
    let mut host = cx.at("opening rtnetlink", Rtnl::new())?;
    cx.at(
        "entering the VE's network namespace",
        nix::sched::setns(init, CloneFlags::CLONE_NEWNET),
    )?;
    let inside =
        std::fs::File::open("/proc/thread-self/ns/net").and_then(|ns| Ok((ns, Rtnl::new()?)));
    // Back before anything else, whatever happened.
    cx.at(
        "returning to the appliance's network namespace",
        nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWNET),
    )?;
    let (ve_ns, mut ve) = cx.at("opening rtnetlink in the VE", inside)?;
    if !spec.ipaddr.is_empty() {
        cx.at(
            format!("making {}", routed::host_ifname(spec.veid)),
            routed::make_pair(&mut host, spec.veid, ve_ns.as_fd()),
        )?;
        cx.at(
            format!("configuring the VE's {}", routed::VE_IFNAME),
            routed::ve_up(&mut ve, &spec.ipaddr),
        )?;
    }
    for n in &spec.netif {
        cx.at(
            format!("NETIF {}", n.ifname),
            crate::net::bridged::add(&mut host, n, ve_ns.as_fd()),
        )?;
    }
    for d in &spec.netdev {
        cx.at(
            format!("NETDEV {d}"),
            crate::net::bridged::move_in(&mut host, d, ve_ns.as_fd()).map(drop),
        )?;
    }
    Ok(())
}
