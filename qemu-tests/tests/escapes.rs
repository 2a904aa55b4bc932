//! The ways out of a VE, each tried from inside a VE as its root (and from
//! the appliance side where the attack is on an appliance tool), on one booted
//! appliance. Every check here failed before the fix it guards
//! (docs/architecture.md, "Escape classes").

use qemu_tests::Appliance;
use std::time::{Duration, Instant};

fn fails(a: &mut Appliance, cmd: &str, why: &str) -> anyhow::Result<String> {
    let (out, rc) = a.run_rc(cmd)?;
    assert_ne!(rc, 0, "{why}: `{cmd}` succeeded:\n{out}");
    Ok(out)
}

fn wait_for(a: &mut Appliance, cmd: &str, want: &str, what: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (out, _) = a.run_rc(cmd)?;
        if out.contains(want) {
            return Ok(out);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{cmd}` never showed {want:?}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn escapes_are_closed() -> anyhow::Result<()> {
    let mut a = Appliance::boot_with_probe("escapes")?;
    a.run_ok("vzctl --quiet create 101 && vzctl --quiet start 101")?;
    a.run_ok("vzctl --quiet create 102 && vzctl --quiet start 102")?;
    for v in [101, 102] {
        a.install_probe(v)?;
    }

    // Every check runs, whatever the others did, and all failures are listed
    // (run against an image without the fixes, each one fails).
    type Check = fn(&mut Appliance) -> anyhow::Result<()>;
    let checks: [(&str, Check); 8] = [
        ("exec_gets_its_own_session", exec_gets_its_own_session),
        ("syscall_filter", syscall_filter),
        ("masks_are_locked", masks_are_locked),
        (
            "exec_cannot_be_locked_out_of_the_cgroup",
            exec_cannot_be_locked_out_of_the_cgroup,
        ),
        ("small_ones", small_ones),
        (
            "reboot_restarts_and_halt_stops",
            reboot_restarts_and_halt_stops,
        ),
        (
            "unadoptable_ve_is_not_started_twice",
            unadoptable_ve_is_not_started_twice,
        ),
        // Last: without the fix, the appliance console hangs in it.
        ("enter_follows_no_ve_symlink", enter_follows_no_ve_symlink),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut a)));
        match r {
            Ok(Ok(())) => eprintln!("escapes: {name}: ok"),
            Ok(Err(e)) => failed.push(format!("{name}: {e:#}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{name}: {msg}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} check(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
    Ok(())
}

/// 1. `vzctl exec` gives the command its own session on a VE pty (or pipes),
///    never the console: TIOCSTI cannot type into the appliance's shell.
fn exec_gets_its_own_session(a: &mut Appliance) -> anyhow::Result<()> {
    let s = a.run_ok("vzctl exec2 101 've-probe session'")?;
    let f: Vec<&str> = s.split_whitespace().collect();
    // session: pid P sid S tty-sid T stdin PATH
    assert!(f.len() >= 9, "{s}");
    assert_eq!(f[2], f[4], "the command must lead its own session: {s}");
    assert_eq!(f[4], f[6], "its terminal must be its own session's: {s}");
    assert!(f[8].starts_with("/dev/pts/"), "stdin must be a VE pty: {s}");
    let s = a.run_ok("echo | vzctl exec2 101 've-probe session'")?;
    assert!(
        s.contains("tty-sid -1") && s.contains("stdin pipe:"),
        "pipes without a tty: {s}"
    );

    let t = a.run_ok("vzctl exec2 101 've-probe tiocsti'")?;
    assert!(!t.contains("injected"), "{t}");
    let t = a.run_ok("echo | vzctl exec2 101 've-probe tiocsti'")?;
    assert!(!t.contains("injected"), "{t}");
    // Whatever got through would have run by the next prompt.
    a.run_ok("true")?;
    assert!(
        !a.transcript().contains("INJECTED-42"),
        "a VE process typed into the appliance console"
    );
    Ok(())
}

/// 4. The seccomp filter is on the VE init and on what exec starts; setuid
///    programs still work (no no_new_privs).
fn syscall_filter(a: &mut Appliance) -> anyhow::Result<()> {
    let st = a.run_ok(
        "vzctl exec2 101 'grep -E \"^(Seccomp|NoNewPrivs):\" /proc/1/status /proc/self/status'",
    )?;
    assert_eq!(
        st.matches("Seccomp:\t2").count(),
        2,
        "filter on init and exec: {st}"
    );
    assert_eq!(st.matches("NoNewPrivs:\t0").count(), 2, "{st}");
    let s = a.run_ok("vzctl exec2 101 've-probe syscalls'")?;
    for (call, errno) in [
        ("keyctl", "Function not implemented"),
        ("add_key", "Function not implemented"),
        ("io_uring_setup", "Function not implemented"),
        ("perf_event_open", "Operation not permitted"),
        ("bpf", "Operation not permitted"),
        ("userfaultfd", "Operation not permitted"),
        ("open_by_handle_at", "Operation not permitted"),
        ("kexec_load", "Operation not permitted"),
    ] {
        assert!(
            s.contains(&format!("{call}: denied ({errno}")),
            "{call} must be denied with {errno}:\n{s}"
        );
    }
    let fds = a.run_ok("vzctl exec2 101 've-probe fds'")?;
    assert_eq!(
        fds.trim(),
        "fds: [0, 1, 2, 3]",
        "only stdio (and the dir read) is open"
    );
    Ok(())
}

/// 3. Masks and read-only paths are locked: VE root cannot remove them, nor
///    mount a proc or sysfs that shows what they hide.
fn masks_are_locked(a: &mut Appliance) -> anyhow::Result<()> {
    a.run_ok("vzctl exec2 101 'mkdir -p /mnt/p'")?;
    // Each refused for the reason the kernel gives a locked mount (EINVAL
    // for umount, EPERM for a revealing mount), not by chance.
    for (cmd, why, reason) in [
        (
            "umount /proc/kcore",
            "unmounting a mask",
            "Invalid argument",
        ),
        (
            "umount -l /proc/kcore",
            "lazily unmounting a mask",
            "Invalid argument",
        ),
        (
            "umount /proc/sys",
            "unmounting a read-only path",
            "Invalid argument",
        ),
        ("umount -l /proc", "unmounting /proc", "Invalid argument"),
        ("umount -l /sys", "unmounting /sys", "Invalid argument"),
        (
            "mount -t proc proc /mnt/p",
            "a fresh proc",
            "permission denied",
        ),
        (
            "mount -t sysfs sysfs /mnt/p",
            "a fresh sysfs",
            "permission denied",
        ),
        (
            "mount -o remount,rw /sys",
            "remounting /sys read-write",
            "permission denied",
        ),
        (
            "echo evil > /proc/sys/kernel/hostname",
            "writing /proc/sys",
            "Read-only file system",
        ),
    ] {
        let out = fails(a, &format!("vzctl exec2 101 '{cmd}'"), why)?;
        assert!(out.contains(reason), "{why}: expected {reason:?}:\n{out}");
    }
    assert_eq!(
        a.run_ok("vzctl exec2 101 'wc -c < /proc/kcore'")?.trim(),
        "0"
    );
    assert!(
        a.run_ok("vzctl exec2 101 'cat /proc/interrupts | wc -c'")?
            .trim()
            == "0"
    );
    // What a VE's init needs still works: its own tmpfs mounts.
    a.run_ok("vzctl exec2 101 'mount -t tmpfs t /mnt/p && umount /mnt/p'")?;
    Ok(())
}

/// 5. VE root enabling controllers in its own cgroup root does not lock the
///    administrator out: exec joins a leaf the appliance owns.
fn exec_cannot_be_locked_out_of_the_cgroup(a: &mut Appliance) -> anyhow::Result<()> {
    a.run_ok("vzctl exec2 101 'mkdir -p /sys/fs/cgroup/sys && \
         for p in $(cat /sys/fs/cgroup/cgroup.procs); do echo $p > /sys/fs/cgroup/sys/cgroup.procs; done; \
         echo +pids > /sys/fs/cgroup/cgroup.subtree_control && cat /sys/fs/cgroup/cgroup.subtree_control'",
    )?;
    assert!(a
        .run_ok("cat /sys/fs/cgroup/vz/101/ve/cgroup.subtree_control")?
        .contains("pids"));
    assert_eq!(
        a.run_ok("vzctl exec2 101 'echo still-in'")?.trim(),
        "still-in"
    );
    // Its root made a threaded domain (only the kernel's root may mix domain
    // and threaded children): a leaf made inside it could take no process.
    let t = a.run_ok(
        "vzctl exec2 101 'cd /sys/fs/cgroup && echo -pids > cgroup.subtree_control && \
         for p in $(cat sys/cgroup.procs); do echo $p > cgroup.procs; done; rmdir sys; \
         mkdir t && echo threaded > t/cgroup.type; cat t/cgroup.type'",
    )?;
    assert!(t.contains("threaded"), "the attack must take hold: {t}");
    assert_eq!(
        a.run_ok("vzctl exec2 101 'echo still-in'")?.trim(),
        "still-in"
    );
    Ok(())
}

/// 2. `vzctl enter` opens the VE's ptmx inside the VE's root with no
///    symlinks: a VE that points /dev/pts at the appliance's devpts gets a
///    refusal, and no appliance pty is chowned to it.
fn enter_follows_no_ve_symlink(a: &mut Appliance) -> anyhow::Result<()> {
    a.run_ok("vzctl status 102 | grep -q running || vzctl --quiet start 102")?;
    a.run_ok("vzctl exec2 102 'mount -t tmpfs t /dev && ln -s /dev/pts /dev/pts'")?;
    let out = fails(
        a,
        "vzctl enter 102 < /dev/null",
        "enter through a symlinked /dev/pts",
    )?;
    assert!(out.contains("ptmx"), "{out}");
    let owners = a.run_ok("stat -c %u /dev/pts/* | sort -u")?;
    for uid in owners.split_whitespace() {
        assert!(
            uid.parse::<u64>()? < 100_000,
            "an appliance pty was given to a VE uid:\n{owners}"
        );
    }
    // Undone from a pipe-mode exec (the VE's pty is what was broken).
    a.run_ok("echo | vzctl exec2 102 'umount /dev'")?;
    Ok(())
}

/// 5., 6. vzctl mount is nosuid,nodev; destroy touches only private areas;
/// arguments that are not UTF-8.
fn small_ones(a: &mut Appliance) -> anyhow::Result<()> {
    a.run_ok("vzctl --quiet stop 102 && vzctl --quiet mount 102")?;
    let m = a.run_ok("grep ' /vz/root/102 ' /proc/mounts")?;
    assert!(m.contains("nosuid") && m.contains("nodev"), "{m}");
    a.run_ok("vzctl --quiet umount 102")?;

    a.run_ok(
        "printf 'OSTEMPLATE=\"busybox\"\\nVE_PRIVATE=\"/vz/../boot\"\\n' > /etc/vz/conf/110.conf",
    )?;
    let (out, rc) = a.run_rc("vzctl start 110")?;
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("VE_PRIVATE"), "{out}");
    let _ = a.run_rc("vzctl destroy 110")?;
    a.run_ok("test -f /boot/vz/vz.conf && test -d /boot/syslinux")?;

    let hex = a.run_ok("vzctl exec2 101 echo \"$(printf 'a\\377b')\" | od -An -tx1")?;
    assert!(
        hex.contains("61 ff 62"),
        "bytes must pass through unchanged: {hex}"
    );
    let (out, rc) = a.run_rc("vzctl set 101 --hostname \"$(printf '\\377')\" --save")?;
    assert_eq!(rc, 20, "{out}");
    assert!(
        out.contains("not valid UTF-8") && !out.contains("panicked"),
        "{out}"
    );
    // The console itself, typed at: refused, and it keeps answering.
    a.exit_shell()?;
    a.send_bytes(b"vzlist -o \xff\r")?;
    a.expect("not valid UTF-8", Duration::from_secs(20))?;
    a.expect(qemu_tests::PROMPT, Duration::from_secs(20))?;
    assert!(a.console("help")?.contains("poweroff"));
    a.enter_shell()?;
    let (out, rc) = a.run_rc("vzlist -o \"$(printf '\\377')\"")?;
    assert_eq!(rc, 20, "{out}");
    assert!(
        out.contains("not valid UTF-8") && !out.contains("panicked"),
        "{out}"
    );
    Ok(())
}

fn record(a: &mut Appliance, veid: u32) -> anyhow::Result<String> {
    Ok(a.run_ok(&format!("cat /run/vz/ve/{veid}"))?
        .trim()
        .to_owned())
}

/// 6. `reboot` inside a VE restarts it; `halt` stops it for good.
fn reboot_restarts_and_halt_stops(a: &mut Appliance) -> anyhow::Result<()> {
    let before = record(a, 101)?;
    let _ = a.run_rc("echo | vzctl exec2 101 reboot")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (now, rc) = a.run_rc("cat /run/vz/ve/101")?;
        if rc == 0 && now.trim() != before && !now.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VE 101 did not come back after reboot"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for(a, "vzctl status 101", "running", "after reboot")?;
    assert!(
        a.run_ok("grep 'VE 101: init' /run/vz/log")?
            .contains("(Reboot)"),
        "the init's end must be read as a reboot"
    );
    assert_eq!(a.run_ok("vzctl exec2 101 'echo back'")?.trim(), "back");

    let _ = a.run_rc("echo | vzctl exec2 101 halt")?;
    wait_for(a, "vzctl status 101", "down", "after halt")?;
    wait_for(
        a,
        "grep 'VE 101: init' /run/vz/log | tail -1",
        "(Stopped)",
        "halt logged",
    )?;
    // The reboot above restarted it once; the halt did not.
    assert_eq!(
        a.run_ok("grep -c 'VE 101: reboot:' /run/vz/log || true")?
            .trim(),
        "1",
        "halt must not restart the VE"
    );
    assert!(a.run_ok("vzctl status 101")?.contains("down"));
    Ok(())
}

/// 5. A VE vmmgr cannot adopt (no runtime record) is never started a second
///    time on the same private area.
fn unadoptable_ve_is_not_started_twice(a: &mut Appliance) -> anyhow::Result<()> {
    a.run_ok("vzctl --quiet start 102")?;
    a.run_ok("rm /run/vz/ve/102 && kill -9 $(pidof vmmgr)")?;
    wait_for(a, "vzlist -a -H -o ctid,status", "102", "vmmgr back")?;
    let (out, rc) = a.run_rc("vzctl start 102")?;
    assert_eq!(rc, 32, "a second start of an unadopted VE: {out}");
    assert!(out.contains("cgroup.kill"), "{out}");
    a.run_ok("echo 1 > /sys/fs/cgroup/vz/102/cgroup.kill")?;
    wait_for(
        a,
        "cat /sys/fs/cgroup/vz/102/cgroup.events 2>/dev/null || echo populated 0",
        "populated 0",
        "VE 102 killed",
    )?;
    a.run_ok("vzctl --quiet start 102 && vzctl --quiet stop 102")?;
    Ok(())
}
