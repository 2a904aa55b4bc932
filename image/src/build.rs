//! `image build`: from pinned packages and our sources to one disk image.

use crate::cpio::{Archive, Node};
use crate::debs::{self, Pin};
use crate::disk::{self, FatFile, Part, MIB};
use crate::{elf, hosttools, kbuild, kmod};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Inputs and knobs of a build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repository root (holds `rootfs/` and the Cargo workspace).
    pub workspace: PathBuf,
    pub out: PathBuf,
    /// Downloaded packages, kept between builds.
    pub cache: PathBuf,
    /// Built OS templates, kept between builds by a key over their inputs.
    pub templates_cache: PathBuf,
    /// Scratch space, emptied at the start of each build.
    pub work: PathBuf,
    /// A directory whose files replace the default boot config (`vz/`).
    pub config: Option<PathBuf>,
    pub boot_size: u64,
    pub data_size: u64,
    /// Timestamp for every file (SOURCE_DATE_EPOCH).
    pub epoch: u64,
    /// Cargo target directory for the appliance binaries (default: the
    /// workspace's, or `$CARGO_TARGET_DIR`).
    pub cargo_target_dir: Option<PathBuf>,
    /// The Debian templates to build into VZDATA (busybox is always in VZROOT).
    pub templates: Vec<String>,
}

/// The Debian template an image gets when `--template` is not given.
pub const DEFAULT_TEMPLATE: &str = "debian-12-minimal";

/// The default output path (also in the README).
pub const DEFAULT_OUT: &str = "out/vz.img";

impl Options {
    pub fn new(workspace: PathBuf) -> Self {
        let target = workspace.join("target/vz-image");
        let cache = default_cache(&target);
        Options {
            out: workspace.join(DEFAULT_OUT),
            templates_cache: cache.join("templates"),
            cache,
            work: target.join("work"),
            config: None,
            boot_size: 64 * MIB,
            data_size: 512 * MIB,
            epoch: source_date_epoch(&workspace),
            cargo_target_dir: std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
            templates: vec![DEFAULT_TEMPLATE.to_owned()],
            workspace,
        }
    }
}

/// Where downloaded packages and built templates are kept: `$VZ_IMAGE_CACHE`,
/// else `~/.cache/vz-image` (shared by every clone on the machine: entries
/// are named by sha256 and input keys, so clones cannot disagree), else under
/// the target directory.
fn default_cache(target: &Path) -> PathBuf {
    if let Some(c) = std::env::var_os("VZ_IMAGE_CACHE") {
        return PathBuf::from(c);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("vz-image");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/vz-image"),
        None => target.join("cache"),
    }
}

/// SOURCE_DATE_EPOCH if set, else the time of the last commit, else a constant.
pub fn source_date_epoch(workspace: &Path) -> u64 {
    if let Some(e) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return e;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(workspace)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(1_700_000_000)
}

/// Progress lines: step number, what, elapsed.
struct Progress {
    start: Instant,
    step: usize,
    total: usize,
}

impl Progress {
    fn step(&mut self, what: &str) -> Instant {
        self.step += 1;
        eprintln!(
            "[{}/{}] {what} (at {:.1} s)",
            self.step,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        Instant::now()
    }
}

fn human(bytes: u64) -> String {
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// What the build produced.
#[derive(Debug)]
pub struct Summary {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub kernel_release: String,
}

/// Builds the image.
pub fn build(opts: &Options) -> Result<Summary> {
    let mut p = Progress {
        start: Instant::now(),
        step: 0,
        total: 10,
    };
    hosttools::require(hosttools::BUILD_TOOLS)?;
    let rootfs = opts.workspace.join("rootfs");
    let lock_path = rootfs.join("packages.lock");
    let lock_text = read_text(&lock_path)?;
    let pins = debs::parse_lock(&lock_text, &lock_path)?;

    let t = p.step("fetching pinned Debian packages");
    std::fs::create_dir_all(&opts.cache)
        .with_context(|| format!("creating cache {}", opts.cache.display()))?;
    let mut debs_paths = Vec::new();
    let mut fetched = 0;
    for pin in &pins {
        let (path, new) = debs::fetch(pin, &opts.cache)?;
        fetched += usize::from(new);
        debs_paths.push(path);
    }
    eprintln!(
        "      {} packages ({} downloaded, {} from cache {}), sha256 checked, {:.1} s",
        pins.len(),
        fetched,
        pins.len() - fetched,
        opts.cache.display(),
        t.elapsed().as_secs_f64()
    );

    let t = p.step("unpacking packages");
    let _ = std::fs::remove_dir_all(&opts.work);
    let sysroot = opts.work.join("sysroot");
    std::fs::create_dir_all(&sysroot)?;
    for deb in &debs_paths {
        debs::unpack(deb, &sysroot)?;
    }
    eprintln!("      done in {:.1} s", t.elapsed().as_secs_f64());

    let t = p.step("building init and vmmgr (static, release)");
    let bins = build_rust(&opts.workspace, opts.cargo_target_dir.as_deref())?;
    for (name, path) in &bins {
        let size = std::fs::metadata(path)?.len();
        eprintln!("      {name}: {}", human(size));
    }
    eprintln!("      done in {:.1} s", t.elapsed().as_secs_f64());

    let t = p.step("building our kernel modules, resolving the module list");
    let kernel = find_kernel(&sysroot, &pins)?;
    let ours = kbuild::build(&sysroot, &kernel.release, &rootfs.join("kmod"), &opts.work)?;
    eprintln!(
        "      built {} ({:.1} s)",
        if ours.is_empty() {
            "none".to_owned()
        } else {
            ours.join(", ")
        },
        t.elapsed().as_secs_f64()
    );
    let kdir = sysroot.join("lib/modules").join(&kernel.release);
    let index = kmod::Kernel::index(&kdir)?;
    let lists = kmod::Lists::parse(&read_text(&rootfs.join("modules.list"))?)?;
    let mut deps = |p: &Path| kmod::deps_from_file(p);
    let early = index.load_order(&lists.initramfs, &mut deps)?;
    let with_fallback = index.load_order(
        &[lists.initramfs.clone(), lists.fallback.clone()].concat(),
        &mut deps,
    )?;
    let fallback: Vec<PathBuf> = with_fallback
        .into_iter()
        .filter(|m| !early.contains(m))
        .collect();
    let mut order = index.load_order(&lists.on_root(), &mut deps)?;
    let load_list = index.dep_lines(&order, &mut deps)?;
    let to_load = order.len();
    // VZROOT holds the fallback drivers' files too (not loaded from its list).
    order.extend(
        fallback
            .iter()
            .filter(|m| !order.contains(m))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let plain =
        |v: &[PathBuf]| -> String { v.iter().map(|p| format!("{}\n", p.display())).collect() };
    let initramfs_mods = kmod::InitramfsModules {
        load: plain(&early),
        fallback: plain(&fallback),
        files: [early.clone(), fallback.clone()].concat(),
    };
    eprintln!(
        "      kernel {}: {} modules to load, {} of them before the root switch ({} more if \
         the root disk is late)",
        kernel.release,
        to_load,
        early.len(),
        fallback.len()
    );
    let _ = t;

    let t = p.step("staging VZROOT");
    let tree = opts.work.join("rootfs");
    stage_root(
        &tree,
        &sysroot,
        &rootfs,
        &bins,
        &kernel.release,
        &order,
        &load_list,
    )?;
    let seed = format!("{lock_text}{}", opts.epoch);
    let root_img = opts.work.join("vzroot.img");
    disk::build_erofs(
        &root_img,
        &tree,
        &disk::derived_uuid(seed.as_bytes(), "VZROOT-fs"),
        opts.epoch,
    )?;
    let root_size = std::fs::metadata(&root_img)?.len();
    eprintln!(
        "      erofs {} in {:.1} s",
        human(root_size),
        t.elapsed().as_secs_f64()
    );

    let t = p.step("writing the initramfs");
    let initrd = opts.work.join("initrd.img");
    write_initramfs(
        &initrd,
        &sysroot,
        &bins,
        &kernel.release,
        &initramfs_mods,
        opts.epoch,
    )?;
    eprintln!(
        "      {} in {:.1} s",
        human(std::fs::metadata(&initrd)?.len()),
        t.elapsed().as_secs_f64()
    );

    let t = p.step("writing VZBOOT (FAT32, syslinux, kernel, boot config)");
    let boot_img = opts.work.join("vzboot.img");
    let config_dir = stage_config(&opts.work, &rootfs, opts.config.as_deref())?;
    let mut files = vec![
        FatFile {
            src: kernel.vmlinuz.clone(),
            dest: "vmlinuz".into(),
        },
        FatFile {
            src: initrd.clone(),
            dest: "initrd.img".into(),
        },
        FatFile {
            src: rootfs.join("boot/syslinux.cfg"),
            dest: "syslinux/syslinux.cfg".into(),
        },
    ];
    let mut dirs = vec!["syslinux".to_owned(), "vz".to_owned()];
    collect_config(&config_dir, "vz", &mut dirs, &mut files)?;
    let dir_refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let serial = u32::from_str_radix(&disk::derived_uuid(seed.as_bytes(), "VZBOOT-fs")[..8], 16)?;
    disk::build_fat(
        &boot_img,
        &disk::FatSpec {
            size: opts.boot_size,
            serial,
            hidden_sectors: disk::FIRST_LBA,
            dirs: &dir_refs,
            files: &files,
            syslinux: &sysroot.join("usr/bin/syslinux"),
            epoch: opts.epoch,
        },
    )?;
    eprintln!(
        "      {} in {:.1} s",
        human(opts.boot_size),
        t.elapsed().as_secs_f64()
    );

    let t = p.step("OS templates (Debian, mmdebstrap + erofs; cached)");
    let data_tree = opts.work.join("vzdata");
    let cache_dir = data_tree.join("template/cache");
    std::fs::create_dir_all(&cache_dir)?;
    let mut templates_size = 0;
    for name in &opts.templates {
        let tt = Instant::now();
        let b = crate::template::build(
            &opts.workspace,
            name,
            &opts.cache,
            &opts.templates_cache,
            &opts.work.with_file_name("template-work"),
            opts.epoch,
        )?;
        let dst = cache_dir.join(format!("{name}-{}.erofs", b.sha256));
        if std::fs::hard_link(&b.image, &dst).is_err() {
            copy_file(&b.image, &dst)?;
        }
        copy_file(&b.conf, &cache_dir.join(format!("{name}.conf")))?;
        templates_size += b.size;
        eprintln!(
            "      {name} {}: {} packages, erofs {}, {} in {:.1} s",
            b.version,
            b.packages,
            human(b.size),
            if b.cached { "from the cache" } else { "built" },
            tt.elapsed().as_secs_f64()
        );
    }
    if opts.templates.is_empty() {
        eprintln!("      none (busybox only, in VZROOT)");
    }
    let _ = t;

    let t = p.step("writing VZDATA (ext4, quota, project, the templates)");
    let data_img = opts.work.join("vzdata.img");
    // The room asked for is free room for VEs: the templates come on top.
    let data_size = opts.data_size + disk::round_mib(templates_size + templates_size / 16);
    disk::build_ext4(
        &data_img,
        data_size,
        &disk::derived_uuid(seed.as_bytes(), "VZDATA-fs"),
        opts.epoch,
        Some(&data_tree),
    )?;
    eprintln!(
        "      {} in {:.1} s",
        human(data_size),
        t.elapsed().as_secs_f64()
    );

    let t = p.step("assembling the GPT disk");
    let parts = [
        Part {
            label: "VZBOOT",
            type_guid: disk::TYPE_BASIC_DATA,
            uuid: disk::derived_uuid(seed.as_bytes(), "VZBOOT"),
            image: boot_img,
            size: opts.boot_size,
            bios_bootable: true,
        },
        Part {
            label: "VZROOT",
            type_guid: disk::TYPE_LINUX_FS,
            uuid: disk::derived_uuid(seed.as_bytes(), "VZROOT"),
            image: root_img,
            size: disk::round_mib(root_size),
            bios_bootable: false,
        },
        Part {
            label: "VZDATA",
            type_guid: disk::TYPE_LINUX_FS,
            uuid: disk::derived_uuid(seed.as_bytes(), "VZDATA"),
            image: data_img,
            size: data_size,
            bios_bootable: false,
        },
    ];
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp_out = opts.out.with_extension("img.partial");
    let size = disk::assemble(
        &tmp_out,
        &disk::derived_uuid(seed.as_bytes(), "disk"),
        &parts,
        &sysroot.join("usr/lib/syslinux/mbr/gptmbr.bin"),
    )?;
    std::fs::rename(&tmp_out, &opts.out)
        .with_context(|| format!("moving the image to {}", opts.out.display()))?;
    let sha256 = debs::sha256_file(&opts.out)?;
    eprintln!("      done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(Summary {
        path: opts.out.clone(),
        size,
        sha256,
        kernel_release: kernel.release,
    })
}

struct KernelFiles {
    release: String,
    vmlinuz: PathBuf,
}

fn find_kernel(sysroot: &Path, pins: &[Pin]) -> Result<KernelFiles> {
    let pin = pins
        .iter()
        .find(|p| p.name.starts_with("linux-image-"))
        .context("rootfs/packages.lock pins no linux-image-* package")?;
    let release = pin.name.trim_start_matches("linux-image-").to_owned();
    let vmlinuz = sysroot.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.exists() || !sysroot.join("lib/modules").join(&release).exists() {
        bail!(
            "package {} unpacked no boot/vmlinuz-{release} or lib/modules/{release}: \
             rootfs/packages.lock does not match the archive; re-pin with `cargo run -p image -- pin`",
            pin.name
        );
    }
    Ok(KernelFiles { release, vmlinuz })
}

/// `cargo build` of the appliance binaries, static, for x86_64-unknown-linux-gnu.
fn build_rust(
    workspace: &Path,
    target_dir: Option<&Path>,
) -> Result<BTreeMap<&'static str, PathBuf>> {
    let target = "x86_64-unknown-linux-gnu";
    let mut c = Command::new("cargo");
    c.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            target,
            "-p",
            "init",
            "-p",
            "vmmgr",
        ])
        .env(
            "RUSTFLAGS",
            format!(
                "-C target-feature=+crt-static --remap-path-prefix={}=/src",
                workspace.display()
            ),
        )
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit());
    let target_dir = target_dir
        .map(Path::to_owned)
        .unwrap_or_else(|| workspace.join("target"));
    c.env("CARGO_TARGET_DIR", &target_dir);
    let status = c.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build of the appliance binaries failed ({status}); see the errors above");
    }
    let dir = target_dir.join(target).join("release");
    let mut bins = BTreeMap::new();
    for name in [
        "init",
        "vmmgr",
        "vzconsole",
        "vesetup",
        "vzctl",
        "vzlist",
        "vzpkg",
        "vzmigrate",
    ] {
        let p = dir.join(name);
        if !p.exists() {
            bail!("cargo did not produce {}", p.display());
        }
        bins.insert(name, p);
    }
    Ok(bins)
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(dst);
    std::fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

fn symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(d) = link.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {target}", link.display()))
}

/// Copies `rel` from the sysroot into the tree, following symlinks (the link
/// and what it points to are both copied).
fn copy_from_sysroot(sysroot: &Path, tree: &Path, rel: &Path) -> Result<()> {
    let src = sysroot.join(rel);
    let dst = tree.join(rel);
    let meta = std::fs::symlink_metadata(&src)
        .with_context(|| format!("{} is not in the fetched packages", rel.display()))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&src)?;
        symlink(&target.to_string_lossy(), &dst)?;
        let resolved = if target.is_absolute() {
            target.strip_prefix("/").unwrap_or(&target).to_owned()
        } else {
            rel.parent().unwrap_or(Path::new("")).join(&target)
        };
        return copy_from_sysroot(sysroot, tree, &normalize(&resolved));
    }
    copy_file(&src, &dst)
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn busybox_applets(sysroot: &Path) -> Result<Vec<String>> {
    let out = disk::run(
        Command::new(sysroot.join("bin/busybox")).arg("--list-full"),
        "listing busybox applets",
    )?;
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    Ok(v)
}

fn stage_root(
    tree: &Path,
    sysroot: &Path,
    rootfs: &Path,
    bins: &BTreeMap<&'static str, PathBuf>,
    release: &str,
    order: &[PathBuf],
    load_list: &str,
) -> Result<()> {
    for d in [
        "bin", "sbin", "etc", "lib", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp",
        "vz", "boot", "root", "mnt", "var",
    ] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    for (name, path) in bins {
        copy_file(path, &tree.join("sbin").join(name))?;
    }
    copy_file(&sysroot.join("bin/busybox"), &tree.join("bin/busybox"))?;
    for applet in busybox_applets(sysroot)? {
        let link = tree.join(&applet);
        if applet == "linuxrc" || link.exists() || std::fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        symlink("/bin/busybox", &link)?;
    }
    // `PATH` copies a file (a symlink with what it points to); `LINK -> TARGET`
    // makes a link the package's maintainer scripts would have made (Debian's
    // alternatives) and copies its target.
    let mut programs: Vec<PathBuf> = Vec::new();
    let mut links: Vec<(PathBuf, String)> = Vec::new();
    for line in debs::parse_list(&read_text(&rootfs.join("files.list"))?) {
        match line.split_once(" -> ") {
            Some((link, target)) => {
                let link = PathBuf::from(link.trim().trim_start_matches('/'));
                let target = target.trim().to_owned();
                let resolved = link.parent().unwrap_or(Path::new("")).join(&target);
                programs.push(normalize(&resolved));
                links.push((link, target));
            }
            None => programs.push(PathBuf::from(line.trim_start_matches('/'))),
        }
    }
    for p in &programs {
        copy_from_sysroot(sysroot, tree, p)?;
    }
    for (link, target) in &links {
        symlink(target, &tree.join(link))?;
    }
    for lib in elf::closure(sysroot, &programs)? {
        copy_from_sysroot(sysroot, tree, &lib)?;
    }
    let kdir = Path::new("lib/modules").join(release);
    for m in order {
        copy_file(&sysroot.join(&kdir).join(m), &tree.join(&kdir).join(m))?;
    }
    stage_templates(tree, sysroot, rootfs)?;
    // Configuration: the reviewed files, then what the build derives.
    copy_tree(&rootfs.join("etc"), &tree.join("etc"))?;
    std::fs::write(tree.join("etc/modules.load"), load_list)?;
    symlink("/boot/vz", &tree.join("etc/vz"))?;
    symlink("/proc/self/mounts", &tree.join("etc/mtab"))?;
    // vmmgr (net.conf) or the DHCP client writes it.
    symlink("/run/resolv.conf", &tree.join("etc/resolv.conf"))?;
    symlink("/vz/log", &tree.join("var/log"))?;
    symlink("/run", &tree.join("var/run"))?;
    std::fs::write(
        tree.join("etc/os-release"),
        format!(
            "NAME=\"vz appliance\"\nID=vz\nVERSION_ID={}\nPRETTY_NAME=\"vz appliance {}\"\n",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION")
        ),
    )?;
    Ok(())
}

/// Where VE templates live on VZROOT (read-only, shared by every VE).
pub const TEMPLATE_DIR: &str = "usr/share/vz/template";

/// Builds each busybox template of `rootfs/templates/<name>/` (those without
/// a `packages.list`; the Debian ones are images, `crate::template`): a
/// busybox userland plus the template's own files; its `template.conf` goes
/// beside the tree.
fn stage_templates(tree: &Path, sysroot: &Path, rootfs: &Path) -> Result<()> {
    let src = rootfs.join("templates");
    let names: Vec<std::ffi::OsString> = crate::template::all(rootfs)?
        .into_iter()
        .filter(|(_, debian)| !debian)
        .map(|(n, _)| n.into())
        .collect();
    let applets = busybox_applets(sysroot)?;
    for name in names {
        let t = tree.join(TEMPLATE_DIR).join(&name);
        for d in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "etc",
            "dev",
            "proc",
            "sys",
            "run",
            "tmp",
            "root",
            "home/user",
            "var/log",
            "var/run",
            "var/spool/cron/crontabs",
            "mnt",
        ] {
            std::fs::create_dir_all(t.join(d))?;
        }
        // Sticky and writable by all, as every Unix /tmp: set here, so a
        // VE's start has nothing to fix (the template's rcS runs no chmod).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        copy_file(&sysroot.join("bin/busybox"), &t.join("bin/busybox"))?;
        for applet in &applets {
            let link = t.join(applet);
            if applet == "linuxrc" || std::fs::symlink_metadata(&link).is_ok() {
                continue;
            }
            symlink("/bin/busybox", &link)?;
        }
        let own = src.join(&name);
        for e in std::fs::read_dir(&own)?.filter_map(|e| e.ok()) {
            let p = e.path();
            if e.file_name() == "template.conf" {
                let mut conf = name.clone();
                conf.push(".conf");
                copy_file(&p, &tree.join(TEMPLATE_DIR).join(conf))?;
            } else if p.is_dir() {
                copy_tree(&p, &t.join(e.file_name()))?;
            } else {
                copy_file(&p, &t.join(e.file_name()))?;
            }
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let d = dst.join(e.file_name());
        if p.is_dir() {
            std::fs::create_dir_all(&d)?;
            copy_tree(&p, &d)?;
        } else {
            copy_file(&p, &d)?;
        }
    }
    Ok(())
}

/// Stages the boot config: the defaults from `rootfs/boot/vz`, overlaid with
/// the user's directory when given.
fn stage_config(work: &Path, rootfs: &Path, user: Option<&Path>) -> Result<PathBuf> {
    let dir = work.join("bootconfig");
    std::fs::create_dir_all(&dir)?;
    copy_tree(&rootfs.join("boot/vz"), &dir)?;
    if let Some(u) = user {
        if !u.is_dir() {
            bail!("--config {}: not a directory", u.display());
        }
        copy_tree(u, &dir)?;
    }
    Ok(dir)
}

fn collect_config(
    dir: &Path,
    prefix: &str,
    dirs: &mut Vec<String>,
    files: &mut Vec<FatFile>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let dest = format!("{prefix}/{name}");
        if e.path().is_dir() {
            dirs.push(dest.clone());
            collect_config(&e.path(), &dest, dirs, files)?;
        } else {
            files.push(FatFile {
                src: e.path(),
                dest,
            });
        }
    }
    Ok(())
}

fn write_initramfs(
    out: &Path,
    sysroot: &Path,
    bins: &BTreeMap<&'static str, PathBuf>,
    release: &str,
    mods: &kmod::InitramfsModules,
    epoch: u64,
) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut entries: BTreeMap<String, Node> = BTreeMap::new();
    let add_dirs = |entries: &mut BTreeMap<String, Node>, path: &str| {
        let mut acc = String::new();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            entries.entry(acc.clone()).or_insert(Node::Dir);
        }
    };
    for d in [
        "dev", "proc", "sys", "run", "tmp", "newroot", "etc", "bin", "sbin",
    ] {
        add_dirs(&mut entries, d);
    }
    entries.insert("dev/console".into(), Node::CharDev { major: 5, minor: 1 });
    entries.insert("dev/null".into(), Node::CharDev { major: 1, minor: 3 });
    entries.insert(
        "init".into(),
        Node::File {
            data: read(&bins["init"])?,
            executable: true,
        },
    );
    entries.insert(
        "sbin/vzconsole".into(),
        Node::File {
            data: read(&bins["vzconsole"])?,
            executable: true,
        },
    );
    entries.insert(
        "bin/busybox".into(),
        Node::File {
            data: read(&sysroot.join("bin/busybox"))?,
            executable: true,
        },
    );
    entries.insert("bin/sh".into(), Node::Symlink("busybox".into()));
    for (name, text) in [
        ("etc/modules.load", &mods.load),
        ("etc/modules.fallback", &mods.fallback),
    ] {
        entries.insert(
            name.into(),
            Node::File {
                data: text.as_bytes().to_vec(),
                executable: false,
            },
        );
    }
    let kdir = format!("lib/modules/{release}");
    for m in &mods.files {
        let rel = format!("{kdir}/{}", m.display());
        if let Some((parent, _)) = rel.rsplit_once('/') {
            add_dirs(&mut entries, parent);
        }
        entries.insert(
            rel,
            Node::File {
                data: read(&sysroot.join(&kdir).join(m))?,
                executable: false,
            },
        );
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut a = Archive::new(std::io::BufWriter::new(file), epoch as u32);
    // BTreeMap order puts every directory before its contents.
    for (path, node) in &entries {
        a.add(path, node)?;
    }
    let mut w = a.finish()?;
    std::io::Write::flush(&mut w)?;
    Ok(())
}
