//! A broken disk never stops the console: init logs what failed and what to do,
//! and the console comes up in a degraded mode that says so.

use qemu_tests::{Appliance, Disk};
use std::sync::Arc;

/// Zeroes the first 4 KiB of partition `label` in the test's overlay (the image
/// itself is untouched), destroying its superblock.
fn wreck(disk: &Disk, label: &str) -> anyhow::Result<()> {
    let (offset, _) = image::disk::find_partition(&qemu_tests::image_path(), label)?;
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c"])
        .arg(format!("write -z {offset} 4096"))
        .arg(qemu_tests::overlay_of(disk))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "qemu-io: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn broken_data_partition_degrades_but_console_works() -> anyhow::Result<()> {
    let disk = Disk::new()?;
    wreck(&disk, "VZDATA")?;
    let mut a = Appliance::start("degraded-data", Arc::new(disk), 1)?;
    let ready = a.wait_ready()?;
    assert!(
        ready.contains("(DEGRADED: mounting ext4"),
        "ready line must say degraded: {ready}"
    );
    let status = a.console("status")?;
    assert!(status.contains("health      DEGRADED"), "{status}");
    assert!(
        status.contains("mounting ext4 /dev/vda3 on /vz"),
        "{status}"
    );
    assert!(
        status.contains("fsck") || status.contains("re-flash"),
        "no advice: {status}"
    );
    // The rest of the appliance is up: vmmgr answers, the log works.
    let st = a.status()?;
    assert_eq!(st.degraded.len(), 1, "{:?}", st.degraded);
    let log = a.console("log")?;
    assert!(log.contains("error: mounting ext4"), "{log}");
    Ok(())
}

#[test]
fn missing_root_partition_leaves_a_console_in_the_initramfs() -> anyhow::Result<()> {
    let disk = Disk::new()?;
    wreck(&disk, "VZROOT")?;
    let mut a = Appliance::start("degraded-root", Arc::new(disk), 1)?;
    a.wait_ready()?;
    let status = a.console("status")?;
    assert!(status.contains("health      DEGRADED"), "{status}");
    assert!(
        status.contains("VZROOT must hold an erofs or ext4 filesystem"),
        "{status}"
    );
    // Still a usable console: help answers, and a shell is there to look around.
    let help = a.console("help")?;
    assert!(help.contains("poweroff"), "{help}");
    a.send("poweroff\r")?;
    a.expect("init: power off now", std::time::Duration::from_secs(60))?;
    Ok(())
}
