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
    let t = std::time::Instant::now();
    a.run_ok("true")?;
    println!(
        "limits: console answered in {} ms with VE 101 at NUMPROC",
        t.elapsed().as_millis()
    );
    a.run_ok("vzctl --quiet stop 101")?;

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
