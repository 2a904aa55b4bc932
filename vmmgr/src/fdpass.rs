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
    send_fds(sock, data, fd.as_slice())
}

/// Sends `data` as one message, with the descriptors `fds` (at most
/// [`MAX_FDS`]) beside it.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other(
            "more descriptors than one message carries",
        ));
    }
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other("control buffer too small"));
    }
    let n = rustix::net::sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if n != data.len() {
        return Err(std::io::Error::other("message sent in part"));
    }
    Ok(())
}

/// The most descriptors one message of ours carries.
pub const MAX_FDS: usize = 2;

/// Receives one message into `buf`; returns its length (0 at end of stream)
/// and the fd that came with it, if any. A message cut short, or carrying
/// more than one fd, is refused (and the extra fds closed).
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let (n, mut fds) = recv_fds(sock, buf)?;
    if fds.len() > 1 {
        return Err(std::io::Error::other("more than one fd in a message"));
    }
    Ok((n, fds.pop()))
}

/// Receives one message into `buf`; returns its length (0 at end of stream)
/// and the fds that came with it (at most [`MAX_FDS`]). A message cut
/// short, or carrying more fds, is refused (and its fds closed).
pub fn recv_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS + 1))];
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
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other("too many fds in a message"));
    }
    Ok((msg.bytes, fds))
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

    #[test]
    fn two_fds_cross_in_order_and_three_are_refused() {
        let (a, b) = super::pair().expect("pair");
        let (r1, w1) = rustix::pipe::pipe().expect("pipe");
        let (r2, w2) = rustix::pipe::pipe().expect("pipe");
        super::send_fds(a.as_fd(), b"go", &[w1.as_fd(), w2.as_fd()]).expect("send");
        let mut buf = [0u8; 16];
        let (n, fds) = super::recv_fds(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((&buf[..n], fds.len()), (&b"go"[..], 2));
        rustix::io::write(&fds[0], b"1").expect("write");
        rustix::io::write(&fds[1], b"22").expect("write");
        let mut got = [0u8; 4];
        assert_eq!(rustix::io::read(&r1, &mut got).expect("read"), 1);
        assert_eq!(rustix::io::read(&r2, &mut got).expect("read"), 2);
        // One fd where only one is expected is fine; two are not.
        super::send_fds(a.as_fd(), b"x", &[w1.as_fd(), w2.as_fd()]).expect("send");
        assert!(super::recv(b.as_fd(), &mut buf).is_err());
        assert!(super::send_fds(a.as_fd(), b"x", &[w1.as_fd(), w1.as_fd(), w2.as_fd()]).is_err());
    }
}
