//! The seed's density experiment, under TCG: an appliance with 768 MiB
//! starts VEs of `debian-12-web` (init, rsyslogd, cron, sshd, Apache) in
//! batches; after each batch every VE must answer an HTTP GET and show its
//! SSH banner (an in-appliance client, `ve-probe web`, over the VEs' routed
//! addresses). It stops at the first batch where a VE does not answer, the
//! p50 HTTP latency exceeds twice that of a single VE, or VZ_BENCH_MAX VEs
//! run; it prints MemAvailable per step, the appliance's memory per VE, and
//! where one VE's memory goes (per process: RSS, PSS, private).
//!
//! `cargo bench -p qemu-tests --bench web_density`
//! (VZ_BENCH_MAX, default 200; VZ_BENCH_BATCH, default 10; VZ_BENCH_MEM, MiB, default 768)

use qemu_tests::{Appliance, Opts};
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VE number `k` (from 0) -> VEID and its address (two documentation /24s).
fn ve(k: usize) -> (usize, String) {
    let veid = 1000 + k;
    let addr = if k < 250 {
        format!("192.0.2.{}", k + 1)
    } else {
        format!("198.51.100.{}", k - 249)
    };
    (veid, addr)
}

struct Web {
    ok: usize,
    fail: usize,
    p50_us: u64,
    p90_us: u64,
    fails: Vec<String>,
}

fn web(a: &mut Appliance, addrs: &[String]) -> anyhow::Result<Web> {
    let out = a.shell_within(
        &format!("/run/ve-probe web {}", addrs.join(" ")),
        Duration::from_secs(60 + 25 * addrs.len() as u64),
    )?;
    let line = out
        .lines()
        .find(|l| l.starts_with("web: ok "))
        .ok_or_else(|| anyhow::anyhow!("no summary from ve-probe:\n{out}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(Web {
        ok: num(2) as usize,
        fail: num(4) as usize,
        p50_us: num(6),
        p90_us: num(8),
        fails: out
            .lines()
            .filter(|l| l.starts_with("web: FAIL"))
            .map(str::to_owned)
            .collect(),
    })
}

/// Waits until every address answers (VEs still booting), up to `limit`.
fn wait_all(a: &mut Appliance, addrs: &[String], limit: Duration) -> anyhow::Result<Web> {
    let t = Instant::now();
    loop {
        let w = web(a, addrs)?;
        if w.fail == 0 || t.elapsed() > limit {
            return Ok(w);
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn mem_available_mib(a: &mut Appliance) -> anyhow::Result<u64> {
    Ok(a.status()?.mem_available_kib / 1024)
}

fn main() -> anyhow::Result<()> {
    let max = env("VZ_BENCH_MAX", 200);
    let batch = env("VZ_BENCH_BATCH", 10).max(1);
    let mem = env("VZ_BENCH_MEM", 768) as u32;
    let mut a = Appliance::boot_with(
        "bench-web-density",
        Opts {
            probe: true,
            memory_mib: Some(mem),
            ..Opts::default()
        },
    )?;
    a.enter_shell()?;
    a.install_probe_here()?;
    let long = Duration::from_secs(3600);
    let avail0 = mem_available_mib(&mut a)?;
    println!("web_density: -m {mem}, MemAvailable before any VE: {avail0} MiB");

    // One VE: the latency to compare with.
    let create = |a: &mut Appliance, from: usize, to: usize| -> anyhow::Result<()> {
        let mut cmd = String::new();
        for k in from..to {
            let (veid, addr) = ve(k);
            cmd.push_str(&format!(
                "vzctl --quiet create {veid} --ostemplate debian-12-web >/dev/null && \
                 vzctl --quiet set {veid} --ipadd {addr} --save >/dev/null && "
            ));
        }
        cmd.push_str("true");
        a.shell_within(&cmd, long)?;
        let starts: String = (from..to)
            .map(|k| format!("vzctl --quiet start {} >/dev/null; ", ve(k).0))
            .collect();
        a.shell_within(&starts, long)?;
        Ok(())
    };
    let t = Instant::now();
    create(&mut a, 0, 1)?;
    let first = vec![ve(0).1];
    let w = wait_all(&mut a, &first, Duration::from_secs(300))?;
    anyhow::ensure!(w.fail == 0, "the first VE does not answer: {:?}", w.fails);
    println!(
        "web_density: first VE answers {:.1} s after its start",
        t.elapsed().as_secs_f64()
    );
    let mut lat = Vec::new();
    for _ in 0..20 {
        lat.push(web(&mut a, &first)?.p50_us);
    }
    lat.sort_unstable();
    let base = lat[lat.len() / 2];
    let avail1 = mem_available_mib(&mut a)?;
    println!("web_density: 1 VE: HTTP p50 {base} µs (20 requests), MemAvailable {avail1} MiB");

    // Where one VE's memory goes.
    let per_proc = a.shell_within(
        "for p in $(cat /sys/fs/cgroup/vz/1000/ve/cgroup.procs /sys/fs/cgroup/vz/1000/ve/*/cgroup.procs \
         /sys/fs/cgroup/vz/1000/ve/*/*/cgroup.procs 2>/dev/null); do \
         printf '%-12s ' $(cat /proc/$p/comm); \
         awk '/^(Rss|Pss|Private_Clean|Private_Dirty):/ {v[$1]=$2} END {printf \"rss %6d kB pss %6d kB private %6d kB\\n\", \
         v[\"Rss:\"], v[\"Pss:\"], v[\"Private_Clean:\"]+v[\"Private_Dirty:\"]}' /proc/$p/smaps_rollup; done",
        Duration::from_secs(120),
    )?;
    println!("web_density: VE 1000's processes:\n{}", per_proc.trim_end());
    let cg = a.shell("cat /sys/fs/cgroup/vz/1000/memory.current")?;
    println!(
        "web_density: VE 1000 memory.current {} kB",
        cg.trim().parse::<u64>().unwrap_or(0) / 1024
    );

    let mut n = 1;
    let mut last_good = (1, base, avail1);
    while n < max {
        let to = (n + batch).min(max);
        let t = Instant::now();
        create(&mut a, n, to)?;
        let addrs: Vec<String> = (0..to).map(|k| ve(k).1).collect();
        let w = wait_all(&mut a, &addrs, Duration::from_secs(600))?;
        let avail = mem_available_mib(&mut a)?;
        println!(
            "web_density: {to} VEs ({:.0} s for the batch): answered {} failed {}, HTTP p50 {} µs p90 {} µs, MemAvailable {avail} MiB",
            t.elapsed().as_secs_f64(),
            w.ok,
            w.fail,
            w.p50_us,
            w.p90_us
        );
        if w.fail > 0 {
            println!("web_density: stopping: {}", w.fails.join("; "));
            break;
        }
        if w.p50_us > 2 * base {
            println!(
                "web_density: stopping: p50 {} µs is above twice a single VE's ({base} µs)",
                w.p50_us
            );
            break;
        }
        last_good = (to, w.p50_us, avail);
        n = to;
    }
    let (good, p50, avail) = last_good;
    println!(
        "web_density: RESULT {good} debian-12-web VEs all answering in {mem} MiB; HTTP p50 {p50} µs (single VE {base} µs); \
         MemAvailable {avail} MiB; appliance memory per VE (MemAvailable delta 1..{good}) {:.1} MiB",
        if good > 1 { (avail1 as f64 - avail as f64) / (good - 1) as f64 } else { 0.0 }
    );
    Ok(())
}
