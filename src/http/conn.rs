//! One accepted connection: TLS termination, HTTP/1.1 or HTTP/2 on it
//! (hyper), and each request's way through the router to an answer or a
//! WebSocket.
//!
//! HTTP/2 comes by ALPN under TLS and by prior knowledge (h2c) in
//! cleartext: hyper-util's builder reads the first bytes and serves HTTP/2
//! when they are its preface, HTTP/1.1 otherwise. HTTP/2 windows, stream
//! limit and send buffer are the constants below.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ProtocolVersion;
use tracing::{debug, info};

use super::body::{self, Body, text};
use super::router::{self, Decision};
use super::state::{ConnInfo, Shared, TlsInfo};
use super::{request_echo, sse, upgrade};
use crate::metrics::{Limit, Protocol, Refused};

/// Bytes a peer may send on one HTTP/2 stream before its session reads
/// them: four 64 KiB echo chunks, so one stream keeps a loopback or LAN
/// pipe full, while a stalled session holds at most this much.
const H2_STREAM_WINDOW: u32 = 256 << 10;

/// Bytes a peer may send on one HTTP/2 connection, all streams together,
/// before sessions read them: the bound on what a connection's input can
/// cost, whatever its stream count (a few busy streams still get their
/// whole window).
const H2_CONNECTION_WINDOW: u32 = 1 << 20;

/// WebSockets and requests open at once on one HTTP/2 connection. Each
/// WebSocket also holds a --max-connections slot.
const H2_MAX_STREAMS: u32 = 256;

/// Bytes of a stream's output hyper queues for the peer's window; past it
/// the session's writes wait (backpressure, as a full socket buffer does
/// on HTTP/1.1).
const H2_SEND_BUFFER: usize = 128 << 10;

/// Terminates TLS, then serves HTTP on the decrypted stream.
pub async fn serve_tls(shared: Arc<Shared>, tls: TlsAcceptor, stream: TcpStream, peer: SocketAddr) {
    // The TLS handshake counts against the same slowloris deadline.
    let timeout = shared.config.handshake_timeout;
    match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let session = stream.get_ref().1;
            let info = TlsInfo {
                version: tls_version(session.protocol_version()),
                alpn: session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            };
            let conn = ConnInfo {
                peer,
                tls: Some(info),
            };
            serve(shared, stream, conn).await
        }
        Ok(Err(e)) => {
            shared.metrics.handshake_failed(Refused::Tls);
            info!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.handshake_failed(Refused::Timeout);
            info!(%peer, "TLS handshake timed out");
        }
    }
}

fn tls_version(v: Option<ProtocolVersion>) -> &'static str {
    match v {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection; WebSockets continue in
/// their own tasks.
pub async fn serve<S>(shared: Arc<Shared>, io: S, conn: ConnInfo)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let conn = Arc::new(conn);
    // Set by the first request: until then the handshake deadline applies.
    let asked = Arc::new(AtomicBool::new(false));
    let service = service_fn(|req: Request<Incoming>| {
        let (shared, conn) = (shared.clone(), conn.clone());
        asked.store(true, Ordering::Relaxed);
        async move { Ok::<_, Infallible>(answer::<S>(&shared, req, &conn).await) }
    });
    // During the drain each connection gets one answer (a 503), then closes.
    let draining = shared.is_draining();
    let builder = builder(&shared, draining);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    // hyper-util reads the first bytes (to tell HTTP/2's preface from
    // HTTP/1.1) with no deadline of its own, and HTTP/2 has no request-head
    // timer: a peer that sends no request in time is cut off here.
    let deadline = tokio::time::sleep(shared.config.handshake_timeout);
    let mut deadline = std::pin::pin!(deadline);
    let mut watching = true;
    let res = loop {
        tokio::select! {
            res = conn.as_mut() => break res,
            () = deadline.as_mut(), if watching => {
                watching = false;
                if !asked.load(Ordering::Relaxed) {
                    shared.metrics.handshake_failed(Refused::Timeout);
                    return info!(%peer, reason = "timeout", "no request in time");
                }
            }
            () = shared.shutdown.cancelled(), if !draining => {
                // Shutdown began while this connection was open: HTTP/1.1
                // finishes the request in flight, then closes instead of
                // keeping alive; HTTP/2 sends GOAWAY and ends once its open
                // streams (their sessions got 1001) have ended.
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
        }
    };
    if let Err(e) = res {
        http_failed(&shared, &*e, peer);
    }
}

/// HTTP/1.1 and HTTP/2 settings; which one serves is up to the peer.
fn builder(shared: &Shared, draining: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: the whole request head must arrive in time.
        .header_read_timeout(shared.config.handshake_timeout)
        .keep_alive(!draining);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(H2_SEND_BUFFER);
    builder
}

/// One request's answer. `S` is the connection's stream type, which an
/// HTTP/1.1 upgrade recovers from hyper.
async fn answer<S>(shared: &Arc<Shared>, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let version = req.version();
    let protocol = match version {
        Version::HTTP_2 => Protocol::H2,
        _ => Protocol::Http11,
    };
    let refusal = match router::decide(shared, &req) {
        Decision::WebSocket(accepted) => {
            match upgrade::start::<S, _>(shared, req, accepted, conn.peer) {
                Ok(res) => return res,
                Err(refusal) => refusal,
            }
        }
        Decision::Refuse(refusal) => refusal,
        Decision::Respond(res) => {
            shared.metrics.http_request(protocol);
            return res;
        }
        Decision::EchoRequest => {
            shared.metrics.http_request(protocol);
            let Ok(_slot) = shared.echo_slots.try_acquire() else {
                shared.metrics.limit_hit(Limit::HttpEcho);
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many /.http requests at once; try again\n".into(),
                );
            };
            let config = &shared.config;
            let (max, deadline) = (config.http_echo_max_body, config.handshake_timeout);
            return request_echo::answer(req, conn, &shared.server_name, max, deadline).await;
        }
        Decision::Events => {
            shared.metrics.http_request(protocol);
            return sse::answer(&shared.server_name, &shared.shutdown).map(body::events);
        }
    };
    shared.metrics.handshake_failed(refusal.label);
    let peer = conn.peer;
    info!(%peer, %protocol, status = refusal.status.as_u16(), reason = refusal.reason, "handshake refused");
    refusal.response(&shared.server_name, version)
}

/// Counts and logs a connection that ended in an HTTP-level error:
/// garbage, an oversized head, a head that never finished.
fn http_failed(shared: &Shared, e: &(dyn std::error::Error + 'static), peer: SocketAddr) {
    let Some(e) = e.downcast_ref::<hyper::Error>() else {
        return debug!(%peer, error = %e, "http connection ended");
    };
    let reason = if e.is_timeout() {
        Refused::Timeout
    } else if e.is_parse_too_large() {
        Refused::HeaderTooLarge
    } else if e.is_parse() {
        Refused::BadRequest
    } else {
        // The peer went away or reset: nothing worth a log line.
        return debug!(%peer, error = %e, "http connection ended");
    };
    shared.metrics.handshake_failed(reason);
    info!(%peer, %reason, error = %e, "bad http request");
}
