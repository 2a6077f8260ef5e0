//! The response body every answer uses: whole (most answers) or an event
//! stream (`/.sse`); an enum, not a box, so a handshake's empty body costs
//! no allocation.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::sse::EventStream;

pub type Body = Either<Full<Bytes>, EventStream>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

pub fn events(stream: EventStream) -> Body {
    Either::Right(stream)
}

pub fn empty() -> Body {
    Either::Left(Full::default())
}

/// A `text/plain` answer.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
