//! What `--deflate` did: connections that negotiated or were declined, and
//! payload bytes before and after compression, for the live line and the report.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Negotiated;

/// Connections that negotiated, or were declined, in this process: the
/// live line's figure (the report counts per thread, in `Stats`).
pub static NEGOTIATED: AtomicU64 = AtomicU64::new(0);
pub static DECLINED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's payload bytes before and after compression, each way:
    /// counted here so the send and receive paths touch no shared stats.
    static BYTES: Cell<Bytes> = const { Cell::new(Bytes::ZERO) };
}

/// Payload bytes before (`plain`) and after (`wire`) compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes {
    pub plain_sent: u64,
    pub wire_sent: u64,
    pub plain_received: u64,
    pub wire_received: u64,
}

impl Bytes {
    const ZERO: Bytes = Bytes {
        plain_sent: 0,
        wire_sent: 0,
        plain_received: 0,
        wire_received: 0,
    };

    /// This thread's totals so far, reset.
    pub fn take_thread() -> Bytes {
        BYTES.with(|b| b.replace(Bytes::ZERO))
    }

    pub fn add(&mut self, o: &Bytes) {
        self.plain_sent += o.plain_sent;
        self.wire_sent += o.wire_sent;
        self.plain_received += o.plain_received;
        self.wire_received += o.wire_received;
    }
}

pub(super) fn count(f: impl FnOnce(&mut Bytes)) {
    BYTES.with(|b| {
        let mut v = b.get();
        f(&mut v);
        b.set(v);
    });
}

/// One thread's (then the run's) `--deflate` figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections whose server agreed to permessage-deflate.
    pub negotiated: u64,
    /// Connections whose server answered without it.
    pub declined: u64,
    /// The first agreement seen, as the server worded its parameters.
    pub answer: Option<String>,
    pub bytes: Bytes,
}

impl Counts {
    /// A connection opened with the offer; `got` is the server's answer.
    pub fn opened(&mut self, got: Option<&Negotiated>) {
        match got {
            Some(p) => {
                self.negotiated += 1;
                NEGOTIATED.fetch_add(1, Ordering::Relaxed);
                self.answer.get_or_insert_with(|| p.to_string());
            }
            None => {
                self.declined += 1;
                DECLINED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.negotiated += o.negotiated;
        self.declined += o.declined;
        if self.answer.is_none() {
            self.answer.clone_from(&o.answer);
        }
        self.bytes.add(&o.bytes);
    }
}
