//! Under TCG, in the appliance: how closely CPULIMIT and CPUUNITS hold, over
//! 10 s windows measured by the kernel's own usage counters (`cpu.stat`),
//! and how fast the console answers while VEs are busy.
//!
//! `cargo bench -p qemu-tests --bench cpu_shares`

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
    a.enter_shell()?;
    for v in [101, 102, 103] {
        a.run_ok(&format!(
            "vzctl --quiet create {v} && vzctl --quiet start {v}"
        ))?;
    }
    println!("| setting | asked | measured (10 s window) | error |");
    println!("|---|---|---|---|");
    for limit in [10u32, 25, 50] {
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
    Ok(())
}
