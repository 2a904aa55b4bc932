//! Mount helpers named by what they do, and the root switch.

use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting {fstype} {source_dev} on {target} ({data:?})")]
    Mount {
        fstype: String,
        source_dev: String,
        target: PathBuf,
        data: String,
        #[source]
        source: std::io::Error,
    },
    #[error("creating mount point {path}")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moving mount {from} to {to}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("switching root to {path}: {step}")]
    SwitchRoot {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Mounts `fstype` from `source` on `target` (created if missing).
#[doc(alias = "mount")]
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), MountError> {
    if !target.exists() {
        std::fs::create_dir_all(target).map_err(|e| MountError::MountPoint {
            path: target.to_owned(),
            source: e,
        })?;
    }
    let data_c = std::ffi::CString::new(data).unwrap_or_default();
    rustix::mount::mount(source, target, fstype, flags, Some(data_c.as_c_str())).map_err(|e| {
        MountError::Mount {
            fstype: fstype.to_owned(),
            source_dev: source.to_owned(),
            target: target.to_owned(),
            data: data.to_owned(),
            source: e.into(),
        }
    })
}

/// Is something mounted exactly at `path`?
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    mount_points(&text).iter().any(|m| Path::new(m) == path)
}

pub use vzcommon::mountinfo::mount_points;

/// Moves the mount at `from` to `to` (`MS_MOVE`).
#[doc(alias = "MS_MOVE")]
pub fn move_mount(from: &Path, to: &Path) -> Result<(), MountError> {
    rustix::mount::mount_move(from, to).map_err(|e| MountError::Move {
        from: from.to_owned(),
        to: to.to_owned(),
        source: e.into(),
    })
}

/// Unmounts `path`; if it is busy, remounts it read-only instead so its
/// filesystem is consistent on disk.
pub fn unmount_or_remount_readonly(path: &Path) -> Result<(), std::io::Error> {
    match rustix::mount::unmount(path, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) => {
            let flags = MountFlags::RDONLY;
            rustix::mount::mount_remount(path, flags, "").map_err(|e2| {
                std::io::Error::other(format!("unmount: {e}; remount read-only: {e2}"))
            })
        }
    }
}

/// Makes every mount private (so moves and unmounts do not propagate).
pub fn make_private(path: &Path) {
    let _ = rustix::mount::mount_change(
        path,
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    );
}

/// Deletes the initramfs contents (files on the same device as `/`), keeping
/// `keep` and anything mounted elsewhere. Frees the memory the initramfs holds.
pub fn free_initramfs(keep: &Path) {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, dev: u64, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path == keep {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != dev {
                continue;
            }
            if meta.is_dir() {
                walk(&path, dev, keep);
                let _ = std::fs::remove_dir(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if let Ok(meta) = std::fs::metadata("/") {
        walk(Path::new("/"), meta.dev(), keep);
    }
}

/// Makes `new_root` the root: move it over `/`, chroot into it (the initramfs
/// cannot be pivoted away from, so this is the classic switch_root).
pub fn switch_root(new_root: &Path) -> Result<(), MountError> {
    let err = |step, e: rustix::io::Errno| MountError::SwitchRoot {
        path: new_root.to_owned(),
        step,
        source: e.into(),
    };
    rustix::process::chdir(new_root).map_err(|e| err("chdir", e))?;
    rustix::mount::mount_move(".", "/").map_err(|e| err("move to /", e))?;
    rustix::process::chroot(".").map_err(|e| err("chroot", e))?;
    rustix::process::chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}
