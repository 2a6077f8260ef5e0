//! The closing handshake, from our side or answering the server's.

use tokio::io::AsyncWriteExt;

use super::{Conn, Event, Msg};

impl Conn {
    /// The closing handshake from our side: sends close `code` (unless
    /// already sent), waits for the server's close frame and then for it to
    /// close the TCP connection (RFC 6455 §7.1.1: the server closes first,
    /// so TIME_WAIT stays on its side and churn does not use up our ports).
    /// Returns the server's code: 1005 for none, 1006 for no close frame.
    pub async fn close(&mut self, code: u16, deadline: tokio::time::Instant) -> u16 {
        self.queue_close(code);
        self.arm(deadline);
        let mut got: Option<u16> = None;
        // Until EOF, an error or the deadline.
        while let Event::Data = self.event().await {
            loop {
                match self.next_message() {
                    Ok(Some(Msg::Close(c))) => got = got.or(Some(c.unwrap_or(1005))),
                    Ok(Some(Msg::Data { .. })) => {}
                    Ok(None) => break,
                    Err(_) => return got.unwrap_or(1002),
                }
            }
        }
        let _ = self.io.shutdown().await;
        got.unwrap_or(1006)
    }

    /// Answers a close the server started, then waits for its EOF briefly.
    pub async fn answer_close(&mut self, code: Option<u16>, deadline: tokio::time::Instant) {
        self.queue_close(code.unwrap_or(1000));
        self.arm(deadline);
        while let Event::Data = self.event().await {
            self.rstart = self.rend;
        }
    }
}
