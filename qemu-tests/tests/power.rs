//! Shutdown paths, each followed by a boot that must find clean filesystems:
//! console `reboot`, ctrl-alt-del, SIGPWR, console `poweroff`; then a power cut,
//! after which the next boot must report the data partition as unclean (so the
//! "clean" verdicts above are not vacuous).

use qemu_tests::Appliance;
use std::time::Duration;

const SHUTDOWN: Duration = Duration::from_secs(60);

fn states_at_boot(a: &mut Appliance) -> anyhow::Result<Vec<(String, String)>> {
    let st = a.status()?;
    Ok(st
        .partitions
        .iter()
        .map(|p| {
            (
                p.label.as_str().to_owned(),
                p.state_at_boot.as_str().to_owned(),
            )
        })
        .collect())
}

fn assert_clean(a: &mut Appliance, after: &str) -> anyhow::Result<()> {
    let states = states_at_boot(a)?;
    for label in ["VZDATA", "VZBOOT"] {
        let state = states
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, s)| s.as_str())
            .unwrap_or("missing");
        assert_eq!(state, "clean", "{label} after {after}: {states:?}");
    }
    Ok(())
}

#[test]
fn shutdown_paths_leave_clean_filesystems() -> anyhow::Result<()> {
    let mut a = Appliance::boot("power")?;
    assert_clean(&mut a, "first boot")?;

    // Write something to both partitions so a dirty shutdown would show.
    a.enter_shell()?;
    a.shell("echo kept > /vz/private/marker && echo kept > /boot/vz/marker")?;
    a.exit_shell()?;

    // 1. console reboot
    a.send("reboot\r")?;
    a.expect("init: reboot now", SHUTDOWN)?;
    a.rebooted()?;
    assert_clean(&mut a, "reboot")?;
    a.enter_shell()?;
    let kept = a.shell("cat /vz/private/marker /boot/vz/marker")?;
    assert_eq!(kept.matches("kept").count(), 2, "{kept}");
    a.exit_shell()?;

    // 2. ctrl-alt-del from the keyboard reboots
    a.ctrl_alt_del()?;
    a.expect("received SIGINT", SHUTDOWN)?;
    a.expect("init: reboot now", SHUTDOWN)?;
    a.rebooted()?;
    assert_clean(&mut a, "ctrl-alt-del")?;

    // 3. SIGPWR powers off
    a.enter_shell()?;
    a.send("kill -PWR 1\r")?;
    a.expect("init: power off now", SHUTDOWN)?;
    let st = a.wait_exit(SHUTDOWN)?;
    assert!(st.success(), "QEMU exit after SIGPWR: {st}");
    let mut a = a.restart()?;
    assert_clean(&mut a, "SIGPWR")?;

    // 4. console poweroff
    a.send("poweroff\r")?;
    a.expect("init: power off now", SHUTDOWN)?;
    let st = a.wait_exit(SHUTDOWN)?;
    assert!(st.success(), "QEMU exit after poweroff: {st}");
    let mut a = a.restart()?;
    assert_clean(&mut a, "poweroff")?;

    // 5. a power cut is noticed
    a.enter_shell()?;
    a.shell("echo dirty > /vz/private/dirty")?;
    a.power_cut()?;
    let mut a = a.restart()?;
    let states = states_at_boot(&mut a)?;
    assert!(
        states.iter().any(|(l, s)| l == "VZDATA" && s == "unclean"),
        "a power cut must leave VZDATA unclean: {states:?}"
    );
    Ok(())
}
