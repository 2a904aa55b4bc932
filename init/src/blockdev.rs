//! Finding the appliance's partitions by their GPT partition label.
//!
//! The labels (`VZBOOT`, `VZROOT`, `VZDATA`) are the contract between the image
//! and `init`: whatever disk the image was flashed to (virtio, SATA, NVMe, USB),
//! the kernel reports each partition's GPT name as `PARTNAME=` in its uevent.

use std::path::{Path, PathBuf};

/// The partition labels of the image.
pub const BOOT_LABEL: &str = "VZBOOT";
pub const ROOT_LABEL: &str = "VZROOT";
pub const DATA_LABEL: &str = "VZDATA";

/// Looks through `<sysfs>/class/block/*/uevent` for a partition named `label`
/// and returns its device node under `/dev`.
pub fn find_by_partlabel(sysfs: &Path, label: &str) -> Option<PathBuf> {
    let dir = std::fs::read_dir(sysfs.join("class/block")).ok()?;
    let mut names: Vec<_> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    // Deterministic choice if two disks carry the same label: first by name.
    names.sort();
    for entry in names {
        let Ok(uevent) = std::fs::read_to_string(entry.join("uevent")) else {
            continue;
        };
        if let Some(dev) = match_uevent(&uevent, label) {
            return Some(Path::new("/dev").join(dev));
        }
    }
    None
}

/// Returns `DEVNAME` if the uevent text describes a partition named `label`.
fn match_uevent(uevent: &str, label: &str) -> Option<String> {
    let mut devname = None;
    let mut partname = None;
    for line in uevent.lines() {
        if let Some(v) = line.strip_prefix("DEVNAME=") {
            devname = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("PARTNAME=") {
            partname = Some(v);
        }
    }
    (partname == Some(label)).then_some(devname).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, uevent) in entries {
            let d = dir.path().join("class/block").join(name);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("uevent"), uevent).expect("write");
        }
        dir
    }

    #[test]
    fn finds_partition_by_gpt_name() {
        let sys = fake_sysfs(&[
            ("vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"),
            (
                "vda1",
                "MAJOR=254\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=VZBOOT\n",
            ),
            (
                "vda2",
                "MAJOR=254\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=VZROOT\n",
            ),
        ]);
        assert_eq!(
            find_by_partlabel(sys.path(), ROOT_LABEL),
            Some(PathBuf::from("/dev/vda2"))
        );
        assert_eq!(
            find_by_partlabel(sys.path(), BOOT_LABEL),
            Some(PathBuf::from("/dev/vda1"))
        );
        assert_eq!(find_by_partlabel(sys.path(), DATA_LABEL), None);
    }

    #[test]
    fn label_must_match_exactly() {
        assert_eq!(
            match_uevent("DEVNAME=sda3\nPARTNAME=VZROOT2\n", "VZROOT"),
            None
        );
        assert_eq!(match_uevent("PARTNAME=VZROOT\n", "VZROOT"), None);
    }

    #[test]
    fn missing_sysfs_is_not_found() {
        assert_eq!(
            find_by_partlabel(Path::new("/nonexistent"), ROOT_LABEL),
            None
        );
    }
}
