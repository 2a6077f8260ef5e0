//! An owner loop's timer: a timerfd in its epoll, as uSockets keeps its
//! timer, so that `epoll_wait` itself blocks without a timeout.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// An owner loop's timerfd: expires every `every`, or once sooner when
/// pulled in.
pub(super) struct Ticker {
    pub(super) fd: std::fs::File,
    every: Duration,
    /// Pulled in since it last expired.
    soon: bool,
}

impl Ticker {
    pub(super) fn new(every: Duration) -> io::Result<Ticker> {
        use std::os::fd::FromRawFd;
        let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
        // SAFETY: a plain system call with constant arguments.
        #[allow(unsafe_code)]
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        #[allow(unsafe_code)]
        let fd = unsafe { std::fs::File::from_raw_fd(fd) };
        let ticker = Ticker {
            fd,
            every,
            soon: false,
        };
        ticker.set(every)?;
        Ok(ticker)
    }

    /// Next expiry in `first`, then every `every`.
    fn set(&self, first: Duration) -> io::Result<()> {
        let spec = |d: Duration| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: spec(self.every),
            it_value: spec(first),
        };
        // SAFETY: `fd` is an open timerfd; `spec` lives across the call and
        // a null old value is allowed.
        #[allow(unsafe_code)]
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Expires within `within`, unless already pulled in.
    pub(super) fn soon(&mut self, within: Duration) {
        if !self.soon {
            self.soon = self.set(within).is_ok();
        }
    }

    /// It expired: reads the count, so that the next expiry is an edge.
    pub(super) fn expired(&mut self) {
        let _ = (&self.fd).read(&mut [0u8; 8]);
        self.soon = false;
    }
}
