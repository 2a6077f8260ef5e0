//! What a connection writes, against in-memory and real sockets: spliced
//! messages through writes that stop anywhere, by the task path and the
//! epoll loop's, and a queued message sent in the same poll.

use std::io::IoSlice;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::read_tests::{direct_pair, pair};
use super::*;
use crate::codec::OP_BINARY;
use crate::payload;

/// Takes a different number of bytes each call, across as many slices
/// as that covers (from 1 byte to more than a frame), and every fifth
/// call nothing: "would block".
struct Ragged {
    got: Vec<u8>,
    calls: usize,
}

impl Ragged {
    fn take(&mut self) -> Option<usize> {
        const TAKES: [usize; 7] = [1, 7, 5000, 20, 70_000, 3, 131_072];
        self.calls += 1;
        (!self.calls.is_multiple_of(5)).then(|| TAKES[self.calls % TAKES.len()])
    }
}

impl std::io::Write for Ragged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(mut room) = self.take() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let before = self.got.len();
        for b in bufs {
            let n = b.len().min(room);
            self.got.extend_from_slice(&b[..n]);
            room -= n;
        }
        Ok(self.got.len() - before)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Splits a client frame off the front of `wire`: its opcode, its
/// mask key and its payload, unmasked.
fn client_frame(wire: &mut &[u8]) -> (u8, [u8; 4], Vec<u8>) {
    let (opcode, len7) = (wire[0] & 0x0f, (wire[1] & 0x7f) as usize);
    assert!(wire[0] & 0x80 != 0 && wire[1] & 0x80 != 0, "FIN, masked");
    let (len, at) = match len7 {
        126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
        127 => (
            u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (n, 2),
    };
    let mask: [u8; 4] = wire[at..at + 4].try_into().unwrap();
    let mut payload = wire[at + 4..at + 4 + len].to_vec();
    codec::apply_mask(&mut payload, mask, 0);
    *wire = &wire[at + 4 + len..];
    (opcode, mask, payload)
}

/// The frames of `queued` as `sink` got them: each wire-pattern one
/// masked with its key, and every one byte for byte what the payload
/// module generates for it; then the close frame.
fn check_frames(mut wire: &[u8], queued: &[(&Layout, u64, u64)]) {
    for &(l, seq, t) in queued {
        let (opcode, mask, got) = client_frame(&mut wire);
        assert_eq!(opcode, OP_BINARY);
        if let Some(key) = l.wire_key(4, seq) {
            assert_eq!(mask, key, "masked with its key");
        }
        let mut want = vec![0u8; l.size];
        l.write_masked(&mut want, 4, seq, t, [0; 4]);
        assert!(got == want, "seq {seq}");
        assert!(
            l.decode(&got, OP_BINARY)
                .is_ok_and(|h| h.sent_ns == Some(t))
        );
        assert!(l.content_ok(&got, 4, seq));
    }
    let (opcode, _, close) = client_frame(&mut wire);
    assert_eq!((opcode, &close[..]), (OP_CLOSE, &1000u16.to_be_bytes()[..]));
    assert!(wire.is_empty());
}

/// Ten wire-pattern messages with small ones between them and a close
/// frame after (more slices than one write takes) go out whole and in
/// order through writes that stop anywhere: inside a header, inside a
/// spliced piece, between slices, or not at all.
#[tokio::test]
async fn spliced_messages_go_out_whole_through_ragged_writes() {
    let (mut conn, _server) = pair(Vec::new());
    conn.io = Stream::Lent;
    let large = Layout::new(40_000, false).with_wire(99);
    let small = Layout::new(payload::WIRE_MIN - 1, false).with_wire(99);
    assert!(large.wire.is_some() && small.wire.is_none());
    let mut queued = Vec::new();
    for seq in 0..20 {
        let l = if seq % 2 == 0 { &large } else { &small };
        conn.queue_message(l, 4, seq, seq + 100);
        queued.push((l, seq, seq + 100));
    }
    conn.queue_close(1000);
    assert_eq!(conn.out.pieces().count(), 10, "one piece per large message");
    let total = conn.pending_write();
    let mut sink = Ragged {
        got: Vec::new(),
        calls: 0,
    };
    while conn.pending_write() > 0 {
        conn.write_to(&mut sink).unwrap();
        assert_eq!(conn.pending_write() + sink.got.len(), total);
    }
    assert!(conn.out.pieces().next().is_none() && conn.out.buf.is_empty());
    check_frames(&sink.got, &queued);
}

/// A wire-pattern message alone in the outbox goes out as one slice,
/// its header joined to its piece of the pattern; two queued together
/// go out as a vector.
#[tokio::test]
async fn a_lone_spliced_message_is_written_as_one_slice() {
    /// Takes everything; records how many slices each write had.
    struct Counting(Vec<u8>, Vec<usize>);
    impl std::io::Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.1.push(bufs.len());
            let before = self.0.len();
            bufs.iter().for_each(|b| self.0.extend_from_slice(b));
            Ok(self.0.len() - before)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (mut conn, _server) = pair(Vec::new());
    conn.io = Stream::Lent;
    let large = Layout::new(16_384, false).with_wire(99);
    let mut sink = Counting(Vec::new(), Vec::new());
    conn.queue_message(&large, 4, 0, 100);
    conn.write_to(&mut sink).unwrap();
    assert_eq!(sink.1, [1]);
    conn.queue_message(&large, 4, 1, 101);
    conn.queue_message(&large, 4, 2, 102);
    conn.queue_close(1000);
    conn.write_to(&mut sink).unwrap();
    assert_eq!(sink.1[1..], [5], "head, piece, head, piece and the close");
    check_frames(
        &sink.0,
        &[(&large, 0, 100), (&large, 1, 101), (&large, 2, 102)],
    );
}

/// The task path writes spliced messages with `poll_write_vectored` on
/// a real socket, whatever part of them each write takes.
#[tokio::test]
async fn the_task_path_writes_spliced_messages_to_a_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(client).unwrap();
    let rng = Rng::seeded(1);
    let mut conn = Conn::new(Stream::Plain(tcp), Vec::new(), 4096, rng, 1 << 20);
    let large = Layout::new(200_000, false).with_wire(5);
    let mut queued = Vec::new();
    for seq in 0..12 {
        conn.queue_message(&large, 4, seq, 7);
        queued.push((&large, seq, 7));
    }
    conn.queue_close(1000);
    let total = conn.pending_write();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; total];
        std::io::Read::read_exact(&mut server, &mut got).unwrap();
        got
    });
    let written = poll_fn(|cx| {
        if let Err(e) = conn.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        match conn.pending_write() {
            0 => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), written)
        .await
        .expect("written within 10 s")
        .unwrap();
    check_frames(&reader.join().unwrap(), &queued);
}

#[tokio::test]
async fn a_direct_write_keeps_what_the_socket_did_not_take_until_it_does() {
    use std::io::Read as _;
    let (mut conn, mut ours, mut server) = direct_pair();
    // 512 KiB: more than a socket pair's buffer, less than the pool keeps.
    let layout = Layout::new(16 << 10, false);
    let mut queued = 0;
    for seq in 0..32 {
        conn.queue_message(&layout, 1, seq, 0);
        queued = conn.pending_write();
    }
    conn.write_to(&mut ours).unwrap();
    let left = conn.pending_write();
    assert!(left > 0 && left < queued, "{left} of {queued} left");
    assert_eq!(
        Pool::Write.spare(),
        0,
        "the unwritten tail keeps its buffer"
    );
    let mut sink = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < queued {
        read += server.read(&mut sink).unwrap();
        conn.write_to(&mut ours).unwrap();
    }
    assert_eq!((read, conn.pending_write()), (queued, 0));
    assert_eq!(Pool::Write.spare(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_queued_message_goes_out_in_the_same_poll_and_its_buffer_goes_back() {
    let (mut conn, mut server) = pair(Vec::new());
    let layout = Layout::new(1000, false);
    conn.queue_message(&layout, 3, 9, 42);
    assert_eq!(conn.pending_write(), 2 + 2 + 4 + 1000);
    assert_eq!(Pool::Write.spare(), 0);
    // Nothing comes back: the timer ends the wait (paused time skips it).
    conn.arm(tokio::time::Instant::now() + Duration::from_secs(5));
    assert!(matches!(conn.event().await, Event::Timer));
    assert_eq!((conn.pending_write(), Pool::Write.spare()), (0, 1));
    let mut frame = vec![0u8; 8 + 1000];
    server.read_exact(&mut frame).await.unwrap();
    assert_eq!((frame[0], frame[1] & 0x7f), (0x80 | OP_BINARY, 126));
    let mask = [frame[4], frame[5], frame[6], frame[7]];
    let payload = &mut frame[8..];
    codec::apply_mask(payload, mask, 0);
    let header = layout.decode(payload, OP_BINARY).unwrap();
    assert_eq!(
        (header.seq, header.conn, header.sent_ns),
        (9, Some(3), Some(42))
    );
    assert!(layout.filler_ok(payload, 3, 9));
}
