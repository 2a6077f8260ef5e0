//! Which request goes where (SPEC §1.1). The router only decides: a plain
//! answer, a refusal, or a WebSocket to start on a target. Counting,
//! logging, taking a connection slot or a room seat happen in the caller.

use hyper::Request;
use hyper::header::HeaderValue;

use super::body::Body;
use super::handshake;
use super::plain;
use super::refusal::{self, Refusal};
use super::state::Shared;
use crate::rooms;

/// What to do with one request.
pub enum Decision {
    Respond(hyper::Response<Body>),
    Refuse(Refusal),
    WebSocket(Accepted),
}

/// A WebSocket handshake that passed every check that needs no state change.
pub struct Accepted {
    pub target: Target,
    /// `Sec-WebSocket-Accept` for the 101.
    pub accept: HeaderValue,
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
    if handshake::is_upgrade(req) && !is_http_only(req.uri().path()) {
        match websocket(shared, req) {
            Ok(accepted) => Decision::WebSocket(accepted),
            Err(refusal) => Decision::Refuse(refusal),
        }
    } else {
        Decision::Respond(plain::answer(shared, req))
    }
}

/// Paths that only speak plain HTTP.
fn is_http_only(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

fn websocket<B>(shared: &Shared, req: &Request<B>) -> Result<Accepted, Refusal> {
    let accept = handshake::accept(req)?;
    if !handshake::origin_allowed(req.headers(), &shared.config.allowed_origins) {
        return Err(refusal::FORBIDDEN_ORIGIN);
    }
    if shared.is_draining() {
        return Err(refusal::SHUTTING_DOWN);
    }
    Ok(Accepted {
        target: target(req.uri().path())?,
        accept,
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
