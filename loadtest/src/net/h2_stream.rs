//! One WebSocket's HTTP/2 stream (`--http2`) as a byte stream, so it is
//! driven like a socket; [`crate::http2`] opens it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One WebSocket's HTTP/2 stream as a byte stream. Receive capacity is
/// given back as the bytes are read, so the windows bound what is buffered.
pub struct H2Stream {
    pub(crate) send: SendStream<Bytes>,
    pub(crate) recv: RecvStream,
    /// The rest of the last DATA frame, not yet read.
    pub(crate) unread: Bytes,
}

impl H2Stream {
    /// Sends up to `len` bytes gathered from `bufs` as one DATA frame's
    /// worth; waits for send capacity (the server's windows) first.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        self.send.reserve_capacity(len);
        let granted = loop {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => break n.min(len),
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        };
        // One copy: h2 queues owned bytes until its task writes them out.
        let mut data = BytesMut::with_capacity(granted);
        for buf in bufs {
            let take = (granted - data.len()).min(buf.len());
            data.extend_from_slice(&buf[..take]);
            if data.len() == granted {
                break;
            }
        }
        self.send.send_data(data.freeze(), false).map_err(to_io)?;
        Poll::Ready(Ok(granted))
    }
}

fn to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().unwrap_or_else(|| io::ErrorKind::Other.into());
    }
    io::Error::other(e)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.unread = data,
                None => return Poll::Ready(Ok(())),
                // A reset with NO_ERROR or CANCEL ends the stream rather
                // than failing it (as hyper reads it).
                Some(Err(e)) if matches!(e.reason(), Some(Reason::NO_ERROR | Reason::CANCEL)) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        // Only what was read goes back to the window (RFC 9113 §5.2).
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_send(cx, buf.len(), &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut().poll_send(cx, len, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Data handed to h2 is on its way: its connection task writes it.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends our half of the stream (END_STREAM), as a TCP FIN would.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = self.get_mut().send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
