//! The endpoint: a `ws://` or `wss://` URL taken apart, and resolved once.

use std::net::{SocketAddr, ToSocketAddrs};

/// What to connect to and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// Host name or address as written (IPv6 without brackets): the TLS
    /// server name.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            return Err(format!("{url:?}: expected ws:// or wss://"));
        };
        // RFC 6455 §3: fragments are not allowed in WebSocket URIs.
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return Err(format!("{url:?}: user info is not supported"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| format!("{url:?}: bad host or port"))?;
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Target {
            tls,
            host,
            port,
            path,
        })
    }

    /// The `Host` header: the port only when it is not the default one.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The same endpoint with another path (chat rooms).
    pub fn with_path(&self, path: String) -> Target {
        Target {
            path,
            ..self.clone()
        }
    }

    /// Resolves the host once, before any load is sent (a blocking lookup,
    /// never on a worker thread).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{}: no address", self.host)))
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_host_port_and_path() {
        let t = Target::parse("ws://127.0.0.1:9900/echo?x=1").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "127.0.0.1", 9900));
        assert_eq!(t.path, "/echo?x=1");
        assert_eq!(t.host_header(), "127.0.0.1:9900");

        let t = Target::parse("wss://example.org").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (true, 443, "/"));
        assert_eq!(t.host_header(), "example.org");

        let t = Target::parse("ws://[::1]:8080?q").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/?q")
        );
        assert_eq!(t.host_header(), "[::1]:8080");
    }

    #[test]
    fn rejects_other_schemes_and_bad_ports() {
        assert!(Target::parse("http://x/").is_err());
        assert!(Target::parse("ws://x:notaport/").is_err());
        assert!(Target::parse("ws://:80/").is_err());
        assert!(Target::parse("ws://u:p@x/").is_err());
    }
}
