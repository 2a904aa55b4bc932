//! Under TCG, in the appliance: how closely CPULIMIT and CPUUNITS hold, over
//! 10 s windows measured by the kernel's own usage counters (`cpu.stat`);
//! the CPU cost of being in a VE (one CPU-bound program in a VE and on the
//! appliance, alternately, 9 times each); and how fast the console answers (p50, p99 of
//! 50 commands) while a VE runs a fork bomb and while one hogs memory.
//!
//! `cargo bench -p qemu-tests --bench resources`

use qemu_tests::Appliance;
use std::time::{Duration, Instant};

const WINDOW: u64 = 10;

fn usage(a: &mut Appliance, veid: u32) -> anyhow::Result<u64> {
    let t = a.run_ok(&format!(
        "awk '$1 == \"usage_usec\" {{print $2}}' /sys/fs/cgroup/vz/{veid}/cpu.stat"
    ))?;
    Ok(t.trim().parse()?)
}

fn shares(a: &mut Appliance, ves: &[u32]) -> anyhow::Result<Vec<f64>> {
    let before: Vec<u64> = ves.iter().map(|v| usage(a, *v)).collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(WINDOW));
    let after: Vec<u64> = ves.iter().map(|v| usage(a, *v)).collect::<Result<_, _>>()?;
    let wall = t0.elapsed().as_micros() as f64;
    Ok(before
        .iter()
        .zip(after)
        .map(|(b, a)| (a - b) as f64 / wall)
        .collect())
}

fn busy(a: &mut Appliance, veid: u32, secs: u64) -> anyhow::Result<()> {
    a.run_ok(&format!(
        "(vzctl exec {veid} 'timeout {secs} sh -c \"while :; do :; done\"' >/dev/null 2>&1 &)"
    ))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut a = Appliance::boot("bench-cpu")?;
    let quick = std::env::var_os("VZ_BENCH_QUICK").is_some();
    a.enter_shell()?;
    for v in [101, 102, 103] {
        a.run_ok(&format!(
            "vzctl --quiet create {v} && vzctl --quiet start {v}"
        ))?;
    }
    println!("| setting | asked | measured (10 s window) | error |");
    println!("|---|---|---|---|");
    for limit in [10u32, 25, 50].into_iter().filter(|_| !quick) {
        a.run_ok(&format!("vzctl set 101 --cpulimit {limit}"))?;
        busy(&mut a, 101, WINDOW + 3)?;
        std::thread::sleep(Duration::from_secs(1));
        let s = shares(&mut a, &[101])?[0] * 100.0;
        println!(
            "| cpulimit {limit} | {limit} % | {s:.2} % | {:+.2} points |",
            s - f64::from(limit)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    a.run_ok("vzctl set 101 --cpulimit 0")?;
    let units = [(101, 1000u32), (102, 2000), (103, 4000)];
    for (v, u) in units {
        a.run_ok(&format!("vzctl set {v} --cpuunits {u} --cpumask 1"))?;
        busy(&mut a, v, WINDOW + 3)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    a.run_ok("true")?;
    let console_ms = t.elapsed().as_millis();
    let s = shares(&mut a, &[101, 102, 103])?;
    let sum: f64 = s.iter().sum();
    for ((v, u), x) in units.iter().zip(&s) {
        let want = f64::from(*u) / 7000.0;
        let got = x / sum;
        println!(
            "| cpuunits {u} (VE {v}, 3 VEs on CPU 1) | {:.1} % of the CPU | {:.1} % | {:+.1} % relative |",
            want * 100.0,
            got * 100.0,
            (got - want) / want * 100.0
        );
    }
    println!("console answered `true` in {console_ms} ms with 3 busy VEs");
    std::thread::sleep(Duration::from_secs(WINDOW));

    // The same CPU-bound program in a VE and on the appliance, alternately.
    let work = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    let timed = |a: &mut Appliance, cmd: &str| -> anyhow::Result<f64> {
        let out = a.run_ok(&format!("{cmd} 2>&1"))?;
        // busybox: "real\t0m 2.34s"
        let real = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("real"))
            .ok_or_else(|| anyhow::anyhow!("no time in {out}"))?;
        let t = real.trim().trim_end_matches('s');
        let (m, s) = t.split_once('m').unwrap_or(("0", t));
        let secs = m.trim().parse::<f64>()? * 60.0 + s.trim().parse::<f64>()?;
        anyhow::ensure!(secs > 0.5, "{cmd}: too quick to be the loop:\n{out}");
        Ok(secs)
    };
    for v in [101, 102, 103] {
        a.run_ok(&format!("vzctl set {v} --cpumask all"))?;
    }
    // Timed inside each (no vzctl exec in the figure), alternately, on the
    // same CPU, 5 times each; medians compared.
    let (mut in_ve, mut on_app) = (Vec::new(), Vec::new());
    a.run_ok("vzctl set 101 --cpumask 1")?;
    a.run_ok(&format!("echo '{work}' > /tmp/loop.sh"))?;
    a.run_ok("vzctl exec2 101 'cat > /loop.sh' < /tmp/loop.sh")?;
    const RUNS: usize = 9;
    for _ in 0..RUNS {
        in_ve.push(timed(&mut a, "vzctl exec2 101 'time sh /loop.sh'")?);
        on_app.push(timed(&mut a, "time taskset 2 sh /tmp/loop.sh")?);
    }
    in_ve.sort_by(f64::total_cmp);
    on_app.sort_by(f64::total_cmp);
    let (ve, app) = (in_ve[RUNS / 2], on_app[RUNS / 2]);
    println!(
        "CPU-bound loop on CPU 1, {RUNS} runs each: in a VE median {ve:.2} s ({:.2}..{:.2}), \
         on the appliance median {app:.2} s ({:.2}..{:.2}): ratio of medians {:.3}",
        in_ve[0],
        in_ve[RUNS - 1],
        on_app[0],
        on_app[RUNS - 1],
        ve / app
    );

    // The console during a fork bomb and during a memory hog.
    let console = |a: &mut Appliance, what: &str| -> anyhow::Result<()> {
        let mut t = Vec::new();
        for _ in 0..50 {
            let s = Instant::now();
            a.run_ok("true")?;
            t.push(s.elapsed());
        }
        t.sort();
        println!(
            "console during {what}: p50 {} ms, p99 {} ms (50 commands)",
            t[25].as_millis(),
            t[49].as_millis()
        );
        Ok(())
    };
    a.run_ok("vzctl set 101 --numproc 64")?;
    a.run_ok("(vzctl exec 101 'b() { b | b & }; b; sleep 60' >/dev/null 2>&1 &)")?;
    std::thread::sleep(Duration::from_secs(3));
    console(&mut a, "a fork bomb in VE 101 (NUMPROC 64)")?;
    a.run_ok("vzctl --quiet stop 101 --fast")?;
    a.run_ok("vzctl set 102 --ram 64M --swap 0")?;
    a.run_ok(
        "(vzctl exec 102 'while :; do head -c 209715200 /dev/zero | tail >/dev/null; done' >/dev/null 2>&1 &)",
    )?;
    std::thread::sleep(Duration::from_secs(3));
    console(
        &mut a,
        "a memory hog in VE 102 (64M, killed and restarted in a loop)",
    )?;
    Ok(())
}
