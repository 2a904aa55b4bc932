//! VE networking on the appliance kernel: routed addresses (`IP_ADDRESS`,
//! `--ipadd`/`--ipdel`) on `venet0`, VEs reaching each other and the
//! appliance through its routing, live changes, and the appliance's
//! anti-spoofing against VE root.

use qemu_tests::{Appliance, Opts};
use std::io::{Read, Write};

/// Kills vmmgr (init starts it again) a moment after the command returned:
/// init's console line about it must not land inside the command's output.
const KILL_VMMGR: &str = "(sleep 1; kill -9 $(pidof vmmgr)) >/dev/null 2>&1 &";

/// Whether one ping from the appliance shell (or a VE) gets an answer
/// (the checks that nothing answers: a second try could catch QEMU's user
/// network answering late for an address routed out to it).
fn pings(a: &mut Appliance, from: &str, to: &str) -> anyhow::Result<bool> {
    let ping = if to.contains(':') { "ping6" } else { "ping" };
    let cmd = match from {
        "appliance" => format!("{ping} -c 1 -W 2 {to}"),
        ve => format!("vzctl exec {ve} {ping} -c 1 -W 2 {to}"),
    };
    Ok(a.run_rc(&cmd)?.1 == 0)
}

/// Whether `to` answers a ping within two tries (the checks that it
/// answers: under TCG on a loaded host one echo can take seconds, a
/// neighbour lookup on each hop first).
fn reaches(a: &mut Appliance, from: &str, to: &str) -> anyhow::Result<bool> {
    Ok(pings(a, from, to)? || pings(a, from, to)?)
}

/// The packets the appliance dropped from `venet<VEID>` for a source
/// address that is not the VE's.
fn spoof_drops(a: &mut Appliance, veid: u32) -> anyhow::Result<u64> {
    let set = a.run_ok("nft list set inet vz ve_if")?;
    let needle = format!("\"venet{veid}\" counter packets ");
    Ok(set
        .split(&needle)
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

#[test]
fn routed_addresses_live_and_held_to_their_own() -> anyhow::Result<()> {
    // The build machine's 127.0.0.1:PORT goes to the appliance's 8080.
    let port = qemu_tests::free_port()?;
    let uport = qemu_tests::free_port()?;
    let mut a = Appliance::boot_with(
        "net",
        Opts {
            hostfwd: vec![format!("tcp:{port}:8080"), format!("udp:{uport}:5353")],
            probe: true,
            ..Opts::default()
        },
    )?;
    a.enter_shell()?;
    a.run_ok("vzctl --quiet create 101 && vzctl set 101 --ipadd 192.0.2.10 --save")?;
    a.run_ok("vzctl set 101 --hostname web.example.com --nameserver 192.0.2.53 --searchdomain example.com --save")?;
    a.run_ok("vzctl --quiet create 102 && vzctl set 102 --ipadd 198.51.100.20 --ipadd 2001:db8::20 --save")?;
    a.run_ok("vzctl --quiet start 101 && vzctl --quiet start 102")?;
    // The appliance's own network (net.conf's default: DHCP on eth0, from
    // QEMU's user network) in `status`, over the management channel.
    let st = a.status()?;
    let net: Vec<String> = st.network.iter().map(|l| l.to_string()).collect();
    println!("net: the appliance's network: {net:?}");
    assert!(
        net.iter()
            .any(|l| l.starts_with("eth0 up") && l.contains(" 203.0.113.15/24")),
        "{net:?}"
    );
    assert!(
        net.iter().any(|l| l == "default via 203.0.113.2 dev eth0"),
        "{net:?}"
    );

    // Inside: venet0 with its addresses, a default route through it, and
    // nothing else of the appliance's networks.
    let links = a.run_ok("vzctl exec 101 ip -o link")?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    assert_eq!(names, vec!["lo", "venet0"], "{links}");
    let addrs = a.run_ok("vzctl exec 101 ip -o addr show dev venet0")?;
    assert!(addrs.contains("inet 192.0.2.10/32"), "{addrs}");
    let routes = a.run_ok("vzctl exec 101 ip route")?;
    assert!(routes.contains("default dev venet0"), "{routes}");
    let routes6 = a.run_ok("vzctl exec 102 ip -6 route")?;
    assert!(
        routes6.contains("default via fe80::ffff:1:1 dev venet0"),
        "{routes6}"
    );

    // Its resolv.conf, hosts and hostname as OpenVZ writes them; 102 has
    // vz.conf's NAMESERVER=inherit: the appliance's server (from DHCP).
    let files = a.run_ok("vzctl exec 101 cat /etc/resolv.conf /etc/hosts /etc/hostname")?;
    for line in [
        "search example.com",
        "nameserver 192.0.2.53",
        "192.0.2.10 web.example.com web",
        "127.0.0.1 localhost",
    ] {
        assert!(files.contains(line), "{line:?} in\n{files}");
    }
    assert_eq!(files.lines().last(), Some("web"), "{files}");
    let inherited = a.run_ok("vzctl exec 102 cat /etc/resolv.conf")?;
    assert!(inherited.contains("nameserver 203.0.113.3"), "{inherited}");
    // A new DHCP lease naming other servers (its script rewrites the
    // appliance's resolv.conf) reaches the running VE that inherits them.
    let saved = a.run_ok("cat /run/resolv.conf")?;
    a.run_ok("printf '# from DHCP on eth0\\nnameserver 198.51.100.3\\n' > /run/resolv.conf")?;
    let followed = until(
        &mut a,
        "vzctl exec 102 cat /etc/resolv.conf",
        "nameserver 198.51.100.3",
        15,
    )?;
    assert!(followed.contains("nameserver 198.51.100.3"), "{followed}");
    assert!(!followed.contains("203.0.113.3"), "{followed}");
    let own = a.run_ok("vzctl exec 101 cat /etc/resolv.conf")?;
    assert!(own.contains("nameserver 192.0.2.53"), "{own}");
    a.run_ok(&format!(
        "printf '%s\\n' {} > /run/resolv.conf",
        saved
            .lines()
            .map(|l| format!("'{l}'"))
            .collect::<Vec<_>>()
            .join(" ")
    ))?;
    // Live, and symlink-safe: 102's root links its resolv.conf to an
    // appliance path; nothing is written there.
    a.run_ok("vzctl set 101 --nameserver 198.51.100.53")?;
    let r = a.run_ok("vzctl exec 101 cat /etc/resolv.conf")?;
    assert!(
        r.contains("nameserver 198.51.100.53") && !r.contains("192.0.2.53"),
        "{r}"
    );
    let before = a.run_ok("md5sum /etc/vz/vz.conf")?;
    a.run_ok("vzctl exec2 102 'ln -sf /etc/vz/vz.conf /etc/resolv.conf'")?;
    a.run_ok("vzctl set 102 --nameserver 198.51.100.53 --hostname evil")?;
    assert_eq!(a.run_ok("md5sum /etc/vz/vz.conf")?, before);
    let link = a.run_ok("vzctl exec 102 readlink /etc/resolv.conf")?;
    assert_eq!(link.trim(), "/etc/vz/vz.conf");

    // Reached from the appliance, and VE to VE through its routing.
    assert!(reaches(&mut a, "appliance", "192.0.2.10")?);
    assert!(reaches(&mut a, "appliance", "2001:db8::20")?);
    assert!(reaches(&mut a, "101", "198.51.100.20")?);
    assert!(reaches(&mut a, "102", "192.0.2.10")?);
    // TCP: a web server in 102, fetched from 101.
    a.run_ok("vzctl exec 102 'mkdir -p /www && echo hello-from-102 > /www/index.html && httpd -p 80 -h /www'")?;
    let page = a.run_ok("vzctl exec 101 wget -q -O - http://198.51.100.20/")?;
    assert!(page.contains("hello-from-102"), "{page}");
    // A forwarded port (ours: PORTFWD): from the build machine through
    // QEMU's forward to the appliance's 8080, on to 102's web server.
    a.run_ok("vzctl set 102 --portfwd tcp:8080:80 --save")?;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    assert!(reply.contains("hello-from-102"), "{reply}");
    // And UDP: a datagram from the build machine reaches 102's port 5353.
    a.run_ok("vzctl set 102 --portfwd 'tcp:8080:80 udp:5353:5353' --save")?;
    a.install_probe(102)?;
    a.run_ok("(vzctl exec 102 ve-probe udp-recv 5353 > /tmp/udp 2>&1 </dev/null &)")?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut got = String::new();
    for _ in 0..20 {
        udp.send_to(b"hello-udp", ("127.0.0.1", uport))?;
        std::thread::sleep(std::time::Duration::from_millis(500));
        got = a.run_ok("cat /tmp/udp")?;
        if got.contains("udp:") {
            break;
        }
    }
    assert!(got.contains("udp: got \"hello-udp\""), "{got}");
    // Removing a forwarded port ends the connections already made through
    // it: one open across the removal gets no answer from 102 after it.
    let mut held = std::net::TcpStream::connect(("127.0.0.1", port))?;
    held.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    held.write_all(b"GET / HTTP/1.0\r\n")?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let tracked = a.run_ok("conntrack -L -p tcp --orig-port-dst 8080 2>/dev/null")?;
    assert!(tracked.contains("198.51.100.20"), "{tracked}");
    a.run_ok("vzctl set 102 --portfwd udp:5353:5353 --save")?;
    let tracked = a.run_ok("conntrack -L -p tcp --orig-port-dst 8080 2>/dev/null")?;
    assert!(!tracked.contains("198.51.100.20"), "{tracked}");
    let _ = held.write_all(b"\r\n");
    let mut after = String::new();
    let _ = held.read_to_string(&mut after);
    assert!(
        !after.contains("hello-from-102"),
        "a removed port still answered: {after}"
    );
    a.run_ok("vzctl set 102 --portfwd 'tcp:8080:80 udp:5353:5353' --save")?;
    let fwd = a.run_ok("vzlist -H -o ctid,portfwd 102")?;
    assert!(fwd.contains("tcp:8080:80 udp:5353:5353"), "{fwd}");
    let list = a.run_ok("vzlist -H -o ctid,ip")?;
    assert!(list.contains("101 192.0.2.10"), "{list}");
    let st = a.run_ok("vzctl status 102 -j")?;
    assert!(
        st.contains("\"status\": \"running\", \"ip\": [\"198.51.100.20\", \"2001:db8::20\"]"),
        "{st}"
    );
    let json = a.run_ok("vzlist -j -o ctid,ip 102")?;
    assert!(
        json.contains("\"ip\": [\"198.51.100.20\", \"2001:db8::20\"]"),
        "{json}"
    );

    // Live: a new address works at once, a deleted one stops at once.
    a.run_ok("vzctl set 101 --ipadd 192.0.2.11")?;
    // A VE whose config names an address another VE holds live (unsaved)
    // does not start with it.
    a.run_ok(
        "vzctl --quiet create 105 && echo 'IP_ADDRESS=\"192.0.2.11\"' >> /etc/vz/conf/105.conf",
    )?;
    let (out, rc) = a.run_rc("vzctl start 105")?;
    assert_eq!(rc, 78, "{out}");
    assert!(out.contains("192.0.2.11 is an address of VE 101"), "{out}");
    a.run_ok("vzctl --quiet destroy 105")?;
    assert!(reaches(&mut a, "appliance", "192.0.2.11")?);
    a.run_ok("vzctl set 101 --ipdel 192.0.2.10")?;
    assert!(
        !pings(&mut a, "appliance", "192.0.2.10")?,
        "deleted, still answers"
    );
    let addrs = a.run_ok("vzctl exec 101 ip -o addr show dev venet0")?;
    assert!(
        !addrs.contains("192.0.2.10/") && addrs.contains("192.0.2.11/32"),
        "{addrs}"
    );
    // Not saved: the config still has the old list.
    let conf = a.run_ok("grep IP_ADDRESS /etc/vz/conf/101.conf")?;
    assert!(conf.contains("\"192.0.2.10\""), "{conf}");
    // An address of another VE is refused (OpenVZ's 78), nothing changes.
    let (out, rc) = a.run_rc("vzctl set 101 --ipadd 198.51.100.20")?;
    assert_eq!(rc, 78, "{out}");

    // VE root owns its firewall: rules made in 106 (a debian-12-minimal VE,
    // with Debian's nft and iptables-nft of its own) drop 106's port only;
    // 101's answers, and no rule reaches the appliance or another VE.
    a.run_ok("vzctl exec 101 'mkdir -p /www && echo hello-from-101 > /www/index.html && httpd -p 80 -h /www'")?;
    a.run_ok(
        "vzctl --quiet create 103 && vzctl set 103 --ipadd 198.51.100.31 --save && vzctl --quiet start 103",
    )?;
    a.run_ok(
        "vzctl --quiet create 106 --ostemplate debian-12-minimal && \
         vzctl set 106 --ipadd 198.51.100.60 --save && vzctl --quiet start 106",
    )?;
    let mut up = String::new();
    for _ in 0..120 {
        up = a
            .run_rc("vzctl exec 106 systemctl is-system-running 2>&1")?
            .0;
        if up.contains("running") || up.contains("degraded") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(up.contains("running") || up.contains("degraded"), "{up}");
    a.run_ok(
        "vzctl exec 106 systemd-run --quiet --unit=hello \
         /usr/bin/systemd-socket-activate -l 80 --inetd -a /bin/echo hello-from-106",
    )?;
    let reach_106 = |a: &mut Appliance| -> anyhow::Result<bool> {
        Ok(
            a.run_rc("vzctl exec 103 'sleep 1 | timeout 5 nc 198.51.100.60 80'")?
                .0
                .contains("hello-from-106"),
        )
    };
    let reach_101 = |a: &mut Appliance| -> anyhow::Result<bool> {
        Ok(
            a.run_rc("vzctl exec 103 timeout 5 wget -q -O - http://192.0.2.11/")?
                .0
                .contains("hello-from-101"),
        )
    };
    let mut served = false;
    for _ in 0..10 {
        if reach_106(&mut a)? {
            served = true;
            break;
        }
    }
    assert!(served, "106's port 80 before any rule");
    let rules = [
        (
            "nft",
            "nft add table inet f && nft add chain inet f in '{ type filter hook input priority 0; }' \
             && nft add rule inet f in tcp dport 80 drop",
            "nft flush ruleset",
        ),
        (
            "iptables-nft",
            "iptables -A INPUT -p tcp --dport 80 -j DROP",
            "iptables -F INPUT",
        ),
    ];
    for (tool, add, flush) in rules {
        a.run_ok(&format!("vzctl exec 106 \"{add}\""))?;
        assert!(
            !reach_106(&mut a)?,
            "106's own {tool} rule drops its port 80"
        );
        assert!(reach_101(&mut a)?, "{tool}: 101's port 80 still answers");
        let appliance = a.run_ok("nft list ruleset")?;
        assert!(!appliance.contains("dport 80 drop"), "{appliance}");
        a.run_ok(&format!("vzctl exec 106 \"{flush}\""))?;
        assert!(reach_106(&mut a)?, "106's port 80 after {tool}'s flush");
    }
    let version = a.run_ok("vzctl exec 106 iptables -V")?;
    assert!(version.contains("nf_tables"), "{version}");
    // The appliance's table is not in 106's namespace: VE root can neither
    // see nor flush it.
    let (out, rc) = a.run_rc("vzctl exec 106 nft list table inet vz")?;
    assert_ne!(rc, 0, "{out}");
    a.run_ok("vzctl exec 106 nft flush ruleset")?;
    assert!(a
        .run_ok("nft list table inet vz")?
        .contains("chain antispoof"));
    a.run_ok("vzctl --quiet stop 106")?;
    // And its routes: a route VE root adds is in its own table only.
    a.run_ok("vzctl exec2 101 'ip route add 203.0.113.128/25 dev venet0'")?;
    let routes = a.run_ok("ip route")?;
    assert!(!routes.contains("203.0.113.128"), "{routes}");

    // VE root gives itself an address that is not its own and sends from
    // it: the appliance drops it (and counts it), VE root cannot undo that.
    let before = spoof_drops(&mut a, 101)?;
    a.run_ok("vzctl exec2 101 'ip addr add 198.51.100.99/32 dev venet0'")?;
    let spoofed = a.run_rc("vzctl exec 101 ping -c 2 -W 2 -I 198.51.100.99 198.51.100.20")?;
    assert_ne!(
        spoofed.1, 0,
        "a spoofed source got an answer:\n{}",
        spoofed.0
    );
    let after = spoof_drops(&mut a, 101)?;
    println!(
        "net: spoofed packets dropped from VE 101: {}",
        after - before
    );
    assert!(after >= before + 2, "drops {before} -> {after}");
    // Its own address still works.
    assert!(reaches(&mut a, "101", "198.51.100.20")?);
    // A restarted vmmgr loads the firewall again from what the appliance
    // gave 101 (its host routes), not from what 101 put on its venet0. And
    // 102, ended while no vmmgr ran (killed with it), leaves no neighbour
    // answers behind.
    a.install_probe_here()?;
    let proxies = a.run_ok("/run/ve-probe proxies")?;
    assert!(proxies.contains("proxy 198.51.100.20 eth0"), "{proxies}");
    assert!(proxies.contains("proxy 2001:db8::20 eth0"), "{proxies}");
    a.run_ok(
        "(sleep 1; kill -9 $(pidof vmmgr) $(cut -d' ' -f1 /run/vz/ve/102)) >/dev/null 2>&1 &",
    )?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut back = false;
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if a.run_rc("vzlist -H -o ctid 101")?.1 == 0 {
            back = true;
            break;
        }
    }
    assert!(back, "vmmgr restarted");
    // init's console line about the new vmmgr passes first.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let set = a.run_ok("nft list set inet vz ve_addr4")?;
    assert!(!set.contains("198.51.100.99"), "{set}");
    // 101 holds 192.0.2.11 now (192.0.2.10 was deleted live above).
    // (The old DHCP client's release took eth0's IPv4 address, and the
    // kernel the IPv4 answers with it: they come back with the new lease.)
    let proxies = until(&mut a, "/run/ve-probe proxies", "proxy 192.0.2.11 eth0", 10)?;
    assert!(proxies.contains("proxy 192.0.2.11 eth0"), "{proxies}");
    assert!(!proxies.contains("198.51.100.20"), "{proxies}");
    assert!(!proxies.contains("2001:db8::20"), "{proxies}");
    let status = until(&mut a, "vzlist -a -H -o status 102", "stopped", 5)?;
    assert!(
        status.contains("stopped"),
        "102 ended with the old vmmgr: {status}"
    );
    a.run_ok("vzctl --quiet start 102")?;
    let (_, rc) = a.run_rc("vzctl exec 101 ping -c 1 -W 2 -I 198.51.100.99 198.51.100.20")?;
    assert_ne!(rc, 0, "spoofing after a vmmgr restart");
    assert!(reaches(&mut a, "101", "198.51.100.20")?);

    // A restart brings the saved addresses back.
    a.run_ok("vzctl --quiet restart 101")?;
    assert!(reaches(&mut a, "appliance", "192.0.2.10")?);
    assert!(!pings(&mut a, "appliance", "192.0.2.11")?);

    // An appliance reboot: 101 (ONBOOT) comes back with its address, the
    // forwarded port of 102 works again once 102 runs.
    a.run_ok("vzctl set 101 --onboot yes --save")?;
    a.reboot()?;
    let mut up = false;
    for _ in 0..20 {
        if pings(&mut a, "appliance", "192.0.2.10")? {
            up = true;
            break;
        }
    }
    assert!(up, "101 reachable after the reboot");
    a.run_ok("vzctl --quiet start 102")?;
    a.run_ok("vzctl exec 102 'httpd -p 80 -h /www'")?;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    assert!(
        reply.contains("hello-from-102"),
        "after the reboot: {reply}"
    );
    Ok(())
}

/// Runs `cmd` on `a` (its exit code aside) until its output contains
/// `needle`, for at most `secs` seconds; returns the last output (the
/// caller asserts on it).
fn until(a: &mut Appliance, cmd: &str, needle: &str, secs: u64) -> anyhow::Result<String> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let out = a.run_rc(cmd)?.0;
        if out.contains(needle) || std::time::Instant::now() >= end {
            return Ok(out);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Waits (up to 5 s) until `read` of `a` is above `n`; returns it.
fn wait_above(
    a: &mut Appliance,
    n: u64,
    read: impl Fn(&mut Appliance) -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let mut now = read(a)?;
    for _ in 0..20 {
        if now > n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        now = read(a)?;
    }
    Ok(now)
}

/// Waits until a vmmgr other than pid `old` answers.
fn wait_vmmgr(a: &mut Appliance, old: &str) -> anyhow::Result<()> {
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = a.run_rc("pidof vmmgr")?.0;
        if !now.trim().is_empty() && now.trim() != old && a.run_rc("vzlist -a -H -o ctid")?.1 == 0 {
            // init's console line about the new vmmgr passes first.
            std::thread::sleep(std::time::Duration::from_secs(1));
            return Ok(());
        }
    }
    anyhow::bail!("vmmgr did not come back")
}

/// Frames the appliance dropped from bridged port `port` for a MAC that
/// is not its VE's.
fn port_drops(a: &mut Appliance, port: &str) -> anyhow::Result<u64> {
    let set = a.run_ok("nft list set bridge vz ve_port")?;
    let needle = format!("\"{port}\" counter packets ");
    Ok(set
        .split(&needle)
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// One counter of a `/proc/net/snmp`-style file (a names line and a
/// values line per `prefix`).
fn snmp(a: &mut Appliance, file: &str, prefix: &str, name: &str) -> anyhow::Result<u64> {
    let text = a.run_ok(&format!("cat {file}"))?;
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let at = names
        .split_whitespace()
        .position(|n| n == name)
        .ok_or_else(|| anyhow::anyhow!("no {name} in {file}"))?;
    values
        .split_whitespace()
        .nth(at)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{name} in {file} is not a number"))
}

/// ICMP echo requests the appliance received.
fn echos_in(a: &mut Appliance) -> anyhow::Result<u64> {
    snmp(a, "/proc/net/snmp", "Icmp:", "InEchos")
}

#[test]
fn a_ve_is_reached_from_another_appliance_through_neighbour_answers() -> anyhow::Result<()> {
    let (mut a, mut b) = Appliance::boot_pair("net2")?;
    a.enter_shell()?;
    b.enter_shell()?;
    // A masquerades its VEs' 198.51.100.0/24, which B has no route back to.
    // A's link is a port of its bridge vmbr0, which holds A's addresses.
    a.configure_net(
        "ifname=vmbr0,type=bridge,ports=eth1,ip=192.0.2.1/24,ip=2001:db8:2::1/64",
        "MASQUERADE=\"198.51.100.0/24\"",
        "vmbr0",
        "192.0.2.1",
    )?;
    b.configure_net(
        "ifname=eth1,ip=192.0.2.2/24,ip=2001:db8:2::2/64",
        "",
        "eth1",
        "192.0.2.2",
    )?;
    a.run_ok("vzctl --quiet create 101 && vzctl set 101 --ipadd 192.0.2.10 --ipadd 2001:db8:2::10 --save && vzctl --quiet start 101")?;
    a.run_ok("vzctl exec 101 'mkdir -p /www && echo hello-from-a > /www/index.html && httpd -p 80 -h /www'")?;
    b.run_ok("vzctl --quiet create 201 && vzctl set 201 --ipadd 192.0.2.20 --save && vzctl --quiet start 201")?;

    // From B and from a VE on B: ping and TCP, to an address A answers
    // ARP and neighbour solicitations for.
    assert!(reaches(&mut b, "appliance", "192.0.2.10")?);
    assert!(reaches(&mut b, "appliance", "2001:db8:2::10")?);
    assert!(reaches(&mut b, "201", "192.0.2.10")?);
    let page = b.run_ok("vzctl exec 201 wget -q -O - http://192.0.2.10/")?;
    assert!(page.contains("hello-from-a"), "{page}");
    let neigh = b.run_ok("ip neigh show 192.0.2.10")?;
    assert!(
        neigh.contains("52:54:00:00:01:01"),
        "A's link MAC answers for its VE: {neigh}"
    );

    // --ipdel: unreachable at once; --ipadd: a new one reachable at once.
    a.run_ok("vzctl set 101 --ipdel 192.0.2.10")?;
    assert!(
        !pings(&mut b, "appliance", "192.0.2.10")?,
        "deleted, still answers"
    );
    a.run_ok("vzctl set 101 --ipadd 192.0.2.11")?;
    // (Its last IPv4 address went with the --ipdel: so did the kernel's
    // routes through venet0, which the --ipadd puts back.)
    assert!(reaches(&mut b, "appliance", "192.0.2.11")?);

    // A spoofed source from VE root on A never reaches B.
    a.run_ok("vzctl exec2 101 'ip addr add 192.0.2.99/32 dev venet0'")?;
    let before = echos_in(&mut b)?;
    let (_, rc) = a.run_rc("vzctl exec 101 ping -c 3 -W 1 -I 192.0.2.99 192.0.2.2")?;
    assert_ne!(rc, 0, "a spoofed ping was answered");
    let after = echos_in(&mut b)?;
    println!(
        "net: echo requests at B from a spoofed source: {}",
        after - before
    );
    assert_eq!(after, before, "spoofed packets reached B");
    // Its own address does reach B.
    assert!(reaches(&mut a, "101", "192.0.2.2")?);
    assert!(echos_in(&mut b)? > after);

    // A VE with an address B cannot route back to reaches B masqueraded.
    a.run_ok("vzctl --quiet create 102 && vzctl set 102 --ipadd 198.51.100.30 --save && vzctl --quiet start 102")?;
    assert!(reaches(&mut a, "102", "192.0.2.2")?, "masqueraded ping");
    b.run_ok("vzctl exec 201 'mkdir -p /www && echo hello-from-b > /www/index.html && httpd -p 80 -h /www'")?;
    let page = a.run_ok("vzctl exec 102 wget -q -O - http://192.0.2.20/")?;
    assert!(page.contains("hello-from-b"), "{page}");

    // A bridged interface (NETIF): the VE configures it itself, and is
    // reached from B over A's bridge.
    a.run_ok("vzctl --quiet create 104 && vzctl set 104 --netif_add eth0,,,,vmbr0 --save")?;
    let conf = a.run_ok("grep NETIF /etc/vz/conf/104.conf")?;
    assert!(conf.contains("ifname=eth0,bridge=vmbr0"), "{conf}");
    a.run_ok("vzctl --quiet start 104")?;
    let host_end = a.run_ok("ip -o link show veth104.0")?;
    assert!(host_end.contains("master vmbr0"), "{host_end}");
    a.run_ok("vzctl exec2 104 'ip addr add 192.0.2.40/24 dev eth0 && ip link set eth0 up'")?;
    assert!(
        reaches(&mut b, "appliance", "192.0.2.40")?,
        "bridged VE from B"
    );
    assert!(reaches(&mut a, "104", "192.0.2.2")?);
    // A restart makes the pair again, in the bridge; the VE configures its
    // end itself, from its own init (as a Debian VE's ifupdown would).
    a.run_ok(
        "vzctl exec2 104 \"echo '::sysinit:/bin/sh -c \\\"ip addr add 192.0.2.40/24 dev eth0; ip link set eth0 up\\\"' >> /etc/inittab\"",
    )?;
    a.run_ok("vzctl --quiet restart 104")?;
    let mut reached = false;
    for _ in 0..10 {
        if pings(&mut b, "appliance", "192.0.2.40")? {
            reached = true;
            break;
        }
    }
    assert!(reached, "bridged VE after a restart");

    // Checkpointed and restored, the bridged VE keeps a TCP connection
    // from B across A's bridge: CRIU makes its pair again in vmbr0, with
    // the appliance end's own MAC.
    let host_mac = a.run_ok("cat /sys/class/net/veth104.0/address")?;
    a.run_ok(
        "vzctl exec 104 '(nc -l -p 7000 -e /bin/cat </dev/null >/dev/null 2>&1 &)' </dev/null",
    )?;
    b.run_ok("mkfifo /tmp/tin && (sleep 600 > /tmp/tin &) && (nc 192.0.2.40 7000 < /tmp/tin > /tmp/tout 2>&1 &)")?;
    b.run_ok("sleep 1; echo before > /tmp/tin; sleep 1")?;
    assert_eq!(b.run_ok("cat /tmp/tout")?.trim(), "before");
    let out = a.run_ok("vzctl chkpnt 104 && vzctl restore 104")?;
    println!("net2: bridged VE: {}", out.lines().last().unwrap_or(""));
    let host_end = a.run_ok("ip -o link show veth104.0")?;
    assert!(
        host_end.contains("master vmbr0") && host_end.contains(",UP"),
        "{host_end}"
    );
    assert_eq!(a.run_ok("cat /sys/class/net/veth104.0/address")?, host_mac);
    b.run_ok("echo after > /tmp/tin; sleep 2")?;
    let got = b.run_ok("cat /tmp/tout")?;
    assert_eq!(
        got.trim(),
        "before\nafter",
        "the connection across the restore"
    );
    assert!(
        reaches(&mut b, "appliance", "192.0.2.40")?,
        "bridged VE after a restore"
    );
    b.run_ok("kill $(pidof nc) 2>/dev/null; true")?;

    // The bridged port is held to its MAC, and sends no DHCP server
    // replies and no router advertisements: from VE root, after a vmmgr
    // restart (the firewall is loaded again from the running VEs).
    let old = a.run_ok("pidof vmmgr")?;
    a.run_ok(KILL_VMMGR)?;
    wait_vmmgr(&mut a, old.trim())?;
    a.install_probe(104)?;
    assert!(
        reaches(&mut a, "104", "192.0.2.2")?,
        "own MAC, after restart"
    );
    let own_mac = a.run_ok("vzctl exec 104 cat /sys/class/net/eth0/address")?;
    let own_mac = own_mac.trim().to_owned();
    let before = (echos_in(&mut b)?, port_drops(&mut a, "veth104.0")?);
    a.run_ok("vzctl exec2 104 'ip link set eth0 address 02:00:00:00:99:99'")?;
    assert!(
        !pings(&mut a, "104", "192.0.2.2")?,
        "another MAC got an answer"
    );
    let after = (echos_in(&mut b)?, port_drops(&mut a, "veth104.0")?);
    println!(
        "net: frames dropped from veth104.0 with another MAC: {}",
        after.1 - before.1
    );
    assert_eq!(after.0, before.0, "frames with another MAC reached B");
    assert!(after.1 > before.1, "not counted: {before:?} {after:?}");
    a.run_ok(&format!(
        "vzctl exec2 104 'ip link set eth0 address {own_mac}'"
    ))?;
    assert!(reaches(&mut a, "104", "192.0.2.2")?, "own MAC again");
    // A DHCP server's reply (UDP from port 67, or to the client's port 68
    // from any) does not leave the port; a broadcast between other ports
    // does (B counts broadcasts that no socket of its own takes).
    let bcasts = |b: &mut Appliance| snmp(b, "/proc/net/snmp", "Udp:", "IgnoredMulti");
    let n0 = bcasts(&mut b)?;
    let out = a.run_ok("vzctl exec 104 ve-probe bcast eth0 12345 12346")?;
    assert!(out.contains("bcast: sent"), "{out}");
    let n1 = wait_above(&mut b, n0, bcasts)?;
    assert!(n1 > n0, "the control broadcast did not reach B");
    for (sport, dport) in [(67, 68), (12345, 68), (547, 12346)] {
        let out = a.run_ok(&format!(
            "vzctl exec 104 ve-probe bcast eth0 {sport} {dport}"
        ))?;
        assert!(out.contains("bcast: sent"), "{out}");
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        bcasts(&mut b)?,
        n1,
        "a DHCP server reply from a VE reached B"
    );
    // A link-local frame (LLDP, which skips the bridge's netfilter hooks)
    // claiming B's MAC does not move B to 104's port in A's bridge: A
    // still reaches B.
    let out = a.run_ok("vzctl exec 104 ve-probe lldp eth0 52:54:00:00:01:02")?;
    assert!(out.contains("lldp: sent"), "{out}");
    assert!(
        reaches(&mut a, "appliance", "192.0.2.2")?,
        "A's bridge took B's MAC from a VE's LLDP frame"
    );
    // A router advertisement does not either; an echo request to all
    // nodes does (counted on B's link only: QEMU's user network sends
    // advertisements to B's eth0 too).
    let in6 = |b: &mut Appliance, what: &str| {
        let t = b.run_ok("cat /proc/net/dev_snmp6/eth1")?;
        Ok::<u64, anyhow::Error>(
            t.lines()
                .find_map(|l| l.strip_prefix(what))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        )
    };
    let e0 = in6(&mut b, "Icmp6InEchos")?;
    let ra0 = in6(&mut b, "Icmp6InRouterAdvertisements")?;
    let out = a.run_ok("vzctl exec 104 ve-probe icmp6 eth0 128")?;
    assert!(out.contains("icmp6: sent"), "{out}");
    let out = a.run_ok("vzctl exec 104 ve-probe icmp6 eth0 134")?;
    assert!(out.contains("icmp6: sent"), "{out}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(in6(&mut b, "Icmp6InEchos")? > e0, "the control echo");
    assert_eq!(
        in6(&mut b, "Icmp6InRouterAdvertisements")?,
        ra0,
        "a router advertisement from a VE reached B"
    );
    // Tagged frames (a way onto a VLAN the appliance's LAN may carry) are
    // dropped at the port: the rule's counter takes all three.
    let tagged = |a: &mut Appliance| -> anyhow::Result<u64> {
        let chain = a.run_ok("nft list chain bridge vz from_ve")?;
        Ok(chain
            .lines()
            .find(|l| l.contains("tagged frames from a VE"))
            .and_then(|l| l.split("counter packets ").nth(1))
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    };
    let t0 = tagged(&mut a)?;
    let out = a.run_ok("vzctl exec 104 ve-probe vlan eth0")?;
    assert!(out.contains("vlan: sent"), "{out}");
    assert_eq!(
        tagged(&mut a)?,
        t0 + 3,
        "tagged frames not dropped at the port"
    );
    let rules = a.run_ok("nft list chain bridge vz from_ve")?;
    println!("net: the bridged ports' rules after the attacks:\n{rules}");

    // A physical interface moved in (NETDEV): B's link goes into VE 202,
    // works there, and comes back to B with its name when 202 stops.
    b.run_ok("vzctl --quiet create 202 && vzctl --quiet start 202")?;
    b.run_ok("vzctl set 202 --netdev_add eth1 --save")?;
    let (_, rc) = b.run_rc("ip link show eth1")?;
    assert_ne!(rc, 0, "eth1 left B's namespace");
    b.run_ok("vzctl exec2 202 'ip addr add 192.0.2.60/24 dev eth1 && ip link set eth1 up'")?;
    assert!(
        reaches(&mut b, "202", "192.0.2.1")?,
        "the moved NIC works inside"
    );
    // VE root renames it; it still comes back as eth1 (found by its
    // permanent MAC, not by a name the VE chose).
    b.run_ok("vzctl exec2 202 'ip link set eth1 down && ip link set eth1 name x0'")?;
    b.run_ok("vzctl --quiet stop 202")?;
    let back = until(&mut b, "ip link show eth1", "eth1:", 5)?.contains("eth1:");
    assert!(back, "eth1 came back to B with its name");

    // A VE whose bridge is not there does not start, and says why.
    b.run_ok("vzctl --quiet create 203 && vzctl set 203 --netif_add eth0,,,,vmbr9 --save")?;
    let (out, rc) = b.run_rc("vzctl start 203")?;
    assert_eq!(rc, 130, "{out}");
    assert!(
        out.contains("203.conf:") && out.contains(": NETIF: bridge vmbr9 does not exist"),
        "{out}"
    );

    // A mistake in net.conf: logged with its file and line; the appliance
    // keeps its console, and a VE with routed addresses still starts.
    b.run_ok("printf 'NETIF=\"ifname=eth1,ip=192.0.2.2\"\\n' > /etc/vz/net.conf")?;
    b.run_ok(KILL_VMMGR)?;
    let logged = until(
        &mut b,
        "grep net.conf /run/vz/log",
        "net.conf:1: error: NETIF",
        20,
    )?;
    assert!(logged.contains("net.conf:1: error: NETIF"), "{logged}");
    // (The log line comes before vmmgr listens.)
    for _ in 0..40 {
        if b.run_rc("vzlist -a -H -o ctid")?.1 == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    b.run_ok("vzctl --quiet restart 201")?;
    assert!(reaches(&mut b, "appliance", "192.0.2.20")?);

    // The MAC spoofing of 104 is in A's log, by VE (read every 30 s).
    let logged = until(
        &mut a,
        "grep 'from a MAC not its own' /run/vz/log",
        "VE 104: ",
        45,
    )?;
    assert!(
        logged.contains("frame(s) from a MAC not its own dropped on bridged port veth104.0"),
        "{logged}"
    );

    // An appliance reboot: A's bridge comes back from its net.conf, 104
    // (ONBOOT) with its pair in it, held to its MAC, reached from B again.
    a.run_ok("vzctl set 104 --onboot yes --save")?;
    a.reboot()?;
    let mut reached = false;
    for _ in 0..30 {
        if pings(&mut b, "appliance", "192.0.2.40")? {
            reached = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(reached, "bridged VE after A's reboot");
    let ports = a.run_ok("nft list set bridge vz ve_port")?;
    assert!(ports.contains("\"veth104.0\""), "{ports}");
    let mac = a.run_ok("nft list set bridge vz ve_mac")?;
    assert!(mac.contains(&format!("\"veth104.0\" . {own_mac}")), "{mac}");

    // And B's reboot: 202 (ONBOOT, NETDEV eth1 saved) takes eth1 in again
    // when it starts, and gives it back when it stops.
    b.run_ok("vzctl set 202 --onboot yes --save")?;
    b.reboot()?;
    // (B's NIC MACs are QEMU's 52:54:00:...)
    let inside = until(
        &mut b,
        "vzctl exec 202 cat /sys/class/net/eth1/address",
        "52:54:00:",
        20,
    )?
    .contains("52:54:00:");
    assert!(inside, "eth1 in 202 after B's reboot");
    let (_, rc) = b.run_rc("ip link show eth1")?;
    assert_ne!(rc, 0, "eth1 left B's namespace again");
    b.run_ok("vzctl --quiet stop 202")?;
    let back = until(&mut b, "ip link show eth1", "eth1:", 5)?.contains("eth1:");
    assert!(back, "eth1 back on B after 202 stopped");
    Ok(())
}
