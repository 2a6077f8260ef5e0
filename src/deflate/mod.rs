//! permessage-deflate (RFC 7692): negotiation, and the per-message codec a
//! session runs on compressed messages. No I/O and no frames here: the
//! session feeds payload bytes in and takes payload bytes out.
//!
//! # Layout
//!
//! - [`DeflatePolicy`] (`policy.rs`): `--deflate off|on|POLICY`, its syntax.
//! - [`negotiate`] and [`Params`] (`offer.rs`): the `Sec-WebSocket-Extensions`
//!   offers, the first acceptable one, the response header.
//! - [`Inflater`] (`inflater.rs`): a received message's payload pieces in,
//!   its inflated bytes out, capped.
//! - [`Deflater`] (`deflater.rs`): a message to send, compressed;
//!   [`SharedDeflate`]: one chat relay compressed once for every peer that
//!   agreed to the same compressor.
//! - `pool.rs`: per-thread idle zlib contexts.
//!
//! # How a session uses it
//!
//! ```text
//! handshake:  params = negotiate(all Sec-WebSocket-Extensions values, &policy)
//!             Some(p) => answer with p.response_header(), keep
//!                        Inflater::new(&p, max_message_size), Deflater::new(&p, &policy)
//!             None    => no header; RSV1 stays a protocol error (1002)
//! receive:    RSV1 on the first frame of a data message => compressed message
//!             (RSV1 on a continuation or control frame => 1002)
//!             each unmasked payload piece, as it arrives, of every frame:
//!                 inflater.feed_with(piece, &mut message, |chunk| utf8.feed(chunk).is_ok())?
//!                 (binary: inflater.feed(piece, &mut message)?)
//!             on FIN: inflater.finish_with(&mut message, same check)?
//!             Err(TooLarge) => 1009, Err(Corrupt | Rejected) => 1007: text
//!             fails at the first bad 64 KiB chunk, not at the cap
//!             closing mid-message: drop the Inflater (or abandon())
//! echo:       deflater.compress(&message, &mut payload)?  (Err => 1011)
//!             send payload with RSV1 on its first frame, the same opcode;
//!             if payload is not shorter and deflater.can_skip_compression(),
//!             send the message as it came, RSV1 clear
//! chat relay: SharedDeflate::new(&p, &policy) at the join (None under server
//!             context takeover: relayed plain); per message and kind,
//!             shared.compress(&message, &mut payload), sent with RSV1 only
//!             when shorter
//! ```
//!
//! The frame-size limit applies to compressed frames as they arrive; the
//! message-size cap applies to the inflated message, inside the Inflater,
//! which never inflates more than cap + 1 bytes of one message however small
//! its input (a 1 GiB zip bomb of about 1 MiB costs the cap, see the tests).
//!
//! # Memory, and why the default is no context takeover
//!
//! Resident memory per live zlib-rs context, measured with
//! `cargo run --example deflate_memory` (2,000 live contexts per kind, each
//! after a 64 KiB message so every buffer is touched, RSS growth divided by
//! 2,000, mimalloc; 2026-11-28, zlib-rs 0.6.8, flate2 1.1.11):
//!
//! | context                        | memLevel 8 | memLevel 4 | memLevel 1 |
//! |--------------------------------|-----------:|-----------:|-----------:|
//! | compress, 15-bit window        |    322 KiB |    266 KiB |    258 KiB |
//! | compress, 12-bit window        |    211 KiB |    155 KiB |    147 KiB |
//! | compress, 9-bit window         |    199 KiB |    143 KiB |    135 KiB |
//! | decompress, 15, 12 or 9 bits   |     48 KiB |            |            |
//!
//! The compressor's floor is zlib-rs's fixed 64 Ki-entry hash table
//! (128 KiB), whatever the window or memLevel; the decompressor's window is
//! allocated at full size whatever the window bits. So smaller windows save
//! at most 40 % and the full pair costs ~370 KiB: 10,000 connections with
//! context takeover would hold 3.6 GB. With no context takeover both ways
//! (`--deflate on`, the default) contexts are only borrowed per message from
//! a per-thread pool (a few idle ones per worker), and an idle connection
//! holds the two structs alone: 312 bytes, no heap (measured 0.3 KiB per
//! idle pair, against 370 KiB per pair with `--deflate takeover`). The cost is
//! ratio across messages: a message cannot refer back to the previous one.
//! A message in flight holds its context until it ends, so memory is bounded
//! by messages in flight, not by connections.
//!
//! # Library, levels, the 8-bit window
//!
//! flate2 with only its zlib-rs backend inflates; the compressor is zlib-rs's
//! own safe API (`zlib_rs::Deflate`, the same code flate2 wraps) because
//! flate2 exposes neither memLevel nor strategy. libz-rs-sys was not needed
//! (its C API would need `unsafe`).
//!
//! zlib cannot compress with a raw 8-bit window (its 256-byte window has a
//! known bug; zlib ≥ 1.2.9 and zlib-rs refuse it). Others compress with 9
//! bits after agreeing to 8, which can emit distances a strict 256-byte
//! inflater rejects. wsecho agrees to 8 when asked and then sends Huffman-
//! coded literals only (no back-references), valid under any window.
//!
//! Level 2 is the default (table below): zlib-rs's level 1 is the fastest on
//! text, but it uses static Huffman codes only, so incompressible payloads
//! grow by 5.5 % (and compress slowly); level 2 stores them instead, and
//! on text costs ~1.7 times level 1's time for ~30 % fewer bytes. Levels 6
//! and 9 cost several times more for a few percent. When no context is
//! taken over the session may still send a message uncompressed if
//! compressing did not shrink it ([`Deflater::can_skip_compression`]).
//!
//! `examples/deflate_speed.rs` compares zlib-rs with miniz_oxide (flate2's
//! `rust_backend`), per message with a reset context, built alone in release
//! mode; figures in the table below (2026-11-28, 2 shared vCPUs of an Intel
//! Xeon under a load average of ~9, so the speeds are rough, the ratios exact):
//!
//! | payload      | level | zlib-rs ratio | MB/s in / out | miniz_oxide ratio | MB/s in / out |
//! |--------------|------:|--------------:|--------------:|------------------:|--------------:|
//! | text 1 KiB   |     1 |         0.327 |      64 / 224 |             0.289 |       28 / 56 |
//! | text 1 KiB   |     2 |         0.272 |       22 / 74 |             0.264 |       21 / 66 |
//! | text 1 KiB   |     6 |         0.257 |      24 / 101 |             0.254 |       20 / 62 |
//! | text 1 KiB   |     9 |         0.254 |      18 / 111 |             0.254 |       19 / 58 |
//! | text 16 KiB  |     1 |         0.247 |     205 / 318 |             0.201 |     113 / 135 |
//! | text 16 KiB  |     2 |         0.184 |      85 / 239 |             0.177 |      49 / 315 |
//! | text 16 KiB  |     6 |         0.145 |      33 / 378 |             0.142 |      10 / 233 |
//! | text 16 KiB  |     9 |         0.142 |      14 / 569 |             0.142 |      14 / 387 |
//! | text 1 MiB   |     1 |         0.236 |     197 / 401 |             0.189 |     113 / 178 |
//! | text 1 MiB   |     2 |         0.170 |     118 / 437 |             0.162 |      80 / 178 |
//! | text 1 MiB   |     6 |         0.126 |      11 / 481 |             0.124 |      10 / 310 |
//! | text 1 MiB   |     9 |         0.120 |       7 / 526 |             0.120 |       3 / 347 |
//! | random 1 KiB |     1 |         1.059 |      41 / 113 |             1.006 |     33 / 1448 |
//! | random 1 KiB |     2 |         1.006 |     25 / 2716 |             1.006 |     20 / 1527 |
//! | random 16 KiB |     1 |         1.055 |      11 / 154 |             1.000 |     68 / 2291 |
//! | random 16 KiB |     2 |         1.000 |     62 / 4462 |             1.000 |     18 / 1485 |
//! | random 1 MiB |     1 |         1.055 |      11 / 190 |             1.001 |       52 / 99 |
//! | random 1 MiB |     2 |         1.000 |     22 / 3042 |             1.000 |     17 / 2269 |
//!
//! ("MB/s in / out": compressing, inflating, in MB of the message per
//! second; ratio: compressed / original.) zlib-rs compresses text faster
//! than miniz_oxide at levels 1 to 6 and mostly inflates faster; miniz_oxide
//! has slightly better ratios at low levels and no level-1 expansion. Small
//! messages are slow on both: each message starts from a reset context, and
//! resetting a zlib-rs compressor clears its 128 KiB hash table (the price
//! of pooling; a context kept per connection would not pay it).

mod deflater;
mod inflater;
mod offer;
mod policy;
mod pool;

pub use deflater::{DeflateError, Deflater, SharedDeflate};
pub use inflater::{InflateError, Inflater};
pub use offer::{Params, negotiate};
pub use policy::{DeflatePolicy, PolicyError};
pub use pool::{idle_contexts, live_contexts};

#[cfg(test)]
mod cap_tests;
#[cfg(test)]
mod codec_tests;
