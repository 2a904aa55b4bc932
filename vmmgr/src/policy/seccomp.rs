//! The system call filter of a VE: a reviewed denylist in
//! `/etc/vzpolicy/seccomp` (format in that file's header).
//!
//! A VE is a system container: its init mounts, pivots and creates namespaces
//! inside its own user namespace, so, as in LXC, everything is allowed except
//! the listed calls, which fail with an errno (EPERM, or ENOSYS where that
//! makes programs fall back as on a kernel without the call).

mod syscalls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

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

    fn applies(self, nested: NestedNamespaces) -> bool {
        match self {
            Section::Always => true,
            Section::NestedNamespacesDenied => nested == NestedNamespaces::Deny,
        }
    }
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
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    // linux/sched.h (not in libc): unshare and setns only.
    ("CLONE_NEWTIME", 0x80),
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
    /// Every rule, whatever its section, in file order.
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
    #[error("building the filter of the {errno} rules")]
    BuildFilter {
        errno: &'static str,
        #[source]
        source: seccompiler::BackendError,
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

/// A compiled filter, ready to [`install`]: one classic BPF program (the
/// filters of [`compile`] joined), or, if they would not fit in one, several
/// that the kernel stacks, running each on every call and acting on the most
/// severe verdict (kill, then errno, then allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    filters: Vec<BpfProgram>,
}

/// Reads `<policy_dir>/seccomp` and compiles it for a VE whose nested
/// namespaces are `nested`. Call before forking or joining the VE: inside it
/// the appliance's files are out of reach.
pub fn load(policy_dir: &Path, nested: NestedNamespaces) -> Result<Program, PolicyError> {
    let path = policy_dir.join("seccomp");
    let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
        path: path.clone(),
        source,
    })?;
    compile(&parse_policy(&text, &path)?, nested)
}

/// Compiles the rules of `policy` that apply to a VE whose nested namespaces
/// are `nested`.
///
/// seccompiler gives one verdict per filter, so each errno gets a filter of
/// its own (allow unless a rule matches); the rules of a call share one errno
/// (checked when parsing), so the filters never disagree. Every filter kills
/// the process on an architecture other than x86_64, and a first one also
/// kills x32 calls (see `x32_guard`).
pub fn compile(policy: &Policy, nested: NestedNamespaces) -> Result<Program, PolicyError> {
    Ok(Program {
        filters: chain(filters(policy, nested)?),
    })
}

/// The filters [`compile`] joins: the x32 guard, then one per errno.
fn filters(policy: &Policy, nested: NestedNamespaces) -> Result<Vec<BpfProgram>, PolicyError> {
    let mut by_errno: BTreeMap<i32, (&'static str, BTreeMap<i64, Vec<SeccompRule>>)> =
        BTreeMap::new();
    for rule in policy.rules.iter().filter(|r| r.section.applies(nested)) {
        let (name, errno) = rule.errno;
        let build = |source| PolicyError::BuildFilter {
            errno: name,
            source,
        };
        let (_, calls) = by_errno
            .entry(errno)
            .or_insert_with(|| (name, BTreeMap::new()));
        // An empty chain matches the call whatever its arguments.
        let chain = calls.entry(rule.nr).or_default();
        if rule.is_conditional() {
            let conditions = rule
                .conditions
                .iter()
                .map(Condition::to_seccompiler)
                .collect::<Result<_, _>>()
                .map_err(build)?;
            chain.push(SeccompRule::new(conditions).map_err(build)?);
        }
    }
    let mut filters = vec![x32_guard()];
    for (errno, (name, calls)) in by_errno {
        let build = |source| PolicyError::BuildFilter {
            errno: name,
            source,
        };
        let filter = SeccompFilter::new(
            calls,
            SeccompAction::Allow,
            SeccompAction::Errno(errno.unsigned_abs()),
            TargetArch::x86_64,
        )
        .map_err(build)?;
        filters.push(filter.try_into().map_err(build)?);
    }
    Ok(filters)
}

/// The kernel's limit on one classic BPF program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// Joins `filters` into one program that gives the same verdicts, when it
/// fits in [`MAX_INSNS`]; otherwise leaves them to be stacked.
///
/// Each filter installed costs the VE's start a conversion, a JIT
/// compilation and the kernel's pass over every system call number to
/// build its allow cache, and costs every later system call of the VE one
/// more filter to run. Joined, each filter's "allow" becomes a jump to the
/// next filter's first instruction, so a call goes on to the next filter
/// exactly where it would have been allowed; any other verdict ends the
/// program as before. The kernel's stacked filters act on the most severe
/// verdict of all; joined ones on the first one that is not "allow". These
/// agree because every filter kills a foreign architecture the same way,
/// the x32 guard kills before any errno, and a system call has rules in one
/// errno filter only (checked when parsing).
fn chain(filters: Vec<BpfProgram>) -> Vec<BpfProgram> {
    use seccompiler::sock_filter;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    let total: usize = filters.iter().map(Vec::len).sum();
    if filters.len() < 2 || total > MAX_INSNS {
        return filters;
    }
    let last = filters.len() - 1;
    let mut joined = Vec::with_capacity(total);
    for (i, filter) in filters.into_iter().enumerate() {
        let len = filter.len();
        for (at, insn) in filter.into_iter().enumerate() {
            let allow = insn.code == RET && insn.k == libc::SECCOMP_RET_ALLOW;
            joined.push(if allow && i < last {
                // Relative to the next instruction: past the rest of this filter.
                let k = u32::try_from(len - at - 1).expect("within MAX_INSNS");
                sock_filter {
                    code: JA,
                    jt: 0,
                    jf: 0,
                    k,
                }
            } else {
                insn
            });
        }
    }
    vec![joined]
}

/// Installs `program` on the calling thread, for it and every process it
/// forks or executes from now on. The filter cannot be removed.
///
/// Does not set `no_new_privs`, so setuid programs inside the VE (`su`,
/// `ping`) keep working; the kernel then requires CAP_SYS_ADMIN in the
/// caller's user namespace (VE root or appliance root have it). Filters only
/// the calling thread: call from a single-threaded process. Neither allocates
/// nor locks, so a forked child of a multi-threaded process may call it. If it
/// fails, part of the program may be installed: do not go on to run the VE.
pub fn install(program: &Program) -> std::io::Result<()> {
    for filter in &program.filters {
        crate::sys::seccomp_install_filter(filter)?;
    }
    Ok(())
}

impl Condition {
    fn to_seccompiler(&self) -> Result<SeccompCondition, seccompiler::BackendError> {
        let width = match self.width {
            Width::Low32 => SeccompCmpArgLen::Dword,
            Width::Full64 => SeccompCmpArgLen::Qword,
        };
        let op = match self.op {
            Op::Eq => SeccompCmpOp::Eq,
            Op::Ne => SeccompCmpOp::Ne,
            Op::Lt => SeccompCmpOp::Lt,
            Op::Le => SeccompCmpOp::Le,
            Op::Gt => SeccompCmpOp::Gt,
            Op::Ge => SeccompCmpOp::Ge,
            Op::MaskedEq(mask) => SeccompCmpOp::MaskedEq(mask),
        };
        SeccompCondition::new(self.arg, width, op, self.value)
    }
}

/// `AUDIT_ARCH_X86_64` (linux/audit.h): EM_X86_64 | 64-bit | little endian.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// Set in the number of every x32-ABI system call (asm/unistd.h).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A filter that kills the process on any x32-ABI system call.
///
/// x32 calls arrive with `AUDIT_ARCH_X86_64` and the number `0x40000000 |
/// n`, so a denylist keyed by x86_64 numbers would not see, say, an x32
/// `keyctl`, on a kernel built with x32 support. seccompiler matches exact
/// numbers only and cannot express "every number from this bit up", hence
/// these eight instructions (libseccomp adds the same check). Number -1 is
/// let through: it is how a tracer skips a call, and the kernel answers it
/// with ENOSYS. No VE template ships x32 programs.
fn x32_guard() -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const ARCH: u32 = std::mem::offset_of!(libc::seccomp_data, arch) as u32;
    const NR: u32 = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        op(LD_ABS, 0, 0, ARCH),
        op(JEQ, 1, 0, AUDIT_ARCH_X86_64), // x86_64: on to the number
        op(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        op(LD_ABS, 0, 0, NR),
        op(JGE, 0, 2, X32_SYSCALL_BIT), // below the x32 bit: allow
        op(JEQ, 1, 0, u32::MAX),        // -1: allow
        op(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        op(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
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

    const SHIPPED: &str = include_str!("../../../rootfs/etc/vzpolicy/seccomp");

    fn shipped() -> Policy {
        parse_policy(SHIPPED, Path::new("rootfs/etc/vzpolicy/seccomp"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn denied(policy: &Policy, section: Section) -> Vec<(&'static str, &'static str, bool)> {
        policy
            .rules()
            .iter()
            .filter(|r| r.section() == section)
            .map(|r| (r.syscall(), r.errno(), r.is_conditional()))
            .collect()
    }

    #[test]
    fn shipped_policy_denies_what_it_must_and_allows_a_system_container() {
        let policy = shipped();
        let always = denied(&policy, Section::Always);
        for (call, errno) in [
            ("kexec_load", "EPERM"),
            ("kexec_file_load", "EPERM"),
            ("init_module", "EPERM"),
            ("finit_module", "EPERM"),
            ("delete_module", "EPERM"),
            ("open_by_handle_at", "EPERM"),
            ("name_to_handle_at", "EPERM"),
            ("bpf", "EPERM"),
            ("userfaultfd", "EPERM"),
            ("perf_event_open", "EPERM"),
            ("io_uring_setup", "ENOSYS"),
            ("io_uring_enter", "ENOSYS"),
            ("io_uring_register", "ENOSYS"),
            ("keyctl", "ENOSYS"),
            ("add_key", "ENOSYS"),
            ("request_key", "ENOSYS"),
            ("swapon", "EPERM"),
            ("swapoff", "EPERM"),
            ("acct", "EPERM"),
            ("quotactl", "EPERM"),
            ("quotactl_fd", "EPERM"),
            ("lookup_dcookie", "EPERM"),
            ("iopl", "EPERM"),
            ("ioperm", "EPERM"),
            ("settimeofday", "EPERM"),
            ("clock_settime", "EPERM"),
            ("clock_adjtime", "EPERM"),
            ("adjtimex", "EPERM"),
            ("syslog", "EPERM"),
            ("nfsservctl", "EPERM"),
            ("uselib", "EPERM"),
        ] {
            assert!(always.contains(&(call, errno, false)), "{call} {errno}");
        }
        for call in ["ioctl", "umount2", "personality"] {
            assert!(
                always.contains(&(call, "EPERM", true)),
                "{call} by argument"
            );
        }
        for call in [
            "reboot",
            "mount",
            "pivot_root",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "ptrace",
            "chroot",
            "sethostname",
            "seccomp",
            "clone",
            "clone3",
            "unshare",
            "setns",
        ] {
            assert!(
                !always.iter().any(|(c, _, _)| *c == call),
                "{call} must stay allowed"
            );
        }
        // Each namespace type on its own line: clone (7: no CLONE_NEWTIME),
        // unshare and setns (8 each), and clone3 whole.
        let mut want = vec![("clone", "EPERM", true); 7];
        want.extend([("unshare", "EPERM", true); 8]);
        want.extend([("setns", "EPERM", true); 8]);
        want.push(("clone3", "ENOSYS", false));
        assert_eq!(denied(&policy, Section::NestedNamespacesDenied), want);
    }

    #[test]
    fn compile_joins_the_x32_guard_and_one_filter_per_errno() {
        let policy = parse(
            "bpf\nkeyctl ENOSYS\nioctl arg1 == TIOCSTI\n\
             [nested-namespaces=deny]\nclone3 ENOSYS\nunshare arg0 & CLONE_NEWUSER == CLONE_NEWUSER\n",
        )
        .expect("parses");
        let allow = compile(&policy, NestedNamespaces::Allow).expect("compiles");
        let deny = compile(&policy, NestedNamespaces::Deny).expect("compiles");
        assert_eq!(allow.filters.len(), 1, "one program");
        assert_eq!(deny.filters.len(), 1, "one program");
        let guard = x32_guard();
        // The guard comes first; its "allow" now jumps past its own end.
        let head = &allow.filters[0][..guard.len()];
        assert_eq!(head[..guard.len() - 1], guard[..guard.len() - 1]);
        assert_eq!(
            (head[guard.len() - 1].code, head[guard.len() - 1].k),
            ((libc::BPF_JMP | libc::BPF_JA) as u16, 0)
        );
        assert!(
            allow.filters[0].len() < deny.filters[0].len(),
            "the nested rules add instructions"
        );
        let only_guard = compile(
            &parse("# nothing\n").expect("parses"),
            NestedNamespaces::Deny,
        );
        assert_eq!(only_guard.expect("compiles").filters, [x32_guard()]);
    }

    #[test]
    fn chain_keeps_filters_apart_when_joined_they_would_not_fit() {
        let big = vec![x32_guard(); MAX_INSNS / x32_guard().len() + 1];
        assert_eq!(chain(big.clone()), big);
        let fits = vec![x32_guard(); 2];
        assert_eq!(chain(fits)[0].len(), 2 * x32_guard().len());
    }

    /// Runs classic BPF `prog` on a seccomp_data the way the kernel does;
    /// panics on an instruction seccomp programs here should not contain.
    fn run_bpf(prog: &[seccompiler::sock_filter], data: &[u32; 16]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &prog[pc];
            pc += 1;
            let code = u32::from(i.code);
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    acc = data[i.k as usize / 4]
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += i.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += jump(acc == i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += jump(acc >= i.k),
                c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => pc += jump(acc > i.k),
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => {
                    pc += jump(acc & i.k != 0)
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                other => panic!("instruction {other:#x} at {}", pc - 1),
            }
        }
    }

    /// The kernel's verdict for stacked filters: the most severe action
    /// (the lowest action value, as signed), the newest filter first.
    fn stacked(filters: &[BpfProgram], data: &[u32; 16]) -> u32 {
        let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        filters
            .iter()
            .rev()
            .fold(libc::SECCOMP_RET_ALLOW, |best, f| {
                let r = run_bpf(f, data);
                if action(r) < action(best) {
                    r
                } else {
                    best
                }
            })
    }

    #[test]
    fn the_joined_program_gives_the_stacked_filters_verdicts() {
        let policy = shipped();
        // Every value a condition names, on either half of any argument.
        let mut values: Vec<u64> = vec![0, 1, u64::MAX, u64::from(u32::MAX)];
        values.extend(CONSTANTS.iter().map(|(_, v)| *v));
        values.extend(policy.rules().iter().flat_map(|r| {
            r.conditions.iter().flat_map(|c| match c.op {
                Op::MaskedEq(mask) => vec![c.value, mask, c.value | mask, !c.value],
                _ => vec![c.value, c.value.wrapping_add(1), c.value.wrapping_sub(1)],
            })
        }));
        let arch = AUDIT_ARCH_X86_64;
        let mut checked = 0;
        // Every number the table knows, and a few past it.
        let top = syscalls::SYSCALLS
            .iter()
            .map(|(_, nr)| *nr as u32)
            .max()
            .expect("a table");
        for nested in [NestedNamespaces::Allow, NestedNamespaces::Deny] {
            let joined = compile(&policy, nested).expect("compiles");
            assert_eq!(joined.filters.len(), 1, "{nested:?}: one program");
            // The same filters, as the kernel would stack them.
            let apart = filters(&policy, nested).expect("compiles");
            assert!(apart.len() >= 3, "the guard and at least two errno filters");
            assert_eq!(apart[0], x32_guard());
            for nr in (0..top + 8).chain([X32_SYSCALL_BIT | 39, u32::MAX]) {
                for archv in [arch, 0x4000_0003 /* i386 */] {
                    for arg in 0..6 {
                        for v in &values {
                            let mut data = [0u32; 16];
                            (data[0], data[1]) = (nr, archv);
                            data[4 + 2 * arg] = *v as u32;
                            data[5 + 2 * arg] = (*v >> 32) as u32;
                            let (want, got) =
                                (stacked(&apart, &data), run_bpf(&joined.filters[0], &data));
                            assert_eq!(
                                got, want,
                                "{nested:?} nr {nr} arch {archv:#x} arg{arg} {v:#x}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }

    #[test]
    fn shipped_policy_compiles_for_both_nested_modes() {
        let policy = shipped();
        for nested in [NestedNamespaces::Allow, NestedNamespaces::Deny] {
            let program = compile(&policy, nested).expect("compiles");
            // The x32 guard, the EPERM and the ENOSYS filter, joined.
            assert_eq!(program.filters.len(), 1, "{nested:?}");
            assert!(
                program.filters[0].len() <= MAX_INSNS,
                "fits the kernel's BPF_MAXINSNS"
            );
        }
    }

    #[test]
    fn load_reads_the_policy_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path(), NestedNamespaces::Allow).expect_err("no file");
        assert!(matches!(&err, PolicyError::Read { path, .. } if path.ends_with("seccomp")));
        std::fs::write(dir.path().join("seccomp"), "bpf\nfly\n").expect("write");
        let err = load(dir.path(), NestedNamespaces::Allow).expect_err("bad name");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: unknown x86_64 system call \"fly\"",
                dir.path().join("seccomp").display()
            )
        );
        std::fs::write(dir.path().join("seccomp"), SHIPPED).expect("write");
        let program = load(dir.path(), NestedNamespaces::Deny).expect("loads");
        assert_eq!(
            program,
            compile(&shipped(), NestedNamespaces::Deny).expect("compiles")
        );
    }

    /// The errno of the last failed call.
    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// `syscall(nr, a, b, c)`: Ok(return value) or Err(errno).
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr`: here they are
    /// numbers, invalid descriptors, NULL or pointers to live C strings, and
    /// the calls used never write through a pointer.
    unsafe fn raw(nr: libc::c_long, a: u64, b: u64, c: u64) -> Result<libc::c_long, i32> {
        // SAFETY: forwarded to the caller (see above).
        let rc = unsafe { libc::syscall(nr, a, b, c) };
        if rc == -1 {
            Err(errno())
        } else {
            Ok(rc)
        }
    }

    /// Forks; the child installs `program`, runs `probe` and exits with its
    /// result (100 if installing failed). Returns how the child ended.
    ///
    /// The test binary is multi-threaded, so the child only makes system
    /// calls: `install` and the probes neither allocate nor lock.
    fn in_filtered_child(program: &Program, probe: fn() -> i32) -> nix::sys::wait::WaitStatus {
        // SAFETY: the child runs only async-signal-safe code (system calls
        // through `install` and `probe`, then `_exit`), so no lock held by
        // another thread of the test binary at the fork can block it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = match install(program) {
                Ok(()) => probe(),
                Err(_) => 100,
            };
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(code) };
        }
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("waitpid")
    }

    /// Checks in order; returns 0 if all hold, else the number of the first
    /// that failed.
    fn first_failure<'a>(mut checks: impl Iterator<Item = &'a bool>) -> i32 {
        checks.position(|ok| !ok).map_or(0, |i| i as i32 + 1)
    }

    const NO_PATH: &std::ffi::CStr = c"/nonexistent-seccomp-test";
    /// `clone` and `unshare` flags the kernel rejects with EINVAL whatever
    /// the filter, so a probe never creates a process or namespace.
    const NEWUSER_AND_FS: u64 = (libc::CLONE_NEWUSER | libc::CLONE_FS) as u64;
    const NEWUSER_AND_VFORK: u64 = (libc::CLONE_NEWUSER | libc::CLONE_VFORK) as u64;

    fn probe_common() -> [bool; 13] {
        let fd = u64::MAX; // -1: no descriptor
        let path = NO_PATH.as_ptr() as u64;
        // SAFETY: every call below passes numbers, fd -1, NULL or a live C
        // string (`path`), and none of them writes through a pointer: the
        // ioctls fail on fd -1 before reading their argument.
        unsafe {
            [
                raw(libc::SYS_keyctl, 0, (-3i64) as u64, 0) == Err(libc::ENOSYS),
                raw(libc::SYS_add_key, 0, 0, 0) == Err(libc::ENOSYS),
                raw(libc::SYS_io_uring_setup, 0, 0, 0) == Err(libc::ENOSYS),
                raw(libc::SYS_bpf, 0, 0, 0) == Err(libc::EPERM),
                raw(libc::SYS_ioctl, fd, libc::TIOCSTI, 0) == Err(libc::EPERM),
                // High bits the kernel ignores do not dodge the rule.
                raw(
                    libc::SYS_ioctl,
                    fd,
                    0xffff_0000_0000_0000 | libc::TIOCSTI,
                    0,
                ) == Err(libc::EPERM),
                raw(libc::SYS_ioctl, fd, libc::TIOCLINUX, 0) == Err(libc::EPERM),
                raw(libc::SYS_ioctl, fd, libc::TIOCGWINSZ, 0) == Err(libc::EBADF),
                raw(libc::SYS_umount2, path, libc::MNT_FORCE as u64, 0) == Err(libc::EPERM),
                raw(libc::SYS_umount2, path, libc::MNT_DETACH as u64, 0) == Err(libc::ENOENT),
                raw(libc::SYS_personality, 0x0040_0000, 0, 0) == Err(libc::EPERM),
                raw(libc::SYS_personality, 0xffff_ffff, 0, 0).is_ok(),
                raw(libc::SYS_getpid, 0, 0, 0).is_ok(),
            ]
        }
    }

    /// Every namespace type, and whether `clone` takes it (CLONE_NEWTIME
    /// shares its bit with the exit signal there).
    const NAMESPACES: [(i32, bool); 8] = [
        (libc::CLONE_NEWUSER, true),
        (libc::CLONE_NEWNS, true),
        (libc::CLONE_NEWUTS, true),
        (libc::CLONE_NEWIPC, true),
        (libc::CLONE_NEWNET, true),
        (libc::CLONE_NEWPID, true),
        (libc::CLONE_NEWCGROUP, true),
        (0x80, false),
    ];

    /// For each namespace type: `clone` (with CLONE_SIGHAND but not
    /// CLONE_VM), `unshare` (with CLONE_VFORK) and `setns` (fd -1), which
    /// the kernel rejects with EINVAL, EINVAL and EBADF whatever the
    /// filter, so a probe never creates a process or namespace; the filter
    /// answers `denied` first when it holds.
    fn probe_namespaces(denied: Option<i32>) -> Vec<bool> {
        let mut out = Vec::new();
        for (flag, in_clone) in NAMESPACES {
            let flag = flag as u64;
            let want = |kernel: i32| Err(denied.unwrap_or(kernel));
            // SAFETY: numbers and fd -1; none of these reads memory.
            unsafe {
                if in_clone {
                    let sighand = libc::CLONE_SIGHAND as u64;
                    out.push(raw(libc::SYS_clone, flag | sighand, 0, 0) == want(libc::EINVAL));
                }
                let vfork = libc::CLONE_VFORK as u64;
                out.push(raw(libc::SYS_unshare, flag | vfork, 0, 0) == want(libc::EINVAL));
                out.push(raw(libc::SYS_setns, u64::MAX, flag, 0) == want(libc::EBADF));
            }
        }
        out
    }

    fn probe_nested_allowed() -> i32 {
        let common = probe_common();
        let mut nested = probe_namespaces(None);
        // SAFETY: numbers and a NULL struct pointer with size 0, which
        // clone3 rejects before reading.
        unsafe {
            nested.push(raw(libc::SYS_clone, NEWUSER_AND_FS, 0, 0) == Err(libc::EINVAL));
            nested.push(raw(libc::SYS_unshare, NEWUSER_AND_VFORK, 0, 0) == Err(libc::EINVAL));
            nested.push(raw(libc::SYS_clone3, 0, 0, 0) == Err(libc::EINVAL));
        }
        first_failure(common.iter().chain(&nested))
    }

    fn probe_nested_denied() -> i32 {
        let common = probe_common();
        let mut nested = probe_namespaces(Some(libc::EPERM));
        // SAFETY: as in `probe_nested_allowed`; a plain fork-like clone
        // flag set and setns(fd, 0) stay the kernel's.
        unsafe {
            nested.push(raw(libc::SYS_clone, NEWUSER_AND_FS, 0, 0) == Err(libc::EPERM));
            nested.push(raw(libc::SYS_unshare, NEWUSER_AND_VFORK, 0, 0) == Err(libc::EPERM));
            nested.push(
                raw(
                    libc::SYS_clone,
                    (libc::CLONE_SIGHAND | libc::CLONE_FS) as u64,
                    0,
                    0,
                ) == Err(libc::EINVAL),
            );
            nested.push(raw(libc::SYS_setns, u64::MAX, 0, 0) == Err(libc::EBADF));
            nested.push(raw(libc::SYS_clone3, 0, 0, 0) == Err(libc::ENOSYS));
        }
        first_failure(common.iter().chain(&nested))
    }

    fn probe_x32() -> i32 {
        // SAFETY: getpid takes no arguments; -1 is no system call.
        unsafe {
            if raw(-1, 0, 0, 0) != Err(libc::ENOSYS) {
                return 1;
            }
            let _ = raw(0x4000_0000 | libc::SYS_getpid, 0, 0, 0);
        }
        2 // still alive
    }

    fn assert_exited_zero(status: nix::sys::wait::WaitStatus, what: &str) {
        use nix::sys::wait::WaitStatus;
        match status {
            WaitStatus::Exited(_, 0) => {}
            WaitStatus::Exited(_, 100) => {
                panic!("{what}: installing the filter failed (needs CAP_SYS_ADMIN: run as root)")
            }
            WaitStatus::Exited(_, n) => panic!("{what}: check {n} failed"),
            other => panic!("{what}: child ended with {other:?}"),
        }
    }

    #[test]
    fn installed_filter_denies_by_errno_and_argument() {
        let policy = shipped();
        let allow = compile(&policy, NestedNamespaces::Allow).expect("compiles");
        let deny = compile(&policy, NestedNamespaces::Deny).expect("compiles");
        assert_exited_zero(
            in_filtered_child(&allow, probe_nested_allowed),
            "nested allowed",
        );
        assert_exited_zero(
            in_filtered_child(&deny, probe_nested_denied),
            "nested denied",
        );
    }

    #[test]
    fn installed_filter_kills_x32_calls() {
        let program = compile(&shipped(), NestedNamespaces::Allow).expect("compiles");
        match in_filtered_child(&program, probe_x32) {
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _) => {}
            other => panic!("x32 getpid: child ended with {other:?}"),
        }
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
