//! Prometheus metrics behind `GET /metrics` (OpenMetrics text, via
//! `prometheus-client`).
//!
//! Per-message counters are not touched per message: a session adds its
//! counts every [`FLUSH_EVERY`] messages and when it ends, so worker threads
//! do not fight over one cache line on the hot path.

use std::fmt::{self, Write};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// How many received messages a session counts locally before adding them to
/// the shared counters.
pub const FLUSH_EVERY: u64 = 64;

type Labeled<V, M = Counter> = Family<[(&'static str, V); 1], M>;

/// A metric label's values as an enum, each spelled as the exposition and
/// the logs show it, so a label is matched by type and never mistyped.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

labels! {
    /// The HTTP version a request or WebSocket came over: a metric label and
    /// a log field, by its ALPN name (RFC 7301), which is what people search
    /// logs for.
    Protocol {
        Http11 => "http/1.1",
        H2 => "h2",
    }
}

labels! {
    /// Why a request or connection got no answer it wanted: the `reason` of
    /// `wsecho_handshake_failures_total`.
    Refused {
        /// Not a GET.
        Method => "method",
        /// An upgrade over HTTP/1.0.
        HttpVersion => "http_version",
        /// No `Connection: Upgrade`.
        Connection => "connection",
        /// `Sec-WebSocket-Version` missing or not 13.
        Version => "version",
        Key => "key",
        Origin => "origin",
        /// `--max-connections` reached.
        MaxConnections => "max_connections",
        /// The server is shutting down.
        Draining => "draining",
        RoomName => "room_name",
        RoomFull => "room_full",
        /// `--max-rooms` reached.
        MaxRooms => "max_rooms",
        /// The TLS handshake failed.
        Tls => "tls",
        /// No TLS handshake or request head in time (slowloris).
        Timeout => "timeout",
        HeaderTooLarge => "header_too_large",
        /// Not HTTP.
        BadRequest => "bad_request",
    }
}

labels! {
    /// Which limit stopped something: the `limit` of
    /// `wsecho_limit_hits_total`.
    Limit {
        /// `--max-connections`, at the handshake.
        Connections => "connections",
        /// `--max-rooms`.
        Rooms => "rooms",
        /// `--max-room-peers`.
        RoomPeers => "room_peers",
        /// `--max-ping-rate` (1008 past it).
        PingRate => "ping_rate",
        /// `--max-frame-size`.
        FrameSize => "frame_size",
        /// `--max-message-size`.
        MessageSize => "message_size",
        /// `/.http` requests answered at once (503 past it).
        HttpEcho => "http_echo",
        /// The Redis publish queue was full: the message stayed local.
        RedisQueue => "redis_queue",
        /// Redis refused a publish.
        RedisPublishFailed => "redis_publish_failed",
    }
}

pub struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    pub connections: Counter,
    /// Connections that negotiated permessage-deflate.
    pub deflate_connections: Counter,
    /// Compressed messages' payload bytes: received as sent on the wire,
    /// received once inflated, echoed before and after compression.
    deflate_received_compressed: Counter,
    deflate_received_inflated: Counter,
    deflate_sent_uncompressed: Counter,
    deflate_sent_compressed: Counter,
    websockets: Labeled<Protocol>,
    websockets_open: Labeled<Protocol, Gauge>,
    http_requests: Labeled<Protocol>,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    handshake_failures: Labeled<Refused>,
    closes: Labeled<u16>,
    limit_hits: Labeled<Limit>,
    pub rooms: Gauge,
    pub room_peers: Gauge,
    pub slow_consumers: Counter,
    pub redis_up: Gauge,
    resident_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wsecho");
        let r = &mut registry;
        Metrics {
            connections_open: registered(r, "connections_open", "WebSocket connections open now"),
            connections: registered(r, "connections", "WebSocket connections accepted"),
            deflate_connections: registered(
                r,
                "deflate_connections",
                "WebSocket connections that negotiated permessage-deflate",
            ),
            deflate_received_compressed: registered(
                r,
                "deflate_received_compressed_bytes",
                "Payload bytes of compressed messages received, as they came (compressed)",
            ),
            deflate_received_inflated: registered(
                r,
                "deflate_received_inflated_bytes",
                "Payload bytes of compressed messages received, once inflated",
            ),
            deflate_sent_uncompressed: registered(
                r,
                "deflate_sent_uncompressed_bytes",
                "Payload bytes of compressed messages sent, before compression",
            ),
            deflate_sent_compressed: registered(
                r,
                "deflate_sent_compressed_bytes",
                "Payload bytes of compressed messages sent, after compression",
            ),
            websockets: registered(
                r,
                "websockets",
                "WebSocket connections accepted, by the HTTP version they came over",
            ),
            websockets_open: registered(
                r,
                "websockets_open",
                "WebSocket connections open now, by the HTTP version they came over",
            ),
            http_requests: registered(
                r,
                "http_requests",
                "Requests answered without a WebSocket, by HTTP version",
            ),
            messages_in: registered(r, "messages_received", "Data messages received"),
            messages_out: registered(r, "messages_sent", "Data messages sent"),
            bytes_in: registered(
                r,
                "received_bytes",
                "Payload bytes received (inflated, when compressed)",
            ),
            bytes_out: registered(r, "sent_bytes", "Payload bytes sent"),
            handshake_failures: registered(r, "handshake_failures", "Refused handshakes by reason"),
            closes: registered(
                r,
                "closes",
                "Closed WebSockets by close code (1006: no close frame)",
            ),
            limit_hits: registered(
                r,
                "limit_hits",
                "Requests or connections stopped by a limit",
            ),
            rooms: registered(r, "rooms", "Chat rooms with at least one local peer"),
            room_peers: registered(r, "room_peers", "Peers in chat rooms"),
            slow_consumers: registered(
                r,
                "slow_consumers_dropped",
                "Chat peers closed for not keeping up",
            ),
            redis_up: registered(r, "redis_up", "1 while the Redis room link is connected"),
            resident_bytes: registered(r, "process_resident_memory_bytes", "Resident set size"),
            registry,
        }
    }
}

/// A new metric, registered under `name`: the registry keeps a handle, the
/// caller the other.
fn registered<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    r.register(name, help, metric.clone());
    metric
}

/// Per-session counters, added to the global metrics as the session goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            messages_in: self.messages_in - o.messages_in,
            messages_out: self.messages_out - o.messages_out,
            bytes_in: self.bytes_in - o.bytes_in,
            bytes_out: self.bytes_out - o.bytes_out,
        }
    }
}

/// Payload bytes of compressed messages, each way, before and after.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeflateBytes {
    pub received_compressed: u64,
    pub received_inflated: u64,
    pub sent_uncompressed: u64,
    pub sent_compressed: u64,
}

impl Metrics {
    pub fn handshake_failed(&self, reason: Refused) {
        self.handshake_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// A WebSocket over `protocol` opened (`open`) or ended.
    pub fn websocket(&self, protocol: Protocol, open: bool) {
        let key = [("protocol", protocol)];
        if open {
            self.websockets.get_or_create(&key).inc();
            self.websockets_open.get_or_create(&key).inc();
        } else {
            self.websockets_open.get_or_create(&key).dec();
        }
    }

    pub fn http_request(&self, protocol: Protocol) {
        self.http_requests
            .get_or_create(&[("protocol", protocol)])
            .inc();
    }

    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&[("code", code)]).inc();
    }

    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits.get_or_create(&[("limit", limit)]).inc();
    }

    /// Adds what a session counted since its last flush.
    pub fn add(&self, delta: Counts) {
        self.messages_in.inc_by(delta.messages_in);
        self.messages_out.inc_by(delta.messages_out);
        self.bytes_in.inc_by(delta.bytes_in);
        self.bytes_out.inc_by(delta.bytes_out);
    }

    /// Adds what a compressing session counted since its last flush.
    pub fn add_deflate(&self, d: DeflateBytes) {
        self.deflate_received_compressed
            .inc_by(d.received_compressed);
        self.deflate_received_inflated.inc_by(d.received_inflated);
        self.deflate_sent_uncompressed.inc_by(d.sent_uncompressed);
        self.deflate_sent_compressed.inc_by(d.sent_compressed);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.resident_bytes
            .set(resident_bytes().unwrap_or(0) as i64);
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// This process's RSS, from `/proc/self/statm` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
