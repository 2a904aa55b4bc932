//! Debian OS templates on one booted appliance: the seed's web VE
//! (sysvinit, syslogd, cron, sshd, Apache), Debian's default init (systemd)
//! in an unprivileged VE, per-VE SSH host keys, clean stops through the VE's
//! own init, `vzpkg list`/`install`, a template update picked up at the next
//! start with the VE's own files kept, and a truncated template refused.
//!
//! The new template version is made here from the one in the image (its
//! files plus a marker), and reaches the appliance as a user would bring
//! it: on a FAT disk (`image template NAME --out DIR` writes the same pair).

use qemu_tests::{Appliance, Opts};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The built debian-12-minimal image and conf (from the image build's cache).
fn built_minimal() -> anyhow::Result<(PathBuf, String)> {
    let opts = image::build::Options::new(image::workspace_dir());
    let b = image::template::build(
        &opts.workspace,
        "debian-12-minimal",
        &opts.cache,
        &opts.templates_cache,
        &opts.work.with_file_name("template-work"),
        opts.epoch,
    )?;
    Ok((b.image, std::fs::read_to_string(&b.conf)?))
}

fn sha256(p: &Path) -> anyhow::Result<String> {
    image::debs::sha256_file(p)
}

/// A FAT disk with: `debian-12-minimal.{erofs,conf}`, a new version (the
/// template's files plus `/etc/vz-template-update`), and
/// `broken.{erofs,conf}`, the same image cut short.
fn update_disk(dir: &Path) -> anyhow::Result<PathBuf> {
    let (img, conf) = built_minimal()?;
    let tree = dir.join("tree");
    sh(Command::new("fsck.erofs")
        .arg(format!("--extract={}", tree.display()))
        .arg("--preserve")
        .arg(&img))?;
    std::fs::write(tree.join("etc/vz-template-update"), "version 2\n")?;
    let new = dir.join("debian-12-minimal.erofs");
    sh(Command::new("mkfs.erofs")
        .args(["--quiet", "-zlz4hc", "-T1700000000"])
        .arg(&new)
        .arg(&tree))?;
    std::fs::remove_dir_all(&tree)?;
    let size = std::fs::metadata(&new)?.len();
    let sum = sha256(&new)?;
    let keep: String = conf
        .lines()
        .filter(|l| {
            !l.starts_with("VERSION=") && !l.starts_with("SIZE=") && !l.starts_with("SHA256=")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        dir.join("debian-12-minimal.conf"),
        format!("{keep}VERSION=\"test-update-2\"\nSIZE=\"{size}\"\nSHA256=\"{sum}\"\n"),
    )?;
    // Truncated: the conf describes the whole file.
    let data = std::fs::read(&new)?;
    std::fs::write(dir.join("broken.erofs"), &data[..data.len() / 2])?;
    std::fs::write(
        dir.join("broken.conf"),
        format!("DESCRIPTION=\"cut short\"\nSIZE=\"{size}\"\nSHA256=\"{sum}\"\n"),
    )?;
    // A FAT image holding the four files.
    let fat = dir.join("update.img");
    let f = std::fs::File::create(&fat)?;
    f.set_len(((size * 2 + (8 << 20)) >> 20 << 20) + (16 << 20))?;
    drop(f);
    sh(Command::new("mformat")
        .args(["-i"])
        .arg(&fat)
        .args(["-F", "::"]))?;
    for n in [
        "debian-12-minimal.erofs",
        "debian-12-minimal.conf",
        "broken.erofs",
        "broken.conf",
    ] {
        sh(Command::new("mcopy")
            .args(["-i"])
            .arg(&fat)
            .arg(dir.join(n))
            .arg(format!("::{n}")))?;
    }
    Ok(fat)
}

/// Polls `cmd` on the appliance until its output contains `want`.
fn wait_for(a: &mut Appliance, cmd: &str, want: &str, timeout: Duration) -> anyhow::Result<String> {
    let t = Instant::now();
    loop {
        let (out, _) = a.run_rc(cmd)?;
        if out.contains(want) {
            return Ok(out);
        }
        if t.elapsed() > timeout {
            anyhow::bail!("`{cmd}` did not show {want:?} within {timeout:?}; last output:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Stops `veid` and returns how long it took; fails if vmmgr had to kill it.
fn clean_stop(a: &mut Appliance, veid: u32) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = a.run_ok(&format!("vzctl stop {veid}"))?;
    let took = t.elapsed();
    assert!(out.contains("VE was stopped"), "{out}");
    let log = a.run_ok("cat /run/vz/log")?;
    let killed = format!("VE {veid}: still running");
    assert!(
        !log.contains(&killed),
        "VE {veid} had to be killed: its init did not halt:\n{log}"
    );
    Ok(took)
}

#[test]
fn debian_templates_web_systemd_update() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let fat = update_disk(scratch.path())?;
    let mut a = Appliance::boot_with(
        "templates",
        Opts {
            extra_disks: vec![fat],
            ..Opts::default()
        },
    )?;
    a.enter_shell()?;

    // What is present.
    let list = a.run_ok("vzpkg list")?;
    println!("templates: vzpkg list:\n{list}");
    for t in [
        "busybox",
        "debian-12-light",
        "debian-12-minimal",
        "debian-12-web",
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(t)),
            "{t} missing:\n{list}"
        );
    }
    let (out, rc) = a.run_rc("vzctl create 109 --ostemplate centos-7")?;
    assert_eq!(rc, 91, "{out}");
    assert!(
        out.contains("debian-12-web"),
        "the error lists what is present: {out}"
    );

    // The seed's web VE, twice.
    for v in [101, 102] {
        a.run_ok(&format!(
            "vzctl --quiet create {v} --ostemplate debian-12-web && \
             vzctl --quiet set {v} --ipadd 192.0.2.{v} --save"
        ))?;
    }
    let t = Instant::now();
    a.run_ok("vzctl --quiet start 101")?;
    a.run_ok("vzctl --quiet start 102")?;
    let page = wait_for(
        &mut a,
        "wget -q -O - http://192.0.2.101/ 2>&1 | head -c 300",
        "Apache",
        Duration::from_secs(120),
    )?;
    println!(
        "templates: two debian-12-web VEs started, Apache answered after {:.1} s: {}",
        t.elapsed().as_secs_f64(),
        page.lines().next().unwrap_or("")
    );
    let banner = wait_for(
        &mut a,
        "echo | nc 192.0.2.102 22 2>&1 | head -1",
        "SSH-2.0-OpenSSH",
        Duration::from_secs(120),
    )?;
    println!("templates: sshd in VE 102: {}", banner.trim());
    wait_for(
        &mut a,
        "wget -q -O - http://192.0.2.102/ 2>&1 | head -c 300",
        "Apache",
        Duration::from_secs(60),
    )?;
    let procs = a.run_ok("vzctl exec 101 ps -e -o comm=")?;
    for p in ["init", "syslogd", "cron", "sshd", "apache2"] {
        assert!(
            procs.lines().any(|l| l.trim() == p),
            "{p} not running in VE 101:\n{procs}"
        );
    }
    // The VE's syslogd takes a message on /dev/log and writes it where
    // Debian's syslog.conf says.
    a.run_ok("vzctl exec 101 logger -t vztest mark-101")?;
    wait_for(
        &mut a,
        "vzctl exec 101 grep vztest /var/log/syslog",
        "vztest: mark-101",
        Duration::from_secs(30),
    )?;
    let dpkg = a.run_ok("vzctl exec 101 'dpkg -l apache2 openssh-server | cat'")?;
    assert!(
        dpkg.lines().filter(|l| l.starts_with("ii ")).count() == 2,
        "{dpkg}"
    );
    let keys: Vec<String> = [101, 102]
        .iter()
        .map(|v| {
            a.run_ok(&format!(
                "vzctl exec {v} cat /etc/ssh/ssh_host_ed25519_key.pub"
            ))
        })
        .collect::<Result<_, _>>()?;
    assert!(keys[0].starts_with("ssh-ed25519 "), "{}", keys[0]);
    assert_ne!(keys[0], keys[1], "two VEs share an SSH host key");
    let vzlist = a.run_ok("vzlist -H -o veid,ostemplate 101 102")?;
    assert_eq!(vzlist.matches("debian-12-web").count(), 2, "{vzlist}");

    // vzctl stop: the VE's own init runs its stop scripts.
    let took = clean_stop(&mut a, 101)?;
    println!(
        "templates: debian-12-web VE 101 stopped cleanly in {:.1} s",
        took.as_secs_f64()
    );
    let syslog = a.run_ok("cat /vz/private/101/upper/var/log/syslog")?;
    assert!(
        syslog.contains("Switching to runlevel: 0"),
        "the VE's init did not go to runlevel 0:\n{syslog}"
    );
    let apache = a.run_ok("cat /vz/private/101/upper/var/log/apache2/error.log")?;
    assert!(
        apache.contains("caught SIGTERM, shutting down"),
        "Apache was not stopped by its init script:\n{apache}"
    );
    clean_stop(&mut a, 102)?;

    // The light web VE: the same five roles from busybox and dropbear.
    a.run_ok(
        "vzctl --quiet create 104 --ostemplate debian-12-light && \
         vzctl --quiet set 104 --ipadd 192.0.2.104 --save && vzctl --quiet start 104",
    )?;
    let page = wait_for(
        &mut a,
        "wget -q -O - http://192.0.2.104/ 2>&1 | head -c 300",
        "busybox httpd answers",
        Duration::from_secs(60),
    )?;
    println!("templates: debian-12-light VE 104 answers: {}", page.trim());
    let banner = wait_for(
        &mut a,
        "echo | nc 192.0.2.104 22 2>&1 | head -1",
        "SSH-2.0-dropbear",
        Duration::from_secs(60),
    )?;
    println!("templates: dropbear in VE 104: {}", banner.trim());
    let procs = a.run_ok("vzctl exec 104 busybox ps -o args")?;
    for p in ["init", "syslogd", "crond", "httpd", "dropbear"] {
        assert!(procs.contains(p), "{p} not running in VE 104:\n{procs}");
    }
    let took = clean_stop(&mut a, 104)?;
    println!(
        "templates: debian-12-light VE 104 stopped cleanly in {:.1} s",
        took.as_secs_f64()
    );

    // Debian's default init in an unprivileged VE, with the issue-7 view.
    a.run_ok(
        "vzctl --quiet create 103 --ostemplate debian-12-minimal && \
         vzctl --quiet set 103 --ram 256M --cpus 1 --save",
    )?;
    let t = Instant::now();
    a.run_ok("vzctl --quiet start 103")?;
    let state = wait_for(
        &mut a,
        "vzctl exec 103 systemctl is-system-running 2>&1",
        "running",
        Duration::from_secs(180),
    )?;
    println!(
        "templates: systemd in VE 103 reached {:?} in {:.1} s",
        state.trim(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(state.trim(), "running", "degraded or starting");
    let failed = a.run_ok("vzctl exec 103 systemctl --failed --no-legend --plain --no-pager")?;
    assert!(failed.trim().is_empty(), "failed units:\n{failed}");
    let target = a.run_ok("vzctl exec 103 systemctl is-active multi-user.target")?;
    assert_eq!(target.trim(), "active");
    let free = a.run_ok("vzctl exec 103 free -m")?;
    println!("templates: procps free -m in VE 103 (--ram 256M):\n{free}");
    let total: u64 = free
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Mem: line:\n{free}"))?;
    assert_eq!(total, 256, "free shows the VE's RAM:\n{free}");
    assert_eq!(a.run_ok("vzctl exec 103 nproc")?.trim(), "1");
    let up = a.run_ok("vzctl exec 103 cat /proc/uptime")?;
    let up_s: f64 = up.split_whitespace().next().unwrap_or("").parse()?;
    let host_up: f64 = a.run_ok("cut -d' ' -f1 /proc/uptime")?.trim().parse()?;
    println!("templates: uptime in VE 103 {up_s:.1} s, appliance {host_up:.1} s");
    assert!(up_s < host_up - 5.0, "the VE's uptime is its own");
    a.run_ok("vzctl exec 103 'echo mine > /root/mine'")?;
    let took = clean_stop(&mut a, 103)?;
    println!(
        "templates: systemd VE 103 stopped cleanly in {:.1} s",
        took.as_secs_f64()
    );

    // A truncated template is refused; nothing changes.
    a.run_ok("mkdir -p /run/upd && mount -t vfat -o ro /dev/vdb /run/upd")?;
    let before = a.run_ok("vzpkg list")?;
    let (out, rc) = a.run_rc("vzpkg install /run/upd/broken.erofs")?;
    assert_ne!(rc, 0, "{out}");
    assert!(
        out.contains("truncated") && out.contains("nothing was installed"),
        "{out}"
    );
    assert_eq!(a.run_ok("vzpkg list")?, before);
    assert_eq!(
        a.run_ok("ls -a /vz/template/cache | grep -c partial || true")?
            .trim(),
        "0"
    );

    // The update: VE 103 sees the new files at its next start, keeps its own.
    let out = a.run_ok("vzpkg install /run/upd/debian-12-minimal.erofs")?;
    assert!(out.contains("test-update-2"), "{out}");
    let list = a.run_ok("vzpkg list")?;
    assert!(list.contains("test-update-2"), "{list}");
    a.run_ok("vzctl --quiet start 103")?;
    assert_eq!(
        a.run_ok("vzctl exec 103 cat /etc/vz-template-update")?
            .trim(),
        "version 2"
    );
    assert_eq!(a.run_ok("vzctl exec 103 cat /root/mine")?.trim(), "mine");
    wait_for(
        &mut a,
        "vzctl exec 103 systemctl is-system-running 2>&1",
        "running",
        Duration::from_secs(180),
    )?;
    clean_stop(&mut a, 103)?;
    // The appliance still works.
    a.run_ok("vzctl --quiet start 101")?;
    wait_for(
        &mut a,
        "wget -q -O - http://192.0.2.101/ 2>&1 | head -c 300",
        "Apache",
        Duration::from_secs(120),
    )?;
    Ok(())
}
