//! One WebSocket connection after the handshake: the protocol rules every
//! route shares (control frames, fragmentation, limits, closing), on top of
//! fastwebsockets' frame reader and writer.
//!
//! A route asks [`Session::next_frame`] for the next data frame; pings,
//! pongs and close frames are answered here, and every protocol violation
//! ends in an [`End`] after the right close frame has been sent.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Role, WebSocket, WebSocketError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::close::{self, PeerClose, code};
use crate::inbox::PeerState;
use crate::metrics::{FLUSH_EVERY, Metrics};
use crate::stream::{Interrupt, SessionStream};
use crate::utf8::Utf8Stream;

/// Limits a session enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, summed over fragments (1009 past it).
    pub max_message: usize,
    /// Largest single frame; fastwebsockets rejects it from the header alone.
    pub max_frame: usize,
    /// How long to wait for the peer's close after we sent ours.
    pub close_timeout: Duration,
    /// Pings accepted per second (0: any number).
    pub max_ping_rate: u32,
}

/// How a session ended: what the connection log line and metrics report.
#[derive(Debug)]
pub enum End {
    /// The peer closed (with this code, if any) and we answered.
    PeerClosed(Option<u16>),
    /// We closed with this code: a protocol error, a limit, or going away.
    Closed { code: u16, reason: &'static str },
    /// The peer stopped reading; no close frame could be written.
    Stalled,
    /// The connection dropped without a close handshake.
    Dropped(io::ErrorKind),
}

impl End {
    /// The close code for logs and metrics; 1006 when there was none (§7.1.5).
    pub fn code(&self) -> u16 {
        match self {
            End::PeerClosed(c) => c.unwrap_or(1005),
            End::Closed { code, .. } => *code,
            End::Stalled | End::Dropped(_) => 1006,
        }
    }
}

/// Per-session counters, added to the global metrics when the session ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            messages_in: self.messages_in - o.messages_in,
            messages_out: self.messages_out - o.messages_out,
            bytes_in: self.bytes_in - o.bytes_in,
            bytes_out: self.bytes_out - o.bytes_out,
        }
    }
}

/// A fragmented message being received.
struct Partial {
    text: bool,
    len: usize,
}

pub struct Session<S> {
    ws: WebSocket<SessionStream<S>>,
    limits: Limits,
    partial: Option<Partial>,
    utf8: Utf8Stream,
    close_sent: bool,
    /// Pings seen in the current one-second window, and when it began.
    pings: (u32, Instant),
    pub counts: Counts,
    flushed: Counts,
    metrics: Arc<Metrics>,
    /// A chat peer's relay state, shared with its stream.
    peer: Option<Arc<PeerState>>,
}

type Flow<T> = Result<T, End>;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(stream: SessionStream<S>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        let peer = stream.peer_state().cloned();
        let mut ws = WebSocket::after_handshake(stream, Role::Server);
        // wsecho answers pings and closes itself: fastwebsockets' automatic
        // replies are unflushed under TLS and its close handling fails
        // Autobahn 7.3.6.
        ws.set_auto_close(false);
        ws.set_auto_pong(false);
        // fastwebsockets rejects a frame whose length is >= this.
        ws.set_max_message_size(limits.max_frame.saturating_add(1));
        // Every frame goes to the stream as `writev(header, payload)`: the
        // stream gathers the small ones itself, so fastwebsockets' own copy
        // into its write buffer would be a second one.
        ws.set_writev_threshold(0);
        Session {
            ws,
            limits,
            partial: None,
            utf8: Utf8Stream::default(),
            close_sent: false,
            pings: (0, Instant::now()),
            counts: Counts::default(),
            flushed: Counts::default(),
            metrics,
            peer,
        }
    }

    /// The next data frame (text, binary or continuation), unmasked in place
    /// in the read buffer and ready to be written back as it is.
    pub async fn next_frame(&mut self) -> Flow<Frame<'static>> {
        loop {
            let mut frame = match self.ws.read_frame().await {
                Ok(frame) => frame,
                Err(e) => return Err(self.on_read_error(e).await),
            };
            if !is_masked(&mut frame) {
                // §5.1: a server MUST close on an unmasked client frame.
                return Err(self.close(code::PROTOCOL_ERROR, "unmasked frame").await);
            }
            match frame.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    self.check_data(&frame).await?;
                    self.counts.bytes_in += frame.payload.len() as u64;
                    if frame.fin {
                        self.counts.messages_in += 1;
                        if self.counts.messages_in.is_multiple_of(FLUSH_EVERY) {
                            self.flush_counts();
                        }
                    }
                    // The mask was applied in place; the frame we return has
                    // none, so it goes back out as a server frame.
                    return Ok(Frame::new(frame.fin, frame.opcode, None, frame.payload));
                }
                OpCode::Ping => {
                    if self.ping_flood() {
                        self.metrics.limit_hit("ping_rate");
                        return Err(self.close(code::POLICY, "ping flood").await);
                    }
                    // Length (<= 125) and fragmentation were checked by
                    // fastwebsockets. The pong reuses the ping's buffer.
                    self.write(Frame::pong(frame.payload)).await?;
                }
                OpCode::Pong if frame.payload.len() > 125 => {
                    return Err(self
                        .close(code::PROTOCOL_ERROR, "control frame over 125 bytes")
                        .await);
                }
                OpCode::Pong => {}
                OpCode::Close => return Err(self.on_peer_close(&frame.payload).await),
            }
        }
    }

    /// Counts a ping; true when the peer is over its rate.
    fn ping_flood(&mut self) -> bool {
        let limit = self.limits.max_ping_rate;
        if limit == 0 {
            return false;
        }
        let (count, since) = &mut self.pings;
        let now = Instant::now();
        if now.duration_since(*since) >= Duration::from_secs(1) {
            (*count, *since) = (0, now);
        }
        *count += 1;
        *count > limit
    }

    /// Sends a data frame built by the route (an echo, a reply, a relay).
    pub async fn send(&mut self, frame: Frame<'_>) -> Flow<()> {
        let len = frame.payload.len() as u64;
        let fin = frame.fin;
        self.write(frame).await?;
        self.counts.bytes_out += len;
        self.counts.messages_out += fin as u64;
        Ok(())
    }

    /// Closes the connection from our side with `code` and ends the session;
    /// also how a protocol error fails the connection (§7.1.7).
    pub async fn close(&mut self, code: u16, reason: &'static str) -> End {
        // Bounded: a peer that reads nothing cannot take our close either.
        match tokio::time::timeout(self.limits.close_timeout, self.send_close(code, reason)).await {
            Ok(Ok(())) => {}
            Ok(Err(end)) => return end,
            Err(_) => return End::Stalled,
        }
        self.await_peer_close().await;
        End::Closed { code, reason }
    }

    /// Adds the counts since the last flush to the shared metrics.
    pub fn flush_counts(&mut self) {
        if let Some(peer) = &self.peer {
            self.counts.messages_out += peer.delivered.swap(0, Ordering::Relaxed);
            self.counts.bytes_out += peer.delivered_bytes.swap(0, Ordering::Relaxed);
        }
        self.metrics.add(self.counts - self.flushed);
        self.flushed = self.counts;
    }

    /// Ends the TCP connection after the close handshake: the server closes
    /// first (§7.1.1), so the client does not hold TIME_WAIT.
    /// Returns the session's final counts.
    pub async fn shutdown(mut self) -> Counts {
        self.flush_counts();
        let mut stream = self.ws.into_inner();
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        self.counts
    }

    async fn check_data(&mut self, frame: &Frame<'_>) -> Flow<()> {
        let len = frame.payload.len();
        match (frame.opcode, self.partial.as_mut()) {
            (OpCode::Continuation, None) => Err(self
                .close(code::PROTOCOL_ERROR, "continuation frame outside a message")
                .await),
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(self
                .close(code::PROTOCOL_ERROR, "new message inside a fragmented one")
                .await),
            // Unfragmented: fastwebsockets has already validated the UTF-8 of
            // a final text frame, and the frame limit bounds its size.
            (_, None) if frame.fin => Ok(()),
            (opcode, None) => {
                let text = opcode == OpCode::Text;
                self.partial = Some(Partial { text, len });
                self.check_fragment(text, &frame.payload, false).await
            }
            (_, Some(partial)) => {
                partial.len += len;
                let (text, total) = (partial.text, partial.len);
                if total > self.limits.max_message {
                    self.metrics.limit_hit("message_size");
                    return Err(self.close(code::TOO_BIG, "message too big").await);
                }
                if frame.fin {
                    self.partial = None;
                }
                self.check_fragment(text, &frame.payload, frame.fin).await
            }
        }
    }

    async fn check_fragment(&mut self, text: bool, payload: &[u8], fin: bool) -> Flow<()> {
        if !text {
            return Ok(());
        }
        let valid = self
            .utf8
            .feed(payload)
            .and_then(|()| if fin { self.utf8.finish() } else { Ok(()) });
        match valid {
            Ok(()) => Ok(()),
            Err(_) => Err(self.close(code::INVALID_PAYLOAD, "invalid UTF-8").await),
        }
    }

    async fn on_read_error(&mut self, e: WebSocketError) -> End {
        match e {
            WebSocketError::InvalidUTF8 => self.close(code::INVALID_PAYLOAD, "invalid UTF-8").await,
            WebSocketError::FrameTooLarge => {
                self.metrics.limit_hit("frame_size");
                self.close(code::TOO_BIG, "frame too big").await
            }
            WebSocketError::UnexpectedEOF => End::Dropped(io::ErrorKind::UnexpectedEof),
            WebSocketError::IoError(e) => match Interrupt::from_io(&e) {
                Some(Interrupt::Shutdown) => {
                    self.close(code::GOING_AWAY, "server shutting down").await
                }
                Some(Interrupt::Idle) => self.close(code::GOING_AWAY, "idle timeout").await,
                Some(Interrupt::WriteStalled) => End::Stalled,
                Some(Interrupt::SlowConsumer) => {
                    // 1008: the peer broke the policy of reading its room's
                    // messages in time (1013 would invite a retry).
                    self.close(code::POLICY, "slow consumer: too many unread messages")
                        .await
                }
                None => End::Dropped(e.kind()),
            },
            // Reserved bits or opcodes, fragmented or oversized control frames.
            _ => self.close(code::PROTOCOL_ERROR, "protocol error").await,
        }
    }

    async fn on_peer_close(&mut self, payload: &[u8]) -> End {
        match close::parse_peer_close(payload) {
            PeerClose::Valid(code) => {
                // Echo the code (§5.5.1); an empty close gets an empty one.
                let reply = code.map_or_else(Vec::new, |c| close::payload(c, ""));
                match self.write_close(reply).await {
                    Ok(()) => End::PeerClosed(code),
                    Err(end) => end,
                }
            }
            PeerClose::Invalid(code) => self.close(code, "invalid close frame").await,
        }
    }

    async fn send_close(&mut self, code: u16, reason: &'static str) -> Flow<()> {
        self.write_close(close::payload(code, reason)).await?;
        // Out at once: the peer may still be sending, and the session will
        // not wait for input before the close timeout.
        self.flush().await
    }

    /// Writes our one close frame; nothing, relays included, follows it.
    async fn write_close(&mut self, payload: Vec<u8>) -> Flow<()> {
        if std::mem::replace(&mut self.close_sent, true) {
            return Ok(());
        }
        if let Some(peer) = &self.peer {
            peer.mark_closed();
        }
        self.write(Frame::close_raw(payload.into())).await
    }

    /// After our close, reads (and drops) frames until the peer's close, an
    /// error, or the close timeout.
    async fn await_peer_close(&mut self) {
        let wait = async {
            loop {
                match self.ws.read_frame().await {
                    Ok(frame) if frame.opcode == OpCode::Close => break,
                    // Data after our close: fastwebsockets drops it.
                    Ok(_) | Err(WebSocketError::ConnectionClosed) => {}
                    Err(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(self.limits.close_timeout, wait).await;
    }

    /// Writes a frame. Small frames are gathered by the stream and go out
    /// when the session next waits for input (see [`crate::stream`]).
    async fn write(&mut self, frame: Frame<'_>) -> Flow<()> {
        let res = self.ws.write_frame(frame).await;
        res.map_err(write_error)
    }

    /// Writes out everything gathered, now.
    async fn flush(&mut self) -> Flow<()> {
        self.ws.flush().await.map_err(write_error)
    }
}

fn write_error(e: WebSocketError) -> End {
    match e {
        WebSocketError::IoError(e) if Interrupt::from_io(&e) == Some(Interrupt::WriteStalled) => {
            End::Stalled
        }
        WebSocketError::IoError(e) => End::Dropped(e.kind()),
        _ => End::Dropped(io::ErrorKind::Other),
    }
}

/// fastwebsockets keeps a received frame's mask but has no getter for it;
/// `fmt_head` writes the mask bit, so ask it.
fn is_masked(frame: &mut Frame<'_>) -> bool {
    let mut head = [0u8; 16];
    frame.fmt_head(&mut head);
    head[1] & 0x80 != 0
}
