//! Resolving the reviewed module list against the kernel's own dependency data.
//!
//! The Debian package ships the modules but no `modules.dep` (depmod runs at
//! install time), so dependencies are read from each module's `.modinfo`.

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module names are compared with `-` and `_` treated alike, as the kernel does.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the `depends=` field of a module's `.modinfo` section.
pub fn depends(ko: &[u8]) -> Result<Vec<String>> {
    let file = object::File::parse(ko).context("parsing module ELF")?;
    let Some(section) = file.section_by_name(".modinfo") else {
        return Ok(vec![]);
    };
    let data = section.data().context("reading .modinfo")?;
    Ok(parse_modinfo_depends(data))
}

/// Extracts `depends=a,b` from NUL-separated `key=value` modinfo data.
pub fn parse_modinfo_depends(data: &[u8]) -> Vec<String> {
    data.split(|&b| b == 0)
        .filter_map(|kv| kv.strip_prefix(b"depends="))
        .flat_map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .map(|s| normalize(&s))
        .collect()
}

/// The modules of one kernel: name -> path relative to `/lib/modules/<release>`.
#[derive(Debug)]
pub struct Kernel {
    pub root: PathBuf,
    pub modules: BTreeMap<String, PathBuf>,
    pub builtin: BTreeSet<String>,
}

impl Kernel {
    /// Indexes `<root>` (a `/lib/modules/<release>` directory).
    pub fn index(root: &Path) -> Result<Kernel> {
        let mut modules = BTreeMap::new();
        // The kernel's own modules, and ours (`crate::kbuild`) in `extra/`.
        let mut stack = vec![root.join("kernel")];
        if root.join("extra").is_dir() {
            stack.push(root.join("extra"));
        }
        while let Some(dir) = stack.pop() {
            for e in
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
            {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "ko") {
                    let name = normalize(&p.file_stem().unwrap_or_default().to_string_lossy());
                    let rel = p.strip_prefix(root).unwrap_or(&p).to_owned();
                    modules.insert(name, rel);
                }
            }
        }
        let builtin = std::fs::read_to_string(root.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                Path::new(l)
                    .file_stem()
                    .map(|s| normalize(&s.to_string_lossy()))
            })
            .collect();
        Ok(Kernel {
            root: root.to_owned(),
            modules,
            builtin,
        })
    }

    /// Resolves `wanted` into a load order (dependencies first, each module
    /// once), reading dependencies with `deps_of`.
    pub fn load_order(
        &self,
        wanted: &[String],
        deps_of: &mut dyn FnMut(&Path) -> Result<Vec<String>>,
    ) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            let name = normalize(name);
            if self.builtin.contains(&name) {
                continue;
            }
            if !self.modules.contains_key(&name) {
                bail!(
                    "module {name} (rootfs/modules.list) is neither a module nor built into \
                     kernel {}: fix the name or remove it from the list",
                    self.root.display()
                );
            }
            self.visit(&name, &mut done, &mut Vec::new(), &mut order, deps_of)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
        order: &mut Vec<PathBuf>,
        deps_of: &mut dyn FnMut(&Path) -> Result<Vec<String>>,
    ) -> Result<()> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
        }
        let rel = self.modules.get(name).with_context(|| {
            format!("module {name}, needed by {}, is missing", path.join(" -> "))
        })?;
        path.push(name.to_owned());
        for dep in deps_of(&self.root.join(rel))? {
            self.visit(&dep, done, path, order, deps_of)?;
        }
        path.pop();
        done.insert(name.to_owned());
        order.push(rel.clone());
        Ok(())
    }
}

/// `rootfs/modules.list`: its `[initramfs]`, `[fallback]` and `[later]`
/// sections (module names).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub initramfs: Vec<String>,
    pub fallback: Vec<String>,
    pub later: Vec<String>,
}

impl Lists {
    pub fn parse(text: &str) -> Result<Lists> {
        let mut l = Lists::default();
        let mut section: Option<&mut Vec<String>> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            section = match line {
                "[initramfs]" => Some(&mut l.initramfs),
                "[fallback]" => Some(&mut l.fallback),
                "[later]" => Some(&mut l.later),
                _ => {
                    match section.as_deref_mut() {
                        Some(v) => v.push(line.to_owned()),
                        None => bail!(
                            "rootfs/modules.list:{}: module {line:?} before any section: \
                             put it under [initramfs], [fallback] or [later]",
                            n + 1
                        ),
                    }
                    section
                }
            };
        }
        if l.initramfs.is_empty() {
            bail!("rootfs/modules.list has no [initramfs] modules: the root disk needs its driver");
        }
        Ok(l)
    }

    /// What VZROOT loads: the initramfs's modules (skipped there, as
    /// already loaded) and the later ones. The fallback disk drivers only
    /// load when the initramfs needed them for the root disk.
    pub fn on_root(&self) -> Vec<String> {
        [&self.initramfs[..], &self.later[..]].concat()
    }
}

/// What the initramfs holds of the modules: its load list, the fallback
/// list and the files of both.
#[derive(Debug)]
pub struct InitramfsModules {
    pub load: String,
    pub fallback: String,
    pub files: Vec<PathBuf>,
}

impl Kernel {
    /// `path: dependency-path ...` for each module of `order` (modules.dep's
    /// form; built-in dependencies are left out).
    pub fn dep_lines(
        &self,
        order: &[PathBuf],
        deps_of: &mut dyn FnMut(&Path) -> Result<Vec<String>>,
    ) -> Result<String> {
        let mut out = String::new();
        for rel in order {
            let deps: Vec<String> = deps_of(&self.root.join(rel))?
                .iter()
                .filter_map(|d| self.modules.get(&normalize(d)))
                .map(|p| p.display().to_string())
                .collect();
            out.push_str(
                &format!("{}: {}\n", rel.display(), deps.join(" ")).replace(": \n", ":\n"),
            );
        }
        Ok(out)
    }
}

/// Reads a module file's dependencies.
pub fn deps_from_file(path: &Path) -> Result<Vec<String>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    depends(&data).with_context(|| format!("module {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_parsed() {
        let data = b"license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(parse_modinfo_depends(data), vec!["virtio", "virtio_ring"]);
        assert!(parse_modinfo_depends(b"depends=\0").is_empty());
    }

    fn kernel() -> Kernel {
        let mut modules = BTreeMap::new();
        for m in ["a", "b", "c", "d_x"] {
            modules.insert(m.to_owned(), PathBuf::from(format!("kernel/{m}.ko")));
        }
        Kernel {
            root: PathBuf::from("/k"),
            modules,
            builtin: ["ext4".to_owned()].into(),
        }
    }

    fn deps(p: &Path) -> Result<Vec<String>> {
        Ok(match p.to_str() {
            Some("/k/kernel/a.ko") => vec!["b".into(), "c".into()],
            Some("/k/kernel/b.ko") => vec!["c".into(), "ext4".into()],
            _ => vec![],
        })
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let k = kernel();
        let order = k
            .load_order(
                &["a".into(), "c".into(), "ext4".into(), "d-x".into()],
                &mut deps,
            )
            .expect("order");
        let names: Vec<_> = order
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["kernel/c.ko", "kernel/b.ko", "kernel/a.ko", "kernel/d_x.ko"]
        );
    }

    #[test]
    fn dep_lines_name_dependency_paths_without_builtins() {
        let k = kernel();
        let order = k.load_order(&["a".into()], &mut deps).expect("order");
        assert_eq!(
            k.dep_lines(&order, &mut deps).expect("lines"),
            "kernel/c.ko:\nkernel/b.ko: kernel/c.ko\nkernel/a.ko: kernel/b.ko kernel/c.ko\n"
        );
    }

    #[test]
    fn module_list_sections() {
        let l = Lists::parse(
            "# c\n[initramfs]\nvirtio_blk # disk\n\n[fallback]\nata_piix\n[later]\nfuse\nveth\n",
        )
        .expect("parsed");
        assert_eq!(l.initramfs, ["virtio_blk"]);
        assert_eq!(l.fallback, ["ata_piix"]);
        assert_eq!(l.on_root(), ["virtio_blk", "fuse", "veth"]);
        let e = Lists::parse("fuse\n[later]\n").expect_err("no section");
        assert!(e.to_string().contains("modules.list:1"), "{e}");
        assert!(Lists::parse("[later]\nfuse\n").is_err());
    }

    #[test]
    fn unknown_module_is_an_error_naming_it() {
        let err = kernel()
            .load_order(&["nope".into()], &mut deps)
            .expect_err("unknown");
        assert!(err.to_string().contains("module nope"), "{err}");
    }

    #[test]
    fn cycles_are_reported() {
        let k = kernel();
        let mut cyc = |p: &Path| -> Result<Vec<String>> {
            Ok(match p.to_str() {
                Some("/k/kernel/a.ko") => vec!["b".into()],
                Some("/k/kernel/b.ko") => vec!["a".into()],
                _ => vec![],
            })
        };
        let err = k.load_order(&["a".into()], &mut cyc).expect_err("cycle");
        assert!(err.to_string().contains("cycle"), "{err}");
    }
}
