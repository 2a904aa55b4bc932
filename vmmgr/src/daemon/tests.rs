//! The daemon's verbs against a temp directory: configs, private areas,
//! cgroups and runtime records are plain files here, so everything but the
//! kernel work of a start (the `vesetup` helper) and `vzctl mount` is covered.

use super::{Layout, Manager};
use crate::config::VeId;
use crate::exitcode::ExitCode;
use proto::{Name, VeOp};
use std::path::Path;
use std::sync::Arc;

struct Fixture {
    dir: tempfile::TempDir,
    m: Arc<Manager>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    for d in [
        "etc/vz/conf",
        "tpl/busybox",
        "cg",
        "run",
        "vz/private",
        "vz/root",
    ] {
        std::fs::create_dir_all(p.join(d)).expect("mkdir");
    }
    std::fs::write(
        p.join("etc/vz/vz.conf"),
        "DEF_OSTEMPLATE=\"busybox\"\nVE_PRIVATE=/vz/private/$VEID\nVE_ROOT=/vz/root/$VEID\n",
    )
    .expect("vz.conf");
    std::fs::write(
        p.join("etc/vz/conf/ve-basic.conf-sample"),
        "# sample\nONBOOT=\"no\"\n",
    )
    .expect("sample");
    let layout = Layout {
        config_dir: p.join("etc/vz"),
        template_dir: p.join("tpl"),
        template_cache: p.join("vz/template/cache"),
        template_mounts: p.join("run/template"),
        cgroup_root: p.join("cg"),
        state_dir: p.join("run"),
        policy_dir: p.join("policy"),
        helper: p.join("no-such-helper"),
        vz_dir: p.join("vz"),
    };
    let m = Manager::new(layout);
    m.reload();
    Fixture { dir, m }
}

fn veid(n: u32) -> VeId {
    n.to_string().parse().expect("veid")
}

fn create(f: &Fixture, n: u32, name: Option<&str>) -> super::Outcome {
    let op = VeOp::Create {
        ostemplate: None,
        config: Some(Name::try_from("basic").expect("name")),
        hostname: Some(Name::try_from("ve.example.com").expect("name")),
        name: name.map(|n| Name::try_from(n).expect("name")),
    };
    f.m.op(veid(n), &op).0
}

fn set(f: &Fixture, n: u32, kv: &[(&str, &str)], save: bool) -> super::Outcome {
    let mut params = heapless::Vec::new();
    for (k, v) in kv {
        let def = crate::config::key(k).expect("known key");
        // What the client would check; the daemon checks again (below).
        let p = match crate::config::set_param(def, v) {
            Ok(p) => p,
            // A hostname is a string on the wire: a client may send anything.
            Err(_) if *k == "HOSTNAME" => proto::SetParam::Hostname(Name::try_from(*v).expect("n")),
            Err(e) => panic!("{k}={v}: {e}"),
        };
        params.push(p).expect("room");
    }
    f.m.op(veid(n), &VeOp::Set { params, save }).0
}

#[test]
fn create_writes_the_config_and_an_empty_private_area() {
    let f = fixture();
    let o = create(&f, 101, Some("web"));
    assert_eq!(o.code, ExitCode::Ok, "{}", o.message);
    let conf = std::fs::read_to_string(f.dir.path().join("etc/vz/conf/101.conf")).expect("conf");
    assert!(
        conf.starts_with("# sample\n"),
        "the sample is the base:\n{conf}"
    );
    for line in [
        "OSTEMPLATE=\"busybox\"",
        "HOSTNAME=\"ve.example.com\"",
        "NAME=\"web\"",
    ] {
        assert!(conf.contains(line), "{line} missing:\n{conf}");
    }
    assert!(f.dir.path().join("vz/private/101/upper").is_dir());
    let info = f.m.info(veid(101));
    assert!(info.exists);
    assert_eq!(info.status.as_str(), "stopped");
    assert_eq!(info.name.as_str(), "web");
    // OpenVZ's answers to the same VEID, a taken name, an unknown template.
    assert_eq!(create(&f, 101, None).code, ExitCode::PrivateExists);
    assert_eq!(create(&f, 102, Some("web")).code, ExitCode::BadValue);
    let o =
        f.m.op(
            veid(103),
            &VeOp::Create {
                ostemplate: Some(Name::try_from("centos-7").expect("n")),
                config: None,
                hostname: None,
                name: None,
            },
        )
        .0;
    assert_eq!(o.code, ExitCode::TemplateNotFound);
    assert!(
        o.message.contains("busybox"),
        "names the templates present: {}",
        o.message
    );
    assert!(!f.dir.path().join("etc/vz/conf/103.conf").exists());
}

#[test]
fn set_validates_before_anything_changes_and_saves_atomically() {
    let f = fixture();
    create(&f, 101, None);
    let path = f.dir.path().join("etc/vz/conf/101.conf");
    let before = std::fs::read_to_string(&path).expect("conf");
    let o = set(&f, 101, &[("ONBOOT", "yes"), ("HOSTNAME", "-bad-")], true);
    assert_eq!(o.code, ExitCode::BadValue, "{}", o.message);
    assert!(o.message.contains("HOSTNAME"), "{}", o.message);
    assert_eq!(
        std::fs::read_to_string(&path).expect("conf"),
        before,
        "nothing changed"
    );
    let o = set(&f, 101, &[("ONBOOT", "yes"), ("BOOTORDER", "5")], true);
    assert_eq!(o.code, ExitCode::Ok, "{}", o.message);
    let after = std::fs::read_to_string(&path).expect("conf");
    assert!(
        after.contains("ONBOOT=\"yes\"") && after.contains("BOOTORDER=\"5\""),
        "{after}"
    );
    assert_eq!(f.m.info(veid(101)).bootorder, 5);
    // No temporary file is left next to it.
    let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty());
    assert_eq!(
        set(&f, 109, &[("ONBOOT", "yes")], true).code,
        ExitCode::ConfNotFound
    );
}

#[test]
fn destroy_removes_only_a_confined_private_area() {
    let f = fixture();
    create(&f, 101, None);
    std::fs::write(f.dir.path().join("vz/private/101/upper/file"), "x").expect("file");
    // Processes left in its cgroup: nothing is removed.
    let cg = f.dir.path().join("cg/101");
    std::fs::create_dir_all(&cg).expect("cg");
    std::fs::write(cg.join("cgroup.events"), "populated 1\n").expect("events");
    let o = f.m.op(veid(101), &VeOp::Destroy).0;
    assert_eq!(o.code, ExitCode::Running, "{}", o.message);
    assert!(f.dir.path().join("vz/private/101/upper/file").exists());
    std::fs::write(cg.join("cgroup.events"), "populated 0\n").expect("events");
    let o = f.m.op(veid(101), &VeOp::Destroy).0;
    assert_eq!(o.code, ExitCode::Ok, "{}", o.message);
    assert!(!f.dir.path().join("vz/private/101").exists());
    assert!(f.dir.path().join("etc/vz/conf/101.conf.destroyed").exists());
    assert_eq!(
        f.m.op(veid(101), &VeOp::Destroy).0.code,
        ExitCode::ConfNotFound
    );

    // A config pointing outside /vz is invalid; destroy falls back to the
    // VE's own default area and never touches the named directory.
    let boot = f.dir.path().join("boot");
    std::fs::create_dir_all(&boot).expect("boot");
    std::fs::write(boot.join("keep"), "x").expect("keep");
    std::fs::write(
        f.dir.path().join("etc/vz/conf/110.conf"),
        format!(
            "OSTEMPLATE=\"busybox\"\nVE_PRIVATE=\"/vz/../{}\"\n",
            boot.display()
        ),
    )
    .expect("conf");
    f.m.reload();
    assert_eq!(f.m.info(veid(110)).status.as_str(), "invalid");
    let _ = f.m.op(veid(110), &VeOp::Destroy);
    assert!(
        boot.join("keep").exists(),
        "destroy reached outside /vz/private"
    );
}

#[test]
fn a_symlinked_private_area_is_not_followed() {
    let f = fixture();
    create(&f, 101, None);
    let elsewhere = f.dir.path().join("precious");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    std::fs::write(elsewhere.join("keep"), "x").expect("keep");
    let private = f.dir.path().join("vz/private/101");
    std::fs::remove_dir_all(&private).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, &private).expect("symlink");
    let o = f.m.op(veid(101), &VeOp::Destroy).0;
    assert_eq!(o.code, ExitCode::DeleteFailed, "{}", o.message);
    assert!(elsewhere.join("keep").exists());
}

#[test]
fn start_refuses_disabled_and_untracked_running_ves() {
    let f = fixture();
    create(&f, 101, None);
    set(&f, 101, &[("DISABLED", "yes")], true);
    let o = f.m.op(veid(101), &VeOp::Start { force: false }).0;
    assert_eq!(o.code, ExitCode::StartDisabled, "{}", o.message);
    set(&f, 101, &[("DISABLED", "no")], true);
    // Its cgroup holds processes vmmgr does not track: never a second copy.
    let cg = f.dir.path().join("cg/101");
    std::fs::create_dir_all(&cg).expect("cg");
    std::fs::write(cg.join("cgroup.events"), "populated 1\n").expect("events");
    let o = f.m.op(veid(101), &VeOp::Start { force: false }).0;
    assert_eq!(o.code, ExitCode::Running, "{}", o.message);
    assert!(o.message.contains("cgroup.kill"), "{}", o.message);
    assert_eq!(
        f.m.op(veid(101), &VeOp::Stop { fast: false }).0.code,
        ExitCode::NotRunning
    );
    let o = f.m.op(veid(150), &VeOp::Start { force: false }).0;
    assert_eq!(o.code, ExitCode::ConfNotFound, "{}", o.message);
}

#[test]
fn onboot_starts_use_the_configs_read_at_boot_and_commands_read_them_again() {
    let f = fixture();
    create(&f, 101, None);
    set(&f, 101, &[("DISABLED", "yes")], true);
    // Edited on VZBOOT after the boot read it: a later line wins.
    let conf = f.dir.path().join("etc/vz/conf/101.conf");
    let text = std::fs::read_to_string(&conf).expect("conf");
    std::fs::write(&conf, format!("{text}DISABLED=\"no\"\n")).expect("edit");
    let o = f.m.start_at_boot(veid(101));
    assert_eq!(o.code, ExitCode::StartDisabled, "{}", o.message);
    let o = f.m.op(veid(101), &VeOp::Start { force: false }).0;
    assert_ne!(o.code, ExitCode::StartDisabled, "{}", o.message);
    assert!(
        !f.m.config_of(veid(101))
            .expect("known")
            .expect("valid")
            .disabled
    );
}

#[test]
fn a_busy_ve_answers_locked() {
    let f = fixture();
    create(&f, 101, None);
    let busy = f.m.begin(veid(101)).expect("free");
    let o = f.m.op(veid(101), &VeOp::Destroy).0;
    assert_eq!(o.code, ExitCode::Locked, "{}", o.message);
    drop(busy);
    assert_ne!(f.m.op(veid(101), &VeOp::Umount).0.code, ExitCode::Locked);
}

#[test]
fn adoption_reads_records_and_drops_stale_ones() {
    let f = fixture();
    let run = f.dir.path().join("run");
    // Our own process stands for a running init; pid 1's start time will not
    // match a made-up record.
    let me = std::process::id() as i32;
    let rec = crate::runstate::VeRecord {
        pid: me,
        start_time: crate::runstate::start_time(me).expect("own start time"),
        checkpoint: true,
    };
    crate::runstate::write(&rec, &run.join("101")).expect("record");
    std::fs::write(run.join("102"), "1 12345\n").expect("stale");
    std::fs::write(run.join("103"), "garbage").expect("junk");
    f.m.adopt();
    assert!(f.m.is_running(veid(101)));
    assert_eq!(f.m.info(veid(101)).init_pid, me as u32);
    assert!(f.m.info(veid(101)).checkpoint, "as recorded");
    assert!(!f.m.is_running(veid(102)));
    assert!(!run.join("102").exists() && !run.join("103").exists());
    assert!(Path::new(&run.join("101")).exists());
}

#[test]
fn chkpnt_and_restore_check_their_dumps() {
    let f = fixture();
    create(&f, 101, None);
    let chk = |d: Option<&str>| VeOp::Chkpnt {
        dumpfile: d.map(|d| d.try_into().expect("fits")),
    };
    let res = |d: Option<&str>| VeOp::Restore {
        dumpfile: d.map(|d| d.try_into().expect("fits")),
    };
    assert_eq!(f.m.op(veid(101), &chk(None)).0.code, ExitCode::NotRunning);
    // Images are never read from where a VE can write, nor outside DUMPDIR.
    for bad in [
        "/vz/private/101/upper/d",
        "/vz/dump/../private/101",
        "/vz/dump",
        "dump/Dump.101",
        "/tmp/d",
    ] {
        let o = f.m.op(veid(101), &res(Some(bad))).0;
        assert_eq!(o.code, ExitCode::BadValue, "{bad}: {}", o.message);
    }
    let o = f.m.op(veid(101), &res(None)).0;
    assert_eq!(o.code, ExitCode::RestoreFailed, "{}", o.message);
    assert!(o.message.contains("Dump.101"), "{}", o.message);
    // A dump without vmmgr's note, or of another VE, is not restored.
    let d = f.dir.path().join("vz/dump/Dump.101");
    std::fs::create_dir_all(&d).expect("dir");
    std::fs::write(d.join("inventory.img"), "").expect("inventory");
    assert_eq!(
        f.m.info(veid(101)).status.as_str(),
        "stopped",
        "no note: not its dump"
    );
    let o = f.m.op(veid(101), &res(None)).0;
    assert!(o.message.contains("vz.dump"), "{}", o.message);
    std::fs::write(d.join("vz.dump"), crate::criu::note(102, 77, false)).expect("note");
    assert_eq!(
        f.m.info(veid(101)).status.as_str(),
        "stopped",
        "another VE's dump"
    );
    let o = f.m.op(veid(101), &res(None)).0;
    assert_eq!(o.code, ExitCode::RestoreFailed, "{}", o.message);
    assert!(o.message.contains("is of VE 102"), "{}", o.message);
    // Nor may one VE's chkpnt or restore name another's default dump.
    let o = f.m.op(veid(101), &res(Some("/vz/dump/Dump.102"))).0;
    assert_eq!(o.code, ExitCode::BadValue, "{}", o.message);
    std::fs::write(d.join("vz.dump"), crate::criu::note(101, 77, true)).expect("note");
    assert_eq!(f.m.info(veid(101)).status.as_str(), "suspended");
    assert!(f.m.dump_at_shutdown(veid(101)));
    // A destroy takes every dump of the VE with its files (a --dumpfile one
    // too), and no other VE's.
    let top = f.dir.path().join("vz/dump");
    for (name, of) in [("foo", 101), ("bar", 102), ("Dump.101.used", 101)] {
        std::fs::create_dir_all(top.join(name)).expect("dir");
        std::fs::write(top.join(name).join("inventory.img"), "").expect("inventory");
        std::fs::write(
            top.join(name).join("vz.dump"),
            crate::criu::note(of, 1, false),
        )
        .expect("note");
    }
    assert_eq!(f.m.op(veid(101), &VeOp::Destroy).0.code, ExitCode::Ok);
    assert!(!d.exists());
    assert!(!top.join("foo").exists());
    assert!(top.join("bar").exists(), "another VE's dump stays");
    assert!(top.join("Dump.101.used").exists(), "kept for inspection");
}
