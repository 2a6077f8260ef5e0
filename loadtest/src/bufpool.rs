//! Per-worker buffers that connections borrow for one read, one write or
//! one message put together.
//!
//! Why: a connection holds bytes only between a short read and the rest
//! of its frame, or between a partial write and the rest of it; the rest
//! of the time its buffers sit idle. With a buffer of its own per
//! connection, 500 connections x 16 KiB each way is 16 MiB that the kernel
//! copies into and the payload generator writes to, every byte a cache
//! miss (perf at 500 x 16 KiB: the generator's stores into the send buffer
//! and the kernel's receive copy were a third of the CPU). Borrowed from
//! here and returned as soon as they are empty, the same one or two
//! buffers serve every connection of a thread and stay in cache, as
//! uSockets' one receive buffer per loop does.
//!
//! A worker thread runs one single-threaded runtime, so a `thread_local`
//! is the worker's pool: no lock, no atomic, and nothing to thread through
//! the connection's constructor.

use std::cell::RefCell;

/// Bytes of spare buffers kept per pool. Enough for what a batch of the
/// epoll loop queues before it writes ([`crate::scenario::direct`] flushes at 64
/// KiB): each connection with a frame queued holds a buffer until the
/// flush, and a buffer made anew is a malloc, a zero-fill and cold memory
/// for the kernel to copy from (perf at 500 x 16 KiB, when this was eight
/// buffers: `memset` alone was 300 ns per TCP segment). Small frames take
/// small buffers, so a thousand 20-byte echoes fit too.
const MAX_SPARE_BYTES: usize = 256 << 10;
/// Larger read and write buffers (a frame of many MiB) are freed rather than kept.
const MAX_KEPT: usize = 1 << 20;

/// Which pool: reads and writes never share a buffer, so a read buffer is
/// never grown to the size of a burst of writes or the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Read,
    Write,
    /// A message put together: fragments joined, or a compressed message
    /// inflated. Held only while the message is in the making or handed
    /// out, so a thousand connections that once took a 1 MiB message do
    /// not keep a thousand MiB.
    Message,
}

/// One pool's spare buffers and their bytes in all.
struct Spare {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static READ: RefCell<Spare> = const { RefCell::new(Spare { bufs: Vec::new(), bytes: 0 }) };
    static WRITE: RefCell<Spare> = const { RefCell::new(Spare { bufs: Vec::new(), bytes: 0 }) };
    static MESSAGE: RefCell<Spare> = const { RefCell::new(Spare { bufs: Vec::new(), bytes: 0 }) };
}

impl Pool {
    fn with<R>(self, f: impl FnOnce(&mut Spare) -> R) -> R {
        let key = match self {
            Pool::Read => &READ,
            Pool::Write => &WRITE,
            Pool::Message => &MESSAGE,
        };
        key.with(|spare| f(&mut spare.borrow_mut()))
    }

    /// A buffer of at least `len` bytes (its length, not just capacity: the
    /// caller reads or writes into `buf[..]`). Contents are whatever the
    /// last user left; only growth zero-fills.
    pub fn take(self, len: usize) -> Vec<u8> {
        let mut buf = self
            .with(|spare| {
                let buf = spare.bufs.pop()?;
                spare.bytes -= buf.capacity();
                Some(buf)
            })
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    /// An empty buffer to grow, with the capacity its last user left.
    pub fn take_empty(self) -> Vec<u8> {
        let mut buf = self.take(0);
        buf.clear();
        buf
    }

    /// The largest buffer this pool keeps. A message buffer is kept
    /// whatever its size: a connection's own used to be, and a run of 4 MiB
    /// messages echoed in fragments would otherwise allocate and grow one
    /// per message. One per worker, bounded by the message limit.
    fn max_kept(self) -> usize {
        match self {
            Pool::Read | Pool::Write => MAX_KEPT,
            Pool::Message => usize::MAX,
        }
    }

    /// Hands a buffer back for the next connection. Counted by capacity:
    /// that is what it holds.
    pub fn give(self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > self.max_kept() {
            return;
        }
        self.with(|spare| {
            // One is kept whatever its size (up to the pool's largest), so
            // a run of 1 MiB frames still reuses its buffer.
            if spare.bufs.is_empty() || spare.bytes + buf.capacity() <= MAX_SPARE_BYTES {
                spare.bytes += buf.capacity();
                spare.bufs.push(buf);
            }
        });
    }

    /// Buffers waiting in this thread's pool.
    pub fn spare(self) -> usize {
        self.with(|spare| spare.bufs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_the_next_one_lent() {
        let mut a = Pool::Read.take(100);
        assert_eq!(a.len(), 100);
        a[0] = 7;
        let ptr = a.as_ptr();
        Pool::Read.give(a);
        let b = Pool::Read.take(50);
        assert_eq!((b.as_ptr(), b.len(), b[0]), (ptr, 100, 7));
        // The other pool is apart.
        assert_eq!(Pool::Write.spare(), 0);
        Pool::Read.give(b);
    }

    #[test]
    fn a_short_buffer_grows_and_a_huge_or_empty_one_is_not_kept() {
        Pool::Write.give(vec![1; 10]);
        assert_eq!(Pool::Write.take(20), [&[1; 10][..], &[0; 10][..]].concat());
        Pool::Write.give(Vec::new());
        Pool::Write.give(vec![0; MAX_KEPT + 1]);
        assert_eq!(Pool::Write.spare(), 0);
    }

    #[test]
    fn one_message_buffer_is_kept_whatever_its_size() {
        let big = Vec::with_capacity(4 * MAX_KEPT);
        Pool::Message.give(big);
        Pool::Message.give(Vec::with_capacity(4 * MAX_KEPT));
        assert_eq!(Pool::Message.spare(), 1, "the budget still holds");
        let back = Pool::Message.take_empty();
        assert_eq!((back.len(), back.capacity()), (0, 4 * MAX_KEPT));
    }

    #[test]
    fn spare_buffers_are_kept_up_to_a_byte_budget() {
        let size = MAX_SPARE_BYTES / 4;
        for _ in 0..6 {
            Pool::Read.give(vec![0; size]);
        }
        assert_eq!(Pool::Read.spare(), 4);
        // Taking one frees its share of the budget for the next.
        let one = Pool::Read.take(1);
        Pool::Write.give(vec![0; 8]);
        Pool::Read.give(vec![0; size]);
        Pool::Read.give(one);
        assert_eq!(Pool::Read.spare(), 4);
        // Small ones fit by the thousand.
        for _ in 0..4 {
            Pool::Read.take(1);
        }
        for _ in 0..1000 {
            Pool::Read.give(vec![0; 64]);
        }
        assert_eq!(Pool::Read.spare(), 1000);
        // An empty pool keeps one larger than the budget.
        while Pool::Read.spare() > 0 {
            Pool::Read.take(1);
        }
        Pool::Read.give(vec![0; MAX_SPARE_BYTES * 2]);
        Pool::Read.give(vec![0; 8]);
        assert_eq!(Pool::Read.spare(), 1);
    }
}
