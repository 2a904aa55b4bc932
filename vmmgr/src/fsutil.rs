//! Small filesystem helpers shared by the daemon and the CLIs.

use std::path::Path;

/// Writes a file so that a power cut leaves either the old or the new one:
/// temporary file, fsync, rename, fsync of the directory. Every failure names
/// the path.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let named = |what: &str, p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| named("creating", dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|f| f.to_str()).unwrap_or("file")
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| named("creating", &tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| named("writing", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| named("renaming into place", path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().map_err(|e| named("syncing", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_atomic_replaces_and_names_the_path_on_failure() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a.conf");
        super::write_atomic(&p, "one\n").expect("write");
        super::write_atomic(&p, "two\n").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "two\n");
        std::fs::create_dir(d.path().join("dir")).expect("mkdir");
        let e = super::write_atomic(&d.path().join("dir"), "x").expect_err("a directory");
        assert!(e.to_string().contains("dir"), "{e}");
    }
}
