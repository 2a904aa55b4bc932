//! The records in `/run/vz`: who writes each, who reads it, one renderer and
//! one parser per format.
//!
//! | file | writer | readers |
//! |---|---|---|
//! | `services` | init | vmmgr, console |
//! | `partitions` | init | vmmgr, console |
//! | `timeline` | init (both boot stages) | init, vmmgr, console |
//! | `degraded` | init | vmmgr, console |
//! | `ve/<VEID>` | vmmgr | vmmgr after a restart |

/// Where init keeps its runtime state.
pub const RUN_DIR: &str = "/run/vz";
/// init's supervised services, one [`ServiceRecord`] per line.
pub const SERVICES_FILE: &str = "/run/vz/services";
/// Partitions found at boot, one [`PartitionRecord`] per line.
pub const PARTITIONS_FILE: &str = "/run/vz/partitions";
/// The boot timeline, one [`TimelineRecord`] per line.
pub const TIMELINE_FILE: &str = "/run/vz/timeline";
/// Problems found during boot, one per line (absent or empty when healthy).
pub const DEGRADED_FILE: &str = "/run/vz/degraded";
/// vmmgr's records of running VEs, a [`VeRecord`] per `<VEID>` file.
pub const VE_DIR: &str = "/run/vz/ve";

/// Parses every line of `text` with `parse`, skipping lines it refuses.
pub fn parse_lines<T>(text: &str, parse: fn(&str) -> Option<T>) -> Vec<T> {
    text.lines().filter_map(parse).collect()
}

/// One supervised service: `name pid state restarts last-exit`, `-` for none,
/// spaces of the last exit as `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub name: String,
    pub pid: Option<u32>,
    pub state: String,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

impl ServiceRecord {
    pub fn render(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.name,
            self.pid.map_or("-".to_owned(), |p| p.to_string()),
            self.state,
            self.restarts,
            self.last_exit.as_deref().unwrap_or("-").replace(' ', "_")
        )
    }

    pub fn parse(line: &str) -> Option<ServiceRecord> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        Some(ServiceRecord {
            name: f[0].to_owned(),
            pid: f[1].parse().ok(),
            state: f[2].to_owned(),
            restarts: f[3].parse().ok()?,
            last_exit: (f[4] != "-").then(|| f[4].replace('_', " ")),
        })
    }
}

/// One partition as found at boot: `LABEL DEVICE MOUNTPOINT STATE-AT-BOOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecord {
    pub label: String,
    pub device: String,
    pub mount_point: String,
    /// `clean` or `unclean` (from the superblock, read before mounting).
    pub state: String,
}

impl PartitionRecord {
    pub fn render(&self) -> String {
        format!(
            "{} {} {} {}",
            self.label, self.device, self.mount_point, self.state
        )
    }

    pub fn parse(line: &str) -> Option<PartitionRecord> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 || f.iter().any(|x| x.is_empty()) {
            return None;
        }
        Some(PartitionRecord {
            label: f[0].to_owned(),
            device: f[1].to_owned(),
            mount_point: f[2].to_owned(),
            state: f[3].to_owned(),
        })
    }
}

/// One boot step: `<ms since kernel start, right-aligned> <step>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRecord {
    pub ms: u64,
    pub step: String,
}

impl TimelineRecord {
    pub fn render(&self) -> String {
        format!("{:>7} {}", self.ms, self.step)
    }

    pub fn parse(line: &str) -> Option<TimelineRecord> {
        let (ms, step) = line.trim_start().split_once(' ')?;
        Some(TimelineRecord {
            ms: ms.parse().ok()?,
            step: step.trim().to_owned(),
        })
    }
}

/// A running VE: `<init pid> <init start time>`, the start time being field
/// 22 of `/proc/<pid>/stat` (clock ticks since boot), which tells the init
/// from a later process that reused its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VeRecord {
    pub pid: i32,
    pub start_time: u64,
    /// Started with CHECKPOINT=yes (no namespaces of its own): `c`.
    pub checkpoint: bool,
}

impl VeRecord {
    pub fn render(&self) -> String {
        let c = if self.checkpoint { " c" } else { "" };
        format!("{} {}{c}\n", self.pid, self.start_time)
    }

    pub fn parse(text: &str) -> Option<VeRecord> {
        let mut f = text.split_whitespace();
        let pid = f.next()?.parse::<i32>().ok().filter(|p| *p > 0)?;
        let start_time = f.next()?.parse::<u64>().ok()?;
        let checkpoint = match f.next() {
            None => false,
            Some("c") => true,
            Some(_) => return None,
        };
        if f.next().is_some() {
            return None;
        }
        Some(VeRecord {
            pid,
            start_time,
            checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_round_trip() {
        let r = ServiceRecord {
            name: "vmmgr".into(),
            pid: Some(77),
            state: "running".into(),
            restarts: 2,
            last_exit: Some("killed by SIGKILL".into()),
        };
        assert_eq!(r.render(), "vmmgr 77 running 2 killed_by_SIGKILL");
        assert_eq!(ServiceRecord::parse(&r.render()), Some(r));
        let fresh = ServiceRecord::parse("vzconsole - restarting 0 -").expect("parses");
        assert_eq!((fresh.pid, fresh.last_exit), (None, None));
        assert_eq!(ServiceRecord::parse("too few fields"), None);
    }

    #[test]
    fn partitions_round_trip() {
        let r = PartitionRecord {
            label: "VZDATA".into(),
            device: "/dev/vda3".into(),
            mount_point: "/vz".into(),
            state: "clean".into(),
        };
        assert_eq!(PartitionRecord::parse(&r.render()), Some(r));
        assert_eq!(PartitionRecord::parse("VZDATA /dev/vda3"), None);
    }

    #[test]
    fn timeline_round_trips_with_alignment() {
        let r = TimelineRecord {
            ms: 812,
            step: "mounted VZROOT on / (was clean)".into(),
        };
        assert_eq!(r.render(), "    812 mounted VZROOT on / (was clean)");
        assert_eq!(TimelineRecord::parse(&r.render()), Some(r));
        let all = parse_lines("  1 a\nnot a number\n 2 b\n", TimelineRecord::parse);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn ve_records_round_trip_and_junk_is_refused() {
        for checkpoint in [false, true] {
            let r = VeRecord {
                pid: 4242,
                start_time: 123_456,
                checkpoint,
            };
            assert_eq!(VeRecord::parse(&r.render()), Some(r));
        }
        assert_eq!(VeRecord::parse("7 8").map(|r| r.checkpoint), Some(false));
        for bad in ["", "12", "x 1", "0 5", "-3 5", "1 2 3", "1 -2", "1 2 c c"] {
            assert_eq!(VeRecord::parse(bad), None, "{bad:?}");
        }
    }
}
