//! `vzmigrate`: moving a VE to another appliance, offline or live.
//!
//! - `mod.rs`: who may migrate to whom (`migrate.conf` in the boot config),
//!   this appliance's key, and vzmigrate's exit codes;
//! - `channel`: the authenticated, encrypted channel (a Noise XX handshake
//!   with both appliances' static keys, then ChaCha20-Poly1305 frames);
//! - `wire`: the messages on it;
//! - `tree`: a directory as a tar stream (the private area, CRIU's images)
//!   and back, by descriptors;
//! - `crate::daemon::migrate`: the two ends' steps.

pub mod channel;
pub mod tree;
pub mod wire;

use base64::Engine as _;
use std::path::{Path, PathBuf};

/// The boot config's file naming the peers.
pub const CONF: &str = "migrate.conf";
/// The port a peer listens on when its entry names none.
pub const DEFAULT_PORT: u16 = 5810;
/// Where this appliance's key pair is kept (VZDATA, root's alone).
pub const KEY_DIR: &str = "/vz/migrate";

/// vzmigrate's exit codes (OpenVZ's, `../shared/reference/openvz.md` §6.2
/// and §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Usage = 1,
    /// DEST unknown, unreachable, or not the appliance its key says.
    Connect = 4,
    /// Copying the private area or the dump failed.
    Copy = 6,
    /// The restore (or start) at DEST failed.
    StartDest = 7,
    /// The checkpoint (or stop) at the source failed.
    StopSource = 8,
    /// The VEID exists at DEST.
    Exists = 9,
    /// The VE does not exist here.
    NotHere = 10,
    /// An address of the VE is in use at DEST.
    IpInUse = 12,
    /// Another operation on the VE is in progress.
    Locked = 20,
    /// The connection broke mid-way.
    Broken = 21,
    /// DEST did not answer in time.
    Timeout = 22,
    /// DEST said something out of turn.
    Protocol = 26,
    /// Not enough free space at DEST.
    DiskSpace = 31,
    /// The VE's OS template is not at DEST.
    Template = 91,
}

impl Code {
    pub const fn get(self) -> u8 {
        self as u8
    }

    /// The code DEST sent back (one of ours; anything else is a protocol
    /// error).
    pub fn from_u8(n: u8) -> Code {
        [
            Code::Ok,
            Code::Usage,
            Code::Connect,
            Code::Copy,
            Code::StartDest,
            Code::StopSource,
            Code::Exists,
            Code::NotHere,
            Code::IpInUse,
            Code::Locked,
            Code::Broken,
            Code::Timeout,
            Code::Protocol,
            Code::DiskSpace,
            Code::Template,
        ]
        .into_iter()
        .find(|c| c.get() == n)
        .unwrap_or(Code::Protocol)
    }
}

/// An appliance this one migrates to and accepts migrations from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub address: std::net::IpAddr,
    pub port: u16,
    /// Its X25519 public key.
    pub key: [u8; 32],
}

/// `migrate.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    /// Where this appliance accepts migrations (`MIGRATE_PORT`); none: it
    /// accepts none.
    pub port: Option<u16>,
    pub peers: Vec<Peer>,
}

impl Conf {
    /// The peer `dest` names: its name, or its address.
    pub fn peer(&self, dest: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| {
            p.name == dest
                || dest
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a == p.address)
        })
    }

    /// Reads `migrate.conf` from the boot config directory; absent: no
    /// peers, nothing accepted.
    pub fn load(config_dir: &Path) -> (Conf, Vec<vzconfig::Diag>) {
        let file = config_dir.join(CONF);
        match std::fs::read_to_string(&file) {
            Ok(text) => parse(&text, &file),
            Err(_) => (Conf::default(), Vec::new()),
        }
    }
}

/// A 32-byte key in base64 (as WireGuard writes them).
pub fn parse_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("key {s:?} is not base64 ({e})"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("key {s:?} is {} bytes, not 32", b.len()))
}

pub fn render_key(k: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Parses `migrate.conf`: `MIGRATE_PORT="5810"` and
/// `MIGRATE_PEERS="name=b,address=192.0.2.2,port=5810,key=BASE64;..."`.
/// Every problem is a diagnostic with file, line and key.
pub fn parse(text: &str, file: &Path) -> (Conf, Vec<vzconfig::Diag>) {
    let (entries, mut diags) = vzconfig::parse(text, file);
    let mut conf = Conf::default();
    let err = |line: usize, key: &str, message: String| vzconfig::Diag {
        severity: vzconfig::Severity::Error,
        file: file.to_owned(),
        line,
        key: Some(key.to_owned()),
        message,
    };
    for e in entries {
        match e.key.as_str() {
            "MIGRATE_PORT" => match e.value.trim() {
                "" | "no" => conf.port = None,
                v => match v.parse::<u16>() {
                    Ok(p) if p > 0 => conf.port = Some(p),
                    _ => diags.push(err(
                        e.line,
                        &e.key,
                        format!("{v:?} is not a port (1-65535); no migration is accepted"),
                    )),
                },
            },
            "MIGRATE_PEERS" => match parse_peers(&e.value) {
                Ok(p) => conf.peers = p,
                Err(m) => diags.push(err(
                    e.line,
                    &e.key,
                    format!("{m}; no peer is known (nothing migrates to or from here)"),
                )),
            },
            other => diags.push(vzconfig::Diag {
                severity: vzconfig::Severity::Warning,
                file: file.to_owned(),
                line: e.line,
                key: Some(other.to_owned()),
                message:
                    "unknown key in migrate.conf (known: MIGRATE_PORT, MIGRATE_PEERS); ignored"
                        .into(),
            }),
        }
    }
    (conf, diags)
}

fn parse_peers(v: &str) -> Result<Vec<Peer>, String> {
    let mut out: Vec<Peer> = Vec::new();
    for entry in v.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (mut name, mut address, mut port, mut key) = (None, None, DEFAULT_PORT, None);
        for field in entry.split(',').map(str::trim) {
            let (k, val) = field
                .split_once('=')
                .ok_or_else(|| format!("peer {entry:?}: {field:?} is not KEY=VALUE"))?;
            match k {
                "name" if vzconfig::valid_name(val) => name = Some(val.to_owned()),
                "name" => {
                    return Err(format!(
                        "peer name {val:?}: use letters, digits, '-', '_', '.'"
                    ))
                }
                "address" => {
                    address = Some(val.parse::<std::net::IpAddr>().map_err(|_| {
                        format!("peer {entry:?}: address {val:?} is not an IPv4 or IPv6 address")
                    })?)
                }
                "port" => {
                    port = val
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("peer {entry:?}: port {val:?} is not 1-65535"))?
                }
                "key" => key = Some(parse_key(val).map_err(|m| format!("peer {entry:?}: {m}"))?),
                _ => {
                    return Err(format!(
                        "peer {entry:?}: unknown field {k:?} (known: name, address, port, key)"
                    ))
                }
            }
        }
        let address = address.ok_or_else(|| format!("peer {entry:?} has no address="))?;
        let key = key.ok_or_else(|| format!("peer {entry:?} has no key="))?;
        let name = name.unwrap_or_else(|| address.to_string());
        if out.iter().any(|p| p.name == name) {
            return Err(format!("peer {name:?} is named twice"));
        }
        out.push(Peer {
            name,
            address,
            port,
            key,
        });
    }
    Ok(out)
}

/// This appliance's static key pair.
#[derive(Clone)]
pub struct Keys {
    pub private: [u8; 32],
    pub public: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("public", &render_key(&self.public))
            .finish_non_exhaustive()
    }
}

/// Files of the key pair under `dir`.
fn key_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("key"), dir.join("key.pub"))
}

/// This appliance's key pair, made at the first call (vmmgr's start) and
/// kept on VZDATA: the private half readable by root alone.
pub fn keys(dir: &Path) -> std::io::Result<Keys> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let (private, public) = key_files(dir);
    if let (Ok(s), Ok(p)) = (
        std::fs::read_to_string(&private),
        std::fs::read_to_string(&public),
    ) {
        if let (Ok(s), Ok(p)) = (parse_key(&s), parse_key(&p)) {
            return Ok(Keys {
                private: s,
                public: p,
            });
        }
        log::warn!(
            "{} or {} is damaged: making a new key pair (peers must learn the new public key)",
            private.display(),
            public.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let kp = snow::Builder::new(channel::params())
        .generate_keypair()
        .map_err(|e| std::io::Error::other(format!("making a key pair: {e}")))?;
    let keys = Keys {
        private: kp
            .private
            .as_slice()
            .try_into()
            .map_err(|_| std::io::Error::other("a key pair of the wrong size"))?,
        public: kp
            .public
            .as_slice()
            .try_into()
            .map_err(|_| std::io::Error::other("a key pair of the wrong size"))?,
    };
    let tmp = dir.join("key.new");
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{}", render_key(&keys.private))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &private)?;
    crate::fsutil::write_atomic(&public, &format!("{}\n", render_key(&keys.public)))?;
    Ok(keys)
}

/// The public key as `vzmigrate --key` prints it (no private file read).
pub fn public_key(dir: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(key_files(dir).1)?;
    parse_key(&text)
        .map(|k| render_key(&k))
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn peers_parse_with_defaults_and_errors_name_the_line() {
        let text = format!(
            "MIGRATE_PORT=\"5811\"\nMIGRATE_PEERS=\"name=b,address=192.0.2.2,key={KEY};address=2001:db8::2,port=6000,key={KEY}\"\n"
        );
        let (c, d) = parse(&text, Path::new("/etc/vz/migrate.conf"));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.port, Some(5811));
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[0].port, DEFAULT_PORT);
        assert_eq!(c.peers[1].name, "2001:db8::2");
        assert_eq!(c.peer("b").map(|p| p.port), Some(DEFAULT_PORT));
        assert_eq!(c.peer("192.0.2.2").map(|p| p.name.as_str()), Some("b"));
        assert!(c.peer("c").is_none());

        let (c, d) = parse(
            "MIGRATE_PORT=\"x\"\nMIGRATE_PEERS=\"name=b,address=192.0.2.2,key=short\"\n",
            Path::new("/etc/vz/migrate.conf"),
        );
        assert_eq!(c, Conf::default());
        assert_eq!(d.len(), 2);
        let all: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert!(all[0].contains("migrate.conf:1"), "{all:?}");
        assert!(
            all[1].contains("migrate.conf:2") && all[1].contains("key"),
            "{all:?}"
        );
        let (_, d) = parse(
            "MIGRATE_PEERS=\"address=192.0.2.2\"\n",
            Path::new("/etc/vz/migrate.conf"),
        );
        assert!(d[0].to_string().contains("no key="), "{d:?}");
    }

    #[test]
    fn a_key_pair_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("migrate");
        let a = keys(&d).expect("made");
        let b = keys(&d).expect("read");
        assert_eq!(a.public, b.public);
        assert_eq!(a.private, b.private);
        assert_ne!(a.public, a.private);
        let mode = std::fs::metadata(d.join("key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
        assert_eq!(public_key(&d).expect("pub"), render_key(&a.public));
    }
}
