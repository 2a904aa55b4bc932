//! The cost of reading every VE's beancounters, natively: 100 cgroups under
//! `/sys/fs/cgroup/vzbench`, one sleeping process in each (as a VE init
//! would be), read with the daemon's own code (`read_counters`, then the
//! rows and the `/proc/user_beancounters` text), 20 rounds. Needs root and
//! cgroup v2; prints the median and the worst round.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Instant;
use vmmgr::daemon::beancounters;

const VES: u32 = 100;
const ROUNDS: usize = 20;

fn main() -> anyhow::Result<()> {
    let root = Path::new("/sys/fs/cgroup/vzbench");
    if std::fs::create_dir_all(root).is_err() {
        eprintln!("ubc_read: needs root and cgroup v2 at /sys/fs/cgroup; skipped");
        return Ok(());
    }
    let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
    let mut kids: Vec<(u32, Child)> = Vec::new();
    for v in 0..VES {
        let cg = root.join(v.to_string());
        std::fs::create_dir_all(&cg)?;
        let child = Command::new("sleep").arg("600").spawn()?;
        std::fs::write(cg.join("cgroup.procs"), child.id().to_string())?;
        kids.push((v, child));
    }
    let limits = vzconfig::resources::Limits::default();
    let seen = [0u64; proto::UBC_COUNT];
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut all = Vec::new();
        for (v, child) in &kids {
            let c = beancounters::read_counters(
                &root.join(v.to_string()),
                Path::new("/proc"),
                Some(child.id() as i32),
                beancounters::Scope::Whole,
            );
            all.push((*v + 101, beancounters::rows(Some(&c), &limits, &seen)));
        }
        let blocks: Vec<(u32, &[proto::UbcRow])> = all.iter().map(|(v, r)| (*v, &r[..])).collect();
        bytes = vmmgr::ubc::render(&blocks).len();
        times.push(t.elapsed());
    }
    for (_, mut c) in kids {
        let _ = c.kill();
        let _ = c.wait();
    }
    for v in 0..VES {
        let _ = std::fs::remove_dir(root.join(v.to_string()));
    }
    let _ = std::fs::remove_dir(root);
    times.sort();
    println!(
        "ubc_read: {VES} VEs, {ROUNDS} rounds: median {:.1} ms, worst {:.1} ms per full read ({bytes} bytes of user_beancounters); aim < 50 ms",
        times[ROUNDS / 2].as_secs_f64() * 1e3,
        times[ROUNDS - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
