//! OpenVZ's resource values: `N` or `barrier:limit`, with `unlimited` and
//! the size suffixes (`K M G T` binary units, `P` pages, `B` bytes), checked
//! the way vzctl checks them, and the limits of a VE as parsed from its
//! config (CPUUNITS, CPULIMIT, CPUS, NUMPROC, PHYSPAGES, SWAPPAGES).

/// Page size on x86_64 (what OpenVZ's `P` suffix and page counts mean).
pub const PAGE: u64 = 4096;

/// One side of a beancounter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

impl Limit {
    /// The value, or `None` for unlimited.
    pub fn get(self) -> Option<u64> {
        match self {
            Limit::Value(v) => Some(v),
            Limit::Unlimited => None,
        }
    }
}

/// `barrier:limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierLimit {
    pub barrier: Limit,
    pub limit: Limit,
}

/// What a parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Items (`num*`): no suffixes.
    Items,
    /// Pages (`*pages`): a plain number is pages; a size suffix is converted.
    Pages,
    /// Bytes (`kmemsize`, buffers): a plain number is bytes.
    Bytes,
}

/// OpenVZ writes `unlimited` as LONG_MAX; so do we, when rendering.
pub const UNLIMITED: u64 = i64::MAX as u64;

fn one(v: &str, unit: Unit) -> Result<Limit, String> {
    let v = v.trim();
    if v == "unlimited" {
        return Ok(Limit::Unlimited);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{v:?} is not a number"))?;
    if suffix.is_empty() {
        return Ok(if n >= UNLIMITED {
            Limit::Unlimited
        } else {
            Limit::Value(n)
        });
    }
    if unit == Unit::Items {
        return Err(format!(
            "{v:?}: a count takes no unit suffix (write a plain number or \"unlimited\")"
        ));
    }
    let bytes_per = match suffix {
        "K" | "k" => 1u64 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        "P" | "p" => PAGE,
        "B" | "b" => 1,
        _ => {
            return Err(format!(
                "{v:?}: unknown suffix {suffix:?} (use K, M, G, T, P for pages, B for bytes)"
            ))
        }
    };
    let bytes = n
        .checked_mul(bytes_per)
        .ok_or_else(|| format!("{v:?} is too large"))?;
    let value = match unit {
        Unit::Pages => bytes / PAGE,
        _ => bytes,
    };
    Ok(Limit::Value(value))
}

/// Parses `N`, `B:L`, `unlimited`, with suffixes as OpenVZ allows for
/// `unit`. The barrier may not be above the limit.
pub fn parse(v: &str, unit: Unit) -> Result<BarrierLimit, String> {
    let (b, l) = match v.split_once(':') {
        Some((b, l)) => (one(b, unit)?, one(l, unit)?),
        None => {
            let x = one(v, unit)?;
            (x, x)
        }
    };
    if b > l {
        return Err(format!("{v:?}: the barrier is above the limit"));
    }
    Ok(BarrierLimit {
        barrier: b,
        limit: l,
    })
}

/// A `barrier:limit` as written in a config (`unlimited` spelled out).
pub fn render(b: &BarrierLimit) -> String {
    let one = |l: Limit| match l {
        Limit::Value(v) => v.to_string(),
        Limit::Unlimited => "unlimited".to_owned(),
    };
    format!("{}:{}", one(b.barrier), one(b.limit))
}

/// CPUUNITS: 8..500000 (OpenVZ's range).
pub fn parse_cpuunits(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if (8..=500_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{v:?}: use a number from 8 to 500000 (default 1000)"
        )),
    }
}

/// CPULIMIT: percent of one CPU, `N` or `N%`; 0 = no limit.
pub fn parse_cpulimit(v: &str) -> Result<u32, String> {
    let t = v.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    match t.parse::<u32>() {
        Ok(n) if n <= 100_000 => Ok(n),
        _ => Err(format!(
            "{v:?}: use a percentage of one CPU, 0 (no limit) to 100000 (200 = two CPUs)"
        )),
    }
}

/// CPUS: how many CPUs' worth the VE may use; 0 = all.
pub fn parse_cpus(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n <= 4096 => Ok(n),
        _ => Err(format!("{v:?}: use a number of CPUs, 0 for all")),
    }
}

/// CPUMASK / NODEMASK: `all`, or a list of numbers and ranges (`0-2,7`),
/// kept as the sorted numbers (`None` = all). CPUMASK's `auto` (the CPUs of
/// NODEMASK's nodes) is all here: the appliance is one NUMA node.
pub fn parse_cpulist(v: &str) -> Result<Option<Vec<u32>>, String> {
    let t = v.trim();
    if t == "all" || t == "auto" {
        return Ok(None);
    }
    let bad = || format!("{v:?}: use \"all\" or numbers and ranges like 0-2,7");
    let mut out = std::collections::BTreeSet::new();
    for part in t.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(Some(out.into_iter().collect()))
}

/// The kernel's list form of `cpus` (`0-2,7`).
pub fn render_cpulist(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// IOPRIO: 0..7 (default 4).
pub fn parse_ioprio(v: &str) -> Result<u8, String> {
    match v.trim().parse::<u8>() {
        Ok(n) if n <= 7 => Ok(n),
        _ => Err(format!("{v:?}: use a priority from 0 to 7 (default 4)")),
    }
}

/// IOLIMIT: bytes per second; a plain number is MB/s (OpenVZ's default
/// unit), suffixes `B K M G`; 0 or `unlimited` = none; at most 2 GB/s.
pub fn parse_iolimit(v: &str) -> Result<u64, String> {
    let t = v.trim();
    if t == "unlimited" {
        return Ok(0);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let bad = || {
        format!("{v:?}: use N[B|K|M|G] per second (plain N is MB/s), 0 or unlimited for none, at most 2G")
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per = match suffix {
        "" | "M" | "m" => 1u64 << 20,
        "B" | "b" => 1,
        "K" | "k" => 1 << 10,
        "G" | "g" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(per).ok_or_else(bad)?;
    if bytes > 2 << 30 {
        return Err(bad());
    }
    Ok(bytes)
}

/// IOPSLIMIT: operations per second; 0 or `unlimited` = none.
pub fn parse_iopslimit(v: &str) -> Result<u64, String> {
    let t = v.trim();
    if t == "unlimited" {
        return Ok(0);
    }
    t.parse::<u64>()
        .map_err(|_| format!("{v:?}: use a number of operations per second, 0 for none"))
}

/// DISKSPACE (1 KiB blocks; suffixes `K M G T`, decimals allowed as in
/// OpenVZ's samples, `2G:2.2G`) or DISKINODES (`inodes`): `soft[:hard]`,
/// soft not above hard.
pub fn parse_disk(v: &str, blocks: bool) -> Result<BarrierLimit, String> {
    let what = if blocks {
        "sizes in KiB or with K, M, G, T (2G:2.2G)"
    } else {
        "inode counts (131072:144179)"
    };
    let one = |x: &str| -> Result<Limit, String> {
        let x = x.trim();
        if x == "unlimited" {
            return Ok(Limit::Unlimited);
        }
        let split = x
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(x.len());
        let (num, suffix) = x.split_at(split);
        let mult: f64 = match (blocks, suffix) {
            (_, "") => 1.0,
            (true, "K" | "k") => 1.0,
            (true, "M" | "m") => 1024.0,
            (true, "G" | "g") => 1024.0 * 1024.0,
            (true, "T" | "t") => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(format!("{v:?}: use {what}, or unlimited")),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{v:?}: use {what}, or unlimited"))?;
        let k = (n * mult).round();
        if !(0.0..9.0e18).contains(&k) {
            return Err(format!("{v:?} is too large"));
        }
        Ok(if k as u64 >= UNLIMITED {
            Limit::Unlimited
        } else {
            Limit::Value(k as u64)
        })
    };
    let (s, h) = match v.split_once(':') {
        Some((s, h)) => (one(s)?, one(h)?),
        None => {
            let x = one(v)?;
            (x, x)
        }
    };
    if s > h {
        return Err(format!("{v:?}: the soft limit is above the hard limit"));
    }
    Ok(BarrierLimit {
        barrier: s,
        limit: h,
    })
}

/// VM_OVERCOMMIT: a decimal factor, kept in thousandths (1.5 -> 1500).
pub fn parse_overcommit(v: &str) -> Result<u32, String> {
    match v.trim().parse::<f64>() {
        Ok(f) if (0.0..=1000.0).contains(&f) => Ok((f * 1000.0).round() as u32),
        _ => Err(format!("{v:?}: use a factor like 1.5 (0 = no limit)")),
    }
}

/// ZRAM_SWAP (vz.conf, ours): compressed swap in RAM for the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZramSwap {
    Off,
    /// Percent of the machine's RAM (1..=200: compressed, it may exceed it).
    Percent(u32),
    Bytes(u64),
}

impl ZramSwap {
    /// The swap device's (uncompressed) size on a machine with `ram` bytes.
    pub fn bytes(self, ram: u64) -> u64 {
        match self {
            ZramSwap::Off => 0,
            ZramSwap::Percent(p) => ram / 100 * u64::from(p),
            ZramSwap::Bytes(b) => b,
        }
    }
}

/// ZRAM_SWAP: `no`, `N%` of RAM, or a size `N[K|M|G]` (bytes without a suffix).
pub fn parse_zram_swap(v: &str) -> Result<ZramSwap, String> {
    let v = v.trim();
    let bad = || {
        format!("{v:?}: use \"no\", a share of RAM like \"50%\" (1-200%), or a size like \"512M\"")
    };
    if v == "no" || v == "0" {
        return Ok(ZramSwap::Off);
    }
    if let Some(p) = v.strip_suffix('%') {
        return match p.parse::<u32>() {
            Ok(n) if (1..=200).contains(&n) => Ok(ZramSwap::Percent(n)),
            _ => Err(bad()),
        };
    }
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(0) => Ok(ZramSwap::Off),
        Some(b) if b >= 1 << 20 => Ok(ZramSwap::Bytes(b)),
        _ => Err(bad()),
    }
}

/// Access a VE is granted to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    /// `q`: quota management (accepted, as OpenVZ; nothing uses it here).
    pub quota: bool,
}

impl Access {
    fn parse(v: &str, whole: &str) -> Result<Access, String> {
        if v == "none" {
            return Ok(Access::default());
        }
        let mut a = Access::default();
        for c in v.chars() {
            match c {
                'r' => a.read = true,
                'w' => a.write = true,
                'q' => a.quota = true,
                _ => {
                    return Err(format!(
                        "{whole:?}: access {v:?} is not r, w, q (or rw, rwq) or none"
                    ))
                }
            }
        }
        if v.is_empty() {
            return Err(format!("{whole:?}: give the access (r, w, rw or none)"));
        }
        Ok(a)
    }

    /// `rw`, `r`, `w`, or `none`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.read {
            s.push('r');
        }
        if self.write {
            s.push('w');
        }
        if self.quota {
            s.push('q');
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }

    pub fn any(&self) -> bool {
        self.read || self.write
    }
}

/// One DEVNODES entry: a node under the appliance's `/dev` (`net/tun`),
/// made in the VE's `/dev` and allowed by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    pub path: String,
    pub access: Access,
}

/// DEVNODES: space-separated `path:access` (`net/tun:rw fuse:rw`); a path
/// stays below `/dev` (no `..`, no leading `/`).
pub fn parse_devnodes(v: &str) -> Result<Vec<DevNode>, String> {
    let mut out: Vec<DevNode> = Vec::new();
    for item in v.split_whitespace() {
        let (path, access) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?}: write device:access, like net/tun:rw"))?;
        let path = path.strip_prefix("/dev/").unwrap_or(path);
        if path.is_empty()
            || path.starts_with('/')
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || !path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-.+".contains(c))
        {
            return Err(format!(
                "{item:?}: the device must be a name under /dev, like net/tun or fuse"
            ));
        }
        let access = Access::parse(access, item)?;
        out.retain(|d| d.path != path);
        out.push(DevNode {
            path: path.to_owned(),
            access,
        });
    }
    Ok(out)
}

/// One DEVICES entry: a device allowed by type and number (no node made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevRule {
    /// `b` or `c`.
    pub kind: char,
    pub major: u32,
    /// `None`: every minor (`all`).
    pub minor: Option<u32>,
    pub access: Access,
}

impl DevRule {
    /// As the config writes it: `c:10:200:rw`.
    pub fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.kind,
            self.major,
            self.minor.map_or("all".to_owned(), |m| m.to_string()),
            self.access.render()
        )
    }
}

/// DEVICES: space-separated `b|c:major:minor|all:access` (`c:10:200:rw`).
pub fn parse_devices(v: &str) -> Result<Vec<DevRule>, String> {
    let mut out: Vec<DevRule> = Vec::new();
    for item in v.split_whitespace() {
        let bad = || format!("{item:?}: write b|c:major:minor:access, like c:10:200:rw");
        let parts: Vec<&str> = item.split(':').collect();
        let [kind, major, minor, access] = parts[..] else {
            return Err(bad());
        };
        let kind = match kind {
            "b" => 'b',
            "c" => 'c',
            _ => return Err(bad()),
        };
        let major: u32 = major.parse().map_err(|_| bad())?;
        let minor = match minor {
            "all" | "*" => None,
            m => Some(m.parse::<u32>().map_err(|_| bad())?),
        };
        if major >= 1 << 12 || minor.is_some_and(|m| m >= 1 << 20) {
            return Err(bad());
        }
        let access = Access::parse(access, item)?;
        out.retain(|d| !(d.kind == kind && d.major == major && d.minor == minor));
        out.push(DevRule {
            kind,
            major,
            minor,
            access,
        });
    }
    Ok(out)
}

/// A VE's limits, as its config sets them (`None`: not set, no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpuunits: Option<u32>,
    pub cpulimit: Option<u32>,
    pub cpus: Option<u32>,
    /// CPUMASK, NODEMASK (`None`: all).
    pub cpumask: Option<Vec<u32>>,
    pub nodemask: Option<Vec<u32>>,
    /// Every beancounter, indexed as `proto::UBC_NAMES`.
    pub ubc: [Option<BarrierLimit>; proto::UBC_COUNT],
    /// VM_OVERCOMMIT in thousandths.
    pub vm_overcommit: Option<u32>,
    pub ioprio: Option<u8>,
    /// Bytes per second, operations per second (0: none).
    pub iolimit: Option<u64>,
    pub iopslimit: Option<u64>,
    /// KiB, soft:hard.
    pub diskspace: Option<BarrierLimit>,
    pub diskinodes: Option<BarrierLimit>,
    pub quotatime: Option<u32>,
    pub devnodes: Vec<DevNode>,
    pub devices: Vec<DevRule>,
}

impl Limits {
    /// Beancounter `name`'s value, if the config sets it.
    pub fn ubc(&self, name: &str) -> Option<BarrierLimit> {
        proto::ubc_index(name).and_then(|i| self.ubc[i])
    }
}

/// The unit a beancounter counts (OpenVZ's: `*pages` in pages, `num*` in
/// items, the rest in bytes).
pub fn ubc_unit(name: &str) -> Unit {
    if name.ends_with("pages") {
        Unit::Pages
    } else if name.starts_with("num") {
        Unit::Items
    } else {
        Unit::Bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_vzctl_takes_them() {
        let bl = |b, l| BarrierLimit {
            barrier: b,
            limit: l,
        };
        use Limit::{Unlimited as U, Value as V};
        assert_eq!(parse("240:240", Unit::Items), Ok(bl(V(240), V(240))));
        assert_eq!(parse("64", Unit::Items), Ok(bl(V(64), V(64))));
        assert_eq!(parse("0:unlimited", Unit::Pages), Ok(bl(V(0), U)));
        assert_eq!(parse("0:256M", Unit::Pages), Ok(bl(V(0), V(65536))));
        assert_eq!(parse("0:1G", Unit::Pages), Ok(bl(V(0), V(262_144))));
        assert_eq!(parse("100P", Unit::Bytes), Ok(bl(V(409_600), V(409_600))));
        assert_eq!(parse("9223372036854775807", Unit::Items), Ok(bl(U, U)));
        assert!(parse("10K", Unit::Items)
            .expect_err("refused")
            .contains("no unit suffix"));
        assert!(parse("5:4", Unit::Items)
            .expect_err("refused")
            .contains("barrier is above"));
        assert!(parse("12X", Unit::Pages)
            .expect_err("refused")
            .contains("suffix"));
        assert!(parse("lots", Unit::Pages).is_err());
        assert!(parse("99999999999999999999T", Unit::Pages).is_err());
        assert_eq!(render(&bl(V(0), U)), "0:unlimited");
    }

    #[test]
    fn cpu_values_have_openvz_ranges() {
        assert_eq!(parse_cpuunits("1000"), Ok(1000));
        assert!(parse_cpuunits("7").is_err() && parse_cpuunits("500001").is_err());
        assert_eq!(parse_cpulimit("25%"), Ok(25));
        assert_eq!(parse_cpulimit("0"), Ok(0));
        assert!(parse_cpulimit("-1").is_err());
        assert_eq!(parse_cpus("2"), Ok(2));
        assert!(parse_cpus("x").is_err());
        assert_eq!(parse_cpulist("all"), Ok(None));
        assert_eq!(parse_cpulist("0-2,7"), Ok(Some(vec![0, 1, 2, 7])));
        assert_eq!(render_cpulist(&[0, 1, 2, 7, 9, 10]), "0-2,7,9-10");
        assert!(parse_cpulist("3-1").is_err() && parse_cpulist("x").is_err());
    }

    #[test]
    fn io_and_disk_values() {
        assert_eq!(parse_ioprio("7"), Ok(7));
        assert!(parse_ioprio("8").is_err());
        assert_eq!(parse_iolimit("10"), Ok(10 << 20));
        assert_eq!(parse_iolimit("512K"), Ok(512 << 10));
        assert_eq!(parse_iolimit("unlimited"), Ok(0));
        assert!(parse_iolimit("3G").is_err());
        assert_eq!(parse_iopslimit("300"), Ok(300));
        let bl = |b, l| BarrierLimit {
            barrier: Limit::Value(b),
            limit: Limit::Value(l),
        };
        assert_eq!(parse_disk("2G:2.2G", true), Ok(bl(2 << 20, 2_306_867)));
        assert_eq!(parse_disk("1048576", true), Ok(bl(1 << 20, 1 << 20)));
        assert_eq!(parse_disk("131072:144179", false), Ok(bl(131_072, 144_179)));
        assert!(parse_disk("2G:1G", true)
            .expect_err("refused")
            .contains("soft limit is above"));
        assert!(parse_disk("10M", false).is_err());
        assert_eq!(parse_overcommit("1.5"), Ok(1500));
    }

    #[test]
    fn devices_parse_as_openvz_writes_them() {
        let d = parse_devnodes("net/tun:rw fuse:r /dev/kvm:none").expect("parses");
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].path, "net/tun");
        assert!(d[0].access.read && d[0].access.write);
        assert_eq!(d[2].path, "kvm");
        assert!(!d[2].access.any());
        for bad in ["../sda:rw", "net//tun:rw", "tun", "tun:x", "/etc/passwd:r"] {
            assert!(parse_devnodes(bad).is_err(), "{bad}");
        }
        let r = parse_devices("c:10:200:rw b:8:all:r").expect("parses");
        assert_eq!(r[0].render(), "c:10:200:rw");
        assert_eq!(r[1].minor, None);
        assert_eq!(r[1].render(), "b:8:all:r");
        for bad in ["x:1:2:rw", "c:10:rw", "c:a:1:r", "c:10:200:z"] {
            assert!(parse_devices(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zram_swap_sizes() {
        assert_eq!(parse_zram_swap("no"), Ok(ZramSwap::Off));
        assert_eq!(parse_zram_swap("50%"), Ok(ZramSwap::Percent(50)));
        assert_eq!(parse_zram_swap("512M"), Ok(ZramSwap::Bytes(512 << 20)));
        assert_eq!(parse_zram_swap("1g"), Ok(ZramSwap::Bytes(1 << 30)));
        assert_eq!(ZramSwap::Percent(50).bytes(1000 << 20), 500 << 20);
        for bad in ["0%", "300%", "12x", "-1", "100", "M"] {
            let e = parse_zram_swap(bad).expect_err(bad);
            assert!(e.contains("50%"), "{e}");
        }
    }
}
