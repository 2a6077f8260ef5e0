//! A chat peer's bounded outbound queue: frames relayed to it by the other
//! peers of its room, already encoded, shared among all recipients.
//!
//! The queue is bounded by bytes, not by count: a producer never waits, and
//! a peer whose queue would pass its limit is marked slow and closes itself
//! with 1008 (policy violation: it did not read its messages). The bytes
//! stay accounted until written to the socket, so a peer that stops reading
//! is caught however its socket buffers are tuned.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

/// What producer and consumer share about one peer.
#[derive(Debug, Default)]
pub struct PeerState {
    queued: AtomicUsize,
    slow: AtomicBool,
    /// Set once the session wrote its close frame: nothing may follow it.
    closed: AtomicBool,
    /// Relayed messages and bytes written to this peer.
    pub delivered: AtomicU64,
    pub delivered_bytes: AtomicU64,
}

impl PeerState {
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// The producer side, held by the room.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Bytes>,
    state: Arc<PeerState>,
    limit: usize,
}

/// The consumer side, polled by the peer's [`crate::stream::SessionStream`].
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<Bytes>,
    state: Arc<PeerState>,
    /// The frame being written, and how much of it is out.
    current: Bytes,
}

pub fn channel(limit: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(PeerState::default());
    (
        Outbox {
            tx,
            state: state.clone(),
            limit,
        },
        Inbox {
            rx,
            state,
            current: Bytes::new(),
        },
    )
}

/// The result of offering a frame to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The peer was already slow, or gone: nothing queued.
    Skipped,
    /// This frame put the peer over its limit: it is now slow.
    BecameSlow,
}

impl Outbox {
    pub fn offer(&self, frame: &Bytes) -> Offer {
        if self.state.is_slow() {
            return Offer::Skipped;
        }
        let queued = self.state.queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        if queued > self.limit {
            self.state.slow.store(true, Ordering::Relaxed);
            // An empty frame wakes the peer's task to notice.
            let _ = self.tx.send(Bytes::new());
            return Offer::BecameSlow;
        }
        // Shares the encoded frame: a reference count, not a copy.
        match self.tx.send(frame.clone()) {
            Ok(()) => Offer::Queued,
            Err(_) => Offer::Skipped,
        }
    }
}

impl Inbox {
    pub fn state(&self) -> &Arc<PeerState> {
        &self.state
    }

    /// Whether relaying is over: the session has sent its close.
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Relaxed)
    }

    /// The rest of a frame whose first bytes are already on the wire; it
    /// must be finished before any other frame is written.
    pub fn unfinished(&self) -> Option<&[u8]> {
        (!self.current.is_empty()).then_some(&self.current[..])
    }

    /// The bytes to write next, if any; registers for a wake-up otherwise.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Option<&[u8]> {
        if self.is_closed() {
            return None;
        }
        while self.current.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) if !frame.is_empty() => {
                    self.state.delivered.fetch_add(1, Ordering::Relaxed);
                    self.state
                        .delivered_bytes
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                    self.current = frame;
                }
                Poll::Ready(Some(_)) => {}
                Poll::Ready(None) | Poll::Pending => return None,
            }
        }
        Some(&self.current)
    }

    /// `n` bytes of the current frame were written.
    pub fn consumed(&mut self, n: usize) {
        use bytes::Buf;
        self.current.advance(n);
        self.state.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_over_its_byte_limit_becomes_slow_and_gets_nothing_more() {
        let (out, _inbox) = channel(100);
        let frame = Bytes::from_static(&[0u8; 40]);
        assert_eq!(out.offer(&frame), Offer::Queued);
        assert_eq!(out.offer(&frame), Offer::Queued);
        assert_eq!(out.offer(&frame), Offer::BecameSlow);
        assert_eq!(out.offer(&frame), Offer::Skipped);
        assert!(out.state.is_slow());
    }

    #[test]
    fn written_bytes_make_room_again() {
        let (out, mut inbox) = channel(100);
        let frame = Bytes::from_static(&[1u8; 60]);
        assert_eq!(out.offer(&frame), Offer::Queued);
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(inbox.poll_next(&mut cx).map(<[u8]>::len), Some(60));
        inbox.consumed(60);
        assert_eq!(out.offer(&frame), Offer::Queued);
    }

    fn futures_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
