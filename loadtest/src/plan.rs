//! The plan of a run: the command line checked once and turned into types
//! the rest of the code matches on ([`Workload`], [`Pace`]), plus what the
//! workers share (target, dialer, upgrade request, payload layout, clock).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};

use crate::cli::{PayloadKind, RunArgs, Scenario, Segment};
use crate::clock::Clock;
use crate::handshake::Upgrade;
use crate::net::Dialer;
use crate::payload::Layout;
use crate::profile::Stages;
use crate::target::Target;

/// Largest message accepted from a server: our own size, or 64 MiB for
/// whatever else a server might send (a greeting, a broken echo).
const MAX_MESSAGE: usize = 64 << 20;

/// Messages per second per peer when `--rate` is not given.
const DEFAULT_PEER_RATE: u64 = 10;

/// An open-loop rate: fixed, or following stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    Fixed(u64),
    Staged(Stages),
}

impl Rate {
    /// Intended send time of message `k` (from 0) of the whole load, in ns
    /// since the timetable began; None once the timetable is over.
    pub fn time_of(&self, k: u64) -> Option<u64> {
        match self {
            Rate::Fixed(rate) => Some((k as f64 * 1e9 / (*rate).max(1) as f64) as u64),
            Rate::Staged(stages) => stages.time_of(k as f64),
        }
    }

    /// The rate asked for at `t_ns` since the timetable began.
    pub fn target_at(&self, t_ns: u64) -> f64 {
        match self {
            Rate::Fixed(rate) => *rate as f64,
            Rate::Staged(stages) => stages.target_at(t_ns),
        }
    }
}

/// How echo connections decide when to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Keep this many messages outstanding per connection.
    Closed { in_flight: u64 },
    /// Send on a timetable whatever comes back (latency from the intended
    /// send time).
    Open(Rate),
}

/// What the connections do, with what only that scenario needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Echo(Pace),
    Connect,
    Idle,
    /// Peers in `rooms` rooms sending `rate` messages per second in total.
    Chat {
        rooms: u64,
        rate: u64,
    },
}

impl Workload {
    pub fn from_args(args: &RunArgs) -> Workload {
        match args.scenario {
            Scenario::Echo => Workload::Echo(match (&args.rate_stages, args.rate) {
                (Some(stages), _) => Pace::Open(Rate::Staged(stages.clone())),
                (None, Some(rate)) => Pace::Open(Rate::Fixed(rate)),
                (None, None) => Pace::Closed {
                    in_flight: args.in_flight,
                },
            }),
            Scenario::Connect => Workload::Connect,
            Scenario::Idle => Workload::Idle,
            Scenario::Chat => Workload::Chat {
                rooms: args.rooms,
                rate: args.rate.unwrap_or(DEFAULT_PEER_RATE * args.connections),
            },
        }
    }

    pub fn scenario(&self) -> Scenario {
        match self {
            Workload::Echo(_) => Scenario::Echo,
            Workload::Connect => Scenario::Connect,
            Workload::Idle => Scenario::Idle,
            Workload::Chat { .. } => Scenario::Chat,
        }
    }

    /// Sends follow a timetable (the pacer is needed).
    pub fn scheduled(&self) -> bool {
        matches!(self, Workload::Echo(Pace::Open(_)) | Workload::Chat { .. })
    }

    /// A fixed total rate, when there is one.
    pub fn fixed_rate(&self) -> Option<u64> {
        match self {
            Workload::Echo(Pace::Open(Rate::Fixed(rate))) | Workload::Chat { rate, .. } => {
                Some(*rate)
            }
            _ => None,
        }
    }

    /// The open-loop timetable, when there is one.
    pub fn open_rate(&self) -> Option<&Rate> {
        match self {
            Workload::Echo(Pace::Open(rate)) => Some(rate),
            _ => None,
        }
    }

    /// Open-loop echo: two latencies are measured.
    pub fn open_loop(&self) -> bool {
        self.open_rate().is_some()
    }

    /// Closed-loop echo: messages outstanding per connection.
    pub fn in_flight(&self) -> Option<u64> {
        match self {
            Workload::Echo(Pace::Closed { in_flight }) => Some(*in_flight),
            _ => None,
        }
    }

    pub fn rooms(&self) -> Option<u64> {
        match self {
            Workload::Chat { rooms, .. } => Some(*rooms),
            _ => None,
        }
    }
}

/// Everything the workers share, fixed before the first dial.
pub struct Plan {
    pub args: RunArgs,
    pub workload: Workload,
    /// Connections of the whole load (with `--stages`: the most at once).
    pub connections: u64,
    /// `--stages`: when each connection slot is wanted.
    pub ramp: Option<Stages>,
    /// The counted window and the warm-up before it.
    pub window: Duration,
    pub warmup: Duration,
    /// This process's share of the load (0/1 alone).
    pub segment: Segment,
    /// The wall-clock moment the counted window starts, when given.
    pub start_at: Option<SystemTime>,
    pub target: Target,
    pub clock: Clock,
    pub dialer: Dialer,
    pub upgrade: Upgrade,
    pub layout: Layout,
    pub threads: usize,
    pub timeout_ns: u64,
    /// Largest message accepted from the server.
    pub max_message: usize,
}

impl Plan {
    pub fn scenario(&self) -> Scenario {
        self.workload.scenario()
    }

    /// The stages the run follows (connections or rate), if any.
    pub fn stages(&self) -> Option<&Stages> {
        match (&self.ramp, self.workload.open_rate()) {
            (Some(s), _) | (None, Some(Rate::Staged(s))) => Some(s),
            _ => None,
        }
    }

    /// What is asked for at `t_ns` since the window began: connections
    /// (--stages) or messages/s (--rate-stages), for the whole load.
    pub fn target_at(&self, t_ns: u64) -> Option<f64> {
        match (&self.ramp, self.workload.open_rate()) {
            (Some(s), _) => Some(s.target_at(t_ns)),
            (None, Some(rate @ Rate::Staged(_))) => Some(rate.target_at(t_ns)),
            _ => None,
        }
    }

    /// Connections of this segment.
    pub fn own_connections(&self) -> u64 {
        let s = self.segment;
        self.connections.saturating_sub(s.index).div_ceil(s.count)
    }

    /// Run time at which connection `n` may be dialled.
    pub fn dial_at_ns(&self, n: u64) -> u64 {
        match self.args.connect_rate {
            Some(rate) if rate > 0 => n.saturating_mul(1_000_000_000) / rate,
            _ => 0,
        }
    }

    /// Closed-loop echo on plain TCP goes to the worker's epoll loop
    /// ([`crate::scenario::direct`]) unless `--driver tasks`.
    pub fn direct(&self) -> bool {
        self.args.driver == crate::cli::Driver::Epoll
            && matches!(self.workload, Workload::Echo(Pace::Closed { .. }))
            && self.ramp.is_none()
            && !self.target.tls
            && !self.args.http2
    }

    /// The read buffer each connection starts with: room for the echoes
    /// in flight and a little more, so one `read` takes in every echo that
    /// has arrived. No more: at 16 KiB and hundreds of connections, spare
    /// room per connection is memory the cache misses on.
    pub fn read_buf(&self) -> usize {
        let frame = self.layout.size + crate::codec::MAX_HEADER;
        let in_flight = self.workload.in_flight().unwrap_or(2);
        let burst = frame.saturating_mul(in_flight.clamp(1, 64) as usize);
        burst.saturating_add(1 << 10).clamp(4 << 10, 256 << 10)
    }
}

/// Checks the flags that clap cannot check alone; an `Err` is a usage error.
pub fn validate(args: &RunArgs) -> Result<(), String> {
    let layout = layout(args);
    let scenario = args.scenario;
    match () {
        _ if args.url.is_none() => Err("a ws:// or wss:// URL is required".into()),
        _ if args.connections == 0 => Err("--connections must be at least 1".into()),
        _ if args.stages.as_ref().is_some_and(|s| s.max_target() == 0) => {
            Err("--stages never asks for a connection".into())
        }
        _ if args.stages.is_some() && (scenario != Scenario::Echo || args.rate.is_some()) => {
            Err("--stages ramps closed-loop echo connections (--rate-stages ramps a rate)".into())
        }
        _ if args.rate_stages.is_some() && scenario != Scenario::Echo => {
            Err("--rate-stages applies to the echo scenario".into())
        }
        _ if args.segment.is_some_and(|s| s.count > args.connections.max(
            args.stages.as_ref().map_or(0, |s| s.max_target()))) => {
            Err("--segment: more segments than connections".into())
        }
        _ if args.deflate.is_some() && args.http2 => {
            Err("--deflate is offered on HTTP/1.1 upgrades only (not with --http2)".into())
        }
        _ if args.duration.is_zero() => Err("--duration must be above 0".into()),
        _ if args.rate == Some(0) => Err("--rate must be above 0".into()),
        _ if args.connect_rate == Some(0) => Err("--connect-rate must be above 0".into()),
        _ if args.threads == Some(0) => Err("--threads must be at least 1".into()),
        _ if args.in_flight == 0 => Err("--in-flight must be at least 1".into()),
        _ if args.server_pid.is_some_and(|pid| crate::cpu::rss_kib(pid).is_none()) => Err(format!(
            "--server-pid {}: no such process (or its memory cannot be read)",
            args.server_pid.unwrap_or_default()
        )),
        _ if args.timeout.is_zero() => Err("--timeout must be above 0".into()),
        _ if args.size > MAX_MESSAGE => Err(format!("--size is capped at {MAX_MESSAGE} bytes")),
        _ if args.rate.is_some() && matches!(scenario, Scenario::Idle | Scenario::Connect) => {
            Err("--rate applies to the echo and chat scenarios".into())
        }
        _ if scenario == Scenario::Chat && !layout.carries_time() => Err(
            "chat messages carry sender, seq and send time: --size at least 20 (binary) or 40 (--text)"
                .into(),
        ),
        _ if scenario == Scenario::Chat && (args.rooms == 0 || args.rooms > args.connections) => {
            Err("--rooms must be between 1 and --connections".into())
        }
        _ if layout.seq_bits() < 64 && args.in_flight > max_in_flight(&layout) => Err(format!(
            "a {} B payload carries {} bits of sequence number: --in-flight at most {}",
            args.size,
            layout.seq_bits(),
            max_in_flight(&layout)
        )),
        _ => Ok(()),
    }
}

/// What to say when `--server-pid` names a process that does not listen on
/// the target's port: most likely a wrapper (`cargo run`, `timeout`) whose
/// CPU and memory would be reported as the server's. A warning, not an
/// error: a server behind a proxy on this machine listens elsewhere.
pub fn server_pid_warning(args: &RunArgs) -> Option<String> {
    let (pid, target) = (args.server_pid?, args.url.as_ref()?);
    (crate::cpu::listens_on(pid, target.port) == Some(false)).then(|| {
        format!(
            "--server-pid {pid} does not listen on port {}: its CPU and memory are reported as the server's (a wrapper such as `cargo run` or `timeout`? give the server's own pid)",
            target.port
        )
    })
}

/// The message layout `--size`, `--text`, `--payload` and `--verify` ask
/// for.
fn layout(args: &RunArgs) -> Layout {
    let layout = match args.payload {
        PayloadKind::Filler => Layout::new(args.size, args.text),
        PayloadKind::TextJson => Layout::text_json(args.size),
    };
    let layout = Layout {
        verify: args.verify,
        ..layout
    };
    match args.scenario {
        Scenario::Echo => layout.with_wire(RandomState::new().hash_one(0u64)),
        _ => layout,
    }
}

/// Most messages in flight that a payload's sequence bits tell apart: half
/// their range (the rest tells a late echo from an early one); with no bits
/// at all, echoes are matched in order, one at a time.
fn max_in_flight(layout: &Layout) -> u64 {
    match layout.seq_bits() {
        0 => 1,
        bits @ 1..64 => 1 << (bits - 1),
        _ => u64::MAX,
    }
}

/// Builds everything the workers share. Fails on what only shows at run
/// time: a name that does not resolve, a source address of the wrong family.
pub fn build(args: RunArgs) -> anyhow::Result<Plan> {
    let target = args.url.clone().ok_or_else(|| anyhow!("no URL"))?;
    let addr = target
        .resolve()
        .with_context(|| format!("cannot resolve {}", target.host))?;
    let tls = target
        .tls
        .then(|| crate::tls::client_config(args.insecure, args.http2))
        .transpose()
        .context("TLS configuration")?;
    let sources = args.source_ip.clone().map(|s| s.0).unwrap_or_default();
    let dialer = Dialer::new(&target, addr, sources, tls, args.timeout).map_err(|e| anyhow!(e))?;
    let upgrade = Upgrade::new(&target, &args.headers, args.subprotocol.as_deref())
        .with_deflate(args.deflate.as_ref());
    let ramp = args.stages.clone();
    let connections = ramp.as_ref().map_or(args.connections, Stages::max_target);
    let segment = args.segment.unwrap_or(Segment { index: 0, count: 1 });
    let own = connections
        .saturating_sub(segment.index)
        .div_ceil(segment.count);
    if let Some(limit) = crate::net::raise_fd_limit()
        && own.saturating_add(64) > limit
    {
        anyhow::bail!(
            "{own} connections need more file descriptors than the limit of {limit} (ulimit -n)"
        );
    }
    let staged = args.stages.as_ref().or(args.rate_stages.as_ref());
    let window = staged.map_or(args.duration, Stages::total);
    let warmup = args.warmup.unwrap_or(if staged.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // --http2: each worker fills its own connections, so no more workers
    // than connections (`-c 100 --streams-per-connection 100` is one).
    let dialled = own
        .div_ceil(args.streams_per_connection.unwrap_or(1))
        .max(1);
    let threads = args.threads.unwrap_or(cpus).clamp(1, dialled as usize);
    Ok(Plan {
        workload: Workload::from_args(&args),
        connections,
        ramp,
        window,
        warmup,
        segment,
        start_at: args.start_at,
        layout: layout(&args),
        timeout_ns: args.timeout.as_nanos() as u64,
        max_message: MAX_MESSAGE.max(args.size),
        clock: Clock::start(),
        threads,
        args,
        target,
        dialer,
        upgrade,
    })
}
