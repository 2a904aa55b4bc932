//! `ve-probe`: a test helper run inside a VE by the end-to-end tests, for
//! the checks busybox cannot make (SysV shared memory, module loading, the
//! attacks of the escape tests: terminal injection, denied syscalls, the
//! process's session and descriptors). Prints one line per check:
//! `<check>: <result>`.

use std::ffi::CString;

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

/// One HTTP GET of `/` on `addr`:80; its time in µs.
fn http_get(addr: &str) -> Result<u128, String> {
    use std::io::{Read, Write};
    let t = std::time::Instant::now();
    let to = std::time::Duration::from_secs(10);
    let sa: std::net::SocketAddr = format!("{addr}:80").parse().map_err(|e| format!("{e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, to).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(to)).map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).map_err(|e| e.to_string())?;
    let us = t.elapsed().as_micros();
    if !body.starts_with(b"HTTP/1.1 200") && !body.starts_with(b"HTTP/1.0 200") {
        return Err(format!(
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        ));
    }
    Ok(us)
}

/// The SSH banner on `addr`:22.
fn ssh_banner(addr: &str) -> Result<(), String> {
    use std::io::Read;
    let to = std::time::Duration::from_secs(10);
    let sa: std::net::SocketAddr = format!("{addr}:22").parse().map_err(|e| format!("{e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, to).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(to)).map_err(|e| e.to_string())?;
    let mut b = [0u8; 8];
    s.read_exact(&mut b).map_err(|e| e.to_string())?;
    if &b[..4] == b"SSH-" {
        Ok(())
    } else {
        Err(format!("banner {:?}", String::from_utf8_lossy(&b)))
    }
}

fn web(args: &[String]) {
    // `A.B.C.X-Y` stands for A.B.C.X to A.B.C.Y (command lines stay short).
    let mut addrs = Vec::new();
    for a in args {
        match a.rsplit_once('.').and_then(|(net, r)| {
            let (x, y) = r.split_once('-')?;
            Some((net, x.parse::<u8>().ok()?, y.parse::<u8>().ok()?))
        }) {
            Some((net, x, y)) => addrs.extend((x..=y).map(|h| format!("{net}.{h}"))),
            None => addrs.push(a.clone()),
        }
    }
    // PROBE_SSH=0: HTTP only. PROBE_STATS=1: what the machine did during
    // the pass (CPU, memory reclaim, the busiest commands).
    let ssh = std::env::var("PROBE_SSH").map_or(true, |v| v != "0");
    let stats = std::env::var("PROBE_STATS").is_ok_and(|v| v == "1");
    let before = stats.then(Snapshot::take);
    let mut times = Vec::new();
    let mut fails = 0;
    for a in &addrs {
        let r = http_get(a).and_then(|t| {
            if ssh {
                ssh_banner(a).map(|()| t)
            } else {
                Ok(t)
            }
        });
        match r {
            Ok(t) => times.push(t),
            Err(e) => {
                fails += 1;
                println!("web: FAIL {a} {e}");
            }
        }
    }
    times.sort_unstable();
    let q = |p: usize| {
        times
            .get((times.len() * p / 100).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    if let Some(b) = before {
        b.report(&Snapshot::take());
    }
    println!(
        "web: ok {} fail {fails} p50 {} p90 {} max {}",
        times.len(),
        q(50),
        q(90),
        times.last().copied().unwrap_or(0)
    );
}

/// The machine's counters at one moment (for `web`'s PROBE_STATS).
struct Snapshot {
    at: std::time::Instant,
    /// /proc/stat's first line: total and idle (+iowait) ticks.
    cpu: (u64, u64),
    vmstat: Vec<(String, u64)>,
    /// Ticks (user + system) per pid, with its command.
    procs: std::collections::HashMap<u32, (String, u64)>,
    /// Ticks per thread of vmmgr (tid, its name, ticks): which of its
    /// threads takes the CPU.
    vmmgr: std::collections::HashMap<u32, (String, u64)>,
}

/// `/proc/.../stat`'s command and user + system ticks.
fn comm_ticks(t: &str) -> Option<(String, u64)> {
    let (o, c) = (t.find('(')?, t.rfind(')')?);
    let f: Vec<&str> = t.get(c + 2..)?.split_whitespace().collect();
    // After ")": state is field 3; utime 14 and stime 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((t[o + 1..c].to_owned(), ticks(14) + ticks(15)))
}

impl Snapshot {
    fn take() -> Snapshot {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let cpu = (
            v.iter().sum(),
            v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0),
        );
        let vmstat = std::fs::read_to_string("/proc/vmstat")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, n) = l.split_once(' ')?;
                Some((k.to_owned(), n.parse().ok()?))
            })
            .collect();
        let mut procs = std::collections::HashMap::new();
        let mut vmmgr = std::collections::HashMap::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((comm, ticks)) = comm_ticks(&t) else {
                continue;
            };
            if comm == "vmmgr" {
                let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
                for t in tasks.into_iter().flatten().flatten() {
                    let Some(tid) = t.file_name().to_str().and_then(|p| p.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                    if let Some(ct) = comm_ticks(&stat) {
                        vmmgr.insert(tid, ct);
                    }
                }
            }
            procs.insert(pid, (comm, ticks));
        }
        Snapshot {
            at: std::time::Instant::now(),
            cpu,
            vmstat,
            procs,
            vmmgr,
        }
    }

    fn report(&self, after: &Snapshot) {
        let total = after.cpu.0.saturating_sub(self.cpu.0).max(1);
        let idle = after.cpu.1.saturating_sub(self.cpu.1);
        println!(
            "web: stat {:.1} s, CPUs {:.0} % busy",
            after.at.duration_since(self.at).as_secs_f64(),
            100.0 * (1.0 - idle as f64 / total as f64)
        );
        let keys = [
            "pgmajfault",
            "pgscan_kswapd",
            "pgscan_direct",
            "workingset_refault_file",
            "workingset_refault_anon",
            "pswpin",
            "pswpout",
            "compact_stall",
            "thp_fault_alloc",
        ];
        let mut line = String::from("web: stat vmstat");
        for k in keys {
            let get = |s: &Snapshot| s.vmstat.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
            line.push_str(&format!(" {k} {}", get(after).saturating_sub(get(self))));
        }
        println!("{line}");
        let mut by_comm: std::collections::HashMap<String, (u64, u32)> = Default::default();
        for (pid, (comm, t)) in &after.procs {
            let was = self.procs.get(pid).map_or(0, |(_, w)| *w);
            let e = by_comm.entry(comm.clone()).or_default();
            e.0 += t.saturating_sub(was);
            e.1 += 1;
        }
        let mut top: Vec<_> = by_comm.into_iter().filter(|(_, (t, _))| *t > 0).collect();
        top.sort_by_key(|(_, (t, _))| std::cmp::Reverse(*t));
        let list: Vec<String> = top
            .iter()
            .take(8)
            .map(|(c, (t, n))| format!("{c} {t} ({n})"))
            .collect();
        println!("web: stat ticks by command: {}", list.join(", "));
        let mut threads: Vec<(String, u64)> = after
            .vmmgr
            .iter()
            .map(|(tid, (name, t))| {
                let was = self.vmmgr.get(tid).map_or(0, |(_, w)| *w);
                (name.clone(), t.saturating_sub(was))
            })
            .filter(|(_, t)| *t > 0)
            .collect();
        threads.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        let list: Vec<String> = threads.iter().map(|(n, t)| format!("{n} {t}")).collect();
        println!("web: stat vmmgr ticks by thread: {}", list.join(", "));
    }
}

/// `ifname`'s index, or the error naming it.
fn if_index(ifname: &str) -> std::io::Result<u32> {
    let c = CString::new(ifname).map_err(std::io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(std::io::Error::other(format!("no interface {ifname}")))
    } else {
        Ok(i)
    }
}

fn bcast(ifname: &str, sport: u16, dport: u16) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let s = std::net::UdpSocket::bind(("0.0.0.0", sport))?;
    s.set_broadcast(true)?;
    // SAFETY: a valid socket and a buffer of the given length.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            ifname.as_ptr().cast(),
            ifname.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for _ in 0..3 {
        s.send_to(b"probe", ("255.255.255.255", dport))?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

fn parse_mac(text: &str) -> std::io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(std::io::Error::other(format!("not a MAC: {text}")));
    }
    for (b, h) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(h, 16).map_err(std::io::Error::other)?;
    }
    Ok(mac)
}

fn vlan_frame(ifname: &str) -> std::io::Result<()> {
    let mac = parse_mac(&std::fs::read_to_string(format!(
        "/sys/class/net/{ifname}/address"
    ))?)?;
    let mut frame = vec![0xff; 6];
    frame.extend(mac);
    frame.extend([0x81, 0x00, 0x00, 100, 0x08, 0x00]);
    frame.extend([0u8; 46]);
    send_frame(ifname, &frame)
}

/// An LLDP frame (to 01:80:c2:00:00:0e, which bridges never forward) with
/// `src` as its source MAC: a bridge that learns from it moves `src` to
/// this port.
fn lldp_frame(ifname: &str, src: &str) -> std::io::Result<()> {
    let mut frame = vec![0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
    frame.extend(parse_mac(src)?);
    frame.extend([0x88, 0xcc]);
    // Chassis ID (MAC), port ID, TTL, end.
    frame.extend([0x02, 0x07, 0x04]);
    frame.extend(parse_mac(src)?);
    frame.extend([0x04, 0x02, 0x07, b'1', 0x06, 0x02, 0x00, 0x78, 0x00, 0x00]);
    frame.resize(60, 0);
    send_frame(ifname, &frame)
}

/// Sends `frame` (a whole Ethernet frame) out of `ifname` 3 times.
fn send_frame(ifname: &str, frame: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let index = if_index(ifname)?;
    // SAFETY: plain integers.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6]);
    send_3(&sock, frame, &to)
}

/// Sends `buf` to `to` (a sockaddr of its family) 3 times, 100 ms apart.
fn send_3<A>(sock: &std::os::fd::OwnedFd, buf: &[u8], to: &A) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    for _ in 0..3 {
        // SAFETY: a valid socket, buffer and address of the given lengths
        // (A is the sockaddr type of the socket's family).
        let rc = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (to as *const A).cast(),
                std::mem::size_of::<A>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

fn icmp6_all_nodes(ifname: &str, ty: u8) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let index = if_index(ifname)?;
    // SAFETY: plain integers.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let hops: libc::c_int = 255;
    for (opt, val) in [
        (libc::IPV6_MULTICAST_HOPS, hops),
        (libc::IPV6_MULTICAST_IF, index as libc::c_int),
    ] {
        // SAFETY: a valid socket and an int option.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IPV6,
                opt,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // The kernel fills the checksum of an ICMPv6 raw socket's messages.
    let msg: Vec<u8> = if ty == 134 {
        // Router advertisement: hop limit 64, lifetime 1800 s, and a
        // prefix 2001:db8:99::/64 to autoconfigure from.
        let mut m = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        m.extend([3, 4, 64, 0xc0]);
        m.extend([0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0]);
        m.extend([
            0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        m
    } else {
        vec![ty, 0, 0, 0, 0x56, 0x45, 0, 1, b'p', b'r', b'o', b'b', b'e']
    };
    // SAFETY: sockaddr_in6 is plain data; zeroed is a valid value.
    let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    to.sin6_addr.s6_addr = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    to.sin6_scope_id = index;
    send_3(&sock, &msg, &to)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let key: i32 = args.get(1).and_then(|k| k.parse().ok()).unwrap_or(0x5645);
    match args.first().map(String::as_str) {
        Some("shm-create") => {
            // SAFETY: shmget takes plain integers.
            let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o600) };
            if id >= 0 {
                println!("shm-create: id {id}")
            } else {
                println!("shm-create: error {}", errno())
            }
        }
        Some("shm-find") => {
            // SAFETY: shmget takes plain integers.
            let id = unsafe { libc::shmget(key, 0, 0) };
            if id >= 0 {
                println!("shm-find: found {id}")
            } else {
                println!("shm-find: absent ({})", errno())
            }
        }
        Some("module") => {
            let f = std::fs::File::open("/bin/busybox");
            let rc = match &f {
                // SAFETY: a valid fd, an empty NUL-terminated parameter string, flags 0.
                Ok(f) => unsafe {
                    use std::os::fd::AsRawFd;
                    libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0)
                },
                Err(_) => -1,
            };
            if rc == 0 {
                println!("module: loaded")
            } else {
                println!("module: denied ({})", errno())
            }
        }
        Some("mknod") => {
            let path = CString::new("/tmp/disk").unwrap_or_default();
            // SAFETY: a valid path; mknod only reads it.
            let rc =
                unsafe { libc::mknod(path.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(254, 0)) };
            if rc == 0 {
                println!("mknod: created")
            } else {
                println!("mknod: denied ({})", errno())
            }
        }
        Some("tiocsti") => {
            // Push a command into whatever terminal we were given: before the
            // fix, the appliance console ran it as appliance root.
            let cmd = b"echo INJECTED-$((6*7))\n";
            for (name, fd) in [("stdin", 0), ("stdout", 1), ("stderr", 2)] {
                let mut ok = 0;
                let mut last = String::new();
                for b in cmd {
                    // SAFETY: TIOCSTI reads one byte from a valid pointer.
                    let rc = unsafe { libc::ioctl(fd, libc::TIOCSTI, b as *const u8) };
                    if rc == 0 {
                        ok += 1
                    } else {
                        last = errno()
                    }
                }
                if ok == cmd.len() {
                    println!("tiocsti {name}: injected");
                } else {
                    println!("tiocsti {name}: denied ({last})");
                }
            }
        }
        Some("session") => {
            // Our session and the terminal's: a command of `vzctl exec` must
            // lead its own session, on a terminal of the VE (or none).
            let pid = std::process::id() as i32;
            // SAFETY: plain integer syscalls.
            let (sid, tsid) = unsafe { (libc::getsid(0), libc::tcgetsid(0)) };
            let tty = std::fs::read_link("/proc/self/fd/0")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("? ({e})"));
            println!("session: pid {pid} sid {sid} tty-sid {tsid} stdin {tty}");
        }
        Some("fds") => {
            let mut open = Vec::new();
            if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
                for e in d.flatten() {
                    if let Some(n) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
                        open.push(n);
                    }
                }
            }
            open.sort_unstable();
            // One of them is the directory being read.
            println!("fds: {open:?}");
        }
        Some("syscalls") => {
            // Each must be refused by the VE's syscall filter (or the kernel).
            let report = |name: &str, rc: libc::c_long| {
                // errno is read at once, before any other call.
                if rc < 0 {
                    println!("{name}: denied ({})", errno());
                } else {
                    println!("{name}: allowed");
                }
            };
            let call = |nr: libc::c_long, a: [libc::c_long; 5]| {
                // SAFETY: every call below passes only integers (null for
                // pointers), which the kernel checks; none can succeed in a
                // way that touches our memory.
                unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4]) }
            };
            report("keyctl", call(libc::SYS_keyctl, [0; 5]));
            report("add_key", call(libc::SYS_add_key, [0; 5]));
            report("bpf", call(libc::SYS_bpf, [0; 5]));
            report("userfaultfd", call(libc::SYS_userfaultfd, [0; 5]));
            report(
                "perf_event_open",
                call(libc::SYS_perf_event_open, [0, 0, -1, -1, 0]),
            );
            report(
                "io_uring_setup",
                call(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0]),
            );
            report(
                "open_by_handle_at",
                call(libc::SYS_open_by_handle_at, [-1, 0, 0, 0, 0]),
            );
            report("kexec_load", call(libc::SYS_kexec_load, [0; 5]));
        }
        Some("tun") => {
            // What a VPN does: a tun interface from /dev/net/tun.
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
            {
                Ok(f) => {
                    use std::os::fd::AsRawFd;
                    let mut ifr = [0u8; 40];
                    ifr[..4].copy_from_slice(b"tun0");
                    // IFF_TUN | IFF_NO_PI
                    ifr[16..18].copy_from_slice(&0x1001u16.to_ne_bytes());
                    // SAFETY: TUNSETIFF reads and writes one struct ifreq.
                    let rc = unsafe { libc::ioctl(f.as_raw_fd(), 0x4004_54ca, ifr.as_mut_ptr()) };
                    if rc == 0 {
                        println!("tun: tun0 created")
                    } else {
                        println!("tun: TUNSETIFF failed ({})", errno())
                    }
                }
                Err(e) => println!("tun: open failed ({e})"),
            }
        }
        Some("web") => {
            // For each ADDR: an HTTP GET of / (timed) and the SSH banner on
            // port 22. Prints `web: ok N fail M p50 US p90 US max US` and one
            // `web: FAIL addr why` line per failure.
            web(&args[1..]);
        }
        Some("bcast") => {
            // UDP to 255.255.255.255:DPORT from SPORT, 3 times, out of IFACE
            // (what a DHCP server's offer looks like with SPORT 67).
            let ifname = args.get(1).cloned().unwrap_or_default();
            let port = |i: usize| args.get(i).and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
            match bcast(&ifname, port(2), port(3)) {
                Ok(()) => println!("bcast: sent"),
                Err(e) => println!("bcast: failed ({e})"),
            }
        }
        Some("icmp6") => {
            // ICMPv6 of TYPE (128 echo request, 134 router advertisement)
            // to ff02::1 out of IFACE with hop limit 255, 3 times.
            let ifname = args.get(1).cloned().unwrap_or_default();
            let ty = args
                .get(2)
                .and_then(|t| t.parse::<u8>().ok())
                .unwrap_or(128);
            match icmp6_all_nodes(&ifname, ty) {
                Ok(()) => println!("icmp6: sent"),
                Err(e) => println!("icmp6: failed ({e})"),
            }
        }
        Some("vlan") => {
            // A broadcast frame tagged with VLAN 100, from IFACE's own MAC,
            // 3 times, through a packet socket (VE root may open one).
            let ifname = args.get(1).cloned().unwrap_or_default();
            match vlan_frame(&ifname) {
                Ok(()) => println!("vlan: sent"),
                Err(e) => println!("vlan: failed ({e})"),
            }
        }
        Some("lldp") => {
            // LLDP frames out of IFACE claiming source MAC SRC.
            let ifname = args.get(1).cloned().unwrap_or_default();
            let src = args.get(2).cloned().unwrap_or_default();
            match lldp_frame(&ifname, &src) {
                Ok(()) => println!("lldp: sent"),
                Err(e) => println!("lldp: failed ({e})"),
            }
        }
        Some("proxies") => {
            // The proxy neighbour entries of this network namespace (run on
            // the appliance: busybox's ip cannot list them), one
            // `proxy ADDR DEV` line each.
            let r = vzcommon::rtnl::Rtnl::new().and_then(|mut nl| {
                let links = nl.links()?;
                Ok(nl
                    .proxies()?
                    .into_iter()
                    .map(|(i, ip)| {
                        let dev = links.iter().find(|l| l.index == i);
                        (ip, dev.map(|l| l.name.clone()).unwrap_or_default())
                    })
                    .collect::<Vec<_>>())
            });
            match r {
                Ok(list) => list
                    .iter()
                    .for_each(|(ip, dev)| println!("proxy {ip} {dev}")),
                Err(e) => println!("proxies: failed ({e})"),
            }
        }
        Some("udp-recv") => {
            // One datagram on PORT (any address), within 30 s.
            let port: u16 = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            let r = std::net::UdpSocket::bind(("::", port)).and_then(|s| {
                s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
                let mut buf = [0u8; 512];
                let (n, from) = s.recv_from(&mut buf)?;
                Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
            });
            match r {
                Ok((text, from)) => println!("udp: got {text:?} from {from}"),
                Err(e) => println!("udp: nothing ({e})"),
            }
        }
        Some("fuse") => {
            // What a FUSE filesystem does: /dev/fuse, then mount with it.
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
            {
                Ok(f) => {
                    use std::os::fd::AsRawFd;
                    let _ = std::fs::create_dir_all("/tmp/fusemnt");
                    let opts = CString::new(format!(
                        "fd={},rootmode=40000,user_id=0,group_id=0",
                        f.as_raw_fd()
                    ))
                    .unwrap_or_default();
                    // SAFETY: valid NUL-terminated strings.
                    let rc = unsafe {
                        libc::mount(
                            c"probe".as_ptr(),
                            c"/tmp/fusemnt".as_ptr(),
                            c"fuse".as_ptr(),
                            0,
                            opts.as_ptr().cast(),
                        )
                    };
                    if rc == 0 {
                        println!("fuse: mounted");
                        // SAFETY: a path we just mounted.
                        unsafe { libc::umount2(c"/tmp/fusemnt".as_ptr(), libc::MNT_DETACH) };
                    } else {
                        println!("fuse: mount failed ({})", errno())
                    }
                }
                Err(e) => println!("fuse: open failed ({e})"),
            }
        }
        _ => {
            eprintln!(
                "usage: ve-probe shm-create|shm-find [KEY] | module | mknod | tiocsti | \
                 session | fds | syscalls | tun | fuse"
            );
            std::process::exit(2);
        }
    }
}
