//! What a session writes, and where bytes wait when the socket is full.
//!
//! Nothing here belongs to an idle connection. Small frames are gathered in
//! the worker thread's cork buffer and leave in one `write` at the end of a
//! read's worth of frames; large ones, and a small one that ends its read
//! with nothing gathered before it, go out straight from the worker's
//! receive buffer, their header written in front of the payload where the
//! client's header was (one `send`), or as `writev(header, payload)` when
//! there is no room there (a payload assembled from several reads). Only
//! when the socket takes less than offered are the rest copied into the
//! connection's `Spill` (uSockets does the same), and the session reads
//! nothing more until the spill has drained: a connection holds at most one
//! read's worth of unsent bytes, whatever its peer does.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::AsyncWrite;

/// Frames up to this size (header included) are copied into the cork
/// buffer: cheaper than a `writev` of their own.
const GATHER_FRAME_MAX: usize = 1 << 10;

/// The cork buffer is written out once it holds this much.
pub(crate) const GATHER_MAX: usize = 16 << 10;

/// Bytes a session could not write yet; empty (and unallocated) while the
/// peer keeps up. One pointer in the session: a connection whose socket
/// takes everything (nearly all of them) carries no `Vec` header either.
#[derive(Debug, Default)]
pub(crate) struct Spill(Option<Box<Waiting>>);

#[derive(Debug, Default)]
struct Waiting {
    bytes: Vec<u8>,
    written: usize,
}

impl Spill {
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |w| w.bytes.len() - w.written)
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let w = self.0.get_or_insert_default();
        // A peer that reads, but never all of it, keeps the spill from
        // emptying (reading behind a large frame, up to --max-backlog):
        // kept, the written front would grow with everything it is sent.
        // Dropped once it is as long as what waits, so a byte is moved at
        // most once on average and the buffer stays under twice what waits
        // plus this push.
        if w.written > 0 && w.written >= w.bytes.len() - w.written {
            w.bytes.drain(..w.written);
            w.written = 0;
        }
        w.bytes.extend_from_slice(bytes);
    }

    /// Writes the spill out; frees it once empty, so an idle connection
    /// keeps no buffer. Sets `wrote` when any byte left.
    pub(crate) fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
        wrote: &mut bool,
    ) -> Poll<io::Result<()>> {
        let Some(w) = &mut self.0 else {
            return Poll::Ready(Ok(()));
        };
        while w.written < w.bytes.len() {
            match std::task::ready!(Pin::new(&mut *io).poll_write(cx, &w.bytes[w.written..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => {
                    w.written += n;
                    *wrote = true;
                }
            }
        }
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

/// Writes one pass of frames: borrows the socket, the worker's cork buffer
/// and the connection's spill for as long as one read is being answered.
pub(crate) struct Writer<'a, 'c, S> {
    io: &'a mut S,
    cx: &'a mut Context<'c>,
    cork: &'a mut Vec<u8>,
    spill: &'a mut Spill,
    /// Something (a relayed frame) is half on the wire: our frames queue
    /// behind it in the spill.
    behind: bool,
    /// The length of the read being answered ([`Writer::answering`]): a
    /// frame that ends there is the read's last.
    read_end: usize,
    /// Bytes that reached the socket in this pass.
    pub(crate) wrote: usize,
    pub(crate) error: Option<io::Error>,
}

impl<'a, 'c, S: AsyncWrite + Unpin> Writer<'a, 'c, S> {
    pub(crate) fn new(
        io: &'a mut S,
        cx: &'a mut Context<'c>,
        cork: &'a mut Vec<u8>,
        spill: &'a mut Spill,
        behind: bool,
    ) -> Self {
        Writer {
            io,
            cx,
            cork,
            spill,
            behind,
            read_end: 0,
            wrote: 0,
            error: None,
        }
    }

    /// The frames to come are answers to a read of `len` bytes.
    pub(crate) fn answering(&mut self, len: usize) {
        self.read_end = len;
    }

    fn blocked(&self) -> bool {
        self.behind || !self.spill.is_empty() || self.error.is_some()
    }

    /// Writes one frame (server frames are never masked). `rsv1` marks a
    /// compressed message's first frame.
    pub(crate) fn frame(&mut self, fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) {
        let mut head = [0u8; 10];
        let n = Frame::new(fin, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
        if rsv1 {
            head[0] |= 0x40;
        }
        self.raw(&head[..n], payload);
    }

    /// [`Writer::frame`] for a payload at `read[start..]` in the receive
    /// buffer, whose bytes before `start` are spent (the frame's own header,
    /// frames already answered): a large frame's header is written there,
    /// in front of its payload, so the frame leaves as one slice, with one
    /// `send` and no copy (a `writev` of header and payload costs more in
    /// the kernel: ~375 ns per message at 100 x 1 KiB, perf, against ~90
    /// for `send`). A small frame goes the same way when it ends the read
    /// and nothing is corked before it: the cork would gather nothing.
    pub(crate) fn frame_in_place(
        &mut self,
        read: &mut [u8],
        start: usize,
        fin: bool,
        opcode: OpCode,
    ) {
        let mut head = [0u8; 10];
        let payload = &read[start..];
        let n = Frame::new(fin, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
        let alone = read.len() == self.read_end && self.cork.is_empty();
        if start < n || (n + payload.len() <= GATHER_FRAME_MAX && !alone) {
            return self.raw(&head[..n], payload);
        }
        let frame = &mut read[start - n..];
        // A copy of a length known at compile time is a store or two; of
        // `n`, a call to memcpy (17 instructions per echo).
        match n {
            2 => frame[..2].copy_from_slice(&head[..2]),
            4 => frame[..4].copy_from_slice(&head[..4]),
            _ => frame[..n].copy_from_slice(&head[..n]),
        }
        self.whole(frame);
    }

    /// Writes `head` then `payload`, in that order, after everything before.
    fn raw(&mut self, head: &[u8], payload: &[u8]) {
        let len = head.len() + payload.len();
        if len > GATHER_FRAME_MAX {
            return self.large(head, payload);
        }
        if self.blocked() {
            if self.error.is_none() {
                // Copy forced by a full socket; bounded by one read's worth.
                self.spill.push(head);
                self.spill.push(payload);
            }
            return;
        }
        if self.cork.len() + len > GATHER_MAX {
            self.flush();
            if self.blocked() {
                return self.raw(head, payload);
            }
        }
        // The one copy a small frame makes: into the cork, so a burst of
        // them leaves in one `write`.
        self.cork.extend_from_slice(head);
        self.cork.extend_from_slice(payload);
    }

    /// Writes a frame that is one slice, straight from where it is, after
    /// the cork: with `send`, as the kernel's `writev` path (vfs_writev,
    /// importing the iovec) costs more for the same bytes.
    fn whole(&mut self, frame: &[u8]) {
        self.flush();
        self.send(frame);
    }

    /// One `send` of `bytes` unless something waits before them; what the
    /// socket does not take goes to the spill.
    fn send(&mut self, bytes: &[u8]) {
        let mut n = 0;
        if !self.blocked() {
            let polled = Pin::new(&mut *self.io).poll_write(self.cx, bytes);
            n = self.written(polled).unwrap_or(0);
        }
        self.keep_unwritten(bytes, n);
    }

    /// Writes a large frame given as header and payload, straight from
    /// where they are, after the cork.
    fn large(&mut self, head: &[u8], payload: &[u8]) {
        self.flush();
        let mut n = 0;
        if !self.blocked() {
            let iov = [IoSlice::new(head), IoSlice::new(payload)];
            let polled = Pin::new(&mut *self.io).poll_write_vectored(self.cx, &iov);
            n = self.written(polled).unwrap_or(0);
        }
        let taken = n.min(head.len());
        self.keep_unwritten(head, taken);
        self.keep_unwritten(payload, n - taken);
    }

    /// What the socket did not take of `part` waits in the spill, in order
    /// (after a failure nothing will be written: nothing is kept).
    fn keep_unwritten(&mut self, part: &[u8], taken: usize) {
        if taken < part.len() && self.error.is_none() {
            // Copy forced by a full socket; bounded by one read's worth.
            self.spill.push(&part[taken..]);
        }
    }

    /// `Some(n)`: written; `None`: nothing written (full, or failed).
    /// Always inlined: a call here was 18 of an echo's instructions.
    #[inline(always)]
    fn written(&mut self, polled: Poll<io::Result<usize>>) -> Option<usize> {
        match polled {
            Poll::Ready(Ok(0)) => {
                self.error = Some(io::ErrorKind::WriteZero.into());
                None
            }
            Poll::Ready(Ok(n)) => {
                self.wrote += n;
                Some(n)
            }
            Poll::Ready(Err(e)) => {
                self.error = Some(e);
                None
            }
            Poll::Pending => {
                // The socket is full and will wake us: every later frame of
                // this pass queues in the spill, in order.
                self.behind = true;
                None
            }
        }
    }

    /// Writes the cork out; what the socket does not take moves to the spill.
    /// Inlined for the empty cork of most calls (a read's lone frame went
    /// out in place).
    #[inline]
    pub(crate) fn flush(&mut self) {
        if !self.cork.is_empty() {
            self.flush_cork();
        }
    }

    fn flush_cork(&mut self) {
        let cork = std::mem::take(self.cork);
        self.send(&cork);
        // Hand the (empty) allocation back to the worker.
        *self.cork = cork;
        self.cork.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    /// A peer that takes 1 KiB, then nothing until it is asked again.
    #[derive(Default)]
    struct Trickle {
        got: Vec<u8>,
        full: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.full = !self.full;
            if !self.full {
                return Poll::Pending;
            }
            let n = buf.len().min(1 << 10);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A peer that takes everything, and remembers where each write came
    /// from.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<(*const u8, Vec<u8>)>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push((buf.as_ptr(), buf.to_vec()));
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A read of several small frames leaves in one write, from the cork; a
    /// read's lone small frame leaves from the receive buffer, its header
    /// written where the client's was, and the cork stays empty.
    #[test]
    fn small_frames_are_corked_unless_one_ends_its_read_alone() {
        let mut cx = Context::from_waker(Waker::noop());
        let (mut cork, mut spill, mut peer) = (Vec::new(), Spill::default(), Recorder::default());
        // Two 20-byte client frames, each behind a 6-byte header (2 bytes
        // and a mask key): the reader has unmasked them in place.
        let mut read = [0u8; 52];
        read[6..26].fill(1);
        read[32..52].fill(2);
        let echo = |fill: u8| [&[0x82, 20][..], &[fill; 20]].concat();

        let mut w = Writer::new(&mut peer, &mut cx, &mut cork, &mut spill, false);
        w.answering(52);
        w.frame_in_place(&mut read[..26], 6, true, OpCode::Binary);
        w.frame_in_place(&mut read[..52], 32, true, OpCode::Binary);
        w.flush();
        assert_eq!(peer.writes.len(), 1, "two frames, one write");
        assert_eq!(peer.writes[0].1, [echo(1), echo(2)].concat());

        let mut w = Writer::new(&mut peer, &mut cx, &mut cork, &mut spill, false);
        w.answering(26);
        w.frame_in_place(&mut read[..26], 6, true, OpCode::Binary);
        w.flush();
        assert_eq!(peer.writes.len(), 2);
        assert_eq!(peer.writes[1], (read[4..].as_ptr(), echo(1)));
        assert!(cork.is_empty() && spill.is_empty());
    }

    /// A large frame the socket takes only part of leaves the rest in the
    /// spill, and every later frame of the pass queues behind it: the peer
    /// gets all of them, whole and in order, whether the cut frame went out
    /// from the receive buffer (one slice) or as header and payload.
    #[test]
    fn frames_the_socket_takes_in_part_leave_whole_and_in_order() {
        let head = |len: usize| [0x82, 126, (len >> 8) as u8, len as u8];
        // A 3,000-byte client frame behind its 8-byte header, unmasked.
        let mut read = vec![0u8; 3008];
        read[8..].fill(1);
        let in_place = [&head(3000)[..], &[1; 3000]].concat();
        let copied = [&head(2000)[..], &[2; 2000]].concat();
        let small = [&[0x82, 20][..], &[3; 20]].concat();

        for in_place_first in [true, false] {
            let mut cx = Context::from_waker(Waker::noop());
            let (mut cork, mut spill) = (Vec::new(), Spill::default());
            let mut peer = Trickle::default();
            let mut w = Writer::new(&mut peer, &mut cx, &mut cork, &mut spill, false);
            w.answering(read.len());
            if in_place_first {
                w.frame_in_place(&mut read, 8, true, OpCode::Binary);
                w.frame(true, false, OpCode::Binary, &[2; 2000]);
            } else {
                w.frame(true, false, OpCode::Binary, &[2; 2000]);
                w.frame_in_place(&mut read, 8, true, OpCode::Binary);
            }
            w.frame(true, false, OpCode::Binary, &[3; 20]);
            w.flush();
            // The first write took 1 KiB of one slice, or the 4-byte header
            // of two (Trickle writes the first of a vector).
            let first = if in_place_first { 1 << 10 } else { 4 };
            assert_eq!((w.wrote, w.error.is_none()), (first, true));
            assert!(cork.is_empty());
            while spill
                .poll_drain(&mut peer, &mut cx, &mut false)
                .is_pending()
            {}
            let expected = match in_place_first {
                true => [&in_place[..], &copied, &small].concat(),
                false => [&copied[..], &in_place, &small].concat(),
            };
            assert!(peer.got == expected, "the same frames, in order");
        }
    }

    /// A peer that reads, but never all of what waits, does not make the
    /// spill grow with what it is sent: the written front is dropped. Its
    /// bytes still leave whole and in order.
    #[test]
    fn a_spill_that_never_empties_stays_within_twice_what_waits() {
        const WAIT: usize = 256 << 10;
        const PIECE: usize = 64 << 10;
        let mut spill = Spill::default();
        let mut peer = Trickle::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut sent = Vec::new();
        let mut most = 0;
        for round in 0..5_000u32 {
            while spill.len() < WAIT {
                let piece: Vec<u8> = (0..PIECE).map(|i| (i as u32 ^ round) as u8).collect();
                spill.push(&piece);
                sent.extend_from_slice(&piece);
            }
            let mut wrote = false;
            assert!(
                spill
                    .poll_drain(&mut peer, &mut cx, &mut wrote)
                    .is_pending()
            );
            assert!(wrote);
            let w = spill.0.as_ref().unwrap();
            most = most.max(w.bytes.capacity());
        }
        assert_eq!(peer.got.len(), 5_000 << 10, "1 KiB a round");
        assert!(most <= 4 * (WAIT + PIECE), "the spill grew to {most} bytes");
        while spill
            .poll_drain(&mut peer, &mut cx, &mut false)
            .is_pending()
        {}
        assert!(spill.is_empty() && spill.0.is_none());
        assert!(peer.got == sent, "the same bytes, in order");
    }
}
