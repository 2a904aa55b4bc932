//! Virtual environments end to end, on one booted appliance: the vzctl and
//! vzlist commands with OpenVZ's exit codes, isolation proved from inside a
//! VE, persistence across stop/start and an appliance reboot, a failed start
//! that loses nothing, and VEs surviving a vmmgr restart.

use qemu_tests::Appliance;
use std::time::{Duration, Instant};

fn code(a: &mut Appliance, cmd: &str, want: i32) -> anyhow::Result<String> {
    let (out, rc) = a.run_rc(cmd)?;
    assert_eq!(rc, want, "`{cmd}` exit code {rc}, expected {want}:\n{out}");
    Ok(out)
}

#[test]
fn virtual_environments() -> anyhow::Result<()> {
    let mut a = Appliance::boot_with_probe("ve")?;

    // Create, with OpenVZ's answers to bad input; nothing is changed by them.
    a.run_ok("vzctl create 101 --hostname ve101.example.com --name web")?;
    a.run_ok("vzctl create 102 --ostemplate busybox --config vswap-256m")?;
    code(&mut a, "vzctl create 101", 44)?;
    code(&mut a, "vzctl create 103 --ostemplate centos-7", 91)?;
    code(&mut a, "vzctl create 104 --name web", 21)?;
    code(&mut a, "vzctl start", 20)?;
    code(&mut a, "vzctl frobnicate 101", 20)?;
    code(&mut a, "vzctl start 101 --bogus", 20)?;
    code(&mut a, "vzctl set 101 --onboot maybe --save", 21)?;
    code(&mut a, "vzctl start 99", 21)?;
    code(&mut a, "vzctl start 109", 14)?;
    code(&mut a, "vzctl stop 101", 31)?;
    let status = a.run_ok("vzctl status 101")?;
    assert_eq!(status.trim(), "VEID 101 exist unmounted down");
    let status = a.run_ok("vzctl status 150")?;
    assert_eq!(status.trim(), "VEID 150 deleted unmounted down");

    // The busybox template's files are there before the first start, through
    // `vzctl mount` (the appliance-side view at /vz/root/<VEID>).
    a.run_ok("vzctl mount 102")?;
    a.run_ok("test -x /vz/root/102/bin/busybox && grep -q '^user:' /vz/root/102/etc/passwd")?;
    code(&mut a, "vzctl mount 102", 41)?;
    a.run_ok("vzctl umount 102")?;
    code(&mut a, "vzctl umount 102", 40)?;

    // Start; a second operation while one runs is refused with 9 (locked).
    a.run_ok("vzctl start 101")?;
    code(&mut a, "vzctl start 101", 32)?;
    a.run_ok("vzctl start 102")?;
    // While a restart runs, any other operation on the VE (a harmless `set`
    // here) is refused with 9; it is retried until the restart is over. If a
    // `set` got there first, the restart is the one refused with 9.
    let out = a.run_ok(
        "vzctl restart 101 >/dev/null & p=$!; seen=no; \
         while kill -0 $p 2>/dev/null; do vzctl set 101 --description x >/dev/null 2>&1; \
         [ $? = 9 ] && seen=yes; done; wait $p; [ $? = 9 ] && seen=yes; echo LOCK-$seen",
    )?;
    assert!(
        out.contains("LOCK-yes"),
        "a concurrent operation must be refused as locked:\n{out}"
    );
    assert!(a.run_ok("vzctl status 101")?.contains("running"));

    // vzlist: default, -a, -S, -H, -o, -s, -1, -L, -j.
    let list = a.run_ok("vzlist")?;
    assert!(
        list.starts_with("      CTID      NPROC STATUS    IP_ADDR         HOSTNAME\n"),
        "{list}"
    );
    assert!(
        list.contains("       101 ")
            && list.contains("running   -               ve101.example.com"),
        "{list}"
    );
    a.run_ok("vzctl stop 102")?;
    assert!(!a.run_ok("vzlist -H")?.contains("102"));
    assert!(a.run_ok("vzlist -S -H")?.contains("102          - stopped"));
    assert_eq!(a.run_ok("vzlist -1 -a")?, "       101\n       102\n");
    assert_eq!(
        a.run_ok("vzlist -a -H -o ctid -s -ctid")?,
        "       102\n       101\n"
    );
    assert!(a
        .run_ok("vzlist -a -o ctid,name,ostemplate")?
        .contains("web"));
    assert!(a.run_ok("vzlist -L")?.contains("hostname"));
    let j = a.run_ok("vzlist -j -o ctid,status,name,onboot")?;
    assert!(
        j.contains("\"ctid\": 101")
            && j.contains("\"status\": \"running\"")
            && j.contains("\"name\": \"web\""),
        "{j}"
    );
    code(&mut a, "vzlist -o nosuchfield", 20)?;
    assert!(a.run_ok("vzlist web")?.contains("101"));
    a.run_ok("vzctl start 102")?;

    // exec semantics: exec returns 8 when the command fails, exec2 its code.
    code(&mut a, "vzctl exec 101 false", 8)?;
    code(&mut a, "vzctl exec2 101 'exit 7'", 7)?;
    a.run_ok("vzctl exec 101 true")?;
    assert_eq!(
        a.run_ok("vzctl exec2 101 'echo hi | tr a-z A-Z'")?.trim(),
        "HI"
    );
    assert_eq!(
        a.run_ok("vzctl exec2 web hostname")?.trim(),
        "ve101.example.com",
        "names work as VEIDs"
    );
    code(&mut a, "vzctl exec 101", 20)?;

    // --- Isolation, from inside VE 101. ---
    let ps = a.run_ok("vzctl exec2 101 'ps -o pid,comm'")?;
    let pids: Vec<&str> = ps.lines().skip(1).map(|l| l.trim()).collect();
    assert!(
        pids[0].starts_with("1 init"),
        "the VE init must be PID 1:\n{ps}"
    );
    for host_proc in ["vmmgr", "vzconsole", "vesetup"] {
        assert!(
            !ps.contains(host_proc),
            "VE sees appliance process {host_proc}:\n{ps}"
        );
    }
    assert!(
        ps.contains("syslogd") && ps.contains("crond"),
        "template init did not start its services:\n{ps}"
    );
    assert_eq!(
        a.run_ok("vzctl exec2 101 hostname")?.trim(),
        "ve101.example.com"
    );
    for path in [
        "/sbin/vmmgr",
        "/vz",
        "/boot",
        "/etc/vzpolicy",
        "/usr/share/vz",
        "/run/vmmgr.sock",
        "/dev/vda",
        "/dev/vdb",
    ] {
        code(&mut a, &format!("vzctl exec2 101 'ls -d {path}'"), 1)?;
    }
    a.run_ok("vzctl exec2 102 'echo secret > /root/secret102'")?;
    let found = a.run_ok("vzctl exec2 101 'find / -name secret102 -xdev 2>/dev/null | wc -l'")?;
    assert_eq!(found.trim(), "0", "VE 101 reaches VE 102's files");
    assert!(
        a.run_ok("cat /vz/private/102/upper/root/secret102")?
            .contains("secret"),
        "VE files land in its private area"
    );

    // Its cgroup is delegated: VE root makes sub-groups inside, and the
    // limits set from outside (files of the VE's own group) stay read-only.
    a.run_ok("vzctl exec2 101 'mkdir /sys/fs/cgroup/inner && rmdir /sys/fs/cgroup/inner'")?;
    let (out, rc) = a.run_rc("vzctl exec2 101 'echo 10 > /sys/fs/cgroup/pids.max'")?;
    assert_ne!(rc, 0, "VE root changed its own limits:\n{out}");

    // VE root is an unprivileged uid on the appliance.
    let uid = a.run_ok(
        "awk '/^Uid:/ {print $2}' /proc/$(head -1 /sys/fs/cgroup/vz/101/ve/cgroup.procs)/status",
    )?;
    let uid: u64 = uid.trim().parse()?;
    assert!(uid >= 100_000, "VE root runs as host uid {uid}");
    assert_eq!(
        a.run_ok("vzctl exec2 101 'id -u'")?.trim(),
        "0",
        "inside, it is root"
    );

    // SysV shm made in one VE is invisible in another.
    for v in [101, 102] {
        a.install_probe(v)?;
    }
    assert!(a
        .run_ok("vzctl exec2 101 've-probe shm-create 4242'")?
        .contains("shm-create: id"));
    assert!(a
        .run_ok("vzctl exec2 101 've-probe shm-find 4242'")?
        .contains("found"));
    assert!(
        a.run_ok("vzctl exec2 102 've-probe shm-find 4242'")?
            .contains("absent"),
        "shm leaked between VEs"
    );

    // What VE root must not be able to do.
    let m = a.run_ok("vzctl exec2 101 've-probe module'")?;
    assert!(m.contains("denied"), "module load: {m}");
    let m = a.run_ok("vzctl exec2 101 've-probe mknod'")?;
    assert!(m.contains("denied"), "mknod of a disk: {m}");
    // No disk node exists in the VE, and bringing one along does not help.
    let (out, rc) =
        a.run_rc("vzctl exec2 101 'mkdir -p /mnt/x && mount -t ext4 /dev/vda3 /mnt/x'")?;
    assert_ne!(rc, 0, "VE root mounted the appliance's disk:\n{out}");
    a.run_ok("mknod /vz/private/101/upper/vda3 b 254 3")?;
    let (out, rc) = a.run_rc("vzctl exec2 101 'mount -t ext4 /vda3 /mnt/x'")?;
    assert_ne!(rc, 0, "VE root mounted a block device node:\n{out}");
    let (out, rc) = a.run_rc("vzctl exec2 101 'head -c 512 /vda3 | wc -c'")?;
    assert!(
        rc != 0 || out.trim().lines().last() == Some("0"),
        "VE root read a disk through a device node:\n{out}"
    );
    code(&mut a, "vzctl exec2 101 'echo h > /proc/sysrq-trigger'", 1)?;
    code(
        &mut a,
        "vzctl exec2 101 'echo 1 > /sys/kernel/mm/ksm/run'",
        1,
    )?;
    // busybox date reports the refusal but exits 0: check the message and the clock.
    let (out, _) = a.run_rc("vzctl exec2 101 'date -s 2001-01-01'")?;
    assert!(out.contains("Operation not permitted"), "{out}");
    let year = a.run_ok("date +%Y")?;
    assert_ne!(year.trim(), "2001", "the appliance clock changed");
    a.run_ok("vzctl exec2 101 'hostname evil'")?;
    assert_eq!(
        a.run_ok("hostname")?.trim(),
        "vz",
        "the appliance hostname changed"
    );
    let vmmgr_pid = a.run_ok("pidof vmmgr")?.trim().to_owned();
    code(&mut a, &format!("vzctl exec2 101 'kill -9 {vmmgr_pid}'"), 1)?;
    code(&mut a, "vzctl exec2 101 'kill -9 -1; exit 0'", 0)?;
    assert_eq!(
        a.run_ok("pidof vmmgr")?.trim(),
        vmmgr_pid,
        "a VE signal reached vmmgr"
    );
    a.run_ok("vzctl set 101 --hostname ve101.example.com")?;

    // set --save writes the config atomically on VZBOOT; --userpasswd.
    a.run_ok("vzctl set 101 --onboot yes --bootorder 5 --description 'web server' --save")?;
    let conf = a.run_ok("cat /etc/vz/conf/101.conf")?;
    assert!(
        conf.contains("ONBOOT=\"yes\"")
            && conf.contains("BOOTORDER=\"5\"")
            && conf.contains("DESCRIPTION=\"web server\""),
        "{conf}"
    );
    a.run_ok("vzctl set 101 --userpasswd user:s3cret")?;
    let shadow = a.run_ok("vzctl exec2 101 'grep ^user: /etc/shadow'")?;
    assert!(shadow.contains("user:$6$"), "{shadow}");

    // Persistence across stop/start.
    a.run_ok("vzctl exec2 101 'echo kept > /root/keep'")?;
    a.run_ok("vzctl stop 101")?;
    a.run_ok("vzctl start 101")?;
    assert_eq!(a.run_ok("vzctl exec2 101 'cat /root/keep'")?.trim(), "kept");

    // DISABLED refuses a start (105) unless forced.
    a.run_ok("vzctl stop 102 && vzctl set 102 --disabled yes --save")?;
    code(&mut a, "vzctl start 102", 105)?;
    a.run_ok("vzctl start 102 --force")?;
    a.run_ok("vzctl set 102 --disabled no --save")?;
    // Every shipped OpenVZ sample makes a VE that starts.
    for sample in [
        "basic",
        "light",
        "vswap-512m",
        "vswap-1g",
        "vswap-2g",
        "vswap-4g",
    ] {
        a.run_ok(&format!("vzctl --quiet create 120 --config {sample}"))?;
        a.run_ok("vzctl --quiet start 120 && vzctl --quiet stop 120 --fast")?;
        a.run_ok("vzctl --quiet destroy 120")?;
    }

    // Starts are forked by one `vesetup server`, vmmgr's child. The VE
    // init is vmmgr's child as well (not the server's), and no run is left
    // behind. Killed, the server is replaced at the next start.
    let procs = |a: &mut Appliance| -> anyhow::Result<Vec<(String, String, String)>> {
        let ps = a.run_ok("ps -o pid,ppid,args")?;
        Ok(ps
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (pid, ppid) = (f.next()?, f.next()?);
                let args = f.collect::<Vec<_>>().join(" ");
                Some((pid.to_owned(), ppid.to_owned(), args))
            })
            .collect())
    };
    let vmmgr = a.run_ok("pidof vmmgr")?.trim().to_owned();
    let server_of = |ps: &[(String, String, String)]| -> Vec<(String, String)> {
        ps.iter()
            .filter(|p| p.2 == "/sbin/vesetup server")
            .map(|p| (p.0.clone(), p.1.clone()))
            .collect()
    };
    let ps = procs(&mut a)?;
    let servers = server_of(&ps);
    assert_eq!(servers.len(), 1, "one setup server: {ps:?}");
    let (server, parent) = servers[0].clone();
    assert_eq!(parent, vmmgr, "the setup server is vmmgr's child: {ps:?}");
    let init101 = a.run_ok("cut -d' ' -f1 /run/vz/ve/101")?;
    let init101 = init101.trim();
    assert!(
        ps.iter().any(|p| p.0 == init101 && p.1 == vmmgr),
        "VE 101's init ({init101}) must be vmmgr's child: {ps:?}"
    );
    assert!(
        !ps.iter().any(|p| p.1 == server),
        "nothing may be left under the setup server: {ps:?}"
    );
    a.run_ok(&format!("kill {server}"))?;
    a.run_ok("vzctl stop 102 && vzctl start 102")?;
    let ps = procs(&mut a)?;
    let again = server_of(&ps);
    assert_eq!(again.len(), 1, "a new setup server: {ps:?}");
    assert_ne!(again[0].0, server, "the killed server was replaced: {ps:?}");
    assert!(
        !ps.iter().any(|p| p.0 == server),
        "the killed server was reaped: {ps:?}"
    );

    // A failed start loses nothing: a broken init in VE 102's private area.
    a.run_ok("vzctl stop 102")?;
    a.run_ok("mkdir -p /vz/private/102/upper/sbin && rm -f /vz/private/102/upper/sbin/init && touch /vz/private/102/upper/sbin/init")?;
    code(&mut a, "vzctl start 102", 47)?;
    assert!(a.run_ok("vzctl status 102")?.contains("down"));
    assert!(a
        .run_ok("cat /vz/private/102/upper/root/secret102")?
        .contains("secret"));
    a.run_ok("rm /vz/private/102/upper/sbin/init")?;
    a.run_ok("vzctl start 102")?;
    assert!(a
        .run_ok("vzctl exec2 102 'cat /root/secret102'")?
        .contains("secret"));

    // vmmgr killed with SIGKILL: the VEs keep running and are adopted again.
    let before = a.run_ok("cat /sys/fs/cgroup/vz/101/ve/cgroup.procs | sort")?;
    let init_before = a.run_ok("vzlist -H -o ctid,status 101")?;
    a.run_ok("kill -9 $(pidof vmmgr)")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (out, rc) = a.run_rc("vzlist -H -o ctid,status 101")?;
        if rc == 0 && out.contains("running") {
            break;
        }
        assert!(Instant::now() < deadline, "vmmgr did not come back: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(a.run_ok("vzlist -H -o ctid,status 101")?, init_before);
    assert_eq!(
        a.run_ok("cat /sys/fs/cgroup/vz/101/ve/cgroup.procs | sort")?,
        before,
        "VE processes changed"
    );
    assert!(a.run_ok("vzctl status 102")?.contains("running"));
    a.run_ok("vzctl stop 102")?;

    // Appliance reboot: ONBOOT VE 101 comes back with its files.
    a.exit_shell()?;
    a.send("reboot\r")?;
    a.expect("init: reboot now", Duration::from_secs(120))?;
    a.rebooted()?;
    a.enter_shell()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a
        .run_ok("vzlist -a -H -o ctid,status")?
        .contains("101 running")
    {
        assert!(
            Instant::now() < deadline,
            "ONBOOT VE 101 not started after reboot"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(a.run_ok("vzctl exec2 101 'cat /root/keep'")?.trim(), "kept");
    assert!(
        a.run_ok("vzctl status 102")?.contains("down"),
        "102 is not ONBOOT"
    );

    // enter: a shell on a pty in the VE, back to the appliance on exit.
    a.send("vzctl enter 101\r")?;
    a.expect("entered into VE 101", Duration::from_secs(20))?;
    a.send("echo IN-$(hostname)-$(tty)\r")?;
    a.expect("IN-ve101.example.com-/dev/pts/", Duration::from_secs(20))?;
    a.send("exit\r")?;
    a.expect("exited from VE 101", Duration::from_secs(20))?;
    a.run_ok("true")?;

    // destroy: refused while running, then removes config and private area.
    code(&mut a, "vzctl destroy 101", 32)?;
    a.run_ok("vzctl stop 101 && vzctl destroy 101")?;
    code(
        &mut a,
        "test -e /vz/private/101 || test -e /etc/vz/conf/101.conf",
        1,
    )?;
    assert_eq!(
        a.run_ok("vzctl status 101")?.trim(),
        "VEID 101 deleted unmounted down"
    );
    Ok(())
}
