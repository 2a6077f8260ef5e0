//! CPU and memory from `/proc`: our own threads, to tell when the generator
//! rather than the server was the bottleneck, and a local server's (given
//! `--server-pid`), sampled at the start and end of the counted window.

use std::fs;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How worker threads are named (`wsecho-load-1`...); the main thread,
/// worker 0, is counted with them.
pub const WORKER_THREAD_PREFIX: &str = "wsecho-load-";

/// `/proc` counts CPU time in USER_HZ ticks, which the Linux ABI fixes at
/// 100 per second (reading `sysconf(_SC_CLK_TCK)` would need unsafe FFI).
const TICKS_PER_SEC: f64 = 100.0;

/// A worker thread at or above this share of one core was saturated.
pub const BOTTLENECK_PCT: f64 = 90.0;

#[derive(Debug, Clone)]
pub struct ThreadSample {
    pub tid: u32,
    pub name: String,
    pub ticks: u64,
}

/// CPU time used so far by this process and by each of its threads.
#[derive(Debug, Clone)]
pub struct CpuSample {
    pub at: Instant,
    pub process: u64,
    pub threads: Vec<ThreadSample>,
}

/// One thread's share of a core over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadCpu {
    pub name: String,
    pub cpu_pct: f64,
}

#[derive(Debug, Clone, Default)]
pub struct CpuUsage {
    /// Whole process, in % of one core (can exceed 100).
    pub total_pct: f64,
    pub threads: Vec<ThreadCpu>,
}

pub fn sample_self() -> Option<CpuSample> {
    let at = Instant::now();
    let process = stat_ticks(&fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut threads = Vec::new();
    for entry in fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = entry.path();
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let ticks = fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| stat_ticks(&s));
        // The main thread is worker 0 (see `engine`): named like the others
        // here, whatever the binary is called.
        let name = if tid == std::process::id() {
            format!("{WORKER_THREAD_PREFIX}0")
        } else {
            fs::read_to_string(path.join("comm")).unwrap_or_default()
        };
        if let Some(ticks) = ticks {
            threads.push(ThreadSample {
                tid,
                name: name.trim().to_owned(),
                ticks,
            });
        }
    }
    threads.sort_by_key(|t| t.tid);
    Some(CpuSample {
        at,
        process,
        threads,
    })
}

/// CPU use between two samples; threads are those alive in both.
pub fn usage(before: &CpuSample, after: &CpuSample) -> CpuUsage {
    let secs = after.at.duration_since(before.at).as_secs_f64();
    if secs <= 0.0 {
        return CpuUsage::default();
    }
    let pct = |ticks: u64| ticks as f64 / TICKS_PER_SEC / secs * 100.0;
    let threads = after
        .threads
        .iter()
        .filter_map(|t| {
            let b = before.threads.iter().find(|b| b.tid == t.tid)?;
            Some(ThreadCpu {
                name: t.name.clone(),
                cpu_pct: round1(pct(t.ticks.saturating_sub(b.ticks))),
            })
        })
        .collect();
    CpuUsage {
        total_pct: round1(pct(after.process.saturating_sub(before.process))),
        threads,
    }
}

/// Another process's CPU time so far, read two ways. The whole-process
/// ticks count threads that have exited but move in 10 ms steps, too coarse
/// for a server that uses a few hundred ticks in a counted window; each
/// live thread's `schedstat` is the same clock in nanoseconds.
#[derive(Debug, Clone)]
pub struct ProcessCpu {
    ticks: u64,
    threads_ns: Vec<(u32, u64)>,
}

pub fn process_cpu(pid: u32) -> Option<ProcessCpu> {
    let ticks = stat_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let mut threads_ns = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let tid = entry.file_name().to_str().and_then(|s| s.parse().ok());
        let ns = fs::read_to_string(entry.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let (Some(tid), Some(ns)) = (tid, ns) {
            threads_ns.push((tid, ns));
        }
    }
    Some(ProcessCpu { ticks, threads_ns })
}

/// Which reading a process's CPU figure came from, so that a figure only
/// as fine as a tick says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuClock {
    /// The threads' nanoseconds.
    Ns,
    /// The whole process's 10 ms ticks: a thread exited with its time.
    Ticks,
}

/// Seconds of CPU a process used between two readings: its threads'
/// nanoseconds (a thread born in between counts whole). A thread that
/// exited in between takes its time out of that sum; the ticks still hold
/// it and, truncated at both ends, differ from the sum by less than two
/// ticks otherwise, so more than that means the ticks are the figure.
pub fn cpu_secs_between(before: &ProcessCpu, after: &ProcessCpu) -> (f64, CpuClock) {
    let ns: u64 = after
        .threads_ns
        .iter()
        .map(|&(tid, ns)| {
            let then = before.threads_ns.iter().find(|t| t.0 == tid);
            ns.saturating_sub(then.map_or(0, |t| t.1))
        })
        .sum();
    let fine = ns as f64 / 1e9;
    let coarse = after.ticks.saturating_sub(before.ticks) as f64 / TICKS_PER_SEC;
    if coarse > fine + 2.0 / TICKS_PER_SEC {
        (coarse, CpuClock::Ticks)
    } else {
        (fine, CpuClock::Ns)
    }
}

/// % of one core that `cpu_secs` of CPU time over `secs` of wall time is,
/// to a thousandth of a point: a tenth would be a step of 0.3 % at a third
/// of a core, larger than the differences the results compare.
pub fn pct_of_core(cpu_secs: f64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    (cpu_secs / secs * 100.0 * 1000.0).round() / 1000.0
}

/// Whether process `pid` holds a TCP socket listening on `port` (IPv4 or
/// IPv6, any address), from its `/proc` entries; `None` when they cannot
/// be read (no such process, or another user's). Why: `--server-pid` given
/// a wrapper's pid (`cargo run`, `timeout`, a shell) reports that
/// process's CPU and memory, a few MiB that never move, as the server's.
pub fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        listening.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| listener_inode(line, port)),
        );
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let holds = fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|i| i.parse::<u64>().ok());
            inode.is_some_and(|i| listening.contains(&i))
        })
    });
    Some(holds)
}

/// The socket inode of a `/proc/net/tcp` line, when it listens on `port`:
/// `sl local_address rem_address st ... inode`, the local address as
/// `HEX_IP:HEX_PORT` and state `0A` for LISTEN.
fn listener_inode(line: &str, port: u16) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local_port = fields.get(1)?.rsplit_once(':')?.1;
    let listens = *fields.get(3)? == "0A";
    (listens && u16::from_str_radix(local_port, 16).ok()? == port)
        .then(|| fields.get(9)?.parse().ok())?
}

/// A process's resident memory, in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime from a `stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ')': state is field 3, so utime (14) and stime (15) are the
    // 12th and 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own listener is found; a port we only connect from is not; a
    /// process that is not there is unknown.
    #[test]
    fn a_listening_socket_is_found_among_a_process_descriptors() {
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listens_on(me, port), Some(true));
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(listens_on(me, client_port), Some(false));
        assert_eq!(listens_on(u32::MAX, port), None);
    }

    #[test]
    fn a_proc_net_tcp_line_names_its_listener() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        let listen = "   0: 0100007F:26AC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        let established = "   1: 0100007F:26AC 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(listener_inode(listen, 9900), Some(4242));
        assert_eq!(listener_inode(listen, 9901), None);
        assert_eq!(listener_inode(established, 9900), None);
        assert_eq!(listener_inode(header, 9900), None);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (odd) name)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        assert_eq!(stat_ticks(line), Some(300));
    }

    fn sample(at: Instant, process: u64, threads: &[(u32, u64)]) -> CpuSample {
        CpuSample {
            at,
            process,
            threads: threads
                .iter()
                .map(|&(tid, ticks)| ThreadSample {
                    tid,
                    name: format!("t{tid}"),
                    ticks,
                })
                .collect(),
        }
    }

    #[test]
    fn usage_is_ticks_over_elapsed_time_for_threads_alive_in_both() {
        let t0 = Instant::now();
        let before = sample(t0, 1000, &[(1, 100), (2, 500)]);
        // Two seconds later: thread 1 used 150 ticks (75 % of a core),
        // thread 2 is gone, thread 3 is new; the process used 300 ticks.
        let after = sample(t0 + Duration::from_secs(2), 1300, &[(1, 250), (3, 40)]);
        let u = usage(&before, &after);
        assert_eq!(u.total_pct, 150.0);
        assert_eq!(
            u.threads,
            vec![ThreadCpu {
                name: "t1".into(),
                cpu_pct: 75.0
            }]
        );
        assert_eq!(pct_of_core(0.5, 0.5), 100.0);
        assert_eq!(pct_of_core(0.123_456_7, 1.0), 12.346);
        assert_eq!(usage(&after, &before).threads.len(), 0);
    }

    #[test]
    fn a_busy_thread_shows_its_cpu_time() {
        let before = sample_self().expect("/proc is mounted");
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        let mine = || stat_ticks(&fs::read_to_string("/proc/thread-self/stat").unwrap());
        let start = mine().unwrap();
        // Spin until this thread has used 5 more ticks (50 ms of CPU):
        // bounded by CPU used, not by a wall-clock guess.
        let mut x = 0u64;
        while mine().is_none_or(|t| t < start + 5) {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        let after = sample_self().unwrap();
        let u = usage(&before, &after);
        assert!(u.total_pct > 0.0, "{u:?}");
        let me = std::thread::current()
            .name()
            .map(|n| n.chars().take(15).collect::<String>());
        assert!(
            u.threads
                .iter()
                .any(|t| Some(&t.name) == me.as_ref() && t.cpu_pct > 0.0),
            "{u:?} (this thread: {me:?})"
        );
    }

    fn process(ticks: u64, threads_ns: &[(u32, u64)]) -> ProcessCpu {
        ProcessCpu {
            ticks,
            threads_ns: threads_ns.to_vec(),
        }
    }

    #[test]
    fn process_cpu_is_nanoseconds_unless_a_thread_left_with_its_time() {
        // 1.234 s on thread 1 and a new thread 3's 0.1 s; the ticks agree
        // to within their truncation.
        let before = process(1000, &[(1, 5_000_000_000), (2, 1_000_000_000)]);
        let after = process(
            1133,
            &[(1, 6_234_000_000), (2, 1_000_000_000), (3, 100_000_000)],
        );
        let (secs, clock) = cpu_secs_between(&before, &after);
        assert!((secs - 1.334).abs() < 1e-9 && clock == CpuClock::Ns);
        // Thread 2 exited after using 0.5 s more: only the ticks know.
        let after = process(1184, &[(1, 6_234_000_000), (3, 100_000_000)]);
        let (secs, clock) = cpu_secs_between(&before, &after);
        assert!((secs - 1.84).abs() < 1e-9 && clock == CpuClock::Ticks);
    }

    /// Our own process read from outside: the nanosecond reading follows
    /// a busy thread, and agrees with the ticks to within two of them.
    #[test]
    fn another_process_cpu_is_read_to_the_nanosecond() {
        let pid = std::process::id();
        let before = process_cpu(pid).expect("/proc is mounted");
        let mut x = 0u64;
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(1);
            std::hint::black_box(x);
        }
        let after = process_cpu(pid).unwrap();
        let (secs, _) = cpu_secs_between(&before, &after);
        assert!(secs > 0.0, "{before:?} {after:?}");
        let ticks = after.ticks.saturating_sub(before.ticks) as f64 / TICKS_PER_SEC;
        assert!(
            (secs - ticks).abs() < 2.0 / TICKS_PER_SEC,
            "{secs} s against {ticks} s of ticks"
        );
    }
}
