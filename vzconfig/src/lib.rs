//! The boot config: OpenVZ's `vz.conf` and `<VEID>.conf`, `KEY="value"` lines.
//!
//! Parsing never fails as a whole: every line yields an entry or a diagnostic
//! that names file, line and key, and says what is allowed. A VE whose config
//! has an error does not start (vzlist shows why). Every key is in one table,
//! `KEYS`; keys OpenVZ has that we do not implement yet produce one warning
//! each, and keys we do not know are ignored with a warning (with a "did you
//! mean" for a near miss), as vzctl ignores them. VE_PRIVATE and VE_ROOT are
//! confined lexically to `/vz/private/<dir>` and `/vz/root/<dir>`.

pub mod net;
pub mod resources;

use resources::Unit;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One `KEY=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// A problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": {sev}: ")?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Splits a config file into entries, accepting a UTF-8 BOM and CRLF endings.
pub fn parse(text: &str, file: &Path) -> (Vec<Entry>, Vec<Diag>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut diags = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String, key: Option<String>| Diag {
            severity: Severity::Error,
            file: file.to_owned(),
            line: i + 1,
            key,
            message,
        };
        let Some((key, value)) = line.split_once('=') else {
            diags.push(err(format!("expected KEY=\"value\", found {line:?}"), None));
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            diags.push(err(
                format!("{key:?} is not a parameter name (letters, digits and _)"),
                None,
            ));
            continue;
        }
        match unquote(value.trim()) {
            Some(v) => entries.push(Entry {
                line: i + 1,
                key: key.to_owned(),
                value: v,
            }),
            None => diags.push(err(
                "unbalanced quotes: write KEY=\"value\"".into(),
                Some(key.to_owned()),
            )),
        }
    }
    (entries, diags)
}

fn unquote(v: &str) -> Option<String> {
    // A trailing comment after a quoted value is allowed, as the shell does.
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            let end = rest.find(q)?;
            let after = rest[end + 1..].trim();
            if !after.is_empty() && !after.starts_with('#') {
                return None;
            }
            return Some(rest[..end].to_owned());
        }
    }
    if v.contains('"') || v.contains('\'') {
        return None;
    }
    Some(v.split(" #").next().unwrap_or(v).trim().to_owned())
}

/// Renders a config back in OpenVZ's format (for `--save`): keeps the original
/// lines and comments, replacing or appending the given keys.
pub fn render_update(original: &str, updates: &[(&str, Option<String>)]) -> String {
    let mut done = vec![false; updates.len()];
    let mut out = String::new();
    let text = original.strip_prefix('\u{feff}').unwrap_or(original);
    for raw in text.lines() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key.and_then(|k| updates.iter().position(|(u, _)| *u == k)) {
            Some(i) => {
                if let (Some(v), false) = (&updates[i].1, done[i]) {
                    out.push_str(&format!("{}=\"{}\"\n", updates[i].0, v));
                }
                done[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (k, v)) in updates.iter().enumerate() {
        if let (false, Some(v)) = (done[i], v) {
            out.push_str(&format!("{k}=\"{v}\"\n"));
        }
    }
    out
}

/// Where a key may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only in a VE's `<VEID>.conf` (it identifies one VE: a default makes no sense).
    Ve,
    /// Only in `vz.conf`.
    Global,
    /// In a VE's config, and in `vz.conf` as the default for every VE.
    Both,
}

/// Whether a key has an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Implemented,
    /// An OpenVZ key we accept (with a warning in a VE config) but do not act on yet.
    NotYet,
}

/// What a key's value must look like: one parser per kind, used by the
/// config loader and by `vzctl set` alike ([`check_value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Anything (checked elsewhere, or not at all yet).
    Any,
    /// `yes` or `no`.
    YesNo,
    /// A whole number (u32).
    Number,
    /// RFC 1123 hostname.
    Hostname,
    /// A VE name: letters, digits, `-_.`, not only digits.
    VeName,
    /// A beancounter value, `N` or `barrier:limit`, counting `Unit`.
    Ubc(Unit),
    /// CPUUNITS, 8..500000.
    CpuUnits,
    /// CPULIMIT, percent of one CPU.
    CpuLimit,
    /// CPUS, a number of CPUs.
    Cpus,
    /// CPUMASK, NODEMASK: `all` or `0-2,7`.
    CpuList,
    /// VM_OVERCOMMIT: a decimal factor.
    Overcommit,
    /// IP_ADDRESS: `ADDR[/PREFIX]`, space-separated.
    IpList,
    /// PORTFWD: `[tcp|udp:]APPLIANCEPORT:VEPORT`, space-separated.
    PortFwd,
    /// NAMESERVER: addresses or `inherit`.
    NameServers,
    /// NETIF: `ifname=..,mac=..,host_ifname=..,host_mac=..,bridge=..;...`
    NetIf,
    /// NETDEV: interface names.
    NetDev,
    /// SEARCHDOMAIN: domain names or `inherit`.
    SearchDomains,
    /// IOPRIO 0..7.
    IoPrio,
    /// IOLIMIT: `N[B|K|M|G]`, MB/s by default.
    IoLimit,
    /// IOPSLIMIT.
    IopsLimit,
    /// DISKSPACE `soft[:hard]` in KiB with suffixes.
    DiskSpace,
    /// DISKINODES `soft[:hard]`.
    DiskInodes,
    /// DEVNODES `net/tun:rw fuse:rw`.
    DevNodes,
    /// DEVICES `c:10:200:rw`.
    Devices,
    /// ZRAM_SWAP: `no`, `N%` or a size.
    ZramSwap,
    /// VE_STOP_MODE: `suspend` or `stop`.
    StopMode,
}

/// One config key: where it may appear, whether it does anything, what its
/// value must be, the `vzctl set` option that changes it, and whether that
/// may happen while the VE runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDef {
    pub name: &'static str,
    pub scope: Scope,
    pub status: Status,
    /// Changing it on a running VE is fine: it changes only the config, or
    /// (HOSTNAME) is applied to the running VE.
    pub live: bool,
    pub kind: ValueKind,
    /// `vzctl set` option (`--onboot`), if it has one.
    pub option: Option<&'static str>,
}

impl KeyDef {
    const fn per_ve(name: &'static str) -> KeyDef {
        KeyDef {
            name,
            scope: Scope::Both,
            status: Status::Implemented,
            live: false,
            kind: ValueKind::Any,
            option: None,
        }
    }

    const fn later(name: &'static str) -> KeyDef {
        KeyDef {
            status: Status::NotYet,
            ..KeyDef::per_ve(name)
        }
    }

    const fn global(name: &'static str) -> KeyDef {
        KeyDef {
            scope: Scope::Global,
            ..KeyDef::later(name)
        }
    }

    const fn ve_only(self) -> KeyDef {
        KeyDef {
            scope: Scope::Ve,
            ..self
        }
    }

    const fn live(self) -> KeyDef {
        KeyDef { live: true, ..self }
    }

    const fn kind(self, kind: ValueKind) -> KeyDef {
        KeyDef { kind, ..self }
    }

    const fn option(self, option: &'static str) -> KeyDef {
        KeyDef {
            option: Some(option),
            ..self
        }
    }

    const fn implemented(self) -> KeyDef {
        KeyDef {
            status: Status::Implemented,
            ..self
        }
    }

    /// May appear in a VE's `<VEID>.conf`.
    pub fn in_ve_config(&self) -> bool {
        self.scope != Scope::Global
    }

    /// May appear in `vz.conf`.
    pub fn in_vz_conf(&self) -> bool {
        self.scope != Scope::Ve
    }
}

/// Every config key we know: OpenVZ's (those of vzctl 4.x and of VZ7) and ours.
/// A key not in here is kept by `--save` and otherwise ignored with a warning,
/// as vzctl does (administrators keep keys of their own scripts in these files).
pub const KEYS: &[KeyDef] = &[
    // Per-VE keys we implement; vz.conf may give their default.
    KeyDef::per_ve("ONBOOT")
        .live()
        .kind(ValueKind::YesNo)
        .option("--onboot"),
    KeyDef::per_ve("BOOTORDER")
        .live()
        .kind(ValueKind::Number)
        .option("--bootorder"),
    KeyDef::per_ve("NAME")
        .ve_only()
        .live()
        .kind(ValueKind::VeName)
        .option("--name"),
    KeyDef::per_ve("DESCRIPTION").live().option("--description"),
    KeyDef::per_ve("OSTEMPLATE"),
    KeyDef::per_ve("ORIGIN_SAMPLE").live(),
    KeyDef::per_ve("HOSTNAME")
        .live()
        .kind(ValueKind::Hostname)
        .option("--hostname"),
    KeyDef::per_ve("VE_ROOT"),
    KeyDef::per_ve("VE_PRIVATE"),
    KeyDef::per_ve("DISABLED")
        .live()
        .kind(ValueKind::YesNo)
        .option("--disabled"),
    KeyDef::per_ve("STOP_TIMEOUT")
        .live()
        .kind(ValueKind::Number)
        .option("--stop-timeout"),
    // Ours: whether the VE may be checkpointed and live-migrated; "yes"
    // makes new namespaces fail inside it (CRIU cannot dump most nested
    // ones), from its next start.
    KeyDef::per_ve("CHECKPOINT")
        .live()
        .kind(ValueKind::YesNo)
        .option("--checkpoint"),
    KeyDef::per_ve("LOCAL_UID"),
    KeyDef::per_ve("LOCAL_GID"),
    // OpenVZ per-VE keys accepted with a warning: not implemented yet.
    KeyDef::later("VE_LAYOUT"),
    KeyDef::later("MOUNT_OPTS"),
    KeyDef::per_ve("KMEMSIZE")
        .live()
        .kind(ValueKind::Ubc(Unit::Bytes))
        .option("--kmemsize"),
    KeyDef::per_ve("LOCKEDPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--lockedpages"),
    KeyDef::per_ve("PRIVVMPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--privvmpages"),
    KeyDef::per_ve("SHMPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--shmpages"),
    KeyDef::per_ve("NUMPROC")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numproc"),
    KeyDef::per_ve("PHYSPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--physpages"),
    KeyDef::per_ve("VMGUARPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--vmguarpages"),
    KeyDef::per_ve("OOMGUARPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--oomguarpages"),
    KeyDef::per_ve("NUMTCPSOCK")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numtcpsock"),
    KeyDef::per_ve("NUMFLOCK")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numflock"),
    KeyDef::per_ve("NUMPTY")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numpty"),
    KeyDef::per_ve("NUMSIGINFO")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numsiginfo"),
    KeyDef::per_ve("TCPSNDBUF")
        .live()
        .kind(ValueKind::Ubc(Unit::Bytes))
        .option("--tcpsndbuf"),
    KeyDef::per_ve("TCPRCVBUF")
        .live()
        .kind(ValueKind::Ubc(Unit::Bytes))
        .option("--tcprcvbuf"),
    KeyDef::per_ve("OTHERSOCKBUF")
        .live()
        .kind(ValueKind::Ubc(Unit::Bytes))
        .option("--othersockbuf"),
    KeyDef::per_ve("DGRAMRCVBUF")
        .live()
        .kind(ValueKind::Ubc(Unit::Bytes))
        .option("--dgramrcvbuf"),
    KeyDef::per_ve("NUMOTHERSOCK")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numothersock"),
    KeyDef::per_ve("DCACHESIZE")
        .live()
        .kind(ValueKind::Ubc(Unit::Bytes))
        .option("--dcachesize"),
    KeyDef::per_ve("NUMFILE")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numfile"),
    KeyDef::per_ve("NUMIPTENT")
        .live()
        .kind(ValueKind::Ubc(Unit::Items))
        .option("--numiptent"),
    KeyDef::per_ve("SWAPPAGES")
        .live()
        .kind(ValueKind::Ubc(Unit::Pages))
        .option("--swappages"),
    KeyDef::later("DCACHE"),
    KeyDef::later("IPTENTRIES"),
    KeyDef::later("AVNUMPROC"),
    KeyDef::per_ve("VM_OVERCOMMIT")
        .live()
        .kind(ValueKind::Overcommit)
        .option("--vm_overcommit"),
    KeyDef::per_ve("CPUUNITS")
        .live()
        .kind(ValueKind::CpuUnits)
        .option("--cpuunits"),
    KeyDef::per_ve("CPULIMIT")
        .live()
        .kind(ValueKind::CpuLimit)
        .option("--cpulimit"),
    KeyDef::per_ve("CPUS")
        .live()
        .kind(ValueKind::Cpus)
        .option("--cpus"),
    KeyDef::per_ve("CPUMASK")
        .live()
        .kind(ValueKind::CpuList)
        .option("--cpumask"),
    KeyDef::per_ve("NODEMASK")
        .live()
        .kind(ValueKind::CpuList)
        .option("--nodemask"),
    KeyDef::later("CPUWEIGHT"),
    KeyDef::later("DISK_QUOTA"),
    KeyDef::per_ve("DISKSPACE")
        .live()
        .kind(ValueKind::DiskSpace)
        .option("--diskspace"),
    KeyDef::per_ve("DISKINODES")
        .live()
        .kind(ValueKind::DiskInodes)
        .option("--diskinodes"),
    KeyDef::per_ve("QUOTATIME")
        .live()
        .kind(ValueKind::Number)
        .option("--quotatime"),
    KeyDef::later("QUOTAUGIDLIMIT"),
    KeyDef::per_ve("IOPRIO")
        .live()
        .kind(ValueKind::IoPrio)
        .option("--ioprio"),
    KeyDef::per_ve("IOLIMIT")
        .live()
        .kind(ValueKind::IoLimit)
        .option("--iolimit"),
    KeyDef::per_ve("IOPSLIMIT")
        .live()
        .kind(ValueKind::IopsLimit)
        .option("--iopslimit"),
    KeyDef::later("CAPABILITY"),
    KeyDef::later("FEATURES"),
    KeyDef::per_ve("DEVICES")
        .live()
        .kind(ValueKind::Devices)
        .option("--devices"),
    KeyDef::per_ve("DEVNODES")
        .live()
        .kind(ValueKind::DevNodes)
        .option("--devnodes"),
    KeyDef::later("PCI"),
    KeyDef::per_ve("IP_ADDRESS")
        .ve_only()
        .live()
        .kind(ValueKind::IpList)
        .option("--ipadd"),
    // Ours: appliance ports forwarded to the VE (net::PortFwd).
    KeyDef::per_ve("PORTFWD")
        .ve_only()
        .live()
        .kind(ValueKind::PortFwd)
        .option("--portfwd"),
    KeyDef::per_ve("NAMESERVER")
        .live()
        .kind(ValueKind::NameServers)
        .option("--nameserver"),
    KeyDef::per_ve("SEARCHDOMAIN")
        .live()
        .kind(ValueKind::SearchDomains)
        .option("--searchdomain"),
    KeyDef::per_ve("NETIF")
        .ve_only()
        .live()
        .kind(ValueKind::NetIf),
    KeyDef::per_ve("NETDEV")
        .ve_only()
        .live()
        .kind(ValueKind::NetDev),
    KeyDef::later("NETFILTER"),
    KeyDef::later("IPTABLES"),
    KeyDef::later("MEMINFO"),
    KeyDef::later("VERSION"),
    KeyDef::later("UUID").ve_only(),
    KeyDef::later("VEID").ve_only(),
    KeyDef::later("VE_TYPE"),
    KeyDef::later("DISTRIBUTION"),
    KeyDef::later("TEMPLATES"),
    KeyDef::later("TECHNOLOGIES"),
    KeyDef::later("CONFIG_CUSTOMIZED"),
    KeyDef::later("ALLOWREBOOT"),
    KeyDef::later("OSRELEASE"),
    KeyDef::later("VE_ENVIRONMENT"),
    KeyDef::later("DISK"),
    KeyDef::later("BINDMOUNT"),
    KeyDef::later("NOATIME"),
    KeyDef::later("HA_ENABLE"),
    KeyDef::later("HA_PRIO"),
    KeyDef::later("RATE"),
    KeyDef::later("RATEBOUND"),
    KeyDef::later("MEMGUARANTEE"),
    KeyDef::later("MEMGUARANTEE_BYTES"),
    KeyDef::later("PAGECACHE_ISOLATION"),
    KeyDef::later("NUMMEMORYSUBGROUPS"),
    KeyDef::later("NUMNETIF"),
    KeyDef::later("CPULIMIT_MHZ"),
    KeyDef::later("JOURNALED_QUOTA"),
    KeyDef::later("AUTOCOMPACT"),
    KeyDef::later("ROOT_DISK"),
    KeyDef::later("USE_NET_RPS"),
    KeyDef::later("APPLY_IPONLY"),
    KeyDef::later("BURST_CPU_AVG_USAGE"),
    KeyDef::later("BURST_CPULIMIT"),
    KeyDef::later("PLATFORM"),
    // Global keys of vz.conf.
    KeyDef::global("VIRTUOZZO"),
    KeyDef::global("LOCKDIR"),
    KeyDef::global("DUMPDIR"),
    KeyDef::global("VE0CPUUNITS")
        .implemented()
        .kind(ValueKind::CpuUnits),
    // Ours: compressed swap in RAM for the appliance (docs/config.md).
    KeyDef::global("ZRAM_SWAP")
        .implemented()
        .kind(ValueKind::ZramSwap),
    // suspend: running VEs are checkpointed at shutdown and restored at boot.
    KeyDef::global("VE_STOP_MODE")
        .implemented()
        .kind(ValueKind::StopMode),
    KeyDef::global("VE_PARALLEL"),
    KeyDef::global("LOGGING"),
    KeyDef::global("LOGFILE"),
    KeyDef::global("LOG_LEVEL"),
    KeyDef::global("VERBOSE"),
    KeyDef::global("VZFASTBOOT"),
    KeyDef::global("MODULES_DISABLED"),
    KeyDef::global("IPTABLES_MODULES"),
    KeyDef::global("SKIP_SYSCTL_SETUP"),
    KeyDef::global("VE_ROUTE_SRC_DEV"),
    KeyDef::global("NEIGHBOUR_DEVS"),
    KeyDef::global("ERROR_ON_ARPFAIL"),
    KeyDef::global("SKIP_ARPDETECT"),
    KeyDef::global("FORCE_ROUTE"),
    KeyDef::global("TEMPLATE"),
    KeyDef::global("CONFIGFILE").implemented(),
    KeyDef::global("DEF_OSTEMPLATE").implemented(),
    KeyDef::global("IPV6"),
    KeyDef::global("VZWDOG"),
    KeyDef::global("ACTIONLOGDIR"),
    KeyDef::global("GOLDEN_IMAGE"),
    KeyDef::global("TRAFFIC_SHAPING"),
    KeyDef::global("BANDWIDTH"),
    KeyDef::global("TOTALRATE"),
    KeyDef::global("USE_NET_HWCSUM"),
    KeyDef::global("USE_NET_TSO"),
    KeyDef::global("USE_VENET_MASK"),
    KeyDef::global("REMOVEMIGRATED"),
    KeyDef::global("HTTP_PROXY"),
    KeyDef::global("REPAIR_MODE"),
    KeyDef::global("VEFSTYPE"),
    KeyDef::global("VEIMAGEFORMAT"),
];

/// The definition of a key (names are case-sensitive, as in OpenVZ).
pub fn key(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

/// The known key closest to `name` among those `allowed`: the same letters in
/// another case, or at most two edits away. Ties go to the earlier key of `KEYS`.
fn closest_key(name: &str, allowed: impl Fn(&KeyDef) -> bool) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    KEYS.iter()
        .filter(|k| allowed(k) && k.name.len().abs_diff(upper.len()) <= 2)
        .map(|k| (edit_distance(&upper, k.name), k.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance: the fewest insertions, deletions and substitutions of
/// characters that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // prev[j]: distance between the part of `a` seen so far and b[..j].
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            let delete = prev[j + 1] + 1;
            let insert = cur[j] + 1;
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The warning for a key we do not know, with a "did you mean" when one is close.
fn unknown_key_message(name: &str, allowed: impl Fn(&KeyDef) -> bool) -> String {
    let mut m = String::from("unknown parameter, ignored (kept by --save)");
    if let Some(k) = closest_key(name, allowed) {
        m.push_str(&format!("; did you mean {k}?"));
    }
    m
}

/// The two directories a VE's config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VeDir {
    /// `VE_PRIVATE`: the VE's own files (destroy removes it).
    Private,
    /// `VE_ROOT`: where the VE's root is mounted.
    Root,
}

impl VeDir {
    /// The config key naming it.
    pub fn key(self) -> &'static str {
        match self {
            VeDir::Private => "VE_PRIVATE",
            VeDir::Root => "VE_ROOT",
        }
    }

    /// The directory every VE's one must be below.
    pub fn base(self) -> &'static Path {
        Path::new(match self {
            VeDir::Private => "/vz/private",
            VeDir::Root => "/vz/root",
        })
    }

    /// The same directory on Debian's and Ubuntu's OpenVZ hosts; read as `base`.
    fn foreign_base(self) -> &'static Path {
        Path::new(match self {
            VeDir::Private => "/var/lib/vz/private",
            VeDir::Root => "/var/lib/vz/root",
        })
    }
}

/// Why a path is not allowed as a VE directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VePathError {
    #[error("it is not an absolute path")]
    NotAbsolute,
    #[error("it contains a NUL byte")]
    Nul,
    #[error("it has a {0:?} component")]
    DotComponent(&'static str),
    #[error("it has an empty component (\"//\")")]
    EmptyComponent,
    #[error("it is not below {}", .0.display())]
    NotBelow(&'static Path),
}

/// Checks a path lexically and normalises it: absolute, no NUL, no `.`, `..`
/// or empty components; trailing slashes are dropped.
fn normalise(p: &Path) -> Result<PathBuf, VePathError> {
    let bytes = p.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(VePathError::Nul);
    }
    let Some(mut rest) = bytes.strip_prefix(b"/") else {
        return Err(VePathError::NotAbsolute);
    };
    while let Some(r) = rest.strip_suffix(b"/") {
        rest = r;
    }
    let mut out = PathBuf::from("/");
    if rest.is_empty() {
        return Ok(out);
    }
    for c in rest.split(|b| *b == b'/') {
        match c {
            b"" => return Err(VePathError::EmptyComponent),
            b"." => return Err(VePathError::DotComponent(".")),
            b".." => return Err(VePathError::DotComponent("..")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Accepts `p` only if it is `dir.base()/<at least one component>` after the
/// rules of `normalise`; returns it normalised.
pub fn confine(p: &Path, dir: VeDir) -> Result<PathBuf, VePathError> {
    let p = normalise(p)?;
    match p.strip_prefix(dir.base()) {
        Ok(rel) if !rel.as_os_str().is_empty() => Ok(p),
        _ => Err(VePathError::NotBelow(dir.base())),
    }
}

/// The check to make before removing a VE's private area: only a path
/// `/vz/private/<dir>[/...]` without `.`, `..` or empty components passes.
/// The check is lexical: remove without following symlinks.
pub fn confine_private(p: &Path) -> Result<PathBuf, VePathError> {
    confine(p, VeDir::Private)
}

/// `confine` for VE_ROOT: only `/vz/root/<dir>[/...]` passes.
pub fn confine_root(p: &Path) -> Result<PathBuf, VePathError> {
    confine(p, VeDir::Root)
}

/// A VE directory as the config gives it: confined, and the OpenVZ path it
/// was mapped from if it was written as `/var/lib/vz/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VePath {
    path: PathBuf,
    mapped_from: Option<PathBuf>,
}

fn resolve_ve_dir(value: &Path, dir: VeDir) -> Result<VePath, VePathError> {
    let p = normalise(value)?;
    match p.strip_prefix(dir.foreign_base()) {
        Ok(rel) if rel.as_os_str().is_empty() => Err(VePathError::NotBelow(dir.base())),
        Ok(rel) => Ok(VePath {
            path: confine(&dir.base().join(rel), dir)?,
            mapped_from: Some(p),
        }),
        Err(_) => Ok(VePath {
            path: confine(&p, dir)?,
            mapped_from: None,
        }),
    }
}

/// What a VE directory key allows, for error messages.
fn ve_dir_rule(dir: VeDir) -> String {
    let base = dir.base().display();
    format!(
        "{} must be {base}/<dir> without \".\", \"..\" or \"//\" ({}/<dir> is read as \
         {base}/<dir>)",
        dir.key(),
        dir.foreign_base().display()
    )
}

/// The warning for a path written the Debian/Ubuntu OpenVZ way.
fn mapped_message(from: &Path, to: &Path) -> String {
    format!(
        "{} is read as {}: this appliance keeps VE data under /vz",
        from.display(),
        to.display()
    )
}

/// A validated VEID: OpenVZ reserves 0-100; at most 2147483644.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VeId(u32);

impl VeId {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for VeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for VeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a VEID: use a number from 101 to 2147483644"))?;
        if s.starts_with('0') || !(101..=2_147_483_644).contains(&n) {
            return Err(format!(
                "{s:?} is not a VEID: use a number from 101 to 2147483644 without leading zeros \
                 (0-100 are reserved)"
            ));
        }
        Ok(VeId(n))
    }
}

/// Checks a hostname (RFC 1123 labels).
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks a VE name: letters, digits, `-_.`, not all digits (it would read as a VEID).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c))
        && !n.chars().all(|c| c.is_ascii_digit())
}

/// The global configuration (`vz.conf`).
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub values: BTreeMap<String, String>,
    /// Where it was read from, and the line of each key: diagnostics about a
    /// default name the line that sets it.
    file: PathBuf,
    lines: BTreeMap<String, usize>,
}

impl Global {
    /// Parses `vz.conf`. Only a malformed line is an error: an unknown key, a
    /// per-VE key that cannot have a default and an OpenVZ path are warnings
    /// here; a bad default is an error of each VE that uses it.
    pub fn parse(text: &str, file: &Path) -> (Global, Vec<Diag>) {
        let (entries, mut diags) = parse(text, file);
        let mut global = Global {
            file: file.to_owned(),
            ..Global::default()
        };
        let warn = |line: usize, key: &str, message: String| Diag {
            severity: Severity::Warning,
            file: file.to_owned(),
            line,
            key: Some(key.to_owned()),
            message,
        };
        for e in entries {
            match key(&e.key) {
                Some(def) if !def.in_vz_conf() => {
                    diags.push(warn(
                        e.line,
                        &e.key,
                        "a per-VE parameter: vz.conf cannot give every VE the same one; ignored"
                            .into(),
                    ));
                    continue;
                }
                Some(_) => {}
                None => diags.push(warn(
                    e.line,
                    &e.key,
                    unknown_key_message(&e.key, KeyDef::in_vz_conf),
                )),
            }
            // `$VEID` is a plain component to the path rules, so the default
            // itself can be checked; an error is reported for each VE.
            for dir in [VeDir::Private, VeDir::Root] {
                if e.key == dir.key() {
                    if let Ok(VePath {
                        path,
                        mapped_from: Some(from),
                    }) = resolve_ve_dir(Path::new(&e.value), dir)
                    {
                        diags.push(warn(e.line, &e.key, mapped_message(&from, &path)));
                    }
                }
            }
            global.lines.insert(e.key.clone(), e.line);
            global.values.insert(e.key, e.value);
        }
        (global, diags)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A value and the line of vz.conf that sets it.
    fn entry(&self, key: &str) -> Option<(&str, usize)> {
        let line = self.lines.get(key).copied().unwrap_or(0);
        self.get(key).map(|v| (v, line))
    }

    /// Default STOP_TIMEOUT (OpenVZ: 120 s).
    pub fn stop_timeout(&self) -> u32 {
        self.get("STOP_TIMEOUT")
            .and_then(|v| v.parse().ok())
            .unwrap_or(120)
    }
}

/// A VE's validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeConfig {
    pub veid: VeId,
    pub onboot: bool,
    pub bootorder: u32,
    pub name: Option<String>,
    pub description: Option<String>,
    pub ostemplate: String,
    pub hostname: Option<String>,
    /// Confined to `/vz/root/<dir>` (see `confine_root`).
    pub ve_root: PathBuf,
    /// Confined to `/vz/private/<dir>` (see `confine_private`).
    pub ve_private: PathBuf,
    pub disabled: bool,
    pub stop_timeout: u32,
    /// CHECKPOINT (ours, default yes): the VE may be checkpointed, so it
    /// may not make namespaces of its own.
    pub checkpoint: bool,
    pub local_uid: u32,
    pub local_gid: u32,
    pub origin_sample: Option<String>,
    /// CPU, memory and process limits (see `resources`).
    pub limits: resources::Limits,
    /// IP_ADDRESS: the VE's routed addresses (`net`).
    pub ip_address: Vec<net::IpNet>,
    /// PORTFWD (ours): appliance ports forwarded to the VE.
    pub portfwd: Vec<net::PortFwd>,
    /// NAMESERVER and SEARCHDOMAIN (`None`: not set, the VE's own stay).
    pub nameserver: Option<net::NameServers>,
    pub searchdomain: Option<net::SearchDomains>,
    /// NETIF: bridged interfaces; NETDEV: appliance interfaces moved in.
    pub netif: Vec<net::NetIf>,
    pub netdev: Vec<String>,
}

/// First uid of the ranges given to VEs (LOCAL_UID in vz.conf), and range size.
pub const DEFAULT_LOCAL_UID: u32 = 100_000;
pub const ID_RANGE: u32 = 65_536;

/// Checks `v` against the kind of key `def`; the error says what is allowed.
pub fn check_value(def: &KeyDef, v: &str) -> Result<(), String> {
    let ok = match def.kind {
        ValueKind::Any => true,
        ValueKind::YesNo => yes_no(v).is_some(),
        ValueKind::Number => v.parse::<u32>().is_ok(),
        ValueKind::Hostname => valid_hostname(v),
        ValueKind::VeName => valid_name(v),
        ValueKind::Ubc(unit) => return resources::parse(v, unit).map(|_| ()),
        ValueKind::CpuUnits => return resources::parse_cpuunits(v).map(|_| ()),
        ValueKind::CpuLimit => return resources::parse_cpulimit(v).map(|_| ()),
        ValueKind::Cpus => return resources::parse_cpus(v).map(|_| ()),
        ValueKind::CpuList => return resources::parse_cpulist(v).map(|_| ()),
        ValueKind::Overcommit => return resources::parse_overcommit(v).map(|_| ()),
        ValueKind::IpList => return net::parse_ip_list(v).map(|_| ()),
        ValueKind::PortFwd => return net::parse_portfwd(v).map(|_| ()),
        ValueKind::NameServers => return net::parse_nameservers(v).map(|_| ()),
        ValueKind::NetIf => return net::parse_netifs(v).map(|_| ()),
        ValueKind::NetDev => return net::parse_netdevs(v).map(|_| ()),
        ValueKind::SearchDomains => return net::parse_searchdomains(v).map(|_| ()),
        ValueKind::IoPrio => return resources::parse_ioprio(v).map(|_| ()),
        ValueKind::IoLimit => return resources::parse_iolimit(v).map(|_| ()),
        ValueKind::IopsLimit => return resources::parse_iopslimit(v).map(|_| ()),
        ValueKind::DiskSpace => return resources::parse_disk(v, true).map(|_| ()),
        ValueKind::DiskInodes => return resources::parse_disk(v, false).map(|_| ()),
        ValueKind::DevNodes => return resources::parse_devnodes(v).map(|_| ()),
        ValueKind::Devices => return resources::parse_devices(v).map(|_| ()),
        ValueKind::ZramSwap => return resources::parse_zram_swap(v).map(|_| ()),
        ValueKind::StopMode => matches!(v, "suspend" | "stop"),
    };
    if ok {
        return Ok(());
    }
    Err(match def.kind {
        ValueKind::YesNo => format!("{v:?} is not allowed: use \"yes\" or \"no\""),
        ValueKind::Number => format!("{v:?} is not a number: use a whole number like 10"),
        ValueKind::Hostname => {
            format!("{v:?} is not a hostname: letters, digits and '-' in dot-separated labels")
        }
        ValueKind::VeName => {
            format!("{v:?} is not allowed: letters, digits, '-', '_', '.', not only digits")
        }
        ValueKind::StopMode => format!("{v:?} is not allowed: use \"suspend\" or \"stop\""),
        _ => String::new(),
    })
}

/// The key `vzctl set` changes with `option` (`--onboot` -> ONBOOT).
pub fn key_for_option(option: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.option == Some(option))
}

/// The typed `vzctl set` parameter for key `def` with value `v`, checked.
pub fn set_param(def: &KeyDef, v: &str) -> Result<proto::SetParam, String> {
    use proto::SetParam as P;
    check_value(def, v)?;
    let name = || proto::Name::try_from(v).map_err(|_| format!("{v:?}: 64 characters at most"));
    let text = || proto::Text::try_from(v).map_err(|_| format!("{v:?}: 256 characters at most"));
    let num = || {
        v.parse::<u32>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    let flag = || yes_no(v).ok_or_else(|| format!("{v:?}: use yes or no"));
    Ok(match def.name {
        "HOSTNAME" => P::Hostname(name()?),
        "NAME" => P::Name(name()?),
        "DESCRIPTION" => P::Description(text()?),
        "ONBOOT" => P::OnBoot(flag()?),
        "BOOTORDER" => P::BootOrder(num()?),
        "DISABLED" => P::Disabled(flag()?),
        "STOP_TIMEOUT" => P::StopTimeout(num()?),
        "CHECKPOINT" => P::Checkpoint(flag()?),
        "CPUUNITS" => P::CpuUnits(resources::parse_cpuunits(v)?),
        "CPULIMIT" => P::CpuLimit(resources::parse_cpulimit(v)?),
        "CPUS" => P::Cpus(resources::parse_cpus(v)?),
        "CPUMASK" | "NODEMASK" => {
            resources::parse_cpulist(v)?;
            if def.name == "CPUMASK" {
                P::CpuMask(name()?)
            } else {
                P::NodeMask(name()?)
            }
        }
        "VM_OVERCOMMIT" => P::VmOvercommit(name()?),
        "IOPRIO" => P::IoPrio(resources::parse_ioprio(v)?),
        "IOLIMIT" => P::IoLimit(resources::parse_iolimit(v)?),
        "IOPSLIMIT" => P::IopsLimit(resources::parse_iopslimit(v)?),
        "DISKSPACE" => P::DiskSpace(ubc(resources::parse_disk(v, true)?)),
        "DISKINODES" => P::DiskInodes(ubc(resources::parse_disk(v, false)?)),
        "QUOTATIME" => P::QuotaTime(num()?),
        "IP_ADDRESS" => P::IpAdd(
            proto::LongText::try_from(net::render_ip_list(&net::parse_ip_list(v)?).as_str())
                .map_err(|_| "too many addresses for one call (1024 characters)".to_owned())?,
        ),
        "PORTFWD" => P::PortFwd(text()?),
        "NAMESERVER" => P::NameServer(text()?),
        "SEARCHDOMAIN" => P::SearchDomain(text()?),
        "DEVNODES" => P::DevNodes(text()?),
        "DEVICES" => P::Devices(text()?),
        other => {
            let lower = other.to_ascii_lowercase();
            match proto::ubc_index(&lower) {
                Some(i) => P::Beancounter {
                    resource: i as u8,
                    value: ubc(resources::parse(v, resources::ubc_unit(&lower))?),
                },
                None => return Err(format!("{other} cannot be set with vzctl set")),
            }
        }
    })
}

fn ubc(b: resources::BarrierLimit) -> proto::Ubc {
    let n = |l: resources::Limit| l.get().unwrap_or(proto::Ubc::UNLIMITED);
    proto::Ubc {
        barrier: n(b.barrier),
        limit: n(b.limit),
    }
}

fn ubc_text(u: &proto::Ubc) -> String {
    let one = |v: u64| {
        if v >= proto::Ubc::UNLIMITED {
            resources::Limit::Unlimited
        } else {
            resources::Limit::Value(v)
        }
    };
    resources::render(&resources::BarrierLimit {
        barrier: one(u.barrier),
        limit: one(u.limit),
    })
}

/// Config keys of the beancounters, indexed as `proto::UBC_NAMES`.
pub const UBC_KEYS: [&str; proto::UBC_COUNT] = [
    "KMEMSIZE",
    "LOCKEDPAGES",
    "PRIVVMPAGES",
    "SHMPAGES",
    "DUMMY",
    "NUMPROC",
    "PHYSPAGES",
    "VMGUARPAGES",
    "OOMGUARPAGES",
    "NUMTCPSOCK",
    "NUMFLOCK",
    "NUMPTY",
    "NUMSIGINFO",
    "TCPSNDBUF",
    "TCPRCVBUF",
    "OTHERSOCKBUF",
    "DGRAMRCVBUF",
    "NUMOTHERSOCK",
    "DCACHESIZE",
    "NUMFILE",
    "DUMMY",
    "DUMMY",
    "DUMMY",
    "NUMIPTENT",
    "SWAPPAGES",
];

fn disk_text(u: &proto::Ubc) -> String {
    let one = |v: u64| {
        if v >= proto::Ubc::UNLIMITED {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    format!("{}:{}", one(u.barrier), one(u.limit))
}

/// The config key and value text of a typed `vzctl set` parameter.
pub fn set_param_entry(p: &proto::SetParam) -> (&'static str, String) {
    use proto::SetParam as P;
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    match p {
        P::Hostname(v) => ("HOSTNAME", v.to_string()),
        P::Name(v) => ("NAME", v.to_string()),
        P::Description(v) => ("DESCRIPTION", v.to_string()),
        P::OnBoot(b) => ("ONBOOT", yes(*b)),
        P::BootOrder(n) => ("BOOTORDER", n.to_string()),
        P::Disabled(b) => ("DISABLED", yes(*b)),
        P::StopTimeout(n) => ("STOP_TIMEOUT", n.to_string()),
        P::Checkpoint(b) => ("CHECKPOINT", yes(*b)),
        P::CpuUnits(n) => ("CPUUNITS", n.to_string()),
        P::CpuLimit(n) => ("CPULIMIT", n.to_string()),
        P::Cpus(n) => ("CPUS", n.to_string()),
        P::Beancounter { resource, value } => (
            UBC_KEYS
                .get(usize::from(*resource))
                .copied()
                .unwrap_or("DUMMY"),
            ubc_text(value),
        ),
        P::CpuMask(v) => ("CPUMASK", v.to_string()),
        P::NodeMask(v) => ("NODEMASK", v.to_string()),
        P::VmOvercommit(v) => ("VM_OVERCOMMIT", v.to_string()),
        P::IoPrio(n) => ("IOPRIO", n.to_string()),
        P::IoLimit(n) => ("IOLIMIT", format!("{n}B")),
        P::IopsLimit(n) => ("IOPSLIMIT", n.to_string()),
        P::DiskSpace(u) => ("DISKSPACE", disk_text(u)),
        P::DiskInodes(u) => ("DISKINODES", disk_text(u)),
        P::QuotaTime(n) => ("QUOTATIME", n.to_string()),
        P::DevNodes(v) => ("DEVNODES", v.to_string()),
        P::Devices(v) => ("DEVICES", v.to_string()),
        P::IpAdd(v) | P::IpDel(v) => ("IP_ADDRESS", v.to_string()),
        P::PortFwd(v) => ("PORTFWD", v.to_string()),
        P::NameServer(v) => ("NAMESERVER", v.to_string()),
        P::NetIfAdd(v) | P::NetIfDel(v) => ("NETIF", v.to_string()),
        P::NetDevAdd(v) | P::NetDevDel(v) => ("NETDEV", v.to_string()),
        P::SearchDomain(v) => ("SEARCHDOMAIN", v.to_string()),
    }
}

/// Checks `v` for the known key `name` (no check for a key we do not know).
pub fn check_key_value(name: &str, v: &str) -> Result<(), String> {
    key(name).map_or(Ok(()), |def| check_value(def, v))
}

pub(crate) fn yes_no(v: &str) -> Option<bool> {
    match v {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A line of the VE's config (0: set nowhere, a built-in default).
    Ve(usize),
    /// A line of vz.conf: the default for every VE.
    Global(usize),
}

/// Validates a VE's entries against the global defaults. `templates` lists the
/// available OS templates. Keys we do not know are warnings, as in vzctl.
pub fn validate_ve(
    veid: VeId,
    entries: &[Entry],
    global: &Global,
    templates: &[String],
    file: &Path,
) -> (Option<VeConfig>, Vec<Diag>) {
    let mut diags = Vec::new();
    let mut vals: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    let warn = |line: usize, key: &str, message: String| Diag {
        severity: Severity::Warning,
        file: file.to_owned(),
        line,
        key: Some(key.to_owned()),
        message,
    };
    // A bad value from vz.conf is reported where it is written.
    let err = |origin: Origin, key: &str, message: String| match origin {
        Origin::Ve(line) => Diag {
            severity: Severity::Error,
            file: file.to_owned(),
            line,
            key: Some(key.to_owned()),
            message,
        },
        Origin::Global(line) => Diag {
            severity: Severity::Error,
            file: global.file.clone(),
            line,
            key: Some(key.to_owned()),
            message: format!("{message} (the default for VE {veid})"),
        },
    };
    for e in entries {
        let k = e.key.as_str();
        match key(k) {
            Some(def) if !def.in_ve_config() => diags.push(warn(
                e.line,
                k,
                "a vz.conf parameter: it has no effect in a VE config, ignored (kept by --save)"
                    .into(),
            )),
            Some(def) if def.status == Status::NotYet => diags.push(warn(
                e.line,
                k,
                "accepted but not implemented yet: it has no effect".into(),
            )),
            Some(_) => {
                vals.insert(k, (e.value.as_str(), e.line));
            }
            None => diags.push(warn(
                e.line,
                k,
                unknown_key_message(k, KeyDef::in_ve_config),
            )),
        }
    }
    let get = |k: &str| -> Option<(&str, Origin)> {
        vals.get(k)
            .map(|(v, line)| (*v, Origin::Ve(*line)))
            .or_else(|| {
                key(k)
                    .filter(|def| def.in_vz_conf())
                    .and_then(|_| global.entry(k))
                    .map(|(v, line)| (v, Origin::Global(line)))
            })
    };
    let mut errors = Vec::new();
    let flag = |k: &str, default: bool, errors: &mut Vec<Diag>| match get(k) {
        None => default,
        Some((v, origin)) => match check_key_value(k, v) {
            Ok(()) => yes_no(v).unwrap_or(default),
            Err(m) => {
                errors.push(err(origin, k, m));
                default
            }
        },
    };
    let onboot = flag("ONBOOT", false, &mut errors);
    let disabled = flag("DISABLED", false, &mut errors);
    let checkpoint = flag("CHECKPOINT", true, &mut errors);
    let number = |k: &str, default: u32, errors: &mut Vec<Diag>| match get(k) {
        None => default,
        Some((v, origin)) => match check_key_value(k, v) {
            Ok(()) => v.parse::<u32>().unwrap_or(default),
            Err(m) => {
                errors.push(err(origin, k, m));
                default
            }
        },
    };
    let bootorder = number("BOOTORDER", 0, &mut errors);
    let stop_timeout = number("STOP_TIMEOUT", global.stop_timeout(), &mut errors);
    // LOCAL_UID in vz.conf is the base of the ranges, not every VE's uid.
    let default_uid = {
        let base = global
            .get("LOCAL_UID")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::from(DEFAULT_LOCAL_UID));
        let uid = base + u64::from(veid.get()) * u64::from(ID_RANGE);
        u32::try_from(uid)
            .ok()
            .filter(|u| u.checked_add(ID_RANGE).is_some())
    };
    let local_uid = match (vals.get("LOCAL_UID"), default_uid) {
        (Some((v, line)), _) => v.parse::<u32>().unwrap_or_else(|_| {
            errors.push(err(
                Origin::Ve(*line),
                "LOCAL_UID",
                format!("{v:?} is not a uid number"),
            ));
            0
        }),
        (None, Some(u)) => u,
        (None, None) => {
            errors.push(err(
                Origin::Ve(0),
                "LOCAL_UID",
                format!(
                    "VEID {veid} is too large for an automatic uid range: set LOCAL_UID to the \
                     first host uid of a free {ID_RANGE}-id range"
                ),
            ));
            0
        }
    };
    let local_gid = match vals.get("LOCAL_GID") {
        Some((v, line)) => v.parse::<u32>().unwrap_or_else(|_| {
            errors.push(err(
                Origin::Ve(*line),
                "LOCAL_GID",
                format!("{v:?} is not a gid number"),
            ));
            0
        }),
        None => local_uid,
    };
    if local_uid != 0 && local_uid < ID_RANGE {
        errors.push(err(
            Origin::Ve(vals.get("LOCAL_UID").map_or(0, |v| v.1)),
            "LOCAL_UID",
            format!("{local_uid} overlaps the appliance's own ids: use {ID_RANGE} or more"),
        ));
    }
    let mut checked = |k: &str| {
        get(k).map(|(v, origin)| {
            if let Err(m) = check_key_value(k, v) {
                errors.push(err(origin, k, m));
            }
            v.to_owned()
        })
    };
    let name = checked("NAME");
    let hostname = checked("HOSTNAME");
    // Resource limits: `checked` reported a bad value with its line; the
    // parse below only turns a good one into numbers.
    let ubc = |v: Option<String>, unit| v.and_then(|v| resources::parse(&v, unit).ok());
    let mut beancounters = [None; proto::UBC_COUNT];
    for (i, key) in UBC_KEYS.iter().enumerate() {
        if *key != "DUMMY" {
            beancounters[i] = ubc(checked(key), resources::ubc_unit(proto::UBC_NAMES[i]));
        }
    }
    let limits = resources::Limits {
        cpuunits: checked("CPUUNITS").and_then(|v| resources::parse_cpuunits(&v).ok()),
        cpulimit: checked("CPULIMIT").and_then(|v| resources::parse_cpulimit(&v).ok()),
        cpus: checked("CPUS").and_then(|v| resources::parse_cpus(&v).ok()),
        cpumask: checked("CPUMASK").and_then(|v| resources::parse_cpulist(&v).ok().flatten()),
        nodemask: checked("NODEMASK").and_then(|v| resources::parse_cpulist(&v).ok().flatten()),
        ubc: beancounters,
        vm_overcommit: checked("VM_OVERCOMMIT").and_then(|v| resources::parse_overcommit(&v).ok()),
        ioprio: checked("IOPRIO").and_then(|v| resources::parse_ioprio(&v).ok()),
        iolimit: checked("IOLIMIT").and_then(|v| resources::parse_iolimit(&v).ok()),
        iopslimit: checked("IOPSLIMIT").and_then(|v| resources::parse_iopslimit(&v).ok()),
        diskspace: checked("DISKSPACE").and_then(|v| resources::parse_disk(&v, true).ok()),
        diskinodes: checked("DISKINODES").and_then(|v| resources::parse_disk(&v, false).ok()),
        quotatime: checked("QUOTATIME").and_then(|v| v.parse().ok()),
        devnodes: checked("DEVNODES")
            .and_then(|v| resources::parse_devnodes(&v).ok())
            .unwrap_or_default(),
        devices: checked("DEVICES")
            .and_then(|v| resources::parse_devices(&v).ok())
            .unwrap_or_default(),
    };
    let template = get("OSTEMPLATE")
        .map(|(v, origin)| (v, origin, "OSTEMPLATE"))
        .or_else(|| {
            global
                .entry("DEF_OSTEMPLATE")
                .map(|(v, line)| (v, Origin::Global(line), "DEF_OSTEMPLATE"))
        });
    let ostemplate = match template {
        Some((v, origin, k)) => {
            if !templates.iter().any(|t| t == v) {
                errors.push(err(
                    origin,
                    k,
                    format!(
                        "template {v:?} not found; available: {}",
                        templates.join(", ")
                    ),
                ));
            }
            v.to_owned()
        }
        None => {
            errors.push(err(
                Origin::Ve(0),
                "OSTEMPLATE",
                "not set, and vz.conf has no DEF_OSTEMPLATE".into(),
            ));
            String::new()
        }
    };
    let ve_dir = |dir: VeDir, diags: &mut Vec<Diag>, errors: &mut Vec<Diag>| -> PathBuf {
        let k = dir.key();
        let default = format!("{}/$VEID", dir.base().display());
        let (value, origin) = get(k).unwrap_or((&default, Origin::Ve(0)));
        let id = veid.to_string();
        let substituted = value.replace("${VEID}", &id).replace("$VEID", &id);
        match resolve_ve_dir(Path::new(&substituted), dir) {
            Ok(VePath { path, mapped_from }) => {
                // vz.conf's own warning covers a mapped default.
                if let (Some(from), Origin::Ve(line)) = (mapped_from, origin) {
                    diags.push(warn(line, k, mapped_message(&from, &path)));
                }
                path
            }
            Err(e) => {
                errors.push(err(
                    origin,
                    k,
                    format!("{value:?} is not allowed: {e}; {}", ve_dir_rule(dir)),
                ));
                PathBuf::from(substituted)
            }
        }
    };
    let ip_address = match get("IP_ADDRESS") {
        None => Vec::new(),
        Some((v, origin)) => net::parse_ip_list(v).unwrap_or_else(|m| {
            errors.push(err(origin, "IP_ADDRESS", m));
            Vec::new()
        }),
    };
    let portfwd = match get("PORTFWD") {
        None => Vec::new(),
        Some((v, origin)) => net::parse_portfwd(v).unwrap_or_else(|m| {
            errors.push(err(origin, "PORTFWD", m));
            Vec::new()
        }),
    };
    let nameserver = get("NAMESERVER").and_then(|(v, origin)| {
        net::parse_nameservers(v)
            .map_err(|m| errors.push(err(origin, "NAMESERVER", m)))
            .ok()
    });
    let searchdomain = get("SEARCHDOMAIN").and_then(|(v, origin)| {
        net::parse_searchdomains(v)
            .map_err(|m| errors.push(err(origin, "SEARCHDOMAIN", m)))
            .ok()
    });
    let netif = get("NETIF").map_or_else(Vec::new, |(v, origin)| {
        net::parse_netifs(v).unwrap_or_else(|m| {
            errors.push(err(origin, "NETIF", m));
            Vec::new()
        })
    });
    let netdev = get("NETDEV").map_or_else(Vec::new, |(v, origin)| {
        net::parse_netdevs(v).unwrap_or_else(|m| {
            errors.push(err(origin, "NETDEV", m));
            Vec::new()
        })
    });
    let ve_root = ve_dir(VeDir::Root, &mut diags, &mut errors);
    let ve_private = ve_dir(VeDir::Private, &mut diags, &mut errors);
    let failed = !errors.is_empty() || diags.iter().any(|d| d.severity == Severity::Error);
    diags.extend(errors);
    if failed {
        return (None, diags);
    }
    let cfg = VeConfig {
        veid,
        onboot,
        bootorder,
        name,
        description: get("DESCRIPTION").map(|(v, _)| v.to_owned()),
        ostemplate,
        hostname,
        ve_root,
        ve_private,
        disabled,
        stop_timeout,
        checkpoint,
        local_uid,
        local_gid,
        origin_sample: get("ORIGIN_SAMPLE").map(|(v, _)| v.to_owned()),
        limits,
        ip_address,
        portfwd,
        nameserver,
        searchdomain,
        netif,
        netdev,
    };
    (Some(cfg), diags)
}

/// The result of loading a whole config directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub global: Global,
    /// Per VE: its config, or the errors that keep it from starting.
    pub ves: BTreeMap<VeId, Result<VeConfig, Vec<Diag>>>,
    /// Every diagnostic (warnings included), for the log.
    pub diags: Vec<Diag>,
}

/// Loads `<dir>/vz.conf` and `<dir>/conf/<VEID>.conf`.
pub fn load_dir(dir: &Path, templates: &[String]) -> Loaded {
    let mut diags = Vec::new();
    let vz = dir.join("vz.conf");
    let global = match std::fs::read(&vz) {
        Ok(bytes) => {
            let (g, d) = Global::parse(&String::from_utf8_lossy(&bytes), &vz);
            diags.extend(d);
            g
        }
        Err(e) => {
            diags.push(Diag {
                severity: Severity::Warning,
                file: vz.clone(),
                line: 0,
                key: None,
                message: format!("cannot read it ({e}); using built-in defaults"),
            });
            Global::default()
        }
    };
    let mut ves = BTreeMap::new();
    let conf_dir = dir.join("conf");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&conf_dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut names: BTreeMap<String, VeId> = BTreeMap::new();
    let mut addresses: BTreeMap<std::net::IpAddr, VeId> = BTreeMap::new();
    let mut ports: BTreeMap<(bool, u16), VeId> = BTreeMap::new();
    for path in files {
        let Some(fname) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = fname.strip_suffix(".conf") else {
            continue;
        };
        // Samples (ve-*.conf-sample) and other files are not VEs.
        if !stem.bytes().all(|b| b.is_ascii_digit()) || stem.is_empty() {
            continue;
        }
        let veid = match stem.parse::<VeId>() {
            Ok(v) => v,
            Err(msg) => {
                let d = Diag {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: 0,
                    key: None,
                    message: format!("file name: {msg}; this file is ignored"),
                };
                diags.push(d);
                continue;
            }
        };
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                let d = Diag {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: 0,
                    key: None,
                    message: format!("cannot read it: {e}"),
                };
                diags.push(d.clone());
                ves.insert(veid, Err(vec![d]));
                continue;
            }
        };
        let (entries, mut d) = parse(&text, &path);
        // VZ7 configs may carry VEID=; it must agree with the file name.
        if let Some(e) = entries.iter().find(|e| e.key == "VEID") {
            if e.value != veid.to_string() {
                d.push(Diag {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: e.line,
                    key: Some("VEID".into()),
                    message: format!(
                        "says {} but the file is {fname}: duplicate or mismatched VEID; rename the \
                         file or fix the value",
                        e.value
                    ),
                });
            }
        }
        let (cfg, d2) = validate_ve(veid, &entries, &global, templates, &path);
        d.extend(d2);
        let mut result = match cfg {
            Some(c) if !d.iter().any(|x| x.severity == Severity::Error) => Ok(c),
            _ => Err(d
                .iter()
                .filter(|x| x.severity == Severity::Error)
                .cloned()
                .collect()),
        };
        if let Ok(c) = &result {
            if let Some(n) = &c.name {
                if let Some(other) = names.get(n) {
                    let line = entries
                        .iter()
                        .find(|e| e.key == "NAME")
                        .map_or(0, |e| e.line);
                    let dd = Diag {
                        severity: Severity::Error,
                        file: path.clone(),
                        line,
                        key: Some("NAME".into()),
                        message: format!(
                            "{n:?} is already the name of VE {other}: names must be unique"
                        ),
                    };
                    d.push(dd.clone());
                    result = Err(vec![dd]);
                } else {
                    names.insert(n.clone(), veid);
                }
            }
        }
        if let Ok(c) = &result {
            // An address routed to two VEs: the second one (in VEID
            // order) does not start.
            let line = entries
                .iter()
                .rev()
                .find(|e| e.key == "IP_ADDRESS")
                .map_or(0, |e| e.line);
            if let Some((ip, other)) = c
                .ip_address
                .iter()
                .find_map(|a| addresses.get(&a.ip).map(|o| (a.ip, *o)))
            {
                let dd = Diag {
                    severity: Severity::Error,
                    file: path.clone(),
                    line,
                    key: Some("IP_ADDRESS".into()),
                    message: format!(
                        "{ip} is already an address of VE {other}: an address belongs to one VE                          (remove it from one of them)"
                    ),
                };
                d.push(dd.clone());
                result = Err(vec![dd]);
            } else if let Some((f, other)) = c
                .portfwd
                .iter()
                .find_map(|f| ports.get(&(f.udp, f.outer)).map(|o| (*f, *o)))
            {
                let line = entries
                    .iter()
                    .rev()
                    .find(|e| e.key == "PORTFWD")
                    .map_or(0, |e| e.line);
                let dd = Diag {
                    severity: Severity::Error,
                    file: path.clone(),
                    line,
                    key: Some("PORTFWD".into()),
                    message: format!(
                        "the appliance's {} port {} already goes to VE {other}",
                        f.proto(),
                        f.outer
                    ),
                };
                d.push(dd.clone());
                result = Err(vec![dd]);
            } else {
                for a in &c.ip_address {
                    addresses.insert(a.ip, veid);
                }
                for f in &c.portfwd {
                    ports.insert((f.udp, f.outer), veid);
                }
            }
        }
        diags.extend(d);
        ves.insert(veid, result);
    }
    Loaded { global, ves, diags }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/etc/vz/conf/101.conf")
    }

    fn tpl() -> Vec<String> {
        vec!["busybox".into()]
    }

    fn global() -> Global {
        Global::parse(
            "DEF_OSTEMPLATE=\"busybox\"\nLOCAL_UID=100000\n",
            Path::new("vz.conf"),
        )
        .0
    }

    fn check(text: &str) -> (Option<VeConfig>, Vec<Diag>) {
        let (entries, mut diags) = parse(text, &p());
        let (cfg, d) = validate_ve(
            "101".parse().expect("veid"),
            &entries,
            &global(),
            &tpl(),
            &p(),
        );
        diags.extend(d);
        (
            cfg.filter(|_| !diags.iter().any(|d| d.severity == Severity::Error)),
            diags,
        )
    }

    #[test]
    fn parses_quotes_bom_crlf_and_comments() {
        let text = "\u{feff}# c\r\nONBOOT=\"yes\"\r\nNAME='web'\r\nBOOTORDER=10 # ten\r\n\r\nHOSTNAME=\"a b\"\r\n";
        let (e, d) = parse(text, &p());
        assert!(d.is_empty(), "{d:?}");
        let kv: Vec<_> = e
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("ONBOOT", "yes", 2),
                ("NAME", "web", 3),
                ("BOOTORDER", "10", 4),
                ("HOSTNAME", "a b", 6)
            ]
        );
    }

    #[test]
    fn valid_config() {
        let (cfg, d) = check(
            "ONBOOT=\"yes\"\nBOOTORDER=\"5\"\nHOSTNAME=\"ve101.example.com\"\nNAME=\"web\"\n",
        );
        let cfg = cfg.unwrap_or_else(|| panic!("{d:?}"));
        assert!(cfg.onboot);
        assert_eq!(cfg.bootorder, 5);
        assert_eq!(cfg.ostemplate, "busybox");
        assert_eq!(cfg.ve_private, PathBuf::from("/vz/private/101"));
        assert_eq!(cfg.local_uid, 100_000 + 101 * 65_536);
        assert_eq!(cfg.stop_timeout, 120);
    }

    #[test]
    fn openvz_samples_are_accepted_with_one_warning_per_unimplemented_key() {
        let basic = "KMEMSIZE=\"14372700:14790164\"\nLOCKEDPAGES=\"2048:2048\"\nPRIVVMPAGES=\"65536:69632\"\nSHMPAGES=\"21504:21504\"\nNUMPROC=\"240:240\"\nPHYSPAGES=\"0:unlimited\"\nVMGUARPAGES=\"33792:unlimited\"\nOOMGUARPAGES=\"26112:unlimited\"\nNUMTCPSOCK=\"360:360\"\nNUMFLOCK=\"188:206\"\nNUMPTY=\"16:16\"\nNUMSIGINFO=\"256:256\"\nTCPSNDBUF=\"1720320:2703360\"\nTCPRCVBUF=\"1720320:2703360\"\nOTHERSOCKBUF=\"1126080:2097152\"\nDGRAMRCVBUF=\"262144:262144\"\nNUMOTHERSOCK=\"360:360\"\nDCACHESIZE=\"3409920:3624960\"\nNUMFILE=\"9312:9312\"\nAVNUMPROC=\"180:180\"\nNUMIPTENT=\"128:128\"\nDISKSPACE=\"2G:2.2G\"\nDISKINODES=\"131072:144179\"\nQUOTATIME=\"0\"\nCPUUNITS=\"1000\"\nNETFILTER=\"stateless\"\n";
        let (cfg, d) = check(basic);
        assert!(cfg.is_some(), "{d:?}");
        // Every resource key is known; AVNUMPROC (informational) and
        // NETFILTER (networking) are not acted on yet.
        assert_eq!(d.len(), 2, "{d:?}");
        let limits = cfg.expect("valid").limits;
        assert_eq!(limits.cpuunits, Some(1000));
        assert_eq!(
            limits.ubc("numproc").map(|n| n.limit),
            Some(resources::Limit::Value(240))
        );
        assert_eq!(
            limits.ubc("physpages").map(|n| n.limit),
            Some(resources::Limit::Unlimited)
        );
        assert_eq!(
            limits.ubc("kmemsize").map(|n| n.barrier),
            Some(resources::Limit::Value(14_372_700))
        );
        assert_eq!(
            limits.diskspace.map(|n| n.limit),
            Some(resources::Limit::Value(2_306_867))
        );
        assert!(d.iter().all(|d| d.severity == Severity::Warning));
        let vswap = "PHYSPAGES=\"0:256M\"\nSWAPPAGES=\"0:512M\"\nDISKSPACE=\"2G:2.2G\"\nDISKINODES=\"131072:144179\"\nQUOTATIME=\"0\"\nCPUUNITS=\"1000\"\nNETFILTER=\"stateless\"\n";
        let (cfg, d) = check(vswap);
        assert_eq!(d.len(), 1, "{d:?}");
        let limits = cfg.expect("valid").limits;
        assert_eq!(
            limits.ubc("physpages").map(|n| n.limit),
            Some(resources::Limit::Value(65_536))
        );
        assert_eq!(
            limits.ubc("swappages").map(|n| n.limit),
            Some(resources::Limit::Value(131_072))
        );
        let (cfg, d) = check("NUMPROC=\"10:5\"\nCPUUNITS=\"5\"\n");
        assert!(cfg.is_none());
        assert!(
            d.iter()
                .any(|d| d.key.as_deref() == Some("NUMPROC")
                    && d.message.contains("barrier is above"))
        );
        assert!(d
            .iter()
            .any(|d| d.key.as_deref() == Some("CPUUNITS") && d.message.contains("8 to 500000")));
    }

    #[test]
    fn unknown_keys_are_warnings_with_did_you_mean_and_the_ve_validates() {
        let (cfg, d) = check(
            "ONBOOT=\"yes\"\nCONFIG_CUSTOMIZED=\"yes\"\nVZHOSTBR=\"vmbr0\"\nONBOTO=\"yes\"\nhostname=\"x\"\n",
        );
        assert!(cfg.is_some(), "{d:?}");
        assert!(d.iter().all(|d| d.severity == Severity::Warning), "{d:?}");
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            all[1..],
            [
                "/etc/vz/conf/101.conf:3: warning: VZHOSTBR: unknown parameter, ignored (kept by --save)",
                "/etc/vz/conf/101.conf:4: warning: ONBOTO: unknown parameter, ignored (kept by --save); did you mean ONBOOT?",
                "/etc/vz/conf/101.conf:5: warning: hostname: unknown parameter, ignored (kept by --save); did you mean HOSTNAME?",
            ]
        );
        // A key OpenVZ ignores has no effect here either.
        assert_eq!(cfg.and_then(|c| c.hostname), None);
    }

    #[test]
    fn unknown_keys_are_kept_by_save() {
        let orig = "VZHOSTBR=\"vmbr0\"\nONBOOT=\"no\"\n";
        let out = render_update(orig, &[("ONBOOT", Some("yes".into()))]);
        assert_eq!(out, "VZHOSTBR=\"vmbr0\"\nONBOOT=\"yes\"\n");
    }

    #[test]
    fn keys_out_of_their_scope_are_warnings() {
        let (cfg, d) = check("DEF_OSTEMPLATE=\"busybox\"\n");
        assert!(cfg.is_some(), "{d:?}");
        assert!(
            d[0].to_string()
                .ends_with("DEF_OSTEMPLATE: a vz.conf parameter: it has no effect in a VE config, ignored (kept by --save)"),
            "{}",
            d[0]
        );
        let (g, d) = Global::parse("NAME=\"web\"\nVE_PARALLEL=\"2\"\n", Path::new("vz.conf"));
        assert_eq!(g.get("NAME"), None);
        assert_eq!(g.get("VE_PARALLEL"), Some("2"));
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "vz.conf:1: warning: NAME: a per-VE parameter: vz.conf cannot give every VE the same one; ignored"
        );
    }

    #[test]
    fn vz_conf_unknown_keys_are_warnings_with_did_you_mean() {
        let (g, d) = Global::parse(
            "DEF_OSTEMPLAT=\"busybox\"\nMY_BACKUP_DIR=\"/srv\"\nLOCKDIR=\"/vz/lock\"\n",
            Path::new("vz.conf"),
        );
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            all,
            [
                "vz.conf:1: warning: DEF_OSTEMPLAT: unknown parameter, ignored (kept by --save); did you mean DEF_OSTEMPLATE?",
                "vz.conf:2: warning: MY_BACKUP_DIR: unknown parameter, ignored (kept by --save)",
            ]
        );
        assert_eq!(g.get("MY_BACKUP_DIR"), Some("/srv"));
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("ONBOOT", "ONBOOT"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("ONBOTO", "ONBOOT"), 2);
        assert_eq!(edit_distance("HOSTNAM", "HOSTNAME"), 1);
        assert_eq!(edit_distance("onboot", "ONBOOT"), 6);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn closest_key_takes_case_and_near_misses_only() {
        let any = |_: &KeyDef| true;
        assert_eq!(closest_key("onboot", any), Some("ONBOOT"));
        assert_eq!(closest_key("BOOTODRER", any), Some("BOOTORDER"));
        assert_eq!(closest_key("CPUUNIT", any), Some("CPUUNITS"));
        assert_eq!(closest_key("VZHOSTBR", any), None);
        assert_eq!(
            closest_key("CONFIG_CUSTOMISED", any),
            Some("CONFIG_CUSTOMIZED")
        );
        // Only keys of the file's scope are offered.
        assert_eq!(closest_key("LOCKDIRS", KeyDef::in_ve_config), None);
        assert_eq!(closest_key("LOCKDIRS", KeyDef::in_vz_conf), Some("LOCKDIR"));
    }

    #[test]
    fn keys_table_keeps_every_key_once_with_its_scope_status_and_liveness() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len(), "a key is listed twice");
        assert_eq!(KEYS.len(), 139);
        assert!(KEYS.iter().all(|k| k
            .name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')));
        let count = |f: &dyn Fn(&KeyDef) -> bool| KEYS.iter().filter(|k| f(k)).count();
        assert_eq!(count(&|k| k.scope == Scope::Global), 38);
        assert_eq!(
            count(&|k| k.scope != Scope::Global && k.status == Status::Implemented),
            55
        );
        assert_eq!(
            count(&|k| k.scope != Scope::Global && k.status == Status::NotYet),
            46
        );
        // Every resource key changes on a running VE.
        for k in KEYS.iter().filter(|k| {
            k.kind != ValueKind::Any && k.status == Status::Implemented && k.scope == Scope::Both
        }) {
            assert!(k.live, "{} should be live", k.name);
        }
        for k in UBC_KEYS.iter().filter(|k| **k != "DUMMY") {
            assert!(key(k).is_some_and(|d| d.live && d.option.is_some()), "{k}");
        }
        for k in [
            "OSTEMPLATE",
            "VE_ROOT",
            "VE_PRIVATE",
            "LOCAL_UID",
            "LOCAL_GID",
        ] {
            let def = key(k).expect("known key");
            assert!(!def.live && def.status == Status::Implemented, "{k}");
        }
        assert_eq!(key("NAME").map(|k| k.scope), Some(Scope::Ve));
        assert_eq!(key("VE_PRIVATE").map(|k| k.scope), Some(Scope::Both));
        assert_eq!(key("KMEMSIZE").map(|k| k.status), Some(Status::Implemented));
        assert_eq!(key("NETFILTER").map(|k| k.status), Some(Status::NotYet));
        assert_eq!(
            key("DEF_OSTEMPLATE").map(|k| k.status),
            Some(Status::Implemented)
        );
        assert_eq!(key("onboot"), None);
    }

    /// VE_PRIVATE as the VE's config gives it: the path, or the error's diagnostic.
    fn private_of(value: &str) -> Result<(PathBuf, Vec<String>), String> {
        let (cfg, d) = check(&format!("VE_PRIVATE=\"{value}\"\n"));
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        match cfg {
            Some(c) => Ok((c.ve_private, all)),
            None => Err(all.join("\n")),
        }
    }

    #[test]
    fn ve_private_must_be_below_vz_private_after_normalising() {
        for (value, want) in [
            ("/vz/private/$VEID", "/vz/private/101"),
            ("/vz/private/${VEID}", "/vz/private/101"),
            ("/vz/private/101/", "/vz/private/101"),
            ("/vz/private/101//", "/vz/private/101"),
            ("/vz/private/web/$VEID", "/vz/private/web/101"),
        ] {
            let (p, d) = private_of(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(p, PathBuf::from(want), "{value}");
            assert!(d.is_empty(), "{value}: {d:?}");
        }
        for (value, why) in [
            ("/vz/../boot", "it has a \"..\" component"),
            ("/vz/private/../../boot", "it has a \"..\" component"),
            ("/vz/private/101/..", "it has a \"..\" component"),
            ("/vz/private/./101", "it has a \".\" component"),
            ("/vz/private//101", "it has an empty component"),
            ("//vz/private/101", "it has an empty component"),
            ("vz/private/101", "it is not an absolute path"),
            ("$VEID", "it is not an absolute path"),
            ("/vz/private/1\u{0}01", "it contains a NUL byte"),
            ("/vz/private", "it is not below /vz/private"),
            ("/vz/private/", "it is not below /vz/private"),
            ("/vz/root/101", "it is not below /vz/private"),
            ("/vz/private101", "it is not below /vz/private"),
            ("/boot", "it is not below /vz/private"),
            ("/", "it is not below /vz/private"),
            ("/var/lib/vz/private", "it is not below /vz/private"),
            (
                "/var/lib/vz/private/../../../boot",
                "it has a \"..\" component",
            ),
            ("/var/lib/vz/root/101", "it is not below /vz/private"),
        ] {
            let e = private_of(value).map_or_else(|e| e, |ok| panic!("{value} accepted: {ok:?}"));
            let head = format!(
                "/etc/vz/conf/101.conf:1: error: VE_PRIVATE: {value:?} is not allowed: {why}"
            );
            assert!(e.starts_with(&head), "{value}: {e}");
            assert!(
                e.contains("VE_PRIVATE must be /vz/private/<dir> without"),
                "{e}"
            );
            // vzlist and the management channel show 256 characters of the reason.
            assert!(e.len() < 256, "{} characters: {e}", e.len());
        }
    }

    #[test]
    fn ve_root_must_be_below_vz_root() {
        let (cfg, d) = check("VE_ROOT=\"/vz/root/$VEID/\"\n");
        assert_eq!(
            cfg.map(|c| c.ve_root),
            Some(PathBuf::from("/vz/root/101")),
            "{d:?}"
        );
        let (cfg, d) = check("VE_ROOT=\"/vz/private/101\"\n");
        assert!(cfg.is_none());
        assert!(
            d[0].to_string().contains(
                "VE_ROOT: \"/vz/private/101\" is not allowed: it is not below /vz/root; VE_ROOT must be /vz/root/<dir>"
            ),
            "{}",
            d[0]
        );
    }

    #[test]
    fn debian_openvz_paths_map_to_vz_with_a_warning() {
        let (p, d) = private_of("/var/lib/vz/private/$VEID").expect("mapped");
        assert_eq!(p, PathBuf::from("/vz/private/101"));
        assert_eq!(
            d,
            ["/etc/vz/conf/101.conf:1: warning: VE_PRIVATE: /var/lib/vz/private/101 is read as /vz/private/101: this appliance keeps VE data under /vz"]
        );
        let (cfg, d) = check("VE_ROOT=\"/var/lib/vz/root/$VEID\"\n");
        assert_eq!(cfg.map(|c| c.ve_root), Some(PathBuf::from("/vz/root/101")));
        assert!(
            d[0].to_string().contains("is read as /vz/root/101"),
            "{d:?}"
        );
    }

    #[test]
    fn bad_vz_conf_default_is_an_error_at_its_line_for_each_ve() {
        let vz = Path::new("/etc/vz/vz.conf");
        let (g, d) = Global::parse(
            "DEF_OSTEMPLATE=\"busybox\"\nVE_PRIVATE=\"/vz/../boot/$VEID\"\n",
            vz,
        );
        assert!(d.is_empty(), "{d:?}");
        let (cfg, d) = validate_ve("101".parse().expect("veid"), &[], &g, &tpl(), &p());
        assert!(cfg.is_none());
        let msg = d[0].to_string();
        assert!(
            msg.starts_with("/etc/vz/vz.conf:2: error: VE_PRIVATE: \"/vz/../boot/$VEID\" is not allowed: it has a \"..\" component"),
            "{msg}"
        );
        assert!(msg.ends_with("(the default for VE 101)"), "{msg}");
        // A mapped default warns once, in vz.conf, not for each VE.
        let (g, d) = Global::parse(
            "DEF_OSTEMPLATE=\"busybox\"\nVE_PRIVATE=\"/var/lib/vz/private/$VEID\"\n",
            vz,
        );
        assert_eq!(
            d.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            ["/etc/vz/vz.conf:2: warning: VE_PRIVATE: /var/lib/vz/private/$VEID is read as /vz/private/$VEID: this appliance keeps VE data under /vz"]
        );
        let (cfg, d) = validate_ve("102".parse().expect("veid"), &[], &g, &tpl(), &p());
        assert_eq!(
            cfg.map(|c| c.ve_private),
            Some(PathBuf::from("/vz/private/102"))
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn bad_vz_conf_flag_is_an_error_at_its_line_for_each_ve() {
        let (g, d) = Global::parse(
            "DEF_OSTEMPLATE=\"busybox\"\nONBOOT=\"maybe\"\n",
            Path::new("/etc/vz/vz.conf"),
        );
        assert!(d.is_empty(), "{d:?}");
        let (cfg, d) = validate_ve("101".parse().expect("veid"), &[], &g, &tpl(), &p());
        assert!(cfg.is_none());
        assert_eq!(
            d[0].to_string(),
            "/etc/vz/vz.conf:2: error: ONBOOT: \"maybe\" is not allowed: use \"yes\" or \"no\" \
             (the default for VE 101)"
        );
        // The VE's own value wins, and then vz.conf's is not used.
        let (entries, _) = parse("ONBOOT=\"yes\"\n", &p());
        let (cfg, d) = validate_ve("101".parse().expect("veid"), &entries, &g, &tpl(), &p());
        assert!(cfg.is_some_and(|c| c.onboot), "{d:?}");
    }

    #[test]
    fn confine_private_accepts_only_dirs_below_vz_private() {
        assert_eq!(
            confine_private(Path::new("/vz/private/101")),
            Ok(PathBuf::from("/vz/private/101"))
        );
        assert_eq!(
            confine_private(Path::new("/vz/private/web/101/")),
            Ok(PathBuf::from("/vz/private/web/101"))
        );
        for (p, e) in [
            (
                "/vz/private",
                VePathError::NotBelow(Path::new("/vz/private")),
            ),
            (
                "/vz/private/",
                VePathError::NotBelow(Path::new("/vz/private")),
            ),
            (
                "/vz/root/101",
                VePathError::NotBelow(Path::new("/vz/private")),
            ),
            (
                "/var/lib/vz/private/101",
                VePathError::NotBelow(Path::new("/vz/private")),
            ),
            ("/vz/../boot", VePathError::DotComponent("..")),
            ("/vz/private/101/../..", VePathError::DotComponent("..")),
            ("/vz/private/./101", VePathError::DotComponent(".")),
            ("/vz/private//101", VePathError::EmptyComponent),
            ("vz/private/101", VePathError::NotAbsolute),
            ("", VePathError::NotAbsolute),
        ] {
            assert_eq!(confine_private(Path::new(p)), Err(e), "{p}");
        }
        assert_eq!(
            confine_private(Path::new(OsStr::from_bytes(b"/vz/private/1\x0001"))),
            Err(VePathError::Nul)
        );
        assert_eq!(
            confine_root(Path::new("/vz/root/101")),
            Ok(PathBuf::from("/vz/root/101"))
        );
        assert!(confine_root(Path::new("/vz/private/101")).is_err());
    }

    #[test]
    fn shipped_vz_conf_and_samples_load_without_errors() {
        let (g, d) = Global::parse(
            include_str!("../../rootfs/boot/vz/vz.conf"),
            Path::new("vz.conf"),
        );
        assert!(d.is_empty(), "{d:?}");
        for (name, text) in [
            (
                "basic",
                include_str!("../../rootfs/boot/vz/conf/ve-basic.conf-sample"),
            ),
            (
                "light",
                include_str!("../../rootfs/boot/vz/conf/ve-light.conf-sample"),
            ),
            (
                "vswap-256m",
                include_str!("../../rootfs/boot/vz/conf/ve-vswap-256m.conf-sample"),
            ),
            (
                "vswap-4g",
                include_str!("../../rootfs/boot/vz/conf/ve-vswap-4g.conf-sample"),
            ),
        ] {
            let (entries, mut d) = parse(text, Path::new(name));
            let (cfg, d2) = validate_ve("101".parse().expect("veid"), &entries, &g, &tpl(), &p());
            d.extend(d2);
            assert!(cfg.is_some(), "{name}: {d:?}");
            assert!(
                d.iter()
                    .all(|d| d.message.starts_with("accepted but not implemented yet")),
                "{name}: {d:?}"
            );
        }
    }

    #[test]
    fn bad_number_and_bad_flag() {
        let (cfg, d) = check("BOOTORDER=\"ten\"\nONBOOT=\"maybe\"\n");
        assert!(cfg.is_none());
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert!(
            all.iter()
                .any(|m| m.contains(":1: error: BOOTORDER: \"ten\" is not a number")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|m| m
                .contains(":2: error: ONBOOT: \"maybe\" is not allowed: use \"yes\" or \"no\"")),
            "{all:?}"
        );
    }

    #[test]
    fn missing_template_lists_the_available_ones() {
        let (cfg, d) = check("OSTEMPLATE=\"centos-7\"\n");
        assert!(cfg.is_none());
        assert!(
            d[0].to_string()
                .contains("template \"centos-7\" not found; available: busybox"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn malformed_lines_and_quotes() {
        let (cfg, d) = check("just words\nNAME=\"unterminated\n");
        assert!(cfg.is_none());
        assert!(d[0]
            .to_string()
            .contains(":1: error: expected KEY=\"value\""));
        assert!(d[1]
            .to_string()
            .contains(":2: error: NAME: unbalanced quotes"));
    }

    #[test]
    fn veid_rules() {
        assert!("101".parse::<VeId>().is_ok());
        assert!("100".parse::<VeId>().is_err());
        assert!("0101".parse::<VeId>().is_err());
        assert!("abc".parse::<VeId>().is_err());
        assert!("2147483645".parse::<VeId>().is_err());
    }

    #[test]
    fn directory_load_flags_duplicates_and_keeps_good_ves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).expect("mkdir");
        std::fs::write(dir.path().join("vz.conf"), "DEF_OSTEMPLATE=\"busybox\"\n").expect("w");
        std::fs::write(conf.join("101.conf"), "NAME=\"web\"\n").expect("w");
        std::fs::write(conf.join("102.conf"), "NAME=\"web\"\n").expect("w");
        std::fs::write(conf.join("103.conf"), "VEID=\"101\"\n").expect("w");
        std::fs::write(conf.join("104.conf"), "ONBOOT=\"yes\"\n").expect("w");
        std::fs::write(
            conf.join("ve-vswap-256m.conf-sample"),
            "PHYSPAGES=\"0:256M\"\n",
        )
        .expect("w");
        let l = load_dir(dir.path(), &tpl());
        let ok: Vec<u32> = l
            .ves
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(v, _)| v.get())
            .collect();
        assert_eq!(ok, vec![101, 104]);
        let e102 = l.ves[&"102".parse().expect("veid")]
            .as_ref()
            .expect_err("dup name");
        assert!(
            e102[0].to_string().contains("already the name of VE 101"),
            "{}",
            e102[0]
        );
        let e103 = l.ves[&"103".parse().expect("veid")]
            .as_ref()
            .expect_err("dup veid");
        assert!(
            e103[0].to_string().contains("duplicate or mismatched VEID"),
            "{}",
            e103[0]
        );
    }

    #[test]
    fn save_keeps_comments_and_replaces_keys() {
        let orig = "# my VE\nONBOOT=\"no\"\nNAME=\"a\"\n";
        let out = render_update(
            orig,
            &[
                ("ONBOOT", Some("yes".into())),
                ("HOSTNAME", Some("h".into())),
                ("NAME", None),
            ],
        );
        assert_eq!(out, "# my VE\nONBOOT=\"yes\"\nHOSTNAME=\"h\"\n");
    }

    #[test]
    fn ip_address_is_checked_with_its_line() {
        let (cfg, _) = check("IP_ADDRESS=\"192.0.2.5 2001:db8::5/64\"\n");
        let cfg = cfg.expect("valid");
        assert_eq!(
            net::render_ip_list(&cfg.ip_address),
            "192.0.2.5 2001:db8::5/64"
        );
        let (cfg, diags) = check("ONBOOT=yes\nIP_ADDRESS=\"192.0.2.300\"\n");
        assert!(cfg.is_none());
        let d = diags
            .iter()
            .find(|d| d.severity == Severity::Error)
            .expect("an error");
        assert_eq!((d.line, d.key.as_deref()), (2, Some("IP_ADDRESS")));
        assert!(d.message.contains("192.0.2.300"), "{d}");
    }

    #[test]
    fn an_address_of_two_ves_stops_the_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("conf")).expect("mkdir");
        std::fs::write(dir.path().join("vz.conf"), "DEF_OSTEMPLATE=busybox\n").expect("write");
        std::fs::write(
            dir.path().join("conf/101.conf"),
            "IP_ADDRESS=\"192.0.2.5\"\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("conf/102.conf"),
            "ONBOOT=yes\nIP_ADDRESS=\"198.51.100.7 192.0.2.5/24\"\n",
        )
        .expect("write");
        let loaded = load_dir(dir.path(), &tpl());
        let v = |n: u32| loaded.ves.get(&VeId(n)).expect("loaded");
        assert!(v(101).is_ok());
        let errs = v(102).as_ref().expect_err("duplicate");
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].message.contains("VE 101"), "{}", errs[0]);
    }

    #[test]
    fn every_set_option_maps_to_a_typed_parameter_and_back() {
        let sample = |k: &KeyDef| match k.kind {
            ValueKind::YesNo => "yes",
            ValueKind::Number => "42",
            ValueKind::Hostname => "ve.example.com",
            ValueKind::VeName => "web",
            ValueKind::Any => "some text",
            ValueKind::Ubc(_) => "10:20",
            ValueKind::CpuUnits => "1000",
            ValueKind::CpuLimit => "25",
            ValueKind::Cpus => "2",
            ValueKind::CpuList => "0-1",
            ValueKind::Overcommit => "1.5",
            ValueKind::IoPrio => "4",
            ValueKind::IoLimit => "1024B",
            ValueKind::IopsLimit => "300",
            ValueKind::DiskSpace | ValueKind::DiskInodes => "100:200",
            ValueKind::DevNodes => "net/tun:rw",
            ValueKind::Devices => "c:10:200:rw",
            ValueKind::ZramSwap => "50%",
            ValueKind::StopMode => "suspend",
            ValueKind::IpList => "192.0.2.5 2001:db8::5",
            ValueKind::PortFwd => "tcp:8080:80",
            ValueKind::NameServers => "192.0.2.53",
            ValueKind::NetIf => "ifname=eth0,bridge=vmbr0",
            ValueKind::NetDev => "eth1",
            ValueKind::SearchDomains => "example.com",
        };
        let with_option: Vec<&KeyDef> = KEYS.iter().filter(|k| k.option.is_some()).collect();
        assert!(with_option.len() >= 7);
        for def in with_option {
            let opt = def.option.expect("filtered");
            assert_eq!(key_for_option(opt).map(|k| k.name), Some(def.name));
            let p = set_param(def, sample(def)).unwrap_or_else(|e| panic!("{opt}: {e}"));
            assert_eq!(
                set_param_entry(&p),
                (def.name, sample(def).to_owned()),
                "{opt}"
            );
            assert!(def.live, "{opt}: vzctl set changes only live keys today");
        }
        let onboot = key("ONBOOT").expect("known");
        assert!(set_param(onboot, "maybe").expect_err("bad").contains("yes"));
        let host = key("HOSTNAME").expect("known");
        assert!(set_param(host, "-bad-").is_err());
    }
}
