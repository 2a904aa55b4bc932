//! VE limits on one booted appliance: the config's CPU, memory and process
//! limits land in the VE's cgroup at start, change live with `vzctl set`,
//! survive `--save` and a restart, hold a fork bomb, and a refused value
//! changes nothing.

use qemu_tests::Appliance;

fn cg(a: &mut Appliance, file: &str) -> anyhow::Result<String> {
    Ok(a.run_ok(&format!("cat /sys/fs/cgroup/vz/101/{file}"))?
        .trim()
        .to_owned())
}

#[test]
fn limits_apply_live_and_persist() -> anyhow::Result<()> {
    let mut a = Appliance::boot("limits")?;
    a.enter_shell()?;
    // vz.conf's CONFIGFILE is vswap-256m: PHYSPAGES 0:256M, SWAPPAGES 0:512M.
    a.run_ok("vzctl --quiet create 101 && vzctl --quiet start 101")?;
    assert_eq!(cg(&mut a, "memory.max")?, (256u64 << 20).to_string());
    assert_eq!(cg(&mut a, "cpu.weight")?, "100");
    assert_eq!(cg(&mut a, "pids.max")?, "max");

    // Live, and saved.
    a.run_ok("vzctl set 101 --cpulimit 25 --numproc 32 --cpuunits 2000 --ram 128M --save")?;
    assert_eq!(cg(&mut a, "cpu.max")?, "25000 100000");
    assert_eq!(cg(&mut a, "cpu.weight")?, "200");
    assert_eq!(cg(&mut a, "pids.max")?, "32");
    assert_eq!(cg(&mut a, "memory.max")?, (128u64 << 20).to_string());
    let conf = a.run_ok("cat /etc/vz/conf/101.conf")?;
    for line in [
        "CPULIMIT=\"25\"",
        "NUMPROC=\"32:32\"",
        "CPUUNITS=\"2000\"",
        "PHYSPAGES=\"0:32768\"",
    ] {
        assert!(conf.contains(line), "{line} not saved:\n{conf}");
    }
    // VE root sees its limits and cannot change them.
    let (out, rc) = a.run_rc("vzctl exec2 101 'cat /proc/self/cgroup'")?;
    assert_eq!(rc, 0, "{out}");
    let (out, rc) = a.run_rc("vzctl exec2 101 'echo max > /sys/fs/cgroup/../pids.max'")?;
    assert_ne!(rc, 0, "VE root raised its own pids.max:\n{out}");
    assert_eq!(cg(&mut a, "pids.max")?, "32");

    // A fork bomb at NUMPROC is held; the console answers; stop still works.
    let (out, _) =
        a.run_rc("vzctl exec2 101 'for i in $(seq 60); do sleep 120 & done' < /dev/null")?;
    assert!(
        out.contains("can't fork") || out.contains("Resource temporarily unavailable"),
        "forks past NUMPROC must fail:\n{out}"
    );
    // On this kernel (6.1) a refused fork is counted in the cgroup it was
    // tried in (here the exec leaf), not in the one whose limit it hit: sum
    // the VE's subtree.
    let hits = a.run_ok(
        "cat $(find /sys/fs/cgroup/vz/101 -name pids.events) | awk '$1 == \"max\" {s += $2} END {print s+0}'",
    )?;
    let hits: u64 = hits.trim().parse()?;
    assert!(hits > 0, "pids.events must count the refused forks: {hits}");
    // vzlist shows the same count as numproc's failcnt.
    let f = a.run_ok("vzlist -H -o numproc.f 101")?;
    assert_eq!(f.trim().parse::<u64>()?, hits, "vzlist numproc.f");

    // A real fork bomb, running: contained at NUMPROC, another VE works,
    // the console answers, stop stops it.
    a.run_ok("vzctl --quiet create 102 && vzctl --quiet start 102")?;
    a.run_ok("(vzctl exec 101 'b() { b | b & }; b; sleep 20' >/dev/null 2>&1 &)")?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut worst = std::time::Duration::ZERO;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        a.run_ok("true")?;
        worst = worst.max(t.elapsed());
    }
    println!(
        "limits: console answered in at most {} ms (5 commands) during a fork bomb in VE 101",
        worst.as_millis()
    );
    assert!(
        worst < std::time::Duration::from_secs(1),
        "the console must answer within 1 s during a fork bomb: {worst:?}"
    );
    let n: u64 = cg(&mut a, "pids.current")?.parse()?;
    println!("limits: {n} tasks in VE 101 during the bomb (NUMPROC 32)");
    assert!(
        (20..=32).contains(&n),
        "the bomb runs and is held at NUMPROC: {n}"
    );
    assert_eq!(a.run_ok("vzctl exec 102 echo alive")?.trim(), "alive");
    a.run_ok("vzctl --quiet stop 101")?;
    a.run_ok("vzctl --quiet stop 102")?;

    // A refused value changes nothing: not the kernel, not the file.
    a.run_ok("vzctl --quiet start 101")?;
    let before = a.run_ok("md5sum /etc/vz/conf/101.conf")?;
    let (out, rc) = a.run_rc("vzctl set 101 --cpuunits 5 --save")?;
    assert_eq!(rc, 21, "{out}");
    assert!(out.contains("8 to 500000"), "{out}");
    let (out, rc) = a.run_rc("vzctl set 101 --numproc 10:5 --save")?;
    assert_eq!(rc, 21, "{out}");
    assert_eq!(a.run_ok("md5sum /etc/vz/conf/101.conf")?, before);
    // Restarted with the saved limits.
    assert_eq!(cg(&mut a, "pids.max")?, "32");
    assert_eq!(cg(&mut a, "cpu.max")?, "25000 100000");
    // Without --save the running VE changes, the file does not.
    a.run_ok("vzctl set 101 --cpulimit 50")?;
    assert_eq!(cg(&mut a, "cpu.max")?, "50000 100000");
    assert_eq!(a.run_ok("md5sum /etc/vz/conf/101.conf")?, before);
    a.run_ok("vzctl --quiet restart 101")?;
    assert_eq!(cg(&mut a, "cpu.max")?, "25000 100000");
    Ok(())
}
