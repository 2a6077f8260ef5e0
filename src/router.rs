//! HTTP routing: which requests become WebSocket sessions, and the plain
//! HTTP answers for everything else (SPEC §1.1).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use crate::handshake::{self, Refusal};
use crate::inbox::Inbox;
use crate::rooms::{self, Membership};
use crate::server::Server;
use crate::upgrade;

pub type Body = Full<Bytes>;

/// The browser client: one self-contained file, no CDN, works offline.
const PAGE: &str = include_str!("page.html");

/// What an upgraded connection does.
pub enum Route {
    /// Every data message back to its sender.
    Echo,
    /// The tutorial's dialogue.
    Tutorial,
    /// A seat in a chat room, taken before the 101 (so a full room is a 503).
    Chat(Membership, Inbox),
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Echo => "echo",
            Route::Tutorial => "tutorial",
            Route::Chat(..) => "chat",
        }
    }
}

/// Paths that only speak plain HTTP.
fn is_http_only(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics")
}

fn ws_route(server: &Server, path: &str) -> Result<Route, Refusal> {
    match path {
        "/tutorial" => Ok(Route::Tutorial),
        _ => match path.strip_prefix("/chat/") {
            Some(room) if rooms::valid_name(room) => {
                let (member, inbox) = server.shared.rooms.join(room)?;
                Ok(Route::Chat(member, inbox))
            }
            Some(_) => Err(rooms::BAD_NAME),
            None => Ok(Route::Echo),
        },
    }
}

/// Answers one request. `S` is the stream type the connection was served
/// with, so an upgrade can recover it from hyper.
pub fn route<S, B>(server: &Server, req: Request<B>, peer: SocketAddr) -> Response<Body>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Send + 'static,
{
    if handshake::is_upgrade(&req) && !is_http_only(req.uri().path()) {
        upgrade_request::<S, B>(server, req, peer)
    } else {
        plain(server, &req)
    }
}

fn upgrade_request<S, B>(server: &Server, req: Request<B>, peer: SocketAddr) -> Response<Body>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Send + 'static,
{
    let shared = &server.shared;
    let accept = match handshake::accept(&req) {
        Ok(accept) => accept,
        Err(refusal) => return refuse(server, refusal, peer),
    };
    if !handshake::origin_allowed(req.headers(), &shared.config.allowed_origins) {
        return refuse(server, handshake::FORBIDDEN_ORIGIN, peer);
    }
    if shared.draining.load(Ordering::Relaxed) {
        return refuse(server, handshake::SHUTTING_DOWN, peer);
    }
    let Ok(slot) = shared.connection_slots.clone().try_acquire_owned() else {
        shared.metrics.limit_hit("connections");
        return refuse(server, handshake::TOO_MANY, peer);
    };
    let protocol = handshake::select_subprotocol(req.headers(), &shared.config.subprotocols);
    let route = match ws_route(server, req.uri().path()) {
        Ok(route) => route,
        Err(refusal) => return refuse(server, refusal, peer),
    };
    let task = upgrade::run::<S, B>(server.clone(), req, route, peer, slot);
    shared.sessions.spawn(task);

    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-accept", accept);
    h.insert("x-server", shared.server_name.clone());
    if let Some(protocol) = protocol {
        h.insert("sec-websocket-protocol", protocol);
    }
    res
}

fn refuse(server: &Server, refusal: Refusal, peer: SocketAddr) -> Response<Body> {
    server.shared.metrics.handshake_failed(refusal.label);
    info!(%peer, status = refusal.status.as_u16(), reason = refusal.reason, "handshake refused");
    let mut res = text(refusal.status, format!("{}\n", refusal.reason));
    let h = res.headers_mut();
    if refusal.status == StatusCode::UPGRADE_REQUIRED {
        // §4.4: tell the client which version we speak.
        h.insert("sec-websocket-version", HeaderValue::from_static("13"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    res.headers_mut()
        .insert("x-server", server.shared.server_name.clone());
    res
}

fn plain<B>(server: &Server, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    if !readable {
        let mut res = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here\n".into(),
        );
        res.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match path {
        "/" | "/.ws" => {
            let mut res = Response::new(Body::from(PAGE));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        }
        "/healthz" if server.shared.draining.load(Ordering::Relaxed) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/metrics" => {
            let mut res = text(StatusCode::OK, server.shared.metrics.render());
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            res
        }
        _ => {
            let body = format!(
                "{path} is a WebSocket endpoint: connect with a WebSocket client (ws://host{path})\n"
            );
            let mut res = text(StatusCode::UPGRADE_REQUIRED, body);
            res.headers_mut()
                .insert(UPGRADE, HeaderValue::from_static("websocket"));
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            res
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
