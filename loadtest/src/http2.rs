//! `--http2`: WebSockets opened by extended CONNECT (RFC 8441) on HTTP/2
//! connections, `--streams-per-connection` of them on each. An open stream
//! becomes an [`H2Stream`], a byte stream like a TCP socket, so the frame
//! codec, verification and scenarios run over it unchanged.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use tokio::sync::OnceCell;

use crate::net::{DialError, Dialer, H2Stream, Stream, micros};
use crate::plan::Plan;
use crate::stats::ErrorKind;

/// Our receive windows. The per-stream window bounds what the server may
/// send one WebSocket before we read it (a 64 KiB default would stall every
/// larger echo on a round trip per window); the connection window is what
/// all streams of one connection may have in flight towards us together.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Why a WebSocket over HTTP/2 did not open, as the error kind it counts
/// under and the first message of its kind. Cloned to every stream that was
/// to share a connection that failed.
#[derive(Debug, Clone)]
pub struct OpenError {
    pub kind: ErrorKind,
    pub message: String,
}

/// An opened WebSocket and what opening it cost. `connect_us`/`tls_us` are
/// set on the first stream of each connection only: the others did not dial.
pub struct Opened {
    pub stream: Stream,
    pub connect_us: Option<u64>,
    pub tls_us: Option<u64>,
    pub handshake_us: u64,
}

/// One HTTP/2 connection being dialled, or dialled (or failed).
type Shared = Rc<OnceCell<Result<Connection, OpenError>>>;

#[derive(Clone)]
struct Connection {
    send: SendRequest<Bytes>,
    connect_us: u64,
    tls_us: Option<u64>,
    /// The HTTP/2 preface and first SETTINGS round trip.
    setup_us: u64,
}

/// One worker's HTTP/2 connections: each takes the next
/// `--streams-per-connection` WebSockets this worker opens, then a new one
/// is dialled.
pub struct Pool {
    per_connection: u64,
    current: RefCell<Option<(Shared, u64)>>,
}

impl Pool {
    pub fn new(per_connection: u64) -> Pool {
        Pool {
            per_connection: per_connection.max(1),
            current: RefCell::new(None),
        }
    }

    /// Opens WebSocket `n` on `path` by extended CONNECT, dialling (as
    /// connection `n`) when it is the first stream of a connection.
    pub async fn open(
        &self,
        plan: &Plan,
        n: u64,
        path: &str,
    ) -> Result<(Opened, Vec<u8>), OpenError> {
        let (shared, index) = self.assign();
        let first = index == 1;
        let conn = shared
            .get_or_init(|| connect(&plan.dialer, n, plan.args.timeout))
            .await
            .clone()?;
        // Past the server's limit a stream would wait for a free slot until
        // it timed out: say why at once.
        let allowed = conn.send.current_max_send_streams();
        if index > allowed as u64 {
            return Err(handshake_error(
                path,
                &format!(
                    "the server allows {allowed} streams per connection \
                     (SETTINGS_MAX_CONCURRENT_STREAMS): lower --streams-per-connection"
                ),
            ));
        }
        let started = Instant::now();
        let stream = tokio::time::timeout(plan.args.timeout, websocket(plan, conn.send, path))
            .await
            .map_err(|_| handshake_error(path, &"timed out"))??;
        let mut handshake_us = micros(started.elapsed());
        if first {
            handshake_us += conn.setup_us;
        }
        let opened = Opened {
            stream: Stream::H2(Box::new(stream)),
            connect_us: first.then_some(conn.connect_us),
            tls_us: conn.tls_us.filter(|_| first),
            handshake_us,
        };
        // Frames only start after the 200: nothing came with it.
        Ok((opened, Vec::new()))
    }

    /// The connection the next stream goes on, and the stream's number on
    /// it (from 1).
    fn assign(&self) -> (Shared, u64) {
        let mut current = self.current.borrow_mut();
        match current.as_mut() {
            Some((shared, taken)) if *taken < self.per_connection => {
                *taken += 1;
                (shared.clone(), *taken)
            }
            _ => {
                let shared = Shared::default();
                *current = Some((shared.clone(), 1));
                (shared, 1)
            }
        }
    }
}

/// Dials, starts HTTP/2 (prior knowledge on `ws://`, ALPN `h2` on `wss://`)
/// and waits for the server's SETTINGS to allow extended CONNECT.
async fn connect(dialer: &Dialer, n: u64, timeout: Duration) -> Result<Connection, OpenError> {
    let addr = dialer.addr();
    let refused = |e: &dyn std::fmt::Display| OpenError {
        kind: ErrorKind::Connect,
        message: format!("{addr}: {e}"),
    };
    let dialed = dialer.dial(n).await.map_err(|e| refused(&e))?;
    if let Stream::Tls(tls) = &dialed.stream
        && tls.get_ref().1.alpn_protocol() != Some(b"h2")
    {
        return Err(refused(&"TLS: the server did not choose h2 by ALPN"));
    }
    let started = Instant::now();
    let setup = async {
        let (send, mut conn) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(dialed.stream)
            .await?;
        let mut ping = conn.ping_pong().expect("taken once, here");
        // The connection's own task: it moves every stream's frames.
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        // The server's SETTINGS precede its PING ACK: after one round trip
        // we know whether it allows extended CONNECT (RFC 8441 §3).
        ping.ping(h2::Ping::opaque()).await?;
        Ok::<_, h2::Error>(send)
    };
    let send = tokio::time::timeout(timeout, setup)
        .await
        .map_err(|_| refused(&DialError::Timeout))?
        .map_err(|e| refused(&format!("HTTP/2: {e}")))?;
    if !send.is_extended_connect_protocol_enabled() {
        return Err(refused(
            &"HTTP/2: the server does not allow extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)",
        ));
    }
    Ok(Connection {
        send,
        connect_us: dialed.connect_us,
        tls_us: dialed.tls_us,
        setup_us: micros(started.elapsed()),
    })
}

/// The extended CONNECT itself (RFC 8441 §4–5): 200 and no
/// `Sec-WebSocket-Accept`; the subprotocol checked as over HTTP/1.1.
async fn websocket(
    plan: &Plan,
    send: SendRequest<Bytes>,
    path: &str,
) -> Result<H2Stream, OpenError> {
    let failed = |e: &dyn std::fmt::Display| handshake_error(path, e);
    let request = request(plan, path).map_err(|e| failed(&e))?;
    let mut send = send.ready().await.map_err(|e| failed(&e))?;
    let (response, send_stream) = send.send_request(request, false).map_err(|e| failed(&e))?;
    let response = response.await.map_err(|e| failed(&e))?;
    if response.status() != StatusCode::OK {
        return Err(failed(&format!(
            "HTTP {} instead of 200 to CONNECT",
            response.status().as_u16()
        )));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
    };
    let asked = plan.args.subprotocol.clone();
    let chose = header("sec-websocket-protocol");
    if chose != asked {
        return Err(failed(&format!(
            "subprotocol: asked for {asked:?}, server chose {chose:?}"
        )));
    }
    if let Some(ext) = header("sec-websocket-extensions").filter(|e| !e.is_empty()) {
        return Err(failed(&format!(
            "server chose extensions {ext:?} that were not offered"
        )));
    }
    Ok(H2Stream {
        send: send_stream,
        recv: response.into_body(),
        unread: Bytes::new(),
    })
}

/// `CONNECT` with `:protocol websocket`; `-H` headers go along, a `Host`
/// one becomes the `:authority`.
fn request(plan: &Plan, path: &str) -> Result<Request<()>, http::Error> {
    let target = &plan.target;
    let host = plan
        .args
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or_else(|| target.host_header(), |(_, v)| v.clone());
    let scheme = if target.tls { "https" } else { "http" };
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("{scheme}://{host}{path}"))
        .extension(h2::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13");
    if let Some(p) = &plan.args.subprotocol {
        req = req.header("sec-websocket-protocol", p.as_str());
    }
    for (k, v) in &plan.args.headers {
        if !k.eq_ignore_ascii_case("host") {
            let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())?;
            req = req.header(name, HeaderValue::from_str(v)?);
        }
    }
    req.body(())
}

fn handshake_error(path: &str, e: &dyn std::fmt::Display) -> OpenError {
    OpenError {
        kind: ErrorKind::Handshake,
        message: format!("{path}: {e}"),
    }
}
