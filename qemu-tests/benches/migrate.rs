//! `vzmigrate --online` between two appliances under TCG (linked on
//! 127.0.0.1): a busybox VE with a routed address, idle, then with a
//! process writing 64 MiB of its memory over and over. The VE goes A -> B
//! -> A ... (VZ_BENCH_ROUNDS moves, default 4); prints each move's freeze
//! time (from the start of the final dump at the source to DEST's answer
//! that the VE runs), total time and bytes sent, as vzmigrate reports
//! them, and the medians. `VZ_BENCH_CASES` (default "idle,64m,web")
//! picks the VEs.
//!
//! `cargo bench -p qemu-tests --bench migrate`

use qemu_tests::Appliance;

/// A number after `key` in vzmigrate's output ("freeze time 812 ms").
fn after(out: &str, key: &str) -> Option<f64> {
    out.split(key)
        .nth(1)?
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .find(|t| !t.is_empty())?
        .parse()
        .ok()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What each move of a run gave: freeze (ms), total (s), sent (MiB).
#[derive(Default)]
struct Figures {
    freeze: Vec<f64>,
    total: Vec<f64>,
    sent: Vec<f64>,
}

/// Moves `veid` live back and forth `rounds` times, starting at `ends[*at]`.
fn moves(
    ends: &mut [Appliance; 2],
    at: &mut usize,
    veid: u32,
    what: &str,
    rounds: usize,
) -> anyhow::Result<Figures> {
    let mut fig = Figures::default();
    for i in 0..rounds {
        let dest = if *at == 0 { "b" } else { "a" };
        let (out, rc) = ends[*at].run_rc_within(
            &format!("vzmigrate --online {dest} {veid}"),
            std::time::Duration::from_secs(600),
        )?;
        anyhow::ensure!(rc == 0, "{what}, move {}: vzmigrate failed:\n{out}", i + 1);
        let last = out
            .lines()
            .find(|l| l.contains("completed in"))
            .unwrap_or("");
        let (f, t, s) = (
            after(&out, "freeze time ").unwrap_or(f64::NAN),
            after(last, "completed in ").unwrap_or(f64::NAN),
            after(last, "s, ").unwrap_or(f64::NAN),
        );
        eprintln!(
            "{what}, move {} to {dest}: freeze {f} ms, total {t} s, {s} MiB sent",
            i + 1
        );
        if i == 0 {
            eprintln!("{out}");
        }
        fig.freeze.push(f);
        fig.total.push(t);
        fig.sent.push(s);
        *at = 1 - *at;
    }
    Ok(fig)
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("VZ_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let cases = std::env::var("VZ_BENCH_CASES").unwrap_or_else(|_| "idle,64m,web".into());
    let case = |c: &str| cases.split(',').any(|x| x.trim() == c);
    let (a, b) = Appliance::boot_migration_pair("bench-migrate", |_, _| String::new())?;
    let mut ends = [a, b];
    ends[0].run_ok("vzctl --quiet create 101 --ostemplate busybox")?;
    ends[0].run_ok("vzctl --quiet set 101 --ipadd 192.0.2.10 --ram 256M --save")?;
    ends[0].run_ok("vzctl --quiet start 101")?;
    let mut at = 0;
    for (key, what, setup) in [
        ("idle", "idle busybox VE", None),
        (
            "64m",
            "busybox VE writing 64 MiB",
            // dd reads /dev/zero into its 64 MiB buffer, again and again.
            Some("vzctl exec 101 '(dd if=/dev/zero of=/dev/null bs=64M count=100000000 </dev/null >/dev/null 2>&1 &)' </dev/null; sleep 5"),
        ),
    ] {
        if !case(key) {
            continue;
        }
        if let Some(cmd) = setup {
            ends[at].run_ok(cmd)?;
        }
        let rss = ends[at].run_ok("cat /sys/fs/cgroup/vz/101/memory.current")?;
        let mut fig = moves(&mut ends, &mut at, 101, what, rounds)?;
        print_result(what, &rss, rounds, &mut fig);
    }
    // A debian-12-web VE (init, syslog, cron, sshd, Apache), if the image
    // has the template (`image build --template debian-12-web`).
    if case("web") && ends[at].run_ok("vzpkg list -q")?.contains("debian-12-web") {
        let what = "debian-12-web VE";
        ends[at].run_ok("vzctl --quiet stop 101 && vzctl --quiet destroy 101")?;
        ends[at].run_ok("vzctl --quiet create 102 --ostemplate debian-12-web")?;
        ends[at].run_ok("vzctl --quiet set 102 --ipadd 192.0.2.12 --save")?;
        ends[at].run_ok("vzctl --quiet start 102; sleep 20")?;
        let rss = ends[at].run_ok("cat /sys/fs/cgroup/vz/102/memory.current")?;
        let mut fig = moves(&mut ends, &mut at, 102, what, rounds)?;
        let http = ends[at]
            .run_rc("wget -q -O /dev/null http://192.0.2.12/")?
            .1;
        anyhow::ensure!(http == 0, "the web VE does not answer HTTP after its moves");
        print_result(what, &rss, rounds, &mut fig);
    }
    Ok(())
}

fn print_result(what: &str, rss: &str, rounds: usize, fig: &mut Figures) {
    println!(
        "{what} (memory.current {} MiB): freeze median {} ms (min {}, max {}), total median {:.2} s, sent median {:.1} MiB; {rounds} moves",
        rss.trim().parse::<u64>().unwrap_or(0) >> 20,
        median(&mut fig.freeze),
        fig.freeze.first().copied().unwrap_or(f64::NAN),
        fig.freeze.last().copied().unwrap_or(f64::NAN),
        median(&mut fig.total),
        median(&mut fig.sent),
    );
}
