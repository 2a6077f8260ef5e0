//! wsecho's criterion benchmarks, one group per scenario:
//!
//! - `echo_core`: frame parse, unmask and write-back through wsecho's echo
//!   path over an in-memory duplex stream, beside the same workload through
//!   tokio-tungstenite, 16 B to 1 MiB.
//! - `handshake`: the HTTP upgrade, per connection (hyper + wsecho's checks,
//!   beside tokio-tungstenite's `accept_async`).
//! - `roundtrip`: one message over loopback TCP through the real server.
//! - `unmask`: the unmask wsecho runs (fastwebsockets') against a plain
//!   byte-at-a-time loop.
//! - `fanout`: a chat message relayed to 1, 10 and 100 peers.
//!
//! `cargo bench` runs them all; `cargo bench -- echo_core` one group;
//! `cargo bench -- --test` each once, quickly (CI).

mod common;
mod deflate;
mod echo_core;
mod fanout;
mod handshake;
mod roundtrip;
mod unmask;

criterion::criterion_group!(
    benches,
    echo_core::bench,
    handshake::bench,
    roundtrip::bench,
    unmask::bench,
    fanout::bench,
    deflate::bench
);
criterion::criterion_main!(benches);
