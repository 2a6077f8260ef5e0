//! Close frames: validating what a peer sends (RFC 6455 §5.5.1, §7.4) and the
//! codes wsecho answers with.
//!
//! fastwebsockets' `auto_close` is off because it answers a 126-byte close
//! payload with 1000 (Autobahn 7.3.6) and can send a second close frame; this
//! module decides instead.

/// Close codes wsecho sends (RFC 6455 §7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// What a received close frame asks of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClose {
    /// A well-formed close: reply with this code (`None`: the peer sent no
    /// code, so the reply carries none either).
    Valid(Option<u16>),
    /// A malformed close: fail the connection with this code.
    Invalid(u16),
}

/// Checks a close payload: empty, or a valid code plus a UTF-8 reason, in at
/// most 125 bytes.
pub fn parse_peer_close(payload: &[u8]) -> PeerClose {
    match payload {
        [] => PeerClose::Valid(None),
        // §5.5: control frame payloads are at most 125 bytes. fastwebsockets
        // only enforces this for pings.
        p if p.len() > 125 => PeerClose::Invalid(code::PROTOCOL_ERROR),
        [_] => PeerClose::Invalid(code::PROTOCOL_ERROR),
        [hi, lo, reason @ ..] => {
            let c = u16::from_be_bytes([*hi, *lo]);
            if !is_sendable(c) {
                PeerClose::Invalid(code::PROTOCOL_ERROR)
            } else if std::str::from_utf8(reason).is_err() {
                PeerClose::Invalid(code::INVALID_PAYLOAD)
            } else {
                PeerClose::Valid(Some(c))
            }
        }
    }
}

/// Codes a peer may put on the wire (§7.4.1-2 and the IANA registry): 1004,
/// 1005, 1006 and 1015 are reserved for local use, 1016-2999 unassigned.
pub fn is_sendable(c: u16) -> bool {
    matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A close payload: the code, big-endian, then the reason (which callers
/// keep short and ASCII, so it stays within the 125-byte control limit).
pub fn payload(code: u16, reason: &str) -> Vec<u8> {
    debug_assert!(
        reason.len() <= 123,
        "close reason over the control-frame limit"
    );
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(reason.as_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_close_is_answered_without_a_code() {
        assert_eq!(parse_peer_close(&[]), PeerClose::Valid(None));
    }

    #[test]
    fn one_byte_close_is_a_protocol_error() {
        assert_eq!(parse_peer_close(&[3]), PeerClose::Invalid(1002));
    }

    #[test]
    fn oversized_close_is_a_protocol_error() {
        let mut p = payload(1000, "");
        p.resize(126, b'a');
        assert_eq!(parse_peer_close(&p), PeerClose::Invalid(1002));
    }

    #[test]
    fn reserved_and_unassigned_codes_are_protocol_errors() {
        for c in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        ] {
            assert_eq!(
                parse_peer_close(&c.to_be_bytes()),
                PeerClose::Invalid(1002),
                "{c}"
            );
        }
        for c in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert_eq!(
                parse_peer_close(&c.to_be_bytes()),
                PeerClose::Valid(Some(c)),
                "{c}"
            );
        }
    }

    #[test]
    fn invalid_utf8_reason_is_an_invalid_payload() {
        let p = [
            0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed,
            0xa0, 0x80,
        ];
        assert_eq!(parse_peer_close(&p), PeerClose::Invalid(1007));
    }
}
