//! The masked and read-only path lists (`masked-paths`, `readonly-paths`).
//!
//! One absolute path under `/proc` or `/sys` per line, `#` comments. A path
//! the appliance's kernel may not have is marked `?` after it, with the reason
//! in a comment; any other path that is missing fails the VE's start (fail
//! closed: a typo must not silently leave something visible).

use std::path::Path;

/// One entry of a path list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPath {
    /// Relative to the VE's root (`proc/kcore`).
    pub rel: String,
    /// May be absent on this kernel.
    pub optional: bool,
}

/// Parses a path list; errors name file and line.
pub fn parse(text: &str, file: &Path) -> Result<Vec<PolicyPath>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (path, optional) = match line.strip_suffix('?') {
            Some(p) => (p.trim_end(), true),
            None => (line, false),
        };
        let at = || format!("{}:{}", file.display(), n + 1);
        let rel = path
            .strip_prefix('/')
            .ok_or_else(|| format!("{}: {path:?} is not an absolute path", at()))?;
        let under = rel.starts_with("proc/") || rel.starts_with("sys/");
        let clean = rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
        if !under || !clean || rel.contains(char::is_whitespace) {
            return Err(format!(
                "{}: {path:?}: use a plain path under /proc or /sys (no '.', '..', '//' or spaces)",
                at()
            ));
        }
        out.push(PolicyPath {
            rel: rel.to_owned(),
            optional,
        });
    }
    Ok(out)
}

/// Reads and parses `<dir>/<name>`.
pub fn load(dir: &Path, name: &str) -> Result<Vec<PolicyPath>, String> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_lists_parse_and_cover_runc_and_lxc_defaults() {
        let masked = parse(
            include_str!("../../../rootfs/etc/vzpolicy/masked-paths"),
            Path::new("masked-paths"),
        )
        .expect("masked-paths");
        let ro = parse(
            include_str!("../../../rootfs/etc/vzpolicy/readonly-paths"),
            Path::new("readonly-paths"),
        )
        .expect("readonly-paths");
        let has = |l: &[PolicyPath], p: &str| l.iter().any(|e| e.rel == p);
        // runc/Docker maskedPaths and readonlyPaths
        // (../shared/reference/escape-classes.md).
        for p in [
            "proc/acpi",
            "proc/asound",
            "proc/kcore",
            "proc/keys",
            "proc/latency_stats",
            "proc/timer_list",
            "proc/timer_stats",
            "proc/sched_debug",
            "proc/scsi",
            "sys/firmware",
            "sys/devices/virtual/powercap",
            "proc/interrupts",
        ] {
            assert!(has(&masked, p), "masked-paths lacks /{p}");
        }
        for p in [
            "proc/bus",
            "proc/fs",
            "proc/irq",
            "proc/sys",
            "proc/sysrq-trigger",
        ] {
            assert!(has(&ro, p), "readonly-paths lacks /{p}");
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse("/proc/kcore\n/etc/passwd\n", Path::new("m")).expect_err("outside");
        assert!(e.starts_with("m:2:"), "{e}");
        let e = parse("/proc/../etc\n", Path::new("m")).expect_err("dotdot");
        assert!(e.contains("m:1"), "{e}");
        let l = parse("/proc/timer_stats ?  # gone since 4.11\n", Path::new("m")).expect("ok");
        assert_eq!(
            l,
            vec![PolicyPath {
                rel: "proc/timer_stats".into(),
                optional: true
            }]
        );
    }
}
