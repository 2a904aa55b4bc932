//! Resources on one booted appliance: beancounters as OpenVZ prints them,
//! the VE's own /proc view (free, nproc, uptime, cpuinfo), CPU limits and
//! shares measured from the cgroups' own usage counters, and a memory hog
//! held in its VE. Each check prints what it measured.

use qemu_tests::Appliance;
use std::time::Duration;

/// CPU time (µs) the VE's cgroup has used.
fn usage(a: &mut Appliance, veid: u32) -> anyhow::Result<u64> {
    let t = a.run_ok(&format!(
        "awk '$1 == \"usage_usec\" {{print $2}}' /sys/fs/cgroup/vz/{veid}/cpu.stat"
    ))?;
    Ok(t.trim().parse()?)
}

/// Each VE's share of CPU time over `secs` seconds, measured by the kernel.
fn shares(a: &mut Appliance, ves: &[u32], secs: u64) -> anyhow::Result<Vec<f64>> {
    let before: Vec<u64> = ves.iter().map(|v| usage(a, *v)).collect::<Result<_, _>>()?;
    let t0 = std::time::Instant::now();
    a.run_ok(&format!("sleep {secs}"))?;
    let wall = t0.elapsed().as_micros() as f64;
    let after: Vec<u64> = ves.iter().map(|v| usage(a, *v)).collect::<Result<_, _>>()?;
    Ok(before
        .iter()
        .zip(after)
        .map(|(b, a)| (a - b) as f64 / wall)
        .collect())
}

/// A busy loop in VE `veid` for `secs` seconds (the command of a `vzctl
/// exec` ends with it, so vzctl runs in the background on the appliance).
fn busy(a: &mut Appliance, veid: u32, secs: u32) -> anyhow::Result<()> {
    a.run_ok(&format!(
        "(vzctl exec {veid} 'timeout {secs} sh -c \"while :; do :; done\"' >/dev/null 2>&1 &)"
    ))?;
    Ok(())
}

#[test]
fn beancounters_proc_view_cpu_and_memory() -> anyhow::Result<()> {
    let mut a = Appliance::boot_with_probe("resources")?;
    for v in [101, 102, 103] {
        a.run_ok(&format!("vzctl --quiet create {v}"))?;
    }
    a.run_ok("vzctl set 101 --ram 256M --cpus 1 --save")?;
    a.run_ok("vzctl --quiet start 101")?;

    // The VE's /proc: its RAM, its CPUs, its own uptime. (procps' free
    // reads /proc/meminfo; busybox's takes total and free from sysinfo(2),
    // which no filesystem can change, and only "available" from meminfo.)
    let meminfo = a.run_ok("vzctl exec 101 cat /proc/meminfo")?;
    let kb = |key: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "resources: /proc/meminfo in VE 101 (--ram 256M): MemTotal {} kB, MemFree {} kB, MemAvailable {} kB",
        kb("MemTotal:"),
        kb("MemFree:"),
        kb("MemAvailable:")
    );
    assert_eq!(kb("MemTotal:"), 262_144, "{meminfo}");
    assert!(kb("MemFree:") < 262_144 && kb("MemAvailable:") <= 262_144);
    let free = a.run_ok("vzctl exec 101 free -m")?;
    println!("resources: busybox free -m in VE 101:\n{free}");
    let available: u64 = free
        .lines()
        .find(|l| l.trim_start().starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Mem: line in free:\n{free}"))?;
    assert!(available <= 256, "free's available is the VE's:\n{free}");
    assert_eq!(a.run_ok("vzctl exec 101 nproc")?.trim(), "1");
    let cpus = a.run_ok("vzctl exec 101 grep -c ^processor /proc/cpuinfo")?;
    assert_eq!(cpus.trim(), "1", "cpuinfo shows the VE's CPUs");
    let ve_up: f64 = a
        .run_ok("vzctl exec 101 cat /proc/uptime")?
        .split_whitespace()
        .next()
        .unwrap_or("x")
        .parse()?;
    let app_up: f64 = a
        .run_ok("cat /proc/uptime")?
        .split_whitespace()
        .next()
        .unwrap_or("x")
        .parse()?;
    println!("resources: uptime in VE 101 {ve_up:.1} s, appliance {app_up:.1} s");
    assert!(ve_up + 2.0 < app_up, "the VE's uptime starts at its start");
    let (out, rc) = a.run_rc("vzctl exec 101 'echo 1 > /proc/meminfo'")?;
    assert_ne!(rc, 0, "the VE must not write its /proc view:\n{out}");
    // Nor take it off: the binds are locked (made outside its namespace).
    let (out, rc) = a.run_rc("vzctl exec2 101 'umount /proc/meminfo; umount -l /proc/meminfo'")?;
    assert_ne!(rc, 0, "VE root unmounted its /proc view:\n{out}");
    let again = a.run_ok("vzctl exec2 101 'head -1 /proc/meminfo'")?;
    assert!(again.contains("262144 kB"), "{again}");

    // Beancounters as OpenVZ prints them, and the same numbers in vzlist.
    let ubc = a.run_ok("vzctl ubc 101")?;
    println!("resources: vzctl ubc 101:\n{ubc}");
    let lines: Vec<&str> = ubc.lines().collect();
    assert!(lines.contains(&"Version: 2.5"), "{ubc}");
    assert!(
        lines.iter().any(|l| l.starts_with("       101: kmemsize ")),
        "{ubc}"
    );
    let row = |name: &str| -> Vec<u64> {
        lines
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect::<Vec<u64>>()
            })
            .unwrap_or_default()
    };
    let phys = row("physpages");
    assert_eq!(phys.len(), 5, "{ubc}");
    assert!(phys[0] > 0, "physpages held comes from memory.current");
    assert_eq!(phys[3], 65_536, "physpages limit is --ram");
    let list = a.run_ok("vzlist -H -o ctid,numproc,physpages.l,numproc.f")?;
    let f: Vec<&str> = list.split_whitespace().collect();
    assert_eq!(f[0], "101", "{list}");
    assert_eq!(f[2], "65536", "{list}");
    // With no VEID: the appliance (uid 0, as OpenVZ's host) and every VE.
    let all = a.run_ok("vzctl ubc")?;
    assert!(all.contains("         0: kmemsize "), "{all}");
    assert!(all.contains("       101: kmemsize "), "{all}");
    let json = a.run_ok("vzlist -j -o ctid,physpages")?;
    assert!(json.contains("\"physpages\": {\"held\": "), "{json}");

    // Inside a VE, /proc/user_beancounters as in an OpenVZ container: that
    // VE's rows only, while another VE runs; read-only; not removable.
    a.run_ok("vzctl --quiet start 102")?;
    let inside = a.run_ok("vzctl exec 101 cat /proc/user_beancounters")?;
    println!("resources: /proc/user_beancounters in VE 101:\n{inside}");
    let il: Vec<&str> = inside.lines().collect();
    assert_eq!(il.first(), Some(&"Version: 2.5"), "{inside}");
    assert_eq!(il.get(1), lines.get(1), "the header as vzctl ubc prints it");
    assert_eq!(il.len(), 2 + 24, "one block of 24 rows:\n{inside}");
    assert!(il[2].starts_with("       101: kmemsize "), "{inside}");
    let limit_of = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .and_then(|l| l.split_whitespace().rev().nth(1).map(str::to_owned))
    };
    assert_eq!(
        limit_of(&inside, "physpages").as_deref(),
        Some("65536"),
        "the VE's own physpages limit:\n{inside}"
    );
    let in102 = a.run_ok("vzctl exec 102 head -3 /proc/user_beancounters")?;
    assert!(in102.contains("       102: kmemsize "), "{in102}");
    let (out, rc) = a.run_rc("vzctl exec2 101 'echo 1 > /proc/user_beancounters'")?;
    assert_ne!(rc, 0, "VE root wrote its user_beancounters:\n{out}");
    let (out, rc) = a.run_rc(
        "vzctl exec2 101 'umount /proc/user_beancounters; umount -l /proc/user_beancounters'",
    )?;
    assert_ne!(rc, 0, "VE root unmounted its user_beancounters:\n{out}");
    let again = a.run_ok("vzctl exec2 101 'grep -c : /proc/user_beancounters'")?;
    assert_eq!(
        again.trim(),
        "2",
        "Version: and the 101: line, still:\n{again}"
    );
    // The appliance's own /proc/user_beancounters: uid 0 and every VE.
    let host = a.run_ok("cat /proc/user_beancounters")?;
    for uid in [
        "         0: kmemsize ",
        "       101: kmemsize ",
        "       102: kmemsize ",
    ] {
        assert!(
            host.contains(uid),
            "{uid:?} in the appliance's view:\n{host}"
        );
    }
    a.run_ok("vzctl --quiet stop 102 --fast")?;

    // CPULIMIT 25 on a busy loop: the kernel's usage says ~25 %.
    a.run_ok("vzctl set 101 --cpulimit 25")?;
    busy(&mut a, 101, 9)?;
    std::thread::sleep(Duration::from_secs(1));
    let s = shares(&mut a, &[101], 5)?;
    println!("resources: cpulimit 25 -> measured {:.1} %", s[0] * 100.0);
    assert!(
        (0.15..=0.32).contains(&s[0]),
        "cpulimit 25 must hold the VE near 25 %: {s:?}"
    );
    a.run_ok("vzctl --quiet stop 101 --fast")?;

    // CPUUNITS 1000 : 2000 : 4000 on one CPU, all three busy.
    for (v, units) in [(101, 1000), (102, 2000), (103, 4000)] {
        a.run_ok(&format!(
            "vzctl set {v} --cpuunits {units} --cpumask 1 --cpulimit 0 --cpus 0 --save"
        ))?;
        a.run_ok(&format!("vzctl --quiet start {v}"))?;
        busy(&mut a, v, 12)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let s = shares(&mut a, &[101, 102, 103], 6)?;
    println!(
        "resources: cpuunits 1000:2000:4000 on one CPU -> {:.1} % : {:.1} % : {:.1} % (ratio 1 : {:.2} : {:.2})",
        s[0] * 100.0,
        s[1] * 100.0,
        s[2] * 100.0,
        s[1] / s[0],
        s[2] / s[0]
    );
    assert!(
        s[0] < s[1] && s[1] < s[2],
        "shares in cpuunits order: {s:?}"
    );
    assert!((1.4..=2.8).contains(&(s[1] / s[0])), "{s:?}");
    assert!((2.8..=5.6).contains(&(s[2] / s[0])), "{s:?}");
    for v in [101, 102] {
        a.run_ok(&format!("vzctl --quiet stop {v} --fast"))?;
    }
    // Back to every CPU on a running VE; I/O limits on VZDATA's disk.
    a.run_ok("vzctl set 103 --cpumask all --ioprio 6 --iolimit 10M --iopslimit 300")?;
    let cg103 = |a: &mut Appliance, f: &str| a.run_ok(&format!("cat /sys/fs/cgroup/vz/103/{f}"));
    assert_eq!(cg103(&mut a, "cpuset.cpus")?.trim(), "0-1");
    let io = cg103(&mut a, "io.max")?;
    assert!(
        io.contains("rbps=10485760 wbps=10485760 riops=300 wiops=300"),
        "{io}"
    );
    assert!(cg103(&mut a, "io.weight")?.contains("default 400"));
    let qos = a.run_ok("cat /sys/fs/cgroup/io.cost.qos")?;
    assert!(
        qos.contains("enable=1"),
        "io.weight needs the cost model on:\n{qos}"
    );

    // A memory hog above its RAM: only its own processes die; the other VE
    // and the appliance keep running; physpages failcnt rises; the log
    // names the VE.
    a.run_ok("vzctl set 102 --ram 48M --swap 0 --cpumask all --save")?;
    a.run_ok("vzctl --quiet start 102 && vzctl --quiet start 101")?;
    let (out, rc) = a.run_rc("vzctl exec 102 'head -c 209715200 /dev/zero | tail > /dev/null'")?;
    println!("resources: memory hog in VE 102 (48M) ended with {rc}");
    assert_ne!(rc, 0, "the hog must be killed:\n{out}");
    let ones = a.run_ok("vzlist -H -o ctid,status,physpages.f,oomguarpages.f 101 102 103")?;
    println!("resources: after the hog:\n{ones}");
    let r102: Vec<&str> = ones
        .lines()
        .find(|l| l.split_whitespace().next() == Some("102"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(r102.get(1), Some(&"running"), "{ones}");
    assert!(
        r102.get(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0,
        "physpages failcnt must rise: {ones}"
    );
    assert!(ones.contains("101") && ones.contains("103"), "{ones}");
    assert_eq!(a.run_ok("vzctl exec 101 echo alive")?.trim(), "alive");
    // vmmgr's sampler logs the VE by name within a few seconds.
    let mut logged = false;
    for _ in 0..10 {
        let log = a.run_ok("cat /run/vz/log | grep 'VE 102: hit its' || true")?;
        if log.contains("physpages") || log.contains("oomguarpages") {
            println!("resources: log: {}", log.trim());
            logged = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(logged, "the appliance log must say which VE hit its limit");

    // The appliance's zram swap (the shipped vz.conf: ZRAM_SWAP="100%",
    // zstd): a VE whose RAM limit is below what it holds keeps running
    // because its pages go to the compressed device.
    let swaps = a.run_ok(
        "cat /proc/swaps; cat /sys/block/zram0/comp_algorithm; grep MemTotal /proc/meminfo; \
         echo lru_gen $(cat /sys/kernel/mm/lru_gen/enabled); \
         echo min_free_kbytes $(cat /proc/sys/vm/min_free_kbytes); grep -h 'reclaim:' /run/vz/log; \
         grep ' /sys/fs/cgroup cgroup2 ' /proc/mounts",
    )?;
    println!("resources: swap:\n{}", swaps.trim());
    assert!(swaps.contains("/dev/zram0"), "{swaps}");
    assert!(swaps.contains("[zstd]"), "{swaps}");
    // vmmgr turned on the multi-generational LRU, all its parts, and said so.
    assert!(swaps.contains("lru_gen 0x0007"), "{swaps}");
    // A start's move into the VE's cgroup does not wait for RCU.
    assert!(swaps.contains(",favordynmods,"), "{swaps}");
    assert!(
        swaps.contains("reclaim: multi-generational LRU on (0x0007)"),
        "{swaps}"
    );
    // /proc/swaps: "/dev/zram0 partition SIZE USED PRIO" (KiB).
    let field = |prefix: &str, n: usize| -> u64 {
        swaps
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(n)?.parse().ok())
            .unwrap_or(0)
    };
    let (zram, total) = (field("/dev/zram0", 2), field("MemTotal:", 1));
    // The free-memory floor is the kernel's own (4 × √ of RAM in KiB), not
    // the tens of MiB khugepaged asks for huge pages.
    let min_free = field("min_free_kbytes", 1);
    let kernels = ((16 * total) as f64).sqrt() as u64;
    assert!(
        min_free.abs_diff(kernels) <= 1,
        "min_free_kbytes {min_free}, the kernel's figure {kernels}:\n{swaps}"
    );
    assert!(swaps.contains("reclaim: vm.min_free_kbytes "), "{swaps}");
    assert!(
        zram + 1024 >= total && zram <= total,
        "the zram swap is 100 % of RAM:\n{swaps}"
    );
    let out_pages = |a: &mut Appliance| -> anyhow::Result<u64> {
        let v = a.run_ok("awk '/^pswpout / {print $2}' /proc/vmstat")?;
        Ok(v.trim().parse().unwrap_or(0))
    };
    let before = out_pages(&mut a)?;
    a.run_ok("vzctl set 101 --ram 32M --swap 128M")?;
    // 48 MB of 18-byte lines, their newlines taken out: one line of
    // 45333334 bytes, which busybox tail holds whole.
    // (Compressing that much with zstd takes most of a minute under TCG
    // on a slow host.)
    let (held, rc) = a.run_rc_within(
        "vzctl exec 101 \"yes 'a VE page in zram' | head -c 48000000 | tr -d '\\n' | tail | wc -c\"",
        std::time::Duration::from_secs(180),
    )?;
    assert_eq!((held.trim(), rc), ("45333334", 0), "{held}");
    let swapped = out_pages(&mut a)? - before;
    println!("resources: 45 MB held in a 32M VE: {swapped} pages swapped out");
    assert!(swapped >= 4096, "at least 16 MiB must have gone to zram");
    a.run_ok("vzctl set 101 --ram 256M --swap 512M")?;

    // DISKSPACE: EDQUOT at the limit, df shows it, another VE unaffected,
    // raised live; a refused value leaves the config byte-identical.
    a.run_ok("vzctl set 102 --diskspace 8M:8M --save")?;
    let df = a.run_ok("vzctl exec 102 df -k /")?;
    println!("resources: df in VE 102 (DISKSPACE 8M):\n{df}");
    let size: u64 = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(size, 8192, "df shows the quota as the size:\n{df}");
    let (out, rc) = a.run_rc("vzctl exec2 102 'dd if=/dev/zero of=/big bs=1M count=16'")?;
    println!(
        "resources: writing 16M with DISKSPACE 8M: rc {rc}: {}",
        out.trim()
    );
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("quota"), "EDQUOT expected:\n{out}");
    a.run_ok("vzctl exec2 101 'dd if=/dev/zero of=/big bs=1M count=16 && rm /big'")?;
    let before = a.run_ok("md5sum /etc/vz/conf/102.conf")?;
    let (out, rc) = a.run_rc("vzctl set 102 --diskspace 9M:8M --save")?;
    assert_eq!(rc, 21, "{out}");
    assert_eq!(a.run_ok("md5sum /etc/vz/conf/102.conf")?, before);
    a.run_ok("vzctl set 102 --diskspace 40M:40M --save")?;
    a.run_ok("vzctl exec2 102 'rm -f /big; dd if=/dev/zero of=/big bs=1M count=16'")?;
    let used = a.run_ok("vzlist -H -o diskspace,diskspace.h 102")?;
    println!(
        "resources: vzlist diskspace after 16M written: {}",
        used.trim()
    );
    let u: Vec<u64> = used
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(u.len() == 2 && u[0] >= 16_384 && u[1] == 40_960, "{used}");

    // Devices: /dev/net/tun missing, then granted live and used; FUSE
    // granted read-only: reading opens, writing is refused by the device
    // program; revoked live; mknod never works.
    let (_, rc) = a.run_rc("vzctl exec2 101 'test -e /dev/net/tun'")?;
    assert_ne!(rc, 0, "no tun before it is granted");
    // Granted by number only (DEVICES makes no node): still unreachable.
    a.run_ok("vzctl set 101 --devices c:10:200:rw")?;
    let (_, rc) = a.run_rc("vzctl exec2 101 'test -e /dev/net/tun'")?;
    assert_ne!(rc, 0, "DEVICES makes no node");
    a.run_ok("vzctl set 101 --devices c:10:200:none")?;
    a.run_ok("vzctl set 101 --devnodes net/tun:rw --save")?;
    a.install_probe(101)?;
    let out = a.run_ok("vzctl exec2 101 ve-probe tun")?;
    println!(
        "resources: in VE 101 after --devnodes net/tun:rw: {}",
        out.trim()
    );
    assert!(out.contains("tun: tun0 created"), "{out}");
    // FUSE: refused cleanly before it is granted, mounted once it is.
    let out = a.run_ok("vzctl exec2 101 ve-probe fuse")?;
    assert!(out.contains("fuse: open failed"), "{out}");
    a.run_ok("vzctl set 101 --devnodes fuse:rw")?;
    let out = a.run_ok("vzctl exec2 101 ve-probe fuse")?;
    println!(
        "resources: in VE 101 after --devnodes fuse:rw: {}",
        out.trim()
    );
    assert!(out.contains("fuse: mounted"), "{out}");
    a.run_ok("vzctl set 101 --devnodes fuse:r")?;
    a.run_ok("vzctl exec2 101 ': < /dev/fuse'")?;
    let (out, rc) = a.run_rc("vzctl exec2 101 ': > /dev/fuse'")?;
    assert_ne!(rc, 0, "write access to a read-only grant:\n{out}");
    assert!(out.contains("not permitted"), "{out}");
    a.run_ok("vzctl set 101 --devnodes fuse:none")?;
    let (_, rc) = a.run_rc("vzctl exec2 101 'test -e /dev/fuse'")?;
    assert_ne!(rc, 0, "fuse revoked: its node is gone");
    let (out, rc) = a.run_rc("vzctl exec2 101 'mknod /tmp/mem c 1 1'")?;
    assert_ne!(rc, 0, "mknod in a VE:\n{out}");

    // NUMPTY is the VE's devpts limit, changed live.
    a.run_ok("vzctl set 101 --numpty 16 --save")?;
    let pts = a.run_ok("vzctl exec2 101 \"grep ' /dev/pts ' /proc/self/mountinfo\"")?;
    assert!(pts.contains("max=16"), "devpts max follows NUMPTY:\n{pts}");
    assert!(
        pts.contains("ptmxmode=666"),
        "ptys still open after it:\n{pts}"
    );
    a.run_ok("vzctl exec2 101 'ls -l /dev/ptmx /dev/pts/ptmx'")?;

    // SHMPAGES is the VE's kernel.shmall, which VE root cannot raise.
    a.run_ok("vzctl set 101 --shmpages 256")?;
    assert_eq!(
        a.run_ok("vzctl exec2 101 cat /proc/sys/kernel/shmall")?
            .trim(),
        "256"
    );
    let (_, rc) = a.run_rc("vzctl exec2 101 'echo 99999999 > /proc/sys/kernel/shmall'")?;
    assert_ne!(rc, 0, "VE root must not raise its shmall");

    // The /proc view outlives vmmgr: killed, restarted by init, the VEs it
    // adopts get the new view.
    a.run_ok("kill -9 $(pidof vmmgr)")?;
    let mut back = false;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(500));
        if a.run_rc("vzlist -H -o ctid 101")?.1 == 0 {
            back = true;
            break;
        }
    }
    assert!(back, "vmmgr restarted");
    let (meminfo, _) = a.run_rc("vzctl exec2 101 'head -1 /proc/meminfo'")?;
    let log = a.run_ok("tail -15 /run/vz/log")?;
    assert!(
        meminfo.contains("262144 kB"),
        "the adopted VE reads its view again:\n{meminfo}\n{log}"
    );
    let (ubc, _) = a.run_rc("vzctl exec2 101 'head -3 /proc/user_beancounters'")?;
    assert!(ubc.contains("       101: kmemsize "), "{ubc}\n{log}");
    // The appliance's binds do not stack up: the new view, readable.
    let (host, rc) = a.run_rc("head -3 /proc/user_beancounters")?;
    assert!(rc == 0 && host.contains("         0: kmemsize "), "{host}");

    // After an appliance reboot: the saved limits, the quota and its usage,
    // the devices.
    a.exit_shell()?;
    a.send("reboot\r")?;
    a.expect("init: reboot now", Duration::from_secs(120))?;
    a.rebooted()?;
    a.enter_shell()?;
    a.run_ok("vzctl --quiet start 101 && vzctl --quiet start 102")?;
    let used2 = a.run_ok("vzlist -H -o diskspace,diskspace.h 102")?;
    // The limit is the same; the usage still counts the 16M written (the
    // VE's own services change a few KiB of logs across a reboot).
    let u2: Vec<u64> = used2
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    println!(
        "resources: vzlist diskspace after the reboot: {}",
        used2.trim()
    );
    assert!(
        u2.len() == 2 && u2[1] == u[1] && u2[0] >= 16_384 && u2[0].abs_diff(u[0]) < 1024,
        "quota usage and limit survive a reboot: before {used}, after {used2}"
    );
    let (out, rc) = a.run_rc("vzctl exec2 102 'dd if=/dev/zero of=/big2 bs=1M count=32'")?;
    assert_ne!(rc, 0, "the limit holds after a reboot:\n{out}");
    assert_eq!(
        a.run_ok("cat /sys/fs/cgroup/vz/102/memory.max")?.trim(),
        (48u64 << 20).to_string()
    );
    a.run_ok("vzctl exec2 101 ': < /dev/net/tun'")?;
    Ok(())
}
