//! The server handle: building it, the accept loop, and shutdown.
//!
//! [`Server::serve`] takes an already-bound listener, so tests bind port 0
//! and production binds one SO_REUSEPORT listener per worker thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tracing::warn;

use super::conn;
use super::state::{ConnInfo, Shared};
use super::tls::TlsError;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

/// Everything connections share. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// Builds the server; fails only if the TLS files are unusable.
    pub fn new(config: Config) -> Result<Self, TlsError> {
        Ok(Server {
            shared: Arc::new(Shared::new(config)?),
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
                    let shared = self.shared.clone();
                    match &self.shared.tls {
                        None => {
                            tokio::spawn(conn::serve(shared, stream, ConnInfo { peer, tls: None }))
                        }
                        Some(tls) => {
                            tokio::spawn(conn::serve_tls(shared, tls.clone(), stream, peer))
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

    /// Serves one already-accepted connection (plain, no TLS), as `serve`
    /// does for each one it accepts.
    pub async fn serve_connection<S>(self, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        conn::serve(self.shared, io, ConnInfo { peer, tls: None }).await
    }

    /// Starts the shutdown: `/healthz` and new upgrades get 503, idle HTTP
    /// keep-alive connections close, every session is sent 1001.
    pub fn begin_shutdown(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
        self.shared.ws.sweep.begin_drain();
    }

    /// Waits until every session has ended, or `timeout`. True if all ended:
    /// every session holds a connection slot until its last log line, so
    /// all slots back means all sessions done.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let slots = &self.shared.connection_slots;
        let all = slots.acquire_many(self.shared.slots_total);
        matches!(tokio::time::timeout(timeout, all).await, Ok(Ok(_)))
    }

    pub fn sessions_open(&self) -> usize {
        let shared = &self.shared;
        (shared.slots_total as usize).saturating_sub(shared.connection_slots.available_permits())
    }
}

/// Whether a socket already listens on `addr`'s port (port 0: never).
/// SO_REUSEPORT lets a second process join that socket's group without an
/// error and take a share of its connections; a socket bound without it
/// (and not listening: no connection can land on it) is refused instead.
fn port_taken(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    socket.is_ok_and(|socket| {
        // SO_REUSEADDR, as the listeners have: a closed connection still in
        // TIME_WAIT does not count.
        socket.set_reuseaddr(true).is_ok()
            && matches!(socket.bind(addr), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// Binds `n` listeners to `addr` with SO_REUSEPORT, so the kernel spreads
/// connections over worker threads. Binding port 0 gives all of them the port
/// the first one got. Call inside a tokio runtime; the listeners come back as
/// std listeners, ready to move to each worker's own runtime.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    // Probed before our own listeners exist, told after they are bound: a
    // bind that then fails explains itself, and this is no error anyway,
    // since an overlapping restart needs the old process's listeners and
    // the new one's side by side for a moment.
    let taken = port_taken(addr);
    let listen = addr;
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
    if taken {
        warn!(
            %listen,
            "another socket already listens here: with SO_REUSEPORT this process shares its \
             connections (and, without --redis-url, splits every chat room); is another wsecho running?"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn a_port_with_a_listener_is_taken_and_reuseport_would_share_it() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert!(port_taken(addr));
        // The hazard the check warns of: a second group member, no error.
        let second = bind_reuseport(addr, 1).unwrap();
        assert_eq!(second[0].local_addr().unwrap(), addr);
        drop((first, second));
        assert!(!port_taken(addr));
        assert!(!port_taken("127.0.0.1:0".parse().unwrap()));
        // A listener without SO_REUSEPORT, over IPv6 where the host has it.
        if let Ok(plain) = TcpListener::bind("[::1]:0") {
            assert!(port_taken(plain.local_addr().unwrap()));
        }
    }

    /// The listener closed its side first, so the port holds a connection
    /// in TIME_WAIT: a restart on it is not another process listening.
    #[test]
    fn a_connection_in_time_wait_does_not_take_the_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        accepted.write_all(b"x").unwrap();
        drop(accepted);
        let mut buf = [0; 2];
        assert_eq!(client.read(&mut buf).unwrap(), 1);
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        drop(client);
        drop(listener);
        assert!(!port_taken(addr));
    }
}
