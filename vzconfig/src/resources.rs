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

/// A VE's limits, as its config sets them (`None`: not set, no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpuunits: Option<u32>,
    pub cpulimit: Option<u32>,
    pub cpus: Option<u32>,
    pub numproc: Option<BarrierLimit>,
    pub physpages: Option<BarrierLimit>,
    pub swappages: Option<BarrierLimit>,
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
    }
}
