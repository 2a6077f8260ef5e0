//! The `wsecho` binary: parse flags, start one runtime per worker thread,
//! serve until SIGINT/SIGTERM, drain, exit.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use mimalloc::MiMalloc;
use tokio::net::TcpListener;
use tokio::runtime;
use tracing::{info, warn};
use wsecho::config::LogFormat;
use wsecho::{Config, Server, bind_reuseport};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(&config)?;

    let threads = config.worker_threads();
    let control = runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listen = config.listen_addr();
    let listeners = control
        .block_on(async { bind_reuseport(listen, threads) })
        .with_context(|| format!("cannot listen on {listen}"))?;
    let drain_timeout = config.drain_timeout;
    let server = Server::new(config)?;
    info!(addr = %listeners[0].local_addr()?, threads, "wsecho listening");

    for (i, listener) in listeners.into_iter().enumerate() {
        let server = server.clone();
        std::thread::Builder::new()
            .name(format!("wsecho-{i}"))
            .spawn(move || {
                // One single-threaded runtime per worker: no work stealing, no
                // cross-thread wake-ups; SO_REUSEPORT spreads the connections.
                let rt = runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                // Serves until the process exits from main, after the drain.
                rt.block_on(async {
                    server.serve(TcpListener::from_std(listener)?).await;
                    Ok::<_, std::io::Error>(())
                })
            })?;
    }

    control.block_on(async {
        server.start_background().context("bad --redis-url")?;
        shutdown_signal().await;
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
    })
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
