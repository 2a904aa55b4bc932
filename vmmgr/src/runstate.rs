//! vmmgr's runtime records in `/run/vz/ve`: one file per running VE, so a
//! restarted vmmgr adopts the VEs it left running (the format is
//! `vzcommon::run::VeRecord`), and process start times.

use std::os::fd::OwnedFd;
use std::path::Path;

pub use vzcommon::run::VeRecord;

/// Writes a VE's record atomically (a power cut leaves the old or the new one).
pub fn write(record: &VeRecord, path: &Path) -> std::io::Result<()> {
    crate::fsutil::write_atomic(path, &record.render())
}

/// A pidfd of the process `pid` if it is still the one that started at
/// `started` (a VE init vmmgr recorded or reported), so a reused pid is
/// never taken for it.
pub fn open_init(pid: i32, started: u64) -> std::io::Result<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::other(format!("pid {pid} is not a process")))?;
    let fd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())?;
    // The pidfd pins the process: if its start time still matches now, the fd
    // refers to that init.
    if start_time(pid) != Some(started) {
        return Err(std::io::Error::other(format!(
            "the VE init (pid {pid}) is gone or was replaced"
        )));
    }
    Ok(fd)
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
    fn start_time_survives_odd_command_names() {
        let stat = "77 (a) b) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 9876 1000 10";
        assert_eq!(parse_start_time(stat), Some(9876));
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
