//! Two builds from the same inputs give byte-identical images: each from its
//! own empty scratch directory and its own Cargo target directory (so the
//! appliance binaries are compiled twice from scratch too).

use image::build::{build, Options};

#[test]
fn two_builds_are_byte_identical() -> anyhow::Result<()> {
    let ws = image::workspace_dir();
    let scratch = tempfile::tempdir()?;
    let mut sums = Vec::new();
    for name in ["a", "b"] {
        let mut opts = Options::new(ws.clone());
        opts.out = scratch.path().join(format!("{name}.img"));
        opts.work = scratch.path().join(format!("work-{name}"));
        opts.cargo_target_dir = Some(ws.join(format!("target/repro-{name}")));
        // A small data partition keeps the test quick; it is an input like any other.
        opts.data_size = 128 * image::disk::MIB;
        let s = build(&opts)?;
        sums.push(s.sha256);
    }
    assert_eq!(sums[0], sums[1], "the two builds differ");
    Ok(())
}

/// A Debian template built twice, each time from an empty template cache and
/// its own scratch directory, gives the same erofs bytes. (The pinned `.deb`
/// files come from the shared download cache: they are inputs, checked by
/// sha256.)
#[test]
fn template_builds_are_byte_identical() -> anyhow::Result<()> {
    let ws = image::workspace_dir();
    let opts = Options::new(ws.clone());
    let scratch = tempfile::tempdir()?;
    let mut sums = Vec::new();
    for name in ["a", "b"] {
        let b = image::template::build(
            &ws,
            "debian-12-minimal",
            &opts.cache,
            &scratch.path().join(format!("templates-{name}")),
            &scratch.path().join(format!("work-{name}")),
            opts.epoch,
        )?;
        assert!(!b.cached, "built, not taken from a cache");
        println!(
            "reproducible: debian-12-minimal build {name}: {} bytes, sha256 {}",
            b.size, b.sha256
        );
        sums.push(b.sha256);
    }
    assert_eq!(sums[0], sums[1], "the two template builds differ");
    Ok(())
}
