//! `vzctl chkpnt` and `vzctl restore` times under TCG: one appliance, a
//! busybox VE with a routed address, idle, then holding 64 MiB in a
//! process's memory, then a debian-12-web VE and a debian-12-minimal
//! (systemd) one. Prints vmmgr's own figure for each (CRIU's dump from
//! the request; the whole restore, cgroup to routes), their medians and the
//! dump's size.
//!
//! `cargo bench -p qemu-tests --bench checkpoint` (VZ_BENCH_ROUNDS=N, default 5)

use qemu_tests::Appliance;

/// The "(..., N ms)" vmmgr puts on the last line of chkpnt and restore.
fn ms(out: &str) -> anyhow::Result<u64> {
    out.rsplit('(')
        .next()
        .map(|t| t.trim().trim_end_matches(')'))
        .and_then(|t| t.rsplit(", ").next())
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no time in {out:?}"))
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("VZ_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut a = Appliance::boot("bench-checkpoint")?;
    a.enter_shell()?;
    // (VEID, what, template, made ready by, then set up by)
    let waited = |ve: u32| {
        format!(
            "i=0; until vzctl exec {ve} 'pidof apache2 sshd cron syslogd' </dev/null >/dev/null \
             || [ $i -ge 120 ]; do i=$((i+1)); sleep 1; done"
        )
    };
    let cases = [
        (101, "idle busybox VE", "busybox", None, None),
        (
            101,
            "busybox VE holding 64 MiB",
            "busybox",
            None,
            Some("vzctl exec 101 '(awk \"BEGIN { s = sprintf(\\\"%67108864s\\\", \\\"x\\\"); while (1) system(\\\"sleep 1\\\") }\" </dev/null >/dev/null 2>&1 &)' </dev/null; sleep 5".to_owned()),
        ),
        (
            301,
            "debian-12-web VE (sysvinit, syslogd, cron, sshd, Apache)",
            "debian-12-web",
            Some(waited(301)),
            None,
        ),
        (
            302,
            "debian-12-minimal VE (systemd)",
            "debian-12-minimal",
            Some(
                "i=0; until vzctl exec 302 systemctl is-system-running </dev/null | grep -qx running \
                 || [ $i -ge 120 ]; do i=$((i+1)); sleep 1; done"
                    .to_owned(),
            ),
            None,
        ),
    ];
    for (ve, what, template, ready, setup) in cases {
        if a.run_rc(&format!("vzctl status {ve} | grep -q running"))?.1 != 0 {
            a.run_ok(&format!(
                "vzctl --quiet create {ve} --ostemplate {template}"
            ))?;
            a.run_ok(&format!(
                "vzctl --quiet set {ve} --ipadd 192.0.2.{} --ram 256M --save",
                ve / 100 * 10 + ve % 100
            ))?;
            a.run_ok(&format!("vzctl --quiet start {ve}"))?;
            if let Some(cmd) = ready {
                a.run_ok(&cmd)?;
            }
        }
        if let Some(cmd) = setup {
            a.run_ok(&cmd)?;
        }
        let rss = a.run_ok(&format!("cat /sys/fs/cgroup/vz/{ve}/memory.current"))?;
        let (mut dump, mut restore) = (Vec::new(), Vec::new());
        let mut size = String::new();
        for i in 0..rounds {
            let out = a.run_ok(&format!("vzctl chkpnt {ve}"))?;
            dump.push(ms(out.lines().last().unwrap_or(""))?);
            size = a.run_ok(&format!("du -sk /vz/dump/Dump.{ve} | cut -f1"))?;
            let out = a.run_ok(&format!("vzctl restore {ve}"))?;
            restore.push(ms(out.lines().last().unwrap_or(""))?);
            eprintln!(
                "{what}, round {}: chkpnt {} ms, restore {} ms",
                i + 1,
                dump[i],
                restore[i]
            );
        }
        println!(
            "{what} (memory.current {} MiB): chkpnt median {} ms (min {}, max {}), restore median {} ms (min {}, max {}), dump {} KiB; {rounds} rounds",
            rss.trim().parse::<u64>().unwrap_or(0) >> 20,
            median(&mut dump),
            dump[0],
            dump[rounds - 1],
            median(&mut restore),
            restore[0],
            restore[rounds - 1],
            size.trim()
        );
        if ve != 101 {
            a.run_ok(&format!("vzctl --quiet stop {ve}"))?;
        }
    }
    Ok(())
}
