//! The echo scenario: send on each connection, verify every echo, time
//! every round trip. Closed loop keeps `--in-flight` messages outstanding;
//! open loop (`--rate`) sends on a fixed schedule whatever comes back, and
//! times each echo from the moment its message was *meant* to go, so a
//! stalled server cannot hide its stall by slowing the sender down
//! (coordinated omission).

use std::ops::ControlFlow;
use std::rc::Rc;

use crate::conn::{Conn, Event, Msg};
use crate::payload::{Corrupt, Layout};
use crate::plan::{Pace, Rate, Workload};
use crate::scenario;
use crate::scenario::{Phases, WorkerCtx};
use crate::stats::{ErrorKind, Stats};
use crate::window::{Echo, Window};

/// Open loop: at most this many overdue messages are queued per wake-up,
/// so a connection that fell behind catches up without starving the
/// others on its thread.
const MAX_BURST: u32 = 256;
/// Open loop: stop queuing while this much is still unwritten (the server
/// is not reading); the schedule keeps its times, so the wait shows up in
/// the corrected latency.
const MAX_BACKLOG: usize = 4 << 20;

pub async fn connection(ctx: Rc<WorkerCtx>, id: u64) {
    if let Some(ramp) = &ctx.plan.ramp {
        return ramped(&ctx, id, ramp.active(id)).await;
    }
    scenario::ramp(&ctx, id).await;
    let conn = scenario::open(&ctx, id, &ctx.plan.upgrade, true).await;
    ctx.dialled();
    let Some(mut conn) = conn else { return };
    let phases = ctx.phases().await;
    let mut echo = EchoLoop::new(&ctx, id, phases, None);
    let end = match &ctx.direct {
        Some(direct) => {
            let end;
            (conn, echo, end) = direct.drive(&ctx, conn, echo).await;
            end
        }
        None => echo.drive(&mut conn).await,
    };
    echo.finish(&mut conn, end).await;
    scenario::closed(&ctx);
}

/// `--stages`: the slot is up during each of `spans` (ns since the window
/// began), dialled at the start of each and closed at its end.
async fn ramped(ctx: &Rc<WorkerCtx>, id: u64, spans: Vec<(u64, u64)>) {
    let phases = ctx.phases().await;
    let origin = phases.window_start_ns;
    for (open_at, close_at) in spans {
        let at = origin + open_at;
        if at > ctx.now_ns() {
            tokio::time::sleep_until(ctx.plan.clock.at(at)).await;
        }
        let Some(mut conn) = scenario::open(ctx, id, &ctx.plan.upgrade, true).await else {
            continue;
        };
        let mut echo = EchoLoop::new(ctx, id, phases, None);
        echo.stop_ns = (origin + close_at).min(phases.window_end_ns);
        let end = echo.drive(&mut conn).await;
        echo.finish(&mut conn, end).await;
        scenario::closed(ctx);
    }
}

/// How a connection's run ended.
pub enum End {
    /// Window over and every echo back (or given up): we close.
    Done,
    /// The server sent a close frame (with this code).
    ServerClosed(Option<u16>),
    /// EOF, I/O or protocol error: nothing more to say on it.
    Broken,
}

/// The open-loop timetable of one connection: it sends messages `k`,
/// `k + step`, `k + 2·step`... of the whole load's timetable (`step` is the
/// number of connections), so the connections interleave into one stream.
struct Schedule {
    next_ns: u64,
    k: u64,
    step: u64,
    origin_ns: u64,
    rate: Rate,
}

impl Schedule {
    fn advance(&mut self) {
        self.k += self.step;
        self.next_ns = self.due(self.k);
    }

    fn due(&self, k: u64) -> u64 {
        self.rate
            .time_of(k)
            .map_or(u64::MAX, |t| self.origin_ns.saturating_add(t))
    }
}

pub struct EchoLoop {
    ctx: Rc<WorkerCtx>,
    id: u32,
    layout: Layout,
    phases: Phases,
    window: Window,
    in_flight: u32,
    schedule: Option<Schedule>,
    /// Connect scenario: stop after this many messages.
    budget: Option<u64>,
    /// No new message at or after this run time (the window's end, or a
    /// ramped slot's closing time).
    pub stop_ns: u64,
    timeout_ns: u64,
    seen_any: bool,
}

impl EchoLoop {
    pub fn new(ctx: &Rc<WorkerCtx>, id: u64, phases: Phases, budget: Option<u64>) -> Self {
        let plan = &ctx.plan;
        let pace = match &plan.workload {
            Workload::Echo(pace) if budget.is_none() => pace.clone(),
            _ => Pace::Closed { in_flight: 1 },
        };
        let (in_flight, schedule) = match pace {
            Pace::Closed { in_flight } => (in_flight.clamp(1, u32::MAX as u64) as u32, None),
            Pace::Open(rate) => {
                // A fixed rate starts with the warm-up; stages are the window.
                let origin_ns = match rate {
                    Rate::Fixed(_) => phases.start_ns,
                    Rate::Staged(_) => phases.window_start_ns,
                };
                let mut s = Schedule {
                    next_ns: 0,
                    k: id,
                    step: plan.connections,
                    origin_ns,
                    rate,
                };
                s.next_ns = s.due(id);
                (1, Some(s))
            }
        };
        let window = Window::new(if schedule.is_some() {
            64
        } else {
            in_flight as usize
        });
        EchoLoop {
            ctx: ctx.clone(),
            id: id as u32,
            layout: ctx.plan.layout,
            phases,
            window,
            in_flight,
            schedule,
            budget,
            stop_ns: phases.window_end_ns,
            timeout_ns: ctx.plan.timeout_ns,
            seen_any: false,
        }
    }

    /// Sends and receives until the window is over and the echoes are in.
    pub async fn drive(&mut self, conn: &mut Conn) -> End {
        let clock = self.ctx.plan.clock;
        let now = clock.now_ns();
        self.send(conn, now);
        self.rearm(conn, now);
        loop {
            let event = conn.event().await;
            let now = clock.now_ns();
            let timer = matches!(event, Event::Timer);
            match self.step(conn, event, now) {
                ControlFlow::Break(end) => return end,
                ControlFlow::Continue(sent) => {
                    if timer || (sent && self.schedule.is_some()) {
                        self.rearm(conn, now);
                    }
                }
            }
        }
    }

    /// The first sends, for a driver other than [`EchoLoop::drive`].
    pub fn start(&mut self, conn: &mut Conn, now: u64) {
        self.send(conn, now);
    }

    /// The connection's number: the order it was dialled in.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// One turn of the loop at `now`: what `event` brought, then what is
    /// due. Breaks with how the connection ended once it is through;
    /// otherwise says whether anything was queued.
    pub fn step(&mut self, conn: &mut Conn, event: Event, now: u64) -> ControlFlow<End, bool> {
        match event {
            Event::Data => {
                if let Some(end) = self.receive(conn, now) {
                    return ControlFlow::Break(end);
                }
            }
            Event::Timer => {}
            Event::Eof => {
                return ControlFlow::Break(self.broken("server closed the TCP connection".into()));
            }
            Event::Failed(e) => return ControlFlow::Break(self.failed(e)),
        }
        let expired = self.window.expire(now, self.timeout_ns);
        self.ctx
            .stats
            .borrow_mut()
            .error(ErrorKind::Lost, expired, || {
                format!("no echo within {:?}", self.ctx.plan.args.timeout)
            });
        let sent = self.send(conn, now);
        if self.sending_over(now) && self.window.outstanding() == 0 {
            return ControlFlow::Break(End::Done);
        }
        ControlFlow::Continue(sent)
    }

    fn sending_over(&self, now: u64) -> bool {
        match (&self.schedule, self.budget) {
            (_, Some(budget)) => self.window.next_seq() >= budget,
            (Some(s), None) => s.next_ns >= self.stop_ns,
            (None, None) => now >= self.stop_ns,
        }
    }

    /// Queues what is due: closed loop, enough to have `in_flight`
    /// outstanding; open loop, every message whose time has come.
    fn send(&mut self, conn: &mut Conn, now: u64) -> bool {
        if self.sending_over(now) {
            return false;
        }
        let mut stats = self.ctx.stats.borrow_mut();
        let counts = self.phases.counts(now);
        let slack = self.ctx.pacer.as_ref().map_or(0, |p| p.slack_ns());
        let mut n = 0u32;
        loop {
            let intended = match &self.schedule {
                None if self.window.outstanding() >= self.in_flight => break,
                None => now,
                Some(s) if s.next_ns > now + slack || n >= MAX_BURST => break,
                Some(_) if conn.pending_write() >= MAX_BACKLOG => break,
                // Early within the slack: timed from now, so that the
                // time it was not yet due never shortens its latency.
                Some(s) => s.next_ns.min(now),
            };
            let (seq, lost) = self.window.push(intended, now);
            conn.queue_message(&self.layout, self.id, seq, now);
            stats.on_sent(counts, self.layout.size);
            stats.error(ErrorKind::Lost, lost, || "echo window overflowed".into());
            n += 1;
            if let Some(s) = &mut self.schedule {
                s.advance();
            }
            if self.sending_over(now) {
                break;
            }
        }
        n > 0
    }

    /// The timer: the next scheduled send, the end of the window, or the
    /// oldest message's timeout, whichever comes first. Closed loop re-arms
    /// only when it fires (a stall check), not per message.
    fn rearm(&mut self, conn: &mut Conn, now: u64) {
        let mut deadline = self
            .window
            .next_expiry(self.timeout_ns)
            .unwrap_or(now + self.timeout_ns);
        if now < self.stop_ns {
            deadline = deadline.min(self.stop_ns);
        }
        if let Some(s) = &self.schedule
            && s.next_ns < self.stop_ns
        {
            match &self.ctx.pacer {
                Some(pacer) => conn.pace(pacer, s.next_ns),
                None => deadline = deadline.min(s.next_ns),
            }
        }
        conn.arm(self.ctx.plan.clock.at(deadline));
    }

    /// Checks every message the last read brought.
    fn receive(&mut self, conn: &mut Conn, now: u64) -> Option<End> {
        // A handle of its own: `check` borrows `self` mutably.
        let ctx = self.ctx.clone();
        let mut stats = ctx.stats.borrow_mut();
        loop {
            match conn.next_message() {
                Ok(None) => return None,
                Ok(Some(Msg::Data { opcode, payload })) => {
                    self.check(opcode, payload, now, &mut stats)
                }
                Ok(Some(Msg::Close(code))) => {
                    let code_shown = code.map_or("none".into(), |c| c.to_string());
                    stats.error(ErrorKind::Closed, 1, || {
                        format!("server closed with code {code_shown}")
                    });
                    stats.close_code(code.unwrap_or(1005));
                    return Some(End::ServerClosed(code));
                }
                Err(e) => {
                    stats.error(ErrorKind::Protocol, 1, || e.to_string());
                    return Some(End::Broken);
                }
            }
        }
    }

    /// Verifies one echo and records it.
    fn check(&mut self, opcode: u8, payload: &[u8], now: u64, stats: &mut Stats) {
        let first = !self.seen_any;
        self.seen_any = true;
        let header = match self.layout.decode(payload, opcode) {
            Ok(h) => h,
            // Some public echo servers greet first; that is not an echo.
            Err(Corrupt::Length | Corrupt::Opcode) if first => {
                stats.greetings += 1;
                return;
            }
            Err(e) => return corrupted(stats, self.id, e),
        };
        let seq = self.window.resolve(header.seq, header.seq_bits);
        let verdict = self.window.echo(seq);
        let content_ok = header.conn.is_none_or(|c| c == self.id)
            && self.layout.content_ok(payload, self.id, seq);
        match verdict {
            Echo::Unknown => corrupted(stats, self.id, Corrupt::Mismatch),
            _ if !content_ok => corrupted(stats, self.id, Corrupt::Filler),
            Echo::Duplicate => stats.error(ErrorKind::Duplicated, 1, || {
                format!("seq {seq} echoed twice")
            }),
            Echo::Late => stats.late(),
            Echo::Fresh {
                intended_ns,
                sent_ns,
                reordered,
            } => {
                if header.sent_ns.is_some_and(|t| t != sent_ns) {
                    return corrupted(stats, self.id, Corrupt::Mismatch);
                }
                if reordered {
                    stats.error(ErrorKind::Reordered, 1, || {
                        format!("seq {seq} came back after a later one")
                    });
                }
                let corrected = (now.saturating_sub(intended_ns)) / 1000;
                let uncorrected = self
                    .schedule
                    .as_ref()
                    .map(|_| now.saturating_sub(sent_ns) / 1000);
                stats.on_received(
                    self.phases.counts(now),
                    payload.len(),
                    corrected,
                    uncorrected,
                );
            }
        }
    }

    /// The connection failed with `e`: counted, and the run on it is over.
    pub fn failed(&mut self, e: std::io::Error) -> End {
        self.broken(format!("connection failed: {e}"))
    }

    fn broken(&mut self, why: String) -> End {
        let mut stats = self.ctx.stats.borrow_mut();
        stats.error(ErrorKind::Closed, 1, || why);
        stats.close_code(1006);
        End::Broken
    }

    /// Counts what never came back and closes the connection.
    pub async fn finish(&mut self, conn: &mut Conn, end: End) {
        let lost = self.window.finish();
        self.ctx
            .stats
            .borrow_mut()
            .error(ErrorKind::Lost, lost, || {
                "no echo before the connection ended".into()
            });
        let deadline = scenario::close_deadline(&self.ctx);
        match end {
            End::Done => {
                let code = conn.close(1000, deadline).await;
                self.ctx.stats.borrow_mut().close_code(code);
            }
            End::ServerClosed(code) => conn.answer_close(code, deadline).await,
            End::Broken => {}
        }
    }
}

fn corrupted(stats: &mut Stats, id: u32, why: Corrupt) {
    stats.error(ErrorKind::Corrupted, 1, || {
        format!("connection {id}: {why}")
    });
}
