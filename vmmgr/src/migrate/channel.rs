//! The migration channel: TCP, a Noise XX handshake (`snow`) in which each
//! appliance proves it holds the static key the other's `migrate.conf`
//! names, then every message in its own ChaCha20-Poly1305 frame
//! (`u16` big-endian length, ciphertext). Nothing a peer sends is acted on
//! before both keys are checked; a frame that fails its tag ends the
//! connection.

use super::wire::{Msg, Part, CHUNK};
use super::{Code, Keys, Peer};
use sha2::Digest;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Both ends' protocol, and the prologue binding the handshake to it.
const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"vzmigrate 2";
/// Largest Noise message.
const MAX_FRAME: usize = 65535;
/// How long a read or a write may wait. (A restore under emulation takes
/// seconds; DEST sends nothing meanwhile.)
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Unacknowledged data this long means the peer is gone.
const USER_TIMEOUT_MS: u32 = 15_000;

pub fn params() -> snow::params::NoiseParams {
    #[allow(clippy::unwrap_used)] // a constant, checked by the unit test
    PATTERN.parse().unwrap()
}

/// An established, authenticated channel.
pub struct Channel {
    stream: TcpStream,
    noise: snow::TransportState,
    /// The peer, as `migrate.conf` names it.
    pub peer: Peer,
    buf: Vec<u8>,
    plain: Vec<u8>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.peer.name)
            .finish_non_exhaustive()
    }
}

/// Why a channel failed, with vzmigrate's code for it.
#[derive(Debug)]
pub struct Error {
    pub code: Code,
    pub message: String,
    /// The peer said so (`Refuse`, `Failed`): not a guess from a broken
    /// link.
    pub said: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            said: false,
        }
    }

    /// An I/O error on the link: a timeout, or a broken connection.
    pub fn io(peer: &str, doing: &str, e: &std::io::Error) -> Error {
        let code = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Code::Timeout,
            _ => Code::Broken,
        };
        Error::new(code, format!("{doing} {peer}: {e}"))
    }
}

/// Either end's handshake: our static key, the protocol's prologue.
fn builder(own: &Keys) -> Result<snow::Builder<'_>, snow::Error> {
    snow::Builder::new(params())
        .local_private_key(&own.private)
        .and_then(|b| b.prologue(PROLOGUE))
}

fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    // A peer that vanished (powered off, its link cut) is noticed within
    // seconds while data is outstanding, not after TCP's minutes.
    rustix::net::sockopt::set_tcp_user_timeout(stream, USER_TIMEOUT_MS)?;
    Ok(())
}

fn write_frame(stream: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(frame.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut out = Vec::with_capacity(2 + frame.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    stream.write_all(&out)
}

fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    buf.resize(usize::from(u16::from_be_bytes(len)), 0);
    stream.read_exact(buf)
}

impl Channel {
    fn new(stream: TcpStream, noise: snow::TransportState, peer: Peer) -> Channel {
        Channel {
            stream,
            noise,
            peer,
            buf: Vec::new(),
            plain: vec![0u8; MAX_FRAME],
        }
    }

    /// Connects to `peer` and runs the handshake as initiator: `peer` must
    /// prove it holds the key `migrate.conf` names for it.
    pub fn connect(peer: &Peer, own: &Keys) -> Result<Channel, Error> {
        let addr = SocketAddr::new(peer.address, peer.port);
        let name = format!("{} ({addr})", peer.name);
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| Error::new(Code::Connect, format!("cannot connect to {name}: {e}")))?;
        tune(&stream).map_err(|e| Error::io(&name, "setting up the connection to", &e))?;
        let hs_err = |e: snow::Error| {
            Error::new(Code::Connect, format!("handshake with {name} failed: {e}"))
        };
        let io_err = |e: std::io::Error| {
            Error::new(
                Code::Connect,
                format!(
                    "handshake with {name}: {e} (is MIGRATE_PORT set there, and does its \
                     migrate.conf name this appliance's key?)"
                ),
            )
        };
        let mut hs = builder(own)
            .and_then(|b| b.build_initiator())
            .map_err(hs_err)?;
        let mut msg = vec![0u8; MAX_FRAME];
        let mut payload = vec![0u8; MAX_FRAME];
        // -> e
        let n = hs.write_message(&[], &mut msg).map_err(hs_err)?;
        write_frame(&mut stream, &msg[..n]).map_err(io_err)?;
        // <- e, ee, s, es
        let mut frame = Vec::new();
        read_frame(&mut stream, &mut frame).map_err(io_err)?;
        hs.read_message(&frame, &mut payload).map_err(hs_err)?;
        let theirs = hs.get_remote_static().unwrap_or_default();
        if theirs != peer.key {
            return Err(Error::new(
                Code::Connect,
                format!(
                    "{name} is not the appliance migrate.conf names: its key is {}, \
                     migrate.conf says {}; nothing was sent",
                    super::render_key(theirs),
                    super::render_key(&peer.key)
                ),
            ));
        }
        // -> s, se
        let n = hs.write_message(&[], &mut msg).map_err(hs_err)?;
        write_frame(&mut stream, &msg[..n]).map_err(io_err)?;
        let noise = hs.into_transport_mode().map_err(hs_err)?;
        Ok(Channel::new(stream, noise, peer.clone()))
    }

    /// Runs the handshake as responder on an accepted connection: the
    /// initiator must hold the key of one of `peers`.
    pub fn accept(mut stream: TcpStream, own: &Keys, peers: &[Peer]) -> Result<Channel, String> {
        let from = stream
            .peer_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        // The handshake is short: a peer that stalls in it is dropped soon.
        tune(&stream).map_err(|e| format!("{from}: {e}"))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let hs_err = |e: snow::Error| format!("handshake with {from} failed: {e}");
        let io_err = |e: std::io::Error| format!("handshake with {from}: {e}");
        let mut hs = builder(own)
            .and_then(|b| b.build_responder())
            .map_err(hs_err)?;
        let mut msg = vec![0u8; MAX_FRAME];
        let mut payload = vec![0u8; MAX_FRAME];
        let mut frame = Vec::new();
        read_frame(&mut stream, &mut frame).map_err(io_err)?;
        hs.read_message(&frame, &mut payload).map_err(hs_err)?;
        let n = hs.write_message(&[], &mut msg).map_err(hs_err)?;
        write_frame(&mut stream, &msg[..n]).map_err(io_err)?;
        read_frame(&mut stream, &mut frame).map_err(io_err)?;
        hs.read_message(&frame, &mut payload).map_err(hs_err)?;
        let theirs = hs.get_remote_static().unwrap_or_default().to_vec();
        let Some(peer) = peers.iter().find(|p| p.key[..] == theirs[..]) else {
            return Err(format!(
                "refused a migration from {from}: its key {} is not in migrate.conf's \
                 MIGRATE_PEERS",
                super::render_key(&theirs)
            ));
        };
        let noise = hs.into_transport_mode().map_err(hs_err)?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        Ok(Channel::new(stream, noise, peer.clone()))
    }

    pub fn set_read_timeout(&self, t: Duration) {
        let _ = self.stream.set_read_timeout(Some(t));
    }

    pub fn send(&mut self, m: &Msg) -> Result<(), Error> {
        let name = self.peer.name.clone();
        let plain = postcard::to_stdvec(m)
            .map_err(|e| Error::new(Code::Protocol, format!("encoding {}: {e}", m.name())))?;
        let mut out = vec![0u8; plain.len() + 16];
        let n = self
            .noise
            .write_message(&plain, &mut out)
            .map_err(|e| Error::new(Code::Protocol, format!("encrypting {}: {e}", m.name())))?;
        write_frame(&mut self.stream, &out[..n]).map_err(|e| Error::io(&name, "sending to", &e))
    }

    pub fn recv(&mut self) -> Result<Msg, Error> {
        let name = self.peer.name.clone();
        read_frame(&mut self.stream, &mut self.buf)
            .map_err(|e| Error::io(&name, "receiving from", &e))?;
        let n = self
            .noise
            .read_message(&self.buf, &mut self.plain)
            .map_err(|e| {
                Error::new(
                    Code::Broken,
                    format!("a frame from {name} failed its integrity check ({e})"),
                )
            })?;
        postcard::from_bytes(&self.plain[..n]).map_err(|e| {
            Error::new(
                Code::Protocol,
                format!("a malformed message from {name}: {e}"),
            )
        })
    }

    /// Sends what `fill` writes as one stream of `part`: `Begin`, `Data`
    /// chunks, `End` with its length and SHA-256. Returns the length.
    pub fn send_part<F>(&mut self, part: Part, fill: F) -> Result<u64, Error>
    where
        F: FnOnce(&mut PartWriter<'_>) -> std::io::Result<()>,
    {
        self.send(&Msg::Begin(part))?;
        let mut w = PartWriter {
            ch: self,
            buf: Vec::with_capacity(CHUNK),
            hash: sha2::Sha256::new(),
            bytes: 0,
            failed: None,
        };
        let filled = fill(&mut w);
        if let Some(e) = w.failed.take() {
            return Err(e);
        }
        filled.map_err(|e| Error::new(Code::Copy, format!("reading what to send: {e}")))?;
        w.flush_chunk()?;
        let (bytes, sha256) = (w.bytes, w.hash.finalize().into());
        self.send(&Msg::End { bytes, sha256 })?;
        Ok(bytes)
    }

    /// Receives the stream that a `Begin` just opened, handing its bytes to
    /// `take`, which must read to the end; then checks the length and hash
    /// `End` gives. `take`'s error is the caller's to undo.
    /// More than `limit` bytes fail the stream as they come.
    pub fn recv_part<F, T>(&mut self, limit: u64, take: F) -> Result<(T, u64), Error>
    where
        F: FnOnce(&mut PartReader<'_>) -> std::io::Result<T>,
    {
        let mut r = PartReader {
            ch: self,
            buf: Vec::new(),
            pos: 0,
            hash: sha2::Sha256::new(),
            bytes: 0,
            limit,
            end: None,
            failed: None,
        };
        let taken = take(&mut r);
        if let Some(e) = r.failed.take() {
            return Err(e);
        }
        let t = taken.map_err(|e| Error::new(Code::Copy, format!("storing what came: {e}")))?;
        // Whatever the consumer left (tar's padding) still counts.
        let mut rest = [0u8; 4096];
        loop {
            match r.read(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(r
                        .failed
                        .take()
                        .unwrap_or_else(|| Error::new(Code::Copy, e.to_string())))
                }
            }
        }
        let Some((bytes, sha256)) = r.end else {
            return Err(Error::new(Code::Protocol, "a stream without its End"));
        };
        let got: [u8; 32] = r.hash.clone().finalize().into();
        if bytes != r.bytes || sha256 != got {
            return Err(Error::new(
                Code::Copy,
                format!(
                    "what came ({} bytes) does not match its checksum ({bytes} bytes announced): \
                     not used",
                    r.bytes
                ),
            ));
        }
        Ok((t, bytes))
    }
}

/// [`Channel::send_part`]'s writer.
#[derive(Debug)]
pub struct PartWriter<'a> {
    ch: &'a mut Channel,
    buf: Vec<u8>,
    hash: sha2::Sha256,
    bytes: u64,
    failed: Option<Error>,
}

impl PartWriter<'_> {
    fn flush_chunk(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.ch.send(&Msg::Data(chunk))
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        if self.buf.len() == CHUNK {
            if let Err(e) = self.flush_chunk() {
                let io = std::io::Error::other(e.message.clone());
                self.failed = Some(e);
                return Err(io);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`Channel::recv_part`]'s reader: `Data` until `End`.
#[derive(Debug)]
pub struct PartReader<'a> {
    ch: &'a mut Channel,
    buf: Vec<u8>,
    pos: usize,
    hash: sha2::Sha256,
    bytes: u64,
    limit: u64,
    end: Option<(u64, [u8; 32])>,
    failed: Option<Error>,
}

impl Read for PartReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.end.is_some() {
                return Ok(0);
            }
            match self.ch.recv() {
                Ok(Msg::Data(d)) if self.bytes + d.len() as u64 > self.limit => {
                    let e = Error::new(
                        Code::Copy,
                        format!("the source sent more than the {} bytes it may", self.limit),
                    );
                    let io = std::io::Error::other(e.message.clone());
                    self.failed = Some(e);
                    return Err(io);
                }
                Ok(Msg::Data(d)) => {
                    self.hash.update(&d);
                    self.bytes += d.len() as u64;
                    self.buf = d;
                    self.pos = 0;
                }
                Ok(Msg::End { bytes, sha256 }) => self.end = Some((bytes, sha256)),
                Ok(Msg::Abort { message }) => {
                    let e = Error::new(Code::Broken, format!("the source gave up: {message}"));
                    let io = std::io::Error::other(e.message.clone());
                    self.failed = Some(e);
                    return Err(io);
                }
                Ok(other) => {
                    let e = Error::new(
                        Code::Protocol,
                        format!("got {} in the middle of a stream", other.name()),
                    );
                    let io = std::io::Error::other(e.message.clone());
                    self.failed = Some(e);
                    return Err(io);
                }
                Err(e) => {
                    let io = std::io::Error::other(e.message.clone());
                    self.failed = Some(e);
                    return Err(io);
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn keys() -> Keys {
        let kp = snow::Builder::new(params())
            .generate_keypair()
            .expect("keypair");
        Keys {
            private: kp.private.try_into().expect("32"),
            public: kp.public.try_into().expect("32"),
        }
    }

    fn peer(k: &Keys, port: u16) -> Peer {
        Peer {
            name: "x".into(),
            address: "127.0.0.1".parse().expect("ip"),
            port,
            key: k.public,
        }
    }

    #[test]
    fn both_keys_are_checked_and_streams_carry_their_checksum() {
        let (a, b, stranger) = (keys(), keys(), keys());
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let b2 = b.clone();
        let known = vec![peer(&a, 0)];
        let server = std::thread::spawn(move || {
            let mut results = Vec::new();
            for _ in 0..3 {
                let (s, _) = l.accept().expect("accept");
                match Channel::accept(s, &b2, &known) {
                    Ok(mut ch) => {
                        let m = ch.recv().expect("begin");
                        assert_eq!(m, Msg::Begin(Part::Manifest));
                        let (data, n) = ch
                            .recv_part(u64::MAX, |r| {
                                let mut v = Vec::new();
                                r.read_to_end(&mut v)?;
                                Ok(v)
                            })
                            .expect("part");
                        assert_eq!(n, 200_000);
                        assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
                        results.push("ok".to_owned());
                    }
                    Err(e) => results.push(e),
                }
            }
            results
        });
        // The right keys on both sides.
        let mut ch = Channel::connect(&peer(&b, port), &a).expect("connect");
        let data: Vec<u8> = (0..200_000).map(|i| (i % 251) as u8).collect();
        let n = ch
            .send_part(Part::Manifest, |w| w.write_all(&data))
            .expect("send");
        assert_eq!(n, 200_000);
        // DEST is not who migrate.conf says: refused by the source.
        let e = Channel::connect(&peer(&stranger, port), &a).expect_err("wrong DEST key");
        assert_eq!(e.code, Code::Connect);
        assert!(e.message.contains("not the appliance"), "{}", e.message);
        // A source DEST does not know: refused by DEST.
        let _ = Channel::connect(&peer(&b, port), &stranger);
        let results = server.join().expect("server");
        assert_eq!(results[0], "ok");
        assert!(results[1].contains("handshake"), "{results:?}");
        assert!(results[2].contains("not in migrate.conf"), "{results:?}");
    }
}
