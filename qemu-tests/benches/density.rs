//! Under TCG, in the appliance: memory per idle busybox VE (MemAvailable
//! delta over 50 running VEs) and boot to all ONBOOT VEs running for 10 and
//! 100 VEs (ms since kernel start, from vmmgr's own log line).
//!
//! `cargo bench -p qemu-tests --bench density` (VZ_BENCH_VES=50 changes the
//! memory sample; the boot sizes are 10 and 100)

use qemu_tests::Appliance;
use std::time::{Duration, Instant};

fn avail_kib(a: &mut Appliance) -> anyhow::Result<u64> {
    Ok(a.status()?.mem_available_kib)
}

fn wait_running(a: &mut Appliance, n: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        // The guest is busy starting VEs: allow the listing a long time.
        let out = a.shell_within("vzlist -H -o ctid | wc -l", Duration::from_secs(300))?;
        if out.trim().parse::<usize>().unwrap_or(0) >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} VEs running",
            out.trim()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn settle_avail(a: &mut Appliance) -> anyhow::Result<u64> {
    // Drop the page cache the commands above pulled in, then read.
    a.shell("sync; echo 3 > /proc/sys/vm/drop_caches")?;
    std::thread::sleep(Duration::from_secs(2));
    avail_kib(a)
}

fn main() -> anyhow::Result<()> {
    let n_mem: usize = std::env::var("VZ_BENCH_VES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut a = Appliance::boot("bench-density")?;
    a.enter_shell()?;
    let long = Duration::from_secs(900);
    a.shell_within(
        "for i in $(seq 101 200); do vzctl --quiet create $i >/dev/null; done",
        long,
    )?;
    let before = settle_avail(&mut a)?;
    a.shell_within(
        &format!(
            "for i in $(seq 101 {}); do vzctl --quiet start $i; done",
            100 + n_mem
        ),
        long,
    )?;
    wait_running(&mut a, n_mem, Duration::from_secs(600))?;
    let after = settle_avail(&mut a)?;
    // vmmgr's own figure for each start: request to the VE init running.
    let log = a.shell_within(
        "grep -o 'started, init pid [0-9]*, in [0-9]* ms' /run/vz/log",
        long,
    )?;
    let mut ms: Vec<u64> = log
        .lines()
        .filter_map(|l| {
            l.rsplit(" in ")
                .next()?
                .trim_end_matches(" ms")
                .parse()
                .ok()
        })
        .collect();
    ms.sort_unstable();
    if !ms.is_empty() {
        println!(
            "vzctl start until the VE init runs (TCG, vmmgr's timing, {} starts): median {} ms, p99 {} ms",
            ms.len(),
            ms[ms.len() / 2],
            ms[((ms.len() - 1) as f64 * 0.99).round() as usize]
        );
    }
    let per = (before.saturating_sub(after)) as f64 / n_mem as f64 / 1024.0;
    println!(
        "memory per idle busybox VE: {per:.2} MiB (MemAvailable {} -> {} MiB over {n_mem} VEs)",
        before / 1024,
        after / 1024
    );
    a.shell_within(
        &format!(
            "for i in $(seq 101 {}); do vzctl --quiet stop $i --fast; done",
            100 + n_mem
        ),
        long,
    )?;

    for n in [10usize, 100] {
        a.shell_within(
            &format!(
                "for i in $(seq 101 200); do vzctl --quiet set $i --onboot no --save; done; for i in $(seq 101 {}); do vzctl --quiet set $i --onboot yes --save; done",
                100 + n
            ),
            long,
        )?;
        a.exit_shell()?;
        a.send("reboot\r")?;
        a.expect("init: reboot now", Duration::from_secs(300))?;
        let t = Instant::now();
        let ready = a.rebooted()?;
        a.enter_shell()?;
        wait_running(&mut a, n, Duration::from_secs(900))?;
        let wall = t.elapsed();
        let line = a.shell_within(
            "grep 'ONBOOT VEs handled' /run/vz/log | tail -1",
            Duration::from_secs(300),
        )?;
        // "  12.345 vmmgr: boot: 100 ONBOOT VEs handled in 6789 ms"
        let at_s: f64 = line
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        let took: u64 = line
            .split(" in ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        println!(
            "{n:>3} ONBOOT VEs: all running {:.2} s after kernel start (VE starts took {took} ms after vmmgr began); {:.1} s from the reboot's reset to all running; {}",
            at_s,
            wall.as_secs_f64(),
            ready.trim()
        );
    }
    Ok(())
}
