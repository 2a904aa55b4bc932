//! What `init` and `vmmgr` both do: the records in `/run/vz` that one of them
//! writes and the other reads (each format has one renderer and one parser,
//! here), bringing a network interface up, and printing an error chain.

pub mod run;

use std::os::fd::AsRawFd;

/// An error and its causes on one line: `step: cause: cause`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// Sets `IFF_UP` on a network interface of the current network namespace
/// (`SIOCSIFFLAGS`; neither rustix nor nix wraps it).
#[doc(alias = "SIOCSIFFLAGS")]
pub fn interface_up(name: &str) -> std::io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("interface name {name:?}: 1 to 15 bytes"),
        ));
    }
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `sock` is an open socket, `req` is a valid, NUL-terminated ifreq
    // (the name is shorter than IFNAMSIZ) that outlives the call; SIOCGIFFLAGS
    // writes only into `req.ifr_ifru`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS above initialised the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "mounting /vz")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains_print_every_cause_once() {
        let e = Outer(std::io::Error::other("no such device"));
        assert_eq!(super::error_chain(&e), "mounting /vz: no such device");
    }

    #[test]
    fn bad_interface_names_are_refused_before_any_syscall() {
        assert!(super::interface_up("").is_err());
        assert!(super::interface_up("a-name-much-too-long").is_err());
    }
}
