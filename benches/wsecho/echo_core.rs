//! `echo_core`: one message at a time through an echo over an in-memory
//! duplex stream (no socket), wsecho beside tokio-tungstenite.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::io::AsyncWriteExt;

use crate::common::{
    DUPLEX_BUF, SIZES, client_frame, data, read_echo, runtime, tungstenite_echo, wsecho_echo,
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
        let (client, server) = tokio::io::duplex(DUPLEX_BUF);
        // Written while the echo is read, as a real client does: a frame
        // over 64 KiB comes back while it is still being sent.
        let (mut rx, mut tx) = tokio::io::split(client);
        match echo {
            Echo::Wsecho => tokio::spawn(wsecho_echo(server)),
            Echo::Tungstenite => tokio::spawn(tungstenite_echo(server)),
        };
        let payload = data(size, 42);
        let frame = client_frame(&payload);
        let mut reply = Vec::with_capacity(size);
        // One untimed round, checked, so a broken echo cannot look fast.
        let (sent, ()) = tokio::join!(tx.write_all(&frame), read_echo(&mut rx, &mut reply, size));
        sent.unwrap();
        assert_eq!(&reply[..], &payload[..], "echo changed the payload");

        let start = Instant::now();
        for _ in 0..iters {
            let (sent, ()) =
                tokio::join!(tx.write_all(&frame), read_echo(&mut rx, &mut reply, size));
            sent.unwrap();
        }
        start.elapsed()
    })
}
