//! wsecho-load: a WebSocket load generator that verifies every echo and
//! measures latency honestly.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap derive) and its value parsers;
//!   [`plan`]: the checked command line as types ([`plan::Workload`]) and
//!   what the workers share.
//! - [`target`]: the `ws://` / `wss://` URL; [`net`]: dialling (source
//!   addresses, TCP_NODELAY, TLS) and the stream type; [`tls`]: rustls.
//! - [`handshake`]: the HTTP/1.1 upgrade, timed apart from the connect;
//!   [`http2`]: `--http2`, WebSockets by extended CONNECT (RFC 8441), many
//!   per connection, each stream a byte stream like a socket.
//! - [`codec`]: the client side of RFC 6455 framing, cancel-safe by design;
//!   [`deflate`]: `--deflate` (permessage-deflate, RFC 7692): the offer,
//!   the answer's check, compressing and inflating.
//! - [`payload`]: what each message carries and how an echo is verified;
//!   [`textjson`]: `--payload text-json`, a compressible filler;
//!   [`window`]: per-connection sequence bookkeeping (lost, duplicated,
//!   reordered, late).
//! - [`clock`]: run time in ns and the mask-key generator.
//! - [`conn`]: one connection's buffers and its single poll loop;
//!   [`bufpool`]: the worker's buffers that connections borrow per read
//!   and per write.
//! - [`engine`]: worker threads and the phases every connection follows
//!   (connect, warm-up, counted window, drain); [`pacer`]: open loop's
//!   microsecond send timing; [`scenario`]: echo, connect, idle, chat, the
//!   worker context they run in ([`scenario::WorkerCtx`],
//!   [`scenario::Phases`]) and [`scenario::direct`], the worker's epoll
//!   loop that drives closed-loop echo on plain TCP without a task per
//!   connection.
//! - [`run`]: the main thread (start, live line, samples); [`summary`]: from
//!   merged figures to a report.
//! - [`stats`]: mergeable per-thread counters and HDR histograms;
//!   [`cpu`]: `/proc` sampling of our threads and of a local server.
//! - [`report`]: the result document (JSON, `schema.json`); [`merge`]:
//!   combining reports and judging one (errors, thresholds, exit status);
//!   [`output`]: live line, text summary, JSON and CSV.

pub mod bufpool;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod conn;
pub mod cpu;
pub mod deflate;
pub mod engine;
pub mod handshake;
pub mod http2;
pub mod merge;
pub mod net;
pub mod output;
pub mod pacer;
pub mod payload;
pub mod plan;
pub mod profile;
pub mod report;
pub mod run;
pub mod scenario;
pub mod series;
pub mod stats;
pub mod summary;
pub mod target;
pub mod textjson;
pub mod tls;
pub mod window;
