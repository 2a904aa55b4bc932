//! Readiness notification to the supervisor (init): one line on the descriptor
//! named by `NOTIFY_FD`, then close it.

use std::io::Write;

/// Tells the supervisor we are ready. A no-op when not supervised, and after
/// the first call.
pub fn ready() {
    let Some(fd) = std::env::var("NOTIFY_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    std::env::remove_var("NOTIFY_FD");
    // SAFETY: NOTIFY_FD names the descriptor our supervisor passed for this
    // one line; the variable is removed above, so it is taken once.
    if let Some(owned) = unsafe { crate::sys::take_inherited_fd(fd) } {
        let mut f = std::fs::File::from(owned);
        let _ = f.write_all(b"ready\n");
    }
}
