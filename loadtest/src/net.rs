//! Dialling: bind a source address, connect with TCP_NODELAY, TLS when the
//! URL says `wss://`; each step timed on its own. [`Stream`] is the one
//! stream type the rest of the tool drives, plain, TLS or an HTTP/2 stream.

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::target::Target;

mod h2_stream;

pub use h2_stream::H2Stream;

/// A connected socket, plain or TLS, or one HTTP/2 stream (`--http2`). An enum rather than a trait object:
/// the match is a predictable branch, a `dyn` call is not inlined.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    H2(Box<H2Stream>),
    /// A plain socket lent to the worker's epoll loop ([`crate::scenario::direct`]),
    /// which does its reads and writes until it gives it back.
    Lent,
    /// An in-memory peer for the connection loop's unit tests.
    #[cfg(test)]
    Duplex(tokio::io::DuplexStream),
}

/// A freshly dialled stream and what each step cost.
pub struct Dialed {
    pub stream: Stream,
    pub connect_us: u64,
    pub tls_us: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("timed out")]
    Timeout,
}

/// Everything needed to open connection number `n` to the target.
pub struct Dialer {
    addr: SocketAddr,
    sources: Vec<IpAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Dialer {
    pub fn new(
        target: &Target,
        addr: SocketAddr,
        sources: Vec<IpAddr>,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Result<Dialer, String> {
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{}: not a TLS server name: {e}", target.host))?;
                Some((TlsConnector::from(config), name))
            }
        };
        if let Some(ip) = sources.iter().find(|ip| ip.is_ipv4() != addr.is_ipv4()) {
            return Err(format!("source address {ip} cannot reach {addr}"));
        }
        Ok(Dialer {
            addr,
            sources,
            tls,
            timeout,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection `n` binds the `n`-th source address (in turn), so
    /// connections spread evenly over the addresses' port ranges.
    pub async fn dial(&self, n: u64) -> Result<Dialed, DialError> {
        let started = Instant::now();
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(DialError::Connect)?;
        if !self.sources.is_empty() {
            let ip = self.sources[(n % self.sources.len() as u64) as usize];
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(DialError::Connect)?;
        }
        let tcp = tokio::time::timeout(self.timeout, socket.connect(self.addr))
            .await
            .map_err(|_| DialError::Timeout)?
            .map_err(DialError::Connect)?;
        // Echoes are small and answered at once: Nagle's algorithm would
        // hold each one back behind the peer's delayed ACK (up to 40 ms).
        tcp.set_nodelay(true).map_err(DialError::Connect)?;
        let connect_us = micros(started.elapsed());
        let Some((connector, name)) = &self.tls else {
            return Ok(Dialed {
                stream: Stream::Plain(tcp),
                connect_us,
                tls_us: None,
            });
        };
        let tls_started = Instant::now();
        let tls = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| DialError::Timeout)?
            .map_err(DialError::Tls)?;
        Ok(Dialed {
            stream: Stream::Tls(Box::new(tls)),
            connect_us,
            tls_us: Some(micros(tls_started.elapsed())),
        })
    }
}

/// Raises the open-file limit to its hard maximum: each connection is a
/// file descriptor, and the usual soft limit (1024) is far below what a
/// load test opens. Returns the limit now in force (None: unlimited).
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Lent => Poll::Ready(Err(lent())),
            #[cfg(test)]
            Stream::Duplex(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Lent => Poll::Ready(Err(lent())),
            #[cfg(test)]
            Stream::Duplex(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Lent => Poll::Ready(Err(lent())),
            #[cfg(test)]
            Stream::Duplex(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::H2(s) => s.is_write_vectored(),
            Stream::Lent => false,
            #[cfg(test)]
            Stream::Duplex(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            // A TCP socket has nothing buffered in user space.
            Stream::Plain(_) | Stream::Lent => Poll::Ready(Ok(())),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(test)]
            Stream::Duplex(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Lent => Poll::Ready(Err(lent())),
            #[cfg(test)]
            Stream::Duplex(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Async I/O on a socket the epoll loop holds: a bug, reported as an error.
fn lent() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "socket lent to the epoll loop")
}
