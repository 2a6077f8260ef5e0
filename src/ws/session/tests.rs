//! The session's poll loop on an in-memory pipe, with paused time: cut-through,
//! failing fast, keep-alive, idle and stall timeouts, the drain, and how big
//! an idle session is.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::echo::Echo;
use crate::metrics::Metrics;
use crate::ws::Limits;
use crate::ws::sweep::Sweep;
use crate::ws::testing::{client_frame, client_head, masked};

fn env(liveness: Option<Liveness>) -> Arc<Env> {
    Arc::new(Env {
        limits: Limits {
            max_message: 64 << 20,
            max_frame: 64 << 20,
            max_backlog: 16 << 20,
            close_timeout: Duration::from_secs(2),
            max_ping_rate: 0,
        },
        liveness,
        metrics: Arc::new(Metrics::default()),
        sweep: Arc::new(Sweep::default()),
        deflate: crate::deflate::DeflatePolicy::ON,
    })
}

/// One server frame: (first byte, payload).
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => io.read_u16().await.ok()? as usize,
        127 => io.read_u64().await.ok()? as usize,
        n => n as usize,
    };
    let mut payload = vec![0; len];
    io.read_exact(&mut payload).await.ok()?;
    Some((head[0], payload))
}

fn start_echo(
    server: DuplexStream,
    env: Arc<Env>,
) -> tokio::task::JoinHandle<(End, crate::metrics::Counts)> {
    tokio::spawn(async move {
        let mut session = Session::new(server, Bytes::new(), None, None, env);
        let end = session.run(&mut Echo).await;
        (end, session.shutdown().await)
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

#[tokio::test]
async fn small_frame_arriving_byte_by_byte_comes_back_as_one_frame() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let task = start_echo(server, env(None));
    let payload = pattern(1000);
    for byte in client_frame(0x82, &payload) {
        client.write_all(&[byte]).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(read_frame(&mut client).await, Some((0x82, payload)));
    client
        .write_all(&client_frame(0x88, &[0x03, 0xe8]))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        Some((0x88, vec![0x03, 0xe8]))
    );
    let (end, counts) = task.await.unwrap();
    assert_eq!(end.code(), 1000);
    assert_eq!((counts.messages_in, counts.messages_out), (1, 1));
}

#[tokio::test]
async fn large_frame_is_echoed_cut_through_as_one_fragmented_message() {
    let (client, server) = tokio::io::duplex(16 << 10);
    let task = start_echo(server, env(None));
    let payload = pattern(1 << 20);
    let (mut rx, mut tx) = tokio::io::split(client);
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        tx.write_all(&client_frame(0x82, &sent)).await.unwrap();
        tx
    });
    let mut got = Vec::new();
    let mut frames = Vec::new();
    while got.len() < payload.len() {
        let (b0, piece) = read_frame(&mut rx).await.expect("an echo fragment");
        frames.push(b0);
        got.extend(piece);
    }
    assert_eq!(got, payload, "the same bytes, in order");
    assert!(frames.len() > 1, "re-fragmented");
    assert_eq!(frames[0], 0x02, "first fragment: binary, no FIN");
    assert!(frames[1..frames.len() - 1].iter().all(|&b| b == 0x00));
    assert_eq!(*frames.last().unwrap(), 0x80, "last: continuation with FIN");
    let mut tx = writer.await.unwrap();
    tx.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(read_frame(&mut rx).await, Some((0x88, vec![])));
    assert_eq!(task.await.unwrap().0.code(), 1005);
}

#[tokio::test]
async fn invalid_utf8_inside_a_large_frame_fails_before_the_frame_ends() {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let task = start_echo(server, env(None));
    let len = 1 << 20;
    let mut valid = vec![b'a'; 100 << 10];
    valid.push(0xff);
    // Only the header and the first 100 KiB (and one bad byte) are sent.
    client.write_all(&client_head(0x81, len)).await.unwrap();
    client.write_all(&masked(&valid, 0)).await.unwrap();
    let mut echoed = 0;
    loop {
        let (b0, payload) = read_frame(&mut client).await.expect("a frame");
        if b0 == 0x88 {
            assert_eq!(payload[..2], 1007u16.to_be_bytes());
            break;
        }
        assert!(payload.iter().all(|&b| b == b'a'), "only valid text echoed");
        echoed += payload.len();
    }
    assert!(echoed <= 100 << 10);
    client.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(task.await.unwrap().0.code(), 1007);
}

/// A peer may send its close right behind a frame the server fails, in the
/// same read: the handshake then ends once our close is out, without
/// waiting out the close timeout. The reader stays in step through the
/// failed frame's payload (a binary frame inside a fragmented message) to
/// find it.
#[tokio::test(start_paused = true)]
async fn a_close_in_the_same_read_as_a_failed_frame_ends_the_handshake_at_once() {
    let bad_text = client_frame(0x81, b"\xff");
    let mut inside = client_frame(0x01, b"a");
    inside.extend(client_frame(0x82, b"abcd"));
    for (mut read, code) in [(bad_text, 1007u16), (inside, 1002)] {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = start_echo(server, env(None));
        read.extend(client_frame(0x88, &[0x03, 0xe8]));
        client.write_all(&read).await.unwrap();
        // Past the echo of the fragment before it, if any.
        let close = loop {
            if let (0x88, payload) = read_frame(&mut client).await.expect("our close") {
                break payload;
            }
        };
        assert_eq!(close[..2], code.to_be_bytes());
        let t0 = tokio::time::Instant::now();
        assert_eq!(task.await.unwrap().0.code(), code);
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "waited out the close timeout"
        );
    }
}

/// With `--max-frame-size` above `--max-message-size`, one frame over the
/// message limit fails as a message too big, from its header, and counts
/// as one.
#[tokio::test]
async fn a_frame_over_the_message_limit_fails_as_a_message_too_big() {
    let mut env = env(None);
    Arc::get_mut(&mut env).unwrap().limits.max_message = 1000;
    let metrics = env.metrics.clone();
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let task = start_echo(server, env);
    client.write_all(&client_head(0x82, 2000)).await.unwrap();
    let (b0, payload) = read_frame(&mut client).await.expect("our close");
    assert_eq!(b0, 0x88);
    assert_eq!(payload[..2], 1009u16.to_be_bytes());
    assert_eq!(&payload[2..], b"message too big");
    drop(client);
    assert_eq!(task.await.unwrap().0.code(), 1009);
    let text = metrics.render();
    assert!(text.contains(r#"limit="message_size"} 1"#), "{text}");
    assert!(!text.contains(r#"limit="frame_size""#), "{text}");
}

/// A chat peer that reads nothing is cut off once its room turns it slow,
/// with a relayed frame half on the wire and no keep-alive to poll it: its
/// writes wait on a full socket, and it no longer takes frames off its
/// queue (where it would have registered for the queue's wake-up).
#[tokio::test(start_paused = true)]
async fn a_chat_peer_that_reads_nothing_is_cut_off_once_slow() {
    use crate::inbox::{Offer, channel};

    let (_client, server) = tokio::io::duplex(4 << 10);
    let (outbox, inbox) = channel(64 << 10);
    let task = tokio::spawn(async move {
        let mut session = Session::new(server, Bytes::new(), Some(inbox), None, env(None));
        session.run(&mut Echo).await
    });
    let frame = Bytes::from(vec![0x82; 3000]);
    let mut offers = 0;
    loop {
        // The session writes what the pipe takes before the next offer.
        tokio::task::yield_now().await;
        offers += 1;
        if outbox.offer(&frame, 3000) == Offer::BecameSlow {
            break;
        }
    }
    assert!(offers > 3, "slow only once the pipe was full");
    let end = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the slow peer is still connected")
        .unwrap();
    // Its 1008 could not be written either (close timeout: 2 s).
    assert!(matches!(end, End::Stalled), "{end:?}");
}

/// A stream whose shutdown never completes, as a TLS shutdown whose
/// close_notify waits on a peer that reads nothing.
struct NoShutdown(DuplexStream);

impl AsyncRead for NoShutdown {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NoShutdown {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

/// After a framing error the server shuts its side down and waits for the
/// peer to hang up: both within the close timeout, even when the shutdown
/// itself cannot complete.
#[tokio::test(start_paused = true)]
async fn the_wait_after_a_framing_error_ends_even_if_shutdown_never_does() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        let mut session = Session::new(NoShutdown(server), Bytes::new(), None, None, env(None));
        session.run(&mut Echo).await
    });
    // RSV2 set: a framing error, after which the input is not frames.
    client.write_all(&client_frame(0xa2, b"x")).await.unwrap();
    let (b0, payload) = read_frame(&mut client).await.expect("our close");
    assert_eq!(
        (b0, payload[..2].to_vec()),
        (0x88, 1002u16.to_be_bytes().to_vec())
    );
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the close handshake hung")
        .unwrap();
    assert_eq!(end.code(), 1002);
}

#[tokio::test(start_paused = true)]
async fn silent_peer_gets_pings_then_closes_with_1001() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let liveness = Liveness {
        interval: Duration::from_secs(10),
        limit_ticks: 3,
        ping_ticks: 1,
    };
    let task = start_echo(server, env(Some(liveness)));
    assert_eq!(read_frame(&mut client).await, Some((0x89, vec![])));
    assert_eq!(read_frame(&mut client).await, Some((0x89, vec![])));
    let (b0, payload) = read_frame(&mut client).await.unwrap();
    assert_eq!(b0, 0x88);
    assert_eq!(payload[..2], 1001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"idle timeout");
    client.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(task.await.unwrap().0.code(), 1001);
}

/// Ticks finer than the ping interval (a quarter of the idle timeout at
/// most, `http::state`) leave the pings at their own cadence.
#[tokio::test(start_paused = true)]
async fn pings_keep_their_interval_between_finer_ticks() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let liveness = Liveness {
        interval: Duration::from_secs(5),
        limit_ticks: 6,
        ping_ticks: 2,
    };
    let start = tokio::time::Instant::now();
    let task = start_echo(server, env(Some(liveness)));
    for n in 1..=2 {
        assert_eq!(read_frame(&mut client).await, Some((0x89, vec![])));
        let at = start.elapsed().as_secs();
        assert!((10 * n..10 * n + 5).contains(&at), "ping {n} at {at} s");
    }
    let (b0, _) = read_frame(&mut client).await.unwrap();
    assert_eq!(b0, 0x88, "no third ping before the close");
    let at = start.elapsed().as_secs();
    assert!((30..35).contains(&at), "closed at {at} s");
    client.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(task.await.unwrap().0.code(), 1001);
}

#[tokio::test(start_paused = true)]
async fn peer_that_never_reads_is_cut_off_with_bounded_memory() {
    let (client, server) = tokio::io::duplex(4 << 10);
    let liveness = Liveness {
        interval: Duration::from_secs(1),
        limit_ticks: 2,
        ping_ticks: 0,
    };
    let task = start_echo(server, env(Some(liveness)));
    let (_rx, mut tx) = tokio::io::split(client);
    // Writes until the server stops reading: it holds at most a read's
    // worth of echoes, then the pipe fills both ways.
    let writer = tokio::spawn(async move {
        let frame = client_frame(0x82, &[7; 4000]);
        let mut sent = 0usize;
        while tx.write_all(&frame).await.is_ok() {
            sent += frame.len();
        }
        sent
    });
    let (end, _) = task.await.unwrap();
    assert!(matches!(end, End::Stalled), "{end:?}");
    let sent = writer.await.unwrap();
    assert!(sent < 2 * RECV_SIZE, "the server stopped reading: {sent}");
}

#[tokio::test]
async fn drain_sends_1001_to_an_idle_session() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let env = env(None);
    let task = start_echo(server, env.clone());
    // Let it start and wait for input.
    client.write_all(&client_frame(0x81, b"hi")).await.unwrap();
    assert_eq!(read_frame(&mut client).await, Some((0x81, b"hi".to_vec())));
    env.sweep.begin_drain();
    let (b0, payload) = read_frame(&mut client).await.unwrap();
    assert_eq!((b0, &payload[..2]), (0x88, &1001u16.to_be_bytes()[..]));
    client.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(task.await.unwrap().0.code(), 1001);
}

/// The bound on what an idle plain-TCP session costs, checked on the real
/// types: the session task's future and the session state in it. Grows past
/// this only on purpose (RSS per idle connection is measured by
/// results/run.sh; this catches the accidental regressions).
#[tokio::test]
#[allow(clippy::print_stdout)] // the measured sizes, for the record
async fn idle_session_state_stays_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
    let (server, _) = tokio::join!(listener.accept(), client);
    let (io, _) = server.unwrap();
    let mut session = Session::new(io, Bytes::new(), None, None, env(None));
    let state = std::mem::size_of_val(&session);
    let mut echo = Echo;
    let run = session.run(&mut echo);
    let future = std::mem::size_of_val(&run);
    println!("session state: {state} B, run future: {future} B");
    assert!(state <= 296, "session state grew to {state} B");
    assert!(future <= 40, "run future grew to {future} B");
}

#[tokio::test]
async fn client_that_sends_a_large_frame_before_reading_gets_its_echo() {
    // The pipe holds far less than the frame: without the backlog, server
    // and client would wait on each other forever.
    let (mut client, server) = tokio::io::duplex(64 << 10);
    let task = start_echo(server, env(None));
    let payload = pattern(4 << 20);
    client
        .write_all(&client_frame(0x82, &payload))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < payload.len() {
        let (_, piece) = read_frame(&mut client).await.expect("an echo fragment");
        got.extend(piece);
    }
    assert!(got == payload, "the same 4 MiB back");
    client.write_all(&client_frame(0x88, &[])).await.unwrap();
    assert_eq!(task.await.unwrap().0.code(), 1005);
}

#[tokio::test(start_paused = true)]
async fn backlog_of_a_non_reading_large_frame_sender_is_capped() {
    let (client, server) = tokio::io::duplex(16 << 10);
    let mut env = env(Some(Liveness {
        interval: Duration::from_secs(1),
        limit_ticks: 2,
        ping_ticks: 0,
    }));
    Arc::get_mut(&mut env).unwrap().limits.max_backlog = 256 << 10;
    let task = start_echo(server, env);
    let (_rx, mut tx) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        let payload = pattern(8 << 20);
        let frame = client_frame(0x82, &payload);
        let mut sent = 0;
        for chunk in frame.chunks(16 << 10) {
            if tx.write_all(chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let (end, _) = task.await.unwrap();
    assert!(matches!(end, End::Stalled), "{end:?}");
    let sent = writer.await.unwrap();
    // What the server took in: its backlog, one read, and the pipe.
    assert!(sent < (256 << 10) + 2 * RECV_SIZE + (64 << 10), "{sent}");
}

/// On the loop's own socket a pass whose read came back short ends the
/// poll (the path `poll_run` takes there): every echo is still written
/// before the session sleeps, and a frame that arrives after it waits for
/// the next readable edge and is answered then. That no second pass runs
/// is not visible from outside; `scripts/user-instructions.sh` counts it.
#[tokio::test]
async fn on_the_loops_socket_a_short_read_ends_the_poll_until_the_next_edge() {
    use std::io::{Read, Write};
    use std::task::Waker;

    use crate::ws::direct::Edge;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    // A second handle on the session's socket, to see a frame arrive.
    let probe = ours.try_clone().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut session = Session::new(Lent::new(ours), Bytes::new(), None, None, env(None));
    let mut cx = Context::from_waker(Waker::noop());
    let readable = Edge {
        readable: true,
        ..Edge::default()
    };
    let mut echo = [0u8; 5];
    for word in [b"one", b"two"] {
        peer.write_all(&client_frame(0x82, word)).unwrap();
        arrived(&probe, 9);
        session.io_mut().edge(readable);
        assert!(session.poll_session(&mut cx, &mut Echo).is_pending());
        peer.read_exact(&mut echo).unwrap();
        assert_eq!(echo[..2], [0x82, 3]);
        assert_eq!(&echo[2..], word);
        assert!(session.io_mut().read_drained());
    }
    // No edge: the session does not look, so the frame waits unanswered.
    peer.write_all(&client_frame(0x82, b"end")).unwrap();
    arrived(&probe, 9);
    assert!(session.poll_session(&mut cx, &mut Echo).is_pending());
    peer.set_nonblocking(true).unwrap();
    assert_eq!(
        peer.read(&mut echo).map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock)
    );
    peer.set_nonblocking(false).unwrap();
    session.io_mut().edge(readable);
    assert!(session.poll_session(&mut cx, &mut Echo).is_pending());
    peer.read_exact(&mut echo).unwrap();
    assert_eq!(&echo[2..], b"end");
}

/// Waits (up to 5 s) until `len` bytes sit unread on a non-blocking socket.
fn arrived(socket: &std::net::TcpStream, len: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; len];
    while !matches!(socket.peek(&mut buf), Ok(n) if n >= len) {
        assert!(
            std::time::Instant::now() < deadline,
            "{len} bytes never arrived"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
