//! OS templates: where a VE's lower layer comes from.
//!
//! Two kinds, one namespace of names:
//! - trees on VZROOT (`/usr/share/vz/template/<name>/` + `<name>.conf`): the
//!   busybox template, part of the appliance image;
//! - template images on VZDATA (OpenVZ's `$TEMPLATE/cache`,
//!   `/vz/template/cache/`): `<name>.conf` names the image
//!   `<name>-<sha256>.erofs` by its `SHA256` and `SIZE`. Each image version is
//!   attached read-only to a loop device and mounted once, at
//!   `/run/vz/template/<name>@<sha256>`; every VE of that version shares the
//!   mount (and so the page cache of its files) as its lower layer.
//!
//! Trust: an image is hashed when it is installed (and by the image build);
//! at mount time only its size is checked against its conf (hashing 100 MiB
//! at every boot would cost seconds under emulation). The hash proves the
//! copy is the file its conf describes, not who made it: install templates
//! you built (`image template`) or got from someone you trust, as with
//! OpenVZ's template caches.
//!
//! `vzpkg install FILE.erofs` (with `FILE.conf` beside it) copies the image
//! in while hashing it, refuses it unless size and sha256 match its conf and
//! the kernel mounts it, and only then renames the new conf into place: the
//! rename is the switch, so nothing is ever half installed. VEs pick up the
//! new version at their next start; running ones keep the one they started
//! with (their mount holds it).

use super::{Layout, Manager, Outcome};
use crate::config;
use crate::exitcode::ExitCode;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One template as `vzpkg list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub description: String,
    pub version: String,
    /// Bytes on disk (the image, or the tree's files).
    pub size: u64,
    pub source: Source,
    pub halt_signal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory on VZROOT.
    Tree(PathBuf),
    /// An erofs image on VZDATA with its expected sha256.
    Image { file: PathBuf, sha256: String },
}

/// Settings of a `<name>.conf`.
fn settings(text: &str, file: &Path) -> std::collections::BTreeMap<String, String> {
    let (entries, _) = config::parse(text, file);
    entries.into_iter().map(|e| (e.key, e.value)).collect()
}

/// The image a conf names: its `SHA256` (lower-case hex) and `SIZE`.
fn identity(
    conf: &std::collections::BTreeMap<String, String>,
    file: &Path,
) -> Result<(String, u64), String> {
    let sha256 = conf
        .get("SHA256")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("{}: no valid SHA256= (64 hex digits)", file.display()))?
        .to_ascii_lowercase();
    let size = conf
        .get("SIZE")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: no valid SIZE= (bytes)", file.display()))?;
    Ok((sha256, size))
}

/// A template name: what `create --ostemplate` and file names accept.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

impl Layout {
    /// Every template present, sorted by name (images first on a clash: a
    /// name on VZROOT cannot be installed over, so none is expected).
    pub fn templates(&self) -> Vec<Template> {
        self.list(true)
    }

    /// [`Layout::templates`]; a tree template's size is measured (a walk of
    /// its every file) only if `size`.
    fn list(&self, size: bool) -> Vec<Template> {
        let mut v: Vec<Template> = Vec::new();
        for e in std::fs::read_dir(&self.template_cache)
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".conf") else {
                continue;
            };
            if !valid_name(name) {
                continue;
            }
            if let Ok(t) = self.image_template(name) {
                v.push(t);
            }
        }
        for e in std::fs::read_dir(&self.template_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.path().is_dir() || v.iter().any(|t| t.name == name) {
                continue;
            }
            v.push(self.tree_template(name, e.path(), size));
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Names of the templates present. Every start checks its config
    /// against them: no tree template's files are walked for it.
    pub fn template_names(&self) -> Vec<String> {
        self.list(false).into_iter().map(|t| t.name).collect()
    }

    /// Template `name` as [`Layout::templates`] lists it, but without
    /// measuring a tree's size (a walk of every file, at each start).
    pub fn template(&self, name: &str) -> Option<Template> {
        if !valid_name(name) {
            return None;
        }
        if self.template_cache.join(format!("{name}.conf")).exists() {
            return self.image_template(name).ok();
        }
        let dir = self.template_dir.join(name);
        dir.is_dir()
            .then(|| self.tree_template(name.to_owned(), dir, false))
    }

    /// The tree template `name` at `path` (its size measured if `size`).
    fn tree_template(&self, name: String, path: PathBuf, size: bool) -> Template {
        let conf_path = self.template_dir.join(format!("{name}.conf"));
        let conf = settings(
            &std::fs::read_to_string(&conf_path).unwrap_or_default(),
            &conf_path,
        );
        Template {
            description: conf.get("DESCRIPTION").cloned().unwrap_or_default(),
            version: conf
                .get("VERSION")
                .cloned()
                .unwrap_or_else(|| format!("appliance {}", env!("CARGO_PKG_VERSION"))),
            size: if size { dir_size(&path) } else { 0 },
            source: Source::Tree(path),
            halt_signal: conf.get("HALT_SIGNAL").cloned(),
            name,
        }
    }

    /// The image template `name` from its conf in the cache; an error says
    /// what is wrong with it.
    fn image_template(&self, name: &str) -> Result<Template, String> {
        let conf_path = self.template_cache.join(format!("{name}.conf"));
        let text = std::fs::read_to_string(&conf_path)
            .map_err(|e| format!("{}: {e}", conf_path.display()))?;
        let conf = settings(&text, &conf_path);
        let (sha256, size) = identity(&conf, &conf_path)?;
        Ok(Template {
            name: name.to_owned(),
            description: conf.get("DESCRIPTION").cloned().unwrap_or_default(),
            version: conf.get("VERSION").cloned().unwrap_or_default(),
            size,
            source: Source::Image {
                file: self.template_cache.join(format!("{name}-{sha256}.erofs")),
                sha256,
            },
            halt_signal: conf.get("HALT_SIGNAL").cloned(),
        })
    }

    /// The directory a VE of template `t` gets as its lower layer: the tree,
    /// or the image's mount (made now if this version is not mounted yet).
    pub fn template_lower(&self, t: &Template) -> Result<PathBuf, String> {
        match &t.source {
            Source::Tree(p) => Ok(p.clone()),
            Source::Image { file, sha256 } => {
                let at = self.template_mounts.join(format!("{}@{sha256}", t.name));
                // One mount per version, however many VEs start at once.
                let _one = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
                if is_mountpoint(&at) {
                    return Ok(at);
                }
                let len = std::fs::metadata(file)
                    .map_err(|e| {
                        format!(
                            "template {}: image {}: {e}; reinstall it with `vzpkg install`",
                            t.name,
                            file.display()
                        )
                    })?
                    .len();
                if len != t.size {
                    return Err(format!(
                        "template {}: image {} has {len} bytes, its conf says {}: \
                         truncated or replaced; reinstall it with `vzpkg install`",
                        t.name,
                        file.display(),
                        t.size
                    ));
                }
                std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
                mount_image(file, &at).map_err(|e| {
                    format!("template {}: mounting {}: {e}", t.name, file.display())
                })?;
                Ok(at)
            }
        }
    }

    /// `vzpkg install`: the image `src` (`NAME.erofs`, its `NAME.conf`
    /// beside it) into the cache, verified; returns the installed template.
    pub fn install_template(&self, src: &Path) -> Result<Template, String> {
        let fname = src
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(name) = fname.strip_suffix(".erofs") else {
            return Err(format!(
                "{}: a template image is NAME.erofs, with NAME.conf beside it \
                 (as `image template NAME --out DIR` writes them)",
                src.display()
            ));
        };
        if !valid_name(name) {
            return Err(format!(
                "{}: {name:?} is not a template name (letters, digits, . _ - +)",
                src.display()
            ));
        }
        if self.template_dir.join(name).is_dir() {
            return Err(format!(
                "template {name} is part of the appliance image and cannot be replaced"
            ));
        }
        let conf_src = src.with_file_name(format!("{name}.conf"));
        let conf_text = read_no_links(&conf_src, 64 * 1024).map_err(|e| {
            format!(
                "{}: {e} (the template's conf must be beside it)",
                conf_src.display()
            )
        })?;
        let conf_text = String::from_utf8(conf_text)
            .map_err(|_| format!("{}: not UTF-8 text", conf_src.display()))?;
        let conf = settings(&conf_text, &conf_src);
        let (want_sha, want_size) = identity(&conf, &conf_src)?;
        let mut f = open_no_links(src).map_err(|e| format!("{}: {e}", src.display()))?;
        let len = f.metadata().map_err(|e| e.to_string())?.len();
        if len != want_size {
            return Err(format!(
                "{}: {len} bytes, but {} says SIZE={want_size}: the file is truncated or \
                 not the one its conf describes; nothing was installed",
                src.display(),
                conf_src.display()
            ));
        }
        std::fs::create_dir_all(&self.template_cache)
            .map_err(|e| format!("{}: {e}", self.template_cache.display()))?;
        // One install at a time: the temporary names below are per template.
        let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        let final_image = self.template_cache.join(format!("{name}-{want_sha}.erofs"));
        let tmp = self.template_cache.join(format!(".{name}.erofs.partial"));
        let tmp_conf = self.template_cache.join(format!(".{name}.conf.partial"));
        let cleanup = || {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&tmp_conf);
        };
        let got = match copy_hashing(&mut f, &tmp, want_size) {
            Ok(h) => h,
            Err(e) => {
                cleanup();
                return Err(format!(
                    "copying {} to {}: {e}; nothing was installed",
                    src.display(),
                    tmp.display()
                ));
            }
        };
        if got != want_sha {
            cleanup();
            return Err(format!(
                "{}: sha256 {got}, but {} says {want_sha}: the file is corrupt; nothing was installed",
                src.display(),
                conf_src.display()
            ));
        }
        // The kernel must take it before anything else sees it.
        let probe = self.template_mounts.join(format!(".probe-{name}"));
        if let Err(e) = std::fs::create_dir_all(&probe) {
            cleanup();
            return Err(format!("{}: {e}; nothing was installed", probe.display()));
        }
        let mounted = mount_image(&tmp, &probe);
        let _ = rustix::mount::unmount(&probe, rustix::mount::UnmountFlags::DETACH);
        let _ = std::fs::remove_dir(&probe);
        if let Err(e) = mounted {
            cleanup();
            return Err(format!(
                "{}: the kernel does not mount it as erofs ({e}); nothing was installed",
                src.display()
            ));
        }
        // From here on no VE start mounts this template: it would see the
        // conf switch half done, or mount the old version again after its
        // mount was taken away.
        let _mounting = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.image_template(name).ok();
        let step = |r: std::io::Result<()>, what: &str| {
            r.map_err(|e| {
                cleanup();
                format!("{what}: {e}; nothing was installed")
            })
        };
        step(std::fs::rename(&tmp, &final_image), "placing the image")?;
        let committed = std::fs::write(&tmp_conf, &conf_text)
            .and_then(|()| {
                std::fs::File::open(&tmp_conf)?.sync_all()?;
                std::fs::File::open(&final_image)?.sync_all()
            })
            .and_then(|()| {
                // The switch.
                std::fs::rename(&tmp_conf, self.template_cache.join(format!("{name}.conf")))
            });
        if let Err(e) = committed {
            cleanup();
            // The image no conf names: gone, unless it is the current one.
            let current = matches!(&old, Some(Template { source: Source::Image { file, .. }, .. }) if *file == final_image);
            if !current {
                let _ = std::fs::remove_file(&final_image);
            }
            return Err(format!(
                "switching to the new version: {e}; nothing was installed"
            ));
        }
        if let Ok(d) = std::fs::File::open(&self.template_cache) {
            let _ = d.sync_all();
        }
        if let Some(Template {
            source: Source::Image { file, sha256 },
            ..
        }) = old
        {
            if file != final_image {
                // Running VEs keep their own mount of the old version.
                let at = self.template_mounts.join(format!("{name}@{sha256}"));
                if is_mountpoint(&at) {
                    let _ = rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH);
                }
                let _ = std::fs::remove_dir(&at);
                let _ = std::fs::remove_file(&file);
            }
        }
        self.image_template(name)
    }
}

impl Manager {
    /// `vzpkg list`.
    pub fn template_list(&self) -> heapless::Vec<proto::TemplateInfo, 32> {
        let used: Vec<String> = self
            .lock()
            .loaded
            .as_ref()
            .map(|l| {
                l.ves
                    .values()
                    .filter_map(|r| r.as_ref().ok())
                    .map(|c| c.ostemplate.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut out = heapless::Vec::new();
        for t in self.layout.templates() {
            let info = proto::TemplateInfo {
                name: crate::appliance::truncated(&t.name),
                version: crate::appliance::truncated(&t.version),
                size: t.size,
                kind: crate::appliance::truncated(match t.source {
                    Source::Tree(_) => "builtin",
                    Source::Image { .. } => "image",
                }),
                description: crate::appliance::text(&t.description),
                ves: used.iter().filter(|n| **n == t.name).count() as u32,
            };
            if out.push(info).is_err() {
                break;
            }
        }
        out
    }

    /// `vzpkg install FILE`.
    pub fn install_template(&self, src: &Path) -> Outcome {
        match self.layout.install_template(src) {
            Ok(t) => {
                log::info!(
                    "template {} {} installed from {}; its VEs use it from their next start",
                    t.name,
                    t.version,
                    src.display()
                );
                // Configs naming it are valid now.
                self.reload();
                Outcome::ok(format!(
                    "Template {} {} ({} bytes) installed; VEs use it from their next start",
                    t.name, t.version, t.size
                ))
            }
            Err(e) => {
                log::warn!("vzpkg install {}: {e}", src.display());
                Outcome::fail(ExitCode::TemplateNotFound, e)
            }
        }
    }
}

/// Held while a template version is being mounted, and while an install
/// switches versions.
static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Held for a whole `vzpkg install`.
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

fn open_no_links(p: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let fd = rustix::fs::openat2(
        rustix::fs::CWD,
        p,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

fn read_no_links(p: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = open_no_links(p)?;
    let mut v = Vec::new();
    f.take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(std::io::Error::other(format!("longer than {max} bytes")));
    }
    Ok(v)
}

/// Copies exactly `len` bytes of `src` to a new file `dst`, synced; their
/// sha256.
fn copy_hashing(src: &mut std::fs::File, dst: &Path, len: u64) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(dst);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dst)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = src.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other("the file ended early"));
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.sync_all()?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

// The loop driver's ABI (linux/loop.h).
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A free loop device bound read-only (and auto-cleared) to `file`: the
/// open device. Direct I/O when the backing filesystem takes it, so the
/// image's pages are cached once (as erofs files), not twice.
fn attach_loop(file: &Path) -> std::io::Result<(OwnedFd, String)> {
    let backing = std::fs::File::open(file)?;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let path = format!("/dev/loop{n}");
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        for flags in [
            LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO,
            LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
        ] {
            let mut name = [0u8; 64];
            let s = file.as_os_str().as_encoded_bytes();
            let k = s.len().min(63);
            name[..k].copy_from_slice(&s[..k]);
            let cfg = LoopConfig {
                fd: backing.as_raw_fd() as u32,
                block_size: 4096,
                info: LoopInfo64 {
                    lo_device: 0,
                    lo_inode: 0,
                    lo_rdevice: 0,
                    lo_offset: 0,
                    lo_sizelimit: 0,
                    lo_number: 0,
                    lo_encrypt_type: 0,
                    lo_encrypt_key_size: 0,
                    lo_flags: flags,
                    lo_file_name: name,
                    lo_crypt_name: [0; 64],
                    lo_encrypt_key: [0; 32],
                    lo_init: [0; 2],
                },
                reserved: [0; 8],
            };
            // SAFETY: LOOP_CONFIGURE reads one struct loop_config, which
            // `cfg` is (repr(C), the kernel's layout), valid for the call.
            let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg) };
            if r == 0 {
                return Ok((OwnedFd::from(dev), path));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // Taken by someone else between GET_FREE and now: next one.
                Some(libc::EBUSY) => break,
                // No direct I/O on this backing file: without it.
                Some(libc::EINVAL) if flags & LO_FLAGS_DIRECT_IO != 0 => continue,
                _ => return Err(e),
            }
        }
    }
    Err(std::io::Error::other("no free loop device"))
}

/// Mounts the erofs image `file` read-only at `at`.
fn mount_image(file: &Path, at: &Path) -> std::io::Result<()> {
    use rustix::mount::MountAttrFlags;
    let (dev, path) = attach_loop(file)?;
    let source = format!("source={path}");
    let mnt = crate::mountfd::new_fs(
        "erofs",
        // "ro": a read-only superblock, or erofs would open the (read-only)
        // loop device for writing and get EACCES.
        &[source.as_str(), "ro"],
        MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    // The mount holds the device now; closing ours lets autoclear free it
    // when the last mount of this version goes.
    drop(dev);
    crate::mountfd::attach_at(mnt.as_fd(), at)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout {
        Layout {
            template_dir: dir.join("tree"),
            template_cache: dir.join("cache"),
            template_mounts: dir.join("mnt"),
            ..Layout::default()
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("debian-12-web"));
        assert!(valid_name("centos-7-x86_64"));
        for bad in ["", ".x", "-x", "a/b", "a b", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn lists_trees_and_images() {
        let d = tempfile::tempdir().expect("tmp");
        let l = layout(d.path());
        std::fs::create_dir_all(l.template_dir.join("busybox/bin")).expect("mk");
        std::fs::write(l.template_dir.join("busybox/bin/busybox"), "x".repeat(10)).expect("w");
        std::fs::write(
            l.template_dir.join("busybox.conf"),
            "DESCRIPTION=\"bb\"\nHALT_SIGNAL=\"SIGUSR1\"\n",
        )
        .expect("w");
        std::fs::create_dir_all(&l.template_cache).expect("mk");
        let sha = "ab".repeat(32);
        std::fs::write(
            l.template_cache.join("debian-12-web.conf"),
            format!(
                "DESCRIPTION=\"web\"\nVERSION=\"20261128-abab\"\nSIZE=\"5\"\nSHA256=\"{sha}\"\n"
            ),
        )
        .expect("w");
        // A conf without a hash is not a template.
        std::fs::write(l.template_cache.join("broken.conf"), "SIZE=1\n").expect("w");
        let t = l.templates();
        let names: Vec<_> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["busybox", "debian-12-web"]);
        assert_eq!(
            l.template_names(),
            names,
            "the same names, without the sizes"
        );
        assert_eq!(t[0].size, 10);
        assert_eq!(t[0].halt_signal.as_deref(), Some("SIGUSR1"));
        assert_eq!(t[1].version, "20261128-abab");
        assert_eq!(
            t[1].source,
            Source::Image {
                file: l.template_cache.join(format!("debian-12-web-{sha}.erofs")),
                sha256: sha.clone()
            }
        );
        // The image is missing: the start says so, and how to mend it.
        let e = l.template_lower(&t[1]).expect_err("no image");
        assert!(e.contains("reinstall it with `vzpkg install`"), "{e}");
    }

    #[test]
    fn install_refuses_truncated_and_corrupt_files() {
        let d = tempfile::tempdir().expect("tmp");
        let l = layout(d.path());
        let src = d.path().join("in");
        std::fs::create_dir_all(&src).expect("mk");
        let data = b"not really erofs, but hashed".to_vec();
        let sha: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(src.join("t.erofs"), &data[..10]).expect("w");
        std::fs::write(
            src.join("t.conf"),
            format!("SIZE=\"{}\"\nSHA256=\"{sha}\"\n", data.len()),
        )
        .expect("w");
        let e = l.install_template(&src.join("t.erofs")).expect_err("short");
        assert!(
            e.contains("truncated") && e.contains("nothing was installed"),
            "{e}"
        );
        let mut bad = data.clone();
        bad[3] ^= 1;
        std::fs::write(src.join("t.erofs"), &bad).expect("w");
        let e = l
            .install_template(&src.join("t.erofs"))
            .expect_err("corrupt");
        assert!(e.contains("corrupt"), "{e}");
        // Nothing left behind: no conf, no image, no partial file.
        let left: Vec<_> = std::fs::read_dir(&l.template_cache)
            .expect("cache")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(l.templates().is_empty());
        // Without its conf.
        std::fs::remove_file(src.join("t.conf")).expect("rm");
        let e = l
            .install_template(&src.join("t.erofs"))
            .expect_err("no conf");
        assert!(e.contains("t.conf"), "{e}");
        let e = l.install_template(&src.join("t.img")).expect_err("name");
        assert!(e.contains("NAME.erofs"), "{e}");
    }
}
