//! The loop and its socket type on real loopback sockets: drained after a
//! short read, an end of stream behind data, wake-ups, leaving, and no loop
//! off a current-thread runtime.

use std::cell::Cell;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::owner::*;
use super::*;
use crate::wake::woke_a_task;

/// A connected non-blocking pair: (the loop's side, the peer).
fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    (ours, peer)
}

fn noop() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

#[tokio::test]
async fn a_short_read_means_drained_until_the_next_readable_edge() {
    let (ours, mut peer) = pair();
    let mut lent = Lent::new(ours);
    peer.write_all(b"hello").unwrap();
    let mut buf = [0u8; 64];
    // Wait for the bytes: the first read may race the loopback.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        if let Poll::Ready(r) = Pin::new(&mut lent).poll_read(&mut noop(), &mut rb) {
            r.unwrap();
            assert_eq!(rb.filled(), b"hello");
            break;
        }
        lent.edge(Edge {
            readable: true,
            ..Edge::default()
        });
        assert!(Instant::now() < deadline, "no data");
    }
    peer.write_all(b"more").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Drained: no system call, no data, until an edge says otherwise.
    let mut rb = ReadBuf::new(&mut buf);
    assert!(
        Pin::new(&mut lent)
            .poll_read(&mut noop(), &mut rb)
            .is_pending()
    );
    lent.edge(Edge {
        readable: true,
        ..Edge::default()
    });
    let mut rb = ReadBuf::new(&mut buf);
    assert!(
        Pin::new(&mut lent)
            .poll_read(&mut noop(), &mut rb)
            .is_ready()
    );
    assert_eq!(rb.filled(), b"more");
}

#[tokio::test]
async fn an_end_of_stream_behind_data_is_read_after_a_short_read() {
    let (ours, mut peer) = pair();
    let mut lent = Lent::new(ours);
    peer.write_all(b"last words").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // One edge says both: readable, and closed.
    lent.edge(Edge {
        readable: true,
        writable: false,
        closed: true,
    });
    let mut buf = [0u8; 64];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(
        Pin::new(&mut lent)
            .poll_read(&mut noop(), &mut rb)
            .is_ready()
    );
    assert_eq!(rb.filled(), b"last words");
    let mut rb = ReadBuf::new(&mut buf);
    match Pin::new(&mut lent).poll_read(&mut noop(), &mut rb) {
        Poll::Ready(Ok(())) => assert!(rb.filled().is_empty(), "end of stream reads as 0"),
        other => panic!("the end of stream was not read: {other:?}"),
    }
}

/// Records what the loop did with it; echoes what it reads.
struct Probe {
    lent: Lent,
    polls: Rc<Cell<u32>>,
    left: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Driven for Probe {
    fn fd(&self) -> RawFd {
        self.lent.as_raw_fd()
    }

    fn poll(&mut self, cx: &mut Context<'_>, edge: Edge) -> Poll<()> {
        self.polls.set(self.polls.get() + 1);
        *self.waker.borrow_mut() = Some(cx.waker().clone());
        self.lent.edge(edge);
        let mut buf = [0u8; 64];
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.lent).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    let _ = Pin::new(&mut self.lent).poll_write(cx, &buf[..n]);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn leave(self: Box<Self>) {
        self.left.set(true);
    }
}

#[tokio::test]
async fn the_loop_polls_on_socket_events_and_wakes_and_lets_a_finished_session_leave() {
    let (ours, peer) = pair();
    let polls = Rc::new(Cell::new(0));
    let left = Rc::new(Cell::new(false));
    let waker = Rc::new(RefCell::new(None::<Waker>));
    let probe = Probe {
        lent: Lent::new(ours),
        polls: polls.clone(),
        left: left.clone(),
        waker: waker.clone(),
    };
    assert!(adopt(Box::new(probe)).is_ok());
    peer.set_nonblocking(true).unwrap();
    let mut peer = tokio::net::TcpStream::from_std(peer).unwrap();

    // A socket event: the loop reads, the probe echoes.
    peer.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");

    // A wake-up by the session's waker, with no socket event: one more
    // poll (the sweep's tick, a chat message). Each of several, also one
    // that comes together with a socket event: a wake is never lost to the
    // dedup flag of an earlier one.
    let w = waker.borrow().clone().unwrap();
    let polled_again = async |w: &Waker| {
        let before = polls.get();
        w.wake_by_ref();
        let deadline = Instant::now() + Duration::from_secs(5);
        while polls.get() == before {
            assert!(Instant::now() < deadline, "a wake-up was lost");
            tokio::task::yield_now().await;
        }
    };
    polled_again(&w).await;
    polled_again(&w).await;
    w.wake_by_ref();
    peer.write_all(b"pong").await.unwrap();
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
    polled_again(&w).await;

    // The peer hangs up: the probe's poll ends, and it leaves the loop.
    drop(peer);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !left.get() {
        assert!(Instant::now() < deadline, "the session never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let entries = LOOP.with(|cell| cell.borrow().as_ref().map(|l| l.entries.len()));
    assert_eq!(entries, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_current_thread_runtime_the_loop_gives_the_session_back() {
    let (ours, _peer) = pair();
    let probe = Probe {
        lent: Lent::new(ours),
        polls: Rc::default(),
        left: Rc::default(),
        waker: Rc::default(),
    };
    // A task may move between threads here, and the loop is per thread.
    assert!(adopt(Box::new(probe)).is_err());
}

/// True while this thread's loop owns it.
fn owned() -> bool {
    LOOP.with(|cell| {
        matches!(
            cell.borrow().as_ref().map(|l| &l.poll),
            Some(Epoll::Owner(_))
        )
    })
}

#[test]
fn without_the_owner_runtime_the_loop_stays_nested() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(!rt.block_on(own_thread(async { owned() })).unwrap());
}

#[test]
fn a_thread_owning_loop_drives_sessions_and_the_runtime_and_returns_main() {
    let (ours, peer) = pair();
    // `main` is a task of the same runtime: it hands the probe to the loop
    // (from a task, as the upgrade does), then talks to it through tokio's
    // own I/O, which only runs in the runtime's turns.
    let main = async move {
        let peer = tokio::net::TcpStream::from_std({
            peer.set_nonblocking(true).unwrap();
            peer
        })
        .unwrap();
        let probe = Probe {
            lent: Lent::new(ours),
            polls: Rc::default(),
            left: Rc::default(),
            waker: Rc::default(),
        };
        let adopted = adopt(Box::new(probe)).is_ok() && owned();
        let mut peer = peer;
        peer.write_all(b"over the loop").await.unwrap();
        let mut got = [0u8; 13];
        peer.read_exact(&mut got).await.unwrap();
        // A tokio timer fires too: the runtime gets its turns.
        tokio::time::sleep(Duration::from_millis(120)).await;
        drop(peer);
        (adopted, got)
    };
    let rt = owner_runtime().unwrap();
    let (adopted, got) = rt.block_on(own_thread(main)).unwrap();
    assert!(adopted, "the owner loop took the session");
    assert_eq!(&got, b"over the loop");
    // Nothing of the loop outlives `own_thread`.
    assert!(LOOP.with(|cell| cell.borrow().is_none()));
}

#[tokio::test]
async fn the_runtime_epoll_fd_is_the_one_that_watches_its_sockets() {
    let fd = runtime_epoll_fd().unwrap();
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    assert_eq!(link.as_os_str(), "anon_inode:[eventpoll]");
    // A socket registered now is in it too.
    let (a, _b) = tokio::net::UnixStream::pair().unwrap();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let mark = format!("tfd: {:>8} ", a.as_raw_fd());
    assert!(info.lines().any(|l| l.starts_with(&mark)));
}

/// Wakes a tokio task of its thread when its socket first brings bytes,
/// and says so ([`woke_a_task`]): such a wake makes no fd readable, so only
/// the owner loop's pulled-in turn runs that task before the periodic one.
/// Counts the bytes it reads.
struct Ringer {
    lent: Lent,
    bell: Option<tokio::sync::oneshot::Sender<()>>,
    read: Arc<std::sync::atomic::AtomicUsize>,
}

impl Driven for Ringer {
    fn fd(&self) -> RawFd {
        self.lent.as_raw_fd()
    }

    fn poll(&mut self, cx: &mut Context<'_>, edge: Edge) -> Poll<()> {
        self.lent.edge(edge);
        let mut buf = [0u8; 64];
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.lent).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                self.read.fetch_add(rb.filled().len(), Ordering::Relaxed);
                if let Some(bell) = self.bell.take() {
                    let _ = bell.send(());
                    woke_a_task();
                }
                Poll::Pending
            }
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn leave(self: Box<Self>) {}
}

/// Runs `main` under an owner loop whose periodic turn is 20 s away: what
/// waits for that turn shows in `main`'s time.
fn under_a_slow_turn<T: Send + 'static>(main: impl Future<Output = T> + Send + 'static) -> T {
    let rt = owner_runtime().unwrap();
    rt.block_on(own_thread_every(Duration::from_secs(20), main))
        .unwrap()
}

#[test]
fn a_task_woken_by_a_session_in_the_owner_loop_runs_before_the_periodic_turn() {
    let (ours, mut peer) = pair();
    let main = async move {
        let (bell, rung) = tokio::sync::oneshot::channel();
        let ringer = Ringer {
            lent: Lent::new(ours),
            bell: Some(bell),
            read: Arc::default(),
        };
        assert!(adopt(Box::new(ringer)).is_ok() && owned());
        let start = Instant::now();
        // A std socket: tokio's epoll hears nothing of it.
        peer.write_all(b"ring").unwrap();
        rung.await.unwrap();
        start.elapsed()
    };
    let waited = under_a_slow_turn(main);
    // Pulled in to TASK_TURN (1 ms); without it, the 20 s turn.
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[test]
fn sessions_that_wake_no_task_leave_the_runtime_to_its_periodic_turn() {
    let (ours, mut peer) = pair();
    let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ringer = Ringer {
        lent: Lent::new(ours),
        bell: None,
        read: read.clone(),
    };
    let main = async move {
        assert!(adopt(Box::new(ringer)).is_ok() && owned());
        let turns = TURNS.get();
        // 50 socket events, at least 2 ms apart: each one's session poll
        // would pull in a turn of its own (TASK_TURN is 1 ms).
        let writer = std::thread::spawn(move || {
            for _ in 0..50 {
                peer.write_all(b"x").unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            peer
        });
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        TURNS.get() - turns
    };
    let rt = owner_runtime().unwrap();
    let turns = rt
        .block_on(own_thread_every(Duration::from_millis(100), main))
        .unwrap();
    assert_eq!(
        read.load(Ordering::Relaxed),
        50,
        "the session read every byte"
    );
    // The periodic turns alone: about one per 100 ms of the writer's 100+ ms
    // and the wait after it, however slow the machine.
    assert!(turns < 25, "{turns} runtime turns");
}

#[test]
fn tasks_chained_through_the_runtime_never_wait_for_the_periodic_turn() {
    // A request and its answer between two tasks of the runtime, over
    // tokio's own sockets and a channel: each step wakes the next while
    // the runtime has its turn, as hyper's connection task wakes the
    // upgrade's. A step left behind would wait the 20 s turn.
    let main = async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        tokio::spawn(async move {
            let mut b = [0u8; 1];
            while server.read_exact(&mut b).await.is_ok() {
                if tx.send(b[0]).await.is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        for i in 0..50u8 {
            client.write_all(&[i]).await.unwrap();
            assert_eq!(rx.recv().await, Some(i));
        }
        start.elapsed()
    };
    let took = under_a_slow_turn(main);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// The park hook never lets the runtime block while the loop waits for its
/// turn to end: with events waiting it wakes the loop and keeps the turn
/// going (an event can vanish before the driver polls: the park must
/// return anyway); with none it ends the turn.
#[test]
fn the_park_hook_wakes_the_loop_whether_or_not_events_wait() {
    let (wakes, waker) = crate::ws::testing::Wakes::waker();
    let busy = mio::Poll::new().unwrap();
    let ready = mio::Waker::new(busy.registry(), Token(0)).unwrap();
    ready.wake().unwrap();
    RUNTIME_FD.set(Some(busy.as_raw_fd()));
    IDLE.set(Some(waker));
    before_park();
    assert_eq!(wakes.count(), 1, "the park must return");
    let kept = IDLE.take();
    assert!(kept.is_some(), "the turn goes on");
    IDLE.set(kept);

    let quiet = mio::Poll::new().unwrap();
    RUNTIME_FD.set(Some(quiet.as_raw_fd()));
    before_park();
    assert_eq!(wakes.count(), 2);
    assert!(IDLE.take().is_none(), "the turn ends");
    RUNTIME_FD.set(None);
}
