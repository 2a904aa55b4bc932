//! `image`: build, boot and pin the appliance image.

use anyhow::{bail, Context, Result};
use image::{build, debs, hosttools, qemu};
use std::path::PathBuf;

const USAGE: &str = "\
usage: image <command> [options]

commands:
  build [--out FILE] [--config DIR] [--data-size MIB]
        build the disk image (default out/vz.img); --config DIR bakes the
        files of DIR (vz.conf, conf/<VEID>.conf) into the boot config
  run [--image FILE] [--kvm] [--persistent] [--hostfwd [tcp:]HOST:GUEST]... [--memory MIB]
        boot the image under QEMU (TCG unless --kvm) with the console on this
        terminal; changes go to a throw-away overlay unless --persistent.
        ctrl-a x quits QEMU, ctrl-a c toggles the QEMU monitor
  pin   refresh rootfs/packages.lock from rootfs/packages.list with the
        archive's current versions (run `apt-get update` first)
";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("image: error: {e:#}");
        std::process::exit(1);
    }
}

fn value(args: &mut std::vec::IntoIter<String>, flag: &str) -> Result<String> {
    args.next()
        .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
}

fn real_main() -> Result<()> {
    let mut args: std::vec::IntoIter<String> =
        std::env::args().skip(1).collect::<Vec<_>>().into_iter();
    let Some(cmd) = args.next() else {
        bail!("no command given\n\n{USAGE}");
    };
    let ws = image::workspace_dir();
    match cmd.as_str() {
        "build" => {
            let mut opts = build::Options::new(ws);
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--out" => opts.out = PathBuf::from(value(&mut args, &a)?),
                    "--config" => opts.config = Some(PathBuf::from(value(&mut args, &a)?)),
                    "--data-size" => {
                        let v = value(&mut args, &a)?;
                        let mib: u64 = v.parse().ok().filter(|m| *m >= 64).with_context(|| {
                            format!("--data-size {v:?}: expected a size in MiB, at least 64")
                        })?;
                        opts.data_size = mib * image::disk::MIB;
                    }
                    _ => bail!("build: unknown option {a:?}\n\n{USAGE}"),
                }
            }
            let s = build::build(&opts)?;
            println!("image:   {}", s.path.display());
            println!(
                "size:    {} bytes ({} MiB)",
                s.size,
                s.size / image::disk::MIB
            );
            println!("kernel:  {}", s.kernel_release);
            println!("sha256:  {}", s.sha256);
            Ok(())
        }
        "run" => run(args, ws),
        "pin" => {
            if let Some(a) = args.next() {
                bail!("pin: unexpected argument {a:?}\n\n{USAGE}");
            }
            let list_path = ws.join("rootfs/packages.list");
            let text = std::fs::read_to_string(&list_path)
                .with_context(|| format!("reading {}", list_path.display()))?;
            let pins = debs::pin(&debs::parse_list(&text))?;
            let lock = ws.join("rootfs/packages.lock");
            std::fs::write(&lock, debs::render_lock(&pins))
                .with_context(|| format!("writing {}", lock.display()))?;
            println!(
                "pinned {} packages in {}; review with `git diff`",
                pins.len(),
                lock.display()
            );
            Ok(())
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn run(mut args: std::vec::IntoIter<String>, ws: PathBuf) -> Result<()> {
    let mut image = ws.join(build::DEFAULT_OUT);
    let mut kvm = false;
    let mut persistent = false;
    let mut hostfwd = Vec::new();
    let mut memory = 1024;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--image" => image = PathBuf::from(value(&mut args, &a)?),
            "--kvm" => kvm = true,
            "--persistent" => persistent = true,
            "--hostfwd" => hostfwd.push(value(&mut args, &a)?),
            "--memory" => {
                let v = value(&mut args, &a)?;
                memory = v
                    .parse()
                    .with_context(|| format!("--memory {v:?}: expected MiB"))?;
            }
            _ => bail!("run: unknown option {a:?}\n\n{USAGE}"),
        }
    }
    hosttools::require(hosttools::RUN_TOOLS)?;
    if !image.exists() {
        bail!(
            "image {} not found: build it first with `cargo run -p image -- build`",
            image.display()
        );
    }
    let dir = tempdir()?;
    let (disk, fmt) = if persistent {
        (image.clone(), "raw")
    } else {
        let overlay = dir.join("overlay.qcow2");
        qemu::create_overlay(&image, &overlay)?;
        (overlay, "qcow2")
    };
    let m = qemu::Machine {
        disk,
        disk_format: fmt,
        kvm,
        memory_mib: memory,
        cpus: 2,
        console: qemu::Console::Interactive,
        mgmt_socket: dir.join("mgmt.sock"),
        qmp_socket: None,
        hostfwd,
        extra_disks: vec![],
        links: vec![],
    };
    eprintln!(
        "booting {} ({}), management channel on {}; ctrl-a x quits",
        image.display(),
        if persistent {
            "persistent"
        } else {
            "changes discarded on exit"
        },
        m.mgmt_socket.display()
    );
    let status = m
        .command()?
        .status()
        .context("starting qemu-system-x86_64")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("QEMU exited with {status}");
    }
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("vz-run-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    Ok(base)
}
