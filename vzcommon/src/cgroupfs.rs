//! The appliance's cgroup2 hierarchy options.
//!
//! The options of the cgroup2 hierarchy belong to the hierarchy, not to a
//! mount: any cgroup2 mount made in the initial cgroup namespace applies
//! its own, so a plain `mount -t cgroup2` there (as CRIU makes for itself
//! with `--manage-cgroups`) turns off `nsdelegate` and the rest for the
//! whole appliance. [`restore`] puts them back.

use std::path::Path;

/// The options init mounts `/sys/fs/cgroup` with.
///
/// - `nsdelegate`: a cgroup namespace is a delegation boundary.
/// - `memory_recursiveprot`: a VE's memory guarantee covers its subtree.
/// - `favordynmods` (Linux 6.0): a task's move into a cgroup (each VE start)
///   does not wait for an RCU grace period, at a small cost to every fork
///   and exit.
pub const OPTIONS: [&str; 3] = ["nsdelegate", "memory_recursiveprot", "favordynmods"];

/// The super options of the mount at `target` in mountinfo text.
pub fn super_options<'a>(mountinfo: &'a str, target: &str) -> Option<&'a str> {
    mountinfo.lines().rev().find_map(|l| {
        let (mount, fs) = l.split_once(" - ")?;
        (mount.split(' ').nth(4)? == target).then(|| fs.split(' ').nth(2))?
    })
}

/// The [`OPTIONS`] missing from `super_options` (comma-separated).
pub fn missing(super_options: &str) -> Vec<&'static str> {
    OPTIONS
        .into_iter()
        .filter(|o| !super_options.split(',').any(|s| s == *o))
        .collect()
}

/// Sets [`OPTIONS`] on the cgroup2 hierarchy mounted at `target` again if
/// any is off; returns the options it found then (None: all were on).
pub fn restore(target: &Path) -> std::io::Result<Option<String>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let now = super_options(&info, &target.to_string_lossy())
        .ok_or_else(|| std::io::Error::other(format!("{} is not mounted", target.display())))?
        .to_owned();
    if missing(&now).is_empty() {
        return Ok(None);
    }
    use rustix::mount::{fsconfig_reconfigure, fsconfig_set_flag, fspick, FsPickFlags};
    let fs = fspick(rustix::fs::CWD, target, FsPickFlags::FSPICK_CLOEXEC)?;
    for o in OPTIONS {
        fsconfig_set_flag(&fs, o)?;
    }
    fsconfig_reconfigure(&fs)?;
    Ok(Some(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_super_options_and_what_is_missing() {
        let info = "22 1 254:2 / / ro,relatime shared:1 - erofs /dev/vda2 ro\n\
                    30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - \
                    cgroup2 cgroup2 rw,nsdelegate,favordynmods,memory_recursiveprot\n\
                    41 40 0:26 / /tmp/.criu.cgyard rw,relatime - cgroup2 none rw\n";
        let opts = super_options(info, "/sys/fs/cgroup").expect("found");
        assert_eq!(opts, "rw,nsdelegate,favordynmods,memory_recursiveprot");
        assert!(missing(opts).is_empty());
        assert_eq!(
            missing("rw,nsdelegate"),
            ["memory_recursiveprot", "favordynmods"]
        );
        assert_eq!(super_options(info, "/nowhere"), None);
    }
}
