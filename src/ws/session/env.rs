//! What a session is given (its limits, keep-alive and the server's shared
//! parts) and what it gives back (how it ended, what it counted).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::super::limits::Limits;
use super::super::sweep::Sweep;
use crate::deflate::DeflatePolicy;
use crate::metrics::Metrics;

/// Keep-alive settings: a tick every `interval`; a ping after every
/// `ping_ticks` silent ticks (0: never); a silent (or write-stalled) peer
/// is cut off after `limit_ticks`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub interval: Duration,
    pub limit_ticks: u32,
    pub ping_ticks: u32,
}

/// What every session of a server shares.
pub struct Env {
    pub limits: Limits,
    pub liveness: Option<Liveness>,
    pub metrics: Arc<Metrics>,
    pub sweep: Arc<Sweep>,
    /// `--deflate`: the compressor's level and memLevel.
    pub deflate: DeflatePolicy,
}

/// How a session ended: what the connection log line and metrics report.
#[derive(Debug)]
pub enum End {
    /// The peer closed (with this code, if any) and we answered.
    PeerClosed(Option<u16>),
    /// We closed with this code: a protocol error, a limit, or going away.
    Closed { code: u16, reason: &'static str },
    /// The peer stopped reading; no close frame could be written.
    Stalled,
    /// The connection dropped without a close handshake.
    Dropped(io::ErrorKind),
}

impl End {
    /// The close code for logs and metrics; 1006 when there was none (§7.1.5).
    pub fn code(&self) -> u16 {
        match self {
            End::PeerClosed(c) => c.unwrap_or(1005),
            End::Closed { code, .. } => *code,
            End::Stalled | End::Dropped(_) => 1006,
        }
    }
}
