//! Under TCG, two appliances on one virtual link (QEMU socket netdev on
//! 127.0.0.1): TCP throughput and round-trip time from B to A's own address
//! and to a VE on A with a routed address (venet0, through A's routing,
//! neighbour answers and anti-spoofing table), alternately, as ratios; how
//! long `vzctl set --ipadd` takes to be in force and answered from B; and a
//! VE's start time with and without an address.
//!
//! `cargo bench -p qemu-tests --bench net` (`VZ_BENCH_QUICK=1`: fewer runs)

use qemu_tests::Appliance;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Nanoseconds on the appliance's clock (/proc/uptime: 10 ms steps) around
/// a shell command (busybox date has no nanoseconds).
fn timed(a: &mut Appliance, cmd: &str) -> anyhow::Result<f64> {
    let out = a.run_ok(&format!(
        "t0=$(cut -d' ' -f1 /proc/uptime); {cmd} >/dev/null 2>&1; t1=$(cut -d' ' -f1 /proc/uptime); echo \"T $t0 $t1\""
    ))?;
    let line = out
        .lines()
        .find(|l| l.starts_with("T "))
        .ok_or_else(|| anyhow::anyhow!("no times in {out}"))?;
    let t: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    anyhow::ensure!(t.len() == 2, "bad times {line}");
    Ok((t[1] - t[0]) * 1e9)
}

fn link(a: &mut Appliance, v4: &str) -> anyhow::Result<()> {
    a.run_ok(&format!(
        "printf 'NETIF=\"ifname=eth0,dhcp=yes;ifname=eth1,ip={v4}/24\"\\n' > /etc/vz/net.conf && kill -9 $(pidof vmmgr)"
    ))?;
    for _ in 0..60 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if a.run_rc("vzlist -a -H -o ctid")?.1 == 0
            && a.run_rc("ip -o addr show dev eth1")?.0.contains(v4)
        {
            return Ok(());
        }
    }
    anyhow::bail!("{v4} not configured")
}

/// MB/s of one TCP stream of `mb` MiB from B to `to`:5001, where A (or
/// its VE `ve`) listens and counts what arrives (a short count is an
/// error, not a figure). The listener's stdin stays open (busybox nc ends
/// a connection when its stdin ends).
fn stream(
    a: &mut Appliance,
    b: &mut Appliance,
    ve: Option<u32>,
    to: &str,
    mb: u32,
) -> anyhow::Result<f64> {
    let (server, listening) = match ve {
        None => (
            "sleep 600 | nc -l -p 5001 | wc -c > /tmp/rx".to_owned(),
            "netstat -ltn".to_owned(),
        ),
        Some(v) => (
            format!("vzctl exec {v} 'sleep 600 | nc -l -p 5001 | wc -c' > /tmp/rx"),
            format!("vzctl exec {v} netstat -ltn"),
        ),
    };
    a.run_ok("rm -f /tmp/rx")?;
    a.run_ok(&format!(
        "(sh -c \"{server}\" </dev/null >/dev/null 2>&1 &)"
    ))?;
    let mut up = false;
    for _ in 0..50 {
        if a.run_ok(&listening)?.contains(":5001") {
            up = true;
            break;
        }
    }
    anyhow::ensure!(up, "nothing listens on 5001");
    let ns = timed(
        b,
        &format!("dd if=/dev/zero bs=65536 count={} | nc {to} 5001", mb * 16),
    )?;
    let mut got = 0u64;
    for _ in 0..50 {
        got = a
            .run_ok("cat /tmp/rx 2>/dev/null")?
            .trim()
            .parse()
            .unwrap_or(0);
        if got > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::ensure!(
        got == u64::from(mb) << 20,
        "{to}: {got} bytes arrived of {}",
        u64::from(mb) << 20
    );
    Ok(f64::from(mb) / (ns / 1e9))
}

/// Average round-trip time in ms of 20 pings from B.
fn rtt(b: &mut Appliance, to: &str) -> anyhow::Result<f64> {
    let out = b.run_ok(&format!("ping -q -c 20 -i 0.2 {to}"))?;
    let avg = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no ping summary:\n{out}"))?;
    Ok(avg)
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::var_os("VZ_BENCH_QUICK").is_some();
    let runs = if quick { 3 } else { 7 };
    let (mut a, mut b) = Appliance::boot_pair("bench-net")?;
    a.enter_shell()?;
    b.enter_shell()?;
    link(&mut a, "192.0.2.1")?;
    link(&mut b, "192.0.2.2")?;
    a.run_ok("vzctl --quiet create 101 && vzctl set 101 --ipadd 192.0.2.10 --save && vzctl --quiet start 101")?;
    // Warm the neighbour caches.
    b.run_ok("ping -c 2 192.0.2.1 && ping -c 2 192.0.2.10")?;

    let mb = if quick { 16 } else { 64 };
    let (mut app, mut ve) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        app.push(stream(&mut a, &mut b, None, "192.0.2.1", mb)?);
        ve.push(stream(&mut a, &mut b, Some(101), "192.0.2.10", mb)?);
    }
    let (ta, tv) = (median(app.clone()), median(ve.clone()));
    println!("| measure | B -> A | B -> VE on A | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| TCP throughput, {mb} MiB, median of {runs} | {ta:.1} MB/s | {tv:.1} MB/s | {:.3} |",
        tv / ta
    );
    let (mut ra, mut rv) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ra.push(rtt(&mut b, "192.0.2.1")?);
        rv.push(rtt(&mut b, "192.0.2.10")?);
    }
    let (la, lv) = (median(ra), median(rv));
    println!(
        "| round trip (ping, mean of 20), median of {runs} | {la:.3} ms | {lv:.3} ms | {:.3} |",
        lv / la
    );
    println!("(throughput runs: appliance {app:.1?}, VE {ve:.1?})");

    // --ipadd: the command (both sides, firewall included), and until B
    // gets an answer from the new address.
    let mut cmd = Vec::new();
    let mut answered = Vec::new();
    for i in 0..runs {
        let ip = format!("192.0.2.{}", 100 + i);
        cmd.push(timed(&mut a, &format!("vzctl set 101 --ipadd {ip}"))? / 1e6);
        let t = std::time::Instant::now();
        let mut ok = false;
        for _ in 0..50 {
            if b.run_rc(&format!("ping -c 1 -W 1 {ip}"))?.1 == 0 {
                ok = true;
                break;
            }
        }
        anyhow::ensure!(ok, "{ip} never answered");
        answered.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "--ipadd: the command {:.0} ms (median of {runs}); first answer at B {:.0} ms after it \
         (one ping through the test's serial console included)",
        median(cmd),
        median(answered)
    );

    // A VE's start with and without networking.
    a.run_ok("vzctl --quiet create 102 && vzctl --quiet create 103 && vzctl set 103 --ipadd 198.51.100.3 --save")?;
    let (mut plain, mut net) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(timed(&mut a, "vzctl --quiet start 102")? / 1e6);
        net.push(timed(&mut a, "vzctl --quiet start 103")? / 1e6);
        a.run_ok("vzctl --quiet stop 102 --fast && vzctl --quiet stop 103 --fast")?;
    }
    let (p, n) = (median(plain), median(net));
    println!(
        "VE start (vzctl start, median of {runs}): without an address {p:.0} ms, with one \
         {n:.0} ms: networking adds {:.0} ms ({:.0} %)",
        n - p,
        (n - p) / p * 100.0
    );
    Ok(())
}
