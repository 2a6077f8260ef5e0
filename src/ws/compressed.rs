//! permessage-deflate on one session (RFC 7692): a compressed message (RSV1
//! on its first frame) is inflated piece by piece as it arrives, capped at
//! the message limit and, for text, validated as it comes out; the route
//! then gets the whole inflated message as one piece. Its echo goes back
//! compressed.
//!
//! Only sessions that negotiated the extension have one of these, boxed:
//! an idle session without it carries a null pointer. Under the default
//! policy (no context takeover) an idle one holds no zlib context either;
//! contexts are borrowed from the worker's pool per message (see
//! [`crate::deflate`]).

use crate::deflate::{DeflateError, DeflatePolicy, Deflater, InflateError, Inflater, Params};
use crate::metrics::DeflateBytes;
use crate::utf8::Utf8Stream;

#[derive(Debug)]
pub(crate) struct Compression {
    inflater: Inflater,
    deflater: Deflater,
    /// The message being received is compressed.
    receiving: bool,
    /// Its inflated bytes so far; handed to the route whole at its end.
    inflated: Vec<u8>,
    /// Bytes before and after compression since the last metrics flush:
    /// kept here, not in the session's counts, so a session without
    /// deflate carries none of them.
    pub(crate) bytes: DeflateBytes,
}

impl Compression {
    pub(crate) fn new(params: &Params, policy: &DeflatePolicy, max_message: usize) -> Self {
        Compression {
            inflater: Inflater::new(params, max_message),
            deflater: Deflater::new(params, policy),
            receiving: false,
            inflated: Vec::new(),
            bytes: DeflateBytes::default(),
        }
    }

    /// RSV1 on the first frame of a data message: it is compressed.
    pub(crate) fn start_message(&mut self) {
        self.receiving = true;
    }

    /// Whether the message in progress is compressed.
    pub(crate) fn receiving(&self) -> bool {
        self.receiving
    }

    /// Inflates one payload piece of the compressed message in progress;
    /// `utf8` (text messages) sees every inflated chunk as soon as it
    /// exists, so bad text fails one chunk in, not at the cap. At the end of
    /// the message returns it, inflated and checked.
    pub(crate) fn inflate(
        &mut self,
        piece: &[u8],
        ends_message: bool,
        mut utf8: Option<&mut Utf8Stream>,
    ) -> Result<Option<Vec<u8>>, InflateError> {
        self.bytes.received_compressed += piece.len() as u64;
        let mut check = |chunk: &[u8]| utf8.as_mut().is_none_or(|u| u.feed(chunk).is_ok());
        let fed = self
            .inflater
            .feed_with(piece, &mut self.inflated, &mut check);
        if let Err(e) = fed {
            self.abandon();
            return Err(e);
        }
        if !ends_message {
            return Ok(None);
        }
        self.receiving = false;
        let finished = self.inflater.finish_with(&mut self.inflated, &mut check);
        // Taken, not kept: an idle connection holds no message buffer.
        let message = std::mem::take(&mut self.inflated);
        finished?;
        if let Some(u) = utf8
            && u.finish().is_err()
        {
            return Err(InflateError::Rejected);
        }
        self.bytes.received_inflated += message.len() as u64;
        Ok(Some(message))
    }

    /// Compresses a message to send. Always, even when that does not shrink
    /// it (RFC 7692 would allow sending it plain): a client that compressed
    /// a message expects its echo compressed, and Autobahn's harness
    /// (kosoku 0.1.0) errors on a plain echo of a short compressed text
    /// message ("Strings must be encoded before hashing", cases 12.*.1-2).
    pub(crate) fn compress(&mut self, message: &[u8]) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        self.deflater.compress(message, &mut out)?;
        self.bytes.sent_uncompressed += message.len() as u64;
        self.bytes.sent_compressed += out.len() as u64;
        Ok(out)
    }

    fn abandon(&mut self) {
        self.inflater.abandon();
        self.receiving = false;
        self.inflated = Vec::new();
    }
}
