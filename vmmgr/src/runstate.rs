//! vmmgr's runtime records in `/run/vz/ve`: one file per running VE, so a
//! restarted vmmgr adopts the VEs it left running. One writer and one reader
//! of the format live here.
//!
//! Format: `<init pid> <init start time>\n`, the start time being field 22 of
//! `/proc/<pid>/stat` (clock ticks since boot), which tells the init apart
//! from a later process that reused its pid.

use std::path::Path;

/// What is recorded of a running VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VeRecord {
    pub pid: i32,
    pub start_time: u64,
}

impl VeRecord {
    /// The record's text.
    pub fn render(&self) -> String {
        format!("{} {}\n", self.pid, self.start_time)
    }

    /// Parses a record; `None` if it is not one.
    pub fn parse(text: &str) -> Option<VeRecord> {
        let mut f = text.split_whitespace();
        let pid = f.next()?.parse::<i32>().ok().filter(|p| *p > 0)?;
        let start_time = f.next()?.parse::<u64>().ok()?;
        if f.next().is_some() {
            return None;
        }
        Some(VeRecord { pid, start_time })
    }

    /// Writes the record atomically (a power cut leaves the old or the new one).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::fsutil::write_atomic(path, &self.render())
    }
}

/// Start time of a process (clock ticks since boot), to tell a pid apart
/// from a reused one.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and ')': split after the last.
    let rest = stat.rsplit_once(") ")?.1;
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        let r = VeRecord {
            pid: 4242,
            start_time: 123456,
        };
        assert_eq!(VeRecord::parse(&r.render()), Some(r));
        for bad in ["", "12", "x 1", "0 5", "-3 5", "1 2 3", "1 -2"] {
            assert_eq!(VeRecord::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "77 (a) b) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 9876 1000 10";
        assert_eq!(parse_start_time(stat), Some(9876));
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
