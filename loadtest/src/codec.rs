//! The client side of RFC 6455 framing, as pure functions over buffers.
//!
//! Why not fastwebsockets' `read_frame`: it owns the socket and awaits the
//! payload after consuming the header, so it cannot be raced against a
//! send timer (dropping it mid-frame loses the header), and its writer
//! masks the payload in a second pass and copies frames under 1 KiB once
//! more. Here parsing only looks at bytes already read, so the connection
//! loop can wait on "readable, writable or timer" at once and nothing is
//! ever half-consumed; encoding writes the header in place and leaves the
//! payload to [`crate::payload`], which generates it already masked.

/// Opcodes (RFC 6455 §5.2).
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Longest client frame header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER: usize = 14;

/// A frame header read from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

impl Head {
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// What the front of the read buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame.
    Frame(Head),
    /// Not a whole frame yet; at least this many bytes are needed.
    Need(usize),
}

/// A frame no conforming server sends; the connection is failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("reserved bits set without an extension")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    BadOpcode(u8),
    #[error("masked frame from the server")]
    Masked,
    #[error("control frame over 125 bytes")]
    ControlTooLong,
    #[error("fragmented control frame")]
    ControlFragmented,
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u64),
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new message before the fragmented one ended")]
    Interleaved,
    #[error("malformed close frame")]
    BadClose,
    #[error("compressed message that does not inflate, or inflates past the limit")]
    BadDeflate,
}

/// Parses the frame at the front of `buf` (server frames: never masked).
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Parsed, ProtocolError> {
    if buf.len() < 2 {
        return Ok(Parsed::Need(2));
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let control = opcode & 0x8 != 0;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        other => return Err(ProtocolError::BadOpcode(other)),
    }
    // RFC 6455 §5.1: a client closes on a masked frame from the server.
    if b1 & 0x80 != 0 {
        return Err(ProtocolError::Masked);
    }
    let (header_len, payload_len) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Ok(Parsed::Need(4)),
        126 => (4, u16::from_be_bytes([buf[2], buf[3]]) as u64),
        127 if buf.len() < 10 => return Ok(Parsed::Need(10)),
        127 => (
            10,
            u64::from_be_bytes(buf[2..10].try_into().unwrap_or_default()),
        ),
        n => (2, n as u64),
    };
    if control && payload_len > 125 {
        return Err(ProtocolError::ControlTooLong);
    }
    if control && !fin {
        return Err(ProtocolError::ControlFragmented);
    }
    if payload_len > max_payload as u64 {
        return Err(ProtocolError::TooLarge(payload_len));
    }
    let head = Head {
        fin,
        opcode,
        header_len,
        payload_len: payload_len as usize,
    };
    if buf.len() < head.frame_len() {
        return Ok(Parsed::Need(head.frame_len()));
    }
    Ok(Parsed::Frame(head))
}

/// Writes a final, masked frame header for `len` payload bytes into `out`
/// (at least [`MAX_HEADER`] long); returns its length.
pub fn write_header(out: &mut [u8], opcode: u8, len: usize, mask: [u8; 4]) -> usize {
    out[0] = 0x80 | opcode;
    let n = if len < 126 {
        out[1] = 0x80 | len as u8;
        2
    } else if len < 65_536 {
        out[1] = 0x80 | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 0x80 | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    out[n..n + 4].copy_from_slice(&mask);
    n + 4
}

/// XORs `buf` with the mask key; `offset` is `buf`'s position in the payload.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(offset + i) & 3];
    }
}

/// The status code of a close frame's payload (None: no code), or an error
/// for a one-byte payload or a reason that is not UTF-8 (RFC 6455 §5.5.1).
pub fn close_code(payload: &[u8]) -> Result<Option<u16>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::BadClose),
        [a, b, reason @ ..] => {
            std::str::from_utf8(reason).map_err(|_| ProtocolError::BadClose)?;
            Ok(Some(u16::from_be_bytes([*a, *b])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n < 65_536 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parses_each_length_form_and_waits_for_the_rest() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let f = server_frame(OP_BINARY, &vec![7; len]);
            let Ok(Parsed::Frame(h)) = parse(&f, 1 << 20) else {
                panic!("len {len}")
            };
            assert_eq!((h.payload_len, h.frame_len()), (len, f.len()));
            assert!(matches!(parse(&f[..f.len() - 1], 1 << 20), Ok(Parsed::Need(_))) || len == 0);
        }
        assert_eq!(parse(&[0x82], 10), Ok(Parsed::Need(2)));
        assert_eq!(parse(&[0x82, 126, 0], 10), Ok(Parsed::Need(4)));
    }

    #[test]
    fn rejects_what_a_server_must_not_send() {
        assert_eq!(parse(&[0xC2, 0], 10), Err(ProtocolError::ReservedBits));
        assert_eq!(parse(&[0x83, 0], 10), Err(ProtocolError::BadOpcode(3)));
        assert_eq!(parse(&[0x82, 0x80], 10), Err(ProtocolError::Masked));
        assert_eq!(
            parse(&[0x89, 126, 0, 200], 1000),
            Err(ProtocolError::ControlTooLong)
        );
        assert_eq!(parse(&[0x09, 0], 10), Err(ProtocolError::ControlFragmented));
        assert_eq!(parse(&[0x82, 100], 10), Err(ProtocolError::TooLarge(100)));
    }

    #[test]
    fn header_round_trips_through_a_server_style_parser() {
        for len in [0usize, 20, 126, 16 << 10, 70_000] {
            let mut out = [0u8; MAX_HEADER];
            let n = write_header(&mut out, OP_TEXT, len, [1, 2, 3, 4]);
            // Clear the mask bit and drop the key: what a server sees.
            let mut unmasked = out[..n - 4].to_vec();
            unmasked[1] &= 0x7f;
            unmasked.extend(std::iter::repeat_n(0, len));
            let Ok(Parsed::Frame(h)) = parse(&unmasked, 1 << 20) else {
                panic!()
            };
            assert_eq!((h.opcode, h.payload_len), (OP_TEXT, len));
            assert_eq!(&out[n - 4..n], &[1, 2, 3, 4]);
        }
    }

    #[test]
    fn close_codes_and_bad_close_payloads() {
        assert_eq!(close_code(&[]), Ok(None));
        assert_eq!(close_code(&[0x03, 0xe8, b'o', b'k']), Ok(Some(1000)));
        assert_eq!(close_code(&[3]), Err(ProtocolError::BadClose));
        assert_eq!(close_code(&[3, 0xe8, 0xff]), Err(ProtocolError::BadClose));
    }
}
