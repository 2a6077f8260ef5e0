//! The chat route, `/chat/{room}`: the tutorial's "server forwards messages
//! amongst the peers". Each message goes to every other peer of the room, in
//! order, never back to its sender; what the others send arrives through the
//! session stream's inbox.

use fastwebsockets::OpCode;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::rooms::Membership;
use crate::session::{End, Session};

pub async fn run<S>(session: &mut Session<S>, member: &Membership) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A fragmented message is relayed whole, so its fragments are joined
    // (a copy the relay needs); the session caps the total size.
    let mut message = Vec::new();
    let mut opcode = OpCode::Text;
    loop {
        let frame = match session.next_frame().await {
            Ok(frame) => frame,
            Err(end) => return end,
        };
        if frame.opcode != OpCode::Continuation {
            opcode = frame.opcode;
        }
        if frame.fin && message.is_empty() {
            member.broadcast(opcode, &frame.payload);
            continue;
        }
        message.extend_from_slice(&frame.payload);
        if frame.fin {
            member.broadcast(opcode, &message);
            message.clear();
        }
    }
}
