//! The end-to-end test harness: boots the built image under QEMU (TCG) on a
//! per-test copy-on-write overlay, drives the serial console with
//! expect-style waits, talks to `vmmgr` over the management serial port, and
//! keeps the whole serial transcript (`target/qemu-tests/<test>.log`).
//!
//! QEMU is killed and reaped in `Drop`, whatever happened.

use anyhow::{bail, Context, Result};
use proto::{Kind, Request, Response};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a boot may take, from QEMU start to the `ready` line, under TCG on
/// the 2-core build machine (measured: about 8 s; see docs/benchmarks.md).
pub const BOOT_BOUND: Duration = Duration::from_secs(90);
/// Default wait for a console command's output.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The console prompt, at the start of a line.
pub const PROMPT: &str = "\nvz# ";
/// The appliance shell's prompt.
pub const SHELL_PROMPT: &str = "\nvz-shell# ";
/// The line init prints when the console takes commands.
pub const READY: &str = "init: ready in ";

/// The image under test: `$VZ_IMAGE`, else the default build output.
pub fn image_path() -> PathBuf {
    std::env::var_os("VZ_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| image::workspace_dir().join(image::build::DEFAULT_OUT))
}

/// Where transcripts go.
pub fn transcript_dir() -> PathBuf {
    image::workspace_dir().join("target/qemu-tests")
}

#[derive(Default)]
struct Serial {
    bytes: Vec<u8>,
    closed: bool,
}

/// A disk that outlives one QEMU process (for reboot-across-processes tests).
#[derive(Debug)]
pub struct Disk {
    _dir: tempfile::TempDir,
    overlay: PathBuf,
}

impl Disk {
    /// A fresh copy-on-write overlay over the image under test.
    pub fn new() -> Result<Disk> {
        Disk::over(&image_path())
    }

    /// A fresh copy-on-write overlay over `image`.
    pub fn over(image: &Path) -> Result<Disk> {
        let image = image.to_owned();
        if !image.exists() {
            bail!(
                "{} does not exist: build the image first (`cargo run -p image -- build`), \
                 or run ./test.sh which does",
                image.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let overlay = dir.path().join("disk.qcow2");
        image::qemu::create_overlay(&image, &overlay)?;
        Ok(Disk { _dir: dir, overlay })
    }
}

/// A running appliance.
pub struct Appliance {
    name: String,
    boots: u32,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    serial: Arc<(Mutex<Serial>, Condvar)>,
    /// Offset in the transcript up to which output has been consumed.
    cursor: usize,
    disk: Arc<Disk>,
    run_dir: tempfile::TempDir,
    mgmt: Option<UnixStream>,
    opts: Opts,
    /// Size of the `ve-probe` binary on the second disk, when booted with it.
    probe_size: Option<u64>,
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("name", &self.name)
            .finish()
    }
}

/// What a machine has besides its disk.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    /// More raw disks, read-only.
    pub extra_disks: Vec<PathBuf>,
    /// Second NICs on virtual links to other appliances.
    pub links: Vec<image::qemu::Link>,
    /// `tcp:HOSTPORT:GUESTPORT` forwards from 127.0.0.1.
    pub hostfwd: Vec<String>,
    /// The `ve-probe` test helper on a second disk (see [`probe_disk`]).
    pub probe: bool,
    /// Guest memory in MiB (default 1024).
    pub memory_mib: Option<u32>,
    /// TCG's translation cache in MiB (default [`image::qemu::TB_MIB`]).
    pub tb_mib: Option<u32>,
}

/// Waits until something listens on 127.0.0.1:`port`.
fn wait_listening(port: u16, timeout: Duration) -> Result<()> {
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    let t = std::time::Instant::now();
    while t.elapsed() < timeout {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if tcp.contains(&needle) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}: the first appliance's QEMU did not start")
}

/// A free TCP port on 127.0.0.1 (for a link or a forward).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Appliance {
    /// Boots two appliances joined by a virtual Ethernet link (their
    /// `eth1`s), each waited for until `ready`: the first listens on the
    /// link's socket, the second connects to it.
    pub fn boot_pair(name: &str) -> Result<(Appliance, Appliance)> {
        let port = free_port()?;
        let end = |listen: bool, n: u8| Opts {
            links: vec![image::qemu::Link {
                port,
                listen,
                mac: format!("52:54:00:00:01:{n:02x}"),
            }],
            // A has the ve-probe disk (tests attack from its VEs).
            probe: listen,
            ..Opts::default()
        };
        let mut a = Appliance::start_opts(
            &format!("{name}-a"),
            Arc::new(Disk::new()?),
            1,
            end(true, 1),
        )?;
        // The connecting end fails if nobody listens yet: wait for the
        // socket (read from /proc, a probe connection would be taken as
        // the peer).
        wait_listening(port, Duration::from_secs(30))?;
        let mut b = Appliance::start_opts(
            &format!("{name}-b"),
            Arc::new(Disk::new()?),
            1,
            end(false, 2),
        )?;
        a.wait_ready()?;
        b.wait_ready()?;
        Ok((a, b))
    }

    /// [`Appliance::boot_pair`], each then configured for `vzmigrate` to
    /// the other (`eth1` 192.0.2.1 and .2, `migrate.conf` naming the other
    /// as `b` and `a` with its key), both left in the shell. `extra_peer`
    /// adds an entry to A's `MIGRATE_PEERS` (given B's and A's keys).
    pub fn boot_migration_pair(
        name: &str,
        extra_peer: impl Fn(&str, &str) -> String,
    ) -> Result<(Appliance, Appliance)> {
        let (mut a, mut b) = Appliance::boot_pair(name)?;
        a.enter_shell()?;
        b.enter_shell()?;
        let ka = a.run_ok("vzmigrate --key")?.trim().to_owned();
        let kb = b.run_ok("vzmigrate --key")?.trim().to_owned();
        let extra = extra_peer(&kb, &ka);
        let extra = if extra.is_empty() {
            extra
        } else {
            format!(";{extra}")
        };
        a.configure_migration(
            "192.0.2.1",
            &format!("name=b,address=192.0.2.2,key={kb}{extra}"),
        )?;
        b.configure_migration("192.0.2.2", &format!("name=a,address=192.0.2.1,key={ka}"))?;
        Ok((a, b))
    }

    /// Writes `net.conf` (`eth1` with `ip`/24) and `migrate.conf` (port
    /// 5810, `peers`) and restarts vmmgr, which reads both at its start;
    /// waits until `eth1` has `ip`.
    pub fn configure_migration(&mut self, ip: &str, peers: &str) -> Result<()> {
        self.run_ok(&format!(
            "printf 'MIGRATE_PORT=\"5810\"\\nMIGRATE_PEERS=\"{peers}\"\\n' > /etc/vz/migrate.conf"
        ))?;
        self.configure_net(&format!("ifname=eth1,ip={ip}/24"), "", "eth1", ip)
    }

    /// Writes `net.conf` (`eth0` by DHCP, then the NETIF entries `link`,
    /// then the lines `extra`) and restarts vmmgr, which applies it at its
    /// start (init starts it again; running VEs are adopted); waits until
    /// the new vmmgr answers and `dev` holds `ip`.
    pub fn configure_net(&mut self, link: &str, extra: &str, dev: &str, ip: &str) -> Result<()> {
        self.run_ok(&format!(
            "printf 'NETIF=\"ifname=eth0,dhcp=yes;{link}\"\\n{extra}\\n' > /etc/vz/net.conf"
        ))?;
        let old = self.run_ok("pidof vmmgr")?;
        self.run_ok("(sleep 1; kill -9 $(pidof vmmgr)) >/dev/null 2>&1 &")?;
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.run_rc("pidof vmmgr")?.0;
            if !now.trim().is_empty()
                && now.trim() != old.trim()
                && self.run_rc("vzlist -a -H -o ctid")?.1 == 0
                && self
                    .run_rc(&format!("ip -o addr show dev {dev}"))?
                    .0
                    .contains(ip)
            {
                // init's console line about the new vmmgr passes first.
                std::thread::sleep(Duration::from_secs(1));
                return Ok(());
            }
        }
        bail!(
            "vmmgr did not come back with {ip} on {dev}:\n{}",
            self.run_ok("ip addr; tail -5 /run/vz/log")?
        )
    }

    /// Boots the image on a fresh overlay with `opts` and waits for `ready`.
    pub fn boot_with(name: &str, opts: Opts) -> Result<Appliance> {
        let mut a = Appliance::start_opts(name, Arc::new(Disk::new()?), 1, opts)?;
        a.wait_ready()?;
        Ok(a)
    }

    /// Boots the image on a fresh overlay and waits for `ready`.
    pub fn boot(name: &str) -> Result<Appliance> {
        let disk = Arc::new(Disk::new()?);
        let mut a = Appliance::start(name, disk, 1)?;
        a.wait_ready()?;
        Ok(a)
    }

    /// Starts QEMU on `disk` without waiting.
    pub fn start(name: &str, disk: Arc<Disk>, boots: u32) -> Result<Appliance> {
        Appliance::start_with(name, disk, boots, vec![])
    }

    /// Starts QEMU on `disk` with extra read-only raw disks, without waiting.
    pub fn start_with(
        name: &str,
        disk: Arc<Disk>,
        boots: u32,
        extra_disks: Vec<PathBuf>,
    ) -> Result<Appliance> {
        Appliance::start_opts(
            name,
            disk,
            boots,
            Opts {
                extra_disks,
                ..Opts::default()
            },
        )
    }

    /// Starts QEMU on `disk` with `opts`, without waiting.
    pub fn start_opts(name: &str, disk: Arc<Disk>, boots: u32, opts: Opts) -> Result<Appliance> {
        let run_dir = tempfile::tempdir()?;
        let mut extra_disks = opts.extra_disks.clone();
        let mut probe_size = None;
        if opts.probe {
            let (probe, size) = probe_disk()?;
            extra_disks.insert(0, probe);
            probe_size = Some(size);
        }
        let machine = image::qemu::Machine {
            disk: disk.overlay.clone(),
            disk_format: "qcow2",
            kvm: std::env::var_os("VZ_TEST_KVM").is_some(),
            memory_mib: opts.memory_mib.unwrap_or(1024),
            cpus: 2,
            console: image::qemu::Console::Pipes,
            mgmt_socket: run_dir.path().join("mgmt.sock"),
            qmp_socket: Some(run_dir.path().join("qmp.sock")),
            hostfwd: opts.hostfwd.clone(),
            extra_disks,
            links: opts.links.clone(),
            tb_mib: opts.tb_mib.unwrap_or(image::qemu::TB_MIB),
        };
        let mut cmd = machine.command()?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
        let serial = Arc::new((Mutex::new(Serial::default()), Condvar::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let serial = Arc::clone(&serial);
            std::thread::spawn(move || pump(stream, &serial));
        }
        let stdin = child.stdin.take();
        let _ = std::fs::create_dir_all(transcript_dir());
        Ok(Appliance {
            name: name.to_owned(),
            boots,
            child: Some(child),
            stdin,
            serial,
            cursor: 0,
            disk,
            run_dir,
            mgmt: None,
            opts,
            probe_size,
        })
    }

    /// Boots the image with the `ve-probe` test helper on a second disk (see
    /// [`probe_disk`]), waits for `ready` and enters the appliance shell.
    pub fn boot_with_probe(name: &str) -> Result<Appliance> {
        let (probe, size) = probe_disk()?;
        let disk = Arc::new(Disk::new()?);
        let mut a = Appliance::start_with(name, disk, 1, vec![probe])?;
        a.probe_size = Some(size);
        a.wait_ready()?;
        a.enter_shell()?;
        Ok(a)
    }

    /// Copies `ve-probe` to `/run/ve-probe` on the appliance itself (from
    /// the appliance shell).
    pub fn install_probe_here(&mut self) -> Result<()> {
        let size = self
            .probe_size
            .context("boot with the probe disk to have ve-probe")?;
        self.run_ok(&format!(
            "head -c {size} /dev/vdb > /run/ve-probe && chmod 755 /run/ve-probe"
        ))?;
        Ok(())
    }

    /// Copies `ve-probe` into running VE `veid` as `/bin/ve-probe` (from the
    /// appliance shell).
    pub fn install_probe(&mut self, veid: u32) -> Result<()> {
        let size = self
            .probe_size
            .context("boot with Appliance::boot_with_probe to have ve-probe")?;
        self.run_ok(&format!(
            "head -c {size} /dev/vdb | vzctl exec2 {veid} \
             'cat > /bin/ve-probe && chmod 755 /bin/ve-probe'"
        ))?;
        Ok(())
    }

    /// The whole transcript so far.
    pub fn transcript(&self) -> String {
        let (m, _) = &*self.serial;
        let s = m.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&s.bytes).into_owned()
    }

    /// Waits until `pattern` appears after the cursor; returns the text from the
    /// cursor to the end of the match and moves the cursor past it.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.serial;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let hay = &s.bytes[self.cursor.min(s.bytes.len())..];
            if let Some(pos) = find(hay, pattern.as_bytes()) {
                let end = self.cursor + pos + pattern.len();
                let text = String::from_utf8_lossy(&s.bytes[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok(text);
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                let tail = String::from_utf8_lossy(&s.bytes[self.cursor.min(s.bytes.len())..])
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>();
                bail!(
                    "[{}] waited {:?} for {pattern:?}{}; output since the last match:\n{tail}",
                    self.name,
                    timeout,
                    if s.closed { " but QEMU exited" } else { "" },
                );
            }
            s = cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the `ready` line of the current boot; returns the line.
    pub fn wait_ready(&mut self) -> Result<String> {
        self.expect(READY, BOOT_BOUND).with_context(|| {
            format!(
                "boot {} did not reach ready within {BOOT_BOUND:?}",
                self.boots
            )
        })?;
        let rest = self.expect("\n", Duration::from_secs(5))?;
        Ok(format!("{READY}{}", rest.trim_end()))
    }

    /// Types raw text on the console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("QEMU's stdin is closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Types raw bytes on the console (they need not be UTF-8).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self.stdin.as_mut().context("QEMU's stdin is closed")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// Runs a console command and returns its output (up to the next prompt).
    pub fn console(&mut self, line: &str) -> Result<String> {
        self.send(&format!("{line}\r"))?;
        let out = self.expect(PROMPT, COMMAND_TIMEOUT)?;
        Ok(strip_echo(&out, line))
    }

    /// Enters the appliance shell from the console.
    pub fn enter_shell(&mut self) -> Result<()> {
        self.send("shell\r")?;
        self.expect(SHELL_PROMPT, COMMAND_TIMEOUT)?;
        Ok(())
    }

    /// Runs a command in the appliance shell, returns exactly its output.
    ///
    /// The output is framed by markers the shell prints (spelled with an empty
    /// quote in the command, so the echoed command line never matches them),
    /// which keeps line editing and wrapping out of the result.
    pub fn shell(&mut self, line: &str) -> Result<String> {
        self.shell_within(line, COMMAND_TIMEOUT)
    }

    /// [`Appliance::shell`] for commands that may take longer than usual.
    pub fn shell_within(&mut self, line: &str, timeout: Duration) -> Result<String> {
        self.send(&format!("echo @BEG''IN@; {line}; echo @EN''D@\r"))?;
        self.expect("@BEGIN@", COMMAND_TIMEOUT)?;
        let out = self.expect("@END@", timeout)?;
        self.expect(SHELL_PROMPT, COMMAND_TIMEOUT)?;
        let out = out.replace('\r', "");
        let out = out.strip_suffix("@END@").unwrap_or(&out);
        Ok(out.trim_start_matches('\n').to_owned())
    }

    /// Runs a command in the appliance shell; returns its output (stderr
    /// included) and its exit code.
    pub fn run_rc(&mut self, cmd: &str) -> Result<(String, i32)> {
        self.run_rc_within(cmd, COMMAND_TIMEOUT)
    }

    /// [`Appliance::run_rc`] for a command that may take up to `timeout`.
    pub fn run_rc_within(&mut self, cmd: &str, timeout: Duration) -> Result<(String, i32)> {
        let out = self.shell_within(&format!("{cmd} 2>&1; echo \"RC=$?\""), timeout)?;
        let (body, rc) = out.rsplit_once("RC=").unwrap_or((&out, "-1"));
        Ok((body.to_owned(), rc.trim().parse().unwrap_or(-1)))
    }

    /// Runs a command in the appliance shell that must succeed; its output.
    pub fn run_ok(&mut self, cmd: &str) -> Result<String> {
        let (out, rc) = self.run_rc(cmd)?;
        if rc != 0 {
            bail!("`{cmd}` failed with {rc}:\n{out}");
        }
        Ok(out)
    }

    /// Leaves the appliance shell.
    pub fn exit_shell(&mut self) -> Result<()> {
        self.send("exit\r")?;
        self.expect(PROMPT, COMMAND_TIMEOUT)?;
        Ok(())
    }

    /// Sends a QMP command (e.g. `send-key`) and returns the reply line.
    pub fn qmp(&mut self, command: &str) -> Result<String> {
        let path = self.run_dir.path().join("qmp.sock");
        let mut s =
            UnixStream::connect(&path).with_context(|| format!("connecting {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = std::io::BufReader::new(s.try_clone()?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line)?; // greeting
        s.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line)?;
        s.write_all(command.as_bytes())?;
        s.write_all(b"\n")?;
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line)?;
            if line.contains("\"return\"") || line.contains("\"error\"") {
                return Ok(line);
            }
            if line.is_empty() {
                bail!("QMP closed before replying to {command}");
            }
        }
    }

    /// TCG's translation statistics (the monitor's `info jit`): how many
    /// blocks it holds and how often it flushed its whole cache.
    pub fn jit_stats(&mut self) -> Result<String> {
        let reply = self.qmp(
            r#"{"execute":"human-monitor-command","arguments":{"command-line":"info jit"}}"#,
        )?;
        Ok(reply.replace("\\r\\n", "\n").replace("\\n", "\n"))
    }

    /// Sends ctrl-alt-del through the emulated keyboard.
    pub fn ctrl_alt_del(&mut self) -> Result<()> {
        let reply = self.qmp(
            r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}"#,
        )?;
        if !reply.contains("\"return\"") {
            bail!("QMP send-key failed: {reply}");
        }
        Ok(())
    }

    /// One request on the management serial port.
    pub fn mgmt(&mut self, req: &Request) -> Result<Response> {
        if self.mgmt.is_none() {
            let path = self.run_dir.path().join("mgmt.sock");
            let s = UnixStream::connect(&path)
                .with_context(|| format!("connecting {}", path.display()))?;
            s.set_read_timeout(Some(COMMAND_TIMEOUT))?;
            self.mgmt = Some(s);
        }
        let s = self.mgmt.as_mut().context("management channel")?;
        let mut st = vmmgr::stream::Stream(&mut *s);
        let result = (|| {
            proto::write_frame(&mut st, Kind::Request, req)?;
            let mut buf = vec![0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
            proto::read_frame::<_, Response>(&mut st, &mut buf).map(|(_, r)| r)
        })();
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                self.mgmt = None;
                bail!("[{}] management channel: {e}", self.name)
            }
        }
    }

    /// The structured appliance status over the management channel.
    pub fn status(&mut self) -> Result<proto::ApplianceStatus> {
        match self.mgmt(&Request::ApplianceStatus)? {
            Response::ApplianceStatus(s) => Ok(s),
            other => bail!("unexpected reply {other:?}"),
        }
    }

    /// Waits for QEMU to exit (after poweroff).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("QEMU already reaped")?;
        loop {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "[{}] QEMU still running {timeout:?} after poweroff",
                    self.name
                );
            }
            // Polling a child's exit: std offers no blocking wait with a deadline.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills QEMU at once (a power cut for the guest).
    pub fn power_cut(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts the machine again on the same disk (after poweroff or a power cut).
    pub fn restart(self) -> Result<Appliance> {
        let name = self.name.clone();
        let disk = Arc::clone(&self.disk);
        let boots = self.boots + 1;
        let opts = self.opts.clone();
        drop(self);
        let mut a = Appliance::start_opts(&name, disk, boots, opts)?;
        a.wait_ready()?;
        Ok(a)
    }

    /// Reboots from the console's shell (`reboot`) and waits for the next
    /// boot's ready line; fails if init had to kill a service that did not
    /// stop in time (vmmgr once deadlocked there with VEs running). Leaves
    /// the shell entered again.
    pub fn reboot(&mut self) -> Result<()> {
        self.exit_shell()?;
        self.send("reboot\r")?;
        let down = self.expect("init: reboot now", Duration::from_secs(120))?;
        if down.contains("did not stop within") {
            bail!(
                "[{}] a service did not stop in time at reboot:\n{down}",
                self.name
            );
        }
        self.rebooted()?;
        self.enter_shell()
    }

    /// Counts a reboot inside the same QEMU process.
    pub fn rebooted(&mut self) -> Result<String> {
        self.boots += 1;
        self.mgmt = None;
        self.wait_ready()
    }

    fn save_transcript(&self) -> PathBuf {
        let path = transcript_dir().join(format!("{}.boot{}.log", self.name, self.boots));
        let _ = std::fs::write(&path, self.transcript());
        path
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let path = self.save_transcript();
        if std::thread::panicking() {
            eprintln!(
                "[{}] serial transcript kept in {}",
                self.name,
                path.display()
            );
        }
    }
}

fn pump(mut stream: Box<dyn Read + Send>, serial: &(Mutex<Serial>, Condvar)) {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        let (m, cv) = serial;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            s.closed = true;
            cv.notify_all();
            return;
        }
        s.bytes.extend_from_slice(&buf[..n]);
        cv.notify_all();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Drops the echoed command line from console output, and the prompt.
fn strip_echo(out: &str, line: &str) -> String {
    let out = out.replace('\r', "");
    let out = out
        .strip_suffix(PROMPT)
        .or_else(|| out.strip_suffix(SHELL_PROMPT))
        .unwrap_or(&out);
    match out.find(line) {
        Some(i) if i < 8 => out[i + line.len()..].trim_start_matches('\n').to_owned(),
        _ => out.to_owned(),
    }
}

/// Builds the `ve-probe` test helper (static) and wraps it in a raw disk image
/// for `Appliance::start_with`; returns the image and the binary's size.
/// Inside the appliance: `head -c SIZE /dev/vdb > FILE`.
pub fn probe_disk() -> Result<(PathBuf, u64)> {
    static BUILT: std::sync::Mutex<Option<(PathBuf, u64)>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = built.as_ref() {
        return Ok(b.clone());
    }
    let ws = image::workspace_dir();
    let target_dir = ws.join("target/probe");
    let status = std::process::Command::new("cargo")
        .current_dir(&ws)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "qemu-tests",
            "--bin",
            "ve-probe",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("building ve-probe")?;
    if !status.success() {
        bail!("building ve-probe failed");
    }
    let bin = target_dir.join("x86_64-unknown-linux-gnu/release/ve-probe");
    let mut data = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let size = data.len() as u64;
    data.resize(data.len().div_ceil(512) * 512, 0);
    let img = target_dir.join("ve-probe.img");
    std::fs::write(&img, data)?;
    *built = Some((img.clone(), size));
    Ok((img, size))
}

/// Path helper for tests that want the overlay of a disk.
pub fn overlay_of(disk: &Disk) -> &Path {
    &disk.overlay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_stripped() {
        assert_eq!(strip_echo("status\r\nhello\r\n\nvz# ", "status"), "hello\n");
        assert_eq!(find(b"abcdef", b"cd"), Some(2));
    }
}
