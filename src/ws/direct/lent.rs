//! A session's socket as the loop lends it out: non-blocking reads and
//! writes that remember what the last epoll edge said, so a drained or
//! full socket costs no system call until the next edge.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Edge;

/// A session's socket while the loop drives it: plain non-blocking reads
/// and writes, `Pending` on `WouldBlock` without registering any waker,
/// because the loop polls the session again on the socket's next epoll
/// edge. After a short read (or write) the socket is known to be drained
/// (or full), so the next call is `Pending` without a system call until an
/// edge says otherwise, as tokio's own `TcpStream` does.
#[derive(Debug)]
pub struct Lent {
    tcp: std::net::TcpStream,
    read_drained: bool,
    write_full: bool,
    /// Read on after a short read: the end of stream (or the error) that
    /// epoll reported comes after the data.
    closed: bool,
}

impl Lent {
    pub fn new(tcp: std::net::TcpStream) -> Self {
        Lent {
            tcp,
            read_drained: false,
            write_full: false,
            closed: false,
        }
    }

    /// An epoll edge: what it says is ready may be tried again.
    pub fn edge(&mut self, edge: Edge) {
        self.read_drained &= !edge.readable;
        self.write_full &= !edge.writable;
        self.closed |= edge.closed;
    }

    /// The last read came back short: the socket is empty until its next
    /// edge, and another read would only say `Pending`.
    pub fn read_drained(&self) -> bool {
        self.read_drained
    }

    pub fn into_std(self) -> std::net::TcpStream {
        self.tcp
    }

    fn attempt<T>(
        blocked: &mut bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        if *blocked {
            return Poll::Pending;
        }
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *blocked = true;
                    return Poll::Pending;
                }
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsRawFd for Lent {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl AsyncRead for Lent {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let dst = buf.initialize_unfilled();
        let room = dst.len();
        let tcp = &me.tcp;
        let n = std::task::ready!(Self::attempt(&mut me.read_drained, || (&*tcp).read(dst)))?;
        // A read that did not fill the room emptied the socket, unless the
        // peer's end of stream waits behind the data.
        me.read_drained = n < room && !me.closed;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Lent {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let tcp = &me.tcp;
        let n = std::task::ready!(Self::attempt(&mut me.write_full, || (&*tcp).write(buf)))?;
        me.write_full = n < buf.len();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let tcp = &me.tcp;
        let n =
            std::task::ready!(Self::attempt(&mut me.write_full, || (&*tcp).write_vectored(bufs)))?;
        me.write_full = n < bufs.iter().map(|b| b.len()).sum();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.tcp.shutdown(std::net::Shutdown::Write))
    }
}
