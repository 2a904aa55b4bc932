//! Partition images and the GPT disk, written as plain files (no root, no loop
//! devices, no mounts) with tools that take fixed timestamps and identifiers.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SECTOR: u64 = 512;
pub const MIB: u64 = 1 << 20;
/// Partitions start on MiB boundaries; the first at 1 MiB.
pub const FIRST_LBA: u64 = 2048;

/// GPT type GUIDs.
pub const TYPE_BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
pub const TYPE_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// A UUID derived from the build inputs and a purpose, so it is stable across
/// builds of the same inputs and differs between purposes.
pub fn derived_uuid(seed: &[u8], purpose: &str) -> String {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(purpose.as_bytes());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::debs::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn create_sized(path: &Path, bytes: u64) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(bytes)
        .with_context(|| format!("sizing {}", path.display()))?;
    Ok(())
}

/// One file to put on the FAT partition: host path -> path on the partition.
#[derive(Debug, Clone)]
pub struct FatFile {
    pub src: PathBuf,
    pub dest: String,
}

/// What goes on the `VZBOOT` FAT32 partition.
#[derive(Debug, Clone)]
pub struct FatSpec<'a> {
    pub size: u64,
    /// Volume serial number.
    pub serial: u32,
    /// The partition's first sector on the disk (FAT's "hidden sectors").
    pub hidden_sectors: u64,
    pub dirs: &'a [&'a str],
    pub files: &'a [FatFile],
    /// The syslinux installer (from the pinned package).
    pub syslinux: &'a Path,
    pub epoch: u64,
}

/// Builds the `VZBOOT` FAT32 partition image, with syslinux installed.
pub fn build_fat(out: &Path, spec: &FatSpec<'_>) -> Result<()> {
    let FatSpec {
        size,
        serial,
        hidden_sectors,
        dirs,
        files,
        syslinux,
        epoch,
    } = *spec;
    create_sized(out, size)?;
    let img = out.to_string_lossy().into_owned();
    let env = |c: &mut Command| {
        c.env("SOURCE_DATE_EPOCH", epoch.to_string())
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("TZ", "UTC");
    };
    let mut c = Command::new("mformat");
    env(&mut c);
    c.args([
        "-i",
        &img,
        "-F",
        "-v",
        "VZBOOT",
        "-N",
        &format!("{serial:08X}"),
    ])
    .args(["-H", &hidden_sectors.to_string(), "::"]);
    run(&mut c, "formatting VZBOOT (mformat)")?;
    for d in dirs {
        let mut c = Command::new("mmd");
        env(&mut c);
        c.args(["-i", &img, &format!("::/{d}")]);
        run(&mut c, &format!("creating /{d} on VZBOOT"))?;
    }
    for f in files {
        let mut c = Command::new("mcopy");
        env(&mut c);
        c.args(["-i", &img])
            .arg(&f.src)
            .arg(format!("::/{}", f.dest));
        run(&mut c, &format!("copying {} to VZBOOT", f.dest))?;
    }
    let mut c = Command::new(syslinux);
    env(&mut c);
    c.args(["--install", "--directory", "/syslinux", &img]);
    run(&mut c, "installing syslinux on VZBOOT")?;
    Ok(())
}

/// Builds the `VZDATA` ext4 partition image: quota and project features,
/// holding the files of `populate` (owners kept) when given.
pub fn build_ext4(
    out: &Path,
    size: u64,
    uuid: &str,
    epoch: u64,
    populate: Option<&Path>,
) -> Result<()> {
    create_sized(out, size)?;
    let mut c = Command::new(crate::hosttools::which("mkfs.ext4").unwrap_or("mkfs.ext4".into()));
    c.env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .args(["-q", "-F", "-L", "VZDATA", "-U", uuid])
        .arg("-E")
        .arg(format!(
            "hash_seed={uuid},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0"
        ))
        .args(["-O", "quota,project", "-I", "256", "-b", "4096"]);
    if let Some(dir) = populate {
        c.arg("-d").arg(dir);
    }
    c.arg(out);
    run(&mut c, "formatting VZDATA (mkfs.ext4)")?;
    if let Some(dir) = populate {
        // mke2fs -d copies each file's atime and ctime from the build
        // machine (FAKE_TIME covers only its own stamps): set them to the
        // epoch, so the bytes depend on the inputs only.
        let mut cmds = String::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            let mut es: Vec<_> = std::fs::read_dir(&d)?.filter_map(|e| e.ok()).collect();
            es.sort_by_key(|e| e.file_name());
            for e in es {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap_or(&e.path())
                    .display()
                    .to_string();
                for f in ["atime", "ctime", "mtime"] {
                    cmds.push_str(&format!("sif \"/{rel}\" {f} {epoch}\n"));
                }
                if e.file_type()?.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        let script = out.with_extension("debugfs");
        std::fs::write(&script, cmds)?;
        let mut c = Command::new(crate::hosttools::which("debugfs").unwrap_or("debugfs".into()));
        c.env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(out);
        run(&mut c, "stamping VZDATA's files (debugfs)")?;
        let _ = std::fs::remove_file(&script);
    }
    Ok(())
}

/// Builds the read-only `VZROOT` erofs image from a staged tree.
pub fn build_erofs(out: &Path, tree: &Path, uuid: &str, epoch: u64) -> Result<()> {
    let _ = std::fs::remove_file(out);
    let mut c = Command::new(crate::hosttools::which("mkfs.erofs").unwrap_or("mkfs.erofs".into()));
    c.args(["--quiet", "-zlz4hc", "-x", "-1", "--all-root"])
        .arg(format!("-T{epoch}"))
        .arg(format!("-U{uuid}"))
        .arg(out)
        .arg(tree);
    run(&mut c, "building VZROOT (mkfs.erofs)")?;
    Ok(())
}

/// A partition of the disk.
#[derive(Debug, Clone)]
pub struct Part {
    pub label: &'static str,
    pub type_guid: &'static str,
    pub uuid: String,
    pub image: PathBuf,
    /// Size on disk in bytes (a multiple of 1 MiB, at least the image's size).
    pub size: u64,
    pub bios_bootable: bool,
}

/// The sfdisk script for `parts`; returns it with each partition's first LBA.
pub fn sfdisk_script(disk_uuid: &str, parts: &[Part]) -> (String, Vec<u64>) {
    let mut s = format!(
        "label: gpt\nlabel-id: {disk_uuid}\nunit: sectors\nfirst-lba: {FIRST_LBA}\nsector-size: 512\n\n"
    );
    let mut lba = FIRST_LBA;
    let mut starts = Vec::new();
    for p in parts {
        let sectors = p.size / SECTOR;
        s.push_str(&format!(
            "start={lba}, size={sectors}, type={}, uuid={}, name=\"{}\"{}\n",
            p.type_guid,
            p.uuid,
            p.label,
            if p.bios_bootable {
                ", attrs=\"LegacyBIOSBootable\""
            } else {
                ""
            }
        ));
        starts.push(lba);
        lba += sectors;
    }
    (s, starts)
}

/// Copies `src` into `dst` at `offset`, seeking over all-zero blocks so the
/// disk image stays sparse.
pub fn copy_sparse(src: &Path, dst: &mut std::fs::File, offset: u64) -> Result<()> {
    let mut f = std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = offset;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let r = f.read(&mut buf[n..])?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(pos))?;
            dst.write_all(&buf[..n])?;
        }
        pos += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok(())
}

/// Writes the GPT disk: partition table, BIOS boot code, partition contents.
pub fn assemble(out: &Path, disk_uuid: &str, parts: &[Part], mbr_code: &Path) -> Result<u64> {
    let total_parts: u64 = parts.iter().map(|p| p.size).sum();
    // 1 MiB in front, 1 MiB behind for the backup GPT.
    let total = FIRST_LBA * SECTOR + total_parts + MIB;
    create_sized(out, total)?;
    let (script, starts) = sfdisk_script(disk_uuid, parts);
    let mut child = Command::new(crate::hosttools::which("sfdisk").unwrap_or("sfdisk".into()))
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "never",
        ])
        .arg(out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running sfdisk")?;
    child
        .stdin
        .take()
        .context("sfdisk stdin")?
        .write_all(script.as_bytes())?;
    let res = child.wait_with_output()?;
    if !res.status.success() {
        bail!(
            "writing the partition table (sfdisk) failed: {}\nscript:\n{script}",
            String::from_utf8_lossy(&res.stderr).trim()
        );
    }
    let mut disk = std::fs::OpenOptions::new().write(true).open(out)?;
    let mbr = std::fs::read(mbr_code).with_context(|| format!("reading {}", mbr_code.display()))?;
    if mbr.len() < 440 {
        bail!(
            "{} is {} bytes, expected 440",
            mbr_code.display(),
            mbr.len()
        );
    }
    disk.seek(SeekFrom::Start(0))?;
    disk.write_all(&mbr[..440])?;
    for (p, start) in parts.iter().zip(starts) {
        let len = std::fs::metadata(&p.image)?.len();
        if len > p.size {
            bail!(
                "{} image ({len} bytes) exceeds its partition ({} bytes)",
                p.label,
                p.size
            );
        }
        copy_sparse(&p.image, &mut disk, start * SECTOR)?;
    }
    disk.sync_all()?;
    Ok(total)
}

/// Rounds up to a whole MiB.
pub fn round_mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB) * MIB
}

/// Finds the partition named `label` in the GPT of a raw disk image; returns
/// its byte offset and length.
pub fn find_partition(disk: &Path, label: &str) -> Result<(u64, u64)> {
    let mut f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let mut header = [0u8; 512];
    f.seek(SeekFrom::Start(SECTOR))?;
    f.read_exact(&mut header)?;
    if &header[0..8] != b"EFI PART" {
        bail!("{} has no GPT", disk.display());
    }
    let le64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let le32 = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4]));
    let entries_lba = le64(&header[72..]);
    let count = le32(&header[80..]).min(256);
    let size = le32(&header[84..]) as usize;
    if size < 128 {
        bail!("{}: bad GPT entry size {size}", disk.display());
    }
    let mut table = vec![0u8; count as usize * size];
    f.seek(SeekFrom::Start(entries_lba * SECTOR))?;
    f.read_exact(&mut table)?;
    for e in table.chunks(size) {
        let name: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        if String::from_utf16_lossy(&name) == label {
            let (first, last) = (le64(&e[32..]), le64(&e[40..]));
            return Ok((first * SECTOR, (last + 1 - first) * SECTOR));
        }
    }
    bail!("{} has no partition named {label}", disk.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_distinct() {
        let a = derived_uuid(b"inputs", "VZROOT");
        assert_eq!(a, derived_uuid(b"inputs", "VZROOT"));
        assert_ne!(a, derived_uuid(b"inputs", "VZDATA"));
        assert_ne!(a, derived_uuid(b"other", "VZROOT"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn script_lays_partitions_back_to_back() {
        let p = |label, size| Part {
            label,
            type_guid: TYPE_LINUX_FS,
            uuid: "u".into(),
            image: PathBuf::new(),
            size,
            bios_bootable: label == "VZBOOT",
        };
        let (s, starts) = sfdisk_script("d", &[p("VZBOOT", 2 * MIB), p("VZROOT", MIB)]);
        assert_eq!(starts, vec![2048, 2048 + 4096]);
        assert!(s.contains("name=\"VZBOOT\", attrs=\"LegacyBIOSBootable\""));
        assert!(s.contains("start=6144, size=2048"));
    }

    #[test]
    fn partitions_found_by_gpt_name() {
        if crate::hosttools::which("sfdisk").is_none() {
            eprintln!("skipping: sfdisk not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let img = |n: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, [7u8; 512]).expect("write");
            p
        };
        let part = |label, image| Part {
            label,
            type_guid: TYPE_LINUX_FS,
            uuid: derived_uuid(b"t", label),
            image,
            size: MIB,
            bios_bootable: false,
        };
        let mbr = img("mbr");
        let disk = dir.path().join("disk");
        assemble(
            &disk,
            &derived_uuid(b"t", "disk"),
            &[part("VZBOOT", img("a")), part("VZDATA", img("b"))],
            &mbr,
        )
        .expect("assemble");
        assert_eq!(
            find_partition(&disk, "VZDATA").expect("found"),
            (2 * MIB, MIB)
        );
        assert!(find_partition(&disk, "VZROOT").is_err());
    }

    #[test]
    fn sparse_copy_preserves_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        let mut data = vec![0u8; 200_000];
        data[5] = 1;
        data[150_000] = 2;
        std::fs::write(&src, &data).expect("write");
        let dst_path = dir.path().join("dst");
        let mut dst = std::fs::File::create(&dst_path).expect("create");
        dst.set_len(300_000).expect("len");
        copy_sparse(&src, &mut dst, 1000).expect("copy");
        let back = std::fs::read(&dst_path).expect("read");
        assert_eq!(&back[1000..201_000], &data[..]);
    }

    #[test]
    fn ext4_image_is_reproducible() {
        if crate::hosttools::which("mkfs.ext4").is_none() {
            eprintln!("skipping: mkfs.ext4 not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        // With files in it, whose ctime and atime differ between the builds.
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("template/cache")).expect("mk");
        let build = |out: &Path| {
            std::fs::write(tree.join("template/cache/t.conf"), "SIZE=1\n").expect("w");
            let _ = std::fs::read_dir(tree.join("template")).map(|d| d.count());
            build_ext4(
                out,
                64 * MIB,
                "11111111-2222-4333-8444-555555555555",
                1_700_000_000,
                Some(&tree),
            )
            .expect("build");
        };
        build(&a);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        build(&b);
        assert!(std::fs::read(a).expect("a") == std::fs::read(b).expect("b"));
    }
}
