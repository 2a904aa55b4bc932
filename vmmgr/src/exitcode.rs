//! OpenVZ's exit codes (`../shared/reference/openvz.md` §1.4), made in one
//! place: the daemon puts them in its replies, the CLIs exit with them.

/// An exit code of `vzctl` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    /// A system error (a syscall, a helper, vmmgr unreachable).
    System = 3,
    /// Another operation on the VE is in progress.
    Locked = 9,
    ConfNotFound = 14,
    BadParam = 20,
    BadValue = 21,
    NotRunning = 31,
    Running = 32,
    StopFailed = 33,
    /// `chkpnt` failed (the VE keeps running).
    ChkpntFailed = 16,
    /// `restore` failed (the dump is kept).
    RestoreFailed = 17,
    /// An address could not be added to (or taken from) the running VE.
    IpAddFailed = 34,
    NotMounted = 40,
    Mounted = 41,
    PrivateExists = 44,
    /// The template's init could not be executed.
    Broken = 47,
    CreatePrivate = 48,
    MountFailed = 50,
    UmountFailed = 51,
    DeleteFailed = 52,
    /// The address belongs to another VE.
    IpInUse = 78,
    TemplateNotFound = 91,
    /// A NETDEV interface could not be moved into the VE.
    NetDevFailed = 104,
    StartDisabled = 105,
    ConfigInvalid = 109,
    /// A NETIF pair could not be made (its bridge, its names).
    VethFailed = 130,
    SaveFailed = 139,
}

impl ExitCode {
    /// The number on the wire and in `$?`.
    pub const fn get(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for u8 {
    fn from(c: ExitCode) -> u8 {
        c.get()
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        i32::from(c.get())
    }
}

impl PartialEq<u8> for ExitCode {
    fn eq(&self, other: &u8) -> bool {
        self.get() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_openvz() {
        assert_eq!(ExitCode::Locked, 9);
        assert_eq!(i32::from(ExitCode::Broken), 47);
        assert_eq!(ExitCode::SaveFailed.get(), 139);
    }
}
