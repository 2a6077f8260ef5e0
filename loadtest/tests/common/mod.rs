//! Test harness: `wsecho-load` run as the real binary (its exit status, its
//! output, its JSON), the real wsecho in-process, and small servers written
//! here with an independent WebSocket implementation (tokio-tungstenite): a
//! deliberately faulty echo and a TLS echo. Everything is on loopback, and
//! every run is bounded by its own flags and by [`PATIENCE`].
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Longest any one load run may take before the test fails (and the child
/// is killed).
pub const PATIENCE: Duration = Duration::from_secs(90);

/// What one `wsecho-load` run gave.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// The `--json` document, if one was written.
    pub json: Option<Value>,
}

impl Run {
    pub fn json(&self) -> &Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON written; stderr: {}", self.stderr))
    }

    pub fn u64(&self, pointer: &str) -> u64 {
        self.json()
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{pointer} missing in {}", self.json()))
    }

    pub fn error(&self, kind: &str) -> u64 {
        self.u64(&format!("/errors/{kind}"))
    }

    /// Every error kind that is not zero.
    pub fn nonzero_errors(&self) -> Vec<String> {
        let errors = self.json()["errors"].as_object().expect("errors object");
        errors
            .iter()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// A fresh scratch directory for one run's files.
///
/// The name repeats when a pid does (a fresh container hands out the same
/// pids run after run), so whatever an earlier process left under it goes
/// first: a CSV appended to a leftover file has that run's rows too.
pub fn scratch() -> PathBuf {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wsecho-load-test-{}-{n}", std::process::id()));
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{}: {e}", dir.display()),
        _ => {}
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the binary with `args` (plus `--json` into a scratch file and `-q`).
pub async fn load(args: &[&str]) -> Run {
    let dir = scratch();
    let json = dir.join("result.json");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsecho-load"));
    cmd.args(args)
        .arg("-q")
        .arg("--json")
        .arg(&json)
        .kill_on_drop(true);
    let run = raw(cmd, Some(json)).await;
    let _ = std::fs::remove_dir_all(dir);
    run
}

/// Runs the binary with exactly `args`.
pub async fn load_raw(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wsecho-load"));
    cmd.args(args).kill_on_drop(true);
    raw(cmd, None).await
}

async fn raw(mut cmd: tokio::process::Command, json: Option<PathBuf>) -> Run {
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("wsecho-load did not finish in time")
        .expect("wsecho-load runs");
    let json = json
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| serde_json::from_slice(&b).expect("the JSON file parses"));
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    }
}

/// The real wsecho, in this process, on an ephemeral port.
pub async fn wsecho() -> SocketAddr {
    wsecho_with(&[]).await
}

/// The real wsecho with extra command-line flags (e.g. `--deflate off`).
pub async fn wsecho_with(flags: &[&str]) -> SocketAddr {
    use clap::Parser;
    let config = wsecho::Config::parse_from(std::iter::once(&"wsecho").chain(flags));
    let server = wsecho::Server::new(config).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener).await });
    addr
}

pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// What the faulty echo server does wrong, to every `n`-th message of each
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a correct echo.
    None,
    Drop(u64),
    /// Flips one bit in the middle of the payload.
    Corrupt(u64),
    Duplicate(u64),
    /// Holds the message back and sends it after the next one.
    Reorder(u64),
    /// Closes with 1001 (going away) at the `n`-th message, unanswered,
    /// and completes the closing handshake.
    Close(u64),
}

/// An echo server (tokio-tungstenite) that makes `fault`'s mistake.
pub async fn faulty_echo(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(echo_session(tcp, fault));
        }
    });
    addr
}

async fn echo_session<S>(io: S, fault: Fault)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(ws) = tokio_tungstenite::accept_async(io).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let mut n = 0u64;
    let mut held: Option<Message> = None;
    while let Some(Ok(msg)) = rx.next().await {
        if let Message::Close(frame) = msg {
            let _ = tx.send(Message::Close(frame)).await;
            break;
        }
        if !(msg.is_binary() || msg.is_text()) {
            continue;
        }
        n += 1;
        let out: Vec<Message> = match fault {
            Fault::Drop(k) if n.is_multiple_of(k) => vec![],
            Fault::Corrupt(k) if n.is_multiple_of(k) => {
                let mut bytes = msg.into_data().to_vec();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x01;
                vec![Message::Binary(bytes.into())]
            }
            Fault::Duplicate(k) if n.is_multiple_of(k) => vec![msg.clone(), msg],
            Fault::Reorder(k) if n.is_multiple_of(k) => {
                held = Some(msg);
                vec![]
            }
            Fault::Close(k) if n == k => {
                use tokio_tungstenite::tungstenite::protocol::{
                    CloseFrame, frame::coding::CloseCode,
                };
                let frame = CloseFrame {
                    code: CloseCode::Away,
                    reason: "".into(),
                };
                vec![Message::Close(Some(frame))]
            }
            _ => std::iter::once(msg).chain(held.take()).collect(),
        };
        for m in out {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    }
}

/// A correct echo server that records each connection's source address.
pub async fn recording_echo() -> (SocketAddr, Arc<std::sync::Mutex<Vec<std::net::IpAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((tcp, peer)) = listener.accept().await {
            seen.lock().unwrap().push(peer.ip());
            let _ = tcp.set_nodelay(true);
            tokio::spawn(echo_session(tcp, Fault::None));
        }
    });
    (addr, peers)
}

/// A `wss://` echo server with a throwaway self-signed certificate for
/// `localhost` (rcgen).
pub async fn tls_echo() -> SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = CertificateDer::from(key.cert.der().to_vec());
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    echo_session(tls, Fault::None).await;
                }
            });
        }
    });
    addr
}

/// The committed schema, compiled.
pub fn schema() -> jsonschema::Validator {
    let text = include_str!("../../schema.json");
    let schema: Value = serde_json::from_str(text).expect("schema.json parses");
    jsonschema::validator_for(&schema).expect("schema.json is a valid JSON Schema")
}

/// Panics with every violation when `doc` does not match the schema.
pub fn assert_valid(doc: &Value) {
    let validator = schema();
    let problems: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(problems.is_empty(), "schema violations: {problems:#?}");
}
