//! The tutorial's dialogue (`shared/seed/websocket-architecture.md`): greet
//! with `Hello webSocket`, answer each message `m` with `I heard you say "m"`.
//!
//! The tutorial's Node server reads a message's bytes as characters; wsecho
//! reads them as UTF-8 (lossily for binary messages), which is the same for
//! ASCII and right for everything else. Replies are text.

use crate::ws::{Handler, Piece, Reply};

pub const GREETING: &str = "Hello webSocket";

#[derive(Debug, Default)]
pub struct Tutorial {
    /// The message so far (a copy the reply needs: it quotes the whole
    /// message); the session caps it at the message limit.
    message: Vec<u8>,
}

impl Handler for Tutorial {
    const ROUTE: &'static str = "tutorial";

    fn on_data(&mut self, piece: Piece<'_>) -> Reply {
        if !piece.ends_message() {
            self.message.extend_from_slice(piece.payload);
            return Reply::Nothing;
        }
        let reply = if self.message.is_empty() {
            reply_to(piece.payload)
        } else {
            self.message.extend_from_slice(piece.payload);
            let reply = reply_to(&self.message);
            self.message = Vec::new();
            reply
        };
        Reply::Text(reply)
    }
}

pub fn reply_to(message: &[u8]) -> String {
    format!("I heard you say \"{}\"", String::from_utf8_lossy(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastwebsockets::OpCode;

    #[test]
    fn reply_quotes_the_message() {
        assert_eq!(
            super::reply_to(b"I am listening"),
            "I heard you say \"I am listening\""
        );
    }

    #[test]
    fn a_message_in_pieces_gets_one_reply_quoting_all_of_it() {
        let mut t = Tutorial::default();
        let piece = |payload, fin| Piece {
            message: OpCode::Text,
            opcode: OpCode::Text,
            fin,
            payload,
        };
        assert!(matches!(t.on_data(piece(b"I am ", false)), Reply::Nothing));
        match t.on_data(piece(b"here", true)) {
            Reply::Text(reply) => assert_eq!(reply, "I heard you say \"I am here\""),
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}
