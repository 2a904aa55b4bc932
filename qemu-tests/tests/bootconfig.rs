//! A VE set baked into the image with `image build --config DIR`: the ONBOOT
//! VEs start in BOOTORDER (higher first), every VE with an invalid config stays
//! down with the reason in `vzlist -a` (and over the management channel), and
//! the others start anyway. Files with a BOM and Windows line endings,
//! OpenVZ's own sample contents and keys of the administrator's own scripts
//! are accepted; a VE_PRIVATE that escapes /vz/private is refused.

use proto::{Request, Response};
use qemu_tests::{Appliance, Disk};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BASIC_SAMPLE: &str = "KMEMSIZE=\"14372700:14790164\"\nLOCKEDPAGES=\"2048:2048\"\nPRIVVMPAGES=\"65536:69632\"\nSHMPAGES=\"21504:21504\"\nNUMPROC=\"240:240\"\nPHYSPAGES=\"0:unlimited\"\nVMGUARPAGES=\"33792:unlimited\"\nOOMGUARPAGES=\"26112:unlimited\"\nNUMTCPSOCK=\"360:360\"\nNUMFLOCK=\"188:206\"\nNUMPTY=\"16:16\"\nNUMSIGINFO=\"256:256\"\nTCPSNDBUF=\"1720320:2703360\"\nTCPRCVBUF=\"1720320:2703360\"\nOTHERSOCKBUF=\"1126080:2097152\"\nDGRAMRCVBUF=\"262144:262144\"\nNUMOTHERSOCK=\"360:360\"\nDCACHESIZE=\"3409920:3624960\"\nNUMFILE=\"9312:9312\"\nAVNUMPROC=\"180:180\"\nNUMIPTENT=\"128:128\"\nDISKSPACE=\"2G:2.2G\"\nDISKINODES=\"131072:144179\"\nQUOTATIME=\"0\"\nCPUUNITS=\"1000\"\nNETFILTER=\"stateless\"\n";

fn build_image(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let conf = dir.join("config");
    std::fs::create_dir_all(conf.join("conf"))?;
    let w = |name: &str, text: &str| std::fs::write(conf.join("conf").join(name), text);
    w(
        "101.conf",
        "ONBOOT=\"yes\"\nBOOTORDER=\"10\"\nHOSTNAME=\"one.example\"\nNAME=\"alpha\"\n",
    )?;
    w(
        "102.conf",
        "\u{feff}# edited on Windows\r\nONBOOT=\"yes\"\r\nBOOTORDER=\"20\"\r\nNAME=\"beta\"\r\n",
    )?;
    w("103.conf", "ONBOOT=\"yes\"\nHOSTNAME=\"-bad-\"\n")?;
    w("104.conf", "ONBOOT=\"yes\"\nOSTEMPLATE=\"centos-7\"\n")?;
    w("105.conf", "ONBOOT=\"yes\"\nNAME=\"alpha\"\n")?;
    w("106.conf", "ONBOOT=\"yes\"\nBOOTORDER=\"abc\"\n")?;
    w(
        "107.conf",
        &format!("{BASIC_SAMPLE}ONBOOT=\"yes\"\nVZHOSTBR=\"vmbr0\"\n"),
    )?;
    w("108.conf", "ONBOOT=\"yes\"\nVEID=\"101\"\n")?;
    w("109.conf", "ONBOOT=\"no\"\nONBOTO=\"yes\"\n")?;
    // Destroy would empty /boot: regression test for an unnormalised path.
    w("110.conf", "ONBOOT=\"yes\"\nVE_PRIVATE=\"/vz/../boot\"\n")?;
    // As a Debian or Ubuntu OpenVZ host writes it: loads, mapped onto /vz.
    w(
        "111.conf",
        "ONBOOT=\"yes\"\nVE_PRIVATE=\"/var/lib/vz/private/$VEID\"\n\
         VE_ROOT=\"/var/lib/vz/root/$VEID\"\n",
    )?;
    let ws = image::workspace_dir();
    let mut opts = image::build::Options::new(ws.clone());
    opts.out = dir.join("bootconfig.img");
    opts.work = dir.join("work");
    opts.config = Some(conf);
    opts.cargo_target_dir = Some(ws.join("target/repro-a"));
    opts.data_size = 256 * image::disk::MIB;
    Ok(image::build::build(&opts)?.path)
}

#[test]
fn baked_boot_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let img = build_image(dir.path())?;
    let mut a = Appliance::start("bootconfig", Arc::new(Disk::over(&img)?), 1)?;
    a.wait_ready()?;
    // The console takes commands while the VEs start.
    a.console("help")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let all = loop {
        let list = a.console("vzlist -a")?;
        if ["101", "102", "107", "111"].iter().all(|v| {
            list.lines()
                .any(|l| l.trim_start().starts_with(v) && l.contains("running"))
        }) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "ONBOOT VEs did not all start:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let row = |veid: &str| {
        all.lines()
            .find(|l| l.trim_start().starts_with(veid))
            .unwrap_or_else(|| panic!("no row for {veid}:\n{all}"))
            .to_owned()
    };
    assert!(row("109").contains("stopped"), "{all}");
    for (veid, why) in [
        ("103", "HOSTNAME: \"-bad-\" is not a hostname"),
        ("104", "template \"centos-7\" not found"),
        ("105", "already the name of VE 101"),
        ("106", "BOOTORDER: \"abc\" is not a number"),
        ("108", "duplicate or mismatched VEID"),
        ("110", "VE_PRIVATE: \"/vz/../boot\" is not allowed"),
    ] {
        let r = row(veid);
        assert!(
            r.contains("invalid") && r.contains(why),
            "VE {veid} should be invalid because {why}:\n{r}"
        );
        assert!(
            r.contains(&format!("{veid}.conf:")),
            "the reason names the file and line: {r}"
        );
    }
    // BOOTORDER: 102 (20) before 101 (10) before 107 (0).
    let log = a.console("log 400")?;
    let at = |veid: &str| {
        log.find(&format!("VE {veid}: started"))
            .unwrap_or_else(|| panic!("VE {veid} start not logged:\n{log}"))
    };
    assert!(
        at("102") < at("101") && at("101") < at("107"),
        "boot order not respected:\n{log}"
    );
    // Each start is logged with where its time went: vmmgr's steps, then
    // the setup helper's own (reported by it over its channel).
    let line = log
        .lines()
        .find(|l| l.contains("VE 101: started"))
        .unwrap_or_default();
    let (_, steps) = line
        .split_once("; steps (ms): ")
        .unwrap_or_else(|| panic!("no step breakdown in {line:?}"));
    let names: Vec<String> = vmmgr::timing::parse(steps)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for want in [
        "checks", "cgroup", "limits", "devices", "vesetup", "process",
    ]
    .iter()
    .chain(proto::SETUP_STEPS.iter())
    .chain(["record", "routes", "track"].iter())
    {
        assert!(
            names.iter().any(|n| n == want),
            "step {want} missing: {line}"
        );
    }
    // The modules the root switch did not need were loaded on VZROOT, all.
    assert!(
        log.contains("modules of /etc/modules.load loaded:")
            && log.contains(" 0 failed; slowest: "),
        "{log}"
    );
    // One warning per unimplemented key of the sample, logged once; the
    // resource keys are implemented.
    assert_eq!(
        log.matches("107.conf:26: warning: NETFILTER").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("warning: KMEMSIZE"), "{log}");
    // Unknown keys are warnings, with a "did you mean" for a near miss.
    assert!(
        log.contains("107.conf:28: warning: VZHOSTBR: unknown parameter, ignored (kept by --save)"),
        "{log}"
    );
    assert!(
        log.contains(
            "109.conf:2: warning: ONBOTO: unknown parameter, ignored (kept by --save); did you \
             mean ONBOOT?"
        ),
        "{log}"
    );

    assert!(
        log.contains(
            "111.conf:2: warning: VE_PRIVATE: /var/lib/vz/private/111 is read as \
             /vz/private/111"
        ),
        "{log}"
    );

    // The same over the management channel, structured.
    let mut ves = Vec::new();
    let mut after = 0;
    loop {
        match a.mgmt(&Request::List { after })? {
            Response::List { ves: page, more } => {
                after = page.last().map_or(after, |v| v.veid);
                ves.extend(page);
                if !more {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let status = |id: u32| {
        ves.iter()
            .find(|v| v.veid == id)
            .map(|v| v.status.to_string())
            .unwrap_or_default()
    };
    assert_eq!(status(102), "running");
    assert_eq!(status(103), "invalid");
    assert_eq!(status(111), "running", "a Debian host's paths load");
    assert!(ves
        .iter()
        .find(|v| v.veid == 104)
        .is_some_and(|v| v.error.contains("OSTEMPLATE")));
    // Starting an invalid VE says why, with OpenVZ's "unable to apply a config" code.
    a.enter_shell()?;
    let out = a.shell("vzctl start 103; echo RC=$?")?;
    assert!(out.contains("RC=109") && out.contains("HOSTNAME"), "{out}");
    let out = a.shell("test -d /vz/private/111/upper && vzctl exec2 111 hostname")?;
    assert!(out.contains("ve111"), "VE 111's files are under /vz: {out}");
    Ok(())
}
