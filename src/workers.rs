//! The process's worker threads: one single-threaded runtime per worker,
//! each serving its own `SO_REUSEPORT` listener, so there is no work
//! stealing and no cross-thread wake-up; with `--driver epoll` each runs
//! under its session loop, which then owns the thread
//! ([`crate::ws::direct`]). The binary's main thread is worker 0.

use std::io;

use tokio::net::TcpListener;
use tokio::runtime::{self, Runtime};
use tracing::error;

use crate::Server;
use crate::config::Driver;
use crate::ws::direct;

/// A worker's runtime, for its thread.
pub fn runtime(driver: Driver) -> io::Result<Runtime> {
    match driver {
        Driver::Epoll => direct::owner_runtime(),
        Driver::Tasks => runtime::Builder::new_current_thread().enable_all().build(),
    }
}

/// Runs a worker's work on its runtime: under the worker's session loop,
/// which then owns the thread, with `--driver epoll`.
pub async fn on_worker<T: Send + 'static>(
    driver: Driver,
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    match driver {
        Driver::Epoll => direct::own_thread(work)
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        Driver::Tasks => work.await,
    }
}

/// Starts workers 1, 2, … on threads of their own, one per listener, each
/// serving until the process exits (after the drain, from the main thread).
pub fn spawn(
    server: &Server,
    listeners: impl IntoIterator<Item = std::net::TcpListener>,
) -> io::Result<()> {
    for (i, listener) in listeners.into_iter().enumerate() {
        let server = server.clone();
        let worker = i + 1;
        std::thread::Builder::new()
            .name(format!("wsecho-{worker}"))
            .spawn(move || {
                let driver = server.config().driver;
                let served = runtime(driver).and_then(|rt| {
                    rt.block_on(on_worker(driver, async move {
                        server.serve(TcpListener::from_std(listener)?).await;
                        Ok::<_, io::Error>(())
                    }))
                });
                if let Err(e) = served {
                    error!(worker, error = %e, "worker stopped");
                }
            })?;
    }
    Ok(())
}
