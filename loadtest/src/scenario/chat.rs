//! The chat scenario: `-c` peers spread over `--rooms` rooms (peer `i` on
//! `/chat/room-{i % R}`), each sending on a schedule (`--rate` in total),
//! every message carrying sender, sequence number and send time. Each
//! delivery is checked (content, own message, room), timed from its send
//! time (fan-out latency), and each sender's sequence is followed, so a gap
//! is a dropped delivery and a step back a duplicate. At the end, messages
//! a peer never got from a sender it was still listening to are drops too.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::conn::{Conn, Event, Msg};
use crate::handshake::Upgrade;
use crate::payload::{Corrupt, Layout};
use crate::plan::Workload;
use crate::scenario;
use crate::scenario::{Phases, WorkerCtx};
use crate::stats::{ErrorKind, Stats};

/// Time between "everyone is connected" and the first message, for the
/// server to put the last peers in their rooms.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Longest wait after the window for deliveries still on their way.
const LINGER: Duration = Duration::from_secs(1);
const MAX_BURST: u32 = 64;

/// What a peer reports at the end, for the tail-drop count.
#[derive(Debug, Clone)]
pub struct PeerEnd {
    pub id: u64,
    /// Messages it sent.
    pub sent: u64,
    /// Per room member (index `sender / rooms`): the next sequence number
    /// it expected from that sender.
    pub expected: Vec<u64>,
    /// Still connected at the end (its tail counts).
    pub alive: bool,
}

/// Path of room `room` under the URL's path: `/` gives `/chat/room-0`.
pub fn room_path(base: &str, room: u64) -> String {
    let base = base
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    format!("{base}/chat/room-{room}")
}

/// Peers in `room` when `peers` are dealt round-robin over `rooms`.
pub fn room_size(room: u64, peers: u64, rooms: u64) -> u64 {
    peers.saturating_sub(room).div_ceil(rooms)
}

pub async fn peer(ctx: Rc<WorkerCtx>, id: u64) -> Option<PeerEnd> {
    scenario::ramp(&ctx, id).await;
    let plan = &ctx.plan;
    let Workload::Chat { rooms, .. } = plan.workload else {
        unreachable!("chat peers run only in the chat workload")
    };
    let room = id % rooms;
    let target = plan.target.with_path(room_path(&plan.target.path, room));
    let upgrade = Upgrade::new(
        &target,
        &plan.args.headers,
        plan.args.subprotocol.as_deref(),
    )
    .with_deflate(plan.args.deflate.as_ref());
    let conn = scenario::open(&ctx, id, &upgrade, true).await;
    ctx.dialled();
    let mut conn = conn?;
    let phases = ctx.phases().await;
    let mut peer = Peer::new(&ctx, id, phases);
    let alive = peer.drive(&mut conn).await;
    if alive {
        let code = conn.close(1000, scenario::close_deadline(&ctx)).await;
        ctx.stats.borrow_mut().close_code(code);
    }
    scenario::closed(&ctx);
    Some(PeerEnd {
        id,
        sent: peer.seq,
        expected: peer.expected,
        alive,
    })
}

struct Peer<'a> {
    ctx: &'a WorkerCtx,
    id: u32,
    rooms: u64,
    layout: Layout,
    phases: Phases,
    next_ns: u64,
    interval_ns: u64,
    seq: u64,
    expected: Vec<u64>,
    fanout: u64,
    linger_end_ns: u64,
}

impl<'a> Peer<'a> {
    fn new(ctx: &'a WorkerCtx, id: u64, phases: Phases) -> Self {
        let Workload::Chat { rooms, rate } = ctx.plan.workload else {
            unreachable!("chat peers run only in the chat workload")
        };
        let peers = ctx.plan.connections;
        let per_ns = 1e9 / rate.max(1) as f64;
        let room = id % rooms;
        let size = room_size(room, peers, rooms);
        let linger = ctx.plan.args.timeout.min(LINGER).as_nanos() as u64;
        Peer {
            ctx,
            id: id as u32,
            rooms,
            layout: ctx.plan.layout,
            phases,
            next_ns: phases.start_ns + (id as f64 * per_ns) as u64,
            interval_ns: ((peers as f64 * per_ns) as u64).max(1),
            seq: 0,
            expected: vec![0; size as usize],
            fanout: size.saturating_sub(1),
            linger_end_ns: phases.window_end_ns + linger,
        }
    }

    /// Sends on schedule and takes deliveries until the linger after the
    /// window is over. False when the connection did not survive.
    async fn drive(&mut self, conn: &mut Conn) -> bool {
        let clock = self.ctx.plan.clock;
        loop {
            let now = clock.now_ns();
            self.send(conn, now);
            match &self.ctx.pacer {
                Some(pacer) if self.next_ns < self.phases.window_end_ns => {
                    conn.pace(pacer, self.next_ns);
                    conn.arm(clock.at(self.linger_end_ns));
                }
                _ if self.next_ns < self.phases.window_end_ns => conn.arm(clock.at(self.next_ns)),
                _ => conn.arm(clock.at(self.linger_end_ns)),
            }
            let why = match conn.event().await {
                Event::Timer if clock.now_ns() >= self.linger_end_ns => return true,
                Event::Timer => continue,
                Event::Data => match self.receive(conn, clock.now_ns()) {
                    None => continue,
                    Some(why) => why,
                },
                Event::Eof => "server closed the TCP connection".to_owned(),
                Event::Failed(e) => format!("connection failed: {e}"),
            };
            self.ctx
                .stats
                .borrow_mut()
                .error(ErrorKind::Closed, 1, || why);
            return false;
        }
    }

    fn send(&mut self, conn: &mut Conn, now: u64) {
        let ctx = self.ctx;
        let mut stats = ctx.stats.borrow_mut();
        let slack = ctx.pacer.as_ref().map_or(0, |p| p.slack_ns());
        let mut n = 0;
        while self.next_ns <= now + slack
            && self.next_ns < self.phases.window_end_ns
            && n < MAX_BURST
        {
            conn.queue_message(&self.layout, self.id, self.seq, now);
            let counts = self.phases.counts(now);
            stats.on_sent(counts, self.layout.size);
            if counts {
                stats.expected_deliveries += self.fanout;
            }
            self.seq += 1;
            self.next_ns += self.interval_ns;
            n += 1;
        }
    }

    /// Checks every delivery the last read brought; `Some(reason)` when
    /// the connection is over.
    fn receive(&mut self, conn: &mut Conn, now: u64) -> Option<String> {
        let ctx = self.ctx;
        let mut stats = ctx.stats.borrow_mut();
        loop {
            match conn.next_message() {
                Ok(None) => return None,
                Ok(Some(Msg::Data { opcode, payload })) => {
                    self.deliver(opcode, payload, now, &mut stats)
                }
                Ok(Some(Msg::Close(code))) => {
                    stats.close_code(code.unwrap_or(1005));
                    return Some(format!("server closed a chat peer (code {code:?})"));
                }
                Err(e) => {
                    stats.error(ErrorKind::Protocol, 1, || e.to_string());
                    return Some(format!("protocol error: {e}"));
                }
            }
        }
    }

    fn deliver(&mut self, opcode: u8, payload: &[u8], now: u64, stats: &mut Stats) {
        let corrupt = |stats: &mut Stats, why: Corrupt| {
            stats.error(ErrorKind::Corrupted, 1, || format!("chat delivery: {why}"));
        };
        let header = match self.layout.decode(payload, opcode) {
            Ok(h) => h,
            Err(e) => return corrupt(stats, e),
        };
        let (Some(sender), Some(sent_ns)) = (header.conn, header.sent_ns) else {
            return corrupt(stats, Corrupt::Header);
        };
        if !self.layout.content_ok(payload, sender, header.seq) || sent_ns > now {
            return corrupt(stats, Corrupt::Filler);
        }
        if sender == self.id {
            return stats.error(ErrorKind::SelfDelivery, 1, || {
                "a peer received its own message".into()
            });
        }
        let member = (sender as u64 / self.rooms) as usize;
        if sender as u64 % self.rooms != self.id as u64 % self.rooms
            || member >= self.expected.len()
        {
            return corrupt(stats, Corrupt::Mismatch);
        }
        let expected = &mut self.expected[member];
        if header.seq < *expected {
            return stats.error(ErrorKind::Duplicated, 1, || {
                format!(
                    "sender {sender} seq {} delivered again or out of order",
                    header.seq
                )
            });
        }
        let gap = header.seq - *expected;
        stats.error(ErrorKind::Lost, gap, || {
            format!("sender {sender}: {gap} deliveries skipped")
        });
        *expected = header.seq + 1;
        let latency_us = (now - sent_ns) / 1000;
        stats.on_received(self.phases.counts(now), payload.len(), latency_us, None);
    }
}

/// Deliveries never made to peers still listening at the end: for each
/// live receiver and each other member of its room, what that member sent
/// past the last message the receiver got from it.
pub fn tail_drops(peers: &[PeerEnd], rooms: u64) -> u64 {
    let sent: HashMap<u64, u64> = peers.iter().map(|p| (p.id, p.sent)).collect();
    let mut drops = 0;
    for receiver in peers.iter().filter(|p| p.alive) {
        let room = receiver.id % rooms;
        for (member, next) in receiver.expected.iter().enumerate() {
            let sender = member as u64 * rooms + room;
            if sender != receiver.id
                && let Some(sent) = sent.get(&sender)
            {
                drops += sent.saturating_sub(*next);
            }
        }
    }
    drops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_paths() {
        assert_eq!(room_path("/", 3), "/chat/room-3");
        assert_eq!(room_path("/api/?x=1", 0), "/api/chat/room-0");
        assert_eq!(
            (
                room_size(0, 10, 3),
                room_size(1, 10, 3),
                room_size(2, 10, 3)
            ),
            (4, 3, 3)
        );
        assert_eq!(room_size(0, 1, 1), 1);
    }

    #[test]
    fn tail_drops_count_what_live_receivers_missed() {
        // Two rooms; room 0 holds peers 0 and 2.
        let peers = vec![
            PeerEnd {
                id: 0,
                sent: 5,
                expected: vec![0, 3],
                alive: true,
            },
            PeerEnd {
                id: 2,
                sent: 3,
                expected: vec![5, 0],
                alive: true,
            },
            PeerEnd {
                id: 1,
                sent: 9,
                expected: vec![0],
                alive: false,
            },
        ];
        assert_eq!(tail_drops(&peers, 2), 0);
        let mut short = peers.clone();
        short[1].expected[0] = 4;
        assert_eq!(tail_drops(&short, 2), 1);
        short[1].alive = false;
        assert_eq!(tail_drops(&short, 2), 0);
    }
}
