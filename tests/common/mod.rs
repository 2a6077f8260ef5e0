//! Test harness: the real server on an ephemeral loopback port, an
//! independent client (tokio-tungstenite), and a raw TCP client for the
//! malformed input no well-behaved client will send.
#![allow(dead_code)]

pub mod h2ws;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsecho::{Config, Server};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bound on every wait in a test, so a broken server fails the test
/// instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Where a server under test listens; every client helper lives here.
pub struct Endpoint {
    pub addr: SocketAddr,
}

/// wsecho running in this test's runtime.
pub struct TestServer {
    pub endpoint: Endpoint,
    pub server: Server,
}

impl std::ops::Deref for TestServer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Starts wsecho on 127.0.0.1:0 with these extra flags.
pub async fn start(args: &[&str]) -> TestServer {
    let config = Config::parse_from(std::iter::once("wsecho").chain(args.iter().copied()));
    let server = Server::new(config).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    TestServer {
        endpoint: Endpoint { addr },
        server,
    }
}

impl Endpoint {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Connects with tokio-tungstenite, limits raised to 64 MiB.
    pub async fn connect(&self, path: &str) -> Client {
        let config = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(self.url(path), Some(config), false)
                .await
                .expect("handshake");
        ws
    }

    pub async fn raw(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A raw connection that has completed the handshake on `path`.
    pub async fn raw_ws(&self, path: &str) -> RawWs {
        self.raw_ws_with(path, "").await.0
    }

    /// [`raw_ws`](Self::raw_ws) with extra header lines (each ending in
    /// \r\n); also returns the 101's head.
    pub async fn raw_ws_with(&self, path: &str, headers: &str) -> (RawWs, String) {
        let mut tcp = self.raw().await;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n",
            self.addr
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut tcp).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        let ws = RawWs {
            tcp,
            buf: Vec::new(),
        };
        (ws, head)
    }

    /// Sends `request` as is and returns the status code and the whole response.
    pub async fn http(&self, request: &str) -> (u16, String) {
        let mut tcp = self.raw().await;
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, async {
            let mut buf = [0u8; 4096];
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                if response_complete(&out) {
                    break;
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

/// A GET with the given extra header lines (each ending in \r\n).
pub fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n")
}

/// Upgrade headers, valid unless a test overrides one.
pub const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok());
    match length {
        Some(n) => bytes.len() >= end + 4 + n,
        None => text.starts_with("HTTP/1.1 101"),
    }
}

async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so no frame bytes after the head are swallowed.
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(n == 1, "connection closed during the handshake");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A frame as the raw client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1: a compressed message's first frame (permessage-deflate).
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code, if this is a close frame with one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub struct RawWs {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

/// Encodes a client frame: masked with a fixed key unless `masked` is false.
pub fn encode(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl RawWs {
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&encode(fin, opcode, payload, true)).await;
    }

    /// The next frame, or None when the server closed the connection.
    pub async fn recv(&mut self) -> Option<RawFrame> {
        tokio::time::timeout(PATIENCE, self.recv_inner())
            .await
            .expect("no frame in time")
    }

    async fn recv_inner(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until a close frame; returns its code (None: no code),
    /// or panics if the connection ends without one.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            let frame = self
                .recv()
                .await
                .expect("connection ended without a close frame");
            if frame.opcode == 8 {
                return frame.close_code();
            }
        }
    }

    /// True once the server has closed the TCP connection.
    pub async fn expect_eof(&mut self) -> bool {
        tokio::time::timeout(PATIENCE, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// Parses one server frame (never masked) from the front of `buf`.
fn parse(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0f);
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < start + len {
        return None;
    }
    let payload = buf[start..start + len].to_vec();
    Some((
        RawFrame {
            fin,
            rsv1: buf[0] & 0x40 != 0,
            opcode,
            payload,
        },
        start + len,
    ))
}

/// Deterministic test data of `len` bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Deterministic valid UTF-8 text of exactly `len` bytes, with multi-byte
/// characters in it.
pub fn text_of(len: usize) -> String {
    let mut s = String::with_capacity(len);
    let chars = ['a', 'é', '€', '𝄞', 'z'];
    let mut i = 0;
    while s.len() < len {
        let c = chars[i % chars.len()];
        if s.len() + c.len_utf8() > len {
            s.push('.');
        } else {
            s.push(c);
        }
        i += 1;
    }
    s
}

/// A well-behaved client that must keep being served whatever the test does
/// to other connections.
pub struct Bystander {
    ws: Client,
    sent: u32,
}

impl Endpoint {
    pub async fn bystander(&self) -> Bystander {
        let mut b = Bystander {
            ws: self.connect("/").await,
            sent: 0,
        };
        b.assert_served().await;
        b
    }
}

impl Endpoint {
    /// The value of one sample from `GET /metrics`, e.g.
    /// `wsecho_closes_total{code="1006"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let (status, text) = self.http(&get("/metrics", "")).await;
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// Waits (bounded) until `sample` reaches at least `value`.
    pub async fn await_metric(&self, sample: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.metric(sample).await < value {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sample} never reached {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Bystander {
    /// Sends a message and checks its echo.
    pub async fn assert_served(&mut self) {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.sent += 1;
        let text = format!("still here #{}", self.sent);
        self.ws.send(Message::text(text.clone())).await.unwrap();
        loop {
            let got = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("bystander echo in time");
            match got.unwrap().unwrap() {
                // Keep-alive pings (tungstenite answers them itself).
                Message::Ping(_) | Message::Pong(_) => continue,
                got => break assert_eq!(got, Message::text(text), "bystander was disturbed"),
            }
        }
    }
}

/// The wsecho binary in a process of its own, for tests that need signals,
/// exit codes or more descriptors than one process has.
pub struct Spawned {
    pub endpoint: Endpoint,
    pub child: std::process::Child,
    /// Everything the server logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The thread that reads the log; it ends when the server exits.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Spawned {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Spawned {
    pub async fn start(args: &[&str]) -> Spawned {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsecho"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        Self::launch(cmd).await
    }

    /// Runs `cmd` (the wsecho binary, with its arguments and environment)
    /// and waits for the address it announces.
    pub async fn launch(mut cmd: std::process::Command) -> Spawned {
        use std::io::BufRead;
        let mut child = cmd
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn wsecho");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        // Keep draining stderr so the server never blocks on logging.
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(PATIENCE))
            .await
            .unwrap()
            .expect("server announced its address");
        Spawned {
            endpoint: Endpoint {
                addr: addr.parse().unwrap(),
            },
            child,
            log,
            reader: Some(reader),
        }
    }

    /// The server's resident set size.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }

    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exit_status(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the server said: the harness prints a
        // failed test's output, and the log is otherwise lost with it.
        #[allow(clippy::print_stderr)]
        if std::thread::panicking() {
            // The rest of the log, up to the server's exit.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- wsecho's log ---\n{}", log.join("\n"));
        }
    }
}

/// A real redis-server on a free loopback port, owned by the test.
pub struct Redis {
    port: u16,
    child: std::process::Child,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(port);
        Redis { port, child }
    }

    fn spawn(port: u16) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills Redis and starts a fresh one on the same port.
    pub fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends numbered markers from `from` until `to` receives one (a relay path
/// that is still being set up loses the first ones), then an end marker, and
/// reads `to` up to it, so both are in step afterwards.
pub async fn until_delivered(from: &mut Client, to: &mut Client, tag: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for k in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tag}: nothing delivered"
        );
        from.send(Message::text(format!("{tag}#{k}")))
            .await
            .unwrap();
        if let Ok(Some(Ok(Message::Text(_)))) =
            tokio::time::timeout(Duration::from_millis(250), to.next()).await
        {
            break;
        }
    }
    let end = format!("{tag}-end");
    from.send(Message::text(end.clone())).await.unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, to.next())
            .await
            .expect("end marker in time")
        {
            Some(Ok(Message::Text(t))) if t.as_str() == end => return,
            Some(Ok(_)) => {}
            other => panic!("{tag}: {other:?}"),
        }
    }
}

/// Writes a self-signed certificate for `localhost` and its key; returns the
/// two paths and a client configuration that trusts exactly that certificate.
pub fn throwaway_cert(
    tag: &str,
) -> (
    String,
    String,
    std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
) {
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("wsecho-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client = ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (
        cert.display().to_string(),
        key.display().to_string(),
        std::sync::Arc::new(client),
    )
}

/// A TLS connection to `localhost` at `addr`, trusting `client`'s roots.
pub async fn tls_connect(
    addr: SocketAddr,
    client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}
