//! What a zlib context costs, in resident memory, for the figures in
//! `src/deflate/mod.rs`: builds many live contexts of each kind (each after
//! one message, so lazily allocated windows exist) and divides the growth of
//! the process's RSS by their number. Resident memory, not bytes requested,
//! is what 10,000 connections cost; the allocator is the server's (mimalloc).
//!
//! Each kind is measured in a fresh child process: freed pages stay resident
//! in the allocator and would hide the next kind's cost.
//!
//! `cargo run --example deflate_memory` (sizes do not depend on the profile).

#![allow(clippy::print_stdout)]

use std::any::Any;

use flate2::{Decompress, FlushDecompress};
use wsecho::deflate::{DeflatePolicy, Deflater, Inflater, negotiate};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method, Strategy};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Live contexts per measurement: enough to drown the allocator's slack.
const N: usize = 2000;

fn main() {
    let Some(case) = std::env::args().nth(1) else {
        println!("kind                                          KiB per context");
        let me = std::env::current_exe().expect("own path");
        for case in 0.. {
            let out = std::process::Command::new(&me)
                .arg(case.to_string())
                .output();
            let out = out.expect("child runs");
            if out.stdout.is_empty() {
                break;
            }
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        println!(
            "(struct sizes: Deflater {} B, Inflater {} B)",
            size_of::<Deflater>(),
            size_of::<Inflater>()
        );
        return;
    };
    let case: usize = case.parse().expect("a case number");
    let mut cases = 0..;
    let mut measure = |label: &str, make: &mut dyn FnMut() -> Box<dyn Any>| {
        if cases.next() == Some(case) {
            measure(label, make);
        }
    };
    // 64 KiB of varied text: larger than every window, so each context is
    // measured as a busy connection leaves it (every buffer touched).
    let msg: Vec<u8> = (0..1200u32)
        .flat_map(|i| {
            format!(
                "{{\"id\":{i},\"user\":\"u{}\",\"text\":\"w{}\"}}\n",
                i * 7919 % 97,
                i * 104_729 % 1009
            )
            .into_bytes()
        })
        .take(64 * 1024)
        .collect();
    for bits in [15u8, 12, 9] {
        for mem_level in [8u8, 4, 1] {
            let label = format!("compress   window {bits:>2}, memLevel {mem_level}");
            measure(&label, &mut || {
                let mut z = Deflate::new_with_config(DeflateConfig {
                    level: 1,
                    method: Method::Deflated,
                    window_bits: -i32::from(bits),
                    mem_level: i32::from(mem_level),
                    strategy: Strategy::Default,
                });
                let mut out = vec![0; msg.len() + 64];
                z.compress(&msg, &mut out, DeflateFlush::SyncFlush).unwrap();
                Box::new(z)
            });
        }
    }
    let mut wire = Vec::new();
    let on = negotiate([&b"permessage-deflate"[..]], &DeflatePolicy::TAKEOVER).unwrap();
    Deflater::new(&on, &DeflatePolicy::TAKEOVER)
        .compress(&msg, &mut wire)
        .unwrap();
    wire.extend_from_slice(&[0, 0, 0xff, 0xff]);
    for bits in [15u8, 12, 9] {
        measure(&format!("decompress window {bits:>2}"), &mut || {
            let mut z = Decompress::new_with_window_bits(false, bits);
            let mut out = vec![0; msg.len() + 64];
            z.decompress(&wire, &mut out, FlushDecompress::Sync)
                .unwrap();
            Box::new(z)
        });
    }
    for (name, policy) in [
        ("on", DeflatePolicy::ON),
        ("takeover", DeflatePolicy::TAKEOVER),
    ] {
        let params = negotiate([&b"permessage-deflate"[..]], &policy).unwrap();
        measure(&format!("wsecho pair, --deflate {name}, idle"), &mut || {
            let mut deflater = Deflater::new(&params, &policy);
            let mut inflater = Inflater::new(&params, 1 << 20);
            let (mut wire, mut back) = (Vec::new(), Vec::new());
            deflater.compress(&msg, &mut wire).unwrap();
            inflater.feed(&wire, &mut back).unwrap();
            inflater.finish(&mut back).unwrap();
            Box::new((deflater, inflater))
        });
    }
}

/// Prints the resident growth per object of `N` objects from `make`.
fn measure(label: &str, make: &mut dyn FnMut() -> Box<dyn Any>) {
    // Warm the allocator's size classes so the first kind is not penalised.
    drop((0..16).map(|_| make()).collect::<Vec<_>>());
    let before = rss();
    let live: Vec<Box<dyn Any>> = (0..N).map(|_| make()).collect();
    let grown = rss().saturating_sub(before);
    println!("{label:<45} {:>7.1}", grown as f64 / N as f64 / 1024.0);
    drop(live);
}

/// Resident set size from /proc/self/statm (pages of 4 KiB).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
