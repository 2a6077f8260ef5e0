//! The socket lent to the worker's epoll loop ([`crate::scenario::direct`]), and the
//! reads and writes that loop makes through the connection's buffers.

use std::io;

use super::{Conn, Read};
use crate::net::Stream;

impl Conn {
    /// The plain socket, lent to the worker's epoll loop ([`crate::scenario::direct`])
    /// which then reads and writes with [`Conn::read_from`] and
    /// [`Conn::write_to`]; None (and nothing changes) for TLS or HTTP/2.
    pub fn lend_socket(&mut self) -> Option<tokio::net::TcpStream> {
        match std::mem::replace(&mut self.io, Stream::Lent) {
            Stream::Plain(tcp) => Some(tcp),
            other => {
                self.io = other;
                None
            }
        }
    }

    /// The lent socket comes back, for the async calls again.
    pub fn give_back(&mut self, tcp: tokio::net::TcpStream) {
        self.io = Stream::Plain(tcp);
    }

    /// One read from a non-blocking socket into the read buffer: what
    /// [`Conn::event`] does when the socket is readable, for a caller that
    /// waits for readiness itself.
    pub fn read_from(&mut self, sock: &mut impl io::Read) -> Read {
        self.make_room();
        let room = self.rbuf.len() - self.rend;
        loop {
            return match sock.read(&mut self.rbuf[self.rend..]) {
                Ok(0) => {
                    self.release_rbuf();
                    Read::Eof
                }
                Ok(n) => {
                    self.rend += n;
                    Read::Data { drained: n < room }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.release_rbuf();
                    Read::Nothing
                }
                Err(e) => Read::Failed(e),
            };
        }
    }

    /// Writes as much of the outbox as a non-blocking socket takes (what
    /// [`Conn::event`] does first, for a caller that waits itself).
    pub fn write_to(&mut self, sock: &mut impl io::Write) -> io::Result<()> {
        // A plain socket has nothing to flush: what was written is not
        // recorded as unflushed.
        self.out.write_with(|slices| {
            let wrote = match slices {
                [one] => sock.write(one),
                _ => sock.write_vectored(slices),
            };
            match wrote {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                other => Some(other),
            }
        })?;
        Ok(())
    }
}
