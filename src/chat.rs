//! The chat route, `/chat/{room}`: the tutorial's "server forwards messages
//! amongst the peers". Each message goes to every other peer of the room, in
//! order, never back to its sender; what the others send arrives through the
//! session's inbox.

use fastwebsockets::OpCode;

use crate::rooms::Membership;
use crate::ws::{Handler, Piece, Reply};

pub struct Chat {
    member: Membership,
    /// A message in pieces is relayed whole, so its pieces are joined (a
    /// copy the relay needs); the session caps the total size.
    message: Vec<u8>,
}

impl Chat {
    pub fn new(member: Membership) -> Self {
        Chat {
            member,
            message: Vec::new(),
        }
    }
}

impl Handler for Chat {
    const ROUTE: &'static str = "chat";

    fn on_data(&mut self, piece: Piece<'_>) -> Reply {
        let opcode: OpCode = piece.message;
        if piece.ends_message() && self.message.is_empty() {
            self.member.broadcast(opcode, piece.payload);
            return Reply::Nothing;
        }
        self.message.extend_from_slice(piece.payload);
        if piece.ends_message() {
            self.member.broadcast(opcode, &self.message);
            self.message = Vec::new();
        }
        Reply::Nothing
    }
}
