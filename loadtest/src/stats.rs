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

/// Declares every error kind once, with the name it goes by in the JSON,
/// the CSV and the text summary; everything else (the counters, their
/// serialization, the lists) is derived from this.
macro_rules! error_kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal),+ $(,)?) => {
        /// One kind of error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ErrorKind {
            $($(#[$doc])* #[serde(rename = $name)] $kind),+
        }

        impl ErrorKind {
            pub const ALL: &[ErrorKind] = &[$(ErrorKind::$kind),+];

            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $name),+
                }
            }
        }
    };
}

error_kinds! {
    /// An echo that differs from what was sent (opcode, length, header, filler).
    Corrupted = "corrupted",
    /// No echo within `--timeout`, or none by the end.
    Lost = "lost",
    /// Echoed twice.
    Duplicated = "duplicated",
    /// Came back after the echo of a later message.
    Reordered = "reordered",
    /// Came back after it had been counted lost.
    Late = "late",
    /// TCP or TLS failed.
    Connect = "connect",
    /// The upgrade was refused or its `Sec-WebSocket-Accept` was wrong.
    Handshake = "handshake",
    /// The server closed or dropped a connection before we did.
    Closed = "closed",
    /// A frame no server may send.
    Protocol = "protocol",
    /// Chat: a peer received its own message.
    SelfDelivery = "self_delivery",
}

impl ErrorKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// Errors by kind, over the whole run (warm-up and drain included: a bad
/// echo is bad whenever it comes). Serialized as `{kind: count}` with every
/// kind present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors([u64; ErrorKind::ALL.len()]);

impl Errors {
    pub fn get_mut(&mut self, kind: ErrorKind) -> &mut u64 {
        &mut self.0[kind.index()]
    }

    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn add(&mut self, other: &Errors) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// The kinds that occurred, with their counts, in declaration order.
    pub fn nonzero(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        ErrorKind::ALL
            .iter()
            .map(|k| (*k, self.get(*k)))
            .filter(|(_, n)| *n > 0)
    }
}

impl Serialize for Errors {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(ErrorKind::ALL.len()))?;
        for k in ErrorKind::ALL {
            map.serialize_entry(k, &self.get(*k))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Errors {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<ErrorKind, u64>::deserialize(d)?;
        let mut errors = Errors::default();
        for (k, n) in map {
            *errors.get_mut(k) = n;
        }
        Ok(errors)
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
    /// `--deflate`: what was negotiated, bytes before and after.
    pub deflate: crate::deflate::Counts,
    pub interval: Interval,
}

/// What happened since the last tick (the live line, the time series).
#[derive(Clone)]
pub struct Interval {
    pub sent: u64,
    pub received: u64,
    pub bytes: u64,
    pub latency: Hist,
    pub errors: Errors,
    /// Most connections open at once.
    pub open_max: u64,
}

/// One thread's second, sent to the main thread.
pub struct Tick {
    /// The second it covers, counted from the start of the window
    /// (negative in the warm-up).
    pub index: i64,
    pub sent: u64,
    pub received: u64,
    pub bytes: u64,
    pub latency: Hist,
    /// Errors in this second.
    pub errors: Errors,
    /// Errors so far, for the live line.
    pub errors_total: u64,
    /// Most connections open at once in this second (closing ones at the
    /// end of the window still count for it).
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
            deflate: Default::default(),
            interval: Interval {
                sent: 0,
                received: 0,
                bytes: 0,
                latency: new_hist(),
                errors: Errors::default(),
                open_max: 0,
            },
        }
    }
}

impl Stats {
    /// A message sent at `now` (counted when inside the window).
    #[inline]
    pub fn on_sent(&mut self, in_window: bool, bytes: usize) {
        self.interval.sent += 1;
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
        *self.interval.errors.get_mut(kind) += n;
        self.first_errors.entry(kind).or_insert_with(detail);
    }

    /// A late echo was counted lost when it timed out; it is late instead.
    pub fn late(&mut self) {
        for errors in [&mut self.errors, &mut self.interval.errors] {
            let lost = errors.get_mut(ErrorKind::Lost);
            *lost = lost.saturating_sub(1);
        }
        self.error(ErrorKind::Late, 1, || {
            "an echo came back after the timeout".into()
        });
    }

    pub fn close_code(&mut self, code: u16) {
        *self.close_codes.entry(code).or_default() += 1;
    }

    /// The live line's second: hands over the interval and starts a new one.
    pub fn take_tick(&mut self, index: i64) -> Tick {
        let latency = std::mem::replace(&mut self.interval.latency, new_hist());
        let i = &mut self.interval;
        let tick = Tick {
            index,
            sent: std::mem::take(&mut i.sent),
            received: std::mem::take(&mut i.received),
            bytes: std::mem::take(&mut i.bytes),
            latency,
            errors: std::mem::take(&mut i.errors),
            errors_total: self.errors.total(),
            open: i.open_max.max(self.open),
        };
        i.open_max = self.open;
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
        self.deflate.add(&other.deflate);
        self.held += other.held;
        self.expected_deliveries += other.expected_deliveries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialize_every_kind_by_name_and_read_back() {
        let mut e = Errors::default();
        *e.get_mut(ErrorKind::SelfDelivery) = 3;
        let json = serde_json::to_value(e).unwrap();
        let map = json.as_object().unwrap();
        assert_eq!(map.len(), ErrorKind::ALL.len());
        assert_eq!(map["self_delivery"], 3);
        assert_eq!(map["lost"], 0);
        let back: Errors = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert!(serde_json::from_str::<Errors>(r#"{"nonsense": 1}"#).is_err());
        for k in ErrorKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
    }

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
        let e = a.errors;
        assert_eq!(
            (e.get(ErrorKind::Lost), e.get(ErrorKind::Late), e.total()),
            (2, 1, 3)
        );
        assert_eq!(a.first_errors[&ErrorKind::Lost], "first");
        assert_eq!(a.close_codes[&1000], 1);
        let tick = a.take_tick(1);
        assert_eq!((tick.received, tick.latency.len()), (2, 2));
        assert_eq!(a.interval.received, 0);
    }
}
