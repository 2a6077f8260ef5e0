//! The limits every session of a server enforces: a leaf, so the protocol
//! rules ([`super::proto`]) and the session that drives them
//! ([`super::session`]) both read them without importing each other.

use std::time::Duration;

/// Limits a session and its protocol rules enforce.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, summed over fragments (1009 past it).
    pub max_message: usize,
    /// Largest single frame, checked from its header (1009 past it).
    pub max_frame: usize,
    /// Most unsent bytes held while a large frame is still arriving and the
    /// peer does not read (see [`super::Session`]'s read loop).
    pub max_backlog: usize,
    /// How long to wait for the peer's close after we sent ours.
    pub close_timeout: Duration,
    /// Pings accepted per second (0: any number).
    pub max_ping_rate: u32,
}
