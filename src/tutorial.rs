//! The tutorial's dialogue (`shared/seed/websocket-architecture.md`): greet
//! with `Hello webSocket`, answer each message `m` with `I heard you say "m"`.
//!
//! The tutorial's Node server reads a message's bytes as characters; wsecho
//! reads them as UTF-8 (lossily for binary messages), which is the same for
//! ASCII and right for everything else. Replies are text.

use fastwebsockets::{Frame, Payload};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::session::{End, Session};

pub const GREETING: &str = "Hello webSocket";

pub async fn run<S>(session: &mut Session<S>) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(end) = session
        .send(Frame::text(Payload::Borrowed(GREETING.as_bytes())))
        .await
    {
        return end;
    }
    // Fragments are gathered (a copy the reply needs: it quotes the whole
    // message); the session caps the total at the message limit.
    let mut message = Vec::new();
    loop {
        let frame = match session.next_frame().await {
            Ok(frame) => frame,
            Err(end) => return end,
        };
        message.extend_from_slice(&frame.payload);
        if !frame.fin {
            continue;
        }
        let reply = reply_to(&message);
        message.clear();
        if let Err(end) = session
            .send(Frame::text(Payload::Owned(reply.into_bytes())))
            .await
        {
            return end;
        }
    }
}

pub fn reply_to(message: &[u8]) -> String {
    format!("I heard you say \"{}\"", String::from_utf8_lossy(message))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reply_quotes_the_message() {
        assert_eq!(
            super::reply_to(b"I am listening"),
            "I heard you say \"I am listening\""
        );
    }
}
