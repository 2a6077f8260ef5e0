//! The wire pattern: what the echo scenario's large binary messages carry,
//! masked, after their header; and the one-slice send of a head and a piece of it.

use std::cell::RefCell;
use std::sync::LazyLock;

use super::filler::{fill, fill_any, filler_ok};

/// Length of the [`wire`] pattern, and the largest message with
/// [`Layout::wire`] filler: the pattern never repeats within a message, so
/// a server that echoes one stretch of it twice (a reused buffer) is
/// caught, as with any filler.
///
/// [`Layout::wire`]: super::Layout::wire
pub const WIRE_LEN: usize = 1 << 20;

/// Smallest message with [`Layout::wire`] filler. Below it the generated
/// filler is cheaper: a few hundred bytes are written faster than the
/// kernel takes a second slice, and a random key is one multiply where the
/// keyed hash is three rounds (1000 x 20 B lost 4 % per core to it).
///
/// [`Layout::wire`]: super::Layout::wire
pub const WIRE_MIN: usize = 2048;

/// The [`wire`] pattern is the binary filler of this seed: so its bytes can
/// be checked against arithmetic, as any filler is, not against a second
/// stream of loads.
pub(super) const WIRE_SEED: u64 = 0x5851_f42d_4c95_7f2d;

/// The masked bytes of every [`Layout::wire`] message after its header:
/// payload byte `i` is `wire()[i]` XOR the message's mask key. Made on
/// first use (a run without such messages never touches its megabyte).
///
/// [`Layout::wire`]: super::Layout::wire
pub fn wire() -> &'static [u8] {
    static WIRE: LazyLock<Box<[u8]>> = LazyLock::new(|| {
        let mut w = vec![0u8; WIRE_LEN];
        fill_any::<false>(&mut w, WIRE_SEED, 0);
        w.into_boxed_slice()
    });
    &WIRE
}

/// Room in front of each thread's copy of the [`wire`] pattern
/// ([`joined`]): a frame header and a message header fit with room over.
const JOIN_ROOM: usize = 64;

thread_local! {
    /// `JOIN_ROOM` bytes of scratch, then the [`wire`] pattern up to the
    /// furthest byte sent from it. A head written over the pattern is
    /// undone right after its send, so between sends it is the pattern.
    static JOINED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Hands `send` the bytes `head` followed by `piece` (a slice of [`wire`])
/// as one slice: `head` is copied in front of the piece in this thread's
/// copy of the pattern. A message whose bytes after its header are the
/// pattern then goes out by one `send` of one buffer, as `load_test` sends
/// its frame, instead of a `sendmsg` of two, whose message header and
/// vector the kernel copies in and walks: 1-2 % more messages per CPU
/// second at 10 x 16 KiB (`scripts/generator-ab.sh`, loadtest/README).
/// `None`, and `send` not called, when `piece` is not a slice of [`wire`]
/// or `head` is longer than the pattern and the room in front of it.
pub fn joined<R>(head: &[u8], piece: &[u8], send: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let wire = wire();
    let at = piece.as_ptr().addr().checked_sub(wire.as_ptr().addr())?;
    let end = at + piece.len();
    if end > wire.len() || head.len() > JOIN_ROOM + at {
        return None;
    }
    JOINED.with_borrow_mut(|copy| {
        if copy.len() < JOIN_ROOM + end {
            // Grown in steps to the largest message, not to the whole
            // megabyte, so a 16 KiB run keeps 32 KiB of it warm.
            let to = end.next_power_of_two().min(wire.len());
            copy.resize(JOIN_ROOM, 0);
            copy.extend_from_slice(&wire[..to]);
        }
        let start = JOIN_ROOM + at - head.len();
        copy[start..JOIN_ROOM + at].copy_from_slice(head);
        let sent = send(&copy[start..JOIN_ROOM + end]);
        // What the head covered of the pattern is the pattern again, for
        // the next message, whose piece may start lower.
        let from = start.max(JOIN_ROOM);
        copy[from..JOIN_ROOM + at].copy_from_slice(&wire[from - JOIN_ROOM..at]);
        Some(sent)
    })
}

/// Writes the wire pattern XOR `m64` (a key twice over, [`key_word`]) over all
/// of `dst`, from payload offset 0.
///
/// [`key_word`]: super::key_word
pub(super) fn fill_wire(dst: &mut [u8], m64: u64) {
    fill::<false>(dst, WIRE_SEED, m64);
}

/// True when bytes `start..` of an (unmasked) echo, masked with the key of
/// `k64` ([`key_word`]), are the wire pattern.
///
/// [`key_word`]: super::key_word
pub(super) fn wire_ok(src: &[u8], start: usize, k64: u64) -> bool {
    filler_ok::<false>(src, start, WIRE_SEED, k64)
}
