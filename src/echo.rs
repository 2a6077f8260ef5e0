//! The echo route: every data frame goes back to its sender as it came.
//!
//! Where the bytes go: fastwebsockets reads into the connection's 8 KiB
//! `BytesMut` (grown to hold a larger frame), splits the frame's payload off
//! it without copying, and unmasks it in place. [`Session::send`] hands
//! that same buffer back as `writev(header, payload)`: frames over 1 KiB go
//! to the socket from it directly; frames up to 1 KiB are copied once into
//! the stream's gather buffer, so a burst of them leaves in one `write`
//! (see [`crate::stream`]). Nothing else copies a payload. The read
//! buffer space is reclaimed once the frame is dropped, so a busy connection
//! allocates nothing per message.
//!
//! Fragmented messages are echoed frame by frame, as they arrive: the peer
//! gets the whole message back, in order, and wsecho never holds more than
//! one frame of it (its size is still capped, and text validated, by
//! [`Session`]).

use tokio::io::{AsyncRead, AsyncWrite};

use fastwebsockets::{Frame, Payload};

use crate::session::{End, Session};

pub async fn run<S>(session: &mut Session<S>, greeting: Option<&str>) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(text) = greeting
        && let Err(end) = session
            .send(Frame::text(Payload::Borrowed(text.as_bytes())))
            .await
    {
        return end;
    }
    loop {
        let frame = match session.next_frame().await {
            Ok(frame) => frame,
            Err(end) => return end,
        };
        if let Err(end) = session.send(frame).await {
            return end;
        }
    }
}
