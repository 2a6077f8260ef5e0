//! The idle scenario: open N connections, hold them for the window without
//! sending (pings from the server are answered), count how many are still
//! up at the end. With `--server-pid` the main thread reads the server's
//! RSS before the first dial and just before the end, which gives its
//! memory per connection.

use std::rc::Rc;

use crate::codec::ProtocolError;
use crate::conn::{Conn, Event, Msg};
use crate::scenario;
use crate::scenario::WorkerCtx;
use crate::stats::ErrorKind;

pub async fn connection(ctx: Rc<WorkerCtx>, id: u64) {
    scenario::ramp(&ctx, id).await;
    let conn = scenario::open(&ctx, id, &ctx.plan.upgrade, true).await;
    ctx.dialled();
    let Some(mut conn) = conn else { return };
    let phases = ctx.phases().await;
    conn.arm(ctx.plan.clock.at(phases.window_end_ns));
    let why = loop {
        match conn.event().await {
            Event::Timer => break None,
            Event::Data => match server_close(&mut conn) {
                Ok(None) => {}
                Ok(Some(code)) => {
                    conn.answer_close(code, scenario::close_deadline(&ctx))
                        .await;
                    ctx.stats.borrow_mut().close_code(code.unwrap_or(1005));
                    break Some(format!("server closed an idle connection (code {code:?})"));
                }
                Err(e) => break Some(e.to_string()),
            },
            Event::Eof => {
                ctx.stats.borrow_mut().close_code(1006);
                break Some("server dropped an idle connection".to_owned());
            }
            Event::Failed(e) => break Some(format!("idle connection failed: {e}")),
        }
    };
    match why {
        Some(why) => ctx.stats.borrow_mut().error(ErrorKind::Closed, 1, || why),
        None => {
            ctx.stats.borrow_mut().held += 1;
            let code = conn.close(1000, scenario::close_deadline(&ctx)).await;
            ctx.stats.borrow_mut().close_code(code);
        }
    }
    scenario::closed(&ctx);
}

/// Reads every buffered message: `Some(code)` if one was a close frame.
/// Data is ignored (an idle client is not checking anything).
fn server_close(conn: &mut Conn) -> Result<Option<Option<u16>>, ProtocolError> {
    while let Some(msg) = conn.next_message()? {
        if let Msg::Close(code) = msg {
            return Ok(Some(code));
        }
    }
    Ok(None)
}
