//! Capability names and numbers (linux/capability.h), for the reviewed
//! capability list in `/etc/vzpolicy/capabilities`.

/// `(name without CAP_, number)` for every capability this kernel knows.
pub const CAPS: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// Parses a capability list (one name per line, `#` comments); returns the
/// numbers to keep, or the first unknown name with its line.
pub fn parse_keep_list(text: &str) -> Result<Vec<u32>, (usize, String)> {
    let mut keep = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let name = match name.get(..4) {
            Some(p) if p.eq_ignore_ascii_case("CAP_") => &name[4..],
            _ => name,
        };
        match CAPS.iter().find(|(c, _)| c.eq_ignore_ascii_case(name)) {
            Some((_, num)) => keep.push(*num),
            None => return Err((n + 1, name.to_owned())),
        }
    }
    Ok(keep)
}

/// The capabilities to drop: every known one not kept.
pub fn to_drop(keep: &[u32]) -> Vec<u32> {
    CAPS.iter()
        .map(|(_, n)| *n)
        .filter(|n| !keep.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_list_parses_and_drop_is_the_rest() {
        let keep = parse_keep_list("# c\nCHOWN\ncap_kill\n\nSYS_ADMIN # mounts\n").expect("ok");
        assert_eq!(keep, vec![0, 5, 21]);
        let drop = to_drop(&keep);
        assert!(drop.contains(&16) && drop.contains(&25));
        assert!(!drop.contains(&21));
        assert_eq!(drop.len(), CAPS.len() - 3);
    }

    #[test]
    fn unknown_capability_names_line() {
        assert_eq!(parse_keep_list("CHOWN\nFLY\n"), Err((2, "FLY".to_owned())));
    }

    #[test]
    fn numbers_are_dense() {
        for (i, (_, n)) in CAPS.iter().enumerate() {
            assert_eq!(i as u32, *n);
        }
    }
}
