//! Every refused request, in one place: its status, its one-line reason, its
//! metric label, and the response that carries it (SPEC §1.1).
//!
//! The checks that find a refusal (handshake, router, the session starter)
//! return one of these values; only [`Refusal::response`] turns it into
//! HTTP, so a status or header rule is changed here and nowhere else.

use hyper::header::{ALLOW, HeaderValue, UPGRADE};
use hyper::{Response, StatusCode, Version};

use super::body::{self, Body};
use crate::metrics::Refused;
use crate::rooms::RoomError;

/// Why a request was refused: an HTTP status and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
    /// The handshake-failures metric's label.
    pub label: Refused,
}

impl Refusal {
    const fn new(status: StatusCode, label: Refused, reason: &'static str) -> Self {
        Refusal {
            status,
            reason,
            label,
        }
    }

    /// The answer: the status, the reason as a text body, and the headers
    /// the status calls for on this HTTP version.
    pub fn response(&self, server_name: &HeaderValue, version: Version) -> Response<Body> {
        let h2 = version == Version::HTTP_2;
        // 426 must name the protocol to upgrade to in `Upgrade`, a header
        // HTTP/2 forbids (RFC 9113 §8.2.2): there the same refusal is a 400.
        let status = match self.status {
            StatusCode::UPGRADE_REQUIRED if h2 => StatusCode::BAD_REQUEST,
            status => status,
        };
        let mut res = body::text(status, format!("{}\n", self.reason));
        let h = res.headers_mut();
        if self == &WRONG_VERSION {
            // RFC 6455 §4.4: tell the client which version we speak.
            h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        }
        if status == StatusCode::UPGRADE_REQUIRED {
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(ALLOW, HeaderValue::from_static("GET"));
        }
        h.insert("x-server", server_name.clone());
        res
    }
}

pub const WRONG_METHOD: Refusal = Refusal::new(
    StatusCode::METHOD_NOT_ALLOWED,
    Refused::Method,
    "a WebSocket upgrade must be a GET",
);
pub const OLD_HTTP: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    Refused::HttpVersion,
    "a WebSocket upgrade needs HTTP/1.1",
);
pub const NO_CONNECTION_UPGRADE: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    Refused::Connection,
    "missing Connection: Upgrade",
);
pub const NO_VERSION: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    Refused::Version,
    "missing Sec-WebSocket-Version",
);
/// RFC 6455 §4.4: answered with 426 and the version we speak.
pub const WRONG_VERSION: Refusal = Refusal::new(
    StatusCode::UPGRADE_REQUIRED,
    Refused::Version,
    "unsupported Sec-WebSocket-Version; use 13",
);
pub const BAD_KEY: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    Refused::Key,
    "missing or malformed Sec-WebSocket-Key (must be 16 bytes, base64)",
);
pub const FORBIDDEN_ORIGIN: Refusal =
    Refusal::new(StatusCode::FORBIDDEN, Refused::Origin, "origin not allowed");
pub const TOO_MANY: Refusal = Refusal::new(
    StatusCode::SERVICE_UNAVAILABLE,
    Refused::MaxConnections,
    "too many connections; try again later",
);
pub const SHUTTING_DOWN: Refusal = Refusal::new(
    StatusCode::SERVICE_UNAVAILABLE,
    Refused::Draining,
    "server is shutting down",
);
pub const BAD_ROOM_NAME: Refusal = Refusal::new(
    StatusCode::BAD_REQUEST,
    Refused::RoomName,
    "room names are 1-64 characters of A-Z a-z 0-9 . _ -",
);

impl From<RoomError> for Refusal {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::Full => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Refused::RoomFull,
                "this room is full",
            ),
            RoomError::TooManyRooms => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Refused::MaxRooms,
                "too many rooms",
            ),
        }
    }
}
