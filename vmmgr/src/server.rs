//! Serving the control protocol on the socket and the management serial port.

use crate::appliance::{self, Paths};
use crate::config::VeId;
use crate::daemon::Manager;
use crate::exitcode::ExitCode;
use crate::stream::Stream;
use proto::{ErrorCode, FrameError, Kind, Request, Response};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Most clients served at once on the socket; more are refused.
pub const MAX_CLIENTS: usize = 32;

/// What the server needs to answer requests.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub paths: Paths,
    /// The VE manager; `None` in tests of the appliance requests alone.
    pub ves: Option<Arc<Manager>>,
}

/// Answers one request.
pub fn handle(req: &Request, ctx: &Ctx) -> Response {
    match req {
        Request::Ping => Response::Pong {
            version: proto::VERSION,
            server: appliance::server_name(),
        },
        Request::ApplianceStatus => Response::ApplianceStatus(appliance::status(&ctx.paths)),
        Request::Ve { veid, op } => {
            let Some(m) = &ctx.ves else {
                return unavailable();
            };
            let veid = match veid.to_string().parse::<VeId>() {
                Ok(v) => v,
                Err(msg) => {
                    return Response::VeDone {
                        code: ExitCode::BadValue.get(),
                        message: appliance::text(&msg),
                        info: None,
                    }
                }
            };
            let (out, info) = m.op(veid, op);
            Response::VeDone {
                code: out.code.get(),
                message: appliance::text(&out.message),
                info,
            }
        }
        Request::List { after } => {
            let Some(m) = &ctx.ves else {
                return unavailable();
            };
            let mut ves = heapless::Vec::new();
            let all: Vec<VeId> = m.veids().into_iter().filter(|v| v.get() > *after).collect();
            for v in &all {
                if ves.push(m.info(*v)).is_err() {
                    break;
                }
            }
            let more = all.len() > ves.len();
            Response::List { ves, more }
        }
        Request::Templates => {
            let Some(m) = &ctx.ves else {
                return unavailable();
            };
            Response::Templates {
                list: m.template_list(),
            }
        }
        Request::TemplateInstall { path } => {
            let Some(m) = &ctx.ves else {
                return unavailable();
            };
            let out = m.install_template(std::path::Path::new(path.as_str()));
            Response::VeDone {
                code: out.code.get(),
                message: appliance::text(&out.message),
                info: None,
            }
        }
        // Served with its progress by `serve_stream`.
        Request::Migrate { .. } => Response::Error {
            code: ErrorCode::BadRequest,
            message: appliance::text("vzmigrate is served on the control socket only"),
        },
        Request::Resources { veid } => {
            let Some(m) = &ctx.ves else {
                return unavailable();
            };
            // 0 is the appliance itself (OpenVZ's CT0).
            if *veid == 0 {
                return Response::Resources(m.appliance_resources());
            }
            match veid.to_string().parse::<VeId>() {
                Ok(v) => Response::Resources(m.resources(v)),
                Err(msg) => Response::Error {
                    code: ErrorCode::BadRequest,
                    message: appliance::text(&msg),
                },
            }
        }
    }
}

/// `vzmigrate`: progress through `say`, then the outcome.
fn migrate(
    veid: u32,
    req: &crate::daemon::MigrateRequest,
    ctx: &Ctx,
    say: &mut dyn FnMut(&str),
) -> Response {
    let Some(m) = &ctx.ves else {
        return unavailable();
    };
    let (code, message) = match veid.to_string().parse::<VeId>() {
        Ok(v) => m.migrate(v, req, say),
        Err(msg) => (crate::migrate::Code::Usage, msg),
    };
    Response::VeDone {
        code: code.get(),
        message: appliance::text(&message),
        info: None,
    }
}

fn unavailable() -> Response {
    Response::Error {
        code: ErrorCode::Failed,
        message: appliance::text("VE management is not available here"),
    }
}

fn error_reply(e: FrameError) -> Response {
    Response::Error {
        code: ErrorCode::BadRequest,
        message: appliance::text(&format!("malformed request: {e}")),
    }
}

/// Serves frames on one stream until it ends. A malformed frame gets an error
/// reply; on a socket the connection is then closed (`close_on_error`), on the
/// serial line we keep listening.
pub fn serve_stream<T: std::io::Read + std::io::Write>(
    io: T,
    ctx: &Ctx,
    close_on_error: bool,
) -> Result<(), FrameError> {
    let mut s = Stream(io);
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
    loop {
        let reply = match proto::read_frame::<_, Request>(&mut s, &mut buf) {
            Ok((
                Kind::Request,
                Request::Migrate {
                    veid,
                    dest,
                    online,
                    remove_area,
                    keep_dst,
                    new_id,
                },
            )) => {
                let req = crate::daemon::MigrateRequest {
                    dest: dest.to_string(),
                    online,
                    remove_area,
                    keep_dst,
                    new_id,
                };
                let mut say = |line: &str| {
                    // A client that went away does not stop the migration.
                    let _ = proto::write_frame(
                        &mut s,
                        Kind::Response,
                        &Response::Progress {
                            line: appliance::text(line),
                        },
                    );
                };
                migrate(veid, &req, ctx, &mut say)
            }
            Ok((Kind::Request, req)) => handle(&req, ctx),
            Ok((k @ (Kind::Response | Kind::Setup), _)) => {
                error_reply(FrameError::BadKind(k as u8))
            }
            Err(FrameError::Eof) => return Ok(()),
            Err(FrameError::Io) => return Err(FrameError::Io),
            Err(e) => {
                log::warn!("control: {e}");
                proto::write_frame(&mut s, Kind::Response, &error_reply(e))?;
                if close_on_error {
                    return Err(e);
                }
                continue;
            }
        };
        proto::write_frame(&mut s, Kind::Response, &reply)?;
    }
}

/// Binds the control socket, replacing a stale one, readable by root only.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts clients forever, one thread each, at most [`MAX_CLIENTS`].
pub fn accept_loop(listener: UnixListener, ctx: Ctx) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            log::warn!("control: refusing a client: {MAX_CLIENTS} already connected");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let active = Arc::clone(&active);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("vmmgr-client".into())
            .spawn(move || {
                let _ = serve_stream(&conn, &ctx, true);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::error!("control: cannot start a client thread: {e}");
        }
    }
}

/// Opens the management serial port in raw mode, discarding whatever arrived
/// before (a cooked tty would have echoed it back). Done before vmmgr reports
/// ready, so a client that waits for readiness never meets a cooked line.
pub fn open_serial(path: &Path) -> std::io::Result<std::fs::File> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let mut t = rustix::termios::tcgetattr(&tty)?;
    t.make_raw();
    rustix::termios::tcsetattr(&tty, rustix::termios::OptionalActions::Now, &t)?;
    rustix::termios::tcflush(&tty, rustix::termios::QueueSelector::IFlush)?;
    Ok(tty)
}

/// Serves frames on the (raw) management serial port, forever.
pub fn serve_serial(tty: std::fs::File, name: &Path, ctx: Ctx) {
    loop {
        if let Err(e) = serve_stream(&tty, &ctx, false) {
            log::warn!("management serial {}: {e}", name.display());
            // A broken line must not become a busy loop.
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A client's side: one request, one response.
pub fn call(stream: &mut UnixStream, req: &Request) -> Result<Response, FrameError> {
    let mut s = Stream(stream);
    proto::write_frame(&mut s, Kind::Request, req)?;
    let mut buf = vec![0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
    let (_, resp) = proto::read_frame::<_, Response>(&mut s, &mut buf)?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_round_trip_and_malformed_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vmmgr.sock");
        let listener = bind(&sock).expect("bind");
        std::thread::spawn(move || {
            accept_loop(
                listener,
                Ctx {
                    paths: Paths::default(),
                    ves: None,
                },
            )
        });
        let mut c = UnixStream::connect(&sock).expect("connect");
        match call(&mut c, &Request::Ping).expect("ping") {
            Response::Pong { version, .. } => assert_eq!(version, proto::VERSION),
            other => panic!("unexpected {other:?}"),
        }
        // Garbage gets an error reply, then the connection closes.
        use std::io::{Read, Write};
        let mut c = UnixStream::connect(&sock).expect("connect");
        c.write_all(b"GARBAGE-GARBAGE").expect("write");
        let mut s = Stream(&mut c);
        let mut buf = vec![0u8; 9000];
        let (_, resp) = proto::read_frame::<_, Response>(&mut s, &mut buf).expect("reply");
        assert!(matches!(
            resp,
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        // Closed: end of stream, or a reset because our extra bytes were unread.
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    }
}
