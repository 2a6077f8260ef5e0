//! What tokio allocates for a spawned task: its future plus a header and
//! trailer, aligned to 128 bytes. The README's "a 384-byte future (bounded
//! by a test) in a 512-byte tokio task" and the 408-byte bound in
//! `session_task_future_stays_small` rest on this; a tokio upgrade that changes the layout fails here, not
//! silently in the idle-memory figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

/// The system allocator, remembering the size of the last allocation
/// aligned to 128 bytes or more (tokio's task cells are; little else is).
struct Recording;

static LAST_ALIGNED: AtomicUsize = AtomicUsize::new(0);

// A global allocator is unsafe to implement by definition; this one only
// forwards to `System` and records a size.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() >= 128 {
            LAST_ALIGNED.store(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Recording = Recording;

/// A future of exactly `N` bytes.
struct Bytes<const N: usize>([u8; N]);

impl<const N: usize> Future for Bytes<N> {
    type Output = u8;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u8> {
        Poll::Ready(self.0[N - 1])
    }
}

fn task_size<const N: usize>(rt: &tokio::runtime::Runtime) -> usize {
    assert_eq!(std::mem::size_of::<Bytes<N>>(), N);
    let _guard = rt.enter();
    LAST_ALIGNED.store(0, Ordering::Relaxed);
    let task = tokio::spawn(Bytes([1u8; N]));
    let size = LAST_ALIGNED.load(Ordering::Relaxed);
    assert_eq!(rt.block_on(task).unwrap(), 1);
    size
}

#[test]
fn a_task_is_its_future_plus_104_bytes_rounded_up_to_128() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // The session's bound: up to 408 B of future the task is 512 B.
    assert_eq!(task_size::<408>(&rt), 512);
    // One byte more and it is 640, which mimalloc serves from 768.
    assert_eq!(task_size::<409>(&rt), 640);
    assert_eq!(task_size::<24>(&rt), 128);
}
