//! Per-thread figures: counters and HDR histograms, merged across threads
//! at the end and, for the live line, once a second.
//!
//! Each worker thread owns one [`Stats`] (behind an `Rc<RefCell>` its
//! connection tasks share): recording a message touches no atomic, no lock
//! and no other core's cache line. The only cross-thread traffic is one
//! [`Tick`] per thread per second and the final `Stats`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub type Hist = Histogram<u64>;

/// Largest latency tracked: one hour, in µs. Longer values are clamped.
pub const MAX_US: u64 = 3_600_000_000;

/// A histogram in µs with 3 significant digits (≈190 KiB of counts).
pub fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant bounds are valid")
}

/// Errors by kind, over the whole run (warm-up and drain included: a bad
/// echo is bad whenever it comes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub corrupted: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub late: u64,
    pub connect: u64,
    pub handshake: u64,
    pub closed: u64,
    pub protocol: u64,
    pub self_delivery: u64,
}

/// One kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    Corrupted,
    Lost,
    Duplicated,
    Reordered,
    Late,
    Connect,
    Handshake,
    Closed,
    Protocol,
    SelfDelivery,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Corrupted,
        ErrorKind::Lost,
        ErrorKind::Duplicated,
        ErrorKind::Reordered,
        ErrorKind::Late,
        ErrorKind::Connect,
        ErrorKind::Handshake,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::SelfDelivery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::Lost => "lost",
            ErrorKind::Duplicated => "duplicated",
            ErrorKind::Reordered => "reordered",
            ErrorKind::Late => "late",
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::SelfDelivery => "self_delivery",
        }
    }
}

impl Errors {
    pub fn get_mut(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Corrupted => &mut self.corrupted,
            ErrorKind::Lost => &mut self.lost,
            ErrorKind::Duplicated => &mut self.duplicated,
            ErrorKind::Reordered => &mut self.reordered,
            ErrorKind::Late => &mut self.late,
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Handshake => &mut self.handshake,
            ErrorKind::Closed => &mut self.closed,
            ErrorKind::Protocol => &mut self.protocol,
            ErrorKind::SelfDelivery => &mut self.self_delivery,
        }
    }

    pub fn get(&self, kind: ErrorKind) -> u64 {
        let mut copy = *self;
        *copy.get_mut(kind)
    }

    pub fn total(&self) -> u64 {
        ErrorKind::ALL.iter().map(|k| self.get(*k)).sum()
    }

    pub fn add(&mut self, other: &Errors) {
        for k in ErrorKind::ALL {
            *self.get_mut(k) += other.get(k);
        }
    }
}

/// What one thread measured. Counters and latencies cover the counted
/// window only; errors and close codes cover the whole run.
#[derive(Clone)]
pub struct Stats {
    pub sent: u64,
    pub received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Completed open-handshake-echo-close cycles (connect scenario).
    pub cycles: u64,
    pub latency: Hist,
    /// Open loop: from the actual rather than the intended send time.
    pub latency_uncorrected: Hist,
    pub connect: Hist,
    pub tls: Hist,
    pub handshake: Hist,
    pub errors: Errors,
    /// The first message of each error kind, for the summary.
    pub first_errors: BTreeMap<ErrorKind, String>,
    pub close_codes: BTreeMap<u16, u64>,
    pub opened: u64,
    /// Connections open now (a gauge, for the live line).
    pub open: u64,
    /// Unsolicited first messages (a greeting some echo servers send).
    pub greetings: u64,
    /// Idle: connections still up at the end of the window.
    pub held: u64,
    /// Chat: deliveries the messages sent in the window should make.
    pub expected_deliveries: u64,
    pub interval: Interval,
}

/// What the live line needs since the last tick.
#[derive(Clone)]
pub struct Interval {
    pub received: u64,
    pub bytes: u64,
    pub latency: Hist,
}

/// One thread's second, sent to the main thread.
pub struct Tick {
    pub index: u64,
    pub received: u64,
    pub bytes: u64,
    pub latency: Hist,
    pub errors: u64,
    pub open: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: 0,
            received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            cycles: 0,
            latency: new_hist(),
            latency_uncorrected: new_hist(),
            connect: new_hist(),
            tls: new_hist(),
            handshake: new_hist(),
            errors: Errors::default(),
            first_errors: BTreeMap::new(),
            close_codes: BTreeMap::new(),
            opened: 0,
            open: 0,
            greetings: 0,
            held: 0,
            expected_deliveries: 0,
            interval: Interval {
                received: 0,
                bytes: 0,
                latency: new_hist(),
            },
        }
    }
}

impl Stats {
    /// A message sent at `now` (counted when inside the window).
    #[inline]
    pub fn on_sent(&mut self, in_window: bool, bytes: usize) {
        if in_window {
            self.sent += 1;
            self.bytes_sent += bytes as u64;
        }
    }

    /// A verified echo or delivery, with its latencies in µs.
    #[inline]
    pub fn on_received(
        &mut self,
        in_window: bool,
        bytes: usize,
        latency_us: u64,
        uncorrected_us: Option<u64>,
    ) {
        self.interval.received += 1;
        self.interval.bytes += bytes as u64;
        self.interval.latency.saturating_record(latency_us);
        if in_window {
            self.received += 1;
            self.bytes_received += bytes as u64;
            self.latency.saturating_record(latency_us);
            if let Some(u) = uncorrected_us {
                self.latency_uncorrected.saturating_record(u);
            }
        }
    }

    /// Counts `n` errors of `kind`; `detail` is kept for the first one.
    pub fn error(&mut self, kind: ErrorKind, n: u64, detail: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        *self.errors.get_mut(kind) += n;
        self.first_errors.entry(kind).or_insert_with(detail);
    }

    /// A late echo was counted lost when it timed out; it is late instead.
    pub fn late(&mut self) {
        self.errors.lost = self.errors.lost.saturating_sub(1);
        self.error(ErrorKind::Late, 1, || {
            "an echo came back after the timeout".into()
        });
    }

    pub fn close_code(&mut self, code: u16) {
        *self.close_codes.entry(code).or_default() += 1;
    }

    /// The live line's second: hands over the interval and starts a new one.
    pub fn take_tick(&mut self, index: u64) -> Tick {
        let latency = std::mem::replace(&mut self.interval.latency, new_hist());
        let tick = Tick {
            index,
            received: self.interval.received,
            bytes: self.interval.bytes,
            latency,
            errors: self.errors.total(),
            open: self.open,
        };
        self.interval.received = 0;
        self.interval.bytes = 0;
        tick
    }

    /// Adds another thread's figures to these.
    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.received += other.received;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.cycles += other.cycles;
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.latency_uncorrected.add(&other.latency_uncorrected);
        let _ = self.connect.add(&other.connect);
        let _ = self.tls.add(&other.tls);
        let _ = self.handshake.add(&other.handshake);
        self.errors.add(&other.errors);
        for (k, v) in &other.first_errors {
            self.first_errors.entry(*k).or_insert_with(|| v.clone());
        }
        for (code, n) in &other.close_codes {
            *self.close_codes.entry(*code).or_default() += n;
        }
        self.opened += other.opened;
        self.open += other.open;
        self.greetings += other.greetings;
        self.held += other.held;
        self.expected_deliveries += other.expected_deliveries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_figures_and_errors_merge() {
        let mut a = Stats::default();
        a.on_sent(true, 20);
        a.on_received(true, 20, 50, None);
        a.on_received(false, 20, 5000, None);
        a.error(ErrorKind::Lost, 2, || "first".into());
        a.late();
        let mut b = Stats::default();
        b.on_received(true, 20, 70, Some(60));
        b.error(ErrorKind::Lost, 1, || "second".into());
        b.close_code(1000);
        a.merge(&b);
        assert_eq!((a.sent, a.received, a.bytes_received), (1, 2, 40));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.latency.max(), 70);
        assert_eq!((a.errors.lost, a.errors.late, a.errors.total()), (2, 1, 3));
        assert_eq!(a.first_errors[&ErrorKind::Lost], "first");
        assert_eq!(a.close_codes[&1000], 1);
        let tick = a.take_tick(1);
        assert_eq!((tick.received, tick.latency.len()), (2, 2));
        assert_eq!(a.interval.received, 0);
    }
}
