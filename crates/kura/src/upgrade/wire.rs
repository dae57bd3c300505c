//! The takeover protocol on the wire: frames of a 4-byte big-endian length and a JSON
//! [`Message`], over a Unix stream socket, with file descriptors attached to a frame's first
//! byte (SCM_RIGHTS). Each side checks that the other runs as its own user (SO_PEERCRED)
//! before believing anything it says. Blocking: each side runs it on a thread of its own.
//!
//! The exchange, the new process speaking first:
//!
//! 1. new → old: `hello` (protocol version, pid);
//! 2. old → new: `offer` (what each socket is), then `fds` frames carrying the sockets;
//! 3. new → old: `ready`, once it serves on them (the old one goes on accepting until then);
//! 4. old → new: `stopped`: it no longer accepts and drains; the control socket is free.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

/// The protocol's version; both sides must speak the same.
pub const VERSION: u32 = 1;

/// Descriptors in one frame (the kernel takes at most 253 in one message).
pub const FDS_PER_FRAME: usize = 64;

/// A frame larger than this is refused (an offer of thousands of sockets is far below it).
const MAX_FRAME: usize = 1 << 20;

/// One message of the exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// New → old: asks for the listening sockets.
    Hello { version: u32, pid: u32 },
    /// Old → new: the sockets it listens on, in the order their descriptors follow.
    Offer {
        version: u32,
        pid: u32,
        sockets: Vec<SocketInfo>,
    },
    /// Old → new: `count` descriptors, attached to this frame.
    Fds { count: usize },
    /// New → old: it serves on every socket.
    Ready,
    /// Old → new: it stopped accepting and drains; the control socket path is free.
    Stopped,
    /// Either way: the exchange is refused, and why.
    Refused { reason: String },
}

/// What one passed socket is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// `listener`, `admin` or `peer`.
    pub role: String,
    /// For a listener, its index in the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The address the configuration named (port 0 stays 0).
    pub configured: SocketAddr,
    /// The address the socket is bound to.
    pub bound: SocketAddr,
}

/// Sends `msg` with `fds` attached to its first byte.
pub fn send(stream: &UnixStream, msg: &Message, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_FRAME))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(format!(
            "{} descriptors do not fit in one frame",
            fds.len()
        )));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            stream,
            &[IoSlice::new(&frame)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => break n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // The descriptors went with the first bytes; the rest is plain data.
    let mut rest = stream;
    rest.write_all(&frame[sent..])
}

/// Receives one message and the descriptors attached to it.
pub fn recv(stream: &UnixStream) -> io::Result<(Message, Vec<OwnedFd>)> {
    let mut header = [0u8; 4];
    let mut fds = Vec::new();
    let mut got = 0;
    while got < header.len() {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_FRAME))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut header[got..])];
        let msg =
            match rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
                Ok(m) => m,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(io::Error::other("descriptors were truncated"));
        }
        if msg.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other kura closed the connection",
            ));
        }
        got += msg.bytes;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    // Descriptors only ever come with a frame's first byte: a plain read is enough here, and
    // it never reads past this frame.
    let mut reader = stream;
    reader.read_exact(&mut body)?;
    let msg = serde_json::from_slice(&body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not a message: {e}")))?;
    Ok((msg, fds))
}

/// The pid of the process at the other end, once checked that it runs as this process's
/// effective user (root is no exception: another user's kura is refused).
pub fn check_peer(stream: &UnixStream) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream.as_fd())?;
    let me = rustix::process::geteuid();
    if cred.uid != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the process at the other end (pid {}) runs as uid {}, this kura as uid {}",
                cred.pid.as_raw_nonzero(),
                cred.uid.as_raw(),
                me.as_raw()
            ),
        ));
    }
    Ok(cred.pid.as_raw_nonzero().get() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let info = SocketInfo {
            role: "listener".into(),
            index: Some(0),
            configured: "127.0.0.1:0".parse().unwrap(),
            bound: l1.local_addr().unwrap(),
        };
        let offer = Message::Offer {
            version: VERSION,
            pid: 1,
            sockets: vec![info],
        };
        send(&a, &offer, &[]).unwrap();
        send(&a, &Message::Fds { count: 2 }, &[l1.as_fd(), l2.as_fd()]).unwrap();
        send(&a, &Message::Ready, &[]).unwrap();
        let (m, fds) = recv(&b).unwrap();
        assert_eq!(m, offer);
        assert!(fds.is_empty());
        let (m, fds) = recv(&b).unwrap();
        assert_eq!(m, Message::Fds { count: 2 });
        let got: Vec<_> = fds
            .into_iter()
            .map(|fd| std::net::TcpListener::from(fd).local_addr().unwrap())
            .collect();
        assert_eq!(got, [l1.local_addr().unwrap(), l2.local_addr().unwrap()]);
        assert_eq!(recv(&b).unwrap().0, Message::Ready);
        // Our own process is our own user.
        assert_eq!(check_peer(&b).unwrap(), std::process::id());
        drop(a);
        assert_eq!(recv(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut w = &a;
        w.write_all(&5u32.to_be_bytes()).unwrap();
        w.write_all(b"{nope").unwrap();
        assert_eq!(recv(&b).unwrap_err().kind(), io::ErrorKind::InvalidData);
        w.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert_eq!(recv(&b).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
