//! A tokio-tungstenite echo server, a peer for `results/` only: upstream's
//! `examples/echo-server.rs` (multi-thread runtime, `split` + `forward` of
//! text and binary messages), plus TCP_NODELAY, which any benchmarked echo
//! server sets and which only helps it.
//!
//!     cargo run --release --example tungstenite_echo -- 127.0.0.1:9902

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9902".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(accept_connection(stream));
    }
    Ok(())
}

async fn accept_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // The same 64 MiB message limit as wsecho's default.
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
