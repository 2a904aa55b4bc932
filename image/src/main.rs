//! `image`: build, boot and pin the appliance image.

use anyhow::{bail, Context, Result};
use image::{build, debs, hosttools, qemu, template};
use std::path::PathBuf;

const USAGE: &str = "\
usage: image <command> [options]

commands:
  build [--out FILE] [--config DIR] [--data-size MIB] [--template NAME|all|none]...
        build the disk image (default out/vz.img); --config DIR bakes the
        files of DIR (vz.conf, conf/<VEID>.conf) into the boot config;
        --template picks the Debian OS templates that go in beside busybox
        (default: debian-12-minimal; built as root, and cached)
  run [--image FILE] [--kvm] [--persistent] [--hostfwd [tcp:]HOST:GUEST]... [--memory MIB]
        boot the image under QEMU (TCG unless --kvm) with the console on this
        terminal; changes go to a throw-away overlay unless --persistent.
        ctrl-a x quits QEMU, ctrl-a c toggles the QEMU monitor
  template NAME [--out DIR]
        build (or take from the cache) one Debian OS template: NAME.erofs and
        NAME.conf (its settings, version, size, sha256), as `vzpkg install`
        takes them on a running appliance; --out copies both into DIR
  pin [--template NAME]
        refresh rootfs/packages.lock from rootfs/packages.list with the
        archive's current versions (run `apt-get update` first); with
        --template, the Debian template's rootfs/templates/NAME/packages.lock
        (its whole closure)
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
            let mut opts = build::Options::new(ws.clone());
            let mut templates_given = false;
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
                    "--template" => {
                        let v = value(&mut args, &a)?;
                        let debian: Vec<String> = template::all(&ws.join("rootfs"))?
                            .into_iter()
                            .filter(|t| t.1)
                            .map(|t| t.0)
                            .collect();
                        if !templates_given {
                            opts.templates.clear();
                            templates_given = true;
                        }
                        match v.as_str() {
                            "all" => opts.templates = debian,
                            "none" | "busybox" => {}
                            _ if debian.contains(&v) => {
                                if !opts.templates.contains(&v) {
                                    opts.templates.push(v);
                                }
                            }
                            _ => bail!(
                                "--template {v:?}: no such template; known: busybox (always in), {}, all, none",
                                debian.join(", ")
                            ),
                        }
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
        "template" => {
            let mut name = None;
            let mut out = None;
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--out" => out = Some(PathBuf::from(value(&mut args, &a)?)),
                    _ if name.is_none() && !a.starts_with('-') => name = Some(a),
                    _ => bail!("template: unexpected argument {a:?}\n\n{USAGE}"),
                }
            }
            let name = name.with_context(|| format!("template: which one?\n\n{USAGE}"))?;
            let opts = build::Options::new(ws.clone());
            let debian: Vec<String> = template::all(&ws.join("rootfs"))?
                .into_iter()
                .filter(|t| t.1)
                .map(|t| t.0)
                .collect();
            if !debian.contains(&name) {
                bail!(
                    "template: {name:?} is not a Debian template; they are: {}",
                    debian.join(", ")
                );
            }
            let b = template::build(
                &ws,
                &name,
                &opts.cache,
                &opts.templates_cache,
                &opts.work.with_file_name("template-work"),
                opts.epoch,
            )?;
            let (image, conf) = match out {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let i = dir.join(format!("{name}.erofs"));
                    let c = dir.join(format!("{name}.conf"));
                    std::fs::copy(&b.image, &i)
                        .with_context(|| format!("writing {}", i.display()))?;
                    std::fs::copy(&b.conf, &c)
                        .with_context(|| format!("writing {}", c.display()))?;
                    (i, c)
                }
                None => (b.image.clone(), b.conf.clone()),
            };
            println!("template: {name} {}", b.version);
            println!("image:    {}", image.display());
            println!("conf:     {}", conf.display());
            println!(
                "size:     {} bytes ({:.1} MiB)",
                b.size,
                b.size as f64 / 1048576.0
            );
            println!("packages: {}", b.packages);
            println!("sha256:   {}", b.sha256);
            Ok(())
        }
        "pin" => {
            let mut template = None;
            while let Some(a) = args.next() {
                match a.as_str() {
                    "--template" => template = Some(value(&mut args, &a)?),
                    _ => bail!("pin: unexpected argument {a:?}\n\n{USAGE}"),
                }
            }
            if let Some(name) = template {
                let rootfs = ws.join("rootfs");
                let known = template::all(&rootfs)?;
                if !known.iter().any(|(n, debian)| *n == name && *debian) {
                    let debian: Vec<_> = known.iter().filter(|t| t.1).map(|t| &t.0).collect();
                    bail!("pin: {name:?} is not a Debian template; they are: {debian:?}");
                }
                let pins = template::pin(&rootfs, &name)?;
                let lock = rootfs.join("templates").join(&name).join("packages.lock");
                std::fs::write(&lock, template::render_lock(&name, &pins))
                    .with_context(|| format!("writing {}", lock.display()))?;
                println!(
                    "pinned {} packages in {}; review with `git diff`",
                    pins.len(),
                    lock.display()
                );
                return Ok(());
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
        tb_mib: qemu::TB_MIB,
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
