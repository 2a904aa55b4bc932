//! Boot time under TCG: QEMU start to the console's `ready` line, over several
//! boots of the built image (each on a fresh overlay). Prints the median and
//! the spread, plus init's own figure (ms since kernel start).
//!
//! `cargo bench -p qemu-tests --bench boot` (VZ_BENCH_BOOTS=N to change the count)

use qemu_tests::Appliance;
use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("VZ_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut wall = Vec::new();
    let mut kernel_ms = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let mut a = Appliance::start(
            "bench-boot",
            std::sync::Arc::new(qemu_tests::Disk::new()?),
            1,
        )?;
        let line = a.wait_ready()?;
        let d = t.elapsed();
        // "init: ready in 6312 ms ..."
        let ms: u64 = line
            .trim_start_matches(qemu_tests::READY)
            .split(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        eprintln!(
            "boot {}: {:.2} s from QEMU start, {ms} ms after kernel start",
            i + 1,
            d.as_secs_f64()
        );
        wall.push(d);
        kernel_ms.push(Duration::from_millis(ms));
    }
    let (min, max) = (
        wall.iter().min().copied().unwrap_or_default(),
        wall.iter().max().copied().unwrap_or_default(),
    );
    println!(
        "boot to console ready under TCG, {n} boots: median {:.2} s (min {:.2} s, max {:.2} s) \
         from QEMU start; median {} ms after kernel start",
        median(&mut wall).as_secs_f64(),
        min.as_secs_f64(),
        max.as_secs_f64(),
        median(&mut kernel_ms).as_millis()
    );
    Ok(())
}
