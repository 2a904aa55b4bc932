//! The `vmmgr` control protocol.
//!
//! `no_std`: used by `vmmgr`, its command-line clients and `qemu-tests`, and
//! meant to be small enough for any client. Messages are typed enums with
//! bounded (heapless) fields, encoded with postcard, and carried in an envelope:
//!
//! ```text
//! magic "VZ" (2) | version (1) | kind (1) | length (u32 LE) | crc32 (u32 LE) | payload
//! ```
//!
//! The length is checked against [`MAX_PAYLOAD`] before anything is read, so a
//! hostile or broken peer cannot make a reader allocate or wait for more than
//! that; the checksum catches corruption on the serial line.
#![no_std]

#[cfg(feature = "std")]
extern crate std;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Bytes that open every frame.
pub const MAGIC: [u8; 2] = *b"VZ";
/// Protocol version; a peer speaking another one gets [`FrameError::Version`].
pub const VERSION: u8 = 2;
/// Envelope size in bytes.
pub const HEADER_LEN: usize = 12;
/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 16384;

/// Kind byte of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Response = 2,
    /// vmmgr's VE setup helper (`vesetup`) reporting back to vmmgr.
    Setup = 3,
}

/// Short text fields (names, states).
pub type Name = String<64>;
/// Longer text fields (messages, paths).
pub type Text = String<256>;

/// What a client asks. (Variants differ in size by design: no `alloc`.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Liveness and version check.
    Ping,
    /// The appliance's health as vmmgr sees it.
    ApplianceStatus,
    /// A `vzctl` operation on one VE.
    Ve { veid: u32, op: VeOp },
    /// One page of `vzlist`: VEs with a VEID above `after`, in VEID order.
    List { after: u32 },
    /// A VE's resources: beancounters, disk quota, CPU and I/O settings.
    Resources { veid: u32 },
    /// `vzpkg list`: the OS templates present.
    Templates,
    /// `vzpkg install`: a template image on the appliance (`NAME.erofs`,
    /// with `NAME.conf` beside it). Answered by `VeDone` without `info`.
    TemplateInstall { path: Text },
    /// `vzmigrate`: the VE to another appliance. Answered by `Progress`
    /// lines, then `VeDone` with vzmigrate's exit code.
    Migrate {
        veid: u32,
        dest: Name,
        online: bool,
        remove_area: bool,
        keep_dst: bool,
        /// `--new-id`: DEST takes it under this VEID (offline only).
        new_id: Option<u32>,
    },
}

/// One OS template as `vzpkg list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub name: Name,
    pub version: Name,
    /// Bytes on disk.
    pub size: u64,
    /// `image` (on VZDATA, replaceable) or `builtin` (part of the appliance).
    pub kind: Name,
    pub description: Text,
    /// VE configs naming it.
    pub ves: u32,
}

/// `vzctl` operations carried to vmmgr.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VeOp {
    Create {
        ostemplate: Option<Name>,
        config: Option<Name>,
        hostname: Option<Name>,
        name: Option<Name>,
    },
    Destroy,
    Start {
        force: bool,
    },
    Stop {
        fast: bool,
    },
    Restart,
    /// `chkpnt` (`suspend`): the VE's state to a dump directory (DUMPDIR's
    /// `Dump.<VEID>` unless given), then it stops.
    Chkpnt {
        dumpfile: Option<Text>,
    },
    /// `restore` (`resume`): the VE back from its dump, which is removed.
    Restore {
        dumpfile: Option<Text>,
    },
    Status,
    Mount,
    Umount,
    /// `set`: `(KEY, value)` in config-file terms; an empty value removes.
    /// `vzctl set`: typed parameters, each already checked by the client
    /// (vmmgr checks the whole config again before anything changes).
    Set {
        params: Vec<SetParam, 8>,
        save: bool,
    },
}

/// One `vzctl set` parameter. (Mapped to its config key by vmmgr's key
/// table; a test there checks both agree.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetParam {
    Hostname(Name),
    Name(Name),
    Description(Text),
    OnBoot(bool),
    BootOrder(u32),
    Disabled(bool),
    StopTimeout(u32),
    CpuUnits(u32),
    /// Percent of one CPU; 0 = no limit.
    CpuLimit(u32),
    /// CPUs' worth; 0 = all.
    Cpus(u32),
    /// A beancounter (`--numproc`, `--physpages`, ...): its index in
    /// [`UBC_NAMES`] and its value.
    Beancounter {
        resource: u8,
        value: Ubc,
    },
    /// `--cpumask`, `--nodemask`: a list (`0-2,7`) or `all`.
    CpuMask(Name),
    NodeMask(Name),
    /// `--vm_overcommit`, as written (a decimal number).
    VmOvercommit(Name),
    /// `--ioprio` 0..7.
    IoPrio(u8),
    /// `--iolimit` in bytes per second, `--iopslimit` in operations per
    /// second; 0 = none.
    IoLimit(u64),
    IopsLimit(u64),
    /// `--diskspace` (1 KiB blocks) and `--diskinodes`, `soft:hard`.
    DiskSpace(Ubc),
    DiskInodes(Ubc),
    /// `--quotatime`, seconds.
    QuotaTime(u32),
    /// `--devnodes` and `--devices`, each as the config writes it (the
    /// whole list after the change).
    DevNodes(Text),
    Devices(Text),
    /// `--ipadd` and `--ipdel`: addresses (`ADDR[/PREFIX]`, space
    /// separated, checked); `--ipdel all` removes every one.
    IpAdd(LongText),
    IpDel(LongText),
    /// `--portfwd`: the whole PORTFWD list (ours), checked.
    PortFwd(Text),
    /// `--nameserver`, `--searchdomain`: the whole list, or `inherit`.
    NameServer(Text),
    SearchDomain(Text),
    /// `--netif_add ifname[,mac,host_ifname,host_mac,bridge]` (as NETIF
    /// writes it), `--netif_del ifname|all`.
    NetIfAdd(Text),
    NetIfDel(Text),
    /// `--netdev_add NAME`, `--netdev_del NAME`.
    NetDevAdd(Name),
    NetDevDel(Name),
    /// `--checkpoint yes|no` (CHECKPOINT, ours).
    Checkpoint(bool),
}

/// Beancounters in the order `/proc/user_beancounters` prints them (the
/// first 24, with OpenVZ's `dummy` rows), then `swappages` (index 24,
/// shown by `/proc/bc/<id>/resources` and vzlist).
pub const UBC_NAMES: [&str; UBC_COUNT] = [
    "kmemsize",
    "lockedpages",
    "privvmpages",
    "shmpages",
    "dummy",
    "numproc",
    "physpages",
    "vmguarpages",
    "oomguarpages",
    "numtcpsock",
    "numflock",
    "numpty",
    "numsiginfo",
    "tcpsndbuf",
    "tcprcvbuf",
    "othersockbuf",
    "dgramrcvbuf",
    "numothersock",
    "dcachesize",
    "numfile",
    "dummy",
    "dummy",
    "dummy",
    "numiptent",
    "swappages",
];

/// How many beancounters there are ([`UBC_NAMES`]).
pub const UBC_COUNT: usize = 25;

/// How many `/proc/user_beancounters` prints (OpenVZ's `UB_RESOURCES_COMPAT`).
pub const UBC_PRINTED: usize = 24;

/// The index of beancounter `name` (not `dummy`).
pub fn ubc_index(name: &str) -> Option<usize> {
    UBC_NAMES.iter().position(|n| *n == name && name != "dummy")
}

/// A VE's resources as `vzctl ubc` and `vzlist` show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub veid: u32,
    /// The VE exists (has a config).
    pub exists: bool,
    pub running: bool,
    /// Beancounters, indexed as [`UBC_NAMES`] (held, maxheld and failcnt
    /// are 0 when the VE is not running).
    pub ubc: Vec<UbcRow, UBC_COUNT>,
    /// Disk quota: KiB and inodes (usage 0 when unknown).
    pub diskspace: Quota,
    pub diskinodes: Quota,
    pub cpuunits: u32,
    /// Percent of one CPU (0: none), CPUs (0: all).
    pub cpulimit: u32,
    pub cpus: u32,
    pub cpumask: Name,
    pub nodemask: Name,
    pub ioprio: u8,
    /// Bytes/s and operations/s (0: none).
    pub iolimit: u64,
    pub iopslimit: u64,
    /// Load average of the VE's processes, in hundredths.
    pub laverage: [u32; 3],
    /// VM_OVERCOMMIT in thousandths (0: unset).
    pub vm_overcommit: u32,
    pub devnodes: Text,
    pub devices: Text,
}

/// Usage and limits of one quota (`UNLIMITED` when not set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub usage: u64,
    pub soft: u64,
    pub hard: u64,
}

/// One beancounter of a VE: usage and peak, the two controls, and how many
/// times an allocation was refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UbcRow {
    pub held: u64,
    pub maxheld: u64,
    pub barrier: u64,
    pub limit: u64,
    pub failcnt: u64,
}

/// A `barrier:limit` pair; [`Ubc::UNLIMITED`] for `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ubc {
    pub barrier: u64,
    pub limit: u64,
}

impl Ubc {
    /// OpenVZ's `unlimited` (LONG_MAX).
    pub const UNLIMITED: u64 = i64::MAX as u64;
}

/// One VE as `vzlist` and `vzctl status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeInfo {
    pub veid: u32,
    /// The config file exists.
    pub exists: bool,
    /// `running`, `stopped`, `mounted` or `invalid` (config errors).
    pub status: Name,
    pub mounted: bool,
    pub name: Name,
    pub hostname: Name,
    pub description: Text,
    pub ostemplate: Name,
    pub onboot: Option<bool>,
    pub bootorder: u32,
    pub disabled: bool,
    /// Processes in the VE (running only).
    pub numproc: Option<u32>,
    /// Init's pid on the appliance (running only).
    pub init_pid: u32,
    /// Init's start time (clock ticks since boot, `/proc/<pid>/stat` field
    /// 22), so a client joining the VE can tell the init from a reused pid.
    pub init_start: u64,
    pub uptime_s: u64,
    /// Why the VE cannot start (config errors), empty otherwise.
    pub error: Text,
    pub private: Text,
    pub root: Text,
    /// The VE's addresses, space-separated: those in force while it runs
    /// (no prefix, as the kernel holds them), else IP_ADDRESS as written.
    pub ip: LongText,
    /// Forwarded appliance ports (ours, PORTFWD): in force while it runs,
    /// else as configured.
    pub portfwd: Text,
    /// The running VE was started with CHECKPOINT=yes: no namespaces of
    /// its own (`vzctl exec` gives its commands the same filter).
    pub checkpoint: bool,
}

/// A partition of the appliance and how it was found at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub label: Name,
    pub device: Name,
    pub mount_point: Name,
    /// `clean`, `unclean`, `errors`, `unknown` or `read-only`.
    pub state_at_boot: Name,
    /// Mount options as the kernel reports them now (empty if not mounted).
    pub options: Text,
}

/// The appliance's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplianceStatus {
    pub kernel: Name,
    pub uptime_ms: u64,
    /// Why the appliance runs degraded; empty when healthy.
    pub degraded: Vec<Text, 8>,
    pub partitions: Vec<Partition, 4>,
    /// Controllers enabled for the VE subtree (`/sys/fs/cgroup/vz`).
    pub ve_controllers: Text,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    /// Processes on the appliance, and how many of them are zombies.
    pub processes: u32,
    pub zombies: u32,
    /// The appliance's interfaces with their addresses, and its default
    /// routes, one line each.
    pub network: Vec<Text, 24>,
}

/// Errors vmmgr reports to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request could not be decoded.
    BadRequest,
    /// The request was understood but failed.
    Failed,
}

/// What vmmgr answers.
///
/// Variants differ in size by design: the crate is `no_std` without `alloc`, so
/// large replies cannot be boxed; a `Response` lives on a server thread's stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Pong {
        version: u8,
        server: Name,
    },
    ApplianceStatus(ApplianceStatus),
    Error {
        code: ErrorCode,
        message: Text,
    },
    /// The outcome of a `VeOp`: OpenVZ's exit code (0 = success) and a message
    /// for the user; `info` is the VE after the operation.
    VeDone {
        code: u8,
        message: Text,
        info: Option<VeInfo>,
    },
    /// A page of VEs; `more` means ask again with `after` = the last VEID.
    List {
        ves: Vec<VeInfo, 8>,
        more: bool,
    },
    Resources(Resources),
    Templates {
        list: Vec<TemplateInfo, 32>,
    },
    /// One line of a long operation's progress (`vzmigrate`).
    Progress {
        line: Text,
    },
}

/// Messages longer than [`Text`] (setup errors name paths and options).
pub type LongText = String<1024>;

/// What vmmgr asks `vesetup` to build (one frame, kind [`Kind::Setup`], on
/// the helper's fd 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupSpec {
    pub veid: u32,
    /// Template tree (read-only lower layer).
    pub template: Text,
    /// The VE's private area (`upper/`, `work/`).
    pub private: Text,
    /// Staging mount point (`/vz/root/<VEID>`).
    pub root: Text,
    /// The VE's cgroup directory.
    pub cgroup: Text,
    pub uid_base: u32,
    pub gid_base: u32,
    pub id_count: u32,
    pub hostname: Name,
    pub policy_dir: Text,
    /// The template's init program.
    pub init: Text,
    /// The most ptys the VE's devpts hands out (NUMPTY).
    pub pty_max: u32,
    /// DEVNODES to make in the VE's /dev: paths under /dev, space-separated.
    pub devnodes: Text,
    /// IP_ADDRESS (`ADDR[/PREFIX]`, space-separated): the VE gets `venet0`
    /// with them before its init runs; none, no `venet0`.
    pub ipaddr: LongText,
    /// NAMESERVER and SEARCHDOMAIN for its resolv.conf, space-separated.
    pub nameservers: Text,
    pub searchdomains: Text,
    /// NETIF with names and MACs filled in, and NETDEV.
    pub netif: LongText,
    pub netdev: Text,
    /// Empty: a start. Else the CRIU images directory to restore the VE
    /// from (its root is built as for a start, then CRIU brings back the
    /// processes, mounts and network namespace).
    pub restore: Text,
    /// CHECKPOINT: the VE's filter denies new namespaces.
    pub checkpoint: bool,
}

/// The steps of a `vesetup` run, in the order of `SetupReply::Started`'s
/// `steps_us`.
pub const SETUP_STEPS: [&str; 10] = [
    "policy", "mountns", "userns", "layers", "dev", "init", "net", "kernfs", "pivot", "exec",
];

/// What `vesetup` reports to vmmgr (one frame, kind [`Kind::Setup`]); with
/// `Started`, a pidfd of the VE init travels beside it (SCM_RIGHTS).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupReply {
    /// The VE init runs the template's init program; `steps_us` is how
    /// long each of [`SETUP_STEPS`] took, in microseconds.
    Started {
        pid: u32,
        start_time: u64,
        steps_us: Vec<u32, 16>,
    },
    /// The start failed at `step`; `broken_init` when the template's init
    /// program itself could not be executed (OpenVZ exit code 47).
    Failed {
        step: LongText,
        errno: i32,
        broken_init: bool,
    },
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The stream ended cleanly before a frame started.
    Eof,
    /// The stream ended inside a frame, or failed.
    Io,
    BadMagic,
    Version(u8),
    BadKind(u8),
    /// Payload longer than [`MAX_PAYLOAD`] (or than the caller's buffer).
    TooLong(u32),
    Checksum,
    /// Postcard could not decode or encode the payload.
    Encoding,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Eof => write!(f, "end of stream"),
            FrameError::Io => write!(f, "stream failed or ended inside a frame"),
            FrameError::BadMagic => write!(f, "frame does not start with \"VZ\""),
            FrameError::Version(v) => {
                write!(f, "protocol version {v} (this side speaks {VERSION})")
            }
            FrameError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::TooLong(n) => write!(f, "payload of {n} bytes exceeds {MAX_PAYLOAD}"),
            FrameError::Checksum => write!(f, "checksum mismatch"),
            FrameError::Encoding => write!(f, "payload encoding"),
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected), as zlib computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Encodes `msg` as one frame into `buf`; returns the frame's length.
pub fn encode<T: Serialize>(kind: Kind, msg: &T, buf: &mut [u8]) -> Result<usize, FrameError> {
    if buf.len() < HEADER_LEN {
        return Err(FrameError::TooLong(0));
    }
    let (head, body) = buf.split_at_mut(HEADER_LEN);
    let limit = body.len().min(MAX_PAYLOAD);
    let used = postcard::to_slice(msg, &mut body[..limit])
        .map_err(|_| FrameError::Encoding)?
        .len();
    head[0..2].copy_from_slice(&MAGIC);
    head[2] = VERSION;
    head[3] = kind as u8;
    head[4..8].copy_from_slice(&(used as u32).to_le_bytes());
    head[8..12].copy_from_slice(&crc32(&body[..used]).to_le_bytes());
    Ok(HEADER_LEN + used)
}

/// Checks an envelope; returns the frame's kind and payload length.
pub fn check_header(head: &[u8; HEADER_LEN]) -> Result<(Kind, usize, u32), FrameError> {
    if head[0..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if head[2] != VERSION {
        return Err(FrameError::Version(head[2]));
    }
    let kind = match head[3] {
        1 => Kind::Request,
        2 => Kind::Response,
        3 => Kind::Setup,
        k => return Err(FrameError::BadKind(k)),
    };
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    Ok((kind, len as usize, crc))
}

/// Decodes one whole frame held in `frame`.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<(Kind, T), FrameError> {
    let head: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Io)?;
    let (kind, len, crc) = check_header(head)?;
    let body = frame
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or(FrameError::Io)?;
    if crc32(body) != crc {
        return Err(FrameError::Checksum);
    }
    let msg = postcard::from_bytes(body).map_err(|_| FrameError::Encoding)?;
    Ok((kind, msg))
}

/// Writes one frame to an embedded-io stream.
pub fn write_frame<W: embedded_io::Write, T: Serialize>(
    w: &mut W,
    kind: Kind,
    msg: &T,
) -> Result<(), FrameError> {
    let mut buf = [0u8; HEADER_LEN + MAX_PAYLOAD];
    let n = encode(kind, msg, &mut buf)?;
    w.write_all(&buf[..n]).map_err(|_| FrameError::Io)?;
    w.flush().map_err(|_| FrameError::Io)
}

/// Reads one frame from an embedded-io stream into `buf` and decodes it.
/// Never reads more than the header plus the announced (bounded) payload.
pub fn read_frame<'a, R: embedded_io::Read, T: Deserialize<'a>>(
    r: &mut R,
    buf: &'a mut [u8],
) -> Result<(Kind, T), FrameError> {
    let mut head = [0u8; HEADER_LEN];
    // Distinguish a clean end of stream (between frames) from a cut frame.
    let first = match r.read(&mut head[..1]) {
        Ok(0) => return Err(FrameError::Eof),
        Ok(n) => n,
        Err(_) => return Err(FrameError::Io),
    };
    r.read_exact(&mut head[first..])
        .map_err(|_| FrameError::Io)?;
    let (_, len, _) = check_header(&head)?;
    if HEADER_LEN + len > buf.len() {
        return Err(FrameError::TooLong(len as u32));
    }
    buf[..HEADER_LEN].copy_from_slice(&head);
    r.read_exact(&mut buf[HEADER_LEN..HEADER_LEN + len])
        .map_err(|_| FrameError::Io)?;
    decode(&buf[..HEADER_LEN + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ApplianceStatus {
        let mut partitions = Vec::new();
        let _ = partitions.push(Partition {
            label: Name::try_from("VZDATA").expect("fits"),
            device: Name::try_from("/dev/vda3").expect("fits"),
            mount_point: Name::try_from("/vz").expect("fits"),
            state_at_boot: Name::try_from("clean").expect("fits"),
            options: Text::try_from("rw,noatime,prjquota").expect("fits"),
        });
        ApplianceStatus {
            kernel: Name::try_from("6.1.0").expect("fits"),
            uptime_ms: 1234,
            degraded: Vec::new(),
            partitions,
            ve_controllers: Text::try_from("cpu memory pids").expect("fits"),
            mem_total_kib: 1,
            mem_available_kib: 2,
            processes: 7,
            zombies: 0,
            network: Vec::from_slice(&[Text::try_from("eth0 up 203.0.113.15/24").expect("fits")])
                .expect("fits"),
        }
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip_every_message() {
        let mut buf = [0u8; 4096];
        let mut params = Vec::new();
        let _ = params.push(SetParam::Hostname(Name::try_from("h").expect("fits")));
        let _ = params.push(SetParam::OnBoot(true));
        let _ = params.push(SetParam::Beancounter {
            resource: 5,
            value: Ubc {
                barrier: 10,
                limit: Ubc::UNLIMITED,
            },
        });
        for req in [
            Request::Resources { veid: 7 },
            Request::Ping,
            Request::ApplianceStatus,
            Request::List { after: 101 },
            Request::Ve {
                veid: 101,
                op: VeOp::Start { force: true },
            },
            Request::Ve {
                veid: 102,
                op: VeOp::Set { params, save: true },
            },
        ] {
            let n = encode(Kind::Request, &req, &mut buf).expect("encode");
            let (k, back): (Kind, Request) = decode(&buf[..n]).expect("decode");
            assert_eq!((k, back), (Kind::Request, req));
        }
        let resps = [
            Response::Pong {
                version: VERSION,
                server: Name::try_from("vmmgr").expect("fits"),
            },
            Response::ApplianceStatus(status()),
            Response::Error {
                code: ErrorCode::BadRequest,
                message: Text::try_from("nope").expect("fits"),
            },
            Response::Resources(Resources {
                veid: 101,
                exists: true,
                running: true,
                // Every row at its largest still fits a frame.
                ubc: [UbcRow {
                    held: u64::MAX,
                    maxheld: u64::MAX,
                    barrier: Ubc::UNLIMITED,
                    limit: Ubc::UNLIMITED,
                    failcnt: u64::MAX,
                }; UBC_COUNT]
                    .into_iter()
                    .collect(),
                diskspace: Quota {
                    usage: u64::MAX,
                    soft: u64::MAX,
                    hard: u64::MAX,
                },
                diskinodes: Quota::default(),
                cpuunits: 1000,
                cpulimit: 25,
                cpus: 1,
                cpumask: Name::try_from("0-3").expect("fits"),
                nodemask: Name::new(),
                ioprio: 4,
                iolimit: u64::MAX,
                iopslimit: u64::MAX,
                laverage: [u32::MAX; 3],
                vm_overcommit: 1500,
                devnodes: Text::try_from("net/tun:rw").expect("fits"),
                devices: Text::new(),
            }),
        ];
        assert_eq!(ubc_index("numproc"), Some(5));
        assert_eq!(ubc_index("swappages"), Some(24));
        assert_eq!(ubc_index("dummy"), None);
        for resp in resps {
            let n = encode(Kind::Response, &resp, &mut buf).expect("encode");
            let (_, back): (Kind, Response) = decode(&buf[..n]).expect("decode");
            assert_eq!(back, resp);
        }
    }

    #[test]
    fn corrupted_frames_are_refused() {
        let mut buf = [0u8; 256];
        let n = encode(Kind::Request, &Request::ApplianceStatus, &mut buf).expect("encode");
        let mut bad = buf;
        bad[HEADER_LEN] ^= 0xFF;
        assert_eq!(
            decode::<Request>(&bad[..n]).map(|_| ()),
            Err(FrameError::Checksum)
        );
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(
            decode::<Request>(&bad[..n]).map(|_| ()),
            Err(FrameError::BadMagic)
        );
        let mut bad = buf;
        bad[2] = 9;
        assert_eq!(
            decode::<Request>(&bad[..n]).map(|_| ()),
            Err(FrameError::Version(9))
        );
        let mut bad = buf;
        bad[4..8].copy_from_slice(&(u32::MAX).to_le_bytes());
        assert_eq!(
            decode::<Request>(&bad[..n]).map(|_| ()),
            Err(FrameError::TooLong(u32::MAX))
        );
        assert_eq!(
            decode::<Request>(&buf[..n - 1]).map(|_| ()),
            Err(FrameError::Io)
        );
    }

    /// A deterministic stand-in for the cargo-fuzz target (which needs
    /// nightly): random bytes and single-byte mutations of valid frames never
    /// panic a decoder.
    #[test]
    fn mutated_and_random_frames_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = [0u8; 4096];
        let resp = Response::ApplianceStatus(status());
        let n = encode(Kind::Response, &resp, &mut valid).expect("encode");
        for _ in 0..20_000 {
            let mut frame = valid[..n].to_vec();
            let at = (next() as usize) % frame.len();
            frame[at] = next() as u8;
            // Keep the checksum right half the time, so postcard sees the damage.
            if next() % 2 == 0 && at >= HEADER_LEN {
                let crc = crc32(&frame[HEADER_LEN..]);
                frame[8..12].copy_from_slice(&crc.to_le_bytes());
            }
            let _ = decode::<Response>(&frame);
            let _ = decode::<Request>(&frame);
            let len = (next() as usize) % 64;
            let junk: [u8; 64] = core::array::from_fn(|_| next() as u8);
            let _ = decode::<Request>(&junk[..len]);
            let mut r: &[u8] = &junk[..len];
            let mut buf = [0u8; 128];
            let _ = read_frame::<_, Request>(&mut r, &mut buf);
        }
    }

    #[test]
    fn oversized_announcement_is_refused_before_reading() {
        let mut head = [0u8; HEADER_LEN];
        head[0..2].copy_from_slice(&MAGIC);
        head[2] = VERSION;
        head[3] = Kind::Request as u8;
        head[4..8].copy_from_slice(&((MAX_PAYLOAD as u32) + 1).to_le_bytes());
        let mut r: &[u8] = &head;
        let mut buf = [0u8; 64];
        assert_eq!(
            read_frame::<_, Request>(&mut r, &mut buf).map(|_| ()),
            Err(FrameError::TooLong(MAX_PAYLOAD as u32 + 1))
        );
    }

    #[test]
    fn streams_carry_frames_back_to_back() {
        let mut wire = [0u8; 512];
        let mut w: &mut [u8] = &mut wire;
        write_frame(&mut w, Kind::Request, &Request::Ping).expect("write");
        write_frame(&mut w, Kind::Request, &Request::ApplianceStatus).expect("write");
        let left = w.len();
        let used = wire.len() - left;
        let mut r: &[u8] = &wire[..used];
        let mut buf = [0u8; 512];
        let (_, a): (Kind, Request) = read_frame(&mut r, &mut buf).expect("first");
        assert_eq!(a, Request::Ping);
        let (_, b): (Kind, Request) = read_frame(&mut r, &mut buf).expect("second");
        assert_eq!(b, Request::ApplianceStatus);
        assert_eq!(
            read_frame::<_, Request>(&mut r, &mut buf).map(|_| ()),
            Err(FrameError::Eof)
        );
    }
}
