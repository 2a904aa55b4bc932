//! `vzmigrate` between two appliances linked on 127.0.0.1 (their `eth1`s on
//! one virtual Ethernet, 192.0.2.0/24), each naming the other in its
//! `migrate.conf`:
//!
//! - a wrong key at DEST, and too little space at DEST: refused before
//!   anything moves, the VE running at the source, nothing at DEST;
//! - live (`--online`): a VE's counting process goes on at DEST with its
//!   PID and its count, DEST answers for the VE's address (A's neighbour
//!   entry names B's MAC), a TCP connection from a VE on B survives, the
//!   freeze time is printed; the source keeps only `101.conf.migrated`;
//! - offline: the private area is identical at DEST (contents, owners,
//!   modes, links, overlay whiteouts) and the VE runs there; a VEID DEST
//!   has already is refused, unless given another there (`--new-id`);
//! - DEST killed during the memory transfer: the VE goes on running at A,
//!   the exit code names the stage, and DEST after its restart has
//!   nothing of the VE;
//! - a systemd VE, and a bridged VE (NETIF) with a connection from B to
//!   it, live; B announces the bridged VE's MAC to the segment.

use qemu_tests::Appliance;
use std::time::Duration;

/// The counting process's PID inside `ve` and its last value.
fn counter(a: &mut Appliance, ve: u32) -> anyhow::Result<(u32, u64)> {
    let ps = a.run_ok(&format!("vzctl exec {ve} 'ps -o pid,args' </dev/null"))?;
    let pid = ps
        .lines()
        .find(|l| l.contains("count.sh"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no counting process in VE {ve}:\n{ps}"))?;
    let n = a
        .run_ok(&format!("vzctl exec {ve} cat /tmp/count </dev/null"))?
        .trim()
        .parse()?;
    Ok((pid, n))
}

/// Starts the counting process in `ve` (its count in the shell's memory).
fn start_counter(a: &mut Appliance, ve: u32) -> anyhow::Result<()> {
    a.run_ok(&format!(
        r#"vzctl exec {ve} 'printf "i=0\nwhile :; do i=\$((i+1)); echo \$i > /tmp/count.n; mv /tmp/count.n /tmp/count; sleep 1; done\n" > /root/count.sh; (sh /root/count.sh </dev/null >/dev/null 2>&1 &)' </dev/null"#
    ))?;
    a.run_ok("sleep 2")?;
    Ok(())
}

/// A shell line that runs `cat` (a command printing an echo client's
/// output) until its output has the line `word`, for up to 10 s, and then
/// once more for the caller to check.
fn echoed(cat: &str, word: &str) -> String {
    format!("i=0; until {cat} | grep -qx {word} || [ $i -ge 20 ]; do i=$((i+1)); sleep 0.5; done; {cat}")
}

/// Nothing of `ve` at `b`: no config, no private area, no dump.
fn nothing_of(b: &mut Appliance, ve: u32) -> anyhow::Result<()> {
    let list = b.run_ok("vzlist -a -H -o ctid")?;
    assert!(
        !list.split_whitespace().any(|v| v == ve.to_string()),
        "VE {ve} at DEST: {list}"
    );
    let left = b.run_ok(&format!(
        "ls -d /etc/vz/conf/{ve}.conf /vz/private/{ve}* /vz/dump/*.{ve}* 2>/dev/null; true"
    ))?;
    assert!(left.trim().is_empty(), "left at DEST: {left}");
    Ok(())
}

/// A listing of a private area: every entry's type, mode, owner, size and
/// name, and every file's checksum. (The link count of a whiteout is left
/// out: overlay links all of them to one inode in its work directory.)
fn tree_of(a: &mut Appliance, ve: u32) -> anyhow::Result<String> {
    a.run_ok(&format!(
        "cd /vz/private/{ve}/upper && ls -lnRa . | grep -v '^total' | awk '{{$6=$7=$8=\"\"; if ($1 ~ /^c/) $2=\"\"; print}}' \
         && find . -type f | sort | xargs md5sum"
    ))
}

#[test]
fn vzmigrate_moves_a_running_ve_and_fails_safe() -> anyhow::Result<()> {
    // A knows B twice: rightly, and as "impostor" with A's own key (a
    // DEST that does not hold the key named).
    let (mut a, mut b) = Appliance::boot_migration_pair("migrate", |_, ka| {
        format!("name=impostor,address=192.0.2.2,key={ka}")
    })?;
    let keys = (a.run_ok("vzmigrate --key")?, b.run_ok("vzmigrate --key")?);
    assert_eq!(keys.0.trim().len(), 44, "a base64 X25519 key: {}", keys.0);
    assert_ne!(keys.0, keys.1);

    a.run_ok("vzctl --quiet create 101 --ostemplate busybox")?;
    a.run_ok("vzctl --quiet set 101 --ipadd 192.0.2.10 --save")?;
    a.run_ok("vzctl --quiet start 101")?;
    start_counter(&mut a, 101)?;

    // A wrong key at DEST: refused before anything is sent.
    let (out, rc) = a.run_rc("vzmigrate --online impostor 101")?;
    assert_eq!(rc, 4, "wrong key at DEST: {out}");
    assert!(out.contains("not the appliance"), "{out}");
    assert!(a.run_ok("vzctl status 101")?.contains("running"));
    nothing_of(&mut b, 101)?;
    // A DEST too small (B's VZDATA filled to a few MiB): refused by B's
    // check, before anything is sent.
    b.run_ok(
        "avail=$(df -k /vz | awk 'NR==2 {print $4}'); fallocate -l $(( (avail - 8192) * 1024 )) /vz/fill",
    )?;
    let (out, rc) = a.run_rc("vzmigrate --online b 101")?;
    assert_eq!(rc, 31, "DEST too small: {out}");
    assert!(out.contains("free space"), "{out}");
    assert!(a.run_ok("vzctl status 101")?.contains("running"));
    nothing_of(&mut b, 101)?;
    b.run_ok("rm /vz/fill")?;

    // Live: an echo server in 101, a client in VE 201 on B holding a
    // connection to it across the migration.
    a.run_ok(
        "vzctl exec 101 '(nc -l -p 7000 -e /bin/cat </dev/null >/dev/null 2>&1 &)' </dev/null",
    )?;
    b.run_ok("vzctl --quiet create 201 --ostemplate busybox && vzctl --quiet set 201 --ipadd 192.0.2.20 --save && vzctl --quiet start 201")?;
    b.run_ok(
        "vzctl exec 201 'mkfifo /tmp/tin; (sleep 900 > /tmp/tin &); (nc 192.0.2.10 7000 < /tmp/tin > /tmp/tout 2>&1 &)' </dev/null",
    )?;
    // (The first connection waits for its neighbour entries: up to 10 s.)
    b.run_ok("sleep 1; vzctl exec 201 'echo before > /tmp/tin' </dev/null")?;
    assert_eq!(
        b.run_ok(&echoed("vzctl exec 201 cat /tmp/tout </dev/null", "before"))?
            .trim(),
        "before"
    );
    let (pid, before) = counter(&mut a, 101)?;
    let up = |x: &mut Appliance| -> anyhow::Result<f64> {
        let t = x.run_ok("vzctl exec 101 cat /proc/uptime </dev/null")?;
        Ok(t.split_whitespace().next().unwrap_or("").parse()?)
    };
    let (up_before, t0) = (up(&mut a)?, std::time::Instant::now());
    let (out, rc) = a.run_rc("vzmigrate --online b 101")?;
    assert_eq!(rc, 0, "live migration: {out}");
    let freeze = out
        .split("freeze time ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no freeze time in: {out}"))?;
    println!("migrate: live, idle busybox VE: freeze time {freeze} ms\n{out}");
    assert!(out.contains("pre-copy"), "{out}");
    // At B: the same process, counting on.
    b.run_ok("sleep 2")?;
    let (pid_b, after) = counter(&mut b, 101)?;
    assert_eq!(pid_b, pid, "the counting process kept its PID");
    assert!(after > before, "the count went on: {before} -> {after}");
    // Its clocks too (its time namespace's offsets moved with it): its
    // uptime went on from A's, by no more than the time that passed.
    let up_after = up(&mut b)?;
    let passed = t0.elapsed().as_secs_f64();
    assert!(
        up_after > up_before && up_after < up_before + passed + 2.0,
        "VE uptime {up_before} s at A, {up_after} s at B, {passed:.1} s later"
    );
    // The connection from 201 still carries data.
    b.run_ok("vzctl exec 201 'echo after > /tmp/tin' </dev/null")?;
    let got = b.run_ok(&echoed("vzctl exec 201 cat /tmp/tout </dev/null", "after"))?;
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        ["before", "after"],
        "{got}"
    );
    // B answers for the address: A reaches it over the link, at B's MAC.
    a.run_ok("ping -c 1 -W 3 192.0.2.10")?;
    let neigh = a.run_ok("ip neigh show 192.0.2.10")?;
    assert!(
        neigh.contains("52:54:00:00:01:02"),
        "B's MAC answers: {neigh}"
    );
    // Nothing of it runs at A; its config is set aside there.
    assert!(!a.run_ok("vzlist -a -H -o ctid")?.contains("101"));
    a.run_ok("test -f /etc/vz/conf/101.conf.migrated && test ! -e /vz/private/101")?;
    assert!(b.run_ok("vzctl status 101")?.contains("running"));

    // Offline: a running VE with files of every kind, identical at B.
    a.run_ok("vzctl --quiet create 103 --ostemplate busybox && vzctl --quiet start 103")?;
    a.run_ok(
        "vzctl exec 103 'mkdir -p /srv/d && head -c 3000000 /dev/urandom > /srv/d/big && echo hi > /srv/small && ln -s small /srv/link && ln /srv/small /srv/hard && chmod 4750 /srv/small && chown 5:7 /srv/d && rm /bin/vi && mkfifo /srv/fifo' </dev/null",
    )?;
    // (Stopped first: once it runs at B, its syslogd writes on.)
    a.run_ok("vzctl --quiet stop 103")?;
    let before = tree_of(&mut a, 103)?;
    assert!(before.contains("big") && before.contains(" vi"), "{before}");
    let (out, rc) = a.run_rc("vzmigrate b 103")?;
    assert_eq!(rc, 0, "offline migration: {out}");
    println!("migrate: offline\n{out}");
    let after = tree_of(&mut b, 103)?;
    assert_eq!(before, after, "the private area differs at DEST");
    assert!(b.run_ok("vzctl status 103")?.contains("down"));
    b.run_ok("vzctl --quiet start 103")?;
    // And back, offline while it runs: stopped at B, started at A.
    let (out, rc) = b.run_rc("vzmigrate a 103")?;
    assert_eq!(rc, 0, "offline migration back: {out}");
    assert!(
        out.contains("Stopping VE 103") && out.contains("started"),
        "{out}"
    );
    assert!(a.run_ok("vzctl status 103")?.contains("running"));
    a.run_ok("vzctl exec 103 'test ! -e /bin/vi && cat /srv/hard' </dev/null")?;
    // DEST has a VE of that VEID by now: refused (9), unless told to take
    // it under another VEID (--new-id, offline only).
    b.run_ok("vzctl --quiet create 103 --ostemplate busybox")?;
    let (out, rc) = a.run_rc("vzmigrate b 103")?;
    assert_eq!(rc, 9, "the VEID exists at DEST: {out}");
    assert!(
        out.contains("already exists") && out.contains("--new-id"),
        "{out}"
    );
    let (out, rc) = a.run_rc("vzmigrate --online --new-id=113 b 103")?;
    assert_eq!(rc, 1, "--new-id live: {out}");
    assert!(a.run_ok("vzctl status 103")?.contains("running"));
    let (out, rc) = a.run_rc("vzmigrate --new-id=113 b 103")?;
    assert_eq!(rc, 0, "offline migration under a new VEID: {out}");
    assert!(b.run_ok("vzctl status 113")?.contains("running"));
    b.run_ok("vzctl exec 113 'test ! -e /bin/vi && cat /srv/hard' </dev/null")?;
    assert!(
        b.run_ok("vzctl status 103")?.contains("down"),
        "B's own 103"
    );
    a.run_ok("test -f /etc/vz/conf/103.conf.migrated && test ! -e /etc/vz/conf/103.conf")?;
    b.run_ok("vzctl --quiet stop 113")?;

    // DEST killed during the memory transfer: A's VE keeps running.
    a.run_ok("vzctl --quiet create 104 --ostemplate busybox && vzctl --quiet start 104")?;
    start_counter(&mut a, 104)?;
    a.run_ok("vzctl exec 104 '(awk \"BEGIN { s = sprintf(\\\"%67108864s\\\", \\\"x\\\"); while (1) system(\\\"sleep 1\\\") }\" </dev/null >/dev/null 2>&1 &)' </dev/null; sleep 5")?;
    let (pid, _) = counter(&mut a, 104)?;
    a.run_ok("(vzmigrate --online b 104 > /tmp/mig.out 2>&1; echo \"rc=$?\" >> /tmp/mig.out) &")?;
    let mut seen = String::new();
    for _ in 0..120 {
        seen = a.run_ok("cat /tmp/mig.out")?;
        if seen.contains("Private area") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(seen.contains("Private area"), "{seen}");
    b.power_cut()?;
    let mut out = String::new();
    for _ in 0..120 {
        out = a.run_ok("cat /tmp/mig.out")?;
        if out.contains("rc=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("migrate: DEST killed\n{out}");
    let rc: i32 = out
        .split("rc=")
        .nth(1)
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("vzmigrate did not end: {out}"))?;
    // The copy failed (6), in the memory's pre-copy.
    assert_eq!(rc, 6, "DEST killed: {out}");
    assert!(out.contains("memory pre-copy round 1"), "{out}");
    assert!(out.contains("unchanged here"), "{out}");
    let (pid_a, _) = counter(&mut a, 104)?;
    assert_eq!(pid_a, pid, "VE 104 went on running at A");
    assert!(a.run_ok("vzctl status 104")?.contains("running"));
    let mut b = b.restart()?;
    b.enter_shell()?;
    nothing_of(&mut b, 104)?;
    assert!(b.run_ok("vzctl status 101")?.contains("exist"));

    // A systemd VE (debian-12-minimal) moves live as well: what it made on
    // its /dev and its own cgroups with their controllers (vmmgr's records
    // beside the images) are made again at DEST before CRIU runs there.
    a.run_ok("vzctl --quiet create 301 --ostemplate debian-12-minimal")?;
    a.run_ok("vzctl --quiet set 301 --ipadd 192.0.2.31 --save && vzctl --quiet start 301")?;
    let running = "i=0; until vzctl exec 301 systemctl is-system-running </dev/null 2>/dev/null \
                   | grep -qx running || [ $i -ge 150 ]; do i=$((i+1)); sleep 1; done; \
                   vzctl exec 301 systemctl is-system-running </dev/null 2>&1";
    let (state, _) = a.run_rc_within(running, Duration::from_secs(200))?;
    assert_eq!(state.trim(), "running", "the systemd VE at A");
    let journald = a.run_ok("vzctl exec 301 pidof systemd-journald </dev/null")?;
    let (out, rc) = a.run_rc_within("vzmigrate --online b 301", Duration::from_secs(300))?;
    assert_eq!(rc, 0, "live migration of a systemd VE: {out}");
    println!(
        "migrate: live, systemd VE: {}",
        out.lines().last().unwrap_or("")
    );
    let state = b.run_ok("vzctl exec 301 systemctl is-system-running </dev/null")?;
    assert_eq!(state.trim(), "running", "the systemd VE at B");
    assert_eq!(
        b.run_ok("vzctl exec 301 pidof systemd-journald </dev/null")?,
        journald,
        "journald kept its process across the move"
    );
    b.run_ok("vzctl exec 301 'logger -t vztest moved && sleep 1' </dev/null")?;
    let log = b.run_ok("vzctl exec 301 'journalctl -q -t vztest --no-pager' </dev/null")?;
    assert!(log.contains("moved"), "{log}");
    b.run_ok(
        "vzctl exec 301 'systemd-run --unit vztest sleep 600 && systemctl stop vztest' </dev/null",
    )?;
    let failed = b.run_ok("vzctl exec 301 'systemctl --failed --plain --no-legend' </dev/null")?;
    assert_eq!(failed.trim(), "", "failed units after the move");
    b.run_ok("ping -c 1 -W 5 192.0.2.31 >/dev/null")?;
    nothing_of(&mut a, 301)?;
    b.run_ok("vzctl --quiet stop 301")?;

    // A bridged VE (NETIF) moves live too. Each link becomes the port of a
    // bridge that takes over the appliance's address: the port gives its
    // address up, and the bridge keeps the port's MAC when a VE's pair
    // (00:18:51:.., a lower MAC) joins it.
    for (x, ip) in [(&mut a, "192.0.2.1"), (&mut b, "192.0.2.2")] {
        x.configure_net(
            &format!("ifname=vmbr0,type=bridge,ports=eth1,ip={ip}/24"),
            "",
            "vmbr0",
            ip,
        )?;
        let eth1 = x.run_ok("ip -o addr show dev eth1")?;
        assert!(
            !eth1.contains("192.0.2."),
            "a bridge's port kept its address: {eth1}"
        );
    }
    a.run_ok("vzctl --quiet create 105 --ostemplate busybox && vzctl --quiet set 105 --netif_add eth0,,,,vmbr0 --save && vzctl --quiet start 105")?;
    a.run_ok(
        "vzctl exec2 105 'ip addr add 192.0.2.40/24 dev eth0 && ip link set eth0 up' </dev/null",
    )?;
    let bridge_mac = |x: &mut Appliance| -> anyhow::Result<()> {
        let macs = x.run_ok("cat /sys/class/net/vmbr0/address /sys/class/net/eth1/address")?;
        let l: Vec<&str> = macs.lines().collect();
        assert!(
            l.len() == 2 && l[0] == l[1],
            "the bridge's MAC is not its port's: {macs}"
        );
        Ok(())
    };
    bridge_mac(&mut a)?;
    let mac = a.run_ok("vzctl exec 105 cat /sys/class/net/eth0/address </dev/null")?;
    let mac = mac.trim();
    start_counter(&mut a, 105)?;
    a.run_ok(
        "vzctl exec 105 '(nc -l -p 7000 -e /bin/cat </dev/null >/dev/null 2>&1 &)' </dev/null",
    )?;
    b.run_ok("mkfifo /tmp/bin && (sleep 600 > /tmp/bin &) && (nc 192.0.2.40 7000 < /tmp/bin > /tmp/bout 2>&1 &)")?;
    b.run_ok("sleep 1; echo before > /tmp/bin")?;
    assert_eq!(
        b.run_ok(&echoed("cat /tmp/bout", "before"))?.trim(),
        "before"
    );
    // A counts the frames that come over the link from the VE's MAC
    // announcing where it is now (RARP, as for a migrated virtual machine).
    a.run_ok(&format!(
        "nft add table bridge t && nft add chain bridge t c '{{ type filter hook prerouting priority 0; }}' \
         && nft add rule bridge t c iifname eth1 ether type 0x8035 ether saddr {mac} counter"
    ))?;
    let (pid, before) = counter(&mut a, 105)?;
    let (out, rc) = a.run_rc("vzmigrate --online b 105")?;
    assert_eq!(rc, 0, "live migration of a bridged VE: {out}");
    println!(
        "migrate: live, bridged VE: {}",
        out.lines().last().unwrap_or("")
    );
    b.run_ok("sleep 1")?;
    let (pid_b, after) = counter(&mut b, 105)?;
    assert_eq!(pid_b, pid, "the bridged VE's counting process kept its PID");
    assert!(after > before, "the count went on: {before} -> {after}");
    b.run_ok("echo after > /tmp/bin")?;
    let got = b.run_ok(&echoed("cat /tmp/bout", "after"))?;
    assert_eq!(
        got.trim(),
        "before\nafter",
        "the connection across the move"
    );
    let port = b.run_ok("ip -o link show veth105.0")?;
    assert!(port.contains("master vmbr0"), "{port}");
    assert!(b
        .run_ok("nft list set bridge vz ve_port")?
        .contains("veth105.0"));
    bridge_mac(&mut b)?;
    let rarp = a.run_ok("nft list chain bridge t c")?;
    assert!(
        !rarp.contains("counter packets 0 "),
        "no announcement of the VE's MAC reached A: {rarp}"
    );
    a.run_ok("ping -c 1 -W 5 192.0.2.40 >/dev/null")?;
    nothing_of(&mut a, 105)?;
    Ok(())
}
