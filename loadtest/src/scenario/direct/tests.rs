//! The epoll loop against real sockets: when a batch's writes go out, the
//! order lent connections start in, the size of an entry.

use std::io::{Read as _, Write as _};

use clap::Parser;

use super::*;
use crate::codec::{OP_BINARY, apply_mask};
use crate::scenario::{Phases, WorkerCtx};

/// A client frame of 20 bytes, as the server reads it: header, mask
/// key, masked payload.
const FRAME: usize = 2 + 4 + 20;

/// Reads one 20-byte client frame; `None` if nothing is there yet.
fn next_frame(server: &mut std::net::TcpStream) -> Option<[u8; FRAME]> {
    let mut frame = [0u8; FRAME];
    server.set_nonblocking(true).unwrap();
    match server.read(&mut frame[..1]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
        got => assert_eq!(got.unwrap(), 1),
    }
    server.set_nonblocking(false).unwrap();
    server.read_exact(&mut frame[1..]).unwrap();
    Some(frame)
}

/// Sends a client frame's payload back, unmasked, as a server frame.
fn echo(server: &mut std::net::TcpStream, frame: [u8; FRAME]) {
    let mut payload = frame[6..].to_vec();
    apply_mask(&mut payload, frame[2..6].try_into().unwrap(), 0);
    server.write_all(&[0x82, 20]).unwrap();
    server.write_all(&payload).unwrap();
}

/// Waits for the loop's next events and hands each to `on_event`.
fn one_batch(direct: &Direct, events: &mut Events, now: u64) {
    let timeout = Some(Duration::from_secs(5));
    direct.poll.borrow_mut().poll(events, timeout).unwrap();
    for event in events.iter() {
        direct.on_event(event.token().0, event, now);
    }
}

/// A worker's loop holding `n` closed-loop echo connections of `size`
/// bytes, taken in as at the start of a turn (registered, each first
/// message queued for the flush), and their server ends.
fn loop_of(n: usize, size: &str) -> (Rc<WorkerCtx>, Vec<std::net::TcpStream>) {
    let (ctx, servers) = loop_of_ids(&(0..n as u64).collect::<Vec<_>>(), size);
    ctx.direct.as_ref().unwrap().start_in_order();
    (ctx, servers)
}

/// Connections lent as [`Direct::drive`] lends them, not yet taken in:
/// token `k` holds connection number `ids[k]`.
fn loop_of_ids(ids: &[u64], size: &str) -> (Rc<WorkerCtx>, Vec<std::net::TcpStream>) {
    let n = ids.len();
    let n_arg = n.to_string();
    let args = ["wsecho-load", "ws://127.0.0.1:9/", "-c", &n_arg, "-s", size];
    let plan = crate::plan::build(crate::cli::Cli::parse_from(args).run).unwrap();
    let ctx = WorkerCtx::for_tests(plan);
    let direct = ctx.direct.as_ref().expect("closed-loop echo is direct");
    let phases = Phases {
        start_ns: 0,
        window_start_ns: 0,
        window_end_ns: u64::MAX / 2,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut servers = Vec::new();
    for (token, &id) in ids.iter().enumerate() {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_nonblocking(true).unwrap();
        servers.push(listener.accept().unwrap().0);
        // Lent as `Direct::drive` lends it: the socket leaves tokio, to
        // be registered when the loop takes it in, and the connection
        // writes as a lent one.
        let tcp = tokio::net::TcpStream::from_std(client).unwrap();
        let rng = crate::clock::Rng::seeded(id);
        let mut conn = Conn::new(
            crate::net::Stream::Plain(tcp),
            Vec::new(),
            4096,
            rng,
            1 << 20,
        );
        let tcp = conn.lend_socket().unwrap();
        let sock = TcpStream::from_std(tcp.into_std().unwrap());
        let mut echo = EchoLoop::new(&ctx, id, phases, None);
        echo.start(&mut conn, ctx.now_ns());
        // Nobody waits for the connection to come back.
        let (done, _) = oneshot::channel();
        direct.entries.borrow_mut().push(Some(Entry {
            sock,
            conn,
            echo,
            done,
        }));
        direct.starting.borrow_mut().push(token);
    }
    direct.held.set(n);
    (ctx, servers)
}

/// Hands the loop's events to it until `enough` holds (10 batches at
/// most, so a loop that never gets there fails instead of hanging).
fn batches_until(ctx: &WorkerCtx, enough: impl Fn(&Direct) -> bool) {
    let direct = ctx.direct.as_ref().unwrap();
    let mut events = Events::with_capacity(8);
    for _ in 0..10 {
        if enough(direct) {
            return;
        }
        one_batch(direct, &mut events, ctx.now_ns());
    }
    assert!(enough(direct), "not after 10 batches");
}

/// What the batch's connections queue goes out only once the whole
/// batch has been read, and then for each of them.
#[tokio::test]
async fn a_batch_is_read_whole_before_anything_is_written() {
    let (ctx, mut servers) = loop_of(2, "20");
    let direct = ctx.direct.as_ref().unwrap();
    // The first messages wait for the flush too.
    assert_eq!(direct.unflushed.borrow().len(), 2);
    assert!(servers.iter_mut().all(|s| next_frame(s).is_none()));
    direct.flush();
    let firsts: Vec<_> = servers.iter_mut().map(|s| next_frame(s).unwrap()).collect();
    // Both echoes arrive; the next messages wait for the flush.
    for (server, frame) in servers.iter_mut().zip(firsts) {
        echo(server, frame);
    }
    batches_until(&ctx, |_| ctx.stats.borrow().received == 2);
    assert!(
        servers.iter_mut().all(|s| next_frame(s).is_none()),
        "written before the flush"
    );
    assert_eq!(ctx.stats.borrow().errors.total(), 0, "both echoes verified");
    direct.flush();
    for server in &mut servers {
        assert!(
            next_frame(server).is_some(),
            "the next message went out in the flush"
        );
    }
    assert!(direct.unflushed.borrow().is_empty());
}

/// Once a batch has queued FLUSH_BYTES it is written without waiting
/// for the batch's end: two 40 kB messages go out as soon as both are
/// queued, each whole (its filler spliced from the wire pattern and
/// sent by `sendmsg`), as the payload module says message 0 is.
#[tokio::test]
async fn a_batch_is_written_early_once_its_bytes_reach_the_budget() {
    let (ctx, mut servers) = loop_of(2, "40000");
    let direct = ctx.direct.as_ref().unwrap();
    batches_until(&ctx, |_| servers.iter().all(readable));
    assert!(direct.unflushed.borrow().is_empty());
    assert_eq!(direct.unflushed_bytes.get(), 0);
    let layout = ctx.plan.layout;
    for (id, server) in servers.iter_mut().enumerate() {
        let mut head = [0u8; 8];
        server.set_nonblocking(false).unwrap();
        server.read_exact(&mut head).unwrap();
        assert_eq!(
            head[..4],
            [0x82, 0xfe, 0x9c, 0x40],
            "FIN, binary, 40000 masked"
        );
        let mask: [u8; 4] = head[4..].try_into().unwrap();
        assert_eq!(Some(mask), layout.wire_key(id as u32, 0));
        let mut payload = vec![0u8; 40000];
        server.read_exact(&mut payload).unwrap();
        apply_mask(&mut payload, mask, 0);
        let header = layout.decode(&payload, OP_BINARY).unwrap();
        assert_eq!((header.seq, header.conn), (0, Some(id as u32)));
        assert!(layout.content_ok(&payload, id as u32, 0));
    }
}

/// Once FLUSH_CONNS connections have queued in a batch they are
/// written without waiting for its end, however few bytes.
#[tokio::test]
async fn a_batch_is_written_early_once_its_connections_reach_the_budget() {
    let (ctx, servers) = loop_of(FLUSH_CONNS, "20");
    let direct = ctx.direct.as_ref().unwrap();
    batches_until(&ctx, |_| servers.iter().all(readable));
    assert!(direct.unflushed.borrow().is_empty());
    let (ctx, servers) = loop_of(FLUSH_CONNS - 1, "20");
    batches_until(&ctx, |d| d.unflushed.borrow().len() == FLUSH_CONNS - 1);
    assert!(!servers.iter().any(readable), "written before the flush");
}

/// Connections lent out of order start in the order they were dialled:
/// the first flush writes them by connection number, then each has its
/// first message.
#[tokio::test]
async fn lent_connections_start_in_the_order_they_were_dialled() {
    let (ctx, mut servers) = loop_of_ids(&[2, 0, 3, 1], "20");
    let direct = ctx.direct.as_ref().unwrap();
    direct.start_in_order();
    assert_eq!(*direct.unflushed.borrow(), [1, 3, 0, 2], "tokens by id");
    assert!(direct.starting.borrow().is_empty());
    direct.flush();
    for server in &mut servers {
        assert!(next_frame(server).is_some(), "a first message");
    }
    // Written once: their writable events find nothing left to write.
    one_batch(direct, &mut Events::with_capacity(8), ctx.now_ns());
    assert!(direct.unflushed.borrow().is_empty());
    assert!(servers.iter_mut().all(|s| next_frame(s).is_none()));
}

/// Whether the server end has bytes to read.
fn readable(server: &std::net::TcpStream) -> bool {
    server.set_nonblocking(true).unwrap();
    server.peek(&mut [0u8; 1]).is_ok()
}

/// [`Direct::prefetch`] loads a whole entry, line by line: an entry that
/// grows grows that work, and the cache footprint of every connection.
#[test]
fn an_entry_stays_within_ten_cache_lines() {
    let size = std::mem::size_of::<Option<Entry>>();
    assert!(size <= 10 * 64, "Option<Entry> is {size} bytes");
}
