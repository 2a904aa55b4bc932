//! The messages between the two ends of a migration (postcard-encoded,
//! one per encrypted frame).
//!
//! ```text
//! source                                  DEST
//! Offer ------------------------------->  checks (VEID, template, config,
//!       <-------------------- Accept        addresses, free space) or Refuse
//! Begin(Private) Data.. End ----------->  unpacked into a staging area,
//!       <------------------ Received        its hash checked
//! [online] Begin(Images "Migrate.V.n")..  one per memory pre-copy round
//! (freeze: final dump, or stop)
//! Begin(PrivateChanges) .. Begin(Manifest) .. (what changed since; what is left)
//! Begin(Images "Migrate.V") ..            the final dump
//! Restore | Start ------------------->    the VE restored (or started)
//!       <------------------------ Ran       uncommitted: still DEST's to undo
//! Commit ------------------------------>  kept; its addresses announced
//!       <----------------------- Done
//! ```
//!
//! Anything else, an `Abort`, a broken link or a timeout before `Commit`
//! makes DEST undo all it made; the source keeps (or resumes) its VE.

use serde::{Deserialize, Serialize};

/// Largest `Data` payload (a Noise frame carries at most 65535 bytes).
pub const CHUNK: usize = 60 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub veid: u32,
    /// Live: the VE's state follows, and is restored at DEST.
    pub online: bool,
    /// Offline: whether DEST starts the VE once it has it.
    pub start: bool,
    /// The VE's config file, as the source has it.
    pub config: String,
    pub ostemplate: String,
    /// Bytes of the private area and of the VE's memory (DEST's free-space
    /// check).
    pub private_bytes: u64,
    pub memory_bytes: u64,
    /// The source's name for itself (DEST's log).
    pub source: String,
    /// `--keep-dst`: on failure DEST keeps what it received.
    pub keep: bool,
    /// `--new-id`: the VEID DEST takes it under (offline only); `None`:
    /// its own.
    pub dst_id: Option<u32>,
}

/// What a stream of `Data` carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// The private area's `upper/`, all of it (tar).
    Private,
    /// What changed in it since `Private` (tar).
    PrivateChanges,
    /// Every path the private area has now, NUL-separated: DEST removes
    /// the others.
    Manifest,
    /// A directory of CRIU images (tar), by its name under `/vz/dump`.
    Images(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    Offer(Offer),
    Accept,
    Refuse {
        code: u8,
        message: String,
    },
    Begin(Part),
    Data(Vec<u8>),
    /// The stream's length and SHA-256: DEST checks both before it uses
    /// anything of it.
    End {
        bytes: u64,
        sha256: [u8; 32],
    },
    Received,
    /// Restore the VE from the images named (live).
    Restore {
        dump: String,
    },
    /// Start the VE, or only keep it (offline).
    Start {
        run: bool,
    },
    /// The VE runs (or is in place) at DEST, not yet committed.
    Ran {
        ms: u64,
    },
    Failed {
        code: u8,
        message: String,
    },
    Commit,
    /// Committed at DEST; `warning`: what went wrong after (an offline
    /// VE that did not start there).
    Done {
        warning: String,
    },
    Abort {
        message: String,
    },
}

impl Msg {
    /// A short name for errors ("got Data, expected Accept").
    pub fn name(&self) -> &'static str {
        match self {
            Msg::Offer(_) => "Offer",
            Msg::Accept => "Accept",
            Msg::Refuse { .. } => "Refuse",
            Msg::Begin(_) => "Begin",
            Msg::Data(_) => "Data",
            Msg::End { .. } => "End",
            Msg::Received => "Received",
            Msg::Restore { .. } => "Restore",
            Msg::Start { .. } => "Start",
            Msg::Ran { .. } => "Ran",
            Msg::Failed { .. } => "Failed",
            Msg::Commit => "Commit",
            Msg::Done { .. } => "Done",
            Msg::Abort { .. } => "Abort",
        }
    }
}
