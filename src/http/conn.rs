//! One accepted connection: TLS termination, HTTP on it (hyper), and each
//! request's way through the router to an answer or a WebSocket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use super::body::Body;
use super::refusal::Refusal;
use super::router::{self, Decision};
use super::state::Shared;
use super::upgrade;

/// Terminates TLS, then serves HTTP on the decrypted stream.
pub async fn serve_tls(shared: Arc<Shared>, tls: TlsAcceptor, stream: TcpStream, peer: SocketAddr) {
    // The TLS handshake counts against the same slowloris deadline.
    let timeout = shared.config.handshake_timeout;
    match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => serve(shared, stream, peer).await,
        Ok(Err(e)) => {
            shared.metrics.handshake_failed("tls");
            info!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.handshake_failed("timeout");
            info!(%peer, "TLS handshake timed out");
        }
    }
}

/// Serves HTTP/1.1 on one connection; upgrades continue in their own task.
pub async fn serve<S>(shared: Arc<Shared>, io: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer::<S, _>(&shared, req, peer)) }
    });
    // During the drain each connection gets one answer (a 503), then closes.
    let draining = shared.is_draining();
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // Slowloris: the whole request head must arrive in time.
        .header_read_timeout(shared.config.handshake_timeout)
        .keep_alive(!draining)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        () = shared.shutdown.cancelled(), if !draining => {
            // Shutdown began while this connection was open: finish the
            // request in flight, then close instead of keeping alive.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        http_failed(&shared, &e, peer);
    }
}

/// One request's answer. `S` is the connection's stream type, which an
/// upgrade recovers from hyper.
fn answer<S, B>(shared: &Arc<Shared>, req: Request<B>, peer: SocketAddr) -> Response<Body>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Send + 'static,
{
    let refusal = match router::decide(shared, &req) {
        Decision::Respond(res) => return res,
        Decision::Refuse(refusal) => refusal,
        Decision::WebSocket(accepted) => {
            match upgrade::start::<S, B>(shared, req, accepted, peer) {
                Ok(res) => return res,
                Err(refusal) => refusal,
            }
        }
    };
    refused(shared, refusal, peer)
}

fn refused(shared: &Shared, refusal: Refusal, peer: SocketAddr) -> Response<Body> {
    shared.metrics.handshake_failed(refusal.label);
    info!(%peer, status = refusal.status.as_u16(), reason = refusal.reason, "handshake refused");
    refusal.response(&shared.server_name)
}

/// Counts and logs a connection that ended in an HTTP-level error:
/// garbage, an oversized head, a head that never finished.
fn http_failed(shared: &Shared, e: &hyper::Error, peer: SocketAddr) {
    let reason = if e.is_timeout() {
        "timeout"
    } else if e.is_parse_too_large() {
        "header_too_large"
    } else if e.is_parse() {
        "bad_request"
    } else {
        // The peer went away or reset: nothing worth a log line.
        return debug!(%peer, error = %e, "http connection ended");
    };
    shared.metrics.handshake_failed(reason);
    info!(%peer, reason, error = %e, "bad http request");
}
