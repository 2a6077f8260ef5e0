//! Control frames: a pong for every ping within the ping rate, the
//! peer's close parsed into why the session stops.

use fastwebsockets::OpCode;
use tokio::io::AsyncWrite;

use super::super::limits::Limits;
use super::super::out::Writer;
use super::{Flow, Proto, Stop, epoch};
use crate::close::{self, PeerClose, code};
use crate::metrics::{Limit, Metrics};

impl Proto {
    pub(super) fn on_control<S: AsyncWrite + Unpin>(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        w: &mut Writer<'_, '_, S>,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Flow {
        match opcode {
            OpCode::Ping => {
                if self.ping_flood(limits.max_ping_rate) {
                    metrics.limit_hit(Limit::PingRate);
                    return Err(Stop::Fail(code::POLICY, "ping flood"));
                }
                w.frame(true, false, OpCode::Pong, payload);
                Ok(())
            }
            OpCode::Close => match close::parse_peer_close(payload) {
                PeerClose::Valid(code) => Err(Stop::PeerClosed(code)),
                PeerClose::Invalid(code) => Err(Stop::Fail(code, "invalid close frame")),
            },
            _ => Ok(()),
        }
    }

    /// Counts a ping; true when the peer is over its rate.
    pub(super) fn ping_flood(&mut self, limit: u32) -> bool {
        if limit == 0 {
            return false;
        }
        let now = epoch().elapsed().as_secs() as u32;
        let (count, second) = &mut self.pings;
        if *second != now {
            (*count, *second) = (0, now);
        }
        *count += 1;
        *count > limit
    }
}
