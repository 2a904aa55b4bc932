//! VE networking on the appliance's side: routed addresses (`routed`),
//! bridged interfaces and moved-in devices (`bridged`), the
//! firewall that holds VEs to their own addresses (`firewall`), and the
//! appliance's own interfaces (`uplink`).

pub mod announce;
pub mod bridged;
pub mod firewall;
pub mod routed;
pub mod uplink;

/// The appliance routes for its VEs (as OpenVZ's `99-vzctl.conf` sets up a
/// host): forwarding on, proxy neighbour entries answered on IPv6 too, no
/// redirects sent to VEs (their routes all point at the appliance).
pub fn appliance_sysctls() -> std::io::Result<()> {
    for (path, value) in [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/ipv6/conf/all/forwarding", "1"),
        ("/proc/sys/net/ipv6/conf/all/proxy_ndp", "1"),
        ("/proc/sys/net/ipv4/conf/all/send_redirects", "0"),
        ("/proc/sys/net/ipv4/conf/default/send_redirects", "0"),
        // Room in the neighbour tables (shared by every namespace) for
        // many VEs and their peers, as OpenVZ's host settings give.
        ("/proc/sys/net/ipv4/neigh/default/gc_thresh2", "2048"),
        ("/proc/sys/net/ipv4/neigh/default/gc_thresh3", "4096"),
        ("/proc/sys/net/ipv6/neigh/default/gc_thresh2", "2048"),
        ("/proc/sys/net/ipv6/neigh/default/gc_thresh3", "4096"),
    ] {
        std::fs::write(path, value).map_err(|e| {
            std::io::Error::new(e.kind(), format!("writing {value} to {path}: {e}"))
        })?;
    }
    Ok(())
}
