//! The receive side: room in the borrowed read buffer, and the messages
//! parsed out of it (pings answered, fragments joined, deflate undone).

use super::{Conn, MIN_READ, Msg};
use crate::bufpool::Pool;
use crate::codec::{self, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use crate::codec::{Parsed, ProtocolError};

impl Conn {
    /// Gives the read buffer back when nothing unparsed is left in it.
    pub(super) fn release_rbuf(&mut self) {
        if self.rstart == self.rend && !self.rbuf.is_empty() {
            self.rstart = 0;
            self.rend = 0;
            Pool::Read.give(std::mem::take(&mut self.rbuf));
        }
    }

    /// Makes space to read into (borrowing the read buffer back if it was
    /// given back): starts over when everything was parsed, moves a
    /// partial frame to the front when the tail is short, grows for a frame
    /// larger than the buffer.
    pub(super) fn make_room(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = Pool::Read.take(self.read_size);
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        let len = self.rbuf.len();
        if len - self.rend >= MIN_READ && len - self.rstart >= self.need {
            return;
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        let want = self.need.max(self.rend + MIN_READ);
        if want > len {
            self.rbuf.resize(want.next_power_of_two(), 0);
        }
    }

    /// Gives back the buffers of the message handed out last, if it was put
    /// together (fragments joined, or inflated): its borrow has ended.
    fn release_message(&mut self) {
        if self.frag_opcode.is_none() && self.frag.capacity() > 0 {
            Pool::Message.give(std::mem::take(&mut self.frag));
        }
        if let Some(z) = &mut self.deflate
            && z.inflated.capacity() > 0
        {
            Pool::Message.give(std::mem::take(&mut z.inflated));
        }
    }

    /// The next complete message in the read buffer, if any. Pings are
    /// answered and fragments put together on the way.
    pub fn next_message(&mut self) -> Result<Option<Msg<'_>>, ProtocolError> {
        self.release_message();
        loop {
            let buf = &mut self.rbuf[self.rstart..self.rend];
            let (parsed, compressed) = match self.deflate {
                Some(_) => crate::deflate::parse(buf, self.max_message)?,
                None => (codec::parse(buf, self.max_message)?, false),
            };
            let head = match parsed {
                Parsed::Need(n) => {
                    self.need = n;
                    self.release_rbuf();
                    return Ok(None);
                }
                Parsed::Frame(head) => head,
            };
            let (start, end) = (
                self.rstart + head.header_len,
                self.rstart + head.frame_len(),
            );
            self.rstart = end;
            self.need = 0;
            match head.opcode {
                OP_TEXT | OP_BINARY if self.frag_opcode.is_some() => {
                    return Err(ProtocolError::Interleaved);
                }
                OP_TEXT | OP_BINARY if head.fin && compressed => {
                    let payload = self.inflate(start..end)?;
                    return Ok(Some(Msg::Data {
                        opcode: head.opcode,
                        payload,
                    }));
                }
                OP_TEXT | OP_BINARY if head.fin => {
                    let payload = &self.rbuf[start..end];
                    return Ok(Some(Msg::Data {
                        opcode: head.opcode,
                        payload,
                    }));
                }
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    if let Some(z) = &mut self.deflate
                        && head.opcode != OP_CONTINUATION
                    {
                        z.compressed_fragments = compressed;
                    }
                    if let Some(opcode) = self.fragment(head.opcode, head.fin, start, end)? {
                        if self
                            .deflate
                            .as_ref()
                            .is_some_and(|z| z.compressed_fragments)
                        {
                            let payload = self.inflate_fragments()?;
                            return Ok(Some(Msg::Data { opcode, payload }));
                        }
                        return Ok(Some(Msg::Data {
                            opcode,
                            payload: &self.frag,
                        }));
                    }
                }
                OP_PING if !self.closing => {
                    // RFC 6455 §5.5.2: answer with the same payload (at most
                    // 125 bytes, copied out so the outbox can borrow `self`).
                    let mut copy = [0u8; 125];
                    let n = end - start;
                    copy[..n].copy_from_slice(&self.rbuf[start..end]);
                    self.queue_control(OP_PONG, &copy[..n]);
                }
                OP_CLOSE => {
                    let code = codec::close_code(&self.rbuf[start..end])?;
                    return Ok(Some(Msg::Close(code)));
                }
                _ => {} // pong, or ping while closing
            }
        }
    }

    /// Inflates the compressed payload at `range` of the read buffer.
    fn inflate(&mut self, range: std::ops::Range<usize>) -> Result<&[u8], ProtocolError> {
        let z = self.deflate.as_mut().ok_or(ProtocolError::ReservedBits)?;
        z.inflate(&self.rbuf[range], self.max_message)
            .map_err(|_| ProtocolError::BadDeflate)
    }

    /// Inflates a compressed fragmented message put together in `frag`.
    fn inflate_fragments(&mut self) -> Result<&[u8], ProtocolError> {
        let z = self.deflate.as_mut().ok_or(ProtocolError::ReservedBits)?;
        z.inflate(&self.frag, self.max_message)
            .map_err(|_| ProtocolError::BadDeflate)
    }

    /// Adds a fragment (the first one, or a continuation) to the message
    /// being put together; returns its opcode once the last one is in.
    fn fragment(
        &mut self,
        opcode: u8,
        fin: bool,
        start: usize,
        end: usize,
    ) -> Result<Option<u8>, ProtocolError> {
        if opcode != OP_CONTINUATION {
            if self.frag.capacity() == 0 {
                self.frag = Pool::Message.take_empty();
            }
            self.frag.clear();
            self.frag_opcode = Some(opcode);
        }
        let message_opcode = self
            .frag_opcode
            .ok_or(ProtocolError::UnexpectedContinuation)?;
        let total = self.frag.len() + (end - start);
        if total > self.max_message {
            return Err(ProtocolError::TooLarge(total as u64));
        }
        self.frag.extend_from_slice(&self.rbuf[start..end]);
        if !fin {
            return Ok(None);
        }
        self.frag_opcode = None;
        Ok(Some(message_opcode))
    }
}
