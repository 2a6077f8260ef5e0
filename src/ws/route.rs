//! What a route sees of its session's data and what it answers: the one
//! interface between the WebSocket layer and the echo, tutorial and chat
//! routes.

use fastwebsockets::OpCode;

/// A data frame, or a piece of one, as a route sees it.
#[derive(Debug)]
pub struct Piece<'a> {
    /// The message's opcode: text or binary.
    pub message: OpCode,
    /// How to echo this piece as a frame of its own: its opcode (the
    /// message's, or continuation) and FIN.
    pub opcode: OpCode,
    pub fin: bool,
    /// Unmasked, and for text validated up to here.
    pub payload: &'a [u8],
}

impl Piece<'_> {
    /// The message ends with this piece.
    pub fn ends_message(&self) -> bool {
        self.fin
    }
}

/// What a route answers to a piece.
#[derive(Debug)]
pub enum Reply {
    Nothing,
    /// The piece itself, as a frame of the same opcode and FIN.
    Echo,
    /// A text message of the route's own.
    Text(String),
}

/// What a route does with its session's data.
pub trait Handler {
    /// The route's name in the connection log line.
    const ROUTE: &'static str;

    fn on_data(&mut self, piece: Piece<'_>) -> Reply;
}
