//! Control frames, gathered whole (at most 125 bytes): a pong for every
//! ping within the ping rate, the peer's close parsed into why the session
//! stops.

use fastwebsockets::OpCode;
use tokio::io::AsyncWrite;

use super::super::limits::Limits;
use super::super::out::Writer;
use super::{Flow, Proto, Stop, epoch};
use crate::close::{self, PeerClose, code};
use crate::metrics::{Limit, Metrics};

impl Proto {
    /// A piece of a control frame: at most 125 bytes, answered whole.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_control_piece<S: AsyncWrite + Unpin>(
        &mut self,
        opcode: OpCode,
        piece: &[u8],
        first: bool,
        last: bool,
        w: &mut Writer<'_, '_, S>,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Flow {
        if first && last {
            return self.on_control(opcode, piece, w, limits, metrics);
        }
        self.held.get_or_insert_default().extend_from_slice(piece);
        if !last {
            return Ok(());
        }
        let held = self.held.take().unwrap_or_default();
        self.on_control(opcode, &held, w, limits, metrics)
    }

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
