//! The order and timing of the loop's writes: connections lent since the
//! last turn taken in by the order they were dialled, and what a batch
//! queued written once it is read, or early past a budget.

use std::ops::ControlFlow;

use mio::{Interest, Token};

use super::{Direct, FLUSH_BYTES, FLUSH_CONNS};
use crate::scenario::echo::End;

impl Direct {
    /// Adds connection `token`, with `queued` bytes to write, to the batch's
    /// writes, and writes them once [`FLUSH_CONNS`] connections or
    /// [`FLUSH_BYTES`] are waiting.
    pub(super) fn queue_for_flush(&self, token: usize, queued: usize) {
        let waiting = {
            let mut unflushed = self.unflushed.borrow_mut();
            unflushed.push(token);
            unflushed.len()
        };
        let bytes = self.unflushed_bytes.get() + queued;
        self.unflushed_bytes.set(bytes);
        if bytes >= FLUSH_BYTES || waiting >= FLUSH_CONNS {
            self.flush();
        }
    }

    /// Takes in the connections lent since the last turn, in the order
    /// they were dialled, not the order they were lent in: registers each
    /// with epoll and queues its first messages for the next flush.
    ///
    /// Why: with one message in flight each, the order of the first sends
    /// is the order of every round after it (each echo is answered in the
    /// order it arrives). Taken in as their tasks happened to wake, 1000
    /// connections went round as several interleaved sweeps over their
    /// sockets; in the order they were dialled, as `load_test` sends, both
    /// ends walk their sockets and sessions in the order they were
    /// allocated. At 1000 x 20 B against wsecho the server then echoed 13 %
    /// more messages a second, and this loop did 8.7 % more per CPU second
    /// (`scripts/generator-ab.sh`, 5 rounds, ahead in each; loadtest/README).
    pub(super) fn start_in_order(&self) {
        // Checked before taking: taking an empty list would drop the
        // capacity it keeps for the next start.
        if self.starting.borrow().is_empty() {
            return;
        }
        let mut starting = self.starting.take();
        {
            let entries = self.entries.borrow();
            starting.sort_by_key(|&token| entries[token].as_ref().map(|e| e.echo.id()));
        }
        // Registered in order too: a registration's first event (writable)
        // is where an echo that came back before it is first read.
        let interest = Interest::READABLE | Interest::WRITABLE;
        for &token in &starting {
            let registered = {
                let mut entries = self.entries.borrow_mut();
                let Some(e) = entries[token].as_mut() else {
                    continue;
                };
                let registry = self.poll.borrow();
                match registry
                    .registry()
                    .register(&mut e.sock, Token(token), interest)
                {
                    Ok(()) => Ok(e.conn.pending_write()),
                    Err(err) => Err(e.echo.failed(err)),
                }
            };
            match registered {
                Ok(0) => {}
                Ok(queued) => self.queue_for_flush(token, queued),
                Err(end) => self.end(token, ControlFlow::<End>::Break(end)),
            }
        }
        starting.clear();
        *self.starting.borrow_mut() = starting;
    }

    /// Writes what the batch's connections queued, back to back.
    ///
    /// Why after the batch, not as each echo is read: our sends are what
    /// wake the server, and a server that finds no more work between two
    /// of them goes back to sleep, to be woken (an IPI, a context switch,
    /// paid on this core) by the next. Written together, they reach it
    /// while it is still busy with the first. The send time an echo is
    /// timed from is taken when it is queued, so the wait is in the
    /// round-trip times, not hidden from them.
    pub(super) fn flush(&self) {
        self.unflushed_bytes.set(0);
        let mut tokens = self.unflushed.take();
        for &token in &tokens {
            let mut entries = self.entries.borrow_mut();
            let Some(Some(e)) = entries.get_mut(token) else {
                continue; // ended since
            };
            let flow = e.write_out();
            drop(entries);
            self.end(token, flow);
        }
        tokens.clear();
        *self.unflushed.borrow_mut() = tokens;
    }
}
