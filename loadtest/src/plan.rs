//! The plan of a run: the command line checked once and turned into types
//! the rest of the code matches on ([`Workload`], [`Pace`]), plus what the
//! workers share (target, dialer, upgrade request, payload layout, clock).

use anyhow::{Context, anyhow};

use crate::cli::{RunArgs, Scenario};
use crate::clock::Clock;
use crate::handshake::Upgrade;
use crate::net::Dialer;
use crate::payload::Layout;
use crate::scenario::chat;
use crate::target::Target;

/// Largest message accepted from a server: our own size, or 64 MiB for
/// whatever else a server might send (a greeting, a broken echo).
const MAX_MESSAGE: usize = 64 << 20;

/// How echo connections decide when to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Keep this many messages outstanding per connection.
    Closed { in_flight: u64 },
    /// Send `rate` messages per second in total, on a timetable, whatever
    /// comes back (latency from the intended send time).
    Open { rate: u64 },
}

/// What the connections do, with what only that scenario needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            Scenario::Echo => Workload::Echo(match args.rate {
                Some(rate) => Pace::Open { rate },
                None => Pace::Closed {
                    in_flight: args.in_flight,
                },
            }),
            Scenario::Connect => Workload::Connect,
            Scenario::Idle => Workload::Idle,
            Scenario::Chat => Workload::Chat {
                rooms: args.rooms,
                rate: args
                    .rate
                    .unwrap_or(chat::DEFAULT_PEER_RATE * args.connections),
            },
        }
    }

    pub fn scenario(self) -> Scenario {
        match self {
            Workload::Echo(_) => Scenario::Echo,
            Workload::Connect => Scenario::Connect,
            Workload::Idle => Scenario::Idle,
            Workload::Chat { .. } => Scenario::Chat,
        }
    }

    /// Messages per second in total when sends follow a timetable.
    pub fn scheduled_rate(self) -> Option<u64> {
        match self {
            Workload::Echo(Pace::Open { rate }) | Workload::Chat { rate, .. } => Some(rate),
            _ => None,
        }
    }

    /// Open-loop echo: two latencies are measured.
    pub fn open_loop(self) -> bool {
        matches!(self, Workload::Echo(Pace::Open { .. }))
    }

    /// Closed-loop echo: messages outstanding per connection.
    pub fn in_flight(self) -> Option<u64> {
        match self {
            Workload::Echo(Pace::Closed { in_flight }) => Some(in_flight),
            _ => None,
        }
    }

    pub fn rooms(self) -> Option<u64> {
        match self {
            Workload::Chat { rooms, .. } => Some(rooms),
            _ => None,
        }
    }
}

/// Everything the workers share, fixed before the first dial.
pub struct Plan {
    pub args: RunArgs,
    pub workload: Workload,
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

    /// Run time at which connection `n` may be dialled.
    pub fn dial_at_ns(&self, n: u64) -> u64 {
        match self.args.connect_rate {
            Some(rate) if rate > 0 => n.saturating_mul(1_000_000_000) / rate,
            _ => 0,
        }
    }

    /// The read buffer each connection starts with: room for a few
    /// messages, so one `read` takes in every echo that has arrived.
    pub fn read_buf(&self) -> usize {
        let frame = self.layout.size + crate::codec::MAX_HEADER;
        let in_flight = self.workload.in_flight().unwrap_or(1);
        let burst = frame.saturating_mul(2 * in_flight.clamp(1, 64) as usize);
        burst.clamp(4 << 10, 256 << 10)
    }
}

/// Checks the flags that clap cannot check alone; an `Err` is a usage error.
pub fn validate(args: &RunArgs) -> Result<(), String> {
    let layout = Layout::new(args.size, args.text);
    let scenario = args.scenario;
    match () {
        _ if args.url.is_none() => Err("a ws:// or wss:// URL is required".into()),
        _ if args.connections == 0 => Err("--connections must be at least 1".into()),
        _ if args.duration.is_zero() => Err("--duration must be above 0".into()),
        _ if args.rate == Some(0) => Err("--rate must be above 0".into()),
        _ if args.connect_rate == Some(0) => Err("--connect-rate must be above 0".into()),
        _ if args.threads == Some(0) => Err("--threads must be at least 1".into()),
        _ if args.in_flight == 0 => Err("--in-flight must be at least 1".into()),
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
        .then(|| crate::tls::client_config(args.insecure))
        .transpose()
        .context("TLS configuration")?;
    let sources = args.source_ip.clone().map(|s| s.0).unwrap_or_default();
    let dialer = Dialer::new(&target, addr, sources, tls, args.timeout).map_err(|e| anyhow!(e))?;
    let upgrade = Upgrade::new(&target, &args.headers, args.subprotocol.as_deref());
    if let Some(limit) = crate::net::raise_fd_limit()
        && args.connections.saturating_add(64) > limit
    {
        anyhow::bail!(
            "{} connections need more file descriptors than the limit of {limit} (ulimit -n)",
            args.connections
        );
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .unwrap_or(cpus)
        .clamp(1, args.connections.max(1) as usize);
    Ok(Plan {
        workload: Workload::from_args(&args),
        layout: Layout::new(args.size, args.text),
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
