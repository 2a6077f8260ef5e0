//! Per-connection sequence bookkeeping: when each outstanding message was
//! meant to go and went, and what each echo turns out to be.
//!
//! Kinds, each counted once: an echo of a message already echoed is
//! *duplicated*; one that arrives after the echo of a later message is
//! *reordered*; a message not echoed within the timeout is *lost*, and if
//! its echo still turns up it is *late* instead (no longer lost). Anything
//! outstanding at the end of the drain is lost.
//!
//! A ring indexed by `seq & mask`, so the send path does no allocation: it
//! starts at twice the messages a connection keeps in flight and doubles
//! only while a lost message holds its oldest slot, up to [`MAX_WINDOW`];
//! past that the oldest message is given up as lost. A ring of up to
//! `INLINE` slots lives inside the window itself: at one message in
//! flight and 1000 connections, a ring on the heap was one more cache miss
//! per echo (perf at 1000 x 20 B).

/// Most messages one connection tracks at once.
pub const MAX_WINDOW: usize = 1 << 16;
/// Slots kept inline, without an allocation of their own.
const INLINE: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Outstanding,
    Received,
    Expired,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    intended_ns: u64,
    sent_ns: u64,
    state: State,
}

const FREE: Slot = Slot {
    intended_ns: 0,
    sent_ns: 0,
    state: State::Free,
};

/// What an echo turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// First echo of an outstanding message.
    Fresh {
        intended_ns: u64,
        sent_ns: u64,
        reordered: bool,
    },
    Duplicate,
    /// Echo of a message already counted lost.
    Late,
    /// A sequence number never sent.
    Unknown,
}

pub struct Window {
    /// The ring while it has at most [`INLINE`] slots.
    inline: [Slot; INLINE],
    /// The ring once larger; empty until then.
    slots: Vec<Slot>,
    /// Slots in the ring (a power of two).
    cap: usize,
    /// Oldest seq not yet echoed (or given up at the window's limit).
    low: u64,
    next: u64,
    /// No outstanding message below this: where expiry scans from.
    scan: u64,
    max_echoed: Option<u64>,
    outstanding: u32,
}

impl Window {
    pub fn new(in_flight: usize) -> Window {
        let cap = (2 * in_flight)
            .clamp(INLINE, MAX_WINDOW)
            .next_power_of_two();
        Window {
            inline: [FREE; INLINE],
            slots: if cap > INLINE {
                vec![FREE; cap]
            } else {
                Vec::new()
            },
            cap,
            low: 0,
            next: 0,
            scan: 0,
            max_echoed: None,
            outstanding: 0,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Messages sent and neither echoed nor given up.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }

    fn slot(&mut self, seq: u64) -> &mut Slot {
        let i = seq as usize & (self.cap - 1);
        if self.cap <= INLINE {
            &mut self.inline[i]
        } else {
            &mut self.slots[i]
        }
    }

    /// Registers the next message. Returns its seq and how many older
    /// messages had to be given up as lost to make room.
    pub fn push(&mut self, intended_ns: u64, sent_ns: u64) -> (u64, u64) {
        let mut lost = 0;
        if (self.next - self.low) as usize == self.cap {
            if self.cap < MAX_WINDOW {
                self.grow();
            } else {
                let low = self.low;
                let oldest = std::mem::replace(self.slot(low), FREE);
                if oldest.state == State::Outstanding {
                    self.outstanding -= 1;
                    lost = 1;
                }
                self.low += 1;
                self.advance_low();
            }
        }
        let seq = self.next;
        *self.slot(seq) = Slot {
            intended_ns,
            sent_ns,
            state: State::Outstanding,
        };
        self.next += 1;
        self.outstanding += 1;
        (seq, lost)
    }

    fn grow(&mut self) {
        let mut bigger = vec![FREE; self.cap * 2];
        let mask = bigger.len() - 1;
        for seq in self.low..self.next {
            bigger[seq as usize & mask] = *self.slot(seq);
        }
        self.slots = bigger;
        self.cap *= 2;
    }

    fn advance_low(&mut self) {
        while self.low < self.next {
            let low = self.low;
            let slot = self.slot(low);
            if slot.state != State::Received {
                break;
            }
            *slot = FREE;
            self.low += 1;
        }
        self.scan = self.scan.max(self.low);
    }

    /// The full sequence number for the `bits` low bits a small payload
    /// carries: the one in the window they match. With no bits at all,
    /// echoes are taken to come back in order.
    pub fn resolve(&self, low_bits: u64, bits: u32) -> u64 {
        if bits >= 64 {
            return low_bits;
        }
        if bits == 0 {
            return self.low;
        }
        let modulus = 1u64 << bits;
        let candidate = self.low + (low_bits.wrapping_sub(self.low) & (modulus - 1));
        if candidate >= self.next && candidate >= modulus {
            candidate - modulus
        } else {
            candidate
        }
    }

    /// Classifies the echo of `seq` and marks it received.
    pub fn echo(&mut self, seq: u64) -> Echo {
        if seq >= self.next {
            return Echo::Unknown;
        }
        if seq < self.low {
            return Echo::Duplicate;
        }
        let max_echoed = self.max_echoed;
        let slot = self.slot(seq);
        let result = match slot.state {
            State::Received | State::Free => return Echo::Duplicate,
            State::Expired => Echo::Late,
            State::Outstanding => Echo::Fresh {
                intended_ns: slot.intended_ns,
                sent_ns: slot.sent_ns,
                reordered: max_echoed.is_some_and(|m| seq < m),
            },
        };
        slot.state = State::Received;
        if matches!(result, Echo::Fresh { .. }) {
            self.outstanding -= 1;
        }
        self.max_echoed = Some(max_echoed.map_or(seq, |m| m.max(seq)));
        self.advance_low();
        result
    }

    /// Gives up on messages sent more than `timeout_ns` before `now_ns`;
    /// returns how many.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        let mut lost = 0;
        while self.scan < self.next {
            let scan = self.scan;
            let slot = self.slot(scan);
            if slot.state == State::Outstanding {
                if slot.sent_ns.saturating_add(timeout_ns) > now_ns {
                    break;
                }
                slot.state = State::Expired;
                self.outstanding -= 1;
                lost += 1;
            }
            self.scan += 1;
        }
        lost
    }

    /// When the oldest outstanding message times out, if any is.
    pub fn next_expiry(&mut self, timeout_ns: u64) -> Option<u64> {
        while self.scan < self.next {
            let scan = self.scan;
            let slot = *self.slot(scan);
            if slot.state == State::Outstanding {
                return Some(slot.sent_ns.saturating_add(timeout_ns));
            }
            self.scan += 1;
        }
        None
    }

    /// The end: everything still outstanding is lost; returns how many.
    pub fn finish(&mut self) -> u64 {
        let lost = self.outstanding as u64;
        for seq in self.low..self.next {
            let slot = self.slot(seq);
            if slot.state == State::Outstanding {
                slot.state = State::Expired;
            }
        }
        self.outstanding = 0;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(w: &mut Window, seq: u64) -> bool {
        matches!(
            w.echo(seq),
            Echo::Fresh {
                reordered: false,
                ..
            }
        )
    }

    #[test]
    fn in_order_echoes_are_fresh_and_free_their_slots() {
        let mut w = Window::new(1);
        for i in 0..100 {
            assert_eq!(w.push(i, i), (i, 0));
            assert!(fresh(&mut w, i));
        }
        assert_eq!(w.outstanding(), 0);
        assert_eq!((w.cap, w.slots.len()), (4, 0));
    }

    #[test]
    fn duplicates_reorders_and_unknowns_are_told_apart() {
        let mut w = Window::new(4);
        for i in 0..4 {
            w.push(i, i);
        }
        assert!(fresh(&mut w, 1));
        assert!(matches!(
            w.echo(0),
            Echo::Fresh {
                reordered: true,
                ..
            }
        ));
        assert_eq!(w.echo(1), Echo::Duplicate);
        assert_eq!(w.echo(0), Echo::Duplicate);
        assert_eq!(w.echo(9), Echo::Unknown);
        assert!(fresh(&mut w, 2));
        assert_eq!(w.outstanding(), 1);
    }

    #[test]
    fn a_dropped_message_expires_and_a_late_echo_is_late_not_reordered() {
        let mut w = Window::new(2);
        w.push(0, 0);
        w.push(10, 10);
        assert!(fresh(&mut w, 1));
        assert_eq!(w.next_expiry(100), Some(100));
        assert_eq!(w.expire(99, 100), 0);
        assert_eq!(w.expire(100, 100), 1);
        assert_eq!(w.outstanding(), 0);
        assert_eq!(w.echo(0), Echo::Late);
        assert_eq!(w.echo(0), Echo::Duplicate);
    }

    #[test]
    fn a_stuck_slot_grows_the_ring_then_gives_up_at_the_limit() {
        let mut w = Window::new(1);
        w.push(0, 0); // never echoed
        let mut lost = 0;
        for i in 1..(MAX_WINDOW as u64 + 10) {
            let (seq, l) = w.push(i, i);
            lost += l;
            assert!(fresh(&mut w, seq));
        }
        assert_eq!((w.cap, w.slots.len()), (MAX_WINDOW, MAX_WINDOW));
        assert_eq!(lost, 1);
        assert_eq!(w.echo(0), Echo::Duplicate);
    }

    #[test]
    fn truncated_sequence_numbers_resolve_within_the_window() {
        let mut w = Window::new(8);
        for i in 0..300 {
            w.push(i, i);
            if i < 295 {
                w.echo(i);
            }
        }
        assert_eq!(w.resolve(295 & 0xff, 8), 295);
        assert_eq!(w.resolve(299 & 0xff, 8), 299);
        assert_eq!(w.resolve(0, 0), 295);
        assert_eq!(w.finish(), 5);
    }
}
