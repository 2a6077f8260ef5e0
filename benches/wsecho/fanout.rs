//! `fanout`: a chat message encoded once and relayed to 1, 10 and 100
//! peers' queues, then taken off each queue as the peer's stream would.

use std::io::IoSlice;
use std::sync::Arc;
use std::task::{Context, Waker};

use criterion::{BenchmarkId, Criterion, Throughput};
use fastwebsockets::OpCode;
use wsecho::rooms::{RoomLimits, Rooms};

use crate::common::data;

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let payload = data(64, 3);
    for peers in [1usize, 10, 100] {
        let limits = RoomLimits {
            max_rooms: 1,
            max_peers: peers + 1,
            queue_bytes: 64 << 20,
        };
        let rooms = Arc::new(Rooms::new(limits, Arc::default()));
        let (sender, _own) = rooms.join("bench", None).unwrap();
        let mut inboxes: Vec<_> = (0..peers)
            .map(|_| rooms.join("bench", None).unwrap())
            .collect();
        let mut cx = Context::from_waker(Waker::noop());
        // Deliveries per second.
        group.throughput(Throughput::Elements(peers as u64));
        group.bench_function(BenchmarkId::new("64B", format!("{peers} peers")), |b| {
            b.iter(|| {
                sender.broadcast(OpCode::Text, &payload);
                for (_, inbox) in inboxes.iter_mut() {
                    // As the peer's stream does: one batch, all of it written.
                    let mut iov = [IoSlice::new(&[]); 8];
                    let n = inbox.poll_batch(&mut cx, &mut iov);
                    let written: usize = iov[..n].iter().map(|s| s.len()).sum();
                    inbox.consumed(written);
                }
            })
        });
    }
    group.finish();
}
