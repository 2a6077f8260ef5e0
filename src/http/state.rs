//! What every connection of one server shares: configuration, limits,
//! metrics, rooms, and the shutdown signal.
//!
//! The lowest layer of the HTTP side: the accept loop, the router and the
//! session starter all read it, and it imports none of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::header::HeaderValue;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::tls::{self, TlsError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rooms::{RoomLimits, Rooms};
use crate::ws::{self, Limits, Liveness, Sweep};

/// `/.http` requests whose bodies may be read at once (64 MiB with the
/// default 1 MiB limit); past it they get 503.
pub const ECHO_BODIES: usize = 64;

pub(crate) struct Shared {
    pub config: Config,
    pub server_name: HeaderValue,
    /// What every WebSocket session shares: limits, timers, metrics.
    pub ws: Arc<ws::Env>,
    pub metrics: Arc<Metrics>,
    pub tls: Option<TlsAcceptor>,
    pub rooms: Arc<Rooms>,
    /// One permit per WebSocket, from its 101 (or 200) to the end of its
    /// session: --max-connections, and what shutdown waits for (a session
    /// carries no task-tracker token: idle sessions pay for every byte).
    pub connection_slots: Arc<Semaphore>,
    /// The permits `connection_slots` started with.
    pub slots_total: u32,
    /// One permit per `/.http` body being read, so bodies in memory at once
    /// are bounded by [`ECHO_BODIES`] × --http-echo-max-body, however many
    /// connections and HTTP/2 streams ask.
    pub echo_slots: Semaphore,
    /// Set when shutdown begins: `/healthz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Cancelled when shutdown begins: listeners stop, sessions get 1001.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// Fails only if the TLS files are unusable.
    pub fn new(config: Config) -> Result<Self, TlsError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let server_name = HeaderValue::try_from(config.server_name())
            .unwrap_or_else(|_| HeaderValue::from_static("wsecho"));
        let limits = Limits {
            max_message: config.max_message_size,
            max_frame: config.max_frame_size,
            max_backlog: config.max_backlog,
            close_timeout: config.close_timeout,
            max_ping_rate: config.max_ping_rate,
        };
        let slots = config
            .max_connections
            .min(Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize) as u32;
        let metrics = Arc::new(Metrics::default());
        let room_limits = RoomLimits {
            max_rooms: config.max_rooms,
            max_peers: config.max_room_peers,
            queue_bytes: config.room_queue_bytes,
        };
        Ok(Shared {
            server_name,
            ws: Arc::new(ws::Env {
                limits,
                liveness: liveness(&config),
                metrics: metrics.clone(),
                sweep: Arc::new(Sweep::default()),
                deflate: config.deflate,
            }),
            rooms: Arc::new(Rooms::new(room_limits, metrics.clone())),
            metrics,
            tls,
            connection_slots: Arc::new(Semaphore::new(slots as usize)),
            slots_total: slots,
            echo_slots: Semaphore::new(ECHO_BODIES),
            draining: Arc::new(AtomicBool::new(false)),
            shutdown: CancellationToken::new(),
            config,
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Keep-alive ticks from the flags. Silence is counted in whole ticks, so
/// a peer goes up to one tick after the idle timeout: the tick is at most a
/// quarter of it, and divides the ping interval so that pings keep their
/// cadence (30 s pings and a 90 s timeout: a tick every 15 s, a ping every
/// second silent tick, dropped after six).
fn liveness(c: &Config) -> Option<Liveness> {
    let (idle, ping) = (c.idle_timeout, c.ping_interval);
    let quarter = idle / 4;
    let (interval, ping_ticks) = match (idle.is_zero(), ping.is_zero()) {
        (true, true) => return None,
        (true, false) => (ping, 1),
        (false, true) => (quarter, 0),
        (false, false) => {
            let parts = ping.as_nanos().div_ceil(quarter.as_nanos().max(1));
            let parts = parts.clamp(1, u32::MAX as u128) as u32;
            (ping / parts, parts)
        }
    };
    let limit_ticks = if idle.is_zero() {
        u32::MAX
    } else {
        idle.as_nanos()
            .div_ceil(interval.as_nanos().max(1))
            .clamp(1, u32::MAX as u128) as u32
    };
    Some(Liveness {
        interval,
        limit_ticks,
        ping_ticks,
    })
}

/// What one connection knows about itself, for the request echo and logs.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: Option<TlsInfo>,
}

/// The TLS session a connection runs over.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: &'static str,
    /// The protocol ALPN selected (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    fn ticks(args: &[&str]) -> Option<(Duration, u32, u32)> {
        let config = Config::parse_from([&["wsecho"], args].concat());
        liveness(&config).map(|l| (l.interval, l.limit_ticks, l.ping_ticks))
    }

    /// A silent peer is dropped between the idle timeout and one tick
    /// after it, a quarter of the timeout late at most, and pinged once a
    /// ping interval.
    #[test]
    fn the_idle_timeout_is_kept_to_within_a_quarter() {
        let secs = Duration::from_secs;
        assert_eq!(ticks(&[]), Some((secs(15), 6, 2)));
        assert_eq!(
            ticks(&["--ping-interval", "0"]),
            Some((Duration::from_millis(22_500), 4, 0))
        );
        assert_eq!(
            ticks(&["--ping-interval", "0", "--idle-timeout", "0"]),
            None
        );
        assert_eq!(
            ticks(&["--idle-timeout", "0"]),
            Some((secs(30), u32::MAX, 1))
        );
        assert_eq!(
            ticks(&["--ping-interval", "10s", "--idle-timeout", "60s"]),
            Some((secs(10), 6, 1))
        );
        // Pings rarer than the timeout: the peer is gone before the first.
        assert_eq!(
            ticks(&["--ping-interval", "2m", "--idle-timeout", "60s"]),
            Some((secs(15), 4, 8))
        );
        // An interval that the quarter does not divide: a tick of a third.
        assert_eq!(
            ticks(&["--ping-interval", "25s", "--idle-timeout", "40s"]),
            Some((Duration::from_nanos(8_333_333_333), 5, 3))
        );
    }
}
