//! Pinned Debian packages: the lock file, pinning, fetching into a checked
//! cache, and unpacking.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// The command that refreshes the pins.
pub const BUMP: &str = "cargo run -p image -- pin";

/// Parses `packages.list`: names, `@meta` for "the package this metapackage
/// depends on", comments and blanks skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses `packages.lock` (`name version sha256` per line).
pub fn parse_lock(text: &str, file: &Path) -> Result<Vec<Pin>> {
    let mut pins = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let ok_hash = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        if f.len() != 3 || !ok_hash(f[2]) {
            bail!(
                "{}:{}: expected `name version sha256`, found {line:?}; regenerate with `{BUMP}`",
                file.display(),
                n + 1
            );
        }
        pins.push(Pin {
            name: f[0].into(),
            version: f[1].into(),
            sha256: f[2].to_ascii_lowercase(),
        });
    }
    Ok(pins)
}

/// Renders a lock file.
pub fn render_lock(pins: &[Pin]) -> String {
    let mut s = String::from(
        "# Pinned Debian 12 packages of the image: name, version, sha256 of the .deb.\n\
         # Generated from packages.list by `cargo run -p image -- pin`; review the diff.\n",
    );
    for p in pins {
        s.push_str(&format!("{} {} {}\n", p.name, p.version, p.sha256));
    }
    s
}

/// Fields of the first stanza of `apt-cache show` output.
fn stanza_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let stanza = text.split("\n\n").next()?;
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

fn apt_show(name: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["show", "--no-all-versions", name])
        .output()
        .context("running apt-cache")?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "apt-cache knows no package {name:?}: {} (run `apt-get update`, or fix rootfs/packages.list)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The packages a kernel headers package needs to build modules: its own
/// `linux-headers-*` and `linux-kbuild-*` dependencies (names of the same
/// ABI, so they are followed rather than listed).
fn kernel_build_deps(depends: &str) -> Vec<String> {
    depends
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .filter(|d| d.starts_with("linux-headers-") || d.starts_with("linux-kbuild-"))
        .map(str::to_owned)
        .collect()
}

/// Resolves the list to the archive's current candidate versions.
pub fn pin(list: &[String]) -> Result<Vec<Pin>> {
    let mut pins: Vec<Pin> = Vec::new();
    let mut queue: std::collections::VecDeque<String> = list.iter().cloned().collect();
    while let Some(entry) = queue.pop_front() {
        let name = match entry.strip_prefix('@') {
            Some(meta) => {
                let text = apt_show(meta)?;
                let dep = stanza_field(&text, "Depends")
                    .and_then(|d| d.split([',', ' ', '|']).next())
                    .filter(|d| !d.is_empty())
                    .with_context(|| format!("metapackage {meta} has no Depends"))?;
                dep.to_owned()
            }
            None => entry.clone(),
        };
        if pins.iter().any(|p| p.name == name) {
            continue;
        }
        let text = apt_show(&name)?;
        let version = stanza_field(&text, "Version").context("no Version")?;
        let sha256 = stanza_field(&text, "SHA256").context("no SHA256")?;
        if name.starts_with("linux-headers-") {
            queue.extend(kernel_build_deps(
                stanza_field(&text, "Depends").unwrap_or(""),
            ));
        }
        pins.push(Pin {
            name,
            version: version.into(),
            sha256: sha256.into(),
        });
    }
    pins.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pins)
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether this process runs as root (apt and mmdebstrap behave differently).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Makes sure the cache holds the pinned `.deb`, downloading it if needed.
/// Returns its path.
pub fn fetch(pin: &Pin, cache: &Path) -> Result<(PathBuf, bool)> {
    let file = cache.join(format!("{}_{}.deb", pin.name, &pin.sha256[..16]));
    if file.exists() {
        if sha256_file(&file)? == pin.sha256 {
            return Ok((file, false));
        }
        std::fs::remove_file(&file).ok();
    }
    let tmp = cache.join(format!(".download-{}", pin.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(&tmp).arg("-q").arg("download");
    if running_as_root() {
        // apt drops to the _apt user, which cannot write into our cache.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.arg(format!("{}={}", pin.name, pin.version));
    let out = cmd.output().context("running apt-get download")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let gone = err.contains("not found")
            || err.contains("Unable to locate")
            || err.contains("Can't find a source");
        if gone {
            bail!(
                "pinned package {} {} is no longer available from the archive (apt-get said: {}).\n\
                 Bump the pins to the archive's current versions with:\n    {BUMP}\n\
                 then review and commit rootfs/packages.lock. (If the archive index is just stale, \
                 run `apt-get update` first.)",
                pin.name,
                pin.version,
                err.trim()
            );
        }
        bail!("downloading {} {}: {}", pin.name, pin.version, err.trim());
    }
    let deb = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb for {}", pin.name))?;
    let got = sha256_file(&deb)?;
    if got != pin.sha256 {
        bail!(
            "{} {}: downloaded file has sha256 {got}, the pin says {}; the archive changed \
             under the same version. Check rootfs/packages.lock and re-pin with `{BUMP}`",
            pin.name,
            pin.version,
            pin.sha256
        );
    }
    std::fs::rename(&deb, &file)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok((file, true))
}

/// Unpacks a `.deb`'s files into `dest`.
pub fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .output()
        .context("running dpkg-deb")?;
    if !out.status.success() {
        bail!(
            "unpacking {}: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_handles_comments_and_meta() {
        let l = parse_list("# c\nbusybox-static\n@linux-image-cloud-amd64  # kernel\n\n");
        assert_eq!(l, vec!["busybox-static", "@linux-image-cloud-amd64"]);
    }

    #[test]
    fn lock_round_trips() {
        let pins = vec![Pin {
            name: "tar".into(),
            version: "1.34+dfsg-1.2+deb12u1".into(),
            sha256: "a".repeat(64),
        }];
        let text = render_lock(&pins);
        assert_eq!(parse_lock(&text, Path::new("x")).expect("parse"), pins);
    }

    #[test]
    fn bad_lock_line_names_file_and_line() {
        let err = parse_lock("# x\ntar 1.0\n", Path::new("rootfs/packages.lock")).expect_err("bad");
        assert!(
            err.to_string().starts_with("rootfs/packages.lock:2:"),
            "{err}"
        );
    }

    #[test]
    fn headers_bring_their_common_tree_and_kbuild() {
        let d = "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86";
        assert_eq!(
            kernel_build_deps(d),
            vec!["linux-headers-6.1.0-56-common", "linux-kbuild-6.1"]
        );
    }

    #[test]
    fn apt_show_fields() {
        let text = "Package: a\nVersion: 1.2\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\nSHA256: ff\n\nPackage: a\nVersion: 0.9\n";
        assert_eq!(stanza_field(text, "Version"), Some("1.2"));
        assert_eq!(stanza_field(text, "SHA256"), Some("ff"));
    }
}

#[cfg(test)]
mod archive_tests {
    use super::*;

    /// Needs apt-get and the Debian archive (as the image build does).
    #[test]
    fn vanished_version_says_how_to_bump() {
        if crate::hosttools::which("apt-get").is_none() {
            eprintln!("skipping: no apt-get");
            return;
        }
        let cache = tempfile::tempdir().expect("tempdir");
        let pin = Pin {
            name: "busybox-static".into(),
            version: "0.0-long-gone".into(),
            sha256: "0".repeat(64),
        };
        let err = fetch(&pin, cache.path())
            .expect_err("no such version")
            .to_string();
        assert!(
            err.contains("busybox-static 0.0-long-gone is no longer available"),
            "{err}"
        );
        assert!(err.contains(BUMP), "{err}");
    }
}
