//! Loading the kernel modules of the reviewed list.
//!
//! The image build resolves `rootfs/modules.list` against the kernel's module
//! dependencies and writes `/etc/modules.load`: one module per line, relative
//! to `/lib/modules/<release>/`, dependencies first, each as
//! `path: dependency-path ...` (modules.dep's form). The initramfs holds only
//! the modules the root switch needs (and, in `/etc/modules.fallback`, the
//! disk drivers tried when the root disk does not appear); on VZROOT the list
//! is complete and loaded on several threads at once, each module as soon as
//! its dependencies are in, skipping those the initramfs loaded.

use std::ffi::CString;
use std::path::Path;

/// The load order written by the image build.
pub const LOAD_LIST: &str = "/etc/modules.load";
/// In the initramfs: more disk drivers, loaded when the root disk is late.
pub const FALLBACK_LIST: &str = "/etc/modules.fallback";

/// Outcome of loading the list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    /// `(module path, error)` for every module that failed.
    pub failed: Vec<(String, String)>,
    /// The slowest loads, slowest first (at most five).
    pub slowest: Vec<(String, std::time::Duration)>,
}

impl Loaded {
    /// `name 120 ms, name 80 ms` of [`Loaded::slowest`].
    pub fn slowest_text(&self) -> String {
        self.slowest
            .iter()
            .map(|(m, d)| format!("{} {} ms", name_of(m), d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn record(&mut self, rel: &str, took: std::time::Duration) {
        self.slowest.push((rel.to_owned(), took));
        self.slowest.sort_by_key(|s| std::cmp::Reverse(s.1));
        self.slowest.truncate(5);
    }
}

/// Parses the load list: blank lines and `#` comments are skipped; each
/// entry is the path before any `:`.
pub fn parse_list(text: &str) -> Vec<&str> {
    parse_entries(text).into_iter().map(|(p, _)| p).collect()
}

/// Parses the load list into (path, dependency paths).
pub fn parse_entries(text: &str) -> Vec<(&str, Vec<&str>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(':') {
            Some((p, deps)) => (p.trim(), deps.split_whitespace().collect()),
            None => (l, Vec::new()),
        })
        .collect()
}

/// The kernel's name of a module file (`kernel/fs/nls/nls_cp437.ko` ->
/// `nls_cp437`; dashes become underscores).
pub fn name_of(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Loads one module; `Ok(false)` when the kernel already had it.
fn load_one(path: &Path) -> Result<bool, std::io::Error> {
    let no_params = CString::default();
    match std::fs::File::open(path).and_then(|f| crate::sys::load_module(&f, &no_params)) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

fn log_failure(path: &Path, e: &std::io::Error) {
    log::error!(
        "loading module {} failed: {e}; the features that need it will not work \
         (is the image's kernel the one the modules were built for?)",
        path.display()
    );
}

/// Loads the modules of `list_path` on `workers` threads, each once all its
/// dependencies were tried, skipping those `/sys/module` (under `sys`)
/// shows loaded. Never stops at a failure.
pub fn load_parallel(
    list_path: &Path,
    modules_dir: &Path,
    sys: &Path,
    workers: usize,
) -> Result<Loaded, std::io::Error> {
    use std::collections::HashSet;
    use std::sync::{Condvar, Mutex};
    let text = std::fs::read_to_string(list_path)?;
    let entries = parse_entries(&text);
    struct State<'a> {
        next: Vec<(&'a str, Vec<&'a str>)>,
        done: HashSet<&'a str>,
        out: Loaded,
    }
    let mut out = Loaded::default();
    let mut next = Vec::new();
    for (rel, deps) in entries {
        if sys.join("module").join(name_of(rel)).exists() {
            out.already += 1;
        } else {
            next.push((rel, deps));
        }
    }
    let all: HashSet<&str> = next.iter().map(|(p, _)| *p).collect();
    let state = Mutex::new(State {
        next,
        done: HashSet::new(),
        out,
    });
    let wake = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| loop {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                // The first module whose dependencies (those still to load
                // here) were all tried.
                let ready = loop {
                    if st.next.is_empty() {
                        return;
                    }
                    let found = st.next.iter().position(|(_, deps)| {
                        deps.iter().all(|d| !all.contains(d) || st.done.contains(d))
                    });
                    match found {
                        Some(i) => break st.next.remove(i),
                        None => st = wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                    }
                };
                drop(st);
                let path = modules_dir.join(ready.0);
                let t = std::time::Instant::now();
                let r = load_one(&path);
                let took = t.elapsed();
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Ok(true) => {
                        st.out.loaded += 1;
                        st.out.record(ready.0, took);
                    }
                    Ok(false) => st.out.already += 1,
                    Err(e) => {
                        log_failure(&path, &e);
                        st.out.failed.push((ready.0.to_owned(), e.to_string()));
                    }
                }
                st.done.insert(ready.0);
                drop(st);
                wake.notify_all();
            });
        }
    });
    Ok(state.into_inner().unwrap_or_else(|e| e.into_inner()).out)
}

/// Loads every module of `list_path` from `modules_dir`. Never stops at a
/// failure: each is recorded and the rest still load.
pub fn load_all(list_path: &Path, modules_dir: &Path) -> Result<Loaded, std::io::Error> {
    let text = std::fs::read_to_string(list_path)?;
    let mut out = Loaded::default();
    for rel in parse_list(&text) {
        let path = modules_dir.join(rel);
        let t = std::time::Instant::now();
        match load_one(&path) {
            Ok(true) => {
                out.loaded += 1;
                out.record(rel, t.elapsed());
            }
            Ok(false) => out.already += 1,
            Err(e) => {
                log_failure(&path, &e);
                out.failed.push((rel.to_owned(), e.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_skips_comments_and_blanks() {
        let text =
            "# virtio first\nkernel/drivers/virtio/virtio.ko\n\n  kernel/fs/erofs/erofs.ko  \n";
        assert_eq!(
            parse_list(text),
            vec![
                "kernel/drivers/virtio/virtio.ko",
                "kernel/fs/erofs/erofs.ko"
            ]
        );
    }

    #[test]
    fn entries_carry_their_dependencies() {
        let text = "a/virtio.ko:\nb/virtio_blk.ko: a/virtio.ko a/ring.ko\nc/x-y.ko\n";
        let e = parse_entries(text);
        assert_eq!(e[0], ("a/virtio.ko", vec![]));
        assert_eq!(e[1], ("b/virtio_blk.ko", vec!["a/virtio.ko", "a/ring.ko"]));
        assert_eq!(
            parse_list(text),
            ["a/virtio.ko", "b/virtio_blk.ko", "c/x-y.ko"]
        );
        assert_eq!(name_of("c/x-y.ko"), "x_y");
        assert_eq!(name_of("kernel/fs/nls/nls_cp437.ko.xz"), "nls_cp437");
    }

    #[test]
    fn parallel_load_skips_loaded_and_tries_everything_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        std::fs::create_dir_all(sys.join("module/loaded")).expect("mkdir");
        let list = dir.path().join("modules.load");
        std::fs::write(
            &list,
            "k/loaded.ko:\nk/a.ko:\nk/b.ko: k/a.ko\nk/c.ko: k/b.ko k/loaded.ko\nk/d.ko:\n",
        )
        .expect("write");
        let r = load_parallel(&list, dir.path(), &sys, 3).expect("list readable");
        assert_eq!(r.already, 1);
        assert_eq!(r.loaded, 0);
        // Every missing file is tried once, a dependency's failure included.
        let mut failed: Vec<_> = r.failed.iter().map(|(m, _)| m.as_str()).collect();
        failed.sort_unstable();
        assert_eq!(failed, ["k/a.ko", "k/b.ko", "k/c.ko", "k/d.ko"]);
    }

    #[test]
    fn missing_module_file_is_recorded_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("modules.load");
        std::fs::write(&list, "kernel/nope.ko\nkernel/nope2.ko\n").expect("write");
        let r = load_all(&list, dir.path()).expect("list readable");
        assert_eq!(r.loaded, 0);
        assert_eq!(r.failed.len(), 2);
        assert_eq!(r.failed[0].0, "kernel/nope.ko");
    }
}
