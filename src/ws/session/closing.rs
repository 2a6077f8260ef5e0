//! The end of a session: the close handshake after the steady state
//! stopped, then the TCP shutdown.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use fastwebsockets::OpCode;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::proto::{Input, Stop};
use super::{End, Session, with_worker};
use crate::close;
use crate::metrics::Counts;

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Session<S> {
    /// Ends the TCP connection after the close handshake: the server closes
    /// first (§7.1.1), so the client does not hold TIME_WAIT. Returns the
    /// session's final counts.
    pub async fn shutdown(mut self) -> Counts {
        self.flush_counts();
        let io = &mut self.io;
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)),
        )
        .await;
        self.proto.counts
    }

    /// The close handshake, after the read loop stopped.
    pub(super) async fn finish(&mut self, stop: Stop) -> End {
        match stop {
            Stop::PeerClosed(code) => {
                // Echo the code (§5.5.1); an empty close gets an empty one.
                let reply = code.map_or_else(Vec::new, |c| close::payload(c, ""));
                match self.send_close(&reply).await {
                    Ok(()) => End::PeerClosed(code),
                    Err(end) => end,
                }
            }
            Stop::Fail(code, reason) => {
                if let Err(end) = self.send_close(&close::payload(code, reason)).await {
                    return end;
                }
                self.await_peer_close().await;
                End::Closed { code, reason }
            }
            Stop::Stalled => End::Stalled,
            Stop::Dropped(kind) => End::Dropped(kind),
        }
    }

    /// Writes our one close frame; nothing, relays included, follows it.
    pub(super) async fn send_close(&mut self, payload: &[u8]) -> Result<(), End> {
        if std::mem::replace(&mut self.close_sent, true) {
            return Ok(());
        }
        if let Some(inbox) = &self.inbox {
            inbox.state().mark_closed();
        }
        self.queue_frame(OpCode::Close, payload);
        // Bounded: a peer that reads nothing cannot take our close either.
        let timeout = self.env.limits.close_timeout;
        match tokio::time::timeout(timeout, poll_fn(|cx| self.poll_drain(cx))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Dropped(e.kind())),
            Err(_) => Err(End::Stalled),
        }
    }

    /// After our close, reads (and drops) frames until the peer's close, the
    /// end of the connection, or the close timeout. After a framing error
    /// the input is not frames any more: then wait for the peer to hang up.
    pub(super) async fn await_peer_close(&mut self) {
        if self.proto.input == Input::Closed {
            return;
        }
        let spent = self.proto.input == Input::Spent;
        // One deadline for both steps: a TLS shutdown writes close_notify,
        // which waits as long as the peer reads nothing.
        let deadline = tokio::time::Instant::now() + self.env.limits.close_timeout;
        if spent {
            let io = &mut self.io;
            let shutdown = poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx));
            if tokio::time::timeout_at(deadline, shutdown).await.is_err() {
                return;
            }
        }
        let wait = poll_fn(|cx| {
            with_worker(|worker| {
                loop {
                    match self.fill(cx, &mut worker.recv) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                        Poll::Ready(Ok(n)) => {
                            if !spent && self.proto.find_close(&mut worker.recv[..n]) {
                                return Poll::Ready(());
                            }
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
        });
        let _ = tokio::time::timeout_at(deadline, wait).await;
    }
}
