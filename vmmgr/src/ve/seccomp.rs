//! The system call filter of a VE: a reviewed denylist in
//! `/etc/vzpolicy/seccomp` (format in that file's header).
//!
//! A VE is a system container: its init mounts, pivots and creates namespaces
//! inside its own user namespace, so, as in LXC, everything is allowed except
//! the listed calls, which fail with an errno (EPERM, or ENOSYS where that
//! makes programs fall back as on a kernel without the call).

mod syscalls;

use std::path::{Path, PathBuf};

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the system call table and the filter's architecture check are x86_64 only");

/// Whether a VE may create user namespaces of its own (nested containers,
/// sandboxing services). Systemd inside a VE uses them, hence the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NestedNamespaces {
    #[default]
    Allow,
    /// `clone`, `unshare` and `setns` with `CLONE_NEWUSER` fail with EPERM;
    /// `clone3`, whose flags a filter cannot read, fails with ENOSYS so that
    /// libc falls back to `clone`.
    Deny,
}

/// Which VEs a rule applies to: the section of the policy file it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Before any header, or after `[always]`.
    Always,
    /// After `[nested-namespaces=deny]`.
    NestedNamespacesDenied,
}

impl Section {
    const HEADERS: &[(&str, Section)] = &[
        ("always", Section::Always),
        ("nested-namespaces=deny", Section::NestedNamespacesDenied),
    ];
}

/// The errnos a rule may return.
const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOSYS", libc::ENOSYS),
    ("EACCES", libc::EACCES),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
];

/// Named values a condition may use instead of a number.
const CONSTANTS: &[(&str, u64)] = &[
    ("TIOCSTI", libc::TIOCSTI),
    ("TIOCLINUX", libc::TIOCLINUX),
    ("MNT_FORCE", libc::MNT_FORCE as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    // linux/personality.h
    ("PER_LINUX", 0x0000),
    ("PER_LINUX32", 0x0008),
    ("UNAME26", libc::UNAME26 as u64),
    ("ADDR_NO_RANDOMIZE", libc::ADDR_NO_RANDOMIZE as u64),
];

/// A parsed policy: the rules in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// One line of the policy: deny `syscall` with `errno` when every condition
/// holds (always, if there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    syscall: &'static str,
    nr: i64,
    errno: (&'static str, i32),
    conditions: Vec<Condition>,
    section: Section,
    line: usize,
}

impl Rule {
    pub fn syscall(&self) -> &'static str {
        self.syscall
    }

    /// The errno's name (`EPERM`).
    pub fn errno(&self) -> &'static str {
        self.errno.0
    }

    pub fn is_conditional(&self) -> bool {
        !self.conditions.is_empty()
    }

    pub fn section(&self) -> Section {
        self.section
    }

    /// Its line in the policy file (from 1).
    pub fn line(&self) -> usize {
        self.line
    }
}

/// How much of an argument a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    /// The low 32 bits (`argN`): how the kernel reads `int` and `unsigned
    /// int` arguments, so set high bits cannot dodge the rule.
    Low32,
    /// All 64 bits (`argN:64`).
    Full64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// `argN OP VALUE` or `argN & MASK == VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    arg: u8,
    width: Width,
    op: Op,
    value: u64,
}

/// A policy that cannot be read or used; parse errors name file and line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: unknown x86_64 system call {name:?}", file.display())]
    UnknownSyscall {
        file: PathBuf,
        line: usize,
        name: String,
    },
    #[error(
        "{}:{line}: unknown errno {name:?} (expected EPERM, ENOSYS, EACCES or EOPNOTSUPP)",
        file.display()
    )]
    UnknownErrno {
        file: PathBuf,
        line: usize,
        name: String,
    },
    #[error("{}:{line}: bad condition {text:?}: {reason}", file.display())]
    BadCondition {
        file: PathBuf,
        line: usize,
        text: String,
        reason: &'static str,
    },
    #[error(
        "{}:{line}: unknown section [{name}] (expected [always] or [nested-namespaces=deny])",
        file.display()
    )]
    UnknownSection {
        file: PathBuf,
        line: usize,
        name: String,
    },
    #[error(
        "{}:{line}: {syscall} returns {first_errno} on line {first_line}; one errno per system call",
        file.display()
    )]
    ErrnoConflict {
        file: PathBuf,
        line: usize,
        syscall: &'static str,
        first_errno: &'static str,
        first_line: usize,
    },
    #[error(
        "{}:{line}: {syscall} is also listed on line {first_line}, and one of the two has no condition",
        file.display()
    )]
    Overlap {
        file: PathBuf,
        line: usize,
        syscall: &'static str,
        first_line: usize,
    },
}

/// What is wrong with one line, before file and line are known.
enum LineFault {
    UnknownSyscall(String),
    UnknownErrno(String),
    BadCondition { text: String, reason: &'static str },
    UnknownSection(String),
}

impl LineFault {
    fn at(self, file: &Path, line: usize) -> PolicyError {
        let file = file.to_owned();
        match self {
            LineFault::UnknownSyscall(name) => PolicyError::UnknownSyscall { file, line, name },
            LineFault::UnknownErrno(name) => PolicyError::UnknownErrno { file, line, name },
            LineFault::BadCondition { text, reason } => PolicyError::BadCondition {
                file,
                line,
                text,
                reason,
            },
            LineFault::UnknownSection(name) => PolicyError::UnknownSection { file, line, name },
        }
    }
}

/// Parses a policy file's text; `file` is only for error messages.
pub fn parse_policy(text: &str, file: &Path) -> Result<Policy, PolicyError> {
    let mut section = Section::Always;
    let mut rules: Vec<Rule> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if let Some(header) = content.strip_prefix('[') {
            section = parse_header(header).map_err(|f| f.at(file, line))?;
            continue;
        }
        let rule = parse_rule(content, section, line).map_err(|f| f.at(file, line))?;
        if let Some(first) = rules.iter().find(|r| r.nr == rule.nr) {
            if first.errno != rule.errno {
                return Err(PolicyError::ErrnoConflict {
                    file: file.to_owned(),
                    line,
                    syscall: rule.syscall,
                    first_errno: first.errno.0,
                    first_line: first.line,
                });
            }
            // Several conditional rules for one call are alternatives; an
            // unconditional one would make the others dead (or duplicate).
            if !first.is_conditional() || !rule.is_conditional() {
                return Err(PolicyError::Overlap {
                    file: file.to_owned(),
                    line,
                    syscall: rule.syscall,
                    first_line: first.line,
                });
            }
        }
        rules.push(rule);
    }
    Ok(Policy { rules })
}

fn parse_header(header: &str) -> Result<Section, LineFault> {
    let name = header.strip_suffix(']').unwrap_or(header).trim();
    Section::HEADERS
        .iter()
        .find(|(h, _)| *h == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| LineFault::UnknownSection(name.to_owned()))
}

/// `SYSCALL [ERRNO] [CONDITION [&& CONDITION ...]]`.
fn parse_rule(content: &str, section: Section, line: usize) -> Result<Rule, LineFault> {
    let mut tokens = content.split_whitespace().peekable();
    let name = tokens.next().unwrap_or_default();
    let (syscall, nr) =
        syscalls::lookup(name).ok_or_else(|| LineFault::UnknownSyscall(name.to_owned()))?;
    let errno = match tokens.next_if(|t| !t.starts_with("arg")) {
        None => ERRNOS[0],
        Some(e) => ERRNOS
            .iter()
            .find(|(n, _)| *n == e)
            .copied()
            .ok_or_else(|| LineFault::UnknownErrno(e.to_owned()))?,
    };
    let rest: Vec<&str> = tokens.collect();
    let mut conditions = Vec::new();
    if !rest.is_empty() {
        for term in rest.split(|t| *t == "&&") {
            conditions.push(parse_condition(term)?);
        }
    }
    Ok(Rule {
        syscall,
        nr,
        errno,
        conditions,
        section,
        line,
    })
}

fn parse_condition(term: &[&str]) -> Result<Condition, LineFault> {
    let bad = |reason| LineFault::BadCondition {
        text: term.join(" "),
        reason,
    };
    let (arg, op, value) = match *term {
        [arg, op, value] => {
            let op = match op {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => return Err(bad("the operator is not one of == != < <= > >=")),
            };
            (arg, op, value)
        }
        [arg, "&", mask, "==", value] => {
            let mask = parse_value(mask)
                .ok_or_else(|| bad("the mask is not a number or a known constant"))?;
            (arg, Op::MaskedEq(mask), value)
        }
        [] => return Err(bad("empty condition")),
        _ => return Err(bad("expected `argN OP VALUE` or `argN & MASK == VALUE`")),
    };
    let (index, width) = match arg.strip_suffix(":64") {
        Some(a) => (a, Width::Full64),
        None => (arg, Width::Low32),
    };
    let arg = index
        .strip_prefix("arg")
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|n| *n <= 5)
        .ok_or_else(|| bad("the argument is not one of arg0 to arg5 (or argN:64)"))?;
    let value =
        parse_value(value).ok_or_else(|| bad("the value is not a number or a known constant"))?;
    let fits = |v: u64| width == Width::Full64 || v <= u64::from(u32::MAX);
    let mask_fits = match op {
        Op::MaskedEq(m) => fits(m),
        _ => true,
    };
    if !fits(value) || !mask_fits {
        return Err(bad(
            "wider than the 32 bits `argN` compares (use `argN:64`)",
        ));
    }
    Ok(Condition {
        arg,
        width,
        op,
        value,
    })
}

/// A decimal or `0x` number, or a name from [`CONSTANTS`].
fn parse_value(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    CONSTANTS.iter().find(|(n, _)| *n == text).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        parse_policy(text, Path::new("/etc/vzpolicy/seccomp"))
    }

    #[test]
    fn rules_parse_with_errno_conditions_and_sections() {
        let policy = parse(
            "# header\n\
             kexec_load            # reason\n\
             keyctl ENOSYS\n\
             ioctl EPERM arg1 == TIOCSTI\n\
             ioctl arg1 == 0x541c\n\
             umount2 arg1 & MNT_FORCE == MNT_FORCE\n\
             personality arg0 != 0 && arg0 != 8 && arg0:64 != 0xffffffff\n\
             \n\
             [nested-namespaces=deny]\n\
             clone3 ENOSYS\n\
             [always]\n\
             bpf\n",
        )
        .expect("parses");
        let summary: Vec<_> = policy
            .rules()
            .iter()
            .map(|r| {
                (
                    r.syscall(),
                    r.errno(),
                    r.is_conditional(),
                    r.section(),
                    r.line(),
                )
            })
            .collect();
        use Section::*;
        assert_eq!(
            summary,
            [
                ("kexec_load", "EPERM", false, Always, 2),
                ("keyctl", "ENOSYS", false, Always, 3),
                ("ioctl", "EPERM", true, Always, 4),
                ("ioctl", "EPERM", true, Always, 5),
                ("umount2", "EPERM", true, Always, 6),
                ("personality", "EPERM", true, Always, 7),
                ("clone3", "ENOSYS", false, NestedNamespacesDenied, 10),
                ("bpf", "EPERM", false, Always, 12),
            ]
        );
        let rules = policy.rules();
        assert_eq!(rules[0].nr, libc::SYS_kexec_load);
        assert_eq!(
            rules[2].conditions,
            [Condition {
                arg: 1,
                width: Width::Low32,
                op: Op::Eq,
                value: 0x5412
            }]
        );
        assert_eq!(rules[4].conditions[0].op, Op::MaskedEq(1));
        assert_eq!(rules[5].conditions.len(), 3);
        assert_eq!(rules[5].conditions[2].width, Width::Full64);
    }

    #[test]
    fn unknown_syscall_names_file_and_line() {
        let err = parse("kexec_load\n\nkexec_lod\n").expect_err("typo");
        assert!(
            matches!(&err, PolicyError::UnknownSyscall { line: 3, name, .. } if name == "kexec_lod"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "/etc/vzpolicy/seccomp:3: unknown x86_64 system call \"kexec_lod\""
        );
        // i386-only calls are not x86_64 calls.
        let err = parse("vm86\n").expect_err("i386 only");
        assert!(matches!(err, PolicyError::UnknownSyscall { line: 1, .. }));
    }

    #[test]
    fn bad_errno_names_line() {
        let err = parse("bpf\nkeyctl ENOSYSS\n").expect_err("bad errno");
        assert!(
            matches!(&err, PolicyError::UnknownErrno { line: 2, name, .. } if name == "ENOSYSS"),
            "{err:?}"
        );
        let err = parse("keyctl enosys\n").expect_err("errnos are upper case");
        assert!(matches!(err, PolicyError::UnknownErrno { line: 1, .. }));
    }

    #[test]
    fn bad_conditions_name_line_and_reason() {
        for (text, reason) in [
            ("ioctl arg6 == 1", "the argument"),
            ("ioctl argx == 1", "the argument"),
            ("ioctl arg1 =~ 1", "the operator"),
            ("ioctl arg1 == TIOCSTY", "the value"),
            ("ioctl arg1 == 0x1_0000", "the value"),
            ("ioctl arg1 == 0x100000000", "wider than"),
            ("umount2 arg1 & 0x100000000 == 0", "wider than"),
            ("umount2 arg1 & FORCE == 1", "the mask"),
            ("umount2 arg1 & 1", "the operator"),
            ("umount2 arg1 & 1 != 1", "expected"),
            ("ioctl arg1 == 1 &&", "empty"),
            ("ioctl EPERM arg1==1", "expected"),
        ] {
            let err = parse(&format!("bpf\n{text}\n")).expect_err(text);
            match &err {
                PolicyError::BadCondition {
                    line: 2, reason: r, ..
                } => {
                    assert!(r.starts_with(reason), "{text}: {r}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // A 64-bit comparison takes 64-bit values.
        parse("mmap arg0:64 == 0x100000000\n").expect("64-bit");
    }

    #[test]
    fn unknown_section_names_line() {
        let err = parse("bpf\n[nested-namespaces=maybe]\n").expect_err("section");
        assert!(
            matches!(err, PolicyError::UnknownSection { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn one_errno_per_call_and_no_overlap_with_unconditional_rules() {
        let err = parse("ioctl arg1 == 1\nioctl ENOSYS arg1 == 2\n").expect_err("errno");
        assert!(
            matches!(
                err,
                PolicyError::ErrnoConflict {
                    line: 2,
                    first_line: 1,
                    first_errno: "EPERM",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse("bpf\n[nested-namespaces=deny]\nbpf\n").expect_err("twice");
        assert!(
            matches!(
                err,
                PolicyError::Overlap {
                    line: 3,
                    first_line: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = parse("ioctl arg1 == 1\nioctl\n").expect_err("dead rule");
        assert!(
            matches!(err, PolicyError::Overlap { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn syscall_table_is_x86_64() {
        assert_eq!(syscalls::lookup("read"), Some(("read", 0)));
        assert_eq!(syscalls::lookup("kexec_file_load").map(|s| s.1), Some(320));
        assert_eq!(syscalls::lookup("clone3").map(|s| s.1), Some(435));
        assert_eq!(syscalls::lookup("vm86"), None);
        let mut names: Vec<_> = syscalls::SYSCALLS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), syscalls::SYSCALLS.len());
    }
}
