//! `vzlist`: OpenVZ's listing, its columns, widths and JSON shape.

use proto::VeInfo;
use std::fmt::Write as _;

/// A field: name, header, width (negative = left-aligned), and how to show it.
#[derive(Debug)]
struct Field {
    name: &'static str,
    aliases: &'static [&'static str],
    header: &'static str,
    width: i32,
}

const FIELDS: &[Field] = &[
    Field {
        name: "ctid",
        aliases: &["veid", "vpsid"],
        header: "CTID",
        width: 10,
    },
    Field {
        name: "numproc",
        aliases: &[],
        header: "NPROC",
        width: 10,
    },
    Field {
        name: "status",
        aliases: &[],
        header: "STATUS",
        width: -9,
    },
    Field {
        name: "ip",
        aliases: &[],
        header: "IP_ADDR",
        width: -15,
    },
    Field {
        name: "hostname",
        aliases: &[],
        header: "HOSTNAME",
        width: -32,
    },
    Field {
        name: "name",
        aliases: &[],
        header: "NAME",
        width: -32,
    },
    Field {
        name: "description",
        aliases: &[],
        header: "DESCRIPTION",
        width: -32,
    },
    // Ours: appliance ports forwarded to the VE.
    Field {
        name: "portfwd",
        aliases: &[],
        header: "PORTFWD",
        width: -24,
    },
    Field {
        name: "ostemplate",
        aliases: &[],
        header: "OSTEMPLATE",
        width: -24,
    },
    Field {
        name: "onboot",
        aliases: &[],
        header: "ONBOOT",
        width: -6,
    },
    Field {
        name: "bootorder",
        aliases: &[],
        header: "BOOTORDER",
        width: 10,
    },
    Field {
        name: "disabled",
        aliases: &[],
        header: "DISABL",
        width: -6,
    },
    Field {
        name: "uptime",
        aliases: &[],
        header: "UPTIME",
        width: 15,
    },
    Field {
        name: "private",
        aliases: &[],
        header: "PRIVATE",
        width: -32,
    },
    Field {
        name: "root",
        aliases: &[],
        header: "ROOT",
        width: -32,
    },
    Field {
        name: "error",
        aliases: &[],
        header: "ERROR",
        width: -40,
    },
    Field {
        name: "kmemsize",
        aliases: &[],
        header: "KMEMSIZE",
        width: 10,
    },
    Field {
        name: "lockedpages",
        aliases: &[],
        header: "LOCKEDP",
        width: 10,
    },
    Field {
        name: "privvmpages",
        aliases: &[],
        header: "PRIVVMP",
        width: 10,
    },
    Field {
        name: "shmpages",
        aliases: &[],
        header: "SHMP",
        width: 10,
    },
    Field {
        name: "physpages",
        aliases: &[],
        header: "PHYSP",
        width: 10,
    },
    Field {
        name: "vmguarpages",
        aliases: &[],
        header: "VMGUARP",
        width: 10,
    },
    Field {
        name: "oomguarpages",
        aliases: &[],
        header: "OOMGUARP",
        width: 10,
    },
    Field {
        name: "numtcpsock",
        aliases: &[],
        header: "NTCPSOCK",
        width: 10,
    },
    Field {
        name: "numflock",
        aliases: &[],
        header: "NFLOCK",
        width: 10,
    },
    Field {
        name: "numpty",
        aliases: &[],
        header: "NPTY",
        width: 10,
    },
    Field {
        name: "numsiginfo",
        aliases: &[],
        header: "NSIGINFO",
        width: 10,
    },
    Field {
        name: "tcpsndbuf",
        aliases: &[],
        header: "TCPSNDB",
        width: 10,
    },
    Field {
        name: "tcprcvbuf",
        aliases: &[],
        header: "TCPRCVB",
        width: 10,
    },
    Field {
        name: "othersockbuf",
        aliases: &[],
        header: "OTHSOCKB",
        width: 10,
    },
    Field {
        name: "dgramrcvbuf",
        aliases: &[],
        header: "DGRAMRB",
        width: 10,
    },
    Field {
        name: "numothersock",
        aliases: &[],
        header: "NOTHSOCK",
        width: 10,
    },
    Field {
        name: "dcachesize",
        aliases: &[],
        header: "DCACHESZ",
        width: 10,
    },
    Field {
        name: "numfile",
        aliases: &[],
        header: "NFILE",
        width: 10,
    },
    Field {
        name: "numiptent",
        aliases: &[],
        header: "NIPTENT",
        width: 10,
    },
    Field {
        name: "swappages",
        aliases: &[],
        header: "SWAPP",
        width: 10,
    },
    Field {
        name: "diskspace",
        aliases: &[],
        header: "DSPACE",
        width: 10,
    },
    Field {
        name: "diskinodes",
        aliases: &[],
        header: "DINODES",
        width: 10,
    },
    Field {
        name: "laverage",
        aliases: &[],
        header: "LAVERAGE",
        width: -14,
    },
    Field {
        name: "cpulimit",
        aliases: &[],
        header: "CPULIM",
        width: 7,
    },
    Field {
        name: "cpuunits",
        aliases: &[],
        header: "CPUUNI",
        width: 7,
    },
    Field {
        name: "cpus",
        aliases: &[],
        header: "CPUS",
        width: 5,
    },
    Field {
        name: "cpumask",
        aliases: &[],
        header: "CPUMASK",
        width: -10,
    },
    Field {
        name: "nodemask",
        aliases: &[],
        header: "NODEMASK",
        width: -10,
    },
    Field {
        name: "ioprio",
        aliases: &[],
        header: "IOP",
        width: 3,
    },
    Field {
        name: "iolimit",
        aliases: &[],
        header: "IOLIMIT",
        width: 10,
    },
    Field {
        name: "iopslimit",
        aliases: &[],
        header: "IOPS",
        width: 10,
    },
    Field {
        name: "vm_overcommit",
        aliases: &[],
        header: "VM_OVC",
        width: 6,
    },
    Field {
        name: "devnodes",
        aliases: &[],
        header: "DEVNODES",
        width: -24,
    },
    Field {
        name: "devices",
        aliases: &[],
        header: "DEVICES",
        width: -24,
    },
];

const DEFAULT: &[&str] = &["ctid", "numproc", "status", "ip", "hostname"];

fn base_field(name: &str) -> Option<&'static Field> {
    FIELDS
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name))
}

/// A column: a field, with a suffix for beancounters (`.m` maxheld, `.b`
/// barrier, `.l` limit, `.f` failcnt) and quotas (`.s` soft, `.h` hard).
#[derive(Debug, Clone)]
struct Col {
    f: &'static Field,
    suffix: Option<char>,
    header: String,
}

fn is_ubc(name: &str) -> bool {
    proto::ubc_index(name).is_some()
}

fn field(spec: &str) -> Option<Col> {
    let (name, suffix) = match spec.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (spec, None),
    };
    let f = base_field(name)?;
    let suffix = match suffix {
        None => None,
        Some(s) => {
            let c = s.chars().next().filter(|_| s.len() == 1)?;
            let ok = if is_ubc(f.name) {
                "mblf".contains(c)
            } else if f.name == "diskspace" || f.name == "diskinodes" {
                "sh".contains(c)
            } else {
                false
            };
            if !ok {
                return None;
            }
            Some(c)
        }
    };
    let header = match suffix {
        Some(c) => format!("{}.{}", f.header, c.to_ascii_uppercase()),
        None => f.header.to_owned(),
    };
    Some(Col { f, suffix, header })
}

/// A VE as vzlist shows it: its state, and its resources when a column
/// needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub info: VeInfo,
    pub res: Option<proto::Resources>,
}

impl From<VeInfo> for Row {
    fn from(info: VeInfo) -> Row {
        Row { info, res: None }
    }
}

/// Fields that are not in `VeInfo`.
const RESOURCE_FIELDS: &[&str] = &[
    "diskspace",
    "diskinodes",
    "laverage",
    "cpulimit",
    "cpuunits",
    "cpus",
    "cpumask",
    "nodemask",
    "ioprio",
    "iolimit",
    "iopslimit",
    "vm_overcommit",
    "devnodes",
    "devices",
];

/// Whether the output needs each VE's resources (one more request per VE).
pub fn needs_resources(o: &Opts) -> bool {
    let needs = |n: &str| {
        let base = n.split('.').next().unwrap_or(n);
        let base = base_field(base).map_or(base, |f| f.name);
        (is_ubc(base) && base != "numproc") || n.contains('.') || RESOURCE_FIELDS.contains(&base)
    };
    match &o.fields {
        Some(f) => f.iter().any(|n| needs(n)) || o.sort.as_ref().is_some_and(|s| needs(&s.0)),
        None => o.json,
    }
}

fn ubc_row(r: &Row, name: &str) -> Option<proto::UbcRow> {
    let i = proto::ubc_index(name)?;
    r.res.as_ref().and_then(|x| x.ubc.get(i).copied())
}

fn running(r: &Row) -> bool {
    r.info.status.as_str() == "running"
}

fn laverage(l: [u32; 3]) -> String {
    let f = |v: u32| format!("{}.{:02}", v / 100, v % 100);
    format!("{}/{}/{}", f(l[0]), f(l[1]), f(l[2]))
}

fn limit_text(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        v.to_string()
    }
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn yes_no(b: Option<bool>) -> String {
    match b {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

fn value(c: &Col, r: &Row) -> String {
    let v = &r.info;
    let name = c.f.name;
    if is_ubc(name) {
        let live = running(r);
        // numproc without a suffix needs no resources request.
        if name == "numproc" && c.suffix.is_none() && r.res.is_none() {
            return v.numproc.map_or("-".into(), |n| n.to_string());
        }
        let Some(u) = ubc_row(r, name) else {
            return "-".into();
        };
        return match c.suffix {
            None if live => u.held.to_string(),
            Some('m') if live => u.maxheld.to_string(),
            Some('f') if live => u.failcnt.to_string(),
            Some('b') => u.barrier.to_string(),
            Some('l') => u.limit.to_string(),
            _ => "-".into(),
        };
    }
    if let Some(res) = &r.res {
        let q = |q: proto::Quota| match c.suffix {
            Some('s') => q.soft.to_string(),
            Some('h') => q.hard.to_string(),
            _ => q.usage.to_string(),
        };
        match name {
            "diskspace" => return q(res.diskspace),
            "diskinodes" => return q(res.diskinodes),
            "laverage" => {
                return if running(r) {
                    laverage(res.laverage)
                } else {
                    "-".into()
                }
            }
            "cpulimit" => return res.cpulimit.to_string(),
            "cpuunits" => return res.cpuunits.to_string(),
            "cpus" => return res.cpus.to_string(),
            "cpumask" => return res.cpumask.to_string(),
            "nodemask" => return res.nodemask.to_string(),
            "ioprio" => return res.ioprio.to_string(),
            "iolimit" => return limit_text(res.iolimit),
            "iopslimit" => return limit_text(res.iopslimit),
            "vm_overcommit" => {
                return format!(
                    "{}.{:03}",
                    res.vm_overcommit / 1000,
                    res.vm_overcommit % 1000
                )
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
            }
            "devnodes" => return dash(&res.devnodes),
            "devices" => return dash(&res.devices),
            _ => {}
        }
    }
    match name {
        "ctid" => v.veid.to_string(),
        "numproc" => v.numproc.map_or("-".into(), |n| n.to_string()),
        "status" => v.status.to_string(),
        "ip" => dash(&v.ip),
        // An invalid VE shows why where its hostname would be.
        "hostname" if !v.error.is_empty() => format!("(invalid config: {})", v.error),
        "hostname" => dash(&v.hostname),
        "name" => dash(&v.name),
        "description" => dash(&v.description),
        "portfwd" => dash(&v.portfwd),
        "ostemplate" => dash(&v.ostemplate),
        "onboot" => yes_no(v.onboot),
        "bootorder" => v.bootorder.to_string(),
        "disabled" => yes_no(Some(v.disabled)),
        "uptime" => {
            if v.status.as_str() == "running" {
                format_uptime(v.uptime_s)
            } else {
                "-".into()
            }
        }
        "private" => dash(&v.private),
        "root" => dash(&v.root),
        "error" => dash(&v.error),
        _ => "-".into(),
    }
}

fn format_uptime(s: u64) -> String {
    let (d, h, m) = (s / 86400, (s / 3600) % 24, (s / 60) % 60);
    if d > 0 {
        format!("{d}d{h:02}h:{m:02}m:{:02}s", s % 60)
    } else {
        format!("{h:02}:{m:02}:{:02}", s % 60)
    }
}

/// Parsed options.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opts {
    pub all: bool,
    pub stopped: bool,
    pub no_header: bool,
    pub json: bool,
    pub list_fields: bool,
    pub fields: Option<Vec<String>>,
    pub sort: Option<(String, bool)>,
    pub ids: Vec<String>,
}

pub const USAGE: &str = "\
Usage: vzlist [-a|-S] [-H] [-o field[,field...]] [-s [-]field] [-1] [-j] [VEID|name ...]
       vzlist -L
  -a, --all        list all VEs (default: running ones)
  -S, --stopped    list VEs that are not running
  -H, --no-header  no header line
  -o, --output     fields to show (see -L)
  -s, --sort       sort by a field, '-' reverses
  -1               VEIDs only (= -H -octid)
  -j, --json       JSON output
  -L, --list       list the field names";

/// Parses the command line.
pub fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "-a" | "--all" => o.all = true,
            "-S" | "--stopped" => o.stopped = true,
            "-H" | "--no-header" => o.no_header = true,
            "-j" | "--json" => o.json = true,
            "-L" | "--list" => o.list_fields = true,
            "-1" => {
                o.no_header = true;
                o.fields = Some(vec!["ctid".into()]);
            }
            "-o" | "--output" => {
                let v = val(a)?;
                o.fields = Some(v.split(',').map(str::to_owned).collect());
            }
            "-s" | "--sort" => {
                let v = val(a)?;
                o.sort = Some(match v.strip_prefix('-') {
                    Some(f) => (f.to_owned(), true),
                    None => (v, false),
                });
            }
            s if s.starts_with("-o") && s.len() > 2 => {
                o.fields = Some(s[2..].split(',').map(str::to_owned).collect());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.ids.push(s.to_owned()),
        }
    }
    for f in o
        .fields
        .iter()
        .flatten()
        .chain(o.sort.as_ref().map(|s| &s.0))
    {
        if field(f).is_none() {
            return Err(format!("unknown field {f:?}: `vzlist -L` lists them"));
        }
    }
    if o.json
        && o.fields
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x.contains('.')))
    {
        return Err("field suffixes are not allowed with -j".into());
    }
    Ok(o)
}

/// Filters and sorts per the options. Returns the rows and whether none matched.
pub fn select(o: &Opts, ves: Vec<VeInfo>) -> Vec<VeInfo> {
    ves.into_iter()
        .filter(|v| {
            if !o.ids.is_empty() {
                return o
                    .ids
                    .iter()
                    .any(|id| *id == v.veid.to_string() || *id == v.name.as_str());
            }
            let running = v.status.as_str() == "running";
            if o.stopped {
                !running
            } else {
                o.all || running
            }
        })
        .collect()
}

/// Sorts rows per `-s`.
pub fn sort(o: &Opts, mut rows: Vec<Row>) -> Vec<Row> {
    if let Some((name, rev)) = &o.sort {
        if let Some(f) = field(name) {
            rows.sort_by(|a, b| {
                let (x, y) = (value(&f, a), value(&f, b));
                match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(p), Ok(q)) => p.cmp(&q),
                    _ => x.cmp(&y),
                }
            });
            if *rev {
                rows.reverse();
            }
        }
    }
    rows
}

/// The table, in OpenVZ's layout (last column not padded).
pub fn table(o: &Opts, rows: &[Row]) -> String {
    let names: Vec<String> = o
        .fields
        .clone()
        .unwrap_or_else(|| DEFAULT.iter().map(|s| s.to_string()).collect());
    let fields: Vec<Col> = names.iter().filter_map(|n| field(n)).collect();
    let mut out = String::new();
    let line = |cells: Vec<String>| -> String {
        let mut l = String::new();
        for (i, (c0, c)) in fields.iter().zip(cells).enumerate() {
            let f = c0.f;
            if i > 0 {
                l.push(' ');
            }
            let last = i + 1 == fields.len();
            // OpenVZ shows a VE's first address unless the column is last.
            let c = if f.name == "ip" && !last {
                c.split(' ').next().unwrap_or("").to_owned()
            } else {
                c
            };
            let w = f.width.unsigned_abs() as usize;
            if f.width > 0 {
                let _ = write!(l, "{c:>w$}");
            } else if last {
                l.push_str(&c);
            } else {
                let _ = write!(l, "{c:<w$}");
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    if !o.no_header {
        out.push_str(&line(fields.iter().map(|f| f.header.clone()).collect()));
    }
    for v in rows {
        out.push_str(&line(fields.iter().map(|f| value(f, v)).collect()));
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON string, or `null` for an empty one.
fn s_or_null(s: &str) -> String {
    if s.is_empty() {
        "null".to_owned()
    } else {
        json_str(s)
    }
}

fn json_value(f: &Field, r: &Row) -> String {
    let v = &r.info;
    let live = running(r);
    if is_ubc(f.name) {
        let u = ubc_row(r, f.name).unwrap_or(proto::UbcRow {
            held: u64::from(v.numproc.unwrap_or(0)) * u64::from(f.name == "numproc"),
            barrier: proto::Ubc::UNLIMITED,
            limit: proto::Ubc::UNLIMITED,
            ..proto::UbcRow::default()
        });
        let z = |x: u64| if live { x } else { 0 };
        let maxheld = if r.res.is_some() { u.maxheld } else { u.held };
        return format!(
            "{{\"held\": {}, \"maxheld\": {}, \"barrier\": {}, \"limit\": {}, \"failcnt\": {}}}",
            z(u.held),
            z(maxheld),
            u.barrier,
            u.limit,
            z(u.failcnt)
        );
    }
    if let Some(res) = &r.res {
        let q = |q: proto::Quota| {
            format!(
                "{{\"usage\": {}, \"softlimit\": {}, \"hardlimit\": {}}}",
                q.usage, q.soft, q.hard
            )
        };
        match f.name {
            "diskspace" => return q(res.diskspace),
            "diskinodes" => return q(res.diskinodes),
            "laverage" => {
                let l = res.laverage.map(|x| format!("{}.{:02}", x / 100, x % 100));
                return format!("[{}, {}, {}]", l[0], l[1], l[2]);
            }
            "cpulimit" => return res.cpulimit.to_string(),
            "cpuunits" => return res.cpuunits.to_string(),
            "cpus" => return res.cpus.to_string(),
            "cpumask" => return json_str(&res.cpumask),
            "nodemask" => return json_str(&res.nodemask),
            "ioprio" => return res.ioprio.to_string(),
            "iolimit" => return res.iolimit.to_string(),
            "iopslimit" => return res.iopslimit.to_string(),
            "vm_overcommit" => return format!("{:.3}", f64::from(res.vm_overcommit) / 1000.0),
            "devnodes" => return s_or_null(&res.devnodes),
            "devices" => return s_or_null(&res.devices),
            _ => {}
        }
    }
    match f.name {
        "ctid" => v.veid.to_string(),
        "status" => json_str(&v.status),
        "ip" => format!(
            "[{}]",
            v.ip.split_whitespace()
                .map(json_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "hostname" => s_or_null(&v.hostname),
        "name" => s_or_null(&v.name),
        "description" => s_or_null(&v.description),
        "portfwd" => format!(
            "[{}]",
            v.portfwd
                .split_whitespace()
                .map(json_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "ostemplate" => s_or_null(&v.ostemplate),
        "onboot" => v.onboot.map_or("null".into(), |b| b.to_string()),
        "bootorder" => v.bootorder.to_string(),
        "disabled" => v.disabled.to_string(),
        "uptime" => format!("{:.3}", v.uptime_s as f64),
        "private" => s_or_null(&v.private),
        "root" => s_or_null(&v.root),
        "error" => s_or_null(&v.error),
        _ => "null".into(),
    }
}

/// JSON in OpenVZ's shape: an array of objects; without -o, every field.
pub fn json(o: &Opts, rows: &[Row]) -> String {
    let names: Vec<&str> = match &o.fields {
        Some(f) => f.iter().map(String::as_str).collect(),
        None => FIELDS.iter().map(|f| f.name).collect(),
    };
    let fields: Vec<&Field> = names.iter().filter_map(|n| base_field(n)).collect();
    let mut out = String::from("[");
    for (i, v) in rows.iter().enumerate() {
        out.push_str(if i == 0 { "\n  {\n" } else { ",\n  {\n" });
        for (j, f) in fields.iter().enumerate() {
            let _ = write!(out, "    \"{}\": {}", f.name, json_value(f, v));
            out.push_str(if j + 1 < fields.len() { ",\n" } else { "\n" });
        }
        out.push_str("  }");
    }
    out.push_str(if rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}

/// `vzlist -L`.
pub fn field_list() -> String {
    FIELDS
        .iter()
        .map(|f| format!("{:<12} {}\n", f.name, f.header))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ve(veid: u32, status: &str, np: Option<u32>, host: &str) -> VeInfo {
        VeInfo {
            veid,
            exists: true,
            status: status.try_into().expect("fits"),
            mounted: false,
            name: Default::default(),
            hostname: host.try_into().expect("fits"),
            description: Default::default(),
            ostemplate: "busybox".try_into().expect("fits"),
            onboot: Some(true),
            bootorder: 0,
            disabled: false,
            numproc: np,
            init_pid: 0,
            init_start: 0,
            uptime_s: 0,
            error: Default::default(),
            private: Default::default(),
            root: Default::default(),
            ip: Default::default(),
            portfwd: Default::default(),
            checkpoint: false,
        }
    }

    fn rows_of(v: Vec<VeInfo>) -> Vec<Row> {
        v.into_iter().map(Row::from).collect()
    }

    fn res(veid: u32) -> proto::Resources {
        let mut ubc = [proto::UbcRow {
            barrier: proto::Ubc::UNLIMITED,
            limit: proto::Ubc::UNLIMITED,
            ..Default::default()
        }; proto::UBC_COUNT];
        ubc[5] = proto::UbcRow {
            held: 7,
            maxheld: 9,
            barrier: 40,
            limit: 50,
            failcnt: 3,
        };
        proto::Resources {
            veid,
            exists: true,
            running: true,
            ubc: ubc.into_iter().collect(),
            diskspace: proto::Quota {
                usage: 1024,
                soft: 2048,
                hard: 4096,
            },
            diskinodes: Default::default(),
            cpuunits: 1000,
            cpulimit: 25,
            cpus: 1,
            cpumask: "all".try_into().expect("fits"),
            nodemask: "all".try_into().expect("fits"),
            ioprio: 4,
            iolimit: 0,
            iopslimit: 0,
            laverage: [5, 101, 0],
            vm_overcommit: 1500,
            devnodes: "net/tun:rw".try_into().expect("fits"),
            devices: Default::default(),
        }
    }

    #[test]
    fn beancounter_columns_and_suffixes() {
        let o = opts(&[
            "-a",
            "-o",
            "ctid,numproc,numproc.m,numproc.b,numproc.l,numproc.f,diskspace.s,laverage",
        ]);
        assert!(needs_resources(&o));
        assert!(!needs_resources(&opts(&["-o", "ctid,numproc"])));
        let run = Row {
            info: ve(101, "running", Some(7), "h"),
            res: Some(res(101)),
        };
        let stopped = Row {
            info: ve(102, "stopped", None, "h"),
            res: Some(res(102)),
        };
        let t = table(&o, &[run.clone(), stopped.clone()]);
        assert_eq!(
            t,
            "      CTID      NPROC    NPROC.M    NPROC.B    NPROC.L    NPROC.F   DSPACE.S LAVERAGE\n       101          7          9         40         50          3       2048 0.05/1.01/0.00\n       102          -          -         40         50          -       2048 -\n"
        );
        let j = json(
            &opts(&["-j", "-o", "numproc,diskspace,laverage"]),
            &[run, stopped],
        );
        assert!(j.contains("\"numproc\": {\"held\": 7, \"maxheld\": 9, \"barrier\": 40, \"limit\": 50, \"failcnt\": 3}"), "{j}");
        assert!(j.contains("\"numproc\": {\"held\": 0, \"maxheld\": 0, \"barrier\": 40, \"limit\": 50, \"failcnt\": 0}"), "{j}");
        assert!(
            j.contains(
                "\"diskspace\": {\"usage\": 1024, \"softlimit\": 2048, \"hardlimit\": 4096}"
            ),
            "{j}"
        );
        assert!(j.contains("\"laverage\": [0.05, 1.01, 0.00]"), "{j}");
        assert!(parse(&["-o".into(), "numproc.x".into()]).is_err());
        assert!(parse(&["-o".into(), "hostname.m".into()]).is_err());
    }

    fn opts(a: &[&str]) -> Opts {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("parse")
    }

    #[test]
    fn default_table_matches_openvz_layout() {
        let rows = vec![
            ve(101, "running", Some(18), "ct101.example.com"),
            ve(102, "stopped", None, "ct102.example.com"),
        ];
        let o = opts(&["-a"]);
        let t = table(&o, &rows_of(select(&o, rows)));
        assert_eq!(
            t,
            "      CTID      NPROC STATUS    IP_ADDR         HOSTNAME\n       101         18 running   -               ct101.example.com\n       102          - stopped   -               ct102.example.com\n"
        );
    }

    #[test]
    fn running_only_by_default_and_stopped_with_s() {
        let rows = || {
            vec![
                ve(101, "running", Some(3), "a"),
                ve(102, "stopped", None, "b"),
                ve(103, "invalid", None, ""),
            ]
        };
        let ids = |o: &Opts| {
            sort(o, rows_of(select(o, rows())))
                .iter()
                .map(|v| v.info.veid)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&opts(&[])), vec![101]);
        assert_eq!(ids(&opts(&["-S"])), vec![102, 103]);
        assert_eq!(ids(&opts(&["-a", "-s", "-ctid"])), vec![103, 102, 101]);
        assert_eq!(
            table(
                &opts(&["-1", "-a"]),
                &rows_of(select(&opts(&["-a"]), rows()))
            ),
            "       101\n       102\n       103\n"
        );
    }

    #[test]
    fn json_has_openvz_shape() {
        let o = opts(&["-j", "-o", "ctid,status,numproc,onboot,ip"]);
        let j = json(&o, &rows_of(vec![ve(101, "running", Some(18), "h")]));
        assert_eq!(
            j,
            "[\n  {\n    \"ctid\": 101,\n    \"status\": \"running\",\n    \"numproc\": {\"held\": 18, \"maxheld\": 18, \"barrier\": 9223372036854775807, \"limit\": 9223372036854775807, \"failcnt\": 0},\n    \"onboot\": true,\n    \"ip\": []\n  }\n]\n"
        );
        assert_eq!(json(&o, &[]), "[]\n");
    }

    #[test]
    fn invalid_ves_show_why() {
        let mut v = ve(103, "invalid", None, "");
        v.error = "103.conf:2: error: FROB: unknown parameter"
            .try_into()
            .expect("fits");
        let t = table(&opts(&["-a", "-H"]), &rows_of(vec![v]));
        assert_eq!(t, "       103          - invalid   -               (invalid config: 103.conf:2: error: FROB: unknown parameter)\n");
    }

    #[test]
    fn bad_field_and_option() {
        assert!(parse(&["-o".into(), "nope".into()]).is_err());
        assert!(parse(&["--frob".into()]).is_err());
        assert!(parse(&["-o".into()]).is_err());
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A VeInfo for tests.
    pub fn info(veid: u32, status: &str) -> proto::VeInfo {
        proto::VeInfo {
            veid,
            exists: true,
            status: status.try_into().expect("fits"),
            mounted: false,
            name: Default::default(),
            hostname: Default::default(),
            description: Default::default(),
            ostemplate: Default::default(),
            onboot: None,
            bootorder: 0,
            disabled: false,
            numproc: None,
            init_pid: 0,
            init_start: 0,
            uptime_s: 0,
            error: Default::default(),
            private: Default::default(),
            root: Default::default(),
            ip: Default::default(),
            portfwd: Default::default(),
            checkpoint: false,
        }
    }
}
