//! `roundtrip`: one message over loopback TCP through a real server (its own
//! thread and runtime, as in production), wsecho beside a tokio-tungstenite
//! echo server.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{client_frame, data, runtime, server_frame_len, tungstenite_echo};

const SIZES: [(&str, usize); 4] = [
    ("16B", 16),
    ("1KiB", 1 << 10),
    ("16KiB", 16 << 10),
    ("64KiB", 64 << 10),
];

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("roundtrip");
    for (name, size) in SIZES {
        group.throughput(Throughput::Bytes(2 * size as u64));
        for (label, addr) in [
            ("wsecho", wsecho_server()),
            ("tokio-tungstenite", tungstenite_server()),
        ] {
            group.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter_custom(|n| run(addr, size, n))
            });
        }
    }
    group.finish();
}

/// Starts `serve` on a loopback listener in a thread of its own.
fn spawn_server<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve(listener).await;
        })
    });
    rx.recv().unwrap()
}

fn wsecho_server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        spawn_server(|listener| async move {
            let config = wsecho::Config::parse_from(["wsecho", "--server-name", "bench"]);
            wsecho::Server::new(config).unwrap().serve(listener).await
        })
    })
}

fn tungstenite_server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        spawn_server(|listener| async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tcp.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        tungstenite_echo(ws.into_inner()).await;
                    }
                });
            }
        })
    })
}

fn run(addr: SocketAddr, size: usize, iters: u64) -> Duration {
    runtime().block_on(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let payload = data(size, 9);
        let frame = client_frame(&payload);
        let mut reply = vec![0u8; server_frame_len(size)];
        tcp.write_all(&frame).await.unwrap();
        tcp.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply[reply.len() - size..], &payload[..]);

        let start = Instant::now();
        for _ in 0..iters {
            tcp.write_all(&frame).await.unwrap();
            tcp.read_exact(&mut reply).await.unwrap();
        }
        start.elapsed()
    })
}
