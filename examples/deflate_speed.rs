//! Raw-deflate speed and ratio, zlib-rs (what wsecho uses) beside miniz_oxide
//! (flate2's `rust_backend`), per message as permessage-deflate without
//! context takeover does it: a reset context, a sync flush, JSON-ish text and
//! random bytes.
//!
//! Depends on nothing of wsecho, so it can be built alone in release mode
//! without building the server: `cargo run --release --example deflate_speed`
//! in the workspace, or as the only binary of a scratch crate depending on
//! `zlib-rs` and `miniz_oxide`. The figures in `src/deflate/mod.rs` came
//! from the latter.

#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use miniz_oxide::deflate::core::{CompressorOxide, create_comp_flags_from_zip_params};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZFlush};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Method, Strategy};

/// Time spent per measurement; each is repeated until it has run this long.
const RUN_FOR: Duration = Duration::from_millis(700);
const SIZES: [usize; 3] = [1024, 16 * 1024, 1024 * 1024];
const LEVELS: [u8; 4] = [1, 2, 6, 9];

fn main() {
    println!("backend     level  payload  size      ratio   deflate MB/s  inflate MB/s");
    for (kind, make) in [("text", text as fn(usize) -> Vec<u8>), ("random", noise)] {
        for size in SIZES {
            let msg = make(size);
            for level in LEVELS {
                for backend in [Backend::ZlibRs, Backend::Miniz] {
                    let mut ctx = backend.contexts(level);
                    let (wire, deflate) = rate(&msg, || ctx.deflate(&msg));
                    let (back, inflate) = rate(&msg, || ctx.inflate(&wire, msg.len()));
                    assert!(back == msg, "{backend:?} round trip");
                    println!(
                        "{:<11} {level:>5}  {kind:<7} {size:>8}  {:>6.3}  {deflate:>12.0}  {inflate:>12.0}",
                        format!("{backend:?}"),
                        wire.len() as f64 / size as f64
                    );
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    ZlibRs,
    Miniz,
}

/// One compressor and one decompressor, reset per message as wsecho's pool
/// does (a reset zlib compressor still clears its 128 KiB hash table).
enum Contexts {
    ZlibRs(Box<Deflate>, Box<Inflate>),
    Miniz(Box<CompressorOxide>, Box<InflateState>),
}

impl Backend {
    fn contexts(self, level: u8) -> Contexts {
        match self {
            Backend::ZlibRs => Contexts::ZlibRs(
                Box::new(Deflate::new_with_config(DeflateConfig {
                    level: i32::from(level),
                    method: Method::Deflated,
                    window_bits: -15,
                    mem_level: 8,
                    strategy: Strategy::Default,
                })),
                Box::new(Inflate::new(false, 15)),
            ),
            Backend::Miniz => Contexts::Miniz(
                Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
                    i32::from(level),
                    -15,
                    0,
                ))),
                InflateState::new_boxed(DataFormat::Raw),
            ),
        }
    }
}

impl Contexts {
    /// One message: input, sync flush, tail stripped, context reset.
    fn deflate(&mut self, msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0; msg.len() + msg.len() / 8 + 64];
        let n = match self {
            Contexts::ZlibRs(z, _) => {
                let before = z.total_out();
                z.compress(msg, &mut out, DeflateFlush::SyncFlush).unwrap();
                let n = (z.total_out() - before) as usize;
                z.reset();
                n
            }
            Contexts::Miniz(c, _) => {
                let r = miniz_oxide::deflate::stream::deflate(c, msg, &mut out, MZFlush::Sync);
                assert_eq!(r.bytes_consumed, msg.len());
                c.reset();
                r.bytes_written
            }
        };
        assert_eq!(out[n - 4..n], [0, 0, 0xff, 0xff]);
        out.truncate(n - 4);
        out
    }

    fn inflate(&mut self, wire: &[u8], len: usize) -> Vec<u8> {
        let mut input = wire.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = vec![0; len];
        let n = match self {
            Contexts::ZlibRs(_, z) => {
                let before = z.total_out();
                z.decompress(&input, &mut out, InflateFlush::SyncFlush)
                    .unwrap();
                let n = (z.total_out() - before) as usize;
                z.reset(false);
                n
            }
            Contexts::Miniz(_, s) => {
                let r = miniz_oxide::inflate::stream::inflate(s, &input, &mut out, MZFlush::Sync);
                s.reset(DataFormat::Raw);
                r.bytes_written
            }
        };
        out.truncate(n);
        out
    }
}

/// Runs `f` for about [`RUN_FOR`]; its last result and MB/s of `msg`.
fn rate<T>(msg: &[u8], mut f: impl FnMut() -> T) -> (T, f64) {
    let start = Instant::now();
    let mut runs = 0u32;
    loop {
        let out = black_box(f());
        runs += 1;
        let spent = start.elapsed();
        if spent >= RUN_FOR {
            let mb = msg.len() as f64 * f64::from(runs) / 1e6;
            return (out, mb / spent.as_secs_f64());
        }
    }
}

/// Deterministic JSON-ish chat lines (the same shape as wsecho's tests).
fn text(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "hello", "deflate", "window", "echo", "frame", "message", "42",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::with_capacity(len + 128);
    let mut id = 0;
    while out.len() < len {
        id += 1;
        let user = next() % 97;
        out.extend_from_slice(format!(r#"{{"id":{id},"user":"user{user}","text":""#).as_bytes());
        for _ in 0..next() % 12 + 1 {
            out.extend_from_slice(WORDS[(next() % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\"}\n");
    }
    out.truncate(len);
    out
}

fn noise(len: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}
