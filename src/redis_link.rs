//! Rooms shared between instances through Redis pub/sub.
//!
//! Each instance fans a message out to its own peers directly and publishes
//! it once on `wsecho:room:{name}`; every other instance with peers in that
//! room is subscribed to the channel and fans it out locally. Messages carry
//! the publishing instance's id, so an instance skips its own.
//!
//! Redis is an extra, never a dependency of echo: publishing is
//! fire-and-forget through a bounded queue, and while Redis is away rooms
//! work locally, `wsecho_redis_up` is 0, a warning is logged, and both
//! connections retry with backoff (resubscribing every room on return).

use std::io::Read;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use fastwebsockets::OpCode;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::metrics::{Limit, Metrics};
use crate::rooms::{Link, Rooms};

const CHANNEL_PREFIX: &str = "wsecho:room:";
/// Published messages waiting for Redis; past it they are dropped (and
/// counted), so a slow Redis cannot grow memory.
const PUBLISH_QUEUE: usize = 4096;
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

type InstanceId = [u8; 16];

enum Subscription {
    Join(Arc<str>),
    Leave(Arc<str>),
}

pub struct RedisLink {
    instance: InstanceId,
    publish: mpsc::Sender<(Arc<str>, Bytes)>,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    metrics: Arc<Metrics>,
}

impl RedisLink {
    /// Starts the publisher and subscriber tasks on the current runtime.
    pub fn start(
        url: &str,
        rooms: Weak<Rooms>,
        metrics: Arc<Metrics>,
    ) -> redis::RedisResult<RedisLink> {
        let client = redis::Client::open(url)?;
        let instance = instance_id();
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (subscriptions, subs_rx) = mpsc::unbounded_channel();
        tokio::spawn(publisher(client.clone(), publish_rx, metrics.clone()));
        tokio::spawn(subscriber(
            client,
            instance,
            subs_rx,
            rooms,
            metrics.clone(),
        ));
        Ok(RedisLink {
            instance,
            publish,
            subscriptions,
            metrics,
        })
    }
}

impl Link for RedisLink {
    fn publish(&self, room: &Arc<str>, opcode: OpCode, payload: &[u8]) {
        let mut msg = BytesMut::with_capacity(17 + payload.len());
        msg.put_slice(&self.instance);
        msg.put_u8(opcode as u8);
        msg.put_slice(payload);
        if self.publish.try_send((room.clone(), msg.freeze())).is_err() {
            self.metrics.limit_hit(Limit::RedisQueue);
        }
        // The link's tasks may run on this thread, under its session loop.
        crate::wake::woke_a_task();
    }

    fn subscribe(&self, room: Arc<str>) {
        let _ = self.subscriptions.send(Subscription::Join(room));
        crate::wake::woke_a_task();
    }

    fn unsubscribe(&self, room: Arc<str>) {
        let _ = self.subscriptions.send(Subscription::Leave(room));
        crate::wake::woke_a_task();
    }
}

async fn publisher(
    client: redis::Client,
    mut rx: mpsc::Receiver<(Arc<str>, Bytes)>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut conn =
            match tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection()).await
            {
                Ok(Ok(conn)) => conn,
                _ => {
                    // Nothing can be published meanwhile: drop, do not queue.
                    while rx.try_recv().is_ok() {}
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
        backoff = Duration::from_millis(50);
        while let Some((room, msg)) = rx.recv().await {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(format!("{CHANNEL_PREFIX}{room}")).arg(&msg[..]);
            let sent = cmd.query_async::<i64>(&mut conn);
            if !matches!(tokio::time::timeout(IO_TIMEOUT, sent).await, Ok(Ok(_))) {
                metrics.limit_hit(Limit::RedisPublishFailed);
                break;
            }
        }
        if rx.is_closed() {
            return;
        }
    }
}

async fn subscriber(
    client: redis::Client,
    instance: InstanceId,
    mut subs: mpsc::UnboundedReceiver<Subscription>,
    rooms: Weak<Rooms>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut was_up = false;
    loop {
        let Some(live) = rooms.upgrade() else { return };
        match tokio::time::timeout(IO_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut stream) = pubsub.split();
                // Every room with local peers, including those made while away.
                let names = live.names();
                drop(live);
                let mut ok = true;
                for name in names {
                    ok &= sink
                        .subscribe(format!("{CHANNEL_PREFIX}{name}"))
                        .await
                        .is_ok();
                }
                if ok {
                    metrics.redis_up.set(1);
                    info!("redis room link up");
                    was_up = true;
                    backoff = Duration::from_millis(50);
                    loop {
                        tokio::select! {
                            sub = subs.recv() => match sub {
                                Some(Subscription::Join(r)) => { let _ = sink.subscribe(format!("{CHANNEL_PREFIX}{r}")).await; }
                                Some(Subscription::Leave(r)) => { let _ = sink.unsubscribe(format!("{CHANNEL_PREFIX}{r}")).await; }
                                None => return,
                            },
                            msg = stream.next() => match msg {
                                Some(msg) => deliver(&rooms, instance, &msg),
                                None => break,
                            },
                        }
                    }
                }
            }
            _ => drop(live),
        }
        metrics.redis_up.set(0);
        if std::mem::take(&mut was_up) {
            warn!("redis room link lost; rooms are local until it returns");
        }
        // Subscriptions queued meanwhile are covered by the full resubscribe.
        while subs.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn deliver(rooms: &Weak<Rooms>, instance: InstanceId, msg: &redis::Msg) {
    let Some(room) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
        return;
    };
    let body = msg.get_payload_bytes();
    if body.len() < 17 || body[..16] == instance {
        return;
    }
    let Ok(opcode) = OpCode::try_from(body[16]) else {
        return;
    };
    if let Some(rooms) = rooms.upgrade() {
        rooms.deliver_remote(room, opcode, &body[17..]);
    }
}

/// A random id for this process, to recognise its own messages.
fn instance_id() -> InstanceId {
    let mut id = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_err()
    {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        id[..8].copy_from_slice(&seed.as_nanos().to_le_bytes()[..8]);
        id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    id
}
