//! Incremental UTF-8 validation for fragmented text messages.
//!
//! fastwebsockets checks UTF-8 only on unfragmented text frames. For a
//! fragmented message wsecho validates each fragment as it arrives, carrying
//! an incomplete code point (at most 3 bytes) across the boundary, so invalid
//! text fails fast with 1007 instead of after the whole message (RFC 6455
//! §8.1; Autobahn 6.4.1-2).

use simdutf8::compat::from_utf8;

/// The state between fragments: the bytes of a code point not yet complete.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    partial: [u8; 4],
    partial_len: u8,
}

/// The text can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Stream {
    /// Checks the next fragment.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            bytes = self.complete_partial(bytes)?;
        }
        match from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A truncated but so far valid code point: keep it for the
                // next fragment.
                let tail = &bytes[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Checks that the message did not end inside a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Completes the carried code point from the start of `bytes`; returns the
    /// rest of `bytes`.
    fn complete_partial<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], InvalidUtf8> {
        let have = self.partial_len as usize;
        let take = (4 - have).min(bytes.len());
        let mut buf = self.partial;
        buf[have..have + take].copy_from_slice(&bytes[..take]);
        let joined = &buf[..have + take];
        let used = match from_utf8(joined) {
            Ok(_) => take,
            Err(e) if e.valid_up_to() > 0 => e.valid_up_to() - have,
            Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
            Err(_) => {
                // Still incomplete: `bytes` was shorter than the code point.
                self.partial = buf;
                self.partial_len = joined.len() as u8;
                return Ok(&[]);
            }
        };
        self.partial_len = 0;
        Ok(&bytes[used..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_everywhere(text: &[u8]) -> Vec<Result<(), InvalidUtf8>> {
        (0..=text.len())
            .flat_map(|i| (i..=text.len()).map(move |j| (i, j)))
            .map(|(i, j)| {
                let mut v = Utf8Stream::default();
                v.feed(&text[..i])?;
                v.feed(&text[i..j])?;
                v.feed(&text[j..])?;
                v.finish()
            })
            .collect()
    }

    #[test]
    fn valid_text_is_valid_however_it_is_split() {
        let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞".as_bytes();
        assert!(split_everywhere(text).iter().all(Result::is_ok));
    }

    #[test]
    fn invalid_text_is_invalid_however_it_is_split() {
        let text = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited";
        assert!(split_everywhere(text).iter().all(Result::is_err));
    }

    #[test]
    fn invalid_code_point_fails_before_the_message_ends() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"abc\xf4"), Ok(()));
        // U+110000 and above can never be valid: fail on this fragment.
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn message_ending_inside_a_code_point_is_invalid() {
        let mut v = Utf8Stream::default();
        assert_eq!(v.feed(b"ab\xe2\x82"), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }
}
