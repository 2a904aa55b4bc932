//! Booting the image under QEMU: the command line shared by `image run` and
//! the end-to-end tests.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the first serial port (the console) is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The terminal, multiplexed with the QEMU monitor (ctrl-a c; ctrl-a x quits).
    Interactive,
    /// Plain stdin/stdout, for a program to drive.
    Pipes,
}

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The disk to boot (an overlay over the image, or the image itself).
    pub disk: PathBuf,
    pub disk_format: &'static str,
    pub kvm: bool,
    pub memory_mib: u32,
    pub cpus: u32,
    pub console: Console,
    /// Unix socket for the management serial port (the second one).
    pub mgmt_socket: PathBuf,
    /// Unix socket for QMP (tests use it to send ctrl-alt-del).
    pub qmp_socket: Option<PathBuf>,
    /// `tcp:HOSTPORT:GUESTPORT` forwards, always bound to 127.0.0.1.
    pub hostfwd: Vec<String>,
    /// More raw disks, read-only (tests use them to hand files in).
    pub extra_disks: Vec<PathBuf>,
    /// Second NICs on a virtual link between appliances, over a TCP
    /// socket on 127.0.0.1 (QEMU's `-netdev socket`).
    pub links: Vec<Link>,
    /// TCG's translation cache in MiB (ignored under KVM).
    pub tb_mib: u32,
}

/// The translation cache the harness gives TCG unless told otherwise: 128
/// MiB instead of QEMU's 1 GiB. After a run of many VEs a warm reboot had to
/// invalidate every stale translated block as the new boot wrote over its
/// page, and took 16.8 s to ready instead of 5.0 (docs/benchmarks.md).
pub const TB_MIB: u32 = 128;

/// One end of a virtual Ethernet link between two QEMU machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// 127.0.0.1's port the link runs over.
    pub port: u16,
    /// This end listens (start it first); the other connects.
    pub listen: bool,
    /// The NIC's MAC (each end needs its own).
    pub mac: String,
}

/// Turns `tcp:2222:22` into QEMU's `hostfwd=tcp:127.0.0.1:2222-:22`.
pub fn hostfwd_arg(spec: &str) -> Result<String> {
    let f: Vec<&str> = spec.split(':').collect();
    let (proto, host, guest) = match f.as_slice() {
        [h, g] => ("tcp", *h, *g),
        [p, h, g] if *p == "tcp" || *p == "udp" => (*p, *h, *g),
        _ => bail!("--hostfwd {spec:?}: expected [tcp|udp:]HOSTPORT:GUESTPORT, e.g. tcp:2222:22"),
    };
    for port in [host, guest] {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            bail!("--hostfwd {spec:?}: {port:?} is not a port number (1-65535)");
        }
    }
    Ok(format!("hostfwd={proto}:127.0.0.1:{host}-:{guest}"))
}

impl Machine {
    /// The QEMU command line.
    pub fn command(&self) -> Result<Command> {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-nodefaults", "-no-user-config", "-display", "none"])
            // q35: its PCI interrupts route straight to IOAPIC inputs, where
            // the older `pc` machine's ACPI interrupt links cost about 300 ms
            // of AML at every boot under TCG (docs/benchmarks.md).
            .args(["-machine", "q35"])
            .args([
                "-accel",
                &if self.kvm {
                    "kvm".to_owned()
                } else {
                    format!("tcg,tb-size={}", self.tb_mib)
                },
            ])
            .args(["-cpu", if self.kvm { "host" } else { "max" }])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format={},discard=unmap",
                self.disk.display(),
                self.disk_format
            ));
        for d in &self.extra_disks {
            c.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                d.display()
            ));
        }
        match self.console {
            Console::Interactive => {
                c.args(["-chardev", "stdio,id=con,mux=on,signal=off"])
                    .args(["-serial", "chardev:con"])
                    .args(["-mon", "chardev=con,mode=readline"]);
            }
            Console::Pipes => {
                c.args(["-chardev", "stdio,id=con,signal=off"])
                    .args(["-serial", "chardev:con"]);
            }
        }
        c.arg("-chardev")
            .arg(format!(
                "socket,id=mgmt,path={},server=on,wait=off",
                self.mgmt_socket.display()
            ))
            .args(["-serial", "chardev:mgmt"]);
        if let Some(q) = &self.qmp_socket {
            c.arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", q.display()));
        }
        // QEMU's own network in the documentation ranges: the appliance
        // gets 203.0.113.15 by DHCP (the gateway is .2, DNS .3).
        let mut net = String::from(
            "user,id=net0,restrict=off,net=203.0.113.0/24,host=203.0.113.2,\
             dns=203.0.113.3,dhcpstart=203.0.113.15,ipv6-net=2001:db8:ffff::/64",
        );
        for h in &self.hostfwd {
            net.push(',');
            net.push_str(&hostfwd_arg(h)?);
        }
        c.args(["-netdev", &net])
            .args(["-device", "virtio-net-pci,netdev=net0"]);
        for (i, l) in self.links.iter().enumerate() {
            let how = if l.listen { "listen" } else { "connect" };
            c.arg("-netdev")
                .arg(format!("socket,id=link{i},{how}=127.0.0.1:{}", l.port))
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=link{i},mac={}", l.mac));
        }
        Ok(c)
    }
}

/// Creates a copy-on-write qcow2 overlay over a raw image.
pub fn create_overlay(base: &Path, overlay: &Path) -> Result<()> {
    let base = base.canonicalize().with_context(|| {
        format!(
            "image {} not found: build it with `cargo run -p image -- build`",
            base.display()
        )
    })?;
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(overlay)
        .output()
        .context("running qemu-img")?;
    if !out.status.success() {
        bail!(
            "creating overlay {}: {}",
            overlay.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostfwd_binds_loopback_only() {
        assert_eq!(
            hostfwd_arg("tcp:2222:22").expect("ok"),
            "hostfwd=tcp:127.0.0.1:2222-:22"
        );
        assert_eq!(
            hostfwd_arg("8080:80").expect("ok"),
            "hostfwd=tcp:127.0.0.1:8080-:80"
        );
        assert!(hostfwd_arg("0.0.0.0:22:22").is_err());
        assert!(hostfwd_arg("tcp:99999:22").is_err());
    }

    #[test]
    fn command_uses_tcg_unless_kvm() {
        let m = Machine {
            disk: "/tmp/x.qcow2".into(),
            disk_format: "qcow2",
            kvm: false,
            memory_mib: 1024,
            cpus: 2,
            console: Console::Pipes,
            mgmt_socket: "/tmp/m.sock".into(),
            qmp_socket: None,
            hostfwd: vec![],
            links: vec![],
            extra_disks: vec![],
            tb_mib: TB_MIB,
        };
        let args: Vec<String> = m
            .command()
            .expect("cmd")
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"q35".to_owned()));
        assert!(args.contains(&"tcg,tb-size=128".to_owned()));
        assert!(
            !args.iter().any(|a| a == "-kernel"),
            "the image must boot from disk"
        );
    }
}
