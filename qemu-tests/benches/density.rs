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

/// Waits until `n` VEs run; returns how long each listing on the console
/// took to answer meanwhile (the console's latency while VEs start).
fn wait_running(a: &mut Appliance, n: usize, limit: Duration) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + limit;
    let mut answers = Vec::new();
    loop {
        // The guest is busy starting VEs: allow the listing a long time.
        let t = Instant::now();
        let out = a.shell_within("vzlist -H -o ctid | wc -l", Duration::from_secs(300))?;
        answers.push(t.elapsed());
        if out.trim().parse::<usize>().unwrap_or(0) >= n {
            return Ok(answers);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} VEs running",
            out.trim()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Median and p99 of each start step over vmmgr's "started ... in N ms;
/// steps (ms): ..." lines.
fn print_breakdown(log: &str) {
    let mut total: Vec<f64> = Vec::new();
    let mut steps: Vec<(String, Vec<f64>)> = Vec::new();
    for line in log.lines() {
        let Some((head, tail)) = line.split_once("; steps (ms): ") else {
            continue;
        };
        if let Some(ms) = head
            .rsplit(" in ")
            .next()
            .and_then(|t| t.trim_end_matches(" ms").parse().ok())
        {
            total.push(ms);
        }
        for (name, ms) in vmmgr::timing::parse(tail) {
            match steps.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(ms),
                None => steps.push((name, vec![ms])),
            }
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "vzctl start until the VE init runs (TCG, vmmgr's timing, {} starts): median {:.0} ms, p99 {:.0} ms",
        total.len(),
        q(&mut total, 0.5),
        q(&mut total, 0.99)
    );
    println!("  step         median ms   p99 ms   (vesetup's parts indented)");
    let mut inside = false;
    for (name, v) in &mut steps {
        let part = inside && name != "record";
        if name == "vesetup" {
            inside = true;
        } else if name == "record" {
            inside = false;
        }
        println!(
            "  {}{name:<12} {:>8.1} {:>8.1}",
            if part { "  " } else { "" },
            q(v, 0.5),
            q(v, 0.99)
        );
    }
}

fn settle_avail(a: &mut Appliance) -> anyhow::Result<u64> {
    // Drop the page cache the commands above pulled in, then read.
    a.shell("sync; echo 3 > /proc/sys/vm/drop_caches")?;
    std::thread::sleep(Duration::from_secs(2));
    avail_kib(a)
}

/// CPU time used so far, in ms: (all CPUs busy, the appliance's cgroup
/// (init, vmmgr, vesetup, the console and its commands), the VEs' cgroups
/// (each VE's first process once it joined, then the VE's own processes)).
/// The rest of the busy time is the kernel's threads (RCU, workqueues).
fn cpu_used(a: &mut Appliance) -> anyhow::Result<(u64, u64, u64)> {
    let out = a.shell(
        "head -1 /proc/stat; grep usage_usec /sys/fs/cgroup/appliance/cpu.stat; \
         cat /sys/fs/cgroup/vz/*/cpu.stat | awk '/^usage_usec/ {s += $2} END {print \"ves\", s + 0}'",
    )?;
    let mut all = None;
    let (mut appliance, mut ves) = (None, None);
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        match f.first() {
            // user nice system idle iowait irq softirq steal, in 10 ms ticks.
            Some(&"cpu") => {
                all = [1, 2, 3, 6, 7, 8]
                    .iter()
                    .map(|&i| num(i))
                    .sum::<Option<u64>>()
                    .map(|t| t * 10)
            }
            Some(&"usage_usec") => appliance = num(1).map(|u| u / 1000),
            Some(&"ves") => ves = num(1).map(|u| u / 1000),
            _ => {}
        }
    }
    match (all, appliance, ves) {
        (Some(x), Some(y), Some(z)) => Ok((x, y, z)),
        _ => anyhow::bail!("cannot read the CPU figures from:\n{out}"),
    }
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
    // The CPU figures leave out the first starts (the setup server's own
    // start, the page cache refilled after the drop above).
    let warm = 5.min(n_mem);
    let start = |a: &mut Appliance, from: usize, to: usize| {
        a.shell_within(
            &format!("for i in $(seq {from} {to}); do vzctl --quiet start $i; done"),
            long,
        )
    };
    start(&mut a, 101, 100 + warm)?;
    std::thread::sleep(Duration::from_secs(3));
    let cpu0 = cpu_used(&mut a)?;
    start(&mut a, 101 + warm, 100 + n_mem)?;
    wait_running(&mut a, n_mem, Duration::from_secs(600))?;
    // The last VEs' own boot (rcS, syslogd, crond) ends.
    std::thread::sleep(Duration::from_secs(3));
    let cpu1 = cpu_used(&mut a)?;
    let after = settle_avail(&mut a)?;
    // vmmgr's own figure for each start: request to the VE init running,
    // and its steps.
    let log = a.shell_within(
        "grep -o 'started, init pid [0-9]*, in [0-9]* ms.*' /run/vz/log",
        long,
    )?;
    print_breakdown(&log);
    let per = |i: usize| {
        let d = |c: (u64, u64, u64)| [c.0, c.1, c.2][i];
        d(cpu1).saturating_sub(d(cpu0)) / (n_mem - warm).max(1) as u64
    };
    println!(
        "CPU per start (emulated, both CPUs, over starts {}-{}: the whole start and the VE's \
         own boot): {} ms; \
         appliance {} ms (vmmgr, vesetup, the console's vzctl); in the VE's cgroup {} ms (its \
         first process once it joined, its init's setup and exec, its own boot); kernel threads \
         and the rest {} ms",
        warm + 1,
        n_mem,
        per(0),
        per(1),
        per(2),
        per(0).saturating_sub(per(1) + per(2))
    );
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
        let mut answers = wait_running(&mut a, n, Duration::from_secs(900))?;
        let wall = t.elapsed();
        answers.sort();
        let ms = |d: Duration| d.as_millis();
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
        // Where a slow boot's time went: the kernel's longest silences
        // before init, and init's own timeline.
        let dmesg = a.shell_within("dmesg", Duration::from_secs(300))?;
        let mut prev = 0.0f64;
        for l in dmesg.lines() {
            let Some((ts, _)) = l
                .trim_start()
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
            else {
                continue;
            };
            let Ok(t) = ts.trim().parse::<f64>() else {
                continue;
            };
            if t - prev > 0.5 {
                println!(
                    "    kernel log: {:.2} s of silence before: {}",
                    t - prev,
                    l.trim()
                );
            }
            prev = t;
        }
        let timeline = a.shell_within("cat /run/vz/timeline", Duration::from_secs(300))?;
        println!(
            "    init's timeline: {}",
            timeline.trim().replace('\n', "; ")
        );
        println!(
            "{n:>3} ONBOOT VEs: all running {:.2} s after kernel start (VE starts took {took} ms after vmmgr began); {:.1} s from the reboot's reset to all running; {}",
            at_s,
            wall.as_secs_f64(),
            ready.trim()
        );
        // Each `vzlist` typed on the console while the VEs started: the
        // shell, vzlist's exec and vmmgr's answer, over the serial line.
        println!(
            "    console while they started: {} listings (`vzlist | wc -l`), answered in median {} ms, max {} ms",
            answers.len(),
            ms(answers[answers.len() / 2]),
            ms(*answers.last().unwrap_or(&Duration::ZERO))
        );
    }
    Ok(())
}
