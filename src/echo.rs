//! The echo route: every data message goes back to its sender as it came.
//!
//! Where the bytes go: the session reads into the worker thread's receive
//! buffer, the frame reader unmasks each payload there in place, and the
//! echo is written from that same buffer: for a frame over 1 KiB the echo's
//! header is written into the spent bytes in front of the payload (the
//! client's header and mask key) and the frame leaves as one slice, one
//! `send`; smaller ones are copied once into the worker's cork buffer so a
//! burst of them leaves in one `send` (see [`crate::ws`]). A frame up to 64 KiB that arrived in several reads is
//! assembled first (one copy), so it goes back as one frame; a larger one is
//! echoed piece by piece as it arrives, as fragments of the same message.
//! Fragmented messages are echoed fragment by fragment. Nothing else copies
//! a payload.

use crate::ws::{Handler, Piece, Reply};

/// Holds nothing: an idle echo session carries no route state (the
/// `--greeting` is queued by whoever starts the session).
pub struct Echo;

impl Handler for Echo {
    const ROUTE: &'static str = "echo";

    fn on_data(&mut self, _piece: Piece<'_>) -> Reply {
        Reply::Echo
    }
}
