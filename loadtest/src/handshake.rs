//! The opening handshake (RFC 6455 §4.1), done by hand so it can be timed
//! apart from the TCP/TLS connect, carry `-H` headers and a subprotocol,
//! and be checked strictly: a wrong `Sec-WebSocket-Accept` is a failure.

use std::io;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::deflate::{self, Negotiated, Offer};
use crate::net::{Stream, micros};
use crate::target::Target;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// A response head longer than this is not a WebSocket server talking.
const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 64;

/// What every connection asks for, prepared once.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// The request up to (not including) the key header.
    prefix: String,
    /// The rest of the request after the key header.
    suffix: String,
    subprotocol: Option<String>,
    /// The request target, for `--http2`'s `:path`.
    path: String,
    /// `--deflate`: the offer sent, which the answer is checked against.
    deflate: Option<Offer>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("connection closed during the handshake")]
    Eof,
    #[error("HTTP {0} instead of 101 Switching Protocols")]
    Status(u16),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("the response head is over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("missing `Upgrade: websocket` or `Connection: Upgrade`")]
    NotUpgrade,
    #[error("wrong Sec-WebSocket-Accept")]
    BadAccept,
    #[error("subprotocol: asked for {asked:?}, server chose {chose:?}")]
    Subprotocol {
        asked: Option<String>,
        chose: Option<String>,
    },
    #[error("server chose extensions {0:?} that were not offered")]
    Extensions(String),
    #[error("bad permessage-deflate answer: {0}")]
    Deflate(String),
}

/// The result of a good handshake.
pub struct Upgraded {
    /// Bytes that arrived after the response head: the first frames.
    pub leftover: Vec<u8>,
    pub handshake_us: u64,
    /// `--deflate`: what the server agreed to (None: declined).
    pub deflate: Option<Negotiated>,
}

impl Upgrade {
    pub fn new(target: &Target, headers: &[(String, String)], subprotocol: Option<&str>) -> Self {
        let mut prefix = format!("GET {} HTTP/1.1\r\n", target.path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            prefix.push_str(&format!("Host: {}\r\n", target.host_header()));
        }
        prefix
            .push_str("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
        let mut suffix = String::new();
        if let Some(p) = subprotocol {
            suffix.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        for (k, v) in headers {
            suffix.push_str(&format!("{k}: {v}\r\n"));
        }
        suffix.push_str("\r\n");
        Upgrade {
            prefix,
            suffix,
            subprotocol: subprotocol.map(str::to_owned),
            path: target.path.clone(),
            deflate: None,
        }
    }

    /// Adds the `--deflate` offer to the request.
    pub fn with_deflate(mut self, offer: Option<&Offer>) -> Self {
        if let Some(offer) = offer {
            self.suffix.truncate(self.suffix.len() - 2);
            self.suffix.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n\r\n",
                offer.header
            ));
            self.deflate = Some(offer.clone());
        }
        self
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends the request with a key made of `nonce` and checks the answer.
    pub async fn run(
        &self,
        stream: &mut Stream,
        nonce: [u8; 16],
        timeout: Duration,
    ) -> Result<Upgraded, HandshakeError> {
        let started = Instant::now();
        let key = BASE64.encode(nonce);
        let request = format!("{}Sec-WebSocket-Key: {key}\r\n{}", self.prefix, self.suffix);
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            stream.flush().await?;
            read_head(stream).await
        };
        let (head, leftover) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        let deflate = self.check(&head, &key)?;
        Ok(Upgraded {
            leftover,
            handshake_us: micros(started.elapsed()),
            deflate,
        })
    }

    fn check(&self, head: &[u8], key: &str) -> Result<Option<Negotiated>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        response
            .parse(head)
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let status = response.code.unwrap_or(0);
        if status != 101 {
            return Err(HandshakeError::Status(status));
        }
        let get = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
        };
        let upgrade_ok = get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let connection_ok = get("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        if !upgrade_ok || !connection_ok {
            return Err(HandshakeError::NotUpgrade);
        }
        if get("sec-websocket-accept").as_deref() != Some(accept_key(key).as_str()) {
            return Err(HandshakeError::BadAccept);
        }
        let chose = get("sec-websocket-protocol");
        if chose != self.subprotocol {
            return Err(HandshakeError::Subprotocol {
                asked: self.subprotocol.clone(),
                chose,
            });
        }
        let extensions = get("sec-websocket-extensions").filter(|e| !e.is_empty());
        match (&self.deflate, extensions) {
            (Some(offer), answer) => {
                deflate::accept(offer, answer.as_deref()).map_err(HandshakeError::Deflate)
            }
            (None, Some(ext)) => Err(HandshakeError::Extensions(ext)),
            (None, None) => Ok(None),
        }
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// Reads up to the blank line; returns the head and whatever came after it.
async fn read_head(stream: &mut Stream) -> Result<(Vec<u8>, Vec<u8>), HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find_blank_line(&buf[searched_from..]) {
            let end = searched_from + i + 4;
            let leftover = buf.split_off(end);
            return Ok((buf, leftover));
        }
        if buf.len() > MAX_HEAD {
            return Err(HandshakeError::TooLarge);
        }
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn request_carries_host_headers_and_subprotocol() {
        let t = Target::parse("ws://localhost:9900/echo").unwrap();
        let u = Upgrade::new(&t, &[("X-A".into(), "1".into())], Some("chat"));
        let req = format!("{}Sec-WebSocket-Key: k\r\n{}", u.prefix, u.suffix);
        assert!(req.starts_with("GET /echo HTTP/1.1\r\nHost: localhost:9900\r\n"));
        assert!(req.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(req.ends_with("X-A: 1\r\n\r\n"));
        let custom_host = Upgrade::new(&t, &[("host".into(), "other".into())], None);
        assert!(!custom_host.prefix.contains("Host: localhost"));
    }

    #[test]
    fn responses_are_checked_strictly() {
        let t = Target::parse("ws://h/").unwrap();
        let u = Upgrade::new(&t, &[], None);
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(u.check(ok.as_bytes(), key).is_ok());
        let bad = ok.replace("s3pP", "AAAA");
        assert!(matches!(
            u.check(bad.as_bytes(), key),
            Err(HandshakeError::BadAccept)
        ));
        let refused = "HTTP/1.1 426 Upgrade Required\r\n\r\n";
        assert!(matches!(
            u.check(refused.as_bytes(), key),
            Err(HandshakeError::Status(426))
        ));
        let proto = ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: x\r\n\r\n");
        assert!(matches!(
            u.check(proto.as_bytes(), key),
            Err(HandshakeError::Subprotocol { .. })
        ));
    }
}
