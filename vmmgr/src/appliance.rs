//! The appliance's state as init left it in `/run/vz`, plus what the kernel
//! reports now. Read by the console's `status` and served by `vmmgr`.

use proto::{ApplianceStatus, Name, Partition, Text};
use std::path::{Path, PathBuf};

/// Where init keeps its runtime state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub run: PathBuf,
    pub proc: PathBuf,
    pub cgroup: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            run: "/run/vz".into(),
            proc: "/proc".into(),
            cgroup: "/sys/fs/cgroup".into(),
        }
    }
}

/// One supervised service as init reports it.
pub use vzcommon::run::ServiceRecord as ServiceState;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `s` cut to fit a bounded protocol string (at a character boundary).
pub fn truncated<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// Parses init's service state file.
pub fn parse_services(text: &str) -> Vec<ServiceState> {
    vzcommon::run::parse_lines(text, ServiceState::parse)
}

/// The services init supervises.
pub fn services(paths: &Paths) -> Vec<ServiceState> {
    parse_services(&read(&paths.run.join("services")))
}

/// The boot timeline: `(ms since kernel start, step)`.
pub fn timeline(paths: &Paths) -> Vec<(u64, String)> {
    vzcommon::run::parse_lines(
        &read(&paths.run.join("timeline")),
        vzcommon::run::TimelineRecord::parse,
    )
    .into_iter()
    .map(|r| (r.ms, r.step))
    .collect()
}

/// Options of the mount at `target` from mountinfo text: the per-mount options
/// followed by the filesystem's own (e.g. `prjquota`), without repeats.
pub fn mount_options(mountinfo: &str, target: &str) -> Option<String> {
    let line = mountinfo
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(target))?;
    let (left, right) = line.split_once(" - ")?;
    let mut opts: Vec<&str> = left.split(' ').nth(5)?.split(',').collect();
    for o in right.split(' ').nth(2).unwrap_or("").split(',') {
        if !o.is_empty() && !opts.contains(&o) {
            opts.push(o);
        }
    }
    Some(opts.join(","))
}

/// Counts processes and zombies in `/proc`.
pub fn process_counts(proc: &Path) -> (u32, u32) {
    let mut total = 0;
    let mut zombies = 0;
    let Ok(dir) = std::fs::read_dir(proc) else {
        return (0, 0);
    };
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = read(&e.path().join("stat"));
        // The state follows the command name, which is in parentheses and may
        // itself contain spaces or parentheses.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        total += 1;
        if rest.starts_with('Z') {
            zombies += 1;
        }
    }
    (total, zombies)
}

/// Field `key` of /proc/meminfo's `text`, in KiB (0 when absent).
pub(crate) fn meminfo_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Gathers the appliance's status.
pub fn status(paths: &Paths) -> ApplianceStatus {
    let uname = rustix::system::uname();
    let uptime_ms = read(&paths.proc.join("uptime"))
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0);
    let mut degraded = heapless::Vec::new();
    for line in read(&paths.run.join("degraded"))
        .lines()
        .filter(|l| !l.is_empty())
    {
        if degraded.push(truncated::<256>(line)).is_err() {
            break;
        }
    }
    let mountinfo = read(&paths.proc.join("self/mountinfo"));
    let mut partitions = heapless::Vec::new();
    let records = vzcommon::run::parse_lines(
        &read(&paths.run.join("partitions")),
        vzcommon::run::PartitionRecord::parse,
    );
    for r in records {
        let options = mount_options(&mountinfo, &r.mount_point).unwrap_or_default();
        let p = Partition {
            label: truncated(&r.label),
            device: truncated(&r.device),
            mount_point: truncated(&r.mount_point),
            state_at_boot: truncated(&r.state),
            options: truncated(&options),
        };
        if partitions.push(p).is_err() {
            break;
        }
    }
    let ve_controllers = read(&paths.cgroup.join("vz/cgroup.subtree_control"));
    let meminfo = read(&paths.proc.join("meminfo"));
    let (processes, zombies) = process_counts(&paths.proc);
    ApplianceStatus {
        kernel: truncated::<64>(&uname.release().to_string_lossy()),
        uptime_ms,
        degraded,
        partitions,
        ve_controllers: truncated::<256>(ve_controllers.trim()),
        mem_total_kib: meminfo_kib(&meminfo, "MemTotal"),
        mem_available_kib: meminfo_kib(&meminfo, "MemAvailable"),
        processes,
        zombies,
        network: crate::net::uplink::describe()
            .iter()
            .take(24)
            .map(|l| truncated::<256>(l))
            .collect(),
    }
}

/// A name for the Pong reply.
pub fn server_name() -> Name {
    truncated("vmmgr")
}

/// Truncating conversion into a protocol text field.
pub fn text(s: &str) -> Text {
    truncated(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:2 / / ro,relatime shared:1 - erofs /dev/vda2 ro,user_xattr,acl,cache_strategy=readaround
30 22 254:3 / /vz rw,nosuid,nodev,noatime shared:9 - ext4 /dev/vda3 rw,prjquota
31 22 254:1 / /boot rw,nosuid,nodev,noatime shared:10 - vfat /dev/vda1 rw,fmask=0133
";

    #[test]
    fn mount_options_merge_mount_and_super_options() {
        assert_eq!(
            mount_options(MOUNTINFO, "/vz").as_deref(),
            Some("rw,nosuid,nodev,noatime,prjquota")
        );
        assert_eq!(
            mount_options(MOUNTINFO, "/").as_deref(),
            Some("ro,relatime,user_xattr,acl,cache_strategy=readaround")
        );
        assert_eq!(mount_options(MOUNTINFO, "/nope"), None);
    }

    #[test]
    fn services_file_parses() {
        let s = parse_services(
            "vmmgr 120 running 2 killed_by_SIGKILL\nconsole - restarting 0 -\nbad\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].pid, Some(120));
        assert_eq!(s[0].restarts, 2);
        assert_eq!(s[0].last_exit.as_deref(), Some("killed by SIGKILL"));
        assert_eq!(s[1].pid, None);
        assert_eq!(s[1].state, "restarting");
    }

    #[test]
    fn counts_zombies_from_proc() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (pid, stat) in [
            ("1", "1 (init) S 0 1"),
            ("20", "20 (we) ird) Z 1 20"),
            ("21", "21 (sleep) R 1 21"),
        ] {
            let d = dir.path().join(pid);
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("stat"), stat).expect("write");
        }
        std::fs::create_dir(dir.path().join("sys")).expect("mkdir");
        assert_eq!(process_counts(dir.path()), (3, 1));
    }

    #[test]
    fn status_reads_init_state_files() {
        let run = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            run.path().join("partitions"),
            "VZROOT /dev/vda2 / read-only\nVZDATA /dev/vda3 /vz clean\n",
        )
        .expect("write");
        std::fs::write(run.path().join("degraded"), "no VZBOOT\n").expect("write");
        let paths = Paths {
            run: run.path().into(),
            ..Paths::default()
        };
        let s = status(&paths);
        assert_eq!(s.partitions.len(), 2);
        assert_eq!(s.partitions[1].state_at_boot.as_str(), "clean");
        assert_eq!(s.degraded.len(), 1);
        assert!(s.mem_total_kib > 0);
        assert!(s.processes > 0);
    }
}
