//! The VE manager library: everything `vmmgr`, the console shell and the CLIs
//! share. Binaries in `src/bin` only parse arguments and dispatch here.

pub mod appliance;
pub mod cli;
/// The boot config model and its key table (the `vzconfig` crate).
pub use vzconfig as config;
pub mod console;
pub mod criu;
pub mod daemon;
pub mod exitcode;
pub mod fdpass;
pub mod fsutil;
pub mod logger;
pub mod migrate;
pub mod mountfd;
pub mod net;
pub mod notify;
pub mod policy;
pub mod procfs;
pub mod runstate;
pub mod server;
pub mod setup;
pub mod stream;
pub mod swap;
pub mod sys;
pub mod timing;
pub mod ubc;

/// The control socket clients connect to.
pub const SOCKET_PATH: &str = "/run/vmmgr.sock";
/// The management serial port (the second serial port of the machine).
pub const MGMT_TTY: &str = "/dev/ttyS1";
