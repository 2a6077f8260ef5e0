//! The connect scenario: connection churn. Each of the `-c` slots opens a
//! connection, completes the handshake, sends one message and checks its
//! echo, closes, and starts over until the window ends; `--connect-rate`
//! paces the whole churn. The figure is completed cycles (handshakes) per
//! second, with connect, handshake and echo latency.

use std::rc::Rc;
use std::time::Duration;

use crate::scenario;
use crate::scenario::WorkerCtx;
use crate::scenario::echo::{EchoLoop, End};

/// After a failed attempt a slot waits this long, so a refusing server is
/// not hammered in a busy loop (the failure is counted either way).
const RETRY_PAUSE: Duration = Duration::from_millis(10);

pub async fn slot(ctx: Rc<WorkerCtx>, slot: u64) {
    let phases = ctx.phases().await;
    let plan = &ctx.plan;
    for cycle in 0u64.. {
        // With --connect-rate, dial number k + n·c of the whole churn.
        let dial = slot + cycle * plan.connections;
        let at = phases.start_ns + plan.dial_at_ns(dial);
        if at >= phases.window_end_ns {
            break;
        }
        if at > ctx.now_ns() {
            tokio::time::sleep_until(plan.clock.at(at)).await;
        }
        let started = ctx.now_ns();
        if started >= phases.window_end_ns {
            break;
        }
        let counts = phases.counts(started);
        let Some(mut conn) = scenario::open(&ctx, dial, &plan.upgrade, counts).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let mut echo = EchoLoop::new(&ctx, dial, phases, Some(1));
        let end = echo.drive(&mut conn).await;
        let clean = matches!(end, End::Done);
        echo.finish(&mut conn, end).await;
        scenario::closed(&ctx);
        if counts && clean {
            ctx.stats.borrow_mut().cycles += 1;
        }
    }
}
