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
use prometheus_client::registry::Registry;

use crate::ws::Counts;

/// How many received messages a session counts locally before adding them to
/// the shared counters.
pub const FLUSH_EVERY: u64 = 64;

type Labeled<V, M = Counter> = Family<[(&'static str, V); 1], M>;

/// The HTTP version a request or WebSocket came over: a metric label and a
/// log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http11,
    H2,
}

impl Protocol {
    /// The ALPN names (RFC 7301), which is what people search logs for.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http11 => "http/1.1",
            Protocol::H2 => "h2",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(self.as_str())
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
    handshake_failures: Labeled<&'static str>,
    closes: Labeled<u16>,
    limit_hits: Labeled<&'static str>,
    pub rooms: Gauge,
    pub room_peers: Gauge,
    pub slow_consumers: Counter,
    pub redis_up: Gauge,
    resident_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("wsecho"),
            connections_open: Gauge::default(),
            connections: Counter::default(),
            deflate_connections: Counter::default(),
            deflate_received_compressed: Counter::default(),
            deflate_received_inflated: Counter::default(),
            deflate_sent_uncompressed: Counter::default(),
            deflate_sent_compressed: Counter::default(),
            websockets: Family::default(),
            websockets_open: Family::default(),
            http_requests: Family::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            handshake_failures: Family::default(),
            closes: Family::default(),
            limit_hits: Family::default(),
            rooms: Gauge::default(),
            room_peers: Gauge::default(),
            slow_consumers: Counter::default(),
            redis_up: Gauge::default(),
            resident_bytes: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "connections_open",
            "WebSocket connections open now",
            m.connections_open.clone(),
        );
        r.register(
            "connections",
            "WebSocket connections accepted",
            m.connections.clone(),
        );
        r.register(
            "deflate_connections",
            "WebSocket connections that negotiated permessage-deflate",
            m.deflate_connections.clone(),
        );
        r.register(
            "deflate_received_compressed_bytes",
            "Payload bytes of compressed messages received, as they came (compressed)",
            m.deflate_received_compressed.clone(),
        );
        r.register(
            "deflate_received_inflated_bytes",
            "Payload bytes of compressed messages received, once inflated",
            m.deflate_received_inflated.clone(),
        );
        r.register(
            "deflate_sent_uncompressed_bytes",
            "Payload bytes of compressed messages sent, before compression",
            m.deflate_sent_uncompressed.clone(),
        );
        r.register(
            "deflate_sent_compressed_bytes",
            "Payload bytes of compressed messages sent, after compression",
            m.deflate_sent_compressed.clone(),
        );
        r.register(
            "websockets",
            "WebSocket connections accepted, by the HTTP version they came over",
            m.websockets.clone(),
        );
        r.register(
            "websockets_open",
            "WebSocket connections open now, by the HTTP version they came over",
            m.websockets_open.clone(),
        );
        r.register(
            "http_requests",
            "Requests answered without a WebSocket, by HTTP version",
            m.http_requests.clone(),
        );
        r.register(
            "messages_received",
            "Data messages received",
            m.messages_in.clone(),
        );
        r.register(
            "messages_sent",
            "Data messages sent",
            m.messages_out.clone(),
        );
        r.register(
            "received_bytes",
            "Payload bytes received (inflated, when compressed)",
            m.bytes_in.clone(),
        );
        r.register("sent_bytes", "Payload bytes sent", m.bytes_out.clone());
        r.register(
            "handshake_failures",
            "Refused handshakes by reason",
            m.handshake_failures.clone(),
        );
        r.register(
            "closes",
            "Closed WebSockets by close code (1006: no close frame)",
            m.closes.clone(),
        );
        r.register(
            "limit_hits",
            "Requests or connections stopped by a limit",
            m.limit_hits.clone(),
        );
        r.register(
            "rooms",
            "Chat rooms with at least one local peer",
            m.rooms.clone(),
        );
        r.register("room_peers", "Peers in chat rooms", m.room_peers.clone());
        r.register(
            "slow_consumers_dropped",
            "Chat peers closed for not keeping up",
            m.slow_consumers.clone(),
        );
        r.register(
            "redis_up",
            "1 while the Redis room link is connected",
            m.redis_up.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident set size",
            m.resident_bytes.clone(),
        );
        m
    }
}

impl Metrics {
    pub fn handshake_failed(&self, reason: &'static str) {
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

    pub fn limit_hit(&self, limit: &'static str) {
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
    pub fn add_deflate(&self, d: crate::ws::DeflateBytes) {
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
