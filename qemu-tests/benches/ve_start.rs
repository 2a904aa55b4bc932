//! VE start latency on the build machine, natively: `vesetup` (what
//! `vzctl start` runs) from exec until the VE's init has executed, against
//! `crun run --detach` of the same busybox rootfs. Needs root and the staged
//! image tree (run `cargo run -p image -- build` first); installs Debian's
//! `crun` when it is missing.
//!
//! `cargo bench -p qemu-tests --bench ve_start` (VZ_BENCH_STARTS=N, default 200)

use std::process::Command;
use std::time::{Duration, Instant};

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn sh(cmd: &str) -> anyhow::Result<()> {
    let st = Command::new("sh").arg("-c").arg(cmd).status()?;
    anyhow::ensure!(st.success(), "`{cmd}` failed");
    Ok(())
}

fn wait_gone(pid: i32) {
    // We are the subreaper of the VE init: reap it.
    // SAFETY: waitpid on a pid we adopted; a null status pointer is allowed.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// The reviewed policy with every masked and read-only path optional: the
/// build machine's kernel is not the appliance's (it may lack /proc/kcore),
/// and this bench measures the start, not the policy.
fn bench_policy(
    ws: &std::path::Path,
    base: &std::path::Path,
) -> anyhow::Result<std::path::PathBuf> {
    let dir = base.join("policy");
    std::fs::create_dir_all(&dir)?;
    for f in ["capabilities", "seccomp", "masked-paths", "readonly-paths"] {
        let text = std::fs::read_to_string(ws.join("rootfs/etc/vzpolicy").join(f))?;
        let text = if f.ends_with("-paths") {
            text.lines()
                .map(|l| {
                    let path = l.split('#').next().unwrap_or("").trim();
                    if path.starts_with('/') && !path.ends_with('?') {
                        format!("{path} ?\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect()
        } else {
            text
        };
        std::fs::write(dir.join(f), text)?;
    }
    Ok(dir)
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("VZ_BENCH_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ws = image::workspace_dir();
    let template = ws.join("target/vz-image/work/rootfs/usr/share/vz/template/busybox");
    let helper = ws.join("target/x86_64-unknown-linux-gnu/release/vesetup");
    anyhow::ensure!(
        template.is_dir() && helper.exists(),
        "build the image first (cargo run -p image -- build)"
    );
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let base = ws.join("target/bench-ve");
    let _ = Command::new("umount").arg(base.join("cg")).status();
    let _ = std::fs::remove_dir_all(&base);
    for d in ["cg", "private/upper", "private/work", "root"] {
        std::fs::create_dir_all(base.join(d))?;
    }
    sh(&format!(
        "mount -t cgroup2 none {}",
        base.join("cg").display()
    ))?;

    let spec = vmmgr::setup::Spec {
        veid: 101,
        template: template.clone(),
        private: base.join("private"),
        root: base.join("root"),
        cgroup: base.join("cg/ve"),
        uid_base: 200_000,
        gid_base: 200_000,
        id_count: 65_536,
        hostname: "bench".into(),
        policy_dir: bench_policy(&ws, &base)?,
        init: "/sbin/init".into(),
        pty_max: 256,
        devnodes: vec![],
        ipaddr: vec![],
        nameservers: vec![],
        searchdomains: vec![],
        netif: vec![],
        netdev: vec![],
        restore: None,
        checkpoint: true,
    };
    // A group left by an interrupted run (the cgroup2 hierarchy outlives it).
    let _ = std::fs::remove_dir(&spec.cgroup);
    let mut ours = Vec::new();
    // Runs forked by a `vesetup server`, as vmmgr gets them.
    let launcher = vmmgr::setup::launch::Launcher::new(&helper);
    for _ in 0..n {
        std::fs::create_dir(&spec.cgroup)?;
        let t = Instant::now();
        let out = vmmgr::setup::spawn_helper(&launcher, &spec);
        let d = t.elapsed();
        let pid = match out {
            vmmgr::setup::Outcome::Started { pid, .. } => pid,
            vmmgr::setup::Outcome::Failed { message, .. } => anyhow::bail!("vesetup: {message}"),
        };
        ours.push(d);
        std::fs::write(spec.cgroup.join("cgroup.kill"), "1")?;
        wait_gone(pid);
        while std::fs::remove_dir(&spec.cgroup).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = Command::new("umount").arg(base.join("cg")).status();

    if Command::new("crun").arg("--version").output().is_err() {
        sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -q crun >/dev/null")?;
    }
    let bundle = base.join("crun");
    std::fs::create_dir_all(&bundle)?;
    sh(&format!(
        "mkdir -p {b}/rootfs && cp -a {}/. {b}/rootfs",
        template.display(),
        b = bundle.display()
    ))?;
    sh(&format!(
        "cd {} && rm -f config.json && crun spec",
        bundle.display()
    ))?;
    let cfg = std::fs::read_to_string(bundle.join("config.json"))?
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"sh\"", "\"/sbin/init\"");

    std::fs::write(bundle.join("config.json"), cfg)?;
    // This build machine runs hybrid cgroups (v1 plus a v2 hierarchy holding a
    // controller), which crun refuses. In a private mount namespace of ours,
    // /sys/fs/cgroup becomes a plain cgroup2 mount, as on the appliance.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    sh("mount --make-rprivate / && mount -t cgroup2 none /sys/fs/cgroup")?;
    let mut theirs = Vec::new();
    for i in 0..n {
        let name = format!("vzbench{i}");
        let t = Instant::now();
        // Without a cgroup: crun's device eBPF program needs RLIMIT_MEMLOCK,
        // which this build machine's sandbox does not grant. (vesetup does
        // join a cgroup; crun is spared that write.)
        let st = Command::new("crun")
            .args(["--cgroup-manager=disabled", "run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(&name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        let d = t.elapsed();
        anyhow::ensure!(st.success(), "crun run failed");
        theirs.push(d);
        let _ = Command::new("crun")
            .args(["--cgroup-manager=disabled", "delete", "--force", &name])
            .status();
    }
    let report = |label: &str, v: &mut Vec<Duration>| {
        let med = percentile(v, 0.5);
        let p99 = percentile(v, 0.99);
        println!(
            "{label:<28} median {:>7.2} ms   p99 {:>7.2} ms   ({} starts)",
            med.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            v.len()
        );
        med
    };
    let a = report("vz VE start (vesetup)", &mut ours);
    let b = report("crun run --detach", &mut theirs);
    println!(
        "ratio vz/crun (median): {:.2}",
        a.as_secs_f64() / b.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
