//! `--deflate` in the report: the offer, the server's answer and the
//! compression ratio, added up when runs are merged.

use serde::{Deserialize, Serialize};

/// `--deflate` (permessage-deflate): what was offered, what the server
/// answered, and payload bytes before and after compression (whole run,
/// warm-up and drain included: a ratio, not a rate).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deflate {
    pub offered: String,
    pub outcome: DeflateOutcome,
    /// Connections on which the server agreed / answered without it.
    pub negotiated: u64,
    pub declined: u64,
    /// The server's parameters (the first agreement seen).
    pub answer: Option<String>,
    pub plain_bytes_sent: u64,
    pub wire_bytes_sent: u64,
    pub plain_bytes_received: u64,
    pub wire_bytes_received: u64,
}

/// Whether the server agreed to `--deflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeflateOutcome {
    /// On every connection opened.
    Negotiated,
    /// On none: the run was uncompressed.
    Declined,
    /// On some (several servers behind one address, or merged runs).
    Mixed,
    /// No connection opened.
    Unknown,
}

impl Deflate {
    pub fn of(offered: &str, c: &crate::deflate::Counts) -> Deflate {
        let mut d = Deflate {
            offered: offered.to_owned(),
            outcome: DeflateOutcome::Unknown,
            negotiated: c.negotiated,
            declined: c.declined,
            answer: c.answer.clone(),
            plain_bytes_sent: c.bytes.plain_sent,
            wire_bytes_sent: c.bytes.wire_sent,
            plain_bytes_received: c.bytes.plain_received,
            wire_bytes_received: c.bytes.wire_received,
        };
        d.judge();
        d
    }

    /// Adds another run's figures (merge).
    pub fn add(&mut self, o: &Deflate) {
        self.negotiated += o.negotiated;
        self.declined += o.declined;
        if self.answer.is_none() {
            self.answer.clone_from(&o.answer);
        }
        self.plain_bytes_sent += o.plain_bytes_sent;
        self.wire_bytes_sent += o.wire_bytes_sent;
        self.plain_bytes_received += o.plain_bytes_received;
        self.wire_bytes_received += o.wire_bytes_received;
        self.judge();
    }

    fn judge(&mut self) {
        self.outcome = match (self.negotiated, self.declined) {
            (0, 0) => DeflateOutcome::Unknown,
            (_, 0) => DeflateOutcome::Negotiated,
            (0, _) => DeflateOutcome::Declined,
            _ => DeflateOutcome::Mixed,
        };
    }
}
