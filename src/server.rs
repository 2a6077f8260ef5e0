//! Accepting connections: the listener loop, per-connection HTTP/1.1 with
//! upgrades, and the state every connection shares.
//!
//! [`Server::serve`] takes an already-bound listener, so tests bind port 0
//! and production binds one SO_REUSEPORT listener per worker thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::rooms::{RoomLimits, Rooms};
use crate::router;
use crate::tls::{self, TlsError};
use crate::ws::{self, Limits, Liveness, Sweep};

/// Everything connections share. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub config: Config,
    pub server_name: HeaderValue,
    /// What every WebSocket session shares: limits, timers, metrics.
    pub ws: Arc<ws::Env>,
    pub metrics: Arc<Metrics>,
    pub tls: Option<TlsAcceptor>,
    pub rooms: Arc<Rooms>,
    /// One permit per open WebSocket (--max-connections).
    pub connection_slots: Arc<Semaphore>,
    /// Set when shutdown begins: `/healthz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Cancelled when shutdown begins: listeners stop, sessions get 1001.
    pub shutdown: CancellationToken,
    /// Upgraded sessions, which hyper stops tracking after the 101.
    pub sessions: TaskTracker,
}

impl Server {
    /// Builds the server; fails only if the TLS files are unusable.
    pub fn new(config: Config) -> Result<Self, TlsError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let server_name = HeaderValue::try_from(config.server_name())
            .unwrap_or_else(|_| HeaderValue::from_static("wsecho"));
        let limits = Limits {
            max_message: config.max_message_size,
            max_frame: config.frame_limit(),
            close_timeout: config.close_timeout,
            max_ping_rate: config.max_ping_rate,
        };
        let slots = config.max_connections.min(Semaphore::MAX_PERMITS);
        let metrics = Arc::new(Metrics::default());
        let room_limits = RoomLimits {
            max_rooms: config.max_rooms,
            max_peers: config.max_room_peers,
            queue_bytes: config.room_queue_bytes,
        };
        Ok(Server {
            shared: Arc::new(Shared {
                server_name,
                ws: Arc::new(ws::Env {
                    limits,
                    liveness: liveness(&config),
                    metrics: metrics.clone(),
                    sweep: Arc::new(Sweep::default()),
                }),
                rooms: Arc::new(Rooms::new(room_limits, metrics.clone())),
                metrics,
                tls,
                connection_slots: Arc::new(Semaphore::new(slots)),
                draining: Arc::new(AtomicBool::new(false)),
                shutdown: CancellationToken::new(),
                sessions: TaskTracker::new(),
                config,
            }),
        })
    }

    /// Starts the background tasks (the Redis room link) on the current
    /// runtime. Call once, inside a runtime, before serving.
    pub fn start_background(&self) -> Result<(), redis::RedisError> {
        let shared = &self.shared;
        if let Some(url) = &shared.config.redis_url {
            let link =
                RedisLink::start(url, Arc::downgrade(&shared.rooms), shared.metrics.clone())?;
            shared.rooms.set_link(link);
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Accepts connections on `listener` for as long as the process runs.
    /// During the drain it keeps accepting, so that load balancers can still
    /// read the 503 from `/healthz`; new upgrades are refused with 503.
    pub async fn serve(&self, listener: TcpListener) {
        let mut backoff = Duration::from_millis(5);
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    // Echo replies are small and must leave at once.
                    let _ = stream.set_nodelay(true);
                    match &self.shared.tls {
                        None => tokio::spawn(self.clone().serve_connection(stream, peer)),
                        Some(tls) => {
                            tokio::spawn(self.clone().serve_tls(tls.clone(), stream, peer))
                        }
                    };
                }
                Err(e) => {
                    // Out of file descriptors or memory: wait for connections
                    // to close instead of spinning on accept.
                    warn!(error = %e, ?backoff, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn serve_tls(self, tls: TlsAcceptor, stream: TcpStream, peer: SocketAddr) {
        // The TLS handshake counts against the same slowloris deadline.
        let timeout = self.shared.config.handshake_timeout;
        match tokio::time::timeout(timeout, tls.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_connection(stream, peer).await,
            Ok(Err(e)) => {
                self.shared.metrics.handshake_failed("tls");
                info!(%peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                self.shared.metrics.handshake_failed("timeout");
                info!(%peer, "TLS handshake timed out");
            }
        }
    }

    /// Serves HTTP/1.1 on one connection; upgrades continue in their own task.
    pub async fn serve_connection<S>(self, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(|req| {
            let server = self.clone();
            async move { Ok::<_, std::convert::Infallible>(router::route::<S, _>(&server, req, peer)) }
        });
        // During the drain each connection gets one answer (a 503), then closes.
        let draining = self.shared.draining.load(Ordering::Relaxed);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            // Slowloris: the whole request head must arrive in time.
            .header_read_timeout(self.shared.config.handshake_timeout)
            .keep_alive(!draining)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let res = tokio::select! {
            res = conn.as_mut() => res,
            () = self.shared.shutdown.cancelled(), if !draining => {
                // Shutdown began while this connection was open: finish the
                // request in flight, then close instead of keeping alive.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = res {
            self.http_failed(&e, peer);
        }
    }

    /// Counts and logs a connection that ended in an HTTP-level error:
    /// garbage, an oversized head, a head that never finished.
    fn http_failed(&self, e: &hyper::Error, peer: SocketAddr) {
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
        self.shared.metrics.handshake_failed(reason);
        info!(%peer, reason, error = %e, "bad http request");
    }

    /// Starts the shutdown: `/healthz` and new upgrades get 503, idle HTTP
    /// keep-alive connections close, every session is sent 1001.
    pub fn begin_shutdown(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
        self.shared.ws.sweep.begin_drain();
        self.shared.sessions.close();
    }

    /// Waits until every session has ended, or `timeout`. True if all ended.
    pub async fn drained(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.shared.sessions.wait())
            .await
            .is_ok()
    }

    pub fn sessions_open(&self) -> usize {
        self.shared.sessions.len()
    }
}

/// Keep-alive ticks from the flags: a tick per ping interval (or per idle
/// timeout when pings are off), and as many silent ticks as fit in the idle
/// timeout.
fn liveness(c: &Config) -> Option<Liveness> {
    let (idle, ping) = (c.idle_timeout, c.ping_interval);
    let interval = match (idle.is_zero(), ping.is_zero()) {
        (true, true) => return None,
        (true, false) => ping,
        (false, true) => idle,
        (false, false) => ping.min(idle),
    };
    let limit_ticks = if idle.is_zero() {
        u32::MAX
    } else {
        idle.as_millis()
            .div_ceil(interval.as_millis().max(1))
            .clamp(1, u32::MAX as u128) as u32
    };
    Some(Liveness {
        interval,
        limit_ticks,
        ping: !ping.is_zero(),
    })
}

/// Binds `n` listeners to `addr` with SO_REUSEPORT, so the kernel spreads
/// connections over worker threads. Binding port 0 gives all of them the port
/// the first one got. Call inside a tokio runtime; the listeners come back as
/// std listeners, ready to move to each worker's own runtime.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        // A deep backlog absorbs connection bursts (10k clients at once).
        let listener = socket.listen(4096)?;
        addr = listener.local_addr()?;
        out.push(listener.into_std()?);
    }
    Ok(out)
}
