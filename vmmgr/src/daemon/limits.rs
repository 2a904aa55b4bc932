//! A VE's limits, written into its cgroup (`/sys/fs/cgroup/vz/<VEID>`, owned
//! by the appliance, above the VE's delegated `ve/` and its exec leaves, so
//! VE root can read them but not change them):
//!
//! | config | cgroup file | value |
//! |---|---|---|
//! | `CPUUNITS` | `cpu.weight` | cpuunits / 10, clamped to 1..10000 (libvzctl's mapping) |
//! | `CPULIMIT`, `CPUS` | `cpu.max` | quota = min(CPULIMIT % of one CPU, CPUS whole CPUs) per 100 ms period |
//! | `CPUMASK` | `cpuset.cpus` | the list; without it, `CPUS` = N pins the VE to N of the appliance's CPUs (starting at VEID mod CPUs), so that `nproc` in the VE says N |
//! | `NODEMASK` | `cpuset.mems` | the list |
//! | `NUMPROC` | `pids.max` | the limit (threads count, as in OpenVZ) |
//! | `PHYSPAGES` | `memory.max`, `memory.high` | the limit; a barrier above 0 and below the limit throttles there |
//! | `SWAPPAGES` | `memory.swap.max` | the limit (skipped when the kernel has no swap accounting) |
//! | `OOMGUARPAGES` | `memory.min` | the barrier: memory never reclaimed from the VE |
//! | `VMGUARPAGES` | `memory.low` | the barrier: memory reclaimed from the VE only when nothing else is left |
//! | `IOPRIO` | `io.bfq.weight` or `io.weight` | 100 × 2^(ioprio − 4): 4 (the default) is 100, each step doubles |
//! | `IOLIMIT`, `IOPSLIMIT` | `io.max` | `rbps wbps` and `riops wiops` on the disk holding VZDATA |
//!
//! Every file is written each time (a key removed from the config goes back to
//! no limit); a write that fails undoes the ones before it, so a rejected
//! change leaves the kernel as it was.

use std::path::Path;
use vzconfig::resources::{BarrierLimit, Limits, PAGE};

/// `cpu.max`'s period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// What the limits need to know of the appliance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// Online CPUs (`/sys/devices/system/cpu/online`).
    pub online_cpus: Vec<u32>,
    /// Online memory nodes (`/sys/devices/system/node/online`).
    pub online_mems: Vec<u32>,
    /// The whole disk holding VZDATA (`io.max` takes disks, not partitions).
    pub io_disk: Option<(u32, u32)>,
}

impl Host {
    /// Reads the online CPUs and the disk under `vz_dir`.
    pub fn probe(vz_dir: &Path) -> Host {
        let online_cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|t| vzconfig::resources::parse_cpulist(t.trim()).ok().flatten())
            .unwrap_or_default();
        let online_mems = std::fs::read_to_string("/sys/devices/system/node/online")
            .ok()
            .and_then(|t| vzconfig::resources::parse_cpulist(t.trim()).ok().flatten())
            .unwrap_or_default();
        Host {
            online_cpus,
            online_mems,
            io_disk: disk_of(vz_dir),
        }
    }
}

/// Turns on the kernel's I/O cost model for VZDATA's disk (`io.cost.qos`
/// in the cgroup root), without which `io.weight` (IOPRIO) has no effect;
/// BFQ's `io.bfq.weight` works without it where BFQ is the scheduler.
pub fn enable_io_cost(cgroup_root: &Path, disk: Option<(u32, u32)>) {
    let Some((maj, min)) = disk else { return };
    let qos = cgroup_root.join("io.cost.qos");
    if !qos.exists() {
        log::info!("IOPRIO: no io.cost.qos in this kernel; io.weight has no effect");
        return;
    }
    if let Err(e) = std::fs::write(&qos, format!("{maj}:{min} enable=1")) {
        log::warn!("IOPRIO: enabling {}: {e}", qos.display());
    }
}

/// The whole disk (major, minor) that holds the filesystem of `p`.
fn disk_of(p: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(p).ok()?.dev();
    let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    if !sys.join("partition").exists() {
        return Some((maj, min));
    }
    // A partition: its parent directory is the disk.
    let parent = std::fs::canonicalize(&sys).ok()?.parent()?.join("dev");
    let text = std::fs::read_to_string(parent).ok()?;
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The CPUs a VE runs on: CPUMASK, or CPUS of them rotated by VEID.
pub fn cpuset(veid: u32, l: &Limits, host: &Host) -> Option<Vec<u32>> {
    if let Some(mask) = &l.cpumask {
        return Some(mask.clone());
    }
    let n = l.cpus.filter(|c| *c > 0)? as usize;
    let online = &host.online_cpus;
    if online.is_empty() || n >= online.len() {
        return None;
    }
    let start = veid as usize % online.len();
    let mut cpus: Vec<u32> = (0..n).map(|i| online[(start + i) % online.len()]).collect();
    cpus.sort_unstable();
    Some(cpus)
}

/// The files and values that express `l` for VE `veid`.
pub fn cgroup_values(veid: u32, l: &Limits, host: &Host) -> Vec<(&'static str, String)> {
    let weight = (l.cpuunits.unwrap_or(1000) / 10).clamp(1, 10_000);
    let by_limit = l
        .cpulimit
        .filter(|p| *p > 0)
        .map(|p| u64::from(p) * CPU_PERIOD_US / 100);
    let by_cpus = l
        .cpus
        .filter(|c| *c > 0)
        .map(|c| u64::from(c) * CPU_PERIOD_US);
    let quota = match (by_limit, by_cpus) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let cpu_max = match quota {
        Some(q) => format!("{} {CPU_PERIOD_US}", q.max(1000)),
        None => format!("max {CPU_PERIOD_US}"),
    };
    let pages = |v: Option<u64>| {
        v.and_then(|v| v.checked_mul(PAGE))
            .map_or("max".to_owned(), |v| v.to_string())
    };
    let limit = |b: Option<BarrierLimit>| b.and_then(|b| b.limit.get());
    let barrier = |b: Option<BarrierLimit>| b.and_then(|b| b.barrier.get());
    let phys = l.ubc("physpages");
    // A barrier between 0 and the limit is where the kernel starts throttling.
    let high = match (barrier(phys), limit(phys)) {
        (Some(b), Some(lim)) if b > 0 && b < lim => Some(b),
        (Some(b), None) if b > 0 => Some(b),
        _ => None,
    };
    let guarantee = |name: &str| match l.ubc(name).map(|b| b.barrier) {
        None | Some(vzconfig::resources::Limit::Value(0)) => "0".to_owned(),
        Some(b) => pages(b.get()),
    };
    // No mask: all of the appliance's (an empty cpuset means the parent's,
    // but the kernel refuses to empty it while the VE has processes).
    let list = |v: Option<Vec<u32>>, all: &[u32]| match v {
        Some(c) => vzconfig::resources::render_cpulist(&c),
        None if !all.is_empty() => vzconfig::resources::render_cpulist(all),
        None => "\n".to_owned(),
    };
    let mut out = vec![
        ("cpu.weight", weight.to_string()),
        ("cpu.max", cpu_max),
        (
            "cpuset.cpus",
            list(cpuset(veid, l, host), &host.online_cpus),
        ),
        ("cpuset.mems", list(l.nodemask.clone(), &host.online_mems)),
        ("pids.max", pages_or_max(limit(l.ubc("numproc")))),
        ("memory.max", pages(limit(phys))),
        ("memory.high", pages(high)),
        ("memory.swap.max", pages(limit(l.ubc("swappages")))),
        ("memory.min", guarantee("oomguarpages")),
        ("memory.low", guarantee("vmguarpages")),
    ];
    let prio = i32::from(l.ioprio.unwrap_or(4));
    let io_weight = (100f64 * 2f64.powi(prio - 4)).round() as u32;
    out.push(("io.bfq.weight", io_weight.to_string()));
    out.push(("io.weight", format!("default {io_weight}")));
    if let Some((maj, min)) = host.io_disk {
        let v = |n: Option<u64>| match n.filter(|n| *n > 0) {
            Some(n) => n.to_string(),
            None => "max".to_owned(),
        };
        let bps = v(l.iolimit);
        let iops = v(l.iopslimit);
        out.push((
            "io.max",
            format!("{maj}:{min} rbps={bps} wbps={bps} riops={iops} wiops={iops}"),
        ));
    }
    out
}

fn pages_or_max(v: Option<u64>) -> String {
    v.map_or("max".to_owned(), |v| v.to_string())
}

/// Whether `values` (of [`cgroup_values`]) protect any memory (a
/// `memory.min` or `memory.low` above 0).
pub fn guarantees(values: &[(&'static str, String)]) -> bool {
    values.iter().any(|(k, v)| {
        matches!(*k, "memory.min" | "memory.low") && v.trim().parse::<u64>().map_or(true, |n| n > 0)
    })
}

/// Sets the VE subtree's `memory.min` and `memory.low` (the directory
/// `vz_cg`) to the sums of its VEs': a child is protected only as far as its
/// parent is, and a parent protected beyond its children's sum would, with
/// `memory_recursiveprot`, share the rest among VEs that asked for nothing.
pub fn update_guarantees(vz_cg: &Path) {
    for file in ["memory.min", "memory.low"] {
        let mut sum: u64 = 0;
        if let Ok(d) = std::fs::read_dir(vz_cg) {
            for e in d
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            {
                let v = std::fs::read_to_string(e.path().join(file)).unwrap_or_default();
                sum = sum.saturating_add(v.trim().parse::<u64>().unwrap_or(0));
            }
        }
        if let Err(e) = std::fs::write(vz_cg.join(file), sum.to_string()) {
            log::warn!("{}/{file}: {e}", vz_cg.display());
        }
    }
}

/// The appliance services' CPU weight, from vz.conf's `VE0CPUUNITS`
/// (OpenVZ's CPU units of the host itself; default 1000, weight 100).
pub fn appliance_weight(appliance_cg: &Path, ve0cpuunits: Option<&str>) {
    let units = ve0cpuunits
        .and_then(|v| vzconfig::resources::parse_cpuunits(v).ok())
        .unwrap_or(1000);
    let weight = (units / 10).clamp(1, 10_000);
    if let Err(e) = std::fs::write(appliance_cg.join("cpu.weight"), weight.to_string()) {
        log::warn!("{}/cpu.weight: {e}", appliance_cg.display());
    }
}

/// Files the kernel may lack (a limit it cannot enforce is skipped, and said).
const OPTIONAL: &[&str] = &[
    "memory.swap.max",
    "io.bfq.weight",
    "io.weight",
    "io.max",
    "cpuset.cpus",
    "cpuset.mems",
];

/// Writes `values` into the cgroup `cg`; on a failure, puts back what was
/// written before it and says which file refused which value.
pub fn apply(cg: &Path, values: &[(&'static str, String)]) -> Result<Vec<String>, String> {
    let mut done: Vec<(&str, String)> = Vec::new();
    let mut skipped = Vec::new();
    for (file, value) in values {
        let path = cg.join(file);
        let old = match std::fs::read_to_string(&path) {
            // What puts the file back: io.max reads back empty for "no
            // limit", or one line per disk; cpuset files empty for "the
            // parent's"; io.weight as "default N".
            Ok(t) if *file == "io.max" => t
                .lines()
                .find(|l| value.split(' ').next().is_some_and(|d| l.starts_with(d)))
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let dev = value.split(' ').next().unwrap_or_default();
                    format!("{dev} rbps=max wbps=max riops=max wiops=max")
                }),
            Ok(t) if t.trim().is_empty() => "\n".to_owned(),
            Ok(t) if *file == "io.weight" => t.lines().next().unwrap_or("default 100").to_owned(),
            Ok(t) => t.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && OPTIONAL.contains(file) => {
                skipped.push(format!("{file}: not in this kernel"));
                continue;
            }
            Err(e) => return Err(undo(cg, &done, format!("reading {}: {e}", path.display()))),
        };
        if let Err(e) = std::fs::write(&path, value) {
            return Err(undo(
                cg,
                &done,
                format!("writing {value:?} to {}: {e}", path.display()),
            ));
        }
        done.push((file, old));
    }
    Ok(skipped)
}

fn undo(cg: &Path, done: &[(&str, String)], why: String) -> String {
    let mut msg = why;
    for (file, old) in done.iter().rev() {
        // cpu.max reads back as "max 100000", which it also takes.
        if let Err(e) = std::fs::write(cg.join(file), old) {
            msg.push_str(&format!("; and putting back {old:?} in {file}: {e}"));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use vzconfig::resources::parse;

    fn get<'a>(v: &'a [(&'static str, String)], f: &str) -> &'a str {
        v.iter()
            .find(|(k, _)| *k == f)
            .map(|(_, v)| v.as_str())
            .expect(f)
    }

    fn ubc(
        pairs: &[(&str, &str)],
    ) -> [Option<vzconfig::resources::BarrierLimit>; proto::UBC_COUNT] {
        let mut out = [None; proto::UBC_COUNT];
        for (name, v) in pairs {
            let i = proto::ubc_index(name).expect(name);
            out[i] = parse(v, vzconfig::resources::ubc_unit(name)).ok();
        }
        out
    }

    #[test]
    fn config_values_map_to_cgroup_files() {
        let host = Host {
            online_cpus: vec![0, 1, 2, 3],
            online_mems: vec![0],
            io_disk: Some((254, 0)),
        };
        let none = cgroup_values(101, &Limits::default(), &host);
        assert_eq!(get(&none, "cpu.weight"), "100");
        assert_eq!(get(&none, "cpu.max"), "max 100000");
        assert_eq!(get(&none, "cpuset.cpus"), "0-3");
        assert_eq!(get(&none, "cpuset.mems"), "0");
        assert_eq!(get(&none, "pids.max"), "max");
        assert_eq!(get(&none, "memory.max"), "max");
        assert_eq!(get(&none, "memory.high"), "max");
        assert_eq!(get(&none, "memory.min"), "0");
        assert!(
            !guarantees(&none),
            "no guarantee asked: no walk over the VEs"
        );
        assert_eq!(get(&none, "io.bfq.weight"), "100");
        assert_eq!(
            get(&none, "io.max"),
            "254:0 rbps=max wbps=max riops=max wiops=max"
        );
        let l = Limits {
            cpuunits: Some(250),
            cpulimit: Some(25),
            cpus: Some(2),
            ubc: ubc(&[
                ("numproc", "64:64"),
                ("physpages", "0:256M"),
                ("swappages", "0:unlimited"),
                ("oomguarpages", "64M:unlimited"),
                ("vmguarpages", "128M:unlimited"),
            ]),
            ioprio: Some(7),
            iolimit: Some(10 << 20),
            iopslimit: Some(300),
            ..Limits::default()
        };
        let v = cgroup_values(101, &l, &host);
        assert_eq!(get(&v, "cpu.weight"), "25");
        assert_eq!(get(&v, "cpu.max"), "25000 100000");
        // CPUS 2 of 4, starting at 101 mod 4 = 1.
        assert_eq!(get(&v, "cpuset.cpus"), "1-2");
        assert_eq!(get(&v, "pids.max"), "64");
        assert_eq!(get(&v, "memory.max"), (256u64 << 20).to_string());
        assert_eq!(get(&v, "memory.high"), "max");
        assert_eq!(get(&v, "memory.swap.max"), "max");
        assert_eq!(get(&v, "memory.min"), (64u64 << 20).to_string());
        assert_eq!(get(&v, "memory.low"), (128u64 << 20).to_string());
        assert!(guarantees(&v));
        assert_eq!(get(&v, "io.bfq.weight"), "800");
        assert_eq!(get(&v, "io.weight"), "default 800");
        assert_eq!(
            get(&v, "io.max"),
            format!(
                "254:0 rbps={} wbps={} riops=300 wiops=300",
                10 << 20,
                10 << 20
            )
        );
        // CPUMASK wins over the rotation; CPUS still caps.
        let masked = Limits {
            cpumask: Some(vec![0, 3]),
            cpus: Some(1),
            ..Limits::default()
        };
        let v = cgroup_values(101, &masked, &host);
        assert_eq!(get(&v, "cpuset.cpus"), "0,3");
        assert_eq!(get(&v, "cpu.max"), "100000 100000");
        // A barrier below the limit throttles there.
        let high = Limits {
            ubc: ubc(&[("physpages", "128M:256M")]),
            ..Limits::default()
        };
        let v = cgroup_values(101, &high, &host);
        assert_eq!(get(&v, "memory.high"), (128u64 << 20).to_string());
        // CPUS alone caps at whole CPUs; the smaller of the two wins.
        let cpus = cgroup_values(
            7,
            &Limits {
                cpus: Some(1),
                cpulimit: Some(150),
                ..Limits::default()
            },
            &host,
        );
        assert_eq!(get(&cpus, "cpu.max"), "100000 100000");
        assert_eq!(get(&cpus, "cpuset.cpus"), "3");
        let huge = cgroup_values(
            1,
            &Limits {
                cpuunits: Some(500_000),
                ..Limits::default()
            },
            &host,
        );
        assert_eq!(get(&huge, "cpu.weight"), "10000");
        let tiny = cgroup_values(
            1,
            &Limits {
                cpuunits: Some(8),
                ..Limits::default()
            },
            &host,
        );
        assert_eq!(get(&tiny, "cpu.weight"), "1");
        // All CPUs: no pinning.
        let all = cgroup_values(
            1,
            &Limits {
                cpus: Some(4),
                ..Limits::default()
            },
            &host,
        );
        assert_eq!(get(&all, "cpuset.cpus"), "0-3");
    }

    #[test]
    fn the_subtree_guarantees_the_sum_of_its_ves() {
        let d = tempfile::tempdir().expect("tempdir");
        for (ve, min, low) in [("101", "1000", "0"), ("102", "500", "7")] {
            std::fs::create_dir(d.path().join(ve)).expect("dir");
            std::fs::write(d.path().join(ve).join("memory.min"), min).expect("min");
            std::fs::write(d.path().join(ve).join("memory.low"), low).expect("low");
        }
        update_guarantees(d.path());
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).expect("read");
        assert_eq!(read("memory.min"), "1500");
        assert_eq!(read("memory.low"), "7");
        appliance_weight(d.path(), Some("4000"));
        assert_eq!(read("cpu.weight"), "400");
        appliance_weight(d.path(), Some("bogus"));
        assert_eq!(read("cpu.weight"), "100");
    }

    #[test]
    fn a_refused_write_puts_the_others_back() {
        let d = tempfile::tempdir().expect("tempdir");
        for (f, v) in [("cpu.weight", "100"), ("cpu.max", "max 100000")] {
            std::fs::write(d.path().join(f), format!("{v}\n")).expect("file");
        }
        // pids.max is a directory here: writing it fails.
        std::fs::create_dir(d.path().join("pids.max")).expect("dir");
        let values = vec![
            ("cpu.weight", "25".to_owned()),
            ("cpu.max", "25000 100000".to_owned()),
            ("pids.max", "64".to_owned()),
        ];
        let e = apply(d.path(), &values).expect_err("pids.max refuses");
        assert!(e.contains("pids.max"), "{e}");
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).expect("read");
        assert_eq!(read("cpu.weight"), "100");
        assert_eq!(read("cpu.max"), "max 100000");
    }

    #[test]
    fn a_missing_swap_file_is_skipped_and_said() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("memory.max"), "max\n").expect("file");
        let values = vec![
            ("memory.max", "1048576".to_owned()),
            ("memory.swap.max", "max".to_owned()),
        ];
        let skipped = apply(d.path(), &values).expect("applied");
        assert_eq!(
            skipped,
            vec!["memory.swap.max: not in this kernel".to_owned()]
        );
        assert!(apply(d.path(), &[("pids.max", "1".to_owned())]).is_err());
    }
}
