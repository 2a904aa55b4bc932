//! The seed's density experiment, under TCG: an appliance with 768 MiB
//! starts VEs of `debian-12-web` (init, syslogd, cron, sshd, Apache) in
//! batches; after each batch every VE must answer an HTTP GET and show its
//! SSH banner (an in-appliance client, `ve-probe web`, over the VEs' routed
//! addresses). It stops at the first batch where a VE does not answer, the
//! p50 HTTP latency exceeds twice that of a single VE, or VZ_BENCH_MAX VEs
//! run; it prints MemAvailable per step, the appliance's memory per VE, and
//! where one VE's memory goes (per process: RSS, PSS, private).
//!
//! `cargo bench -p qemu-tests --bench web_density`
//! (VZ_BENCH_MAX, default 200; VZ_BENCH_BATCH, default 10; VZ_BENCH_MEM, MiB,
//! default 768; VZ_BENCH_TEMPLATE, default debian-12-web (debian-12-light
//! runs the same roles from busybox and dropbear); VZ_BENCH_PASSES, default 5: the p50 is the median of that
//! many passes' p50s; VZ_BENCH_ZRAM, e.g. "150%": vz.conf's ZRAM_SWAP for
//! the run, set and rebooted into before the first VE; VZ_BENCH_TB, MiB,
//! default 1024: TCG's translation cache)

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

/// The addresses of VEs 0..n, as `ve-probe web` ranges.
fn ranges(n: usize) -> String {
    let mut s = format!("192.0.2.1-{}", n.min(250));
    if n > 250 {
        s.push_str(&format!(" 198.51.100.1-{}", n - 250));
    }
    s
}

fn web(a: &mut Appliance, addrs: &[String]) -> anyhow::Result<Web> {
    web_with(a, addrs, "")
}

/// One `ve-probe web` pass, `env` before it (PROBE_SSH=0, PROBE_STATS=1).
fn web_with(a: &mut Appliance, addrs: &[String], env: &str) -> anyhow::Result<Web> {
    let arg = if addrs.len() > 1 && addrs.iter().enumerate().all(|(k, x)| *x == ve(k).1) {
        ranges(addrs.len())
    } else {
        addrs.join(" ")
    };
    let out = a.shell_within(
        &format!("{env} /run/ve-probe web {arg}"),
        Duration::from_secs(60 + 25 * addrs.len() as u64),
    )?;
    for l in out.lines().filter(|l| l.starts_with("web: stat")) {
        println!("web_density:   {}", &l[5..]);
    }
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

/// Busy fraction of the appliance's CPUs over `secs` seconds.
fn busy(a: &mut Appliance, secs: u64) -> anyhow::Result<f64> {
    let read = |a: &mut Appliance| -> anyhow::Result<(u64, u64)> {
        let l = a.shell("head -1 /proc/stat")?;
        let v: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let total: u64 = v.iter().sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Ok((total, idle))
    };
    let (t0, i0) = read(a)?;
    std::thread::sleep(Duration::from_secs(secs));
    let (t1, i1) = read(a)?;
    Ok(1.0 - (i1 - i0) as f64 / (t1 - t0).max(1) as f64)
}

/// Waits (at most 5 minutes) until the VEs that just booted are idle: the
/// latency is that of a VE serving, not of a machine still booting VEs.
fn settle(a: &mut Appliance) -> anyhow::Result<f64> {
    let t = Instant::now();
    loop {
        let b = busy(a, 5)?;
        if b < 0.15 || t.elapsed() > Duration::from_secs(300) {
            return Ok(b);
        }
    }
}

/// p50 over `rounds` passes over every address: the median of the passes'
/// medians (each pass's p50 is printed: under TCG one pass can be several
/// times another).
fn latency(a: &mut Appliance, addrs: &[String], rounds: usize) -> anyhow::Result<Web> {
    // The timed passes are HTTP only: OpenSSH re-executes itself for every
    // connection (about 200 ms of emulated CPU), and those children ran
    // while the next VEs' HTTP requests were timed. Every VE's SSH banner
    // is checked by `wait_all` before. VZ_BENCH_SSH=1 puts it back.
    let env = if std::env::var("VZ_BENCH_SSH").is_ok_and(|v| v == "1") {
        "PROBE_STATS=1"
    } else {
        "PROBE_SSH=0 PROBE_STATS=1"
    };
    let mut ws = Vec::new();
    for _ in 0..rounds {
        ws.push(web_with(a, addrs, env)?);
    }
    ws.sort_by_key(|w| w.p50_us);
    let each: Vec<String> = ws
        .iter()
        .map(|w| format!("{:.1}", w.p50_us as f64 / 1000.0))
        .collect();
    println!(
        "web_density:   passes' p50 (ms, sorted): {}",
        each.join(" ")
    );
    Ok(ws.swap_remove(rounds / 2))
}

fn mem_available_mib(a: &mut Appliance) -> anyhow::Result<u64> {
    Ok(a.status()?.mem_available_kib / 1024)
}

/// Swap in use and what the zram device holds (vz.conf ZRAM_SWAP).
fn swap_line(a: &mut Appliance) -> anyhow::Result<String> {
    let out = a.shell(
        "awk '/^Swap(Total|Free):/ {v[$1]=$2} END {print v[\"SwapTotal:\"], v[\"SwapFree:\"]}' /proc/meminfo; \
         cat /sys/block/zram0/mm_stat 2>/dev/null || echo",
    )?;
    let mut lines = out.lines();
    let sw: Vec<u64> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let mm: Vec<u64> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let (total, free) = (
        sw.first().copied().unwrap_or(0),
        sw.get(1).copied().unwrap_or(0),
    );
    Ok(if mm.len() >= 3 {
        format!(
            "swap: {} of {} MiB used; zram holds {} MiB of pages in {} MiB ({:.1}x)",
            (total - free) / 1024,
            total / 1024,
            mm[0] >> 20,
            mm[2] >> 20,
            mm[0] as f64 / mm[2].max(1) as f64
        )
    } else {
        format!(
            "swap: {} of {} MiB used; no zram",
            (total - free) / 1024,
            total / 1024
        )
    })
}

/// Where the machine's memory is, from /proc/meminfo: anonymous pages, page
/// cache, reclaimable slab, and the kernel's own that no swap can take
/// (unreclaimable slab, stacks, page tables).
fn kernel_line(a: &mut Appliance) -> anyhow::Result<String> {
    let out = a.shell(
        "awk '/^(AnonPages|Cached|SReclaimable|SUnreclaim|KernelStack|PageTables):/ \
         {printf \"%s %d MiB, \", $1, $2/1024}' /proc/meminfo",
    )?;
    Ok(format!("memory: {}", out.trim().trim_end_matches(',')))
}

/// VE 1000's processes (RSS, PSS, private, of it dirty, swapped) and its
/// memory.current.
fn per_process(a: &mut Appliance) -> anyhow::Result<()> {
    let per_proc = a.shell_within(
        "for p in $(cat /sys/fs/cgroup/vz/1000/ve/cgroup.procs /sys/fs/cgroup/vz/1000/ve/*/cgroup.procs \
         /sys/fs/cgroup/vz/1000/ve/*/*/cgroup.procs 2>/dev/null); do \
         printf '%-12s ' $(cat /proc/$p/comm); \
         awk '/^(Rss|Pss|Private_Clean|Private_Dirty|Swap):/ {v[$1]=$2} END {printf \"rss %6d kB pss %6d kB private %6d kB (dirty %6d kB) swap %6d kB\\n\", \
         v[\"Rss:\"], v[\"Pss:\"], v[\"Private_Clean:\"]+v[\"Private_Dirty:\"], v[\"Private_Dirty:\"], v[\"Swap:\"]}' /proc/$p/smaps_rollup; done",
        Duration::from_secs(120),
    )?;
    println!("web_density: VE 1000's processes:\n{}", per_proc.trim_end());
    let cg = a.shell("cat /sys/fs/cgroup/vz/1000/memory.current")?;
    println!(
        "web_density: VE 1000 memory.current {} kB",
        cg.trim().parse::<u64>().unwrap_or(0) / 1024
    );

    Ok(())
}

/// The emulator's translation cache: blocks held and whole-cache flushes
/// so far (the monitor's `info jit`).
fn jit_line(a: &mut Appliance) -> String {
    match a.jit_stats() {
        Ok(j) => j
            .lines()
            .filter(|l| l.contains("TB count") || l.contains("TB flush count"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("info jit: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    let max = env("VZ_BENCH_MAX", 200);
    let batch = env("VZ_BENCH_BATCH", 10).max(1);
    let mem = env("VZ_BENCH_MEM", 768) as u32;
    let template = std::env::var("VZ_BENCH_TEMPLATE").unwrap_or_else(|_| "debian-12-web".into());
    // TCG's translation cache: QEMU's own 1 GiB here, not the harness's 128
    // MiB. QEMU 7.2 translates code per virtual address, and every VE's
    // processes map the shared template libraries at their own (random)
    // addresses, so the hot code of many VEs overflows a small cache, which
    // TCG then flushes whole and translates again on every pass.
    let tb = env("VZ_BENCH_TB", 1024) as u32;
    let mut a = Appliance::boot_with(
        "bench-web-density",
        Opts {
            probe: true,
            memory_mib: Some(mem),
            tb_mib: Some(tb),
            ..Opts::default()
        },
    )?;
    a.enter_shell()?;
    let long = Duration::from_secs(900);
    // The zram swap the figure uses (vz.conf ZRAM_SWAP, read at boot).
    if let Ok(zram) = std::env::var("VZ_BENCH_ZRAM") {
        a.shell_within(
            &format!(
                "sed -i 's/^ZRAM_SWAP=.*/ZRAM_SWAP=\"{zram}\"/' /boot/vz/vz.conf && \
                 grep -q '^ZRAM_SWAP=\"{zram}\"' /boot/vz/vz.conf"
            ),
            long,
        )?;
        a.reboot()?;
    }
    println!(
        "web_density: swap: {}",
        a.shell_within(
            "grep '^ZRAM_SWAP' /boot/vz/vz.conf; cat /proc/swaps | tail -n +2",
            long
        )?
        .trim()
    );
    // The reclaim settings vmmgr made (LRU, free-memory floor).
    println!(
        "web_density: reclaim: {}",
        a.shell_within(
            "grep -h 'reclaim:' /run/vz/log | sed 's/.*reclaim: //' | tr '\\n' ';'",
            long
        )?
        .trim()
    );
    a.install_probe_here()?;
    let avail0 = mem_available_mib(&mut a)?;
    println!("web_density: -m {mem}, MemAvailable before any VE: {avail0} MiB");

    // One VE: the latency to compare with.
    // One VE per command line: busybox's line editor takes 1024 bytes.
    let create = |a: &mut Appliance, from: usize, to: usize| -> anyhow::Result<()> {
        eprintln!("web_density: creating and starting VEs {from}..{to}");
        for k in from..to {
            let (veid, addr) = ve(k);
            a.shell_within(
                &format!(
                    "vzctl --quiet create {veid} --ostemplate {template} >/dev/null && \
                     vzctl --quiet set {veid} --ipadd {addr} --save >/dev/null"
                ),
                long,
            )?;
        }
        for k in from..to {
            a.shell_within(&format!("vzctl --quiet start {} >/dev/null", ve(k).0), long)?;
        }
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
    let idle = settle(&mut a)?;
    let base = latency(&mut a, &first, 21)?.p50_us;
    let passes = env("VZ_BENCH_PASSES", 5).max(1);
    let avail1 = mem_available_mib(&mut a)?;
    println!(
        "web_density: 1 VE: HTTP p50 {base} µs (21 requests, CPUs {:.0} % busy before), MemAvailable {avail1} MiB",
        idle * 100.0
    );

    println!("web_density: TCG ({tb} MiB cache): {}", jit_line(&mut a));
    // Where one VE's memory goes (alone: its binaries' pages count as its
    // own; at the end, shared with every other VE).
    per_process(&mut a)?;

    let mut n = 1;
    let mut last_good = (1, base, avail1);
    while n < max {
        let to = (n + batch).min(max);
        let t = Instant::now();
        create(&mut a, n, to)?;
        let addrs: Vec<String> = (0..to).map(|k| ve(k).1).collect();
        // A web VE's boot is tens of seconds of emulated CPU (host keys,
        // init scripts, Apache): allow 45 s per VE of the batch.
        let limit = Duration::from_secs((45 * (to - n) as u64).max(600));
        let w = wait_all(&mut a, &addrs, limit)?;
        let boot = t.elapsed();
        let idle = if w.fail == 0 { settle(&mut a)? } else { 1.0 };
        let w = if w.fail == 0 {
            latency(&mut a, &addrs, passes)?
        } else {
            w
        };
        let avail = mem_available_mib(&mut a)?;
        println!("web_density: {}", swap_line(&mut a)?);
        println!("web_density: TCG ({tb} MiB cache): {}", jit_line(&mut a));
        println!("web_density: {}", kernel_line(&mut a)?);
        println!(
            "web_density: {to} VEs (batch answering after {:.0} s, CPUs {:.0} % busy before measuring): answered {} failed {}, HTTP p50 {} µs p90 {} µs, MemAvailable {avail} MiB",
            boot.as_secs_f64(),
            idle * 100.0,
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
    per_process(&mut a)?;
    let (good, p50, avail) = last_good;
    println!(
        "web_density: RESULT {good} {template} VEs all answering in {mem} MiB; HTTP p50 {p50} µs (single VE {base} µs); \
         MemAvailable {avail} MiB; appliance memory per VE (MemAvailable delta 1..{good}) {:.1} MiB",
        if good > 1 { (avail1 as f64 - avail as f64) / (good - 1) as f64 } else { 0.0 }
    );
    Ok(())
}
