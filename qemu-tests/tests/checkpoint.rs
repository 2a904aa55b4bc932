//! Checkpoint and restore on one appliance (`vzctl chkpnt`, `vzctl
//! restore`): a VE process that counts in memory goes on from where it was,
//! with the same PID; a TCP connection from the appliance stays open; the
//! VE answers on its address again; the masks CRIU
//! made again are locked (tried from inside the VE as root); the
//! commands' refusals use OpenVZ's exit codes; and with
//! `VE_STOP_MODE=suspend` an appliance reboot keeps the VE's processes.

use qemu_tests::Appliance;

/// The counting process's PID inside VE 101 and its last value.
fn counter(a: &mut Appliance) -> anyhow::Result<(u32, u64)> {
    let ps = a.run_ok("vzctl exec 101 'ps -o pid,args' </dev/null")?;
    let pid = ps
        .lines()
        .find(|l| l.contains("count.sh"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no counting process in VE 101:\n{ps}"))?;
    let n = a
        .run_ok("vzctl exec 101 cat /tmp/count </dev/null")?
        .trim()
        .parse()?;
    Ok((pid, n))
}

#[test]
fn chkpnt_and_restore_keep_processes_network_and_locks() -> anyhow::Result<()> {
    let mut a = Appliance::boot("checkpoint")?;
    a.enter_shell()?;
    a.run_ok("vzctl --quiet create 101 --ostemplate busybox")?;
    a.run_ok("vzctl --quiet set 101 --ipadd 192.0.2.11 --save")?;

    // Refusals before there is anything to save or restore.
    let (out, rc) = a.run_rc("vzctl chkpnt 101")?;
    assert_eq!(rc, 31, "chkpnt of a stopped VE: {out}");
    let (out, rc) = a.run_rc("vzctl restore 101")?;
    assert_eq!(rc, 17, "restore without a dump: {out}");
    assert!(out.contains("/vz/dump/Dump.101"), "{out}");

    a.run_ok("vzctl --quiet start 101")?;
    // The count lives in the shell's memory; the file only shows it
    // (replaced whole, so a reader never sees it empty).
    a.run_ok(
        r#"vzctl exec 101 'printf "i=0\nwhile :; do i=\$((i+1)); echo \$i > /tmp/count.n; mv /tmp/count.n /tmp/count; sleep 1; done\n" > /root/count.sh; (sh /root/count.sh </dev/null >/dev/null 2>&1 &)' </dev/null"#,
    )?;
    // An established TCP connection from the appliance to an echo server in
    // the VE (the FIFO's writer is held open by a sleep).
    a.run_ok(
        "vzctl exec 101 '(nc -l -p 7000 -e /bin/cat </dev/null >/dev/null 2>&1 &)' </dev/null",
    )?;
    a.run_ok("mkfifo /tmp/tin && (sleep 600 > /tmp/tin &) && (nc 192.0.2.11 7000 < /tmp/tin > /tmp/tout 2>&1 &)")?;
    a.run_ok("sleep 1; echo before > /tmp/tin; sleep 1")?;
    assert_eq!(a.run_ok("cat /tmp/tout")?.trim(), "before");
    a.run_ok("sleep 1")?;
    let (pid, before) = counter(&mut a)?;

    let out = a.run_ok("vzctl chkpnt 101")?;
    println!("checkpoint: {}", out.lines().last().unwrap_or(""));
    assert!(
        out.contains("Checkpointing completed successfully"),
        "{out}"
    );
    let status = a.run_ok("vzctl status 101")?;
    assert_eq!(status.trim(), "VEID 101 exist unmounted suspended");
    let (out, rc) = a.run_rc("vzctl chkpnt 101")?;
    assert_eq!(rc, 31, "a second chkpnt: {out}");
    // Its files stay as they were while it is suspended: nothing counts.
    a.run_ok("sleep 2")?;

    let out = a.run_ok("vzctl restore 101")?;
    println!("restore: {}", out.lines().last().unwrap_or(""));
    assert!(out.contains("Restoration completed successfully"), "{out}");
    let (out, rc) = a.run_rc("vzctl restore 101")?;
    assert_eq!(rc, 32, "restore of a running VE: {out}");
    // CRIU mounts cgroup2 for itself in the appliance's cgroup namespace,
    // and a mount without options there resets the hierarchy's: the
    // appliance's options are still in force after a dump and a restore.
    let opts = a.run_ok("grep ' /sys/fs/cgroup cgroup2 ' /proc/mounts")?;
    for o in ["nsdelegate", "favordynmods", "memory_recursiveprot"] {
        assert!(opts.contains(o), "{o} after chkpnt and restore: {opts}");
    }
    a.run_ok("sleep 2")?;
    let (pid_after, after) = counter(&mut a)?;
    println!("checkpoint: counter pid {pid} -> {pid_after}, value {before} -> {after}");
    assert_eq!(pid_after, pid, "the same process, not a new one");
    assert!(after > before, "the count went on: {before} -> {after}");
    assert!(
        after < before + 30,
        "the count went on from its value, not from 0 or a restart: {before} -> {after}"
    );
    // The dump is used up; the VE answers on its address.
    assert_eq!(
        a.run_ok("vzctl status 101")?.trim(),
        "VEID 101 exist mounted running"
    );
    a.run_ok("test ! -e /vz/dump/Dump.101")?;
    a.run_ok("ping -c 1 -W 5 192.0.2.11 >/dev/null")?;
    // The connection made before the checkpoint carries data after it.
    a.run_ok("echo after > /tmp/tin; sleep 2")?;
    assert_eq!(
        a.run_ok("cat /tmp/tout")?.trim(),
        "before\nafter",
        "the TCP connection survived"
    );
    // CRIU's network lock is gone from the VE's namespace.
    let tables =
        a.run_ok("nsenter -t $(head -1 /sys/fs/cgroup/vz/101/ve/cgroup.procs) -n nft list tables")?;
    assert!(!tables.contains("CRIU"), "{tables}");

    // The attacks the start's locked masks stop, as VE root after the
    // restore.
    for (what, cmd) in [
        ("unmask /proc/kcore", "umount /proc/kcore"),
        ("unmask /proc/keys", "umount -l /proc/keys"),
        ("make /proc/sys writable", "umount /proc/sys"),
        ("unmask /sys/firmware", "umount /sys/firmware"),
        (
            "mount an unmasked proc",
            "mkdir -p /mnt/p && mount -t proc proc /mnt/p",
        ),
        ("remount /sys writable", "mount -o remount,rw /sys"),
    ] {
        let (out, rc) = a.run_rc(&format!("vzctl exec2 101 '{cmd}' </dev/null"))?;
        assert_ne!(rc, 0, "VE root could {what} after a restore: {out}");
    }
    let kcore = a.run_ok("vzctl exec 101 'head -c 1 /proc/kcore | wc -c' </dev/null")?;
    assert_eq!(kcore.trim(), "0", "/proc/kcore reads as /dev/null");

    // vmmgr reads the VE's /dev into its record as appliance root while the
    // VE runs. VE root lays traps there: a pty device bound over a file
    // (opened, it would become vmmgr's controlling terminal), a FIFO (opened,
    // it would block the dump), a link into the appliance (followed, it
    // would be read), and more entries than a record holds.
    a.run_ok(
        "vzctl exec 101 'touch /dev/trap && mount --bind /dev/pts/ptmx /dev/trap && \
         mkfifo /dev/pipe && ln -s /proc/1/root/etc/shadow /dev/link && \
         mkdir -p /dev/d/e && echo kept > /dev/d/e/f' </dev/null",
    )?;
    a.run_ok(
        "vzctl exec 101 'i=0; while [ $i -lt 1100 ]; do i=$((i+1)); : > /dev/n$i; done' </dev/null",
    )?;
    let (out, rc) = a.run_rc("vzctl chkpnt 101")?;
    assert_eq!(rc, 16, "{out}");
    assert!(
        out.contains("more than 1024 entries") && out.contains("keeps running"),
        "{out}"
    );
    a.run_ok("vzctl status 101 | grep -q running")?;
    a.run_ok("vzctl exec 101 'rm /dev/n[0-9]*' </dev/null")?;
    // The masks go to CRIU as external mounts, bound from a stand-in at the
    // restore. VE root binds a mask elsewhere (it must come back as an
    // empty read-only tmpfs, nothing of the appliance's staging area), and
    // stacks a tmpfs of its own below /proc, bound elsewhere with a file in
    // it (saved with its contents, as before).
    a.run_ok(
        "vzctl exec 101 'mkdir -p /mnt/x /mnt/y && mount --bind /sys/firmware /mnt/x && \
         mount -t tmpfs none /proc/fs && echo own > /proc/fs/f && \
         mount --bind /proc/fs /mnt/y' </dev/null",
    )?;
    a.run_ok("vzctl chkpnt 101 >/dev/null && vzctl restore 101 >/dev/null")?;
    let binds = a.run_ok(
        "vzctl exec 101 'cat /mnt/y/f; ls -A /mnt/x | wc -l; touch /mnt/x/t 2>/dev/null || \
         echo read-only; grep -w /mnt/x /proc/mounts | cut -d\\  -f3; \\
         grep -w /mnt/x /proc/self/mountinfo | cut -d\\  -f4' </dev/null",
    )?;
    assert_eq!(
        binds.trim(),
        "own\n0\nread-only\ntmpfs\n/",
        "the VE's binds of a mask (a whole tmpfs, not a directory of the staging area) and \
         of its own tmpfs"
    );
    let dev = a.run_ok(
        "vzctl exec 101 'readlink /dev/link; test -p /dev/pipe && echo fifo; cat /dev/d/e/f; \
         test -c /dev/trap && echo bound' </dev/null",
    )?;
    assert_eq!(
        dev.trim(),
        "/proc/1/root/etc/shadow\nfifo\nkept\nbound",
        "the VE's /dev as it made it"
    );
    let tty = a.run_ok("cut -d' ' -f7 /proc/$(pidof vmmgr)/stat")?;
    assert_eq!(tty.trim(), "0", "vmmgr has no controlling terminal");

    // CHECKPOINT="yes" (the default): VE root cannot make a namespace of
    // its own (CRIU could not dump it), in a restored VE too, and neither
    // can a command run with `vzctl exec`.
    for flags in ["-U", "-m", "-n", "-p -f", "-u", "-i", "-r"] {
        let (out, rc) = a.run_rc(&format!(
            "vzctl exec2 101 'unshare {flags} true' </dev/null"
        ))?;
        assert_ne!(rc, 0, "unshare {flags} in a checkpointable VE: {out}");
        assert!(out.contains("not permitted"), "unshare {flags}: {out}");
    }
    // So does a copy of /proc elsewhere (it would come back unlocked).
    a.run_ok("vzctl exec 101 'mkdir -p /x/proc && mount -o rbind /proc /x/proc' </dev/null")?;
    let (out, rc) = a.run_rc("vzctl chkpnt 101")?;
    assert_eq!(rc, 16, "{out}");
    assert!(out.contains("/x/proc"), "{out}");
    a.run_ok("vzctl exec 101 'umount -l /x/proc' </dev/null")?;
    // A dump CRIU cannot make (the VE hid its /proc) leaves it running.
    a.run_ok("vzctl exec 101 'mount -t tmpfs none /proc' </dev/null")?;
    let (out, rc) = a.run_rc("vzctl chkpnt 101")?;
    assert_eq!(rc, 16, "{out}");
    assert!(out.contains("the VE keeps running"), "{out}");
    a.run_ok("vzctl status 101 | grep -q running && ping -c 1 -W 5 192.0.2.11 >/dev/null")?;
    a.run_ok("vzctl exec 101 'umount /proc' </dev/null")?;
    // Mounts VE root stacked over /proc before the dump do not leave
    // CRIU's unlocked proc under the locked one.
    a.run_ok("vzctl exec 101 'mount -o rbind /proc /proc' </dev/null")?;
    a.run_ok("vzctl chkpnt 101 >/dev/null && vzctl restore 101 >/dev/null")?;
    let (out, rc) =
        a.run_rc("vzctl exec2 101 'umount -l /proc; mkdir -p /mnt/q && mount -t proc proc /mnt/q' </dev/null")?;
    assert_ne!(
        rc, 0,
        "a fresh proc under a stacked /proc after a restore: {out}"
    );

    // With CHECKPOINT="no" the VE may make namespaces, and chkpnt says
    // why it cannot save it before freezing anything. (VE 101 lost its
    // /proc to the attack above: a fresh start in any case.)
    a.run_ok("vzctl --quiet set 101 --checkpoint no --save")?;
    a.run_ok("vzctl --quiet stop 101 && vzctl --quiet start 101")?;
    a.run_ok("vzctl exec 101 '(unshare -m sleep 600 </dev/null >/dev/null 2>&1 &)' </dev/null")?;
    let (out, rc) = a.run_rc("vzctl chkpnt 101")?;
    assert_eq!(rc, 16, "{out}");
    assert!(out.contains("CHECKPOINT=\"no\""), "{out}");
    a.run_ok("vzctl status 101 | grep -q running")?;
    a.run_ok("vzctl --quiet set 101 --checkpoint yes --save")?;

    // A dump of another VE is refused, and a fresh start drops a stale one.
    a.run_ok("vzctl --quiet stop 101 && vzctl --quiet start 101")?;
    a.run_ok("vzctl chkpnt 101 >/dev/null")?;
    a.run_ok(
        "mv /vz/dump/Dump.101 /vz/dump/other && vzctl --quiet create 102 --ostemplate busybox",
    )?;
    let (out, rc) = a.run_rc("vzctl restore 102 --dumpfile /vz/dump/other")?;
    assert_eq!(rc, 17, "{out}");
    assert!(out.contains("is of VE 101"), "{out}");
    a.run_ok("mv /vz/dump/other /vz/dump/Dump.101")?;
    a.run_ok("vzctl --quiet start 101")?;
    a.run_ok("test ! -e /vz/dump/Dump.101")?;
    let ps = a.run_ok("vzctl exec 101 'ps -o pid,args' </dev/null")?;
    assert!(
        !ps.contains("count.sh"),
        "a fresh start runs no counter:\n{ps}"
    );

    // A systemd VE (debian-12-minimal): systemd's /dev entries, its own
    // cgroups and their controllers come back with it; no unit fails, its
    // services keep their processes, and journald still takes messages
    // through /dev/log.
    a.run_ok("vzctl --quiet create 301 --ostemplate debian-12-minimal")?;
    a.run_ok("vzctl --quiet set 301 --ipadd 192.0.2.31 --save && vzctl --quiet start 301")?;
    a.run_ok(
        "i=0; until vzctl exec 301 systemctl is-system-running </dev/null | grep -qx running \
         || [ $i -ge 90 ]; do i=$((i+1)); sleep 1; done",
    )?;
    let journald = a.run_ok("vzctl exec 301 pidof systemd-journald </dev/null")?;
    let out = a.run_ok("vzctl chkpnt 301")?;
    println!(
        "checkpoint: systemd VE: {}",
        out.lines().last().unwrap_or("")
    );
    let out = a.run_ok("vzctl restore 301")?;
    println!(
        "checkpoint: systemd VE: {}",
        out.lines().last().unwrap_or("")
    );
    let state = a.run_ok("vzctl exec 301 systemctl is-system-running </dev/null")?;
    assert_eq!(state.trim(), "running", "after the restore");
    assert_eq!(
        a.run_ok("vzctl exec 301 pidof systemd-journald </dev/null")?,
        journald,
        "journald kept its process"
    );
    a.run_ok("vzctl exec 301 'logger -t vztest after-restore && sleep 1' </dev/null")?;
    let log = a.run_ok("vzctl exec 301 'journalctl -q -t vztest --no-pager' </dev/null")?;
    assert!(log.contains("after-restore"), "{log}");
    // systemd manages its groups as before: a unit starts and stops.
    a.run_ok(
        "vzctl exec 301 'systemd-run --unit vztest sleep 600 && systemctl stop vztest' </dev/null",
    )?;
    let failed = a.run_ok("vzctl exec 301 'systemctl --failed --plain --no-legend' </dev/null")?;
    assert_eq!(failed.trim(), "", "failed units after the restore");
    a.run_ok("vzctl --quiet stop 301")?;

    // VE_STOP_MODE=suspend: an appliance reboot does not restart the VE's
    // services; they go on where they were.
    a.run_ok("sed -i 's/^VE_STOP_MODE=.*/VE_STOP_MODE=suspend/' /etc/vz/vz.conf")?;
    a.run_ok("vzctl exec 101 '(sh /root/count.sh </dev/null >/dev/null 2>&1 &)' </dev/null")?;
    a.run_ok("sleep 2")?;
    let (pid, before) = counter(&mut a)?;
    a.reboot()?;
    // The console is ready before the VEs are back.
    a.run_ok(
        "i=0; until vzctl status 101 | grep -q running || [ $i -ge 120 ]; do i=$((i+1)); sleep 1; done",
    )?;
    let log = a.run_ok("grep -E 'VE 101: (suspended|resumed|restoring)' /vz/log/appliance.log")?;
    println!("checkpoint: reboot with VE_STOP_MODE=suspend:\n{log}");
    assert!(log.contains("resumed at boot"), "{log}");
    let (pid_after, after) = counter(&mut a)?;
    println!("checkpoint: across the reboot: counter pid {pid} -> {pid_after}, value {before} -> {after}");
    assert_eq!(pid_after, pid, "the same process after the reboot");
    assert!(after >= before, "the count went on: {before} -> {after}");
    a.run_ok("test ! -e /vz/dump/Dump.101")?;
    a.run_ok("vzctl --quiet stop 101")?;
    Ok(())
}
