//! The build-machine side of the appliance: building the disk image from
//! pinned Debian packages and our binaries, and booting it under QEMU.

pub mod build;
pub mod cpio;
pub mod debs;
pub mod disk;
pub mod elf;
pub mod hosttools;
pub mod kbuild;
pub mod kmod;
pub mod qemu;
pub mod template;

/// The repository root, known at compile time.
pub fn workspace_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.to_owned())
        .unwrap_or_default()
}
