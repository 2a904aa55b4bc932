//! Passing descriptors between our processes over a unix socket
//! (`SCM_RIGHTS`): pidfds and detached mounts cross process boundaries as
//! fds, never as pid numbers or path names.

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

/// A connected pair of `SOCK_SEQPACKET` unix sockets (message boundaries
/// kept), close-on-exec.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends `data` as one message, with `fd` beside it if given.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(f) = fd {
        fds = [f];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("control buffer too small for one fd"));
        }
    }
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::empty(),
    )?;
    if n != data.len() {
        return Err(std::io::Error::other("message sent in part"));
    }
    Ok(())
}

/// Receives one message into `buf`; returns its length (0 at end of stream)
/// and the fd that came with it, if any. A message cut short, or carrying
/// more than one fd, is refused (and the extra fds closed).
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC)
        || msg.flags.contains(rustix::net::ReturnFlags::CTRUNC)
    {
        return Err(std::io::Error::other("message or its fds cut short"));
    }
    if fds.len() > 1 {
        return Err(std::io::Error::other("more than one fd in a message"));
    }
    Ok((msg.bytes, fds.pop()))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn an_fd_crosses_with_its_message() {
        let (a, b) = super::pair().expect("pair");
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        super::send(a.as_fd(), b"hello", Some(w.as_fd())).expect("send");
        drop(w);
        let mut buf = [0u8; 16];
        let (n, fd) = super::recv(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        let w2 = fd.expect("an fd came");
        rustix::io::write(&w2, b"x").expect("write through the passed fd");
        let mut one = [0u8; 1];
        assert_eq!(rustix::io::read(&r, &mut one).expect("read"), 1);
        super::send(a.as_fd(), b"bare", None).expect("send");
        let (n, fd) = super::recv(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((&buf[..n], fd.is_none()), (&b"bare"[..], true));
        drop(a);
        assert_eq!(super::recv(b.as_fd(), &mut buf).expect("eof").0, 0);
    }
}
