//! Run time: nanoseconds since the run began, one `u64` to store in payloads
//! and compare on the hot path, and a cheap per-connection random source.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// The run's time base. `Instant` is CLOCK_MONOTONIC, the same on every
/// thread, so a send time written by one thread is comparable with the
/// receive time read by another (chat fan-out).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the run began (a vDSO call, no syscall).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The tokio instant for a run time, to arm timers with.
    pub fn at(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(ns))
    }
}

/// wyrand: one multiply per number. Mask keys and handshake nonces need to
/// be unpredictable to intermediaries, not cryptographic; each generator is
/// seeded from the OS through std's randomly keyed `RandomState`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(stream: u64) -> Rng {
        Rng(RandomState::new().hash_one(stream))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    #[inline]
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }

    pub fn nonce(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}
