//! A VE's beancounters, from the kernel's counters (see docs/config.md,
//! "Resources", for which are enforced, which only counted, and why):
//!
//! | beancounter | held | kernel peak | failcnt |
//! |---|---|---|---|
//! | kmemsize | `memory.stat` kernel (or kernel_stack + pagetables + percpu + slab) | – | – |
//! | lockedpages | `memory.stat` unevictable | – | – |
//! | privvmpages, vmguarpages | `memory.stat` anon + `memory.swap.current` | – | – |
//! | shmpages | `memory.stat` shmem | – | – |
//! | numproc | `pids.current` | – | `pids.events` max, summed over the subtree |
//! | physpages | `memory.current` | `memory.peak` | `memory.events` max |
//! | oomguarpages | `memory.current` + `memory.swap.current` | – | `memory.events` oom_kill |
//! | numtcpsock | TCP + TCP6 in use in the VE's network namespace | – | – |
//! | numothersock | UDP, UDP-Lite, RAW (v4 and v6) and UNIX sockets there | – | – |
//! | numflock | `/proc/locks` entries of the VE's processes | – | – |
//! | numpty | terminals (`/dev/pts/N`) the VE's processes hold open | – | – |
//! | dcachesize | `memory.stat` slab_reclaimable | – | – |
//! | numfile | open file descriptors of the VE's processes | – | – |
//! | swappages | `memory.swap.current` | `memory.swap.peak` | `memory.swap.events` fail |
//! | numsiginfo, socket buffers, numiptent | not counted per VE by this kernel: 0 | | |
//!
//! maxheld is the kernel's peak where it keeps one, otherwise the largest
//! value vmmgr saw: at every read, and by the sampler (memory and process
//! counts every [`SAMPLE_EVERY`] or more, see [`next_sample`]; open files,
//! locks, sockets and terminals, which take a walk over every descriptor of
//! the VE, every [`WHOLE_EVERY`]).

use proto::{UbcRow, UBC_COUNT};
use std::path::Path;
use std::time::Duration;

/// How often vmmgr samples running VEs for maxheld and the load average, at
/// most (see [`next_sample`]).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How often the sampler also counts files, locks, sockets and terminals.
pub const WHOLE_EVERY: Duration = Duration::from_secs(60);

/// The wait before the next sample, after one that took `took`: at least
/// [`SAMPLE_EVERY`], and at least 19 times `took`, so the sampler never
/// holds more than a twentieth of a CPU however many VEs run.
pub fn next_sample(took: Duration) -> Duration {
    SAMPLE_EVERY.max(took.saturating_mul(19))
}

/// How much of a VE [`read_counters`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The cgroup's files and the threads' states: a few reads per VE.
    Cheap,
    /// Also every descriptor of every process (numfile, numpty), the file
    /// locks and the network namespace's sockets.
    Whole,
}

const PAGE: u64 = vzconfig::resources::PAGE;

fn idx(name: &str) -> usize {
    proto::ubc_index(name).unwrap_or(4)
}

/// What the kernel says of one VE now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub held: [u64; UBC_COUNT],
    /// The kernel's own peak, where it keeps one.
    pub peak: [Option<u64>; UBC_COUNT],
    pub failcnt: [u64; UBC_COUNT],
    /// Threads running or waiting for I/O (for the load average).
    pub runnable: u32,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, memory.events, pids.events).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Every cgroup directory under `cg`, `cg` included.
fn subtree(cg: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![cg.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(d) = std::fs::read_dir(&out[i]) {
            for e in d.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// `sockstat` counts: `TCP: inuse 3 orphan 0 ...` -> the `inuse` of `proto`.
fn inuse(text: &str, proto: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(proto)?.strip_prefix(':')?;
            let mut it = rest.split_whitespace();
            while let Some(k) = it.next() {
                let v = it.next()?;
                if k == "inuse" {
                    return v.parse().ok();
                }
            }
            None
        })
        .unwrap_or(0)
}

/// Reads VE counters: `cg` is its cgroup, `proc` the appliance's procfs,
/// `init` its init's pid there; `scope` says how much (the counters it
/// leaves out are 0).
pub fn read_counters(cg: &Path, proc: &Path, init: Option<i32>, scope: Scope) -> Counters {
    let mut c = Counters::default();
    let stat = read(&cg.join("memory.stat")).unwrap_or_default();
    let st = |k: &str| keyed(&stat, k).unwrap_or(0);
    let kernel = keyed(&stat, "kernel")
        .unwrap_or_else(|| st("kernel_stack") + st("pagetables") + st("percpu") + st("slab"));
    let mem = num(&cg.join("memory.current")).unwrap_or(0);
    let swap = num(&cg.join("memory.swap.current")).unwrap_or(0);
    c.held[idx("kmemsize")] = kernel;
    c.held[idx("lockedpages")] = st("unevictable") / PAGE;
    c.held[idx("privvmpages")] = (st("anon") + swap) / PAGE;
    c.held[idx("vmguarpages")] = c.held[idx("privvmpages")];
    c.held[idx("shmpages")] = st("shmem") / PAGE;
    c.held[idx("physpages")] = mem / PAGE;
    c.held[idx("oomguarpages")] = (mem + swap) / PAGE;
    c.held[idx("swappages")] = swap / PAGE;
    c.held[idx("dcachesize")] = st("slab_reclaimable");
    c.held[idx("numproc")] = num(&cg.join("pids.current")).unwrap_or(0);
    c.peak[idx("physpages")] = num(&cg.join("memory.peak")).map(|b| b / PAGE);
    c.peak[idx("swappages")] = num(&cg.join("memory.swap.peak")).map(|b| b / PAGE);
    let events = read(&cg.join("memory.events")).unwrap_or_default();
    c.failcnt[idx("physpages")] = keyed(&events, "max").unwrap_or(0);
    c.failcnt[idx("oomguarpages")] = keyed(&events, "oom_kill").unwrap_or(0);
    c.failcnt[idx("swappages")] = read(&cg.join("memory.swap.events"))
        .and_then(|t| keyed(&t, "fail"))
        .unwrap_or(0);
    // On 6.1 a refused fork is counted where it was tried, not where the
    // limit is: sum the subtree.
    let groups = subtree(cg);
    let mut pids: Vec<i32> = Vec::new();
    for g in &groups {
        if let Some(t) = read(&g.join("pids.events")) {
            c.failcnt[idx("numproc")] += keyed(&t, "max").unwrap_or(0);
        }
        // Runnable threads (for the load average): every thread's state.
        if let Some(t) = read(&g.join("cgroup.threads")) {
            for tid in t.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if let Some(s) = read(&proc.join(tid.to_string()).join("stat")) {
                    let state = s
                        .rsplit_once(')')
                        .and_then(|(_, r)| r.trim().chars().next());
                    if matches!(state, Some('R' | 'D')) {
                        c.runnable += 1;
                    }
                }
            }
        }
        if scope == Scope::Whole {
            if let Some(t) = read(&g.join("cgroup.procs")) {
                pids.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
    }
    if scope == Scope::Cheap {
        return c;
    }
    // Open files and terminals of the VE's processes. (Terminals from the
    // names of open descriptors, never by walking the VE's /dev: the VE
    // decides what is mounted there, and may make it block.)
    let mut ptys = std::collections::BTreeSet::new();
    for pid in &pids {
        if let Ok(d) = std::fs::read_dir(proc.join(pid.to_string()).join("fd")) {
            for e in d.flatten() {
                c.held[idx("numfile")] += 1;
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let t = t.to_string_lossy();
                    if let Some(n) = t.strip_prefix("/dev/pts/") {
                        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                            ptys.insert(n.to_owned());
                        }
                    }
                }
            }
        }
    }
    if let Some(locks) = read(&proc.join("locks")) {
        c.held[idx("numflock")] = locks
            .lines()
            .filter(|l| {
                // "1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(4)
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|p| pids.contains(&p))
            })
            .count() as u64;
    }
    if let Some(init) = init {
        let net = proc.join(init.to_string()).join("net");
        let s4 = read(&net.join("sockstat")).unwrap_or_default();
        let s6 = read(&net.join("sockstat6")).unwrap_or_default();
        c.held[idx("numtcpsock")] = inuse(&s4, "TCP") + inuse(&s6, "TCP6");
        let unix = read(&net.join("unix"))
            .map(|t| t.lines().count().saturating_sub(1) as u64)
            .unwrap_or(0);
        c.held[idx("numothersock")] = ["UDP", "UDPLITE", "RAW"]
            .iter()
            .map(|p| inuse(&s4, p))
            .sum::<u64>()
            + ["UDP6", "UDPLITE6", "RAW6"]
                .iter()
                .map(|p| inuse(&s6, p))
                .sum::<u64>()
            + unix;
    }
    c.held[idx("numpty")] = ptys.len() as u64;
    c
}

/// One VE's beancounter rows: `c` (None when stopped) with the config's
/// barriers and limits, `seen` the largest held values seen so far.
pub fn rows(
    c: Option<&Counters>,
    limits: &vzconfig::resources::Limits,
    seen: &[u64; UBC_COUNT],
) -> [UbcRow; UBC_COUNT] {
    let unl = proto::Ubc::UNLIMITED;
    let mut out = [UbcRow {
        barrier: unl,
        limit: unl,
        ..UbcRow::default()
    }; UBC_COUNT];
    for (i, row) in out.iter_mut().enumerate() {
        if let Some(bl) = limits.ubc[i] {
            row.barrier = bl.barrier.get().unwrap_or(unl);
            row.limit = bl.limit.get().unwrap_or(unl);
        }
        if let Some(c) = c {
            row.held = c.held[i];
            row.maxheld = c.held[i].max(seen[i]).max(c.peak[i].unwrap_or(0));
            row.failcnt = c.failcnt[i];
        }
    }
    // VM_OVERCOMMIT: privvmpages = (ram + swap) × factor, unless set.
    if let (None, Some(f)) = (limits.ubc("privvmpages"), limits.vm_overcommit) {
        let ram = limits.ubc("physpages").and_then(|b| b.limit.get());
        let swap = limits
            .ubc("swappages")
            .and_then(|b| b.limit.get())
            .unwrap_or(0);
        if let (Some(ram), true) = (ram, f > 0) {
            let v = (ram.saturating_add(swap)).saturating_mul(u64::from(f)) / 1000;
            let p = &mut out[idx("privvmpages")];
            p.barrier = v.min(unl);
            p.limit = v.min(unl);
        }
    }
    out
}

/// An exponentially damped load average, as the kernel computes its own
/// (fixed point, 11 bits), fed at every sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadAvg {
    avg: [u64; 3],
}

impl LoadAvg {
    const FSHIFT: u32 = 11;
    const FIXED_1: u64 = 1 << Self::FSHIFT;
    /// The three averages' periods in seconds.
    const PERIODS: [f64; 3] = [60.0, 300.0, 900.0];

    /// One sample of `runnable` threads, `dt` after the one before: the
    /// kernel's exponential decay (exp(-dt/period) in fixed point; for a
    /// 5 s `dt` exactly its EXP_1, EXP_5 and EXP_15).
    pub fn update(&mut self, runnable: u32, dt: Duration) {
        let active = u64::from(runnable) * Self::FIXED_1;
        let secs = dt.as_secs_f64().max(0.001);
        for (a, period) in self.avg.iter_mut().zip(Self::PERIODS) {
            let e = ((-secs / period).exp() * Self::FIXED_1 as f64).round() as u64;
            let e = e.min(Self::FIXED_1);
            let mut v = *a * e + active * (Self::FIXED_1 - e);
            if active >= *a {
                v += Self::FIXED_1 - 1;
            }
            *a = v / Self::FIXED_1;
        }
    }

    /// The three averages in hundredths.
    pub fn hundredths(&self) -> [u32; 3] {
        self.avg
            .map(|a| ((a * 100 + Self::FIXED_1 / 2) / Self::FIXED_1) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_cgroup_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let cg = d.path().join("cg");
        let leaf = cg.join("ve");
        std::fs::create_dir_all(&leaf).expect("dirs");
        let w = |p: &Path, t: &str| std::fs::write(p, t).expect("write");
        w(
            &cg.join("memory.stat"),
            "anon 8192\nfile 4096\nkernel 123456\nshmem 4096\nunevictable 0\nslab_reclaimable 777\n",
        );
        w(&cg.join("memory.current"), "1048576\n");
        w(&cg.join("memory.peak"), "2097152\n");
        w(&cg.join("memory.swap.current"), "4096\n");
        w(
            &cg.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        );
        w(&cg.join("pids.current"), "4\n");
        w(&cg.join("pids.events"), "max 2\n");
        w(&leaf.join("pids.events"), "max 5\n");
        // Process 17 (threads 17, 18): one running thread, and a
        // terminal among its two descriptors.
        w(&leaf.join("cgroup.procs"), "17\n");
        w(&leaf.join("cgroup.threads"), "17\n18\n");
        let proc = d.path().join("proc");
        for (tid, state) in [(17, "R"), (18, "S")] {
            std::fs::create_dir_all(proc.join(format!("{tid}"))).expect("dir");
            w(
                &proc.join(format!("{tid}/stat")),
                &format!("{tid} (a) b) {state} 1 1 1"),
            );
        }
        std::fs::create_dir_all(proc.join("17/fd")).expect("dir");
        std::os::unix::fs::symlink("/dev/pts/3", proc.join("17/fd/0")).expect("link");
        std::os::unix::fs::symlink("/etc/x", proc.join("17/fd/1")).expect("link");
        let cheap = read_counters(&cg, &proc, None, Scope::Cheap);
        assert_eq!(cheap.runnable, 1);
        assert_eq!(cheap.held[idx("numfile")], 0);
        assert_eq!(cheap.held[idx("physpages")], 256);
        let c = read_counters(&cg, &proc, None, Scope::Whole);
        assert_eq!(c.runnable, 1);
        assert_eq!(c.held[idx("numfile")], 2);
        assert_eq!(c.held[idx("numpty")], 1);
        assert_eq!(c.held[idx("kmemsize")], 123_456);
        assert_eq!(c.held[idx("physpages")], 256);
        assert_eq!(c.peak[idx("physpages")], Some(512));
        assert_eq!(c.held[idx("privvmpages")], 3);
        assert_eq!(c.held[idx("shmpages")], 1);
        assert_eq!(c.held[idx("swappages")], 1);
        assert_eq!(c.held[idx("oomguarpages")], 257);
        assert_eq!(c.held[idx("dcachesize")], 777);
        assert_eq!(c.held[idx("numproc")], 4);
        assert_eq!(c.failcnt[idx("numproc")], 7);
        assert_eq!(c.failcnt[idx("physpages")], 3);
        assert_eq!(c.failcnt[idx("oomguarpages")], 1);
    }

    #[test]
    fn sockets_are_read_from_sockstat() {
        let s4 = "sockets: used 5\nTCP: inuse 3 orphan 0 tw 0 alloc 4 mem 1\nUDP: inuse 2 mem 0\nUDPLITE: inuse 0\nRAW: inuse 1\nFRAG: inuse 0 memory 0\n";
        assert_eq!(inuse(s4, "TCP"), 3);
        assert_eq!(inuse(s4, "UDP"), 2);
        assert_eq!(inuse(s4, "RAW"), 1);
        assert_eq!(inuse(s4, "TCP6"), 0);
    }

    #[test]
    fn rows_take_limits_from_the_config_and_peaks_from_kernel_or_samples() {
        let mut limits = vzconfig::resources::Limits::default();
        limits.ubc[idx("numproc")] =
            vzconfig::resources::parse("40:50", vzconfig::resources::Unit::Items).ok();
        limits.ubc[idx("physpages")] =
            vzconfig::resources::parse("0:1G", vzconfig::resources::Unit::Pages).ok();
        limits.ubc[idx("swappages")] =
            vzconfig::resources::parse("0:1G", vzconfig::resources::Unit::Pages).ok();
        limits.vm_overcommit = Some(1500);
        let stopped = rows(None, &limits, &[0; UBC_COUNT]);
        assert_eq!(stopped[idx("numproc")].barrier, 40);
        assert_eq!(stopped[idx("numproc")].held, 0);
        assert_eq!(stopped[idx("kmemsize")].limit, proto::Ubc::UNLIMITED);
        assert_eq!(stopped[idx("privvmpages")].limit, 786_432);
        let mut c = Counters::default();
        c.held[idx("numproc")] = 3;
        c.held[idx("physpages")] = 10;
        c.peak[idx("physpages")] = Some(20);
        let mut seen = [0; UBC_COUNT];
        seen[idx("numproc")] = 9;
        let r = rows(Some(&c), &limits, &seen);
        assert_eq!(r[idx("numproc")].maxheld, 9);
        assert_eq!(r[idx("physpages")].maxheld, 20);
        assert_eq!(r[idx("physpages")].limit, 262_144);
    }

    #[test]
    fn load_average_follows_the_runnable_count() {
        let mut l = LoadAvg::default();
        for _ in 0..12 {
            l.update(2, SAMPLE_EVERY);
        }
        let [one, five, fifteen] = l.hundredths();
        // After a minute at 2 runnable: the 1-minute average near 2 × (1 − 1/e).
        assert!((120..=135).contains(&one), "{one}");
        assert!(five < one && fifteen < five, "{one} {five} {fifteen}");
        for _ in 0..200 {
            l.update(0, SAMPLE_EVERY);
        }
        assert_eq!(l.hundredths()[0], 0);
    }

    #[test]
    fn load_average_decays_by_the_time_between_samples() {
        // The kernel's own constants for 5 s.
        for (i, want) in [1884, 2014, 2037].into_iter().enumerate() {
            let mut l = LoadAvg::default();
            l.avg[i] = LoadAvg::FIXED_1;
            l.update(0, SAMPLE_EVERY);
            assert_eq!(l.avg[i], want, "average {i}");
        }
        // One 30 s sample decays as much as six of 5 s, within rounding.
        let (mut a, mut b) = (LoadAvg::default(), LoadAvg::default());
        a.update(4, Duration::from_secs(60));
        b.update(4, Duration::from_secs(60));
        a.update(0, Duration::from_secs(30));
        for _ in 0..6 {
            b.update(0, SAMPLE_EVERY);
        }
        let (ha, hb) = (a.hundredths(), b.hundredths());
        for i in 0..3 {
            assert!(ha[i].abs_diff(hb[i]) <= 2, "{ha:?} {hb:?}");
        }
    }

    #[test]
    fn the_sampler_waits_longer_when_a_round_is_slow() {
        assert_eq!(next_sample(Duration::from_millis(10)), SAMPLE_EVERY);
        assert_eq!(next_sample(Duration::from_secs(1)), Duration::from_secs(19));
    }
}
