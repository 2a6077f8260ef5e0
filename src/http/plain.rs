//! The plain HTTP answers: the browser page, health, metrics, and what a
//! WebSocket path says to a request that is not an upgrade.

use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::body::{Body, full, text};
use super::state::Shared;

/// The browser client: one self-contained file, no CDN, works offline.
const PAGE: &str = include_str!("page.html");

pub fn answer<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
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
            let mut res = Response::new(full(PAGE));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        }
        "/healthz" if shared.is_draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/metrics" => {
            let mut res = text(StatusCode::OK, shared.metrics.render());
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
            if req.version() == Version::HTTP_2 {
                // No `Upgrade` in HTTP/2 (RFC 9113 §8.2.2), so no 426 either.
                return text(StatusCode::BAD_REQUEST, body);
            }
            let mut res = text(StatusCode::UPGRADE_REQUIRED, body);
            res.headers_mut()
                .insert(UPGRADE, HeaderValue::from_static("websocket"));
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            res
        }
    }
}
