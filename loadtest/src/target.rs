//! The endpoint: a `ws://` or `wss://` URL taken apart, and resolved once.

use std::net::{SocketAddr, ToSocketAddrs};

use url::{Host, Url};

/// What to connect to and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as parsed (normalised by the `url` crate).
    pub url: Url,
    pub tls: bool,
    /// Host name or address (IPv6 without brackets): the TLS server name.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let url = Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
        let tls = match url.scheme() {
            "ws" => false,
            "wss" => true,
            _ => return Err(format!("{text:?}: expected ws:// or wss://")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?}: user info is not supported"));
        }
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(format!("{text:?}: no host")),
        };
        // The url crate knows ws = 80 and wss = 443 (WHATWG special schemes).
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{text:?}: no port"))?;
        // RFC 6455 §3: a WebSocket URI has no fragment; what goes on the
        // request line is the path and the query.
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        Ok(Target {
            url,
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
