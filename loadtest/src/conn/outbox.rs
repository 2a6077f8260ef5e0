//! A connection's outbox: the frames it has queued and not yet written,
//! its own bytes with pieces of the shared [`payload::wire`] pattern
//! between them, written by as few system calls as the socket takes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::bufpool::Pool;
use crate::codec::{self, MAX_HEADER};
use crate::payload;

/// Frames waiting to be written, back to back: bytes of the outbox's own,
/// with pieces of the shared [`payload::wire`] pattern between them.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) buf: Vec<u8>,
    pos: usize,
    pub(super) end: usize,
    /// Boxed, and made on the first splice: the outbox is part of every
    /// connection's entry in the worker's epoll loop, whose size is cache
    /// lines touched per event, and small messages never splice.
    splices: Option<Box<Splices>>,
}

/// The pieces of the wire pattern queued, in order; the first may be
/// partly written (its slice shortened).
#[derive(Default)]
struct Splices {
    queue: VecDeque<Splice>,
    /// Their bytes, for [`Outbox::pending`], which the open loop asks for
    /// every message it queues.
    bytes: usize,
}

/// Pieces a connection's splice queue may keep room for once drained: a
/// backlog of thousands (the open loop's 4 MiB of 2 KiB messages) should
/// not leave its queue behind.
const KEPT_SPLICES: usize = 64;

/// A piece of the wire pattern that goes out after byte `at` of the
/// outbox's own buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Splice {
    at: usize,
    bytes: &'static [u8],
}

/// Slices given to one `writev`.
const MAX_SLICES: usize = 16;

impl Outbox {
    /// Appends the header of a masked frame of `len` bytes and returns the
    /// space for its payload, to be written there in place.
    pub(super) fn frame(&mut self, opcode: u8, len: usize, mask: [u8; 4]) -> &mut [u8] {
        self.frame_head(opcode, len, len, mask)
    }

    /// Appends the header of a masked frame of `len` bytes and room for
    /// the first `own` of them; the rest follows as [`Outbox::splice`]s.
    pub(super) fn frame_head(
        &mut self,
        opcode: u8,
        len: usize,
        own: usize,
        mask: [u8; 4],
    ) -> &mut [u8] {
        if self.is_empty() {
            self.pos = 0;
            self.end = 0;
        }
        let need = self.end + MAX_HEADER + own;
        if self.buf.is_empty() {
            self.buf = Pool::Write.take(need);
        }
        if self.buf.len() < need {
            // Grows to the largest burst once; afterwards the send path
            // writes into memory it already has. Not to a power of two: a
            // 16 KiB frame would take 32 KiB per connection, and with
            // hundreds of connections that memory is what the cache misses.
            let grown = need.max(self.buf.len() * 2);
            self.buf.resize(grown, 0);
        }
        let h = codec::write_header(&mut self.buf[self.end..], opcode, len, mask);
        let start = self.end + h;
        self.end = start + own;
        &mut self.buf[start..start + own]
    }

    /// Appends payload bytes `range` of a wire-pattern message, which go
    /// out as the pattern itself (the frame's mask is the message's key).
    pub(super) fn splice(&mut self, range: std::ops::Range<usize>) {
        let bytes = &payload::wire()[range];
        let splices = self.splices.get_or_insert_default();
        splices.bytes += bytes.len();
        splices.queue.push_back(Splice {
            at: self.end,
            bytes,
        });
    }

    pub(super) fn pending(&self) -> usize {
        self.end - self.pos + self.splices.as_ref().map_or(0, |s| s.bytes)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.end && self.pieces().next().is_none()
    }

    pub(super) fn pieces(&self) -> impl Iterator<Item = &Splice> {
        self.splices.iter().flat_map(|s| s.queue.iter())
    }

    /// What is still to be written, in order, as at most `out.len()`
    /// slices; returns how many.
    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let (mut n, mut pos) = (0, self.pos);
        for s in self.pieces() {
            if n + 2 > out.len() {
                return n;
            }
            if s.at > pos {
                out[n] = IoSlice::new(&self.buf[pos..s.at]);
                n += 1;
                pos = s.at;
            }
            out[n] = IoSlice::new(s.bytes);
            n += 1;
        }
        if n < out.len() && self.end > pos {
            out[n] = IoSlice::new(&self.buf[pos..self.end]);
            n += 1;
        }
        n
    }

    /// What is left when it is the outbox's own bytes (maybe none) and then
    /// one piece of the pattern, as a wire-pattern message leaves it.
    fn joined_head(&self) -> Option<(&[u8], &'static [u8])> {
        match self.splices.as_deref()?.queue.as_slices() {
            ([s], []) | ([], [s]) if s.at == self.end => {
                Some((&self.buf[self.pos..self.end], s.bytes))
            }
            _ => None,
        }
    }

    /// `n` more bytes were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(splices) = self.splices.as_mut().filter(|s| !s.queue.is_empty()) else {
                self.pos += n;
                return;
            };
            let s = &mut splices.queue[0];
            if s.at > self.pos {
                let k = (s.at - self.pos).min(n);
                self.pos += k;
                n -= k;
                continue;
            }
            let k = s.bytes.len().min(n);
            s.bytes = &s.bytes[k..];
            splices.bytes -= k;
            n -= k;
            if s.bytes.is_empty() {
                splices.queue.pop_front();
            }
        }
    }

    /// Writes through `write`, which takes slices and says how many bytes
    /// it took, until the outbox is empty or `write` stops (`None` for
    /// would-block or pending). True when anything was written.
    pub(super) fn write_with(
        &mut self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> Option<io::Result<usize>>,
    ) -> io::Result<bool> {
        let mut any = false;
        while !self.is_empty() {
            let wrote = if self.pieces().next().is_none() {
                // Most writes: one slice, without setting up sixteen.
                write(&[IoSlice::new(&self.buf[self.pos..self.end])])
            } else if let Some(wrote) = self.joined_head().and_then(|(head, piece)| {
                payload::joined(head, piece, |one| write(&[IoSlice::new(one)]))
            }) {
                // A message's own bytes, then its piece of the pattern.
                wrote
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = self.slices(&mut slices);
                write(&slices[..n])
            };
            match wrote {
                None => return Ok(any),
                Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Some(Ok(k)) => {
                    self.advance(k);
                    any = true;
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return Err(e),
            }
        }
        self.written();
        Ok(any)
    }

    /// Everything queued has been written: the buffer goes back.
    fn written(&mut self) {
        self.pos = 0;
        self.end = 0;
        if !self.buf.is_empty() {
            Pool::Write.give(std::mem::take(&mut self.buf));
        }
        if self
            .splices
            .as_ref()
            .is_some_and(|s| s.queue.capacity() > KEPT_SPLICES)
        {
            self.splices = None;
        }
    }
}
