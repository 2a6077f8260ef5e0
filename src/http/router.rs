//! Which request goes where (SPEC §1.1). The router only decides: a plain
//! answer, a refusal, a WebSocket to start on a target, or one of the
//! answers that need the request itself (the HTTP echo, the event stream).
//! Counting, logging, reading a body, taking a connection slot or a room
//! seat happen in the caller.

use hyper::header::{ALLOW, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{Body, text};
use super::handshake::{self, Handshake};
use super::plain;
use super::refusal::{self, Refusal};
use super::state::Shared;
use crate::rooms;

/// What to do with one request.
pub enum Decision {
    Respond(Response<Body>),
    Refuse(Refusal),
    WebSocket(Accepted),
    /// `/.http...`: describe the request, body included.
    EchoRequest,
    /// `GET /.sse`.
    Events,
}

/// A WebSocket handshake that passed every check that needs no state change.
pub struct Accepted {
    pub target: Target,
    pub handshake: Handshake,
    pub subprotocol: Option<HeaderValue>,
}

/// Which session a WebSocket runs.
pub enum Target {
    Echo,
    Tutorial,
    /// A room, by a name already checked with [`rooms::valid_name`].
    Chat(String),
}

pub fn decide<B>(shared: &Shared, req: &Request<B>) -> Decision {
    let path = req.uri().path();
    if path == "/.http" || path.starts_with("/.http/") {
        // A 2xx to CONNECT would turn the stream into a tunnel.
        if req.method() == Method::CONNECT {
            return Decision::Respond(not_allowed("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
        }
        return Decision::EchoRequest;
    }
    if path == "/.sse" {
        return match *req.method() {
            Method::GET => Decision::Events,
            _ => Decision::Respond(not_allowed("GET")),
        };
    }
    match handshake::ask(req) {
        Some(ask) if !is_http_only(path) => match websocket(shared, req, ask) {
            Ok(accepted) => Decision::WebSocket(accepted),
            Err(refusal) => Decision::Refuse(refusal),
        },
        _ => Decision::Respond(plain::answer(shared, req)),
    }
}

/// Paths that only speak plain HTTP.
fn is_http_only(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut res = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this path answers {allow}\n"),
    );
    res.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    res
}

fn websocket<B>(
    shared: &Shared,
    req: &Request<B>,
    ask: handshake::Ask,
) -> Result<Accepted, Refusal> {
    let handshake = handshake::check(req, ask)?;
    if !handshake::origin_allowed(req.headers(), &shared.config.allowed_origins) {
        return Err(refusal::FORBIDDEN_ORIGIN);
    }
    if shared.is_draining() {
        return Err(refusal::SHUTTING_DOWN);
    }
    Ok(Accepted {
        target: target(req.uri().path())?,
        handshake,
        subprotocol: handshake::select_subprotocol(req.headers(), &shared.config.subprotocols),
    })
}

fn target(path: &str) -> Result<Target, Refusal> {
    match path {
        "/tutorial" => Ok(Target::Tutorial),
        _ => match path.strip_prefix("/chat/") {
            Some(room) if rooms::valid_name(room) => Ok(Target::Chat(room.to_owned())),
            Some(_) => Err(refusal::BAD_ROOM_NAME),
            None => Ok(Target::Echo),
        },
    }
}
