//! What the benchmark groups share: sizes, seeded data, client frames, and
//! the two echo implementations under test.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use wsecho::echo::Echo;
use wsecho::metrics::Metrics;
use wsecho::ws::{Env, Limits, Session, Sweep};

/// Payload sizes swept by the echo groups.
pub const SIZES: [(&str, usize); 6] = [
    ("16B", 16),
    ("128B", 128),
    ("1KiB", 1 << 10),
    ("16KiB", 16 << 10),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
];

/// Buffer of the in-memory duplex pipe: a socket buffer's order of size.
pub const DUPLEX_BUF: usize = 256 << 10;

/// Seeded pseudo-random bytes (xorshift), the same on every run.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A masked client binary frame carrying `payload`.
pub fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x5a, 0x13, 0xc4, 0x7e];
    let mut out = vec![0x82];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one echoed message of `len` payload bytes into `reply` (its
/// payload), whether it came as one frame or, cut through, as fragments
/// (wsecho echoes frames over 64 KiB in pieces; tungstenite whole).
pub async fn read_echo<R: tokio::io::AsyncRead + Unpin>(
    io: &mut R,
    reply: &mut Vec<u8>,
    len: usize,
) {
    use tokio::io::AsyncReadExt;
    reply.clear();
    while reply.len() < len {
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await.unwrap();
        let n = match head[1] & 0x7f {
            126 => io.read_u16().await.unwrap() as usize,
            127 => io.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let at = reply.len();
        reply.resize(at + n, 0);
        io.read_exact(&mut reply[at..]).await.unwrap();
    }
}

/// Length of the unmasked server frame that echoes `len` bytes.
pub fn server_frame_len(len: usize) -> usize {
    len + match len {
        n if n < 126 => 2,
        n if n < 65536 => 4,
        _ => 10,
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn limits() -> Limits {
    Limits {
        max_message: 64 << 20,
        max_frame: 64 << 20,
        max_backlog: 16 << 20,
        close_timeout: std::time::Duration::from_secs(1),
        max_ping_rate: 0,
    }
}

/// wsecho's echo path on a stream that has completed its handshake.
pub async fn wsecho_echo<S: AsyncRead + AsyncWrite + Unpin + 'static>(io: S) {
    let env = Arc::new(Env {
        limits: limits(),
        liveness: None,
        metrics: Arc::new(Metrics::default()),
        sweep: Arc::new(Sweep::default()),
        deflate: wsecho::deflate::DeflatePolicy::ON,
    });
    let mut session = Session::new(io, Bytes::new(), None, None, env);
    session.run(&mut Echo).await;
}

/// The same echo through tokio-tungstenite, as its own echo example does it.
pub async fn tungstenite_echo<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let mut ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}
