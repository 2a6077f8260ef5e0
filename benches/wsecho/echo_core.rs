//! `echo_core`: one message at a time through an echo over an in-memory
//! duplex stream (no socket), wsecho beside tokio-tungstenite.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{
    DUPLEX_BUF, SIZES, client_frame, data, runtime, server_frame_len, tungstenite_echo, wsecho_echo,
};

#[derive(Clone, Copy)]
enum Echo {
    Wsecho,
    Tungstenite,
}

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_core");
    for (name, size) in SIZES {
        // Echo moves each byte twice: in and back out.
        group.throughput(Throughput::Bytes(2 * size as u64));
        for (label, echo) in [
            ("wsecho", Echo::Wsecho),
            ("tokio-tungstenite", Echo::Tungstenite),
        ] {
            group.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter_custom(|iters| run(echo, size, iters))
            });
        }
    }
    group.finish();
}

fn run(echo: Echo, size: usize, iters: u64) -> Duration {
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(DUPLEX_BUF);
        match echo {
            Echo::Wsecho => tokio::spawn(wsecho_echo(server)),
            Echo::Tungstenite => tokio::spawn(tungstenite_echo(server)),
        };
        let payload = data(size, 42);
        let frame = client_frame(&payload);
        let mut reply = vec![0u8; server_frame_len(size)];
        // One untimed round, checked, so a broken echo cannot look fast.
        client.write_all(&frame).await.unwrap();
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            &reply[reply.len() - size..],
            &payload[..],
            "echo changed the payload"
        );

        let start = Instant::now();
        for _ in 0..iters {
            client.write_all(&frame).await.unwrap();
            client.read_exact(&mut reply).await.unwrap();
        }
        start.elapsed()
    })
}
