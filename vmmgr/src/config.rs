//! The boot config: OpenVZ's `vz.conf` and `<VEID>.conf`, `KEY="value"` lines.
//!
//! Parsing never fails as a whole: every line yields an entry or a diagnostic
//! that names file, line and key, and says what is allowed. A VE whose config
//! has an error does not start (vzlist shows why); keys OpenVZ has that we do
//! not implement yet produce one warning each.

use std::collections::BTreeMap;
use std::fmt;
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

/// Keys we implement for a VE.
pub const VE_KEYS: &[&str] = &[
    "ONBOOT",
    "BOOTORDER",
    "NAME",
    "DESCRIPTION",
    "OSTEMPLATE",
    "ORIGIN_SAMPLE",
    "HOSTNAME",
    "VE_ROOT",
    "VE_PRIVATE",
    "DISABLED",
    "STOP_TIMEOUT",
    "LOCAL_UID",
    "LOCAL_GID",
];

/// OpenVZ keys accepted with a warning: not implemented yet.
pub const LATER_KEYS: &[&str] = &[
    "VE_LAYOUT",
    "MOUNT_OPTS",
    "KMEMSIZE",
    "LOCKEDPAGES",
    "PRIVVMPAGES",
    "SHMPAGES",
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
    "DCACHE",
    "NUMFILE",
    "NUMIPTENT",
    "IPTENTRIES",
    "SWAPPAGES",
    "AVNUMPROC",
    "VM_OVERCOMMIT",
    "CPUUNITS",
    "CPULIMIT",
    "CPUS",
    "CPUMASK",
    "NODEMASK",
    "CPUWEIGHT",
    "DISK_QUOTA",
    "DISKSPACE",
    "DISKINODES",
    "QUOTATIME",
    "QUOTAUGIDLIMIT",
    "IOPRIO",
    "IOLIMIT",
    "IOPSLIMIT",
    "CAPABILITY",
    "FEATURES",
    "DEVICES",
    "DEVNODES",
    "PCI",
    "IP_ADDRESS",
    "NAMESERVER",
    "SEARCHDOMAIN",
    "NETIF",
    "NETDEV",
    "NETFILTER",
    "IPTABLES",
    "MEMINFO",
    "VERSION",
    "UUID",
    "VEID",
    "VE_TYPE",
    "DISTRIBUTION",
    "TEMPLATES",
    "TECHNOLOGIES",
    "CONFIG_CUSTOMIZED",
    "ALLOWREBOOT",
    "OSRELEASE",
    "VE_ENVIRONMENT",
    "DISK",
    "BINDMOUNT",
    "NOATIME",
    "HA_ENABLE",
    "HA_PRIO",
    "RATE",
    "RATEBOUND",
    "MEMGUARANTEE",
    "MEMGUARANTEE_BYTES",
    "PAGECACHE_ISOLATION",
    "NUMMEMORYSUBGROUPS",
    "NUMNETIF",
    "CPULIMIT_MHZ",
    "JOURNALED_QUOTA",
    "AUTOCOMPACT",
    "ROOT_DISK",
    "USE_NET_RPS",
    "APPLY_IPONLY",
    "BURST_CPU_AVG_USAGE",
    "BURST_CPULIMIT",
    "PLATFORM",
];

/// Global keys of `vz.conf` (besides per-VE defaults).
pub const GLOBAL_KEYS: &[&str] = &[
    "VIRTUOZZO",
    "LOCKDIR",
    "DUMPDIR",
    "VE0CPUUNITS",
    "VE_STOP_MODE",
    "VE_PARALLEL",
    "LOGGING",
    "LOGFILE",
    "LOG_LEVEL",
    "VERBOSE",
    "VZFASTBOOT",
    "MODULES_DISABLED",
    "IPTABLES_MODULES",
    "SKIP_SYSCTL_SETUP",
    "VE_ROUTE_SRC_DEV",
    "NEIGHBOUR_DEVS",
    "ERROR_ON_ARPFAIL",
    "SKIP_ARPDETECT",
    "FORCE_ROUTE",
    "TEMPLATE",
    "CONFIGFILE",
    "DEF_OSTEMPLATE",
    "IPV6",
    "VZWDOG",
    "ACTIONLOGDIR",
    "GOLDEN_IMAGE",
    "TRAFFIC_SHAPING",
    "BANDWIDTH",
    "TOTALRATE",
    "USE_NET_HWCSUM",
    "USE_NET_TSO",
    "USE_VENET_MASK",
    "REMOVEMIGRATED",
    "HTTP_PROXY",
    "REPAIR_MODE",
    "VEFSTYPE",
    "VEIMAGEFORMAT",
];

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

/// The global configuration.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub values: BTreeMap<String, String>,
}

impl Global {
    /// Parses `vz.conf`; unknown keys are warnings here (it also carries
    /// per-VE defaults, and OpenVZ tolerates more in it).
    pub fn parse(text: &str, file: &Path) -> (Global, Vec<Diag>) {
        let (entries, mut diags) = parse(text, file);
        let mut values = BTreeMap::new();
        for e in entries {
            let known = GLOBAL_KEYS.contains(&e.key.as_str())
                || VE_KEYS.contains(&e.key.as_str())
                || LATER_KEYS.contains(&e.key.as_str());
            if !known {
                diags.push(Diag {
                    severity: Severity::Warning,
                    file: file.to_owned(),
                    line: e.line,
                    key: Some(e.key.clone()),
                    message: "unknown parameter, ignored".into(),
                });
            }
            values.insert(e.key, e.value);
        }
        (Global { values }, diags)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
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
    pub ve_root: PathBuf,
    pub ve_private: PathBuf,
    pub disabled: bool,
    pub stop_timeout: u32,
    pub local_uid: u32,
    pub local_gid: u32,
    pub origin_sample: Option<String>,
}

/// First uid of the ranges given to VEs (LOCAL_UID in vz.conf), and range size.
pub const DEFAULT_LOCAL_UID: u32 = 100_000;
pub const ID_RANGE: u32 = 65_536;

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Validates a VE's entries against the global defaults. `templates` lists the
/// available OS templates.
pub fn validate_ve(
    veid: VeId,
    entries: &[Entry],
    global: &Global,
    templates: &[String],
    file: &Path,
) -> (Option<VeConfig>, Vec<Diag>) {
    let mut diags = Vec::new();
    let mut vals: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
    let err = |line: usize, key: &str, message: String| Diag {
        severity: Severity::Error,
        file: file.to_owned(),
        line,
        key: Some(key.to_owned()),
        message,
    };
    for e in entries {
        let k = e.key.as_str();
        if VE_KEYS.contains(&k) {
            vals.insert(k, (e.value.as_str(), e.line));
        } else if LATER_KEYS.contains(&k) {
            diags.push(Diag {
                severity: Severity::Warning,
                file: file.to_owned(),
                line: e.line,
                key: Some(k.to_owned()),
                message: "accepted but not implemented yet: it has no effect".into(),
            });
        } else {
            diags.push(err(
                e.line,
                k,
                format!(
                    "unknown parameter; a VE config takes {} (and the OpenVZ resource keys)",
                    VE_KEYS.join(", ")
                ),
            ));
        }
    }
    let get = |k: &str| -> Option<(&str, usize)> {
        vals.get(k)
            .copied()
            .or_else(|| global.get(k).map(|v| (v, 0)))
    };
    let mut errors = Vec::new();
    let flag = |k: &str, default: bool, errors: &mut Vec<Diag>| match get(k) {
        None => default,
        Some((v, line)) => yes_no(v).unwrap_or_else(|| {
            errors.push(err(
                line,
                k,
                format!("{v:?} is not allowed: use \"yes\" or \"no\""),
            ));
            default
        }),
    };
    let onboot = flag("ONBOOT", false, &mut errors);
    let disabled = flag("DISABLED", false, &mut errors);
    let number = |k: &str, default: u32, errors: &mut Vec<Diag>| match get(k) {
        None => default,
        Some((v, line)) => v.parse::<u32>().unwrap_or_else(|_| {
            errors.push(err(
                line,
                k,
                format!("{v:?} is not a number: use a whole number like 10"),
            ));
            default
        }),
    };
    let bootorder = number("BOOTORDER", 0, &mut errors);
    let stop_timeout = number("STOP_TIMEOUT", global.stop_timeout(), &mut errors);
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
                *line,
                "LOCAL_UID",
                format!("{v:?} is not a uid number"),
            ));
            0
        }),
        (None, Some(u)) => u,
        (None, None) => {
            errors.push(err(
                0,
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
                *line,
                "LOCAL_GID",
                format!("{v:?} is not a gid number"),
            ));
            0
        }),
        None => local_uid,
    };
    if local_uid != 0 && local_uid < ID_RANGE {
        errors.push(err(
            vals.get("LOCAL_UID").map_or(0, |v| v.1),
            "LOCAL_UID",
            format!("{local_uid} overlaps the appliance's own ids: use {ID_RANGE} or more"),
        ));
    }
    let name = get("NAME").map(|(v, line)| {
        if !valid_name(v) {
            errors.push(err(
                line,
                "NAME",
                format!("{v:?} is not allowed: letters, digits, '-', '_', '.', not only digits"),
            ));
        }
        v.to_owned()
    });
    let hostname = get("HOSTNAME").map(|(v, line)| {
        if !valid_hostname(v) {
            errors.push(err(
                line,
                "HOSTNAME",
                format!("{v:?} is not a hostname: letters, digits and '-' in dot-separated labels"),
            ));
        }
        v.to_owned()
    });
    let ostemplate =
        match get("OSTEMPLATE").or_else(|| global.get("DEF_OSTEMPLATE").map(|v| (v, 0))) {
            Some((v, line)) => {
                if !templates.iter().any(|t| t == v) {
                    errors.push(err(
                        line,
                        "OSTEMPLATE",
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
                    0,
                    "OSTEMPLATE",
                    "not set, and vz.conf has no DEF_OSTEMPLATE".into(),
                ));
                String::new()
            }
        };
    let path = |k: &str, default: &str| -> PathBuf {
        let v = get(k).map_or(default, |(v, _)| v);
        PathBuf::from(
            v.replace("$VEID", &veid.to_string())
                .replace("${VEID}", &veid.to_string()),
        )
    };
    let ve_root = path("VE_ROOT", "/vz/root/$VEID");
    let ve_private = path("VE_PRIVATE", "/vz/private/$VEID");
    for (k, p) in [("VE_ROOT", &ve_root), ("VE_PRIVATE", &ve_private)] {
        if !p.starts_with("/vz/") {
            errors.push(err(
                vals.get(k).map_or(0, |v| v.1),
                k,
                format!("{} must be under /vz (the VZDATA partition)", p.display()),
            ));
        }
    }
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
        local_uid,
        local_gid,
        origin_sample: get("ORIGIN_SAMPLE").map(|(v, _)| v.to_owned()),
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
        assert_eq!(d.len(), 26);
        assert!(d.iter().all(|d| d.severity == Severity::Warning));
        let vswap = "PHYSPAGES=\"0:256M\"\nSWAPPAGES=\"0:512M\"\nDISKSPACE=\"2G:2.2G\"\nDISKINODES=\"131072:144179\"\nQUOTATIME=\"0\"\nCPUUNITS=\"1000\"\nNETFILTER=\"stateless\"\n";
        let (cfg, d) = check(vswap);
        assert!(cfg.is_some());
        assert_eq!(d.len(), 7);
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_line_and_key() {
        let (cfg, d) = check("ONBOOT=\"yes\"\nFROBNICATE=\"1\"\n");
        assert!(cfg.is_none());
        let msg = d[0].to_string();
        assert!(
            msg.starts_with("/etc/vz/conf/101.conf:2: error: FROBNICATE: unknown parameter"),
            "{msg}"
        );
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
}
