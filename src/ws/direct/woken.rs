//! Sessions woken by something other than their socket, queued for the
//! loop's next turn, and the one wake-up the loop needs for them.
//!
//! Every turn asks whether anything is queued (before it blocks, and after
//! its events), and almost every answer is no: at a fixed 40k msg/s a turn
//! is one socket event. So the answer is one flag, read without the lock
//! that guards the queue; the lock is taken only where tokens wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use futures_util::task::AtomicWaker;

/// The tokens, and how to wake the loop for them: the loop task's waker
/// while it waits as a task, an eventfd while it blocks in its own
/// `epoll_wait` (it owns the thread). Shared with wakers on other threads
/// (the sweep ticks on worker 0; a chat message can come from any worker).
#[derive(Default)]
pub(super) struct Woken {
    tokens: Mutex<Vec<usize>>,
    /// `tokens` is not empty. Written under the lock; read without it.
    queued: AtomicBool,
    pub(super) task: AtomicWaker,
    /// The loop is in (or about to enter) a blocking `epoll_wait`.
    blocking: AtomicBool,
    eventfd: Option<mio::Waker>,
}

impl Woken {
    /// For an owner loop, which blocks in its own `epoll_wait`.
    pub(super) fn with_eventfd(eventfd: mio::Waker) -> Woken {
        Woken {
            eventfd: Some(eventfd),
            ..Woken::default()
        }
    }

    pub(super) fn push(&self, token: usize) {
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            tokens.push(token);
            // SeqCst, as `blocking` on both sides: of this store and the
            // loop's `blocking` store in `may_block`, whichever comes
            // second sees the first, so the loop either does not block or
            // is woken below.
            self.queued.store(true, Ordering::SeqCst);
        }
        self.task.wake();
        if self.blocking.swap(false, Ordering::SeqCst)
            && let Some(eventfd) = &self.eventfd
        {
            // A failed write leaves the token to the next event: at most
            // the owner loop's periodic turn later.
            let _ = eventfd.wake();
        }
    }

    /// Moves the queued tokens into `into` (empty), without locking when
    /// there are none. A token pushed meanwhile waits for the next take.
    pub(super) fn take(&self, into: &mut Vec<usize>) {
        // Swapped in, tokens in `into` would wait unflagged.
        debug_assert!(into.is_empty());
        if !self.any() {
            return;
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *tokens, into);
        self.queued.store(false, Ordering::Relaxed);
    }

    pub(super) fn any(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Before a blocking wait: true if it may block (nothing is queued; a
    /// token pushed from now on writes the eventfd).
    pub(super) fn may_block(&self) -> bool {
        self.blocking.store(true, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) {
            self.blocking.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// After the wait. Relaxed: a push that still sees the flag raised
    /// only writes the eventfd once too often, for a spare turn.
    pub(super) fn awake(&self) {
        self.blocking.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use mio::{Events, Poll, Token};

    use super::*;

    const WAKER: Token = Token(7);

    fn with_eventfd() -> (Poll, Arc<Woken>) {
        let poll = Poll::new().unwrap();
        let eventfd = mio::Waker::new(poll.registry(), WAKER).unwrap();
        (poll, Arc::new(Woken::with_eventfd(eventfd)))
    }

    /// Events within `timeout`.
    fn wait(poll: &mut Poll, timeout: Duration) -> usize {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(timeout)).unwrap();
        events.iter().count()
    }

    #[test]
    fn tokens_come_out_in_the_order_they_were_pushed_and_once() {
        let woken = Woken::default();
        let mut batch = Vec::new();
        woken.take(&mut batch);
        assert!(batch.is_empty());
        assert!(!woken.any());
        woken.push(3);
        woken.push(1);
        assert!(woken.any());
        woken.take(&mut batch);
        assert_eq!(batch, [3, 1]);
        assert!(!woken.any());
        batch.clear();
        woken.take(&mut batch);
        assert!(batch.is_empty());
    }

    #[test]
    fn the_loop_does_not_block_with_tokens_queued() {
        let (mut poll, woken) = with_eventfd();
        woken.push(5);
        assert!(!woken.may_block());
        // Pushed while not blocking: no eventfd write.
        assert_eq!(wait(&mut poll, Duration::ZERO), 0);
        let mut batch = Vec::new();
        woken.take(&mut batch);
        assert_eq!(batch, [5]);
        assert!(woken.may_block());
    }

    #[test]
    fn a_push_while_the_loop_blocks_writes_the_eventfd_once() {
        let (mut poll, woken) = with_eventfd();
        assert!(woken.may_block());
        woken.push(1);
        assert_eq!(wait(&mut poll, Duration::ZERO), 1);
        // The first push took the flag down: a second write would be a
        // new edge.
        woken.push(2);
        assert_eq!(wait(&mut poll, Duration::ZERO), 0);
        woken.awake();
        let mut batch = Vec::new();
        woken.take(&mut batch);
        assert_eq!(batch, [1, 2]);
    }

    /// The race the flags are for: a push from another thread at any point
    /// around `may_block` either stops the loop from blocking or wakes it.
    /// A lost wake-up would leave the loop in `epoll_wait` for 5 s.
    #[test]
    fn a_push_from_another_thread_is_never_missed() {
        let (mut poll, woken) = with_eventfd();
        let rounds = 2_000;
        let pusher = {
            let woken = woken.clone();
            std::thread::spawn(move || {
                for token in 0..rounds {
                    // Wait for the loop to take the last one.
                    while woken.any() {
                        std::hint::spin_loop();
                    }
                    for _ in 0..token % 64 {
                        std::hint::spin_loop();
                    }
                    woken.push(token);
                }
            })
        };
        let mut batch = Vec::new();
        let mut seen = 0;
        while seen < rounds {
            if woken.may_block() {
                let woke = wait(&mut poll, Duration::from_secs(5));
                assert_eq!(woke, 1, "a token was queued and the loop slept on");
                woken.awake();
            }
            batch.clear();
            woken.take(&mut batch);
            seen += batch.len();
        }
        pusher.join().unwrap();
    }
}
