//! For the unit tests: client frames, masked as RFC 6455 §5.3 requires,
//! and a waker that counts its wake-ups.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame's header for a payload of `len` bytes.
pub fn client_head(b0: u8, len: usize) -> Vec<u8> {
    let mut out = vec![b0];
    match len {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// Masks `payload` as the bytes at `offset..` of a frame's payload.
pub fn masked(payload: &[u8], offset: usize) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ MASK[(offset + i) % 4])
        .collect()
}

/// A whole masked client frame.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = client_head(b0, payload.len());
    out.extend(masked(payload, 0));
    out
}

/// Counts the wake-ups of the wakers made from it.
#[derive(Default)]
pub struct Wakes(AtomicUsize);

impl Wakes {
    /// A counter and a waker that counts into it.
    pub fn waker() -> (Arc<Wakes>, Waker) {
        let wakes = Arc::new(Wakes::default());
        (wakes.clone(), Waker::from(wakes))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
