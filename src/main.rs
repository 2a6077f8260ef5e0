//! The `wsecho` binary: parse flags, start one runtime per worker thread
//! (the main thread is the first worker),
//! serve until SIGINT/SIGTERM, drain, exit.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use mimalloc::MiMalloc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};
use wsecho::config::LogFormat;
use wsecho::{Config, Server, bind_reuseport, workers};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(&config)?;

    let threads = config.worker_threads();
    let driver = config.driver;
    let rt = workers::runtime(driver)?;
    let listen = config.listen_addr();
    let listeners = rt
        .block_on(async { bind_reuseport(listen, threads) })
        .with_context(|| format!("cannot listen on {listen}"))?;
    let drain_timeout = config.drain_timeout;
    let server = Server::new(config)?;
    // Before anyone can connect: until a handler is installed, SIGTERM's
    // default action kills the process, and a signal in the first
    // milliseconds (a test, an orchestrator's quick restart) would cut
    // every connection without a 1001.
    let stop = rt.block_on(async { ShutdownSignal::new() })?;
    let addr = listeners[0].local_addr()?;

    // Worker 0 is the main thread itself, beside the control tasks (signals,
    // drain, the Redis link): with `--threads 1` the process then has one
    // thread, and a single-threaded process skips per-syscall work that a
    // second thread costs (glibc's cancellation bookkeeping around every
    // recv and send, the kernel's shared file-table refcount in fdget/fput):
    // `scripts/segment-costs.sh 1000 20 server OLD:load_test wsecho:load_test`
    // put those symbols at 95 ns per TCP segment with the control thread
    // and 30 without (2026-12-01, one run: about 2 % of the server's CPU).
    let mut listeners = listeners.into_iter();
    let first = listeners.next().context("no listener")?;
    workers::spawn(&server, listeners)?;

    // Announced once every worker thread is there to serve.
    info!(%addr, threads, "wsecho listening");
    let main = serve_until(server, first, stop, drain_timeout);
    rt.block_on(workers::on_worker(driver, main))
}

/// Worker 0's listener and the control tasks, until a signal; then the
/// drain.
async fn serve_until(
    server: Server,
    first: std::net::TcpListener,
    stop: ShutdownSignal,
    drain_timeout: Duration,
) -> anyhow::Result<()> {
    let worker = server.clone();
    let first = TcpListener::from_std(first)?;
    tokio::spawn(async move { worker.serve(first).await });
    server.start_background().context("bad --redis-url")?;
    stop.recv().await;
    info!(
        sessions = server.sessions_open(),
        ?drain_timeout,
        "shutting down"
    );
    server.begin_shutdown();
    if server.drained(drain_timeout).await {
        info!("drained");
    } else {
        warn!(
            sessions = server.sessions_open(),
            "drain timeout; closing the rest"
        );
    }
    Ok(())
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("bad --log filter {:?}", config.log))?;
    // Logs go to stderr, as a service manager expects; colour only on a tty.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    Ok(())
}

/// SIGINT and SIGTERM, their handlers installed when this is made.
struct ShutdownSignal {
    int: Signal,
    term: Signal,
}

impl ShutdownSignal {
    /// Call inside a runtime.
    fn new() -> std::io::Result<Self> {
        Ok(ShutdownSignal {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
