//! `/.http` and `/.http/...`, any method: the request as the server saw it,
//! as JSON (SPEC §1.6).
//!
//! ```json
//! {"server": "box-1", "method": "POST", "path": "/.http/x", "query": "a=1",
//!  "version": "HTTP/1.1", "client": "127.0.0.1:50312",
//!  "tls": {"version": "TLSv1.3", "alpn": "h2"},
//!  "headers": [["host", "localhost"], ["accept", "*/*"]],
//!  "body": {"length": 5, "sha256": "2cf2…", "text": "hello"}}
//! ```
//!
//! - `query` is null without a `?`; `tls` is null on cleartext.
//! - `headers`: name (lower case, as hyper keeps them) and value pairs, in
//!   the order the names first arrived; a repeated name's values are listed
//!   together, in their order, at its first place (hyper's `HeaderMap`
//!   groups them). HTTP/2 pseudo-headers are not headers: the authority is
//!   in `authority`.
//! - `body`: `length` and `sha256` always; the body itself when it is at
//!   most [`SHOWN`] bytes, as `text` when it is UTF-8, else as `base64`.
//!   Past `--http-echo-max-body` the answer is 413, and the body is never
//!   logged.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::body::{Body, full, text};
use super::state::{ConnInfo, TlsInfo};

/// The largest body shown in the answer; longer ones get length and hash.
pub const SHOWN: usize = 64 << 10;

#[derive(Serialize)]
struct Echo<'a> {
    server: &'a str,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    authority: Option<&'a str>,
    version: &'static str,
    client: String,
    tls: Option<Tls<'a>>,
    headers: Vec<(&'a str, String)>,
    body: BodyInfo,
}

#[derive(Serialize)]
struct Tls<'a> {
    version: &'static str,
    alpn: Option<&'a str>,
}

#[derive(Serialize)]
struct BodyInfo {
    length: usize,
    sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

/// Reads the body (at most `max_body` bytes, within `deadline`) and
/// describes the request.
pub async fn answer(
    req: Request<Incoming>,
    conn: &ConnInfo,
    server: &HeaderValue,
    max_body: usize,
    deadline: Duration,
) -> Response<Body> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return too_large(max_body);
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(deadline, Limited::new(body, max_body).collect());
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(max_body),
        // Most often the client went away mid-body; if it is still there,
        // its body was malformed (bad chunking), which is its error.
        Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "unreadable body\n".into()),
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time\n".into(),
            );
        }
    };
    let req = Request::from_parts(parts, ());
    let json = describe(&req, &body, conn, server);
    let mut res = Response::new(full(json));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("x-server", server.clone());
    res
}

fn too_large(max_body: usize) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("bodies over {max_body} bytes are not echoed (--http-echo-max-body)\n"),
    )
}

fn describe(req: &Request<()>, body: &Bytes, conn: &ConnInfo, server: &HeaderValue) -> String {
    let shown = (body.len() <= SHOWN).then_some(&body[..]);
    let text = shown.and_then(|b| std::str::from_utf8(b).ok());
    let echo = Echo {
        server: server.to_str().unwrap_or("wsecho"),
        method: req.method().as_str(),
        path: req.uri().path(),
        query: req.uri().query(),
        authority: req.uri().authority().map(|a| a.as_str()),
        version: version(req.version()),
        client: conn.peer.to_string(),
        tls: conn.tls.as_ref().map(|t: &TlsInfo| Tls {
            version: t.version,
            alpn: t.alpn.as_deref(),
        }),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: BodyInfo {
            length: body.len(),
            sha256: hex(&Sha256::digest(body)),
            text: text.map(str::to_owned),
            base64: match (shown, text) {
                (Some(b), None) => Some(BASE64.encode(b)),
                _ => None,
            },
        },
    };
    let mut json = serde_json::to_string_pretty(&echo).expect("plain data serializes");
    json.push('\n');
    json
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "unknown",
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:4000".parse().unwrap(),
            tls: None,
        }
    }

    fn json(req: &Request<()>, body: &[u8]) -> serde_json::Value {
        let server = HeaderValue::from_static("t");
        serde_json::from_str(&describe(
            req,
            &Bytes::copy_from_slice(body),
            &conn(),
            &server,
        ))
        .unwrap()
    }

    #[test]
    fn repeated_headers_are_kept_in_order() {
        let req = Request::post("/.http/a?x=1")
            .header("x-a", "1")
            .header("x-b", "2")
            .header("x-a", "3")
            .body(())
            .unwrap();
        let j = json(&req, b"");
        assert_eq!(j["path"], "/.http/a");
        assert_eq!(j["query"], "x=1");
        assert_eq!(
            j["headers"],
            serde_json::json!([["x-a", "1"], ["x-a", "3"], ["x-b", "2"]])
        );
    }

    #[test]
    fn bodies_are_text_when_utf8_and_base64_otherwise() {
        let req = Request::post("/.http").body(()).unwrap();
        let j = json(&req, b"hello");
        assert_eq!(j["body"]["text"], "hello");
        assert_eq!(
            j["body"]["sha256"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let j = json(&req, &[0xff, 0x00]);
        assert_eq!(j["body"]["base64"], "/wA=");
        assert!(j["body"].get("text").is_none());
        let j = json(&req, &vec![b'a'; SHOWN + 1]);
        assert_eq!(j["body"]["length"], SHOWN + 1);
        assert!(j["body"].get("text").is_none() && j["body"].get("base64").is_none());
    }
}
