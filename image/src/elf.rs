//! Finding the shared libraries an ELF program needs, inside a sysroot.

use anyhow::{bail, Context, Result};
use object::read::elf::{Dyn, ElfFile64, FileHeader};
use object::Endianness;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Library directories searched inside the sysroot, in order.
pub const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// DT_NEEDED entries and the interpreter of an ELF file.
pub fn needed(data: &[u8]) -> Result<(Vec<String>, Option<String>)> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let mut libs = Vec::new();
    let endian = file.endian();
    let header = file.elf_header();
    let sections = header.sections(endian, data).context("ELF sections")?;
    if let Some((dynamic, index)) = sections.dynamic(endian, data).context("dynamic section")? {
        let strings = sections
            .strings(endian, data, index)
            .context("dynamic strings")?;
        for d in dynamic {
            if d.d_tag(endian) == u64::from(object::elf::DT_NEEDED) {
                let off = d.d_val(endian) as u32;
                let name = strings
                    .get(off)
                    .ok()
                    .map(|s| String::from_utf8_lossy(s).into_owned());
                if let Some(n) = name {
                    libs.push(n);
                }
            }
        }
    }
    let mut interp = None;
    for seg in header
        .program_headers(endian, data)
        .context("program headers")?
    {
        use object::read::elf::ProgramHeader;
        if seg.p_type(endian) == object::elf::PT_INTERP {
            if let Ok(bytes) = seg.data(endian, data) {
                let s = String::from_utf8_lossy(bytes)
                    .trim_end_matches('\0')
                    .to_owned();
                interp = Some(s);
            }
        }
    }
    Ok((libs, interp))
}

/// Looks for library `name` in the sysroot's library directories.
pub fn find_lib(sysroot: &Path, name: &str) -> Option<PathBuf> {
    LIB_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|rel| sysroot.join(rel).exists())
}

/// Every file (relative to the sysroot) the given programs need to run: the
/// libraries, transitively, and the dynamic loader.
pub fn closure(sysroot: &Path, programs: &[PathBuf]) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut todo: Vec<(PathBuf, String)> = programs
        .iter()
        .map(|p| (p.clone(), p.display().to_string()))
        .collect();
    let mut seen_libs = BTreeSet::new();
    while let Some((rel, who)) = todo.pop() {
        let full = sysroot.join(&rel);
        let data = std::fs::read(&full).with_context(|| format!("reading {}", full.display()))?;
        let (libs, interp) = needed(&data).with_context(|| format!("{}", full.display()))?;
        if let Some(i) = interp {
            out.insert(PathBuf::from(i.trim_start_matches('/')));
        }
        for lib in libs {
            if !seen_libs.insert(lib.clone()) {
                continue;
            }
            let Some(found) = find_lib(sysroot, &lib) else {
                bail!(
                    "{who} needs {lib}, which none of the fetched packages ships: add the \
                     package that has it to rootfs/packages.list and run `cargo run -p image -- pin`"
                );
            };
            todo.push((found.clone(), format!("{lib} (needed by {who})")));
            out.insert(found);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_needed_of_a_host_binary() {
        // /bin/ls on the build machine is dynamically linked against libc.
        let data = std::fs::read("/bin/ls").expect("read /bin/ls");
        let (libs, interp) = needed(&data).expect("parse");
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        assert!(interp.is_some_and(|i| i.contains("ld-linux")));
    }

    #[test]
    fn closure_over_the_host_as_sysroot() {
        let set = closure(Path::new("/"), &[PathBuf::from("bin/ls")]).expect("closure");
        assert!(
            set.iter()
                .any(|p| p.to_string_lossy().contains("libc.so.6")),
            "{set:?}"
        );
    }

    #[test]
    fn missing_library_names_who_needs_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
        std::fs::copy("/bin/ls", dir.path().join("bin/ls")).expect("copy");
        let err = closure(dir.path(), &[PathBuf::from("bin/ls")]).expect_err("no libs");
        let msg = err.to_string();
        assert!(msg.contains("bin/ls needs lib"), "{msg}");
        assert!(msg.contains("rootfs/packages.list"), "{msg}");
    }
}
