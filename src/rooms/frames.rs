//! The bytes a room relays: one message's frames, encoded (and compressed)
//! once and shared by every recipient.

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload};

use crate::deflate::SharedDeflate;
use crate::metrics::DeflateBytes;

/// The frames of one relayed message, shared by every recipient: the plain
/// one and one per compressor the room's peers agreed to (usually one kind:
/// the same policy makes the same kind), made outside the room's lock.
pub(super) struct Frames<'a> {
    opcode: OpCode,
    payload: &'a [u8],
    plain: Bytes,
    /// Per kind: the frame, and its compressed payload's length (None when
    /// compressing did not shrink it, and the plain frame went instead).
    deflated_frames: Vec<(SharedDeflate, Bytes, Option<usize>)>,
    /// Compressed payload bytes delivered, before and after.
    pub(super) deflated: DeflateBytes,
}

impl<'a> Frames<'a> {
    pub(super) fn new(opcode: OpCode, payload: &'a [u8]) -> Self {
        Frames {
            opcode,
            payload,
            plain: encode(opcode, payload, false),
            deflated_frames: Vec::new(),
            deflated: DeflateBytes::default(),
        }
    }

    /// Compresses the message for each of `kinds` ahead of [`Frames::get`].
    pub(super) fn compress(&mut self, kinds: &[SharedDeflate]) {
        for &kind in kinds {
            self.deflated(kind);
        }
    }

    /// The frame for a peer that takes `deflate` (None: plain); compressed
    /// now for a peer whose kind joined since [`Frames::compress`].
    pub(super) fn get(&mut self, deflate: Option<SharedDeflate>) -> &Bytes {
        let Some(kind) = deflate else {
            return &self.plain;
        };
        let i = self.deflated(kind);
        let (_, frame, len) = &self.deflated_frames[i];
        if let Some(len) = len {
            self.deflated.sent_uncompressed += self.payload.len() as u64;
            self.deflated.sent_compressed += *len as u64;
        }
        frame
    }

    /// Where `kind`'s frame is in `deflated_frames`, made on first need: the
    /// compressed frame when it is shorter; else the plain one, which RFC
    /// 7692 allows without context takeover (and is what a failed
    /// compression, a bug, falls back to).
    fn deflated(&mut self, kind: SharedDeflate) -> usize {
        if let Some(i) = self.deflated_frames.iter().position(|(k, ..)| *k == kind) {
            return i;
        }
        let mut out = Vec::new();
        let (frame, len) = match kind.compress(self.payload, &mut out) {
            Ok(()) if out.len() < self.payload.len() => {
                (encode(self.opcode, &out, true), Some(out.len()))
            }
            _ => (self.plain.clone(), None),
        };
        self.deflated_frames.push((kind, frame, len));
        self.deflated_frames.len() - 1
    }
}

/// A whole unmasked message frame, RSV1 set for a compressed payload: the
/// one copy a broadcast makes of each payload it sends, shared by every
/// recipient of that frame.
fn encode(opcode: OpCode, payload: &[u8], compressed: bool) -> Bytes {
    let mut head = [0u8; 16];
    let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
    if compressed {
        head[0] |= 0x40;
    }
    let mut frame = BytesMut::with_capacity(n + payload.len());
    frame.extend_from_slice(&head[..n]);
    frame.extend_from_slice(payload);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::{DeflatePolicy, Params};

    fn kind(bits: u8) -> Option<SharedDeflate> {
        let params = Params {
            server_no_context_takeover: true,
            server_max_window_bits: Some(bits),
            ..Params::default()
        };
        SharedDeflate::new(&params, &DeflatePolicy::ON)
    }

    /// A raw deflate payload with the stripped tail restored, inflated.
    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 16);
        flate2::Decompress::new(false)
            .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn encoded_frames_are_final_and_unmasked() {
        assert_eq!(
            &encode(OpCode::Text, b"hi", false)[..],
            &[0x81, 2, b'h', b'i']
        );
        let big = encode(OpCode::Binary, &[0u8; 300], false);
        assert_eq!(&big[..4], &[0x82, 126, 1, 44]);
        assert_eq!(big.len(), 304);
        assert_eq!(&encode(OpCode::Text, b"z", true)[..], &[0xc1, 1, b'z']);
    }

    #[test]
    fn a_relay_is_compressed_once_per_kind_when_that_shrinks_it() {
        let text = "{\"user\":\"a\",\"text\":\"hello room\"}".repeat(40);
        let mut frames = Frames::new(OpCode::Text, text.as_bytes());
        frames.compress(&[kind(15).unwrap()]);
        assert_eq!(
            frames.get(None),
            &encode(OpCode::Text, text.as_bytes(), false)
        );
        let wide = frames.get(kind(15)).clone();
        assert_eq!(wide[0], 0xc1, "FIN, RSV1, text");
        assert_eq!(usize::from(wide[1]), wide.len() - 2, "a 7-bit length");
        assert_eq!(inflate(&wide[2..]), text.as_bytes());
        let again = frames.get(kind(15)).clone();
        assert_eq!(again.as_ptr(), wide.as_ptr(), "compressed once, shared");
        // A kind that joined after the room was read: compressed on demand.
        let narrow = frames.get(kind(9)).clone();
        assert_ne!(
            narrow.as_ptr(),
            wide.as_ptr(),
            "another kind, another frame"
        );
        assert_eq!(frames.get(kind(9)).as_ptr(), narrow.as_ptr());
        assert_eq!(narrow[0], 0xc1);
        assert_eq!(inflate(&narrow[2..]), text.as_bytes());
        // Counted per delivery: four compressed ones.
        let expected = DeflateBytes {
            sent_uncompressed: 4 * text.len() as u64,
            sent_compressed: (2 * (wide.len() - 2) + 2 * (narrow.len() - 2)) as u64,
            ..DeflateBytes::default()
        };
        assert_eq!(frames.deflated, expected);
    }

    #[test]
    fn a_relay_that_does_not_shrink_goes_plain_to_everyone() {
        let mut frames = Frames::new(OpCode::Binary, b"abc");
        frames.compress(&[kind(15).unwrap()]);
        let plain = frames.get(None).clone();
        assert_eq!(frames.get(kind(15)).as_ptr(), plain.as_ptr());
        assert_eq!(frames.deflated, DeflateBytes::default());
    }

    #[test]
    fn a_peer_with_server_context_takeover_is_relayed_plain_messages() {
        assert_eq!(
            SharedDeflate::new(&Params::default(), &DeflatePolicy::TAKEOVER),
            None
        );
    }
}
