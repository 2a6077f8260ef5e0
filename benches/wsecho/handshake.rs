//! `handshake`: one HTTP upgrade per iteration over an in-memory duplex
//! stream: hyper plus wsecho's checks and routing, beside tokio-tungstenite's
//! `accept_async`.

use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{BenchmarkId, Criterion};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::common::{DUPLEX_BUF, runtime};

const REQUEST: &[u8] =
    b"GET /echo HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.bench_function(BenchmarkId::new("wsecho", "upgrade"), |b| {
        b.iter_custom(|n| run(n, Side::Wsecho))
    });
    group.bench_function(BenchmarkId::new("tokio-tungstenite", "upgrade"), |b| {
        b.iter_custom(|n| run(n, Side::Tungstenite))
    });
    group.finish();
}

#[derive(Clone, Copy)]
enum Side {
    Wsecho,
    Tungstenite,
}

fn run(iters: u64, side: Side) -> Duration {
    runtime().block_on(async move {
        let config = wsecho::Config::parse_from(["wsecho", "--server-name", "bench"]);
        let server = wsecho::Server::new(config).unwrap();
        let peer = "127.0.0.1:1".parse().unwrap();
        let mut head = Vec::with_capacity(512);
        let start = Instant::now();
        for _ in 0..iters {
            let (mut client, io) = tokio::io::duplex(DUPLEX_BUF);
            match side {
                Side::Wsecho => tokio::spawn(server.clone().serve_connection(io, peer)),
                Side::Tungstenite => tokio::spawn(tungstenite_accept(io)),
            };
            client.write_all(REQUEST).await.unwrap();
            read_head(&mut client, &mut head).await;
            assert!(
                head.starts_with(b"HTTP/1.1 101"),
                "{}",
                String::from_utf8_lossy(&head)
            );
        }
        start.elapsed()
    })
}

async fn tungstenite_accept(io: DuplexStream) {
    if let Ok(mut ws) = tokio_tungstenite::accept_async(io).await {
        use futures_util::StreamExt;
        while ws.next().await.is_some() {}
    }
}

async fn read_head(client: &mut DuplexStream, head: &mut Vec<u8>) {
    head.clear();
    let mut buf = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        head.extend_from_slice(&buf[..n]);
    }
}
