//! One booted appliance, many assertions: boot bound, console commands, the
//! mounts and cgroups of `status` (human and structured), orphan reaping and
//! service supervision.

use proto::{Request, Response};
use qemu_tests::{Appliance, BOOT_BOUND};
use std::time::{Duration, Instant};

fn field<'a>(status: &'a str, label: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in status:\n{status}"))
}

#[test]
fn boots_and_is_operable() -> anyhow::Result<()> {
    let t = Instant::now();
    let mut a = Appliance::boot("appliance")?;
    let boot_time = t.elapsed();
    assert!(boot_time < BOOT_BOUND, "boot took {boot_time:?}");
    eprintln!("booted to ready in {boot_time:?}");
    let transcript = a.transcript();
    assert!(
        transcript.contains("SYSLINUX"),
        "not booted by syslinux from the disk"
    );
    assert!(
        transcript.contains("init: boot"),
        "no boot timeline on the console"
    );

    // help and unknown input.
    let help = a.console("help")?;
    for cmd in ["status", "log", "reboot", "poweroff", "shell"] {
        assert!(help.contains(cmd), "help lacks {cmd}:\n{help}");
    }
    let bad = a.console("frobnicate")?;
    assert!(
        bad.contains("unknown command 'frobnicate'") && bad.contains("help"),
        "{bad}"
    );

    // status: partitions as intended.
    let status = a.console("status")?;
    let root = field(&status, "VZROOT");
    assert!(
        root.contains(" / ") && root.contains(" ro,"),
        "VZROOT not read-only at /: {root}"
    );
    let data = field(&status, "VZDATA");
    assert!(
        data.contains(" /vz ") && data.contains("rw,") && data.contains("prjquota"),
        "{data}"
    );
    let boot = field(&status, "VZBOOT");
    assert!(boot.contains(" /boot ") && boot.contains("rw,"), "{boot}");
    assert!(field(&status, "health").contains("ok"), "{status}");
    let cg = field(&status, "controllers for VEs");
    for c in ["cpu", "memory", "pids", "io", "cpuset"] {
        assert!(
            cg.split_whitespace().any(|w| w == c),
            "controller {c} not enabled: {cg}"
        );
    }
    assert!(field(&status, "kernel").contains("cloud-amd64"));
    assert!(status.contains("Boot timeline"), "{status}");
    assert!(status.contains("mounted VZDATA on /vz"), "{status}");

    // The same, structured, over the management serial port.
    match a.mgmt(&Request::Ping)? {
        Response::Pong { version, server } => {
            assert_eq!(version, proto::VERSION);
            assert_eq!(server.as_str(), "vmmgr");
        }
        other => panic!("unexpected {other:?}"),
    }
    let st = a.status()?;
    assert!(st.degraded.is_empty(), "{:?}", st.degraded);
    let part = |label: &str| {
        st.partitions
            .iter()
            .find(|p| p.label.as_str() == label)
            .unwrap_or_else(|| panic!("{label} missing from {:?}", st.partitions))
            .clone()
    };
    assert!(part("VZROOT").options.starts_with("ro"));
    assert!(part("VZDATA").options.split(',').any(|o| o == "prjquota"));
    assert_eq!(part("VZDATA").mount_point.as_str(), "/vz");
    assert_eq!(part("VZBOOT").mount_point.as_str(), "/boot");
    assert!(st.ve_controllers.contains("memory"));

    // The boot config is on VZBOOT and reachable as /etc/vz.
    a.enter_shell()?;
    let conf = a.shell("cat /etc/vz/vz.conf | grep -c VE_PRIVATE")?;
    assert_eq!(conf.trim(), "1", "{conf}");
    let quota = a.shell("cat /proc/self/mountinfo | grep -c ' /vz .*prjquota'")?;
    assert_eq!(quota.trim(), "1", "{quota}");

    // Orphans: 40 sleepers whose parents exit at once are reparented to init,
    // which must reap them when they end.
    let baseline = a.status()?.processes;
    a.shell("for i in $(seq 40); do (sleep 3 &); done")?;
    let orphans = a.shell(
        "n=0; for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = sleep ] && \
         grep -q '^PPid:[[:space:]]*1$' $p/status 2>/dev/null && n=$((n+1)); done; echo ORPHANS=$n",
    )?;
    let n: u32 = orphans
        .split("ORPHANS=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {orphans:?}"));
    assert!(
        n >= 30,
        "expected the sleepers to be orphans of init, found {n}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = a.status()?;
        if st.zombies == 0 && st.processes <= baseline + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans not reaped: {} processes ({} zombies), baseline {baseline}",
            st.processes,
            st.zombies
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Supervision: vmmgr killed with SIGKILL comes back (new pid), and serves.
    let before = a.shell("pidof vmmgr")?.trim().to_owned();
    assert!(!before.is_empty());
    a.shell("kill -9 $(pidof vmmgr)")?;
    a.expect(
        "service vmmgr exited (killed by SIGKILL)",
        Duration::from_secs(20),
    )?;
    a.exit_shell()?;
    // Back when init reports it running (ready) under a new pid, restarted once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = a.console("status")?;
        let line = field(&status, "vmmgr").to_owned();
        let pid = line.split_whitespace().nth(2).unwrap_or("-").to_owned();
        if pid != "-" && pid != before && line.contains("running") {
            assert!(line.contains("restarts 1"), "{line}");
            assert!(line.contains("killed by SIGKILL"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "vmmgr did not come back: {line}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(matches!(a.mgmt(&Request::Ping)?, Response::Pong { .. }));

    // log shows what init and the services logged.
    let log = a.console("log 200")?;
    assert!(log.contains("service vmmgr started"), "{log}");
    assert!(log.contains("vmmgr: listening on /run/vmmgr.sock"), "{log}");
    Ok(())
}
