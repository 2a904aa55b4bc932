//! A VE's limits, written into its cgroup (`/sys/fs/cgroup/vz/<VEID>`, owned
//! by the appliance, above the VE's delegated `ve/` and its exec leaves, so
//! VE root can read them but not change them):
//!
//! | config | cgroup file | value |
//! |---|---|---|
//! | `CPUUNITS` | `cpu.weight` | cpuunits / 10, clamped to 1..10000 (libvzctl's mapping) |
//! | `CPULIMIT`, `CPUS` | `cpu.max` | quota = min(CPULIMIT % of one CPU, CPUS whole CPUs) per 100 ms period |
//! | `NUMPROC` | `pids.max` | the limit (threads count, as in OpenVZ) |
//! | `PHYSPAGES` | `memory.max` | the limit in pages × 4096 |
//! | `SWAPPAGES` | `memory.swap.max` | the limit in pages × 4096 (skipped when the kernel has no swap accounting) |
//!
//! Every file is written each time (a key removed from the config goes back to
//! no limit); a write that fails undoes the ones before it, so a rejected
//! change leaves the kernel as it was.

use std::path::Path;
use vzconfig::resources::{Limits, PAGE};

/// `cpu.max`'s period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The files and values that express `l`.
pub fn cgroup_values(l: &Limits) -> Vec<(&'static str, String)> {
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
    let limit = |b: Option<vzconfig::resources::BarrierLimit>, scale: u64| {
        b.and_then(|b| b.limit.get())
            .and_then(|v| v.checked_mul(scale))
            .map_or("max".to_owned(), |v| v.to_string())
    };
    vec![
        ("cpu.weight", weight.to_string()),
        ("cpu.max", cpu_max),
        ("pids.max", limit(l.numproc, 1)),
        ("memory.max", limit(l.physpages, PAGE)),
        ("memory.swap.max", limit(l.swappages, PAGE)),
    ]
}

/// Files the kernel may lack (a limit it cannot enforce is skipped, and said).
const OPTIONAL: &[&str] = &["memory.swap.max"];

/// Writes `values` into the cgroup `cg`; on a failure, puts back what was
/// written before it and says which file refused which value.
pub fn apply(cg: &Path, values: &[(&'static str, String)]) -> Result<Vec<String>, String> {
    let mut done: Vec<(&str, String)> = Vec::new();
    let mut skipped = Vec::new();
    for (file, value) in values {
        let path = cg.join(file);
        let old = match std::fs::read_to_string(&path) {
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
    use vzconfig::resources::{parse, Unit};

    fn get<'a>(v: &'a [(&'static str, String)], f: &str) -> &'a str {
        v.iter()
            .find(|(k, _)| *k == f)
            .map(|(_, v)| v.as_str())
            .expect(f)
    }

    #[test]
    fn config_values_map_to_cgroup_files() {
        let none = cgroup_values(&Limits::default());
        assert_eq!(get(&none, "cpu.weight"), "100");
        assert_eq!(get(&none, "cpu.max"), "max 100000");
        assert_eq!(get(&none, "pids.max"), "max");
        assert_eq!(get(&none, "memory.max"), "max");
        let l = Limits {
            cpuunits: Some(250),
            cpulimit: Some(25),
            cpus: Some(2),
            numproc: parse("64:64", Unit::Items).ok(),
            physpages: parse("0:256M", Unit::Pages).ok(),
            swappages: parse("0:unlimited", Unit::Pages).ok(),
        };
        let v = cgroup_values(&l);
        assert_eq!(get(&v, "cpu.weight"), "25");
        assert_eq!(get(&v, "cpu.max"), "25000 100000");
        assert_eq!(get(&v, "pids.max"), "64");
        assert_eq!(get(&v, "memory.max"), (256u64 << 20).to_string());
        assert_eq!(get(&v, "memory.swap.max"), "max");
        // CPUS alone caps at whole CPUs; the smaller of the two wins.
        let cpus = cgroup_values(&Limits {
            cpus: Some(1),
            cpulimit: Some(150),
            ..Limits::default()
        });
        assert_eq!(get(&cpus, "cpu.max"), "100000 100000");
        let huge = cgroup_values(&Limits {
            cpuunits: Some(500_000),
            ..Limits::default()
        });
        assert_eq!(get(&huge, "cpu.weight"), "10000");
        let tiny = cgroup_values(&Limits {
            cpuunits: Some(8),
            ..Limits::default()
        });
        assert_eq!(get(&tiny, "cpu.weight"), "1");
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
