//! Our own kernel modules (`rootfs/kmod/<name>/`: C sources and a `Kbuild`),
//! built against the pinned kernel's headers package (`linux-headers-*`,
//! unpacked into the sysroot with the other packages) by the build machine's
//! `gcc-12`, the compiler Debian built that kernel with. The result lands in
//! the sysroot's `lib/modules/<release>/extra/`, where `modules.list` finds
//! it like any of the kernel's modules.
//!
//! Reproducible: the build directories are mapped to fixed names in the debug
//! information and the debug information is stripped, so two builds from
//! different checkouts give the same bytes.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The headers tree of `release` in the sysroot.
fn headers(sysroot: &Path, release: &str) -> Result<PathBuf> {
    let dir = sysroot
        .join("usr/src")
        .join(format!("linux-headers-{release}"));
    if !dir.join("Makefile").is_file() {
        bail!(
            "no kernel headers for {release} in the pinned packages: rootfs/kmod needs \
             linux-headers-{release} (rootfs/packages.list has @linux-headers-cloud-amd64; \
             re-pin with `{}` so headers and kernel are the same version)",
            crate::debs::BUMP
        );
    }
    // Debian's per-flavour Makefile includes the common tree by an absolute
    // path under /usr/src: point it into the sysroot (scratch space).
    let makefile = dir.join("Makefile");
    let text = std::fs::read_to_string(&makefile)
        .with_context(|| format!("reading {}", makefile.display()))?;
    let fixed = text.replace(
        "include /usr/src/",
        &format!("include {}/usr/src/", sysroot.display()),
    );
    std::fs::write(&makefile, fixed).with_context(|| format!("writing {}", makefile.display()))?;
    Ok(dir)
}

/// The module directories under `src`, sorted.
pub fn sources(src: &Path) -> Result<Vec<PathBuf>> {
    if !src.is_dir() {
        return Ok(vec![]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Kbuild").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Builds every module of `src` for `release`; returns the names built.
pub fn build(sysroot: &Path, release: &str, src: &Path, work: &Path) -> Result<Vec<String>> {
    let dirs = sources(src)?;
    if dirs.is_empty() {
        return Ok(vec![]);
    }
    let kdir = headers(sysroot, release)?;
    let extra = sysroot.join("lib/modules").join(release).join("extra");
    std::fs::create_dir_all(&extra).with_context(|| format!("creating {}", extra.display()))?;
    let mut built = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let build = work.join("kmod").join(&name);
        let _ = std::fs::remove_dir_all(&build);
        std::fs::create_dir_all(&build)?;
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_file() {
                std::fs::copy(&p, build.join(p.file_name().unwrap_or_default()))
                    .with_context(|| format!("copying {}", p.display()))?;
            }
        }
        let kcflags = format!(
            "-ffile-prefix-map={}={name} -ffile-prefix-map={}=/",
            build.display(),
            sysroot.display()
        );
        let out = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&kdir)
            .arg(format!("M={}", build.display()))
            .arg(format!("KCFLAGS={kcflags}"))
            .arg("modules")
            .env_remove("ARCH")
            .env_remove("CROSS_COMPILE")
            .env_remove("MAKEFLAGS")
            .output()
            .context("running make for the kernel modules (is `make` installed?)")?;
        let ko = build.join(format!("{name}.ko"));
        if !out.status.success() || !ko.is_file() {
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "building kernel module {} for {release} failed:\n{}",
                dir.display(),
                tail.join("\n")
            );
        }
        let dest = extra.join(format!("{name}.ko"));
        let out = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&dest)
            .arg(&ko)
            .output()
            .context("running strip (binutils)")?;
        if !out.status.success() {
            bail!(
                "stripping {}: {}",
                ko.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        built.push(name);
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_the_dirs_with_a_kbuild() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("b")).expect("mkdir");
        std::fs::write(t.path().join("b/Kbuild"), "obj-m := b.o\n").expect("write");
        std::fs::create_dir_all(t.path().join("a")).expect("mkdir");
        std::fs::write(t.path().join("a/Kbuild"), "obj-m := a.o\n").expect("write");
        std::fs::create_dir_all(t.path().join("notes")).expect("mkdir");
        let got = sources(t.path()).expect("sources");
        assert_eq!(got, vec![t.path().join("a"), t.path().join("b")]);
        assert!(sources(&t.path().join("none")).expect("none").is_empty());
    }

    #[test]
    fn missing_headers_say_what_to_pin() {
        let t = tempfile::tempdir().expect("tempdir");
        let err = headers(t.path(), "6.1.0-99-cloud-amd64")
            .expect_err("no headers")
            .to_string();
        assert!(err.contains("linux-headers-6.1.0-99-cloud-amd64"), "{err}");
        assert!(err.contains(crate::debs::BUMP), "{err}");
    }
}

#[cfg(test)]
mod archive_tests {
    use super::*;

    /// Needs apt-get, the Debian archive (or the image build's package
    /// cache) and gcc-12, as the image build does: builds the modules twice,
    /// in two sysroots at different paths, and compares the bytes.
    #[test]
    fn modules_build_reproducibly_against_the_pinned_headers() {
        if crate::hosttools::which("apt-get").is_none()
            || crate::hosttools::which("gcc-12").is_none()
        {
            eprintln!("skipping: no apt-get or gcc-12");
            return;
        }
        let ws = crate::workspace_dir();
        let opts = crate::build::Options::new(ws.clone());
        let lock = ws.join("rootfs/packages.lock");
        let text = std::fs::read_to_string(&lock).expect("lock");
        let pins = crate::debs::parse_lock(&text, &lock).expect("parse lock");
        let release = pins
            .iter()
            .find_map(|p| p.name.strip_prefix("linux-image-"))
            .expect("a kernel pin")
            .to_owned();
        std::fs::create_dir_all(&opts.cache).expect("cache");
        let t = tempfile::tempdir().expect("tempdir");
        let mut built = Vec::new();
        for run in ["a", "bb"] {
            let sysroot = t.path().join(run).join("sysroot");
            std::fs::create_dir_all(&sysroot).expect("sysroot");
            for pin in pins.iter().filter(|p| {
                p.name.starts_with("linux-headers-") || p.name.starts_with("linux-kbuild-")
            }) {
                let (deb, _) = crate::debs::fetch(pin, &opts.cache).expect("fetch");
                crate::debs::unpack(&deb, &sysroot).expect("unpack");
            }
            let names = build(
                &sysroot,
                &release,
                &ws.join("rootfs/kmod"),
                &t.path().join(run),
            )
            .expect("build");
            assert!(names.contains(&"vzproc".to_owned()), "{names:?}");
            let ko = sysroot
                .join("lib/modules")
                .join(&release)
                .join("extra/vzproc.ko");
            built.push(std::fs::read(&ko).expect("module"));
        }
        assert!(built[0] == built[1], "two builds of vzproc.ko differ");
        let modinfo = String::from_utf8_lossy(&built[0]).into_owned();
        assert!(
            modinfo.contains(&format!("vermagic={release} ")),
            "the module is built for {release}"
        );
    }
}
