//! What was run: the load, the payload, and the protocol the WebSockets
//! were opened over.

use serde::{Deserialize, Serialize};

use crate::cli::Segment;
use crate::profile::Stage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub connections: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub size: usize,
    pub text: bool,
    /// Closed loop: messages outstanding per connection (null: open loop).
    pub in_flight: Option<u64>,
    /// Open loop (and chat): messages per second in total.
    pub rate: Option<u64>,
    pub connect_rate: Option<u64>,
    pub threads: usize,
    pub rooms: Option<u64>,
    pub timeout_s: f64,
    /// --stages (connections of the whole load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<Stage>>,
    /// --rate-stages (messages/s of the whole load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_stages: Option<Vec<Stage>>,
    /// --segment: this run's share of the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,
    /// What the WebSockets were opened over (files from before --http2:
    /// HTTP/1.1).
    #[serde(default)]
    pub protocol: Protocol,
    /// --http2: WebSockets per TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams_per_connection: Option<u64>,
    /// --payload (files from before it: filler).
    #[serde(default)]
    pub payload: crate::cli::PayloadKind,
    /// --verify (files from before it: full).
    #[serde(default)]
    pub verify: crate::cli::Verify,
    /// --pace-slack, where sends are scheduled (open loop, chat); files from
    /// before it: none (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace_slack_us: Option<u64>,
}

/// The HTTP version the WebSockets were opened with, by its ALPN name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// The RFC 6455 upgrade, one WebSocket per connection.
    #[default]
    #[serde(rename = "http/1.1")]
    Http1,
    /// `--http2`: extended CONNECT (RFC 8441).
    #[serde(rename = "h2")]
    H2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1.1",
            Protocol::H2 => "h2",
        }
    }
}
