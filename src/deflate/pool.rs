//! Per-thread caches of idle zlib contexts, so a connection without context
//! takeover holds none between messages (uSockets keeps per-loop state for
//! the same reason: per-connection state is paid 10,000 times).
//!
//! A context leaves the pool for the duration of one message and comes back
//! reset. It is an ordinary owned value, so a task that moves to another
//! thread mid-message just returns it to that thread's pool.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::Decompress;
use zlib_rs::{Deflate, DeflateConfig, Method, Strategy};

/// Idle contexts kept per thread and kind; more are freed on return. A
/// worker thread compresses one message at a time, so a few cover the
/// contexts held by messages still arriving across reads.
const IDLE_PER_THREAD: usize = 4;

/// What makes two compressors interchangeable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DeflaterKind {
    pub level: u8,
    pub mem_level: u8,
    /// 9..=15: what zlib can allocate for raw deflate.
    pub window_bits: u8,
    /// Literals only, no back-references (see `Deflater::new`).
    pub huffman_only: bool,
}

impl DeflaterKind {
    pub(super) fn build(self) -> Deflate {
        Deflate::new_with_config(DeflateConfig {
            level: i32::from(self.level),
            method: Method::Deflated,
            // Negative: raw deflate, no zlib header (RFC 7692 §7.2.1).
            window_bits: -i32::from(self.window_bits),
            mem_level: i32::from(self.mem_level),
            strategy: if self.huffman_only {
                Strategy::HuffmanOnly
            } else {
                Strategy::Default
            },
        })
    }
}

/// Every pooled inflater has a 15-bit window: it inflates any client's
/// stream, whatever window that client used.
pub(super) const POOLED_INFLATE_BITS: u8 = 15;

thread_local! {
    static INFLATERS: RefCell<Vec<Decompress>> = const { RefCell::new(Vec::new()) };
    static DEFLATERS: RefCell<Vec<(DeflaterKind, Deflate)>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn take_inflater() -> Decompress {
    INFLATERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Decompress::new_with_window_bits(false, POOLED_INFLATE_BITS))
}

/// Takes back an inflater in any state: a message cut short or corrupt
/// leaves it mid-stream, so it is reset here, not by the caller.
pub(super) fn give_inflater(mut ctx: Decompress) {
    ctx.reset(false);
    INFLATERS.with_borrow_mut(|idle| {
        if idle.len() < IDLE_PER_THREAD {
            idle.push(ctx);
        }
    });
}

pub(super) fn take_deflater(kind: DeflaterKind) -> Deflate {
    DEFLATERS
        .with_borrow_mut(|idle| {
            let i = idle.iter().position(|(k, _)| *k == kind)?;
            Some(idle.swap_remove(i).1)
        })
        .unwrap_or_else(|| kind.build())
}

pub(super) fn give_deflater(kind: DeflaterKind, mut ctx: Deflate) {
    ctx.reset();
    DEFLATERS.with_borrow_mut(|idle| {
        if idle.len() >= IDLE_PER_THREAD {
            // The oldest goes: a policy change or an odd window leaves
            // contexts of a kind nobody takes any more.
            idle.remove(0);
        }
        idle.push((kind, ctx));
    });
}

/// How many idle contexts this thread holds (inflaters, deflaters).
pub fn idle_contexts() -> (usize, usize) {
    (
        INFLATERS.with_borrow(Vec::len),
        DEFLATERS.with_borrow(Vec::len),
    )
}

/// Contexts held by connections (a message in flight, or context takeover),
/// process-wide. Idle contexts in the pools are not counted.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts one context while a connection holds it: kept beside the context
/// and dropped with it, or when it goes back to the pool.
#[derive(Debug)]
pub(super) struct Live(());

impl Live {
    pub(super) fn new() -> Live {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Live(())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// zlib contexts held by connections right now, process-wide: with no
/// context takeover, the compressed messages in flight. Each costs 48 KiB
/// (inflate) or up to 322 KiB (compress); a metric for it shows when
/// clients that stall mid-message pin memory, and a session may refuse new
/// compressed messages past a bound (Node ws's `concurrencyLimit` idea).
pub fn live_contexts() -> usize {
    LIVE.load(Ordering::Relaxed)
}
