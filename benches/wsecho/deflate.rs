//! `deflate`: permessage-deflate as the echo path runs it, per message,
//! through wsecho's `Deflater` and `Inflater` under the default policy (no
//! context takeover, contexts from the per-thread pool), on JSON-ish text.
//! The zlib-rs/miniz_oxide comparison is `examples/deflate_speed.rs`.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use crate::common::SIZES;
use wsecho::deflate::{DeflatePolicy, Deflater, Inflater, negotiate};

/// Inflated size cap: above every size swept.
const CAP: usize = 64 << 20;

/// Seeded JSON-ish lines: compressing random bytes only measures overhead.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "hello", "deflate", "window", "echo", "frame", "message", "42",
    ];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = words[(x % words.len() as u64) as usize];
        out.extend_from_slice(format!(r#"{{"user":"u{}","text":"{word}"}},"#, x % 97).as_bytes());
    }
    out.truncate(len);
    out
}

pub fn bench(c: &mut Criterion) {
    let policy = DeflatePolicy::ON;
    let params = negotiate([&b"permessage-deflate"[..]], &policy).expect("accepted");
    let mut group = c.benchmark_group("deflate");
    for (name, size) in SIZES {
        let msg = text(size);
        let mut deflater = Deflater::new(&params, &policy);
        let mut inflater = Inflater::new(&params, CAP);
        let mut wire = Vec::new();
        deflater.compress(&msg, &mut wire).expect("compresses");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("compress", name), |b| {
            let mut out = Vec::with_capacity(size);
            b.iter(|| {
                out.clear();
                deflater
                    .compress(black_box(&msg), &mut out)
                    .expect("compresses");
            })
        });
        group.bench_function(BenchmarkId::new("inflate", name), |b| {
            let mut out = Vec::with_capacity(size);
            b.iter(|| {
                out.clear();
                inflater.feed(black_box(&wire), &mut out).expect("inflates");
                inflater.finish(&mut out).expect("inflates")
            })
        });
    }
    group.finish();
}
