//! Debian OS templates: `rootfs/templates/<name>/` with a `packages.list`
//! becomes one read-only erofs image built by mmdebstrap from the pinned
//! `.deb` files of its `packages.lock` (maintainer scripts run, owners kept),
//! plus a `<name>.conf` beside it (the template's settings, version, size and
//! sha256), as vmmgr installs and verifies them.
//!
//! The build runs as root: mmdebstrap's `unshare` mode then keeps Debian's
//! owners (no user namespace) while its chroot mounts stay in a private mount
//! namespace; the build machine's root filesystem is never touched. The only
//! package source is a flat repository of the sha256-checked `.deb` files
//! (`copy://`, so apt copies them into the chroot), so what gets installed is
//! exactly the lock, which the build checks with dpkg-query afterwards.
//! Results are cached by a key over every input.

use crate::debs::{self, Pin};
use crate::disk;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the way templates are built changes (invalidates the cache).
const BUILDER: &str = "vz-template-builder 2";

/// The templates of the source tree, sorted: `(name, is_debian)`.
pub fn all(rootfs: &Path) -> Result<Vec<(String, bool)>> {
    let dir = rootfs.join("templates");
    let mut v: Vec<(String, bool)> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.path().join("packages.list").is_file())
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The command that refreshes a template's pins.
pub fn bump(name: &str) -> String {
    format!("cargo run -p image -- pin --template {name}")
}

/// A scratch apt configuration that reads the host's package lists (already
/// updated) but has its own empty dpkg status and cache: the closure of a
/// template is resolved as for an empty machine, and nothing of the host
/// changes.
struct ScratchApt {
    dir: tempfile::TempDir,
}

impl ScratchApt {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating a scratch apt directory")?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("state"))?;
        std::fs::create_dir_all(d.join("cache/archives/partial"))?;
        std::fs::write(d.join("state/status"), "")?;
        let conf = format!(
            "Dir::State \"{0}/state\";\nDir::State::Lists \"/var/lib/apt/lists\";\n\
             Dir::State::status \"{0}/state/status\";\nDir::Cache \"{0}/cache\";\n\
             APT::Architecture \"amd64\";\nAPT::Architectures \"amd64\";\n\
             APT::Install-Recommends \"false\";\nDebug::NoLocking \"true\";\n",
            d.display()
        );
        std::fs::write(d.join("apt.conf"), conf)?;
        Ok(ScratchApt { dir })
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("APT_CONFIG", self.dir.path().join("apt.conf"));
        c
    }
}

fn output(mut c: Command, what: &str) -> Result<String> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Inst name [old] (version ...)` lines of `apt-get -s install`.
fn parse_simulation(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let name = rest.split_whitespace().next()?;
            let version = rest.split_once('(')?.1.split_whitespace().next()?;
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// `Package`, `Version` and `SHA256` of each stanza of `apt-cache show`.
fn parse_stanzas(text: &str) -> Vec<Pin> {
    text.split("\n\n")
        .filter_map(|s| {
            let field = |k: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(": "))
                    .map(str::to_owned)
            };
            Some(Pin {
                name: field("Package")?,
                version: field("Version")?,
                sha256: field("SHA256")?,
            })
        })
        .collect()
}

/// Resolves a template's `packages.list` (plus Debian's Essential set and
/// usr-is-merged) to the archive's current versions: the whole closure.
pub fn pin(rootfs: &Path, name: &str) -> Result<Vec<Pin>> {
    let dir = rootfs.join("templates").join(name);
    let list_path = dir.join("packages.list");
    let text = std::fs::read_to_string(&list_path)
        .with_context(|| format!("reading {}", list_path.display()))?;
    let apt = ScratchApt::new()?;
    let mut c = apt.cmd("apt-get");
    c.args(["-s", "-q", "install", "?essential", "usr-is-merged"])
        .args(debs::parse_list(&text));
    let sim = output(c, "apt-get -s install (resolving the template's closure)")?;
    let closure = parse_simulation(&sim);
    if closure.is_empty() {
        bail!("apt resolved no packages for {}", list_path.display());
    }
    let mut c = apt.cmd("apt-cache");
    c.arg("show")
        .args(closure.iter().map(|(n, v)| format!("{n}={v}")));
    let shown = parse_stanzas(&output(c, "apt-cache show")?);
    let mut pins = Vec::new();
    for (n, v) in &closure {
        let p = shown
            .iter()
            .find(|p| &p.name == n && &p.version == v)
            .with_context(|| format!("apt-cache show gave no SHA256 for {n} {v}"))?;
        pins.push(p.clone());
    }
    pins.sort_by(|a, b| a.name.cmp(&b.name));
    pins.dedup_by(|a, b| a.name == b.name);
    Ok(pins)
}

/// A template's lock file, with its own header.
pub fn render_lock(name: &str, pins: &[Pin]) -> String {
    let mut s = format!(
        "# Pinned Debian 12 packages of the {name} template (the whole closure):\n\
         # name, version, sha256 of the .deb. Generated from packages.list by\n\
         # `{}`; review the diff.\n",
        bump(name)
    );
    for p in pins {
        s.push_str(&format!("{} {} {}\n", p.name, p.version, p.sha256));
    }
    s
}

/// What a template build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    /// The erofs image.
    pub image: PathBuf,
    /// Its settings file (`template.conf` plus VERSION, SIZE, SHA256).
    pub conf: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub version: String,
    pub packages: usize,
    /// Taken from the cache rather than built.
    pub cached: bool,
}

/// Every file of the template's definition, sorted, with its mode: the part
/// of the cache key (and of the template's epoch) that is ours.
fn definition_files(rootfs: &Path, name: &str) -> Result<Vec<(String, u32, Vec<u8>)>> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u32, Vec<u8>)>) -> Result<()> {
        let mut es: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(base).unwrap_or(&p).display().to_string();
            if m.is_dir() {
                walk(base, &p, out)?;
            } else if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p)?;
                out.push((rel, 0o120000, t.display().to_string().into_bytes()));
            } else {
                out.push((rel, m.permissions().mode(), std::fs::read(&p)?));
            }
        }
        Ok(())
    }
    let base = rootfs.join("templates");
    let mut out = Vec::new();
    walk(&base, &base.join(name), &mut out)?;
    let common = base.join("common.sh");
    out.push((
        "common.sh".into(),
        0o644,
        std::fs::read(&common).with_context(|| format!("reading {}", common.display()))?,
    ));
    Ok(out)
}

fn tool_versions() -> String {
    let mut c = Command::new("dpkg-query");
    c.args([
        "-W",
        "-f",
        "${Package} ${Version}\n",
        "mmdebstrap",
        "erofs-utils",
    ]);
    output(c, "dpkg-query").unwrap_or_default()
}

/// The epoch of a template: SOURCE_DATE_EPOCH if set, else the last commit
/// that touched its definition (so its bytes, and its version, change only
/// with its inputs), else the image's.
pub fn epoch(workspace: &Path, name: &str, fallback: u64) -> u64 {
    if let Some(e) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return e;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct", "--"])
        .arg(format!("rootfs/templates/{name}"))
        .arg("rootfs/templates/common.sh")
        .current_dir(workspace)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(fallback)
}

/// `YYYYMMDD` of a Unix time (UTC).
fn ymd(secs: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (secs / 86400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// The `Packages` stanza of one `.deb` in the flat repository.
fn packages_stanza(deb: &Path, file: &str, sha256: &str) -> Result<String> {
    let mut c = Command::new("dpkg-deb");
    c.arg("-f").arg(deb);
    let mut s = output(c, &format!("dpkg-deb -f {}", deb.display()))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let size = std::fs::metadata(deb)?.len();
    s.push_str(&format!(
        "Filename: ./{file}\nSize: {size}\nSHA256: {sha256}\n\n"
    ));
    Ok(s)
}

fn is_essential(stanza: &str) -> bool {
    stanza
        .lines()
        .any(|l| l.trim().eq_ignore_ascii_case("Essential: yes"))
}

/// Builds (or takes from the cache) one Debian template.
/// `debs` is the `.deb` cache, `out` where built templates are kept (by
/// their key), `work` scratch space.
pub fn build(
    workspace: &Path,
    name: &str,
    debs_cache: &Path,
    out_dir: &Path,
    work: &Path,
    fallback_epoch: u64,
) -> Result<Built> {
    let rootfs = workspace.join("rootfs");
    let dir = rootfs.join("templates").join(name);
    let lock_path = dir.join("packages.lock");
    let lock_text = std::fs::read_to_string(&lock_path).with_context(|| {
        format!(
            "reading {} (make it with `{}`)",
            lock_path.display(),
            bump(name)
        )
    })?;
    let pins = debs::parse_lock(&lock_text, &lock_path)?;
    let epoch = epoch(workspace, name, fallback_epoch);

    let mut key = Sha256::new();
    key.update(BUILDER.as_bytes());
    key.update(tool_versions().as_bytes());
    key.update(epoch.to_le_bytes());
    for (path, mode, bytes) in definition_files(&rootfs, name)? {
        key.update(path.as_bytes());
        key.update(mode.to_le_bytes());
        key.update((bytes.len() as u64).to_le_bytes());
        key.update(&bytes);
    }
    let key = debs::hex(&key.finalize());
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let image = out_dir.join(format!("{name}-{}.erofs", &key[..16]));
    let conf = out_dir.join(format!("{name}-{}.conf", &key[..16]));
    if image.is_file() && conf.is_file() {
        let text = std::fs::read_to_string(&conf)?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_owned())
        };
        if let (Some(sha), Some(ver)) = (field("SHA256"), field("VERSION")) {
            if debs::sha256_file(&image)? == sha {
                return Ok(Built {
                    name: name.into(),
                    size: std::fs::metadata(&image)?.len(),
                    image,
                    conf,
                    sha256: sha,
                    version: ver,
                    packages: pins.len(),
                    cached: true,
                });
            }
        }
    }
    if !debs::running_as_root() {
        bail!(
            "building the {name} template needs root (mmdebstrap keeps Debian's file owners \
             only then): run the build as root, or leave it out with --template"
        );
    }
    crate::hosttools::require(crate::hosttools::TEMPLATE_TOOLS)?;

    // The flat repository: exactly the lock, sha256-checked.
    let work = work.join(format!("template-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    let repo = work.join("repo");
    std::fs::create_dir_all(&repo)?;
    let mut packages = String::new();
    let mut include = Vec::new();
    for pin in &pins {
        let (deb, _) = debs::fetch(pin, debs_cache)?;
        let file = format!("{}_{}.deb", pin.name, &pin.sha256[..16]);
        let dst = repo.join(&file);
        if std::fs::hard_link(&deb, &dst).is_err() {
            std::fs::copy(&deb, &dst)?;
        }
        let stanza = packages_stanza(&dst, &file, &pin.sha256)?;
        if !is_essential(&stanza) {
            include.push(pin.name.clone());
        }
        packages.push_str(&stanza);
    }
    std::fs::write(repo.join("Packages"), packages)?;

    let tree = work.join("tree");
    let files = dir.join("files");
    // A fixed umask: the modes of what the hooks write (and of the files
    // `cp` copies, which keep their mode minus the umask) must not depend on
    // the build machine's.
    let mut c = Command::new("sh");
    c.args(["-c", "umask 022 && exec \"$@\"", "sh"])
        .args(["unshare", "--mount", "--propagation", "private", "--"])
        .arg("mmdebstrap")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args([
            "--quiet",
            "--mode=unshare",
            "--format=directory",
            "--variant=essential",
            "--architectures=amd64",
            "--aptopt=Acquire::Languages \"none\"",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/lintian/*",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            "--skip=check/signed-by",
        ])
        .arg(format!("--include={}", include.join(",")));
    if files.is_dir() {
        c.arg(format!(
            "--customize-hook=cp -R --no-preserve=ownership,timestamps '{}'/. \"$1\"/",
            files.display()
        ));
    }
    let hook = dir.join("customize.sh");
    if hook.is_file() {
        c.arg(format!("--customize-hook={}", hook.display()));
    }
    c.arg("")
        .arg(&tree)
        .arg(format!("deb [trusted=yes] copy://{} ./", repo.display()));
    let out = c.output().context("running mmdebstrap")?;
    if !out.status.success() {
        bail!(
            "mmdebstrap failed for the {name} template:\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    // The device nodes mmdebstrap made for the build: a VE gets its own /dev.
    let dev = tree.join("dev");
    for e in std::fs::read_dir(&dev)?.filter_map(|e| e.ok()) {
        let p = e.path();
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }

    // Exactly the lock, nothing more or less.
    let mut c = Command::new("dpkg-query");
    c.arg(format!(
        "--admindir={}",
        tree.join("var/lib/dpkg").display()
    ))
    .args(["-W", "-f", "${db:Status-Abbrev}${Package} ${Version}\n"]);
    let got = output(c, "dpkg-query in the template")?;
    check_installed(&got, &pins, name)?;

    let tmp = image.with_extension("erofs.partial");
    let _ = std::fs::remove_file(&tmp);
    let mut c = Command::new(crate::hosttools::which("mkfs.erofs").unwrap_or("mkfs.erofs".into()));
    c.args(["--quiet", "-zlz4hc", "-C16384"])
        .arg(format!("-T{epoch}"))
        .arg(format!(
            "-U{}",
            disk::derived_uuid(key.as_bytes(), "template")
        ))
        .arg(&tmp)
        .arg(&tree);
    disk::run(
        &mut c,
        &format!("building the {name} template (mkfs.erofs)"),
    )?;
    let _ = std::fs::remove_dir_all(&work);
    let sha256 = debs::sha256_file(&tmp)?;
    let size = std::fs::metadata(&tmp)?.len();
    let version = format!("{}-{}", ymd(epoch), &sha256[..12]);
    let settings = std::fs::read_to_string(dir.join("template.conf"))
        .with_context(|| format!("reading {}/template.conf", dir.display()))?;
    let text = format!(
        "{settings}{}# Written by the image build: which image this is.\n\
         VERSION=\"{version}\"\nSIZE=\"{size}\"\nSHA256=\"{sha256}\"\n",
        if settings.ends_with('\n') { "" } else { "\n" }
    );
    std::fs::write(&conf, text)?;
    std::fs::rename(&tmp, &image)?;
    prune(out_dir, name, &image, 2);
    Ok(Built {
        name: name.into(),
        image,
        conf,
        size,
        sha256,
        version,
        packages: pins.len(),
        cached: false,
    })
}

/// Keeps the newest `keep` builds of template `name` in the cache (the one
/// just made among them) and removes the older ones: each is 50-100 MiB,
/// and every change of a template's inputs makes a new one.
fn prune(dir: &Path, name: &str, newest: &Path, keep: usize) {
    let prefix = format!("{name}-");
    let mut builds: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "erofs")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix(&prefix))
                    // The rest is the 16-hex-digit key: not another template
                    // whose name starts with this one's.
                    .is_some_and(|k| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    builds.sort_by_key(|b| std::cmp::Reverse(b.0));
    let mut kept = 0;
    for (_, p) in builds {
        if p == newest || kept < keep.saturating_sub(1) {
            if p != newest {
                kept += 1;
            }
            continue;
        }
        let _ = std::fs::remove_file(p.with_extension("conf"));
        let _ = std::fs::remove_file(&p);
    }
}

/// Compares `dpkg-query -W` output (status abbreviation, name, version) with
/// the lock.
fn check_installed(got: &str, pins: &[Pin], name: &str) -> Result<()> {
    let mut installed: Vec<(String, String)> = got
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("ii ")?;
            let (n, v) = rest.trim().split_once(' ')?;
            Some((n.to_owned(), v.to_owned()))
        })
        .collect();
    installed.sort();
    let want: Vec<(String, String)> = pins
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    if installed != want {
        let extra: Vec<_> = installed.iter().filter(|p| !want.contains(p)).collect();
        let missing: Vec<_> = want.iter().filter(|p| !installed.contains(p)).collect();
        bail!(
            "the {name} template does not hold exactly its lock: installed but not locked \
             {extra:?}, locked but not installed {missing:?}; re-pin with `{}`",
            bump(name)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulation_lines() {
        let t = "NOTE: x\nInst libc6 (2.36-9+deb12u13 Debian:12.13/stable [amd64])\n\
                 Inst base-files [12.4] (12.4+deb12u13 Debian:12.13/stable [amd64])\nConf libc6 (2.36)\n";
        assert_eq!(
            parse_simulation(t),
            vec![
                ("libc6".to_owned(), "2.36-9+deb12u13".to_owned()),
                ("base-files".to_owned(), "12.4+deb12u13".to_owned())
            ]
        );
    }

    #[test]
    fn stanzas_give_pins() {
        let t = "Package: a\nVersion: 1\nSHA256: ab\nDescription: x\n\nPackage: b\nVersion: 2\n";
        let p = parse_stanzas(t);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].name.as_str(), p[0].sha256.as_str()), ("a", "ab"));
    }

    #[test]
    fn dates() {
        assert_eq!(ymd(0), "19700101");
        assert_eq!(ymd(1_795_824_000), "20261128");
        assert_eq!(ymd(951_782_400), "20000229");
    }

    #[test]
    fn installed_must_equal_the_lock() {
        let pins = vec![Pin {
            name: "a".into(),
            version: "1".into(),
            sha256: "0".repeat(64),
        }];
        check_installed("ii a 1\n", &pins, "t").expect("equal");
        let e = check_installed("ii a 1\nii b 2\n", &pins, "t").expect_err("extra");
        assert!(e.to_string().contains("\"b\""), "{e}");
        let e = check_installed("", &pins, "t").expect_err("missing");
        assert!(e.to_string().contains("locked but not installed"), "{e}");
    }

    #[test]
    fn prune_keeps_the_newest_builds_of_one_template() {
        let d = tempfile::tempdir().expect("tmp");
        let mk = |n: &str, age: u64| {
            let p = d.path().join(n);
            std::fs::write(&p, "x").expect("w");
            std::fs::write(p.with_extension("conf"), "x").expect("w");
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
            p
        };
        let new = mk("web-000000000000000a.erofs", 0);
        mk("web-000000000000000b.erofs", 10);
        mk("web-000000000000000c.erofs", 20);
        mk("web-extra-000000000000000d.erofs", 30);
        prune(d.path(), "web", &new, 2);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".erofs"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "web-000000000000000a.erofs",
                "web-000000000000000b.erofs",
                "web-extra-000000000000000d.erofs"
            ]
        );
    }

    #[test]
    fn essential_flag() {
        assert!(is_essential("Package: dash\nEssential: yes\n"));
        assert!(!is_essential("Package: nano\n"));
    }
}
