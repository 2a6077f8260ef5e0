//! The opening handshake: deciding whether a request asks for a WebSocket,
//! over HTTP/1.1 (RFC 6455 §4.2, `Upgrade`) or HTTP/2 (RFC 8441, extended
//! CONNECT), checking it, and computing `Sec-WebSocket-Accept`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use hyper::{Method, Request, Version};
use sha1::{Digest, Sha1};

use super::refusal::{
    BAD_KEY, NO_CONNECTION_UPGRADE, NO_VERSION, OLD_HTTP, Refusal, WRONG_METHOD, WRONG_VERSION,
};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How a request asks for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// HTTP/1.1 `Upgrade: websocket` (RFC 6455 §4.1).
    Upgrade,
    /// HTTP/2 `CONNECT` with `:protocol = websocket` (RFC 8441 §4).
    Connect,
}

/// A handshake that passed its checks, and what the answer must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// 101 with this `Sec-WebSocket-Accept`.
    Upgrade(HeaderValue),
    /// 200, and no `Sec-WebSocket-Accept` (RFC 8441 §5: the stream is the
    /// proof; there is no key).
    Connect,
}

/// Does the request ask for a WebSocket, and how?
pub fn ask<B>(req: &Request<B>) -> Option<Ask> {
    if req.method() == Method::CONNECT {
        let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
        return protocol
            .as_str()
            .eq_ignore_ascii_case("websocket")
            .then_some(Ask::Connect);
    }
    header_has_token(req.headers(), UPGRADE, "websocket").then_some(Ask::Upgrade)
}

/// Checks a request that asked for a WebSocket.
pub fn check<B>(req: &Request<B>, ask: Ask) -> Result<Handshake, Refusal> {
    match ask {
        Ask::Upgrade => accept(req).map(Handshake::Upgrade),
        Ask::Connect => {
            // RFC 8441 §5: the version header is still sent and checked; the
            // method and `:protocol` were checked by `ask`.
            check_version(req.headers())?;
            Ok(Handshake::Connect)
        }
    }
}

fn check_version(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get("sec-websocket-version") {
        None => Err(NO_VERSION),
        Some(v) if v.as_bytes() != b"13" => Err(WRONG_VERSION),
        Some(_) => Ok(()),
    }
}

/// Checks an HTTP/1.1 upgrade request; returns the `Sec-WebSocket-Accept` value.
fn accept<B>(req: &Request<B>) -> Result<HeaderValue, Refusal> {
    if req.method() != Method::GET {
        return Err(WRONG_METHOD);
    }
    if req.version() != Version::HTTP_11 {
        return Err(OLD_HTTP);
    }
    let headers = req.headers();
    if !header_has_token(headers, CONNECTION, "upgrade") {
        return Err(NO_CONNECTION_UPGRADE);
    }
    check_version(headers)?;
    let key = headers.get("sec-websocket-key").ok_or(BAD_KEY)?;
    match BASE64.decode(key.as_bytes()) {
        Ok(nonce) if nonce.len() == 16 => Ok(accept_key(key.as_bytes())),
        _ => Err(BAD_KEY),
    }
}

/// Browsers send `Origin`; with an allow-list, only those origins may
/// connect (§10.2). Requests without one are not from a browser page.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    match headers.get("origin") {
        _ if allowed.is_empty() => true,
        None => true,
        Some(origin) => allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
    }
}

/// The first subprotocol the client offers that we support (§4.2.2 /subprotocol/).
pub fn select_subprotocol(headers: &HeaderMap, supported: &[String]) -> Option<HeaderValue> {
    if supported.is_empty() {
        return None;
    }
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offer| supported.iter().any(|s| s == offer))
        .and_then(|p| HeaderValue::from_str(p).ok())
}

/// `base64(sha1(key ++ GUID))` (§4.2.2).
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let encoded = BASE64.encode(sha1.finalize());
    HeaderValue::try_from(encoded).expect("base64 is a valid header value")
}

/// Whether any `name` header holds `token` in its comma-separated list
/// (case-insensitive, as `Connection: keep-alive, Upgrade` is common).
fn header_has_token(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn well_formed_upgrade_is_accepted() {
        assert_eq!(
            accept(&request(&GOOD)).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn key_that_is_not_16_bytes_is_refused() {
        let mut h = GOOD;
        h[3].1 = "c2hvcnQ=";
        assert_eq!(accept(&request(&h)), Err(BAD_KEY));
    }

    #[test]
    fn other_versions_get_426() {
        let mut h = GOOD;
        h[2].1 = "8";
        assert_eq!(
            accept(&request(&h)).unwrap_err().status,
            StatusCode::UPGRADE_REQUIRED
        );
    }

    #[test]
    fn first_offered_supported_subprotocol_is_selected() {
        let req = request(&[
            ("sec-websocket-protocol", "chat.v2, echo"),
            ("sec-websocket-protocol", "chat.v1"),
        ]);
        let ours = ["chat.v1".to_owned(), "echo".to_owned()];
        assert_eq!(select_subprotocol(req.headers(), &ours).unwrap(), "echo");
        assert_eq!(
            select_subprotocol(req.headers(), &["mqtt".to_owned()]),
            None
        );
    }

    #[test]
    fn origin_allow_list_applies_only_to_browsers() {
        let allowed = ["https://example.com".to_owned()];
        let from = |o: &str| request(&[("origin", o)]);
        assert!(origin_allowed(
            from("https://example.com").headers(),
            &allowed
        ));
        assert!(!origin_allowed(
            from("https://evil.example").headers(),
            &allowed
        ));
        assert!(origin_allowed(request(&[]).headers(), &allowed));
        assert!(origin_allowed(from("https://evil.example").headers(), &[]));
    }

    #[test]
    fn extended_connect_needs_the_websocket_protocol_and_version_13() {
        let connect = |protocol: Option<&'static str>, version: &str| {
            let mut b = Request::builder()
                .method(Method::CONNECT)
                .version(hyper::Version::HTTP_2)
                .uri("https://example.com/chat/x")
                .header("sec-websocket-version", version);
            if let Some(p) = protocol {
                b = b.extension(hyper::ext::Protocol::from_static(p));
            }
            b.body(()).unwrap()
        };
        let req = connect(Some("websocket"), "13");
        assert_eq!(ask(&req), Some(Ask::Connect));
        assert_eq!(check(&req, Ask::Connect), Ok(Handshake::Connect));
        assert_eq!(ask(&connect(None, "13")), None);
        assert_eq!(ask(&connect(Some("webtransport"), "13")), None);
        let old = connect(Some("websocket"), "8");
        assert_eq!(check(&old, Ask::Connect), Err(WRONG_VERSION));
    }

    #[test]
    fn missing_connection_upgrade_is_refused() {
        let mut h = GOOD;
        h[1].1 = "keep-alive";
        assert_eq!(accept(&request(&h)), Err(NO_CONNECTION_UPGRADE));
    }
}
