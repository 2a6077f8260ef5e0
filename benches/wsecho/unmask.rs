//! `unmask`: the unmask wsecho runs on every received payload
//! (fastwebsockets', word at a time) against a plain byte-at-a-time loop.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use crate::common::{SIZES, data};

const MASK: [u8; 4] = [0x5a, 0x13, 0xc4, 0x7e];

fn bytewise(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (name, size) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = data(size, 7);
        group.bench_function(BenchmarkId::new("fastwebsockets (wsecho)", name), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(MASK)))
        });
        group.bench_function(BenchmarkId::new("byte-at-a-time", name), |b| {
            b.iter(|| bytewise(black_box(&mut buf), black_box(MASK)))
        });
    }
    group.finish();
}
