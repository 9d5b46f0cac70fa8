//! The two halves of a Unix stream socket, each woken only for what its task waits for.
//!
//! Tokio registers a `UnixStream` for reading and writing readiness at once. On a Unix
//! stream socket every read by the peer frees send-buffer space, and the kernel
//! (`unix_write_space`) then wakes every registration for writing, whether or not
//! anything waits to write: one wake-up of the writing process per message its peer
//! reads. For the daemon that is one per member per message it relays; for a member,
//! one per message it sends. On a 2-core machine each of these lands between the steps
//! of a message on its way (they were most of the daemon's wake-ups per message).
//!
//! [`split`] registers the socket for reading only (through Tokio's pipe receiver,
//! which reads with `read(2)`: on a connected stream socket, `recv(2)` without flags).
//! [`WriteHalf`] writes at once, with `MSG_NOSIGNAL` (a closed peer is an error, never a
//! signal), and only when the socket is full registers for writing readiness, until a
//! write goes through whole: the wake-ups of a reader that is slow are kept, the ones
//! of a reader that keeps up are not.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{SendFlags, send};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// The reading half: registered with the reactor for reading readiness only.
#[derive(Debug)]
pub struct ReadHalf(pipe::Receiver);

/// The writing half: writes without the reactor while the socket has room.
#[derive(Debug)]
pub struct WriteHalf {
    socket: StdUnixStream,
    /// A registration for writing readiness, held only while a write waits for room.
    waiting: Option<pipe::Sender>,
}

/// Splits a connected Unix stream socket into halves that share no lock. Must be called
/// within a Tokio runtime (the read half registers with its reactor).
///
/// # Errors
///
/// The socket cannot be duplicated or registered (for example: no file descriptor left).
pub fn split(stream: tokio::net::UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    let socket = stream.into_std()?;
    // `into_std` keeps the socket non-blocking; the duplicate shares the flag.
    socket.set_nonblocking(true)?;
    let reading = OwnedFd::from(socket.try_clone()?);
    let receiver = pipe::Receiver::from_owned_fd_unchecked(reading)?;
    Ok((
        ReadHalf(receiver),
        WriteHalf {
            socket,
            waiting: None,
        },
    ))
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl WriteHalf {
    /// Writes what the socket takes now, without waiting: `WouldBlock` when full.
    ///
    /// # Errors
    ///
    /// As `send(2)`: the socket is full, or the peer is gone.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        send(&self.socket, buf, SendFlags::NOSIGNAL).map_err(io::Error::from)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some(waiting) = &this.waiting {
                ready!(waiting.poll_write_ready(cx))?;
                match waiting.try_io(|| this.try_write(buf)) {
                    Ok(n) => {
                        if n == buf.len() {
                            // Room for all of it: the reader keeps up again.
                            this.waiting = None;
                        }
                        return Poll::Ready(Ok(n));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            match this.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Full: wait for room. A registration reports the socket's state
                    // at once, so room made since the failed write is not missed.
                    let fd = OwnedFd::from(this.socket.try_clone()?);
                    this.waiting = Some(pipe::Sender::from_owned_fd_unchecked(fd)?);
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.waiting = None;
        Poll::Ready(match this.socket.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (tokio::net::UnixStream, tokio::net::UnixStream) {
        tokio::net::UnixStream::pair().expect("socket pair")
    }

    #[tokio::test]
    async fn the_halves_carry_bytes_both_ways_and_the_end_of_stream() {
        let (a, b) = pair();
        let (mut a_rd, mut a_wr) = split(a).expect("split");
        let (mut b_rd, mut b_wr) = split(b).expect("split");
        a_wr.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        b_rd.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        b_wr.write_all(b"pong").await.expect("write");
        a_rd.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"pong");
        a_wr.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        assert_eq!(b_rd.read_to_end(&mut rest).await.expect("end"), 0);
    }

    #[tokio::test]
    async fn a_write_to_a_full_socket_waits_for_the_reader_then_completes() {
        let (a, b) = pair();
        let (_a_rd, mut a_wr) = split(a).expect("split");
        let (mut b_rd, _b_wr) = split(b).expect("split");
        // Far more than a socket buffer holds: the writer must wait for room, be woken
        // when the reader makes some, and lose nothing.
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            a_wr.write_all(&data).await.expect("write");
            assert!(
                a_wr.waiting.is_none(),
                "room again: the registration is dropped"
            );
            a_wr
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "8 MiB cannot fit in a socket buffer");
        let mut got = vec![0u8; expected.len()];
        b_rd.read_exact(&mut got).await.expect("read");
        assert!(got == expected, "every byte, in order");
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn writing_to_a_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = pair();
        let (_a_rd, mut a_wr) = split(a).expect("split");
        drop(b);
        let e = a_wr.write_all(b"anyone?").await.expect_err("peer gone");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
