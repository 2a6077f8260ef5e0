//! A chat peer's bounded outbound queue: frames relayed to it by the other
//! peers of its room, already encoded, shared among all recipients.
//!
//! The queue is bounded by bytes, not by count: a producer never waits, and
//! a peer whose queue would pass its limit is marked slow and closes itself
//! with 1008 (policy violation: it did not read its messages). The bytes
//! stay accounted until written to the socket, so a peer that stops reading
//! is caught however its socket buffers are tuned.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

/// What producer and consumer share about one peer.
#[derive(Debug, Default)]
pub struct PeerState {
    queued: AtomicUsize,
    slow: AtomicBool,
    /// Set once the session wrote its close frame: nothing may follow it.
    closed: AtomicBool,
    /// The session, while it waits: woken when the peer turns slow. The
    /// queue's own wake-up will not do: a session whose socket is full
    /// (the peer reads nothing) stops taking frames off it, and with that
    /// stops registering there.
    session: AtomicWaker,
    /// Relayed messages taken to be written to this peer, and their payload
    /// bytes as the route saw them (before any compression).
    pub delivered: AtomicU64,
    pub delivered_bytes: AtomicU64,
}

impl PeerState {
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Acquire)
    }

    /// Relayed messages and their payload bytes since the last call.
    pub fn take_delivered(&self) -> (u64, u64) {
        (
            self.delivered.swap(0, Ordering::Relaxed),
            self.delivered_bytes.swap(0, Ordering::Relaxed),
        )
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Wakes `waker` when the peer turns slow.
    pub fn wake_if_slow(&self, waker: &std::task::Waker) {
        self.session.register(waker);
    }
}

/// The producer side, held by the room.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Each frame with its message's length before compression.
    tx: mpsc::UnboundedSender<(Bytes, usize)>,
    state: Arc<PeerState>,
    limit: usize,
}

/// The consumer side, polled by the peer's session.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<(Bytes, usize)>,
    state: Arc<PeerState>,
    /// Frames taken off the channel, not yet (fully) written; `offset` bytes
    /// of the first are out.
    pending: VecDeque<Bytes>,
    offset: usize,
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
            pending: VecDeque::new(),
            offset: 0,
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
    /// `message`: the relayed message's length as the route saw it, which
    /// the byte counters count (the frame may be compressed).
    pub fn offer(&self, frame: &Bytes, message: usize) -> Offer {
        if self.state.is_slow() {
            return Offer::Skipped;
        }
        // The peer may be a task of this thread (a TLS peer's), which its
        // session loop must give a turn.
        crate::wake::woke_a_task();
        let queued = self.state.queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
        if queued > self.limit {
            // Release, as the waker's own ordering: the woken session sees
            // the flag.
            self.state.slow.store(true, Ordering::Release);
            self.state.session.wake();
            return Offer::BecameSlow;
        }
        // Shares the encoded frame: a reference count, not a copy.
        match self.tx.send((frame.clone(), message)) {
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
        (self.offset > 0).then(|| &self.pending[0][self.offset..])
    }

    /// Fills `iov` with the frames to write next, the queue's backlog in
    /// one `writev` (a peer that fell behind catches up in few syscalls);
    /// returns how many slices it filled. Registers for a wake-up when the
    /// queue is empty.
    pub fn poll_batch<'a>(&'a mut self, cx: &mut Context<'_>, iov: &mut [IoSlice<'a>]) -> usize {
        if self.is_closed() {
            return 0;
        }
        while self.pending.len() < iov.len() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some((frame, message))) => {
                    self.state.delivered.fetch_add(1, Ordering::Relaxed);
                    let len = message as u64;
                    self.state.delivered_bytes.fetch_add(len, Ordering::Relaxed);
                    self.pending.push_back(frame);
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        let mut n = 0;
        for (i, frame) in self.pending.iter().enumerate().take(iov.len()) {
            let skip = if i == 0 { self.offset } else { 0 };
            iov[i] = IoSlice::new(&frame[skip..]);
            n += 1;
        }
        n
    }

    /// `n` bytes from the front of the batch were written.
    pub fn consumed(&mut self, n: usize) {
        self.state.queued.fetch_sub(n, Ordering::Relaxed);
        let mut left = n;
        while left > 0 {
            let front = self.pending[0].len() - self.offset;
            if left < front {
                self.offset += left;
                return;
            }
            left -= front;
            self.pending.pop_front();
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_over_its_byte_limit_becomes_slow_and_gets_nothing_more() {
        let (out, _inbox) = channel(100);
        let frame = Bytes::from_static(&[0u8; 40]);
        assert_eq!(out.offer(&frame, 38), Offer::Queued);
        assert_eq!(out.offer(&frame, 38), Offer::Queued);
        assert_eq!(out.offer(&frame, 38), Offer::BecameSlow);
        assert_eq!(out.offer(&frame, 38), Offer::Skipped);
        assert!(out.state.is_slow());
    }

    #[test]
    fn written_bytes_make_room_again() {
        let (out, mut inbox) = channel(100);
        let frame = Bytes::from_static(&[1u8; 60]);
        assert_eq!(out.offer(&frame, 38), Offer::Queued);
        assert_eq!(batch(&mut inbox), [60]);
        inbox.consumed(60);
        assert_eq!(out.offer(&frame, 38), Offer::Queued);
    }

    #[test]
    fn a_backlog_goes_out_in_one_batch_and_partial_writes_resume_mid_frame() {
        let (out, mut inbox) = channel(1000);
        for i in 0..3u8 {
            out.offer(&Bytes::from(vec![i; 10]), 8);
        }
        assert_eq!(batch(&mut inbox), [10, 10, 10]);
        inbox.consumed(14);
        assert_eq!(inbox.unfinished(), Some(&[1u8; 6][..]));
        assert_eq!(batch(&mut inbox), [6, 10]);
        inbox.consumed(16);
        assert_eq!(inbox.unfinished(), None);
        assert!(batch(&mut inbox).is_empty());
        // Counted as the messages the route relayed, not as their frames.
        assert_eq!(inbox.state().take_delivered(), (3, 24));
    }

    /// The lengths of the slices the next batch would write.
    fn batch(inbox: &mut Inbox) -> Vec<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut iov = [IoSlice::new(&[]); 8];
        let n = inbox.poll_batch(&mut cx, &mut iov);
        iov[..n].iter().map(|s| s.len()).collect()
    }
}
