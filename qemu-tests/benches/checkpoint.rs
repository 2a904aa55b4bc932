//! `vzctl chkpnt` and `vzctl restore` times under TCG: one appliance, a
//! busybox VE with a routed address, idle, then holding 64 MiB in a
//! process's memory. Prints vmmgr's own figure for each (CRIU's dump from
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
    a.run_ok("vzctl --quiet create 101 --ostemplate busybox")?;
    a.run_ok("vzctl --quiet set 101 --ipadd 192.0.2.11 --ram 256M --save")?;
    a.run_ok("vzctl --quiet start 101")?;
    for (what, setup) in [
        ("idle busybox VE", None),
        (
            "busybox VE holding 64 MiB",
            Some("vzctl exec 101 '(awk \"BEGIN { s = sprintf(\\\"%67108864s\\\", \\\"x\\\"); while (1) system(\\\"sleep 1\\\") }\" </dev/null >/dev/null 2>&1 &)' </dev/null; sleep 5"),
        ),
    ] {
        if let Some(cmd) = setup {
            a.run_ok(cmd)?;
        }
        let rss = a.run_ok("cat /sys/fs/cgroup/vz/101/memory.current")?;
        let (mut dump, mut restore) = (Vec::new(), Vec::new());
        let mut size = String::new();
        for i in 0..rounds {
            let out = a.run_ok("vzctl chkpnt 101")?;
            dump.push(ms(out.lines().last().unwrap_or(""))?);
            size = a.run_ok("du -sk /vz/dump/Dump.101 | cut -f1")?;
            let out = a.run_ok("vzctl restore 101")?;
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
    }
    Ok(())
}
