//! The OpenVZ command-line tools: `vzctl`, `vzlist` and `vzpkg`, clients of vmmgr.

pub mod exec;
pub mod join;
pub mod vzctl;
pub mod vzlist;
pub mod vzmigrate;
pub mod vzpkg;

use proto::{Request, Response, VeInfo};
use std::os::unix::net::UnixStream;

/// Exit code when vmmgr cannot be reached (OpenVZ: generic system error).
pub const NO_VMMGR: i32 = 3;

/// One request to vmmgr over its socket.
pub fn call(req: &Request) -> Result<Response, String> {
    let mut s = UnixStream::connect(crate::SOCKET_PATH).map_err(|e| {
        format!(
            "cannot reach vmmgr at {}: {e} (is it running? see `status` on the console)",
            crate::SOCKET_PATH
        )
    })?;
    crate::server::call(&mut s, req).map_err(|e| format!("talking to vmmgr: {e}"))
}

/// Every VE vmmgr knows, in VEID order.
pub fn list_all() -> Result<Vec<VeInfo>, String> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        match call(&Request::List { after })? {
            Response::List { ves, more } => {
                after = ves.last().map_or(after, |v| v.veid);
                let n = ves.len();
                out.extend(ves);
                if !more || n == 0 {
                    return Ok(out);
                }
            }
            other => return Err(format!("unexpected reply from vmmgr: {other:?}")),
        }
    }
}
