//! Server configuration: one clap-derived struct, every flag with a `WSECHO_*` twin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::deflate::DeflatePolicy;

/// A fast, hardened WebSocket echo service.
///
/// Every option can also be set through the environment variable named in
/// brackets; a flag on the command line wins over the environment.
#[derive(Debug, Clone, Parser)]
#[command(name = "wsecho", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on [default: 127.0.0.1:9900; or 0.0.0.0:$PORT when
    /// the PORT variable is set, as container platforms (Cloud Run, Heroku,
    /// Render, Fly) do].
    #[arg(long, env = "WSECHO_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// The platform's port convention: `PORT` in the environment, used only
    /// when neither --listen nor WSECHO_LISTEN is given (see --listen).
    #[arg(long = "platform-port", env = "PORT", hide = true)]
    pub platform_port: Option<u16>,

    /// Worker threads, each with its own runtime and SO_REUSEPORT listener
    /// [default: the CPUs this process may run on].
    #[arg(long, env = "WSECHO_THREADS")]
    pub threads: Option<usize>,

    /// Largest message accepted, summed over its fragments (bytes; k/M/G and
    /// KiB/MiB/GiB suffixes allowed). Past it the connection closes with 1009.
    #[arg(long, env = "WSECHO_MAX_MESSAGE_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Largest single frame accepted (bytes, suffixes as above), checked
    /// from its header (1009 past it). A policy, not a memory bound: frames
    /// are read in pieces. A frame over --max-message-size fails as a
    /// message too big.
    #[arg(long, env = "WSECHO_MAX_FRAME_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_frame_size: usize,

    /// Most unsent echo bytes a connection may hold while the peer, in the
    /// middle of sending a frame over 64 KiB, is not reading (bytes). Clients
    /// that send a whole large message before reading its echo (Autobahn's
    /// 16 MiB cases, simple blocking clients) need the server to take it in
    /// meanwhile; a peer that reads costs one read (128 KiB) whatever it
    /// sends, and past this the server stops reading from it.
    #[arg(long, env = "WSECHO_MAX_BACKLOG", default_value = "16MiB", value_parser = parse_size)]
    pub max_backlog: usize,

    /// permessage-deflate (RFC 7692): `off`, `on`, or a policy such as
    /// `client_no_context_takeover,server_max_window_bits=10` (items:
    /// `server_no_context_takeover`, `client_no_context_takeover`,
    /// `server_max_window_bits=8..15`, `client_max_window_bits=8..15`,
    /// `level=0..9`, `mem_level=1..9`, or `takeover` alone). `on` means no
    /// context takeover either way: zlib contexts are pooled per worker and
    /// held only while a message is in flight, so an idle compressed
    /// connection costs about what an uncompressed one does; with context
    /// takeover each connection holds ~370 KiB of zlib state.
    #[arg(long, env = "WSECHO_DEFLATE", default_value = "on")]
    pub deflate: DeflatePolicy,

    /// Text sent first on every echo connection. Off by default: a greeting
    /// breaks clients that expect pure echo.
    #[arg(long, env = "WSECHO_GREETING")]
    pub greeting: Option<String>,

    /// Value of the `X-Server` header on handshake responses, so clients
    /// behind a load balancer can tell instances apart [default: host name].
    #[arg(long, env = "WSECHO_SERVER_NAME")]
    pub server_name: Option<String>,

    /// Time a client has to send its complete HTTP request head (over
    /// HTTP/2: its first request); it also bounds the TLS handshake and the
    /// reading of a `/.http` body.
    #[arg(long, env = "WSECHO_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Most WebSocket connections open at once; past it the handshake is
    /// answered 503.
    #[arg(long, env = "WSECHO_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,

    /// A silent peer gets a ping this often (0: no pings).
    #[arg(long, env = "WSECHO_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A peer that sends nothing (not even a pong) for this long, or reads
    /// nothing we send for this long, is disconnected (0: never). Checked
    /// every quarter of this or more often, so up to a quarter later.
    #[arg(long, env = "WSECHO_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long to wait for the peer's close frame after sending ours.
    #[arg(long, env = "WSECHO_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// Pings a peer may send per second (and in one burst); past it the
    /// connection closes with 1008.
    #[arg(long, env = "WSECHO_MAX_PING_RATE", default_value_t = 50)]
    pub max_ping_rate: u32,

    /// Comma-separated `Origin` values allowed to connect; others get 403.
    /// Empty: any origin. Requests without `Origin` (non-browser clients)
    /// are always allowed.
    #[arg(long, env = "WSECHO_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Comma-separated subprotocols wsecho agrees to; the first one the
    /// client offers that is in this list is selected. Empty: none.
    #[arg(long, env = "WSECHO_SUBPROTOCOLS", value_delimiter = ',')]
    pub subprotocols: Vec<String>,

    /// Bytes of relayed messages a chat peer may have unread; past it the
    /// peer is closed with 1008 as a slow consumer.
    #[arg(long, env = "WSECHO_ROOM_QUEUE_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub room_queue_bytes: usize,

    /// Most peers in one chat room; past it the handshake gets 503.
    #[arg(long, env = "WSECHO_MAX_ROOM_PEERS", default_value_t = 1000)]
    pub max_room_peers: usize,

    /// Most chat rooms at once; past it the handshake gets 503.
    #[arg(long, env = "WSECHO_MAX_ROOMS", default_value_t = 10_000)]
    pub max_rooms: usize,

    /// Share chat rooms with other instances through this Redis
    /// (`redis://host:port/`). Without it rooms are local to this process.
    #[arg(long, env = "WSECHO_REDIS_URL")]
    pub redis_url: Option<String>,

    /// PEM certificate chain: serve wss:// and https:// (needs --tls-key).
    #[arg(long, env = "WSECHO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "WSECHO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How long to wait for open WebSockets to answer our 1001 close on
    /// shutdown before exiting anyway.
    #[arg(long, env = "WSECHO_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Largest request body `/.http` echoes (bytes, suffixes as above);
    /// past it the answer is 413. The body must arrive within
    /// --handshake-timeout.
    #[arg(long, env = "WSECHO_HTTP_ECHO_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub http_echo_max_body: usize,

    /// How WebSocket sessions on plain TCP over HTTP/1.1 are driven:
    /// `epoll`, from the worker's own epoll loop, polled straight from
    /// their sockets' events; or `tasks`, a tokio task each. TLS and HTTP/2
    /// sessions always run as tasks.
    #[arg(long, env = "WSECHO_DRIVER", value_enum, default_value_t = Driver::Epoll)]
    pub driver: Driver,

    /// Log line format.
    #[arg(long, env = "WSECHO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, e.g. `info` or `wsecho=debug`.
    #[arg(long, env = "WSECHO_LOG", default_value = "info")]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    Epoll,
    Tasks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// The address to listen on: --listen, else 0.0.0.0:$PORT, else the
    /// tutorial's 127.0.0.1:9900.
    pub fn listen_addr(&self) -> SocketAddr {
        match (self.listen, self.platform_port) {
            (Some(addr), _) => addr,
            (None, Some(port)) => SocketAddr::from(([0, 0, 0, 0], port)),
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 9900)),
        }
    }

    pub fn server_name(&self) -> String {
        self.server_name.clone().unwrap_or_else(host_name)
    }

    pub fn worker_threads(&self) -> usize {
        self.threads
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["wsecho"])
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "wsecho".to_owned())
}

/// Parses `1048576`, `64k`, `64KiB`, `16M`, `16MiB`, `1G`, `1GiB` (k/M/G are
/// decimal, KiB/MiB/GiB binary).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

/// Parses `250ms`, `10s`, `5m`, `1h`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(format!("unknown duration unit {other:?} in {s:?}")),
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn every_flag_has_help_and_an_environment_twin() {
        use clap::CommandFactory;
        for arg in Config::command().get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_help().is_some(), "--{id} has no help");
            if id == "platform_port" {
                // `PORT` is the platforms' name, not ours, on purpose.
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert!(
                env.is_some_and(|e| e.starts_with("WSECHO_")),
                "--{id} has no WSECHO_ variable"
            );
        }
    }

    #[test]
    fn port_applies_only_without_listen() {
        let port = Config::parse_from(["wsecho", "--platform-port", "8080"]);
        assert_eq!(port.listen_addr().to_string(), "0.0.0.0:8080");
        let both = Config::parse_from([
            "wsecho",
            "--platform-port",
            "8080",
            "--listen",
            "127.0.0.1:7000",
        ]);
        assert_eq!(both.listen_addr().to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen_addr().to_string(), "127.0.0.1:9900");
        assert_eq!(c.max_message_size, 64 << 20);
        assert!(c.greeting.is_none());
        assert_eq!(c.deflate, DeflatePolicy::ON);
        assert!(
            !Config::parse_from(["wsecho", "--deflate", "off"])
                .deflate
                .enabled
        );
        assert!(Config::try_parse_from(["wsecho", "--deflate", "sometimes"]).is_err());
    }
}
