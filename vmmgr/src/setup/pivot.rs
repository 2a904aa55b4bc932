//! `pivot_root` into the VE's overlay, in the staging namespace A (the kernel
//! refuses it onto a locked mount, so it must happen before the VE init
//! copies A). Every process of A rooted at the old root, vesetup itself and
//! the waiting VE init, is moved to the new root; vesetup then only uses fds.

use super::{Ctx, SetupError};
use std::os::fd::OwnedFd;

pub(super) fn pivot_into(cx: &Ctx, root: OwnedFd) -> Result<(), SetupError> {
    cx.at("entering the VE root", rustix::process::fchdir(&root))?;
    cx.at("pivot_root", rustix::process::pivot_root(".", "."))?;
    cx.at(
        "detaching the appliance's root",
        rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH),
    )?;
    cx.at("chdir /", rustix::process::chdir("/"))?;
    Ok(())
}
