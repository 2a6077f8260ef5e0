//! An independent HTTP/2 WebSocket client (RFC 8441) on the `h2` crate:
//! extended CONNECT with `:protocol = websocket`, and a minimal client frame
//! codec (masked frames out, server frames in) over the stream's DATA.

use std::future::poll_fn;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use hyper::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::{PATIENCE, RawFrame, encode, parse};

/// One HTTP/2 connection that WebSockets open streams on.
pub struct H2Conn {
    pub send: SendRequest<Bytes>,
    base: String,
    /// Resolves with the connection's end (Ok on a clean close).
    pub ended: Option<oneshot::Receiver<Result<(), h2::Error>>>,
}

/// One WebSocket: a stream of an [`H2Conn`].
pub struct H2Ws {
    pub send: SendStream<Bytes>,
    recv: RecvStream,
    buf: Vec<u8>,
}

/// A refused WebSocket: the status and the response's headers and body.
#[derive(Debug)]
pub struct H2Refusal {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

/// Starts HTTP/2 on `io` (prior knowledge, or after ALPN chose `h2`); `base`
/// is `http://host:port` or `https://host:port`.
pub async fn handshake<T>(io: T, base: &str) -> H2Conn
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = h2::client::Builder::new()
        // Generous client windows: the server's are what is under test.
        .initial_window_size(4 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .expect("HTTP/2 handshake");
    let mut ping = conn.ping_pong().expect("ping handle");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(conn.await);
    });
    // The server's SETTINGS precede its PING ACK, so after one round trip
    // the client knows whether extended CONNECT is enabled.
    tokio::time::timeout(PATIENCE, ping.ping(h2::Ping::opaque()))
        .await
        .expect("pong in time")
        .expect("pong");
    assert!(
        send.is_extended_connect_protocol_enabled(),
        "server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL"
    );
    H2Conn {
        send,
        base: base.to_owned(),
        ended: Some(rx),
    }
}

impl H2Conn {
    /// Opens a WebSocket on `path` with extra request headers.
    pub async fn try_open(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<H2Ws, H2Refusal> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("{}{path}", self.base))
            .extension(h2::ext::Protocol::from_static("websocket"));
        if !headers.iter().any(|(k, _)| *k == "sec-websocket-version") {
            req = req.header("sec-websocket-version", "13");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(()).unwrap();
        let mut send = self.send.clone().ready().await.expect("connection ready");
        let (response, stream) = send.send_request(req, false).expect("send CONNECT");
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .expect("response in time")
            .expect("response");
        let (parts, mut recv) = response.into_parts();
        if parts.status != StatusCode::OK {
            let mut body = Vec::new();
            while let Some(chunk) = recv.data().await {
                let chunk = chunk.expect("refusal body");
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            return Err(H2Refusal {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        assert!(
            !parts.headers.contains_key("sec-websocket-accept"),
            "RFC 8441 §5: no Sec-WebSocket-Accept over HTTP/2"
        );
        Ok(H2Ws {
            send: stream,
            recv,
            buf: Vec::new(),
        })
    }

    pub async fn open(&mut self, path: &str) -> H2Ws {
        self.try_open(path, &[]).await.expect("WebSocket opened")
    }

    /// A plain GET on this connection: status and body.
    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let req = Request::get(format!("{}{path}", self.base))
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.expect("connection ready");
        let (response, _) = send.send_request(req, true).expect("send GET");
        let (parts, mut recv) = response.await.expect("response").into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.expect("body");
            let _ = recv.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        (parts.status, String::from_utf8_lossy(&body).into_owned())
    }
}

impl H2Ws {
    /// Writes bytes as the stream's flow control allows.
    pub async fn write(&mut self, data: Bytes) {
        write_data(&mut self.send, data).await;
    }

    /// Sends a message while reading its echo, as a browser does: wsecho
    /// echoes a frame over 64 KiB while it arrives (cut-through), so a
    /// client that reads only after sending all of it would stall on flow
    /// control.
    pub async fn round_trip(&mut self, opcode: u8, payload: &[u8]) -> (u8, Vec<u8>) {
        let data: Bytes = encode(true, opcode, payload, true).into();
        let H2Ws { send, recv, buf } = self;
        let ((), echo) = tokio::join!(write_data(send, data), recv_message_from(recv, buf));
        echo
    }

    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.write(encode(fin, opcode, payload, true).into()).await;
    }

    /// The next frame, or None when the stream ended.
    pub async fn recv(&mut self) -> Option<RawFrame> {
        recv_frame(&mut self.recv, &mut self.buf).await
    }

    /// The next whole data message (fragments joined, pings skipped).
    pub async fn recv_message(&mut self) -> (u8, Vec<u8>) {
        recv_message_from(&mut self.recv, &mut self.buf).await
    }

    /// Reads until a close frame; returns its code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            let frame = self.recv().await.expect("stream ended without a close");
            if frame.opcode == 8 {
                return frame.close_code();
            }
        }
    }

    /// Answers a close with `code` and ends our side of the stream.
    pub async fn close(&mut self, code: u16) {
        self.send(true, 8, &code.to_be_bytes()).await;
        let _ = self.send.send_data(Bytes::new(), true);
    }
}

impl super::Endpoint {
    /// HTTP/2 in cleartext with prior knowledge (h2c).
    pub async fn h2c(&self) -> H2Conn {
        handshake(self.raw().await, &format!("http://{}", self.addr)).await
    }
}

async fn write_data(send: &mut SendStream<Bytes>, mut data: Bytes) {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = poll_fn(|cx| send.poll_capacity(cx))
            .await
            .expect("stream open")
            .expect("capacity");
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, false).expect("send data");
    }
}

async fn recv_frame(recv: &mut RecvStream, buf: &mut Vec<u8>) -> Option<RawFrame> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some((frame, used)) = parse(buf) {
                buf.drain(..used);
                return Some(frame);
            }
            let chunk = recv.data().await?.ok()?;
            // Hand the window back, or the server stalls after it.
            let _ = recv.flow_control().release_capacity(chunk.len());
            buf.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("no frame in time")
}

async fn recv_message_from(recv: &mut RecvStream, buf: &mut Vec<u8>) -> (u8, Vec<u8>) {
    let mut opcode = None;
    let mut message = Vec::new();
    loop {
        let frame = recv_frame(recv, buf)
            .await
            .expect("stream ended mid-message");
        match frame.opcode {
            9 | 10 => continue,
            8 => panic!("closed with {:?}", frame.close_code()),
            0 => {}
            op => opcode = Some(op),
        }
        message.extend_from_slice(&frame.payload);
        if frame.fin {
            return (opcode.expect("message starts with a data frame"), message);
        }
    }
}
