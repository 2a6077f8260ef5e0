//! The hint that a tokio task of this thread was woken, from whoever woke
//! it to the worker's session loop, which then gives the runtime its turn
//! sooner (see `ws::direct`).
//!
//! A leaf of its own because the wakers (the chat inbox, the Redis link)
//! sit below the session loop that reads it: neither imports the other.

use std::cell::Cell;

thread_local! {
    /// A task of this thread may have been woken since the loop last
    /// looked.
    static TASK_WOKEN: Cell<bool> = const { Cell::new(false) };
}

/// Tells this thread's owner loop that a session it polls may have woken a
/// tokio task of this thread (sent on a channel a task waits on). Such a
/// wake makes no fd readable, so without this the task waits for the
/// periodic `RUNTIME_TURN`; with it, `TASK_TURN`. Every place where a
/// session wakes a task calls it; elsewhere it costs nothing.
pub fn woke_a_task() {
    TASK_WOKEN.set(true);
}

/// Whether a task was woken since the last call, which clears the hint.
pub(crate) fn take() -> bool {
    TASK_WOKEN.replace(false)
}
