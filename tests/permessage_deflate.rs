//! permessage-deflate (RFC 7692) through the real handshake and session:
//! negotiation on every route, compressed echoes with and without context
//! takeover, the inflated-size cap, RSV1 misuse, chat across a compressing
//! and a plain peer. The client side compresses with flate2 here; the
//! independent client (python-websockets) runs from
//! `python_websockets_client_echoes_compressed_messages` when it is
//! importable, and always from `.ci/run`.

mod common;

use std::process::{Command, Stdio};

use common::{Endpoint, RawWs, encode, start};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const CONT: u8 = 0;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const PING: u8 = 9;
const RSV1: u8 = 0x40;

/// The end of a sync flush, stripped by the sender (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What browsers send (Chrome).
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

fn offer(value: &str) -> String {
    format!("Sec-WebSocket-Extensions: {value}\r\n")
}

/// The `Sec-WebSocket-Extensions` value of a response head, if any.
fn extensions(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    })
}

/// The client's half of the codec; with `takeover` its windows run across
/// messages, as RFC 7692 allows unless `*_no_context_takeover` was agreed.
struct Codec {
    compress: Compress,
    decompress: Decompress,
    takeover: bool,
}

impl Codec {
    fn new(takeover: bool) -> Self {
        Codec::with_window(takeover, 15)
    }

    /// A client that agreed to compress with a `bits` window.
    fn with_window(takeover: bool, bits: u8) -> Self {
        Codec {
            compress: Compress::new_with_window_bits(Compression::default(), false, bits),
            decompress: Decompress::new(false),
            takeover,
        }
    }

    fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.takeover {
            self.compress.reset();
        }
        let mut out = Vec::with_capacity(data.len() + 1024);
        let start = self.compress.total_in();
        loop {
            let done = (self.compress.total_in() - start) as usize;
            self.compress
                .compress_vec(&data[done..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (self.compress.total_in() - start) as usize == data.len()
                && out.len() < out.capacity()
            {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        if out.is_empty() {
            // zlib skips a second sync flush with nothing in between; an
            // empty message is then an empty stored block (RFC 7692 §7.2.3.6).
            return vec![0x00];
        }
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    fn inflate(&mut self, payload: &[u8]) -> Vec<u8> {
        if !self.takeover {
            self.decompress.reset(false);
        }
        let input = [payload, &TAIL].concat();
        let mut out = Vec::with_capacity(input.len() * 4 + 1024);
        let start = self.decompress.total_in();
        loop {
            let done = (self.decompress.total_in() - start) as usize;
            self.decompress
                .decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
                .unwrap();
            if (self.decompress.total_in() - start) as usize == input.len()
                && out.len() < out.capacity()
            {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        out
    }
}

/// Sends `data` as one compressed message, in `pieces` frames.
async fn send_compressed(
    ws: &mut RawWs,
    codec: &mut Codec,
    opcode: u8,
    data: &[u8],
    pieces: usize,
) {
    let payload = codec.deflate(data);
    let size = payload.len().div_ceil(pieces).max(1);
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(size).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let op = if i == 0 { opcode | RSV1 } else { CONT };
        ws.send(i + 1 == chunks.len(), op, chunk).await;
    }
}

/// Receives one whole message; inflates it if its first frame has RSV1.
async fn recv_message(ws: &mut RawWs, codec: &mut Codec) -> (u8, Vec<u8>) {
    let first = ws.recv().await.expect("a message");
    let (opcode, rsv1) = (first.opcode, first.rsv1);
    let mut payload = first.payload;
    let mut fin = first.fin;
    while !fin {
        let next = ws.recv().await.expect("the rest of a message");
        assert_eq!(next.opcode, CONT);
        assert!(!next.rsv1, "RSV1 on a continuation frame");
        payload.extend_from_slice(&next.payload);
        fin = next.fin;
    }
    if rsv1 {
        payload = codec.inflate(&payload);
    }
    (opcode, payload)
}

fn text_of(len: usize) -> Vec<u8> {
    let line = "{\"user\":\"écho\",\"text\":\"hello deflate window\"}\n";
    line.bytes().cycle().take(len).collect::<Vec<u8>>()
}

/// Cuts `text_of` on a character boundary so it stays UTF-8.
fn text(len: usize) -> Vec<u8> {
    let mut t = text_of(len);
    while std::str::from_utf8(&t).is_err() {
        t.pop();
    }
    t
}

async fn echo_round_trips(args: &[&str], offer_value: &str, mut codec: Codec) {
    let server = start(args).await;
    let (mut ws, head) = server.raw_ws_with("/", &offer(offer_value)).await;
    assert!(extensions(&head).is_some(), "not negotiated: {head}");
    for size in [0, 1, 125, 126, 65_535, 65_537, 1 << 20] {
        for (opcode, data) in [(TEXT, text(size)), (BINARY, common::pattern(size, 7))] {
            for pieces in [1, 3] {
                send_compressed(&mut ws, &mut codec, opcode, &data, pieces).await;
                let (got_opcode, got) = recv_message(&mut ws, &mut codec).await;
                assert_eq!(got_opcode, opcode, "{size} B in {pieces} frames");
                assert!(got == data, "{size} B in {pieces} frames: echo differs");
            }
        }
    }
    // An uncompressed message on the same connection comes back as it came.
    ws.send(true, TEXT, b"plain").await;
    let frame = ws.recv().await.unwrap();
    assert_eq!((frame.rsv1, &frame.payload[..]), (false, &b"plain"[..]));
}

#[tokio::test]
async fn negotiation_table_through_the_real_handshake() {
    let nct = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], Option<&str>)] = &[
        // No offer, another extension, or --deflate off: no extension.
        ("on", &[], None),
        ("on", &["x-webkit-deflate-frame"], None),
        ("off", &[BROWSER_OFFER], None),
        // The default policy answers every good offer without takeover.
        ("on", &[BROWSER_OFFER], Some(nct)),
        ("on", &["permessage-deflate"], Some(nct)),
        // Each parameter, under a policy that keeps the RFC defaults.
        ("takeover", &["permessage-deflate"], Some("permessage-deflate")),
        ("takeover", &[BROWSER_OFFER], Some("permessage-deflate")),
        ("takeover", &["permessage-deflate; server_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover")),
        ("takeover", &["permessage-deflate; client_no_context_takeover"],
            Some("permessage-deflate; client_no_context_takeover")),
        ("takeover", &["permessage-deflate; server_max_window_bits=10"],
            Some("permessage-deflate; server_max_window_bits=10")),
        ("takeover", &["permessage-deflate; client_max_window_bits=9"],
            Some("permessage-deflate; client_max_window_bits=9")),
        ("client_max_window_bits=10", &[BROWSER_OFFER],
            Some("permessage-deflate; client_max_window_bits=10")),
        // Bad offers are declined, not fatal: the handshake still succeeds.
        ("on", &["permessage-deflate; server_max_window_bits=7"], None),
        ("on", &["permessage-deflate; server_max_window_bits"], None),
        ("on", &["permessage-deflate; mux"], None),
        ("on", &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            None),
        // Several offers: the first acceptable one, on one line or several.
        ("takeover", &["permessage-deflate; mux, permessage-deflate; server_max_window_bits=9"],
            Some("permessage-deflate; server_max_window_bits=9")),
        ("takeover", &["permessage-deflate; server_max_window_bits=99", "permessage-deflate"],
            Some("permessage-deflate")),
    ];
    for (policy, offers, expected) in cases {
        let server = start(&["--deflate", policy]).await;
        let headers: String = offers.iter().map(|o| offer(o)).collect();
        let (_ws, head) = server.raw_ws_with("/", &headers).await;
        assert_eq!(
            extensions(&head).as_deref(),
            *expected,
            "--deflate {policy}, offers {offers:?}"
        );
    }
}

#[tokio::test]
async fn every_websocket_route_negotiates() {
    let server = start(&[]).await;
    for path in ["/", "/echo", "/tutorial", "/chat/deflate"] {
        let (_ws, head) = server.raw_ws_with(path, &offer(BROWSER_OFFER)).await;
        assert!(extensions(&head).is_some(), "{path}: {head}");
    }
}

#[tokio::test]
async fn compressed_echo_without_context_takeover() {
    echo_round_trips(&[], BROWSER_OFFER, Codec::new(false)).await;
}

#[tokio::test]
async fn compressed_echo_with_context_takeover() {
    echo_round_trips(
        &["--deflate", "takeover"],
        "permessage-deflate",
        Codec::new(true),
    )
    .await;
}

#[tokio::test]
async fn compressed_echo_with_small_windows() {
    let offer = "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9";
    echo_round_trips(
        &["--deflate", "takeover"],
        offer,
        Codec::with_window(true, 9),
    )
    .await;
}

async fn negotiated(server: &Endpoint, path: &str) -> RawWs {
    let (ws, head) = server.raw_ws_with(path, &offer(BROWSER_OFFER)).await;
    assert!(extensions(&head).is_some());
    ws
}

#[tokio::test]
async fn http2_websocket_negotiates_and_echoes_compressed() {
    let server = start(&[]).await;
    let mut conn = server.h2c().await;
    let mut ws = conn
        .try_open("/", &[("sec-websocket-extensions", BROWSER_OFFER)])
        .await
        .expect("WebSocket opened");
    let answer = ws.headers.get("sec-websocket-extensions").cloned();
    assert_eq!(
        answer.as_ref().map(|v| v.to_str().unwrap()),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut codec = Codec::new(false);
    let message = text(5000);
    ws.send(true, TEXT | RSV1, &codec.deflate(&message)).await;
    let frame = ws.recv().await.expect("an echo");
    assert!(frame.rsv1 && frame.fin && frame.opcode == TEXT);
    assert!(codec.inflate(&frame.payload) == message);
    let plain = conn.open("/").await;
    assert!(!plain.headers.contains_key("sec-websocket-extensions"));
}

#[tokio::test]
async fn rsv1_on_a_continuation_frame_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = negotiated(&server, "/").await;
    let mut codec = Codec::new(false);
    let payload = codec.deflate(b"hello");
    ws.send(false, TEXT | RSV1, &payload[..2]).await;
    ws.send(true, CONT | RSV1, &payload[2..]).await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn rsv1_on_a_control_frame_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = negotiated(&server, "/").await;
    ws.send(true, PING | RSV1, b"").await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn rsv1_without_negotiation_closes_with_1002() {
    let server = start(&[]).await;
    let mut ws = server.raw_ws("/").await;
    let payload = Codec::new(false).deflate(b"hello");
    ws.send(true, TEXT | RSV1, &payload).await;
    assert_eq!(ws.expect_close().await, Some(1002));
}

#[tokio::test]
async fn corrupt_compressed_data_closes_with_1007() {
    let server = start(&[]).await;
    let mut ws = negotiated(&server, "/").await;
    // BTYPE 11 is reserved: not a deflate stream.
    ws.send(true, BINARY | RSV1, &[0xff, 0xff, 0xff]).await;
    assert_eq!(ws.expect_close().await, Some(1007));
}

#[tokio::test]
async fn invalid_utf8_in_compressed_text_closes_with_1007() {
    let server = start(&[]).await;
    let mut ws = negotiated(&server, "/").await;
    let payload = Codec::new(false).deflate(&[b'a', 0xff, b'b']);
    ws.send(true, TEXT | RSV1, &payload).await;
    assert_eq!(ws.expect_close().await, Some(1007));
}

#[tokio::test]
async fn compressed_message_inflating_past_the_limit_closes_with_1009() {
    let server = start(&["--max-message-size", "64KiB"]).await;
    let mut ws = negotiated(&server, "/").await;
    let payload = Codec::new(false).deflate(&vec![0; 65 << 10]);
    assert!(payload.len() < 1024);
    ws.send(true, BINARY | RSV1, &payload).await;
    assert_eq!(ws.expect_close().await, Some(1009));
}

#[tokio::test]
async fn tutorial_answers_a_compressed_message() {
    let server = start(&[]).await;
    let mut ws = negotiated(&server, "/tutorial").await;
    let mut codec = Codec::new(false);
    let (_, greeting) = recv_message(&mut ws, &mut codec).await;
    assert_eq!(greeting, b"Hello webSocket");
    send_compressed(&mut ws, &mut codec, TEXT, b"I am listening", 2).await;
    let (opcode, reply) = recv_message(&mut ws, &mut codec).await;
    assert_eq!(opcode, TEXT);
    assert_eq!(reply, b"I heard you say \"I am listening\"");
}

#[tokio::test]
async fn chat_relays_between_a_compressing_and_a_plain_peer() {
    let server = start(&[]).await;
    let mut zipped = negotiated(&server, "/chat/mixed").await;
    let mut plain = server.raw_ws("/chat/mixed").await;
    let mut codec = Codec::new(false);
    let message = text(10_000);
    send_compressed(&mut zipped, &mut codec, TEXT, &message, 2).await;
    let frame = plain.recv().await.unwrap();
    assert!(!frame.rsv1, "a peer without deflate got RSV1");
    assert_eq!((frame.opcode, frame.fin), (TEXT, true));
    assert!(frame.payload == message);
    // Four bytes do not shrink: relayed plain even to the compressing peer.
    plain.send(true, BINARY, b"back").await;
    let frame = zipped.recv().await.unwrap();
    assert_eq!(
        (frame.rsv1, frame.opcode, &frame.payload[..]),
        (false, BINARY, &b"back"[..])
    );
    // A compressible message reaches it compressed, once for the room.
    plain.send(true, TEXT, &message).await;
    let frame = zipped.recv().await.unwrap();
    assert!(frame.rsv1 && frame.fin && frame.opcode == TEXT);
    assert!(
        frame.payload.len() < message.len() / 4,
        "{}",
        frame.payload.len()
    );
    assert!(codec.inflate(&frame.payload) == message);
    for mut ws in [zipped, plain] {
        ws.send(true, 8, &1000u16.to_be_bytes()).await;
        assert_eq!(ws.expect_close().await, Some(1000));
    }
    // Relays count as the route saw them, however they went out.
    let relayed = (2 * message.len() + 4) as f64;
    server
        .await_metric("wsecho_sent_bytes_total", relayed)
        .await;
    let m = |name: &str| format!("wsecho_deflate_sent_{name}_bytes_total");
    assert_eq!(
        server.metric(&m("uncompressed")).await,
        message.len() as f64
    );
    assert_eq!(
        server.metric(&m("compressed")).await,
        frame.payload.len() as f64
    );
}

/// A zip bomb: `total` zeros as a raw deflate stream (tail stripped), built
/// from one compressed 1 MiB block repeated, so the test need not compress
/// a gibibyte. With the window all zeros, each repeat inflates to the same
/// 1 MiB of zeros.
fn zip_bomb(total: usize) -> Vec<u8> {
    const BLOCK: usize = 1 << 20;
    let zeros = vec![0u8; BLOCK];
    let mut c = Compress::new(Compression::best(), false);
    let block = |c: &mut Compress| {
        let mut out = Vec::with_capacity(BLOCK);
        c.compress_vec(&zeros, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.len() < out.capacity() && out.ends_with(&TAIL));
        out
    };
    let first = block(&mut c);
    let repeat = block(&mut c);
    assert_eq!(block(&mut c), repeat, "the compressor's output is periodic");
    let mut bomb = first;
    for _ in 1..total / BLOCK {
        bomb.extend_from_slice(&repeat);
    }
    bomb.truncate(bomb.len() - TAIL.len());
    bomb
}

/// Resident and peak resident kilobytes of a process.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server binary on a free port; killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[allow(clippy::print_stdout)] // the measured growth, for the record
async fn zip_bomb_gets_1009_and_costs_at_most_twice_the_limit() {
    const LIMIT: usize = 1 << 20;
    let bomb = zip_bomb(1 << 30);
    assert!(bomb.len() < 2 << 20, "bomb of {} B", bomb.len());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Child(
        Command::new(env!("CARGO_BIN_EXE_wsecho"))
            .args(["--listen", &addr.to_string(), "--threads", "1"])
            .args(["--max-message-size", "1MiB", "--log", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = Endpoint { addr };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut ws = negotiated(&server, "/").await;
    // Warm up: the worker's buffers (its whole receive buffer) and a
    // pooled zlib context exist before the measurement starts.
    let mut codec = Codec::new(false);
    send_compressed(&mut ws, &mut codec, BINARY, &[1; 4096], 1).await;
    recv_message(&mut ws, &mut codec).await;
    ws.send(true, BINARY, &common::pattern(200 << 10, 3)).await;
    recv_message(&mut ws, &mut codec).await;
    let (before, _) = rss_kib(child.0.id());

    // One message, in frames under the 1 MiB frame limit (which also caps
    // compressed frames); the first alone inflates to 256 MiB.
    let frames: Vec<Vec<u8>> = bomb
        .chunks(256 << 10)
        .enumerate()
        .map(|(i, chunk)| {
            let (fin, op) = (
                (i + 1) * (256 << 10) >= bomb.len(),
                if i == 0 { BINARY | RSV1 } else { CONT },
            );
            encode(fin, op, chunk, true)
        })
        .collect();
    let RawWs { tcp, .. } = ws;
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for frame in frames {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let code = tokio::time::timeout(common::PATIENCE, async {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = rd.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "closed without a close frame");
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() >= 4 && buf[0] == 0x88 {
                return u16::from_be_bytes([buf[2], buf[3]]);
            }
        }
    })
    .await
    .expect("a close in time");
    writer.abort();
    let (_, peak) = rss_kib(child.0.id());
    let growth = peak.saturating_sub(before);
    println!(
        "zip bomb: {} B compressed, server RSS {before} KiB before, peak {peak} KiB",
        bomb.len()
    );
    assert_eq!(code, 1009);
    assert!(
        growth < 2 * LIMIT as u64 / 1024,
        "RSS grew by {growth} KiB for a {LIMIT} B limit"
    );
}

/// The independent client: python-websockets (CPython's zlib) through every
/// offer it can make, when it is importable (`WSECHO_PYTHON` names the
/// interpreter, e.g. `.venv-deflate/bin/python`); `.ci/run` always runs it.
/// False when it could not run.
async fn python_client(server_args: &[&str], path: &str, client_args: &[&str]) -> bool {
    let python = std::env::var("WSECHO_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let importable = Command::new(&python)
        .args(["-c", "import websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        return false;
    }
    let server = start(server_args).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/deflate/echo_client.py");
    let mut args = vec![script.to_owned(), server.url(path)];
    args.extend(client_args.iter().map(|a| (*a).to_owned()));
    let out =
        tokio::task::spawn_blocking(move || Command::new(python).args(args).output().unwrap())
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // says why the test did nothing
async fn python_websockets_client_echoes_compressed_messages() {
    // --deflate takeover: the client's offers then decide each parameter.
    // 1 MiB here, for a debug build; .ci/run goes to 16 MiB.
    let args = ["--max-size", "1048576"];
    if !python_client(&["--deflate", "takeover"], "/", &args).await {
        eprintln!("skipped: python cannot import websockets (see .ci/run)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // says why the test did nothing
async fn python_websockets_clients_inflate_compressed_chat_relays() {
    // The default policy: no server context takeover, so every offer is
    // relayed compressed messages, each compressed once for the room.
    let args = ["--chat", "--max-size", "65537"];
    if !python_client(&[], "/chat/deflate", &args).await {
        eprintln!("skipped: python cannot import websockets (see .ci/run)");
    }
}

#[tokio::test]
async fn metrics_count_negotiated_connections_and_bytes_before_and_after_compression() {
    let server = start(&[]).await;
    let mut ws = negotiated(&server, "/").await;
    let mut codec = Codec::new(false);
    let data = text(10_000);
    send_compressed(&mut ws, &mut codec, TEXT, &data, 1).await;
    let wire_in = codec.deflate(&data).len() as f64;
    let (_, echo) = recv_message(&mut ws, &mut codec).await;
    assert!(echo == data);
    ws.send(true, 8, &1000u16.to_be_bytes()).await;
    assert_eq!(ws.expect_close().await, Some(1000));
    // Counts reach the shared metrics when the session ends.
    let m = |name: &str| format!("wsecho_deflate_{name}_bytes_total");
    server
        .await_metric(&m("received_inflated"), data.len() as f64)
        .await;
    assert_eq!(server.metric("wsecho_deflate_connections_total").await, 1.0);
    assert_eq!(server.metric(&m("received_compressed")).await, wire_in);
    assert_eq!(
        server.metric(&m("sent_uncompressed")).await,
        data.len() as f64
    );
    let sent = server.metric(&m("sent_compressed")).await;
    assert!(sent > 0.0 && sent < data.len() as f64 / 2.0, "{sent}");
    // The plain byte counters count payload as the route sees it, both ways.
    for way in ["received", "sent"] {
        let metric = format!("wsecho_{way}_bytes_total");
        assert_eq!(server.metric(&metric).await, data.len() as f64, "{metric}");
    }
}
