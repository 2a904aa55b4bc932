//! Loading the kernel modules of the reviewed list.
//!
//! The image build resolves `rootfs/modules.list` against the kernel's module
//! dependencies and writes `/etc/modules.load`: one path per line, relative to
//! `/lib/modules/<release>/`, dependencies first. Here we only load them in order.

use std::ffi::CString;
use std::path::Path;

/// The load order written by the image build.
pub const LOAD_LIST: &str = "/etc/modules.load";

/// Outcome of loading the list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    /// `(module path, error)` for every module that failed.
    pub failed: Vec<(String, String)>,
}

/// Parses the load list: blank lines and `#` comments are skipped.
pub fn parse_list(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Loads every module of `list_path` from `modules_dir`. Never stops at a
/// failure: each is recorded and the rest still load.
pub fn load_all(list_path: &Path, modules_dir: &Path) -> Result<Loaded, std::io::Error> {
    let text = std::fs::read_to_string(list_path)?;
    let mut out = Loaded::default();
    let no_params = CString::default();
    for rel in parse_list(&text) {
        let path = modules_dir.join(rel);
        let result =
            std::fs::File::open(&path).and_then(|f| crate::sys::load_module(&f, &no_params));
        match result {
            Ok(()) => out.loaded += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => out.already += 1,
            Err(e) => {
                log::error!(
                    "loading module {} failed: {e}; the features that need it will not work \
                     (is the image's kernel the one the modules were built for?)",
                    path.display()
                );
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
