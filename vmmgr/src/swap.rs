//! `ZRAM_SWAP` (vz.conf, ours): compressed swap in the appliance's own RAM.
//!
//! An idle VE's daemons keep memory they rarely touch (configuration parsed
//! at start, library data, heap arenas); in a zram device it takes a third
//! or less of the space, so more VEs fit in the same RAM, and a page comes
//! back in microseconds when touched. Set up once per boot, before the
//! ONBOOT VEs start; a changed value applies at the next boot.

use vzconfig::resources::ZramSwap;

const DEVICE: &str = "/dev/zram0";
const SYS: &str = "/sys/block/zram0";
/// zstd: on web VEs' idle pages it packed 4.8 times against lzo-rle's 3.7
/// (the kernel's default), so the same RAM holds 30 % more of them; its
/// extra CPU goes to pages that are rarely touched (docs/benchmarks.md).
/// A kernel without it keeps its default.
const ALGORITHM: &str = "zstd";
/// Anonymous memory goes to zram as readily as page cache is dropped: the
/// page cache holds the templates' binaries, shared by every VE.
const SWAPPINESS: &str = "100";

/// The multi-generational LRU (`CONFIG_LRU_GEN`, built into the appliance's
/// kernel but off by default): it finds the pages to reclaim by walking
/// page tables for the accessed bit instead of the reverse map page by
/// page, and sorts pages into generations by when they were last used,
/// which suits many small idle processes swapping to zram (with the
/// two-list LRU, 200 web VEs thrashed in direct reclaim).
const LRU_GEN: &str = "/sys/kernel/mm/lru_gen/enabled";

/// Turns on the multi-generational LRU with all its parts ("y": the
/// generations, the page-table walk, the non-leaf accessed bits); returns
/// what the kernel then reports. A kernel without it keeps its LRU.
pub fn lru_gen() -> Result<String, String> {
    lru_gen_at(std::path::Path::new(LRU_GEN))
}

/// The free memory the kernel keeps for itself, `vm.min_free_kbytes`.
const MIN_FREE: &str = "/proc/sys/vm/min_free_kbytes";

/// The kernel's own floor for `mem_total_kib` of RAM, by its boot-time
/// formula: 4 × √(KiB), within 128 KiB and 256 MiB (3.5 MiB for 768 MiB).
fn kernel_floor_kib(mem_total_kib: u64) -> u64 {
    (16 * mem_total_kib).isqrt().clamp(128, 262_144)
}

/// Puts the free-memory floor back to the kernel's own figure when
/// something raised it. With transparent huge pages on, even `madvise`,
/// khugepaged raises it so that 2 MiB pages can always be formed: 44 MiB
/// of a 1 GiB appliance (35 MiB of 768), and reclaim keeps the zone's
/// high watermark, half as much again, free while VEs' pages go to swap.
/// Nothing the appliance runs asks for huge pages (a VE's program that
/// does gets small pages when none is free), so that RAM goes to the VEs.
/// Never raises it; returns what it did.
pub fn free_floor() -> Result<String, String> {
    let meminfo =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    free_floor_at(
        std::path::Path::new(MIN_FREE),
        crate::appliance::meminfo_kib(&meminfo, "MemTotal"),
    )
}

fn free_floor_at(file: &std::path::Path, mem_total_kib: u64) -> Result<String, String> {
    if mem_total_kib == 0 {
        return Err("no MemTotal in /proc/meminfo".to_owned());
    }
    let now: u64 = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a number", file.display()))?;
    let want = kernel_floor_kib(mem_total_kib);
    if now <= want {
        return Ok(format!("vm.min_free_kbytes {now} kept"));
    }
    std::fs::write(file, want.to_string()).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(format!("vm.min_free_kbytes {want}, was {now}"))
}

fn lru_gen_at(file: &std::path::Path) -> Result<String, String> {
    if !file.exists() {
        return Ok(format!("two-list LRU ({} is missing)", file.display()));
    }
    std::fs::write(file, "y").map_err(|e| format!("{}: {e}", file.display()))?;
    let now = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    match lru_gen_on(&now) {
        Some(true) => Ok(format!("multi-generational LRU on ({})", now.trim())),
        Some(false) => Err(format!("{}: still off ({})", file.display(), now.trim())),
        None => Err(format!(
            "{}: unexpected contents {:?}",
            file.display(),
            now.trim()
        )),
    }
}

/// Whether lru_gen's mask (e.g. "0x0007\n") has its first part, the
/// generations themselves, on; None if it is no mask.
fn lru_gen_on(mask: &str) -> Option<bool> {
    let hex = mask.trim().strip_prefix("0x")?;
    u32::from_str_radix(hex, 16).ok().map(|bits| bits & 1 == 1)
}

/// Whether `swaps` (/proc/swaps) lists the zram device.
fn listed(swaps: &str) -> bool {
    swaps
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next() == Some(DEVICE))
}

fn busybox(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("/bin/busybox")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running busybox {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "busybox {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// swapon(2) with priority `prio` (busybox's swapon takes none).
fn swapon(dev: &str, prio: i32) -> std::io::Result<()> {
    let path = std::ffi::CString::new(dev).map_err(std::io::Error::other)?;
    // <linux/swap.h>: SWAP_FLAG_PREFER, SWAP_FLAG_PRIO_MASK (shift 0).
    const PREFER: i32 = 0x8000;
    const PRIO_MASK: i32 = 0x7fff;
    let flags = PREFER | (prio & PRIO_MASK);
    // SAFETY: `path` is a valid NUL-terminated string for the duration of
    // the call; the kernel reads nothing else of ours.
    let rc = unsafe { libc::swapon(path.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Turns the zram swap on as `want` says; returns what it did.
pub fn setup(want: ZramSwap) -> Result<String, String> {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if listed(&swaps) {
        return Ok(format!("{DEVICE} already in use as swap"));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram = crate::appliance::meminfo_kib(&meminfo, "MemTotal") * 1024;
    if ram == 0 {
        return Err("no MemTotal in /proc/meminfo".to_owned());
    }
    let size = want.bytes(ram);
    if size == 0 {
        return Ok("off (ZRAM_SWAP=\"no\")".to_owned());
    }
    let sys = std::path::Path::new(SYS);
    if !sys.exists() {
        return Err(format!(
            "{SYS} is missing: the zram module is not loaded (see the boot log)"
        ));
    }
    // A kernel without this algorithm keeps its default: not an error.
    let _ = std::fs::write(sys.join("comp_algorithm"), ALGORITHM);
    std::fs::write(sys.join("disksize"), size.to_string())
        .map_err(|e| format!("{SYS}/disksize: {e}"))?;
    busybox(&["mkswap", DEVICE])?;
    swapon(DEVICE, 100).map_err(|e| format!("swapon {DEVICE}: {e}"))?;
    for (file, value) in [("swappiness", SWAPPINESS), ("page-cluster", "0")] {
        if let Err(e) = std::fs::write(format!("/proc/sys/vm/{file}"), value) {
            log::warn!("vm.{file}: {e}");
        }
    }
    let algo = std::fs::read_to_string(sys.join("comp_algorithm")).unwrap_or_default();
    let chosen = algo
        .split_whitespace()
        .find_map(|a| a.strip_prefix('[')?.strip_suffix(']').map(str::to_owned))
        .unwrap_or_else(|| ALGORITHM.to_owned());
    Ok(format!(
        "{DEVICE}: {} MiB of compressed swap ({chosen}), vm.swappiness {SWAPPINESS}",
        size >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_swaps() {
        let swaps = "Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition 1024 0 100\n";
        assert!(listed(swaps));
        assert!(!listed("Filename\tType\tSize\tUsed\tPriority\n"));
    }

    #[test]
    fn lru_gen_reads_back_the_mask() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = dir.path().join("missing");
        assert!(lru_gen_at(&missing).expect("ok").contains("missing"));
        // A plain file keeps what was written: "y" is no hex mask.
        let file = dir.path().join("enabled");
        std::fs::write(&file, "0x0000").expect("write");
        let err = lru_gen_at(&file).expect_err("an error");
        assert!(err.contains("unexpected contents \"y\""), "{err}");
    }

    #[test]
    fn the_kernels_floor() {
        // The kernel's figures: 768 MiB and 1 GiB appliances, and the
        // clamps at both ends.
        assert_eq!(kernel_floor_kib(786_432), 3547);
        assert_eq!(kernel_floor_kib(995_356), 3990);
        assert_eq!(kernel_floor_kib(1000), 128);
        assert_eq!(kernel_floor_kib(1 << 40), 262_144);
        // Exact squares: 4 × 1000.
        assert_eq!(kernel_floor_kib(1_000_000), 4000);
    }

    #[test]
    fn free_floor_only_lowers() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("min_free_kbytes");
        // khugepaged's figure on a 1 GiB appliance comes down.
        std::fs::write(&file, "45056\n").expect("write");
        let did = free_floor_at(&file, 995_356).expect("ok");
        assert_eq!(did, "vm.min_free_kbytes 3990, was 45056");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "3990");
        // At or below the kernel's own figure it stays.
        std::fs::write(&file, "2000\n").expect("write");
        assert_eq!(
            free_floor_at(&file, 995_356).expect("ok"),
            "vm.min_free_kbytes 2000 kept"
        );
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "2000\n");
        assert!(free_floor_at(&file, 0).is_err());
        std::fs::write(&file, "x").expect("write");
        assert!(free_floor_at(&file, 995_356)
            .expect_err("an error")
            .contains("not a number"));
    }

    #[test]
    fn reads_lru_gen_masks() {
        // What the kernel shows after "y", after "n", and with only the
        // generations on; anything else is no mask.
        assert_eq!(lru_gen_on("0x0007\n"), Some(true));
        assert_eq!(lru_gen_on("0x0000\n"), Some(false));
        assert_eq!(lru_gen_on("0x0001"), Some(true));
        assert_eq!(lru_gen_on("0x0006"), Some(false));
        assert_eq!(lru_gen_on("y"), None);
        assert_eq!(lru_gen_on(""), None);
    }
}
