//! The build machine's tools we run, and how to install each.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// `(program, Debian package that ships it)` for building the image.
pub const BUILD_TOOLS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
    ("dpkg-deb", "dpkg"),
    ("mformat", "mtools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("sfdisk", "fdisk"),
    ("mkfs.erofs", "erofs-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    // Our kernel modules (rootfs/kmod), with the kernel's own compiler.
    ("gcc-12", "gcc-12"),
    ("make", "make"),
    ("strip", "binutils"),
    ("cargo", "(the Rust toolchain: https://rustup.rs)"),
];

/// `(program, package)` for building the Debian templates (as root).
pub const TEMPLATE_TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("unshare", "util-linux"),
    ("dpkg-query", "dpkg"),
];

/// `(program, package)` for booting it.
pub const RUN_TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
];

/// Finds `prog` on PATH or in the sbin directories (mkfs lives there and a
/// non-root PATH often lacks them).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| PathBuf::from(d).join(prog))
        .find(|p| p.is_file());
    found
}

/// Fails naming every missing tool and the one command that installs them.
pub fn require(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<_> = tools.iter().filter(|(t, _)| which(t).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<_> = missing.iter().map(|(t, _)| *t).collect();
    let mut pkgs: Vec<_> = missing
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| !p.starts_with('('))
        .collect();
    pkgs.dedup();
    let mut msg = format!("missing host tools: {}", names.join(", "));
    if !pkgs.is_empty() {
        msg.push_str(&format!(
            "; install them with: sudo apt-get install -y {}",
            pkgs.join(" ")
        ));
    }
    if let Some((_, p)) = missing.iter().find(|(_, p)| p.starts_with('(')) {
        msg.push_str(&format!("; also install {p}"));
    }
    bail!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_message_names_package() {
        let err = require(&[("definitely-not-a-tool-xyz", "xyz-utils")]).expect_err("missing");
        let m = err.to_string();
        assert!(m.contains("definitely-not-a-tool-xyz"));
        assert!(m.contains("apt-get install -y xyz-utils"), "{m}");
    }

    #[test]
    fn present_tool_passes() {
        require(&[("sh", "dash")]).expect("sh exists");
    }
}
