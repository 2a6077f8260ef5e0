//! A chat peer's side of a session: writing what its room relayed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::proto::Stop;
use super::Session;
use crate::close::code;

/// Most relayed frames in one `writev` (Linux takes up to 1024 iovecs).
const RELAY_BATCH: usize = 64;

/// Most relayed bytes written per pass, so a fast reader's inbox cannot
/// starve its own input.
const RELAY_BUDGET: usize = 64 << 10;

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Session<S> {
    pub(super) fn relay_unfinished(&self) -> bool {
        self.inbox
            .as_ref()
            .is_some_and(|i| i.unfinished().is_some())
    }

    /// A chat peer that fell too far behind its room. Checked before
    /// anything is written: a peer that reads nothing leaves the writes
    /// pending, and it must not be left waiting for them.
    pub(super) fn slow(&self) -> Option<Stop> {
        let inbox = self.inbox.as_ref()?;
        // 1008: the peer broke the policy of reading its room's messages in
        // time (1013 would invite a retry).
        (!inbox.is_closed() && inbox.state().is_slow()).then_some(Stop::Fail(
            code::POLICY,
            "slow consumer: too many unread messages",
        ))
    }

    /// Writes a chat peer's relayed frames, within the budget.
    pub(super) fn relay(&mut self, cx: &mut Context<'_>) -> Result<(), Stop> {
        let Some(inbox) = &mut self.inbox else {
            return Ok(());
        };
        if inbox.is_closed() {
            return Ok(());
        }
        let mut budget = RELAY_BUDGET;
        while inbox.unfinished().is_none() {
            if budget == 0 {
                // More may be queued and nothing else would wake us for it.
                cx.waker().wake_by_ref();
                break;
            }
            let mut iov = [io::IoSlice::new(&[]); RELAY_BATCH];
            let n = inbox.poll_batch(cx, &mut iov);
            if n == 0 {
                break;
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &iov[..n]) {
                Poll::Ready(Ok(0)) => return Err(Stop::Dropped(io::ErrorKind::WriteZero)),
                Poll::Ready(Ok(written)) => {
                    inbox.consumed(written);
                    budget = budget.saturating_sub(written);
                    self.live.wrote = true;
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Err(Stop::Dropped(e.kind())),
                Poll::Pending => break,
            }
        }
        Ok(())
    }
}
