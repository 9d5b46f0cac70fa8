//! The async client of the daemon engine.
//!
//! ```no_run
//! # async fn demo() -> Result<(), conclave_gcs::GcsError> {
//! use conclave_gcs::{Event, GroupName, MemberName, Service};
//! use conclave_gcs::client::Client;
//!
//! let addr = "tcp:127.0.0.1:4804".parse().expect("address");
//! let mut alice = Client::connect(&addr, MemberName::new("alice")?).await?;
//! let group = GroupName::new("chat")?;
//! alice.join(&group).await?;
//! while let Ok(event) = alice.next_event().await {
//!     match event {
//!         Event::View(view) => alice.multicast(&group, Service::Agreed, "hi").await?,
//!         Event::FlushRequest { group } => alice.flush_ok(&group).await?,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::daemon::{Address, after_read, read_frame, room_to_read, write_encoded};
use crate::noise::{self, TcpIdentity, TcpTrust};
use crate::session::Session;
use crate::types::{Delivery, Event, GcsError, GroupName, MemberName, SendOptions, Service, View};
use crate::wire::{Frame, NameCache, VERSION};

type Writer = Pin<Box<dyn AsyncWrite + Send>>;
type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// The client's write buffer: a batch of requests leaves in writes of this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// A connection to a daemon, as one member.
///
/// The client reads from its socket only when asked for an event
/// ([`Client::next_event`], [`Client::ready_event`]): there is no task of its own, no
/// queue and no hand-over per event, and what the application has not taken yet waits
/// in the socket and then in the daemon's queue for this member, under the daemon's
/// slow-consumer rule (docs/daemon.md). A member that stops taking events therefore
/// holds back its groups' senders, as it would with any bounded queue of its own.
///
/// Requests are checked against the member-side rules ([`Session`]) before they are
/// sent: errors such as [`GcsError::Flushing`] are returned at once. The session
/// follows the events in the order [`Client::next_event`] returns them.
///
/// A member name is held by one connection at a time: a client that reconnects after
/// a crash may get [`GcsError::NameInUse`] until the daemon has noticed that the old
/// connection is gone.
pub struct Client {
    session: Session,
    /// Frames are written into this buffer and flushed after each request, or once at
    /// the end of a batch ([`Client::begin_batch`]).
    writer: tokio::io::BufWriter<Writer>,
    batching: bool,
    reader: Reader,
    /// Bytes read and not yet decoded; events' payloads are cut out of it.
    buf: BytesMut,
    /// The groups and senders of the events, decoded once each.
    names: NameCache,
    /// Events that arrived while [`Client::status`] waited for its answer.
    stashed: std::collections::VecDeque<Event>,
    closed: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("member", self.session.member())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn io_error(e: std::io::Error) -> GcsError {
    GcsError::Disconnected {
        reason: e.to_string(),
    }
}

/// What a client needs to connect over TCP: its identity (whose name must be the
/// member name) and the daemon's identity, pinned.
#[derive(Clone, Debug)]
pub struct TcpCredentials {
    /// The member's identity.
    pub identity: Arc<TcpIdentity>,
    /// The daemon's identity (the daemon must prove one of these).
    pub daemon: TcpTrust,
}

impl Client {
    /// Connects to the daemon at the Unix socket `address` as `member` and completes
    /// the handshake (TCP needs credentials: [`Client::connect_with`]).
    pub async fn connect(address: &Address, member: MemberName) -> Result<Client, GcsError> {
        Self::connect_with(address, member, None).await
    }

    /// Connects to the daemon at `address` as `member`: over TCP, authenticated and
    /// encrypted with `tcp` (see [`crate::noise`]); over a Unix socket, `tcp` is unused
    /// (the kernel tells the daemon who we are).
    pub async fn connect_with(
        address: &Address,
        member: MemberName,
        tcp: Option<&TcpCredentials>,
    ) -> Result<Client, GcsError> {
        match address {
            Address::Tcp(addr) => {
                let Some(credentials) = tcp else {
                    return Err(GcsError::Authentication(format!(
                        "{address} is TCP: connecting needs this member's identity and the daemon's public key"
                    )));
                };
                if credentials.identity.name() != member.as_str() {
                    return Err(GcsError::Authentication(format!(
                        "the identity {} cannot connect as member {member}",
                        credentials.identity.name()
                    )));
                }
                let stream = TcpStream::connect(addr).await.map_err(io_error)?;
                let _ = stream.set_nodelay(true);
                let handshake = noise::connect(stream, &credentials.identity, &credentials.daemon);
                let (stream, _) = tokio::time::timeout(Duration::from_secs(10), handshake)
                    .await
                    .map_err(|_| GcsError::Disconnected {
                        reason: "no noise handshake with the daemon within 10 s".into(),
                    })?
                    .map_err(|e| GcsError::Authentication(e.to_string()))?;
                let (rd, wr) = tokio::io::split(stream);
                Self::handshake(rd, wr, member).await
            }
            Address::Unix(path) => {
                let stream = UnixStream::connect(path).await.map_err(io_error)?;
                let (rd, wr) = crate::unix::split(stream).map_err(io_error)?;
                Self::handshake(rd, wr, member).await
            }
        }
    }

    async fn handshake<R, W>(mut rd: R, wr: W, member: MemberName) -> Result<Client, GcsError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let mut writer: Writer = Box::pin(wr);
        let hello = Frame::Hello {
            version: VERSION,
            member: member.clone(),
        }
        .encode();
        write_encoded(&mut writer, &hello).await.map_err(io_error)?;
        writer.flush().await.map_err(io_error)?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut names = NameCache::default();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            read_frame(&mut rd, &mut buf, &mut names),
        )
        .await
        .map_err(|_| GcsError::Disconnected {
            reason: "no answer to Hello within 10 s".into(),
        })?;
        match answer {
            Ok(Some(Frame::Welcome { version })) if version == VERSION => {}
            Ok(Some(Frame::Welcome { version })) => {
                return Err(GcsError::Protocol(format!(
                    "daemon speaks version {version}, this client {VERSION}"
                )));
            }
            Ok(Some(Frame::Error { reason, .. })) => {
                let in_use = GcsError::NameInUse(member.clone()).to_string();
                return Err(if reason == in_use {
                    GcsError::NameInUse(member)
                } else {
                    GcsError::Disconnected { reason }
                });
            }
            Ok(Some(_)) => return Err(GcsError::Protocol("expected Welcome".into())),
            Ok(None) => {
                return Err(GcsError::Disconnected {
                    reason: "daemon closed the connection during the handshake".into(),
                });
            }
            Err(reason) => return Err(GcsError::Disconnected { reason }),
        }
        Ok(Client {
            session: Session::new(member),
            writer: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, writer),
            batching: false,
            reader: Box::pin(rd),
            buf,
            names,
            stashed: Default::default(),
            closed: None,
        })
    }

    /// The member's name.
    pub fn member(&self) -> &MemberName {
        self.session.member()
    }

    /// The member's current view of `group`, from the events returned so far.
    pub fn view(&self, group: &GroupName) -> Option<&View> {
        self.session.view(group)
    }

    fn check_open(&self) -> Result<(), GcsError> {
        match &self.closed {
            Some(reason) => Err(GcsError::Disconnected {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    async fn write(&mut self, frame: Frame) -> Result<(), GcsError> {
        let encoded = frame.encode();
        let batching = self.batching;
        let written = async {
            // Into the buffer (a payload larger than it goes straight through).
            self.writer.write_all(&encoded.head).await?;
            self.writer.write_all(&encoded.payload).await?;
            if !batching {
                self.writer.flush().await?;
            }
            Ok(())
        };
        let result = written.await;
        self.written(result)
    }

    fn written(&mut self, result: std::io::Result<()>) -> Result<(), GcsError> {
        if let Err(e) = result {
            let reason = format!("write failed: {e}");
            self.closed = Some(reason.clone());
            return Err(GcsError::Disconnected { reason });
        }
        Ok(())
    }

    /// Starts a batch: requests from now on are buffered (and written when the buffer
    /// fills) until [`end_batch`](Self::end_batch), so that a burst of sends costs a
    /// few system calls, not one each. Checks are made at each call as usual.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch: writes everything buffered.
    pub async fn end_batch(&mut self) -> Result<(), GcsError> {
        self.batching = false;
        if self.closed.is_some() {
            return self.check_open();
        }
        let flushed = self.writer.flush().await;
        self.written(flushed)
    }

    /// Asks to join `group`; the first view follows as an event.
    pub async fn join(&mut self, group: &GroupName) -> Result<(), GcsError> {
        self.check_open()?;
        self.session.join(group)?;
        self.write(Frame::Join {
            group: group.clone(),
        })
        .await
    }

    /// Leaves `group`; [`Event::Left`] confirms it.
    pub async fn leave(&mut self, group: &GroupName) -> Result<(), GcsError> {
        self.check_open()?;
        self.session.leave(group)?;
        self.write(Frame::Leave {
            group: group.clone(),
        })
        .await
    }

    /// Acknowledges the pending flush request of `group`: no sends to it until the
    /// next view.
    pub async fn flush_ok(&mut self, group: &GroupName) -> Result<(), GcsError> {
        self.check_open()?;
        self.session.flush_ok(group)?;
        self.write(Frame::FlushOk {
            group: group.clone(),
        })
        .await
    }

    /// Leaves a note about this member's state in `group` with the daemon (at most
    /// [`MAX_NOTE_LEN`](crate::wire::MAX_NOTE_LEN) bytes; the secure layer's signed
    /// modules and epoch): the daemon keeps the last one while the member is in the
    /// group and shows it in its status.
    pub async fn note(
        &mut self,
        group: &GroupName,
        note: impl Into<Bytes>,
    ) -> Result<(), GcsError> {
        self.check_open()?;
        let note = note.into();
        if note.len() > crate::wire::MAX_NOTE_LEN {
            return Err(GcsError::TooLarge {
                size: note.len(),
                limit: crate::wire::MAX_NOTE_LEN,
            });
        }
        self.write(Frame::Note {
            group: group.clone(),
            note,
        })
        .await
    }

    /// The daemon's status, as a JSON document: its connections, queues, disconnects
    /// by cause, and per group the view, traffic and members' notes. Events that
    /// arrive meanwhile are kept for [`next_event`](Self::next_event).
    pub async fn status(&mut self) -> Result<Bytes, GcsError> {
        self.check_open()?;
        self.write(Frame::StatusRequest).await?;
        loop {
            let frame = read_frame(&mut self.reader, &mut self.buf, &mut self.names).await;
            match self.incoming(frame)? {
                Some(Incoming::Status(json)) => return Ok(json),
                Some(Incoming::Event(event)) => self.stashed.push_back(event),
                None => {}
            }
        }
    }

    /// Sends `payload` to `group`.
    pub async fn send(
        &mut self,
        group: &GroupName,
        delivery: Delivery,
        payload: impl Into<Bytes>,
        options: SendOptions,
    ) -> Result<(), GcsError> {
        self.check_open()?;
        let payload = payload.into();
        self.session.check_send(group, &delivery, payload.len())?;
        self.write(Frame::Send {
            group: group.clone(),
            delivery,
            self_delivery: options.self_delivery,
            payload,
        })
        .await
    }

    /// Multicasts `payload` to `group` with `service`, delivered to the sender too.
    pub async fn multicast(
        &mut self,
        group: &GroupName,
        service: Service,
        payload: impl Into<Bytes>,
    ) -> Result<(), GcsError> {
        self.send(
            group,
            Delivery::Multicast(service),
            payload,
            SendOptions::default(),
        )
        .await
    }

    /// Sends `payload` to one member of `group` (FIFO).
    pub async fn unicast(
        &mut self,
        group: &GroupName,
        to: &MemberName,
        payload: impl Into<Bytes>,
    ) -> Result<(), GcsError> {
        self.send(
            group,
            Delivery::Unicast(to.clone()),
            payload,
            SendOptions::default(),
        )
        .await
    }

    /// The next event; [`GcsError::Disconnected`] with the daemon's reason once the
    /// connection is gone.
    ///
    /// Cancel-safe: it can be raced in `tokio::select!` against the caller's own work
    /// (for example a queue of sends); an event is never lost by a cancelled call
    /// (bytes read stay in the client's buffer, and a frame is decoded and returned
    /// without waiting in between).
    pub async fn next_event(&mut self) -> Result<Event, GcsError> {
        if let Some(event) = self.stashed.pop_front() {
            self.session.observe(&event);
            return Ok(event);
        }
        self.check_open()?;
        loop {
            let frame = read_frame(&mut self.reader, &mut self.buf, &mut self.names).await;
            if let Some(Incoming::Event(event)) = self.incoming(frame)? {
                self.session.observe(&event);
                return Ok(event);
            }
        }
    }

    /// The next event if one has arrived, without waiting: `Ok(None)` if none has. It
    /// decodes what is buffered and reads what the socket holds now, never waiting
    /// (when it holds nothing, the calling task is woken once it does).
    pub async fn ready_event(&mut self) -> Result<Option<Event>, GcsError> {
        if let Some(event) = self.stashed.pop_front() {
            self.session.observe(&event);
            return Ok(Some(event));
        }
        self.check_open()?;
        loop {
            let frame = match Frame::decode_cached(&mut self.buf, &mut self.names) {
                Ok(Some(frame)) => Ok(Some(frame)),
                Ok(None) => match self.read_now().await {
                    None => return Ok(None),
                    Some(read) => match after_read(read, &self.buf) {
                        Ok(true) => continue,
                        Ok(false) => Ok(None),
                        Err(reason) => Err(reason),
                    },
                },
                Err(e) => Err(format!("malformed frame: {e}")),
            };
            if let Some(Incoming::Event(event)) = self.incoming(frame)? {
                self.session.observe(&event);
                return Ok(Some(event));
            }
        }
    }

    /// One read of the socket into the buffer if it has anything now (`None` if it
    /// has not: the task is woken when it has). Cancel-safe, as `read_buf` is.
    async fn read_now(&mut self) -> Option<std::io::Result<usize>> {
        room_to_read(&mut self.buf);
        let mut read = std::pin::pin!(self.reader.read_buf(&mut self.buf));
        std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// What a frame read from the daemon is to the caller: an event, a status answer,
    /// nothing (a refusal the daemon explains, logged), or the connection's end (an
    /// error, and the client closed from then on).
    fn incoming(
        &mut self,
        frame: Result<Option<Frame>, String>,
    ) -> Result<Option<Incoming>, GcsError> {
        let reason = match frame {
            Ok(Some(Frame::Event(event))) => return Ok(Some(Incoming::Event(event))),
            Ok(Some(Frame::Status { json })) => return Ok(Some(Incoming::Status(json))),
            Ok(Some(Frame::Error {
                fatal: false,
                reason,
            })) => {
                tracing::debug!(%reason, "request refused by the daemon");
                return Ok(None);
            }
            Ok(Some(Frame::Error {
                fatal: true,
                reason,
            })) => reason,
            Ok(Some(_)) => "protocol error: unexpected frame from the daemon".into(),
            Ok(None) => "connection closed by the daemon".into(),
            Err(reason) => reason,
        };
        self.closed = Some(reason.clone());
        Err(GcsError::Disconnected { reason })
    }

    /// Closes the connection (the daemon reports a disconnect to the groups).
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
    }
}

/// What a frame from the daemon brings the caller.
enum Incoming {
    /// An event.
    Event(Event),
    /// The daemon's answer to a status request.
    Status(Bytes),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_FRAME_LEN;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// A daemon played by a raw socket: it answers the Hello with a Welcome, then
    /// writes `then` and, if `close`, closes; returns the connected client.
    async fn client_facing(then: Vec<u8>, close: bool) -> (Client, tokio::task::JoinHandle<()>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let fake = tokio::spawn(async move {
            let _dir = dir;
            let (mut s, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 64];
            let _ = s.read(&mut hello).await.unwrap();
            s.write_all(&Frame::Welcome { version: VERSION }.encode().to_vec())
                .await
                .unwrap();
            s.write_all(&then).await.unwrap();
            if !close {
                // Stay open (and silent) until the test ends.
                std::future::pending::<()>().await;
            }
        });
        let address = Address::Unix(path);
        let client = Client::connect(&address, MemberName::new("m").unwrap())
            .await
            .unwrap();
        (client, fake)
    }

    /// Whatever a daemon (or whoever holds its socket) writes, the client returns a
    /// typed error with the reason and stays closed; it never panics, waits for a
    /// frame it has been told is longer than the bound, or takes anything after it.
    #[tokio::test]
    async fn a_hostile_daemon_gets_a_typed_error_not_a_panic_or_a_wait() {
        let oversized = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
        let cut = {
            let mut v = Frame::Welcome { version: VERSION }.encode().to_vec();
            v.truncate(v.len() - 1);
            v
        };
        let cases: [(&str, Vec<u8>, bool, &str); 4] = [
            (
                "garbage",
                b"\x00\x00\x00\x05\xffjunk".to_vec(),
                false,
                "malformed frame",
            ),
            ("oversized", oversized, false, "malformed frame"),
            ("cut", cut, true, "stream ended inside a frame"),
            (
                "a Hello from the daemon",
                Frame::Hello {
                    version: VERSION,
                    member: MemberName::new("x").unwrap(),
                }
                .encode()
                .to_vec(),
                false,
                "unexpected frame",
            ),
        ];
        for (what, bytes, close, expected) in cases {
            for ready in [false, true] {
                let (mut client, fake) = client_facing(bytes.clone(), close).await;
                let got = tokio::time::timeout(Duration::from_secs(10), async {
                    loop {
                        let e = if ready {
                            client.ready_event().await.map(|e| e.is_some())
                        } else {
                            client.next_event().await.map(|_| true)
                        };
                        match e {
                            Err(e) => break e,
                            Ok(_) => tokio::task::yield_now().await,
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"));
                let GcsError::Disconnected { reason } = &got else {
                    panic!("{what}: {got:?}");
                };
                assert!(reason.contains(expected), "{what}: {reason}");
                // Closed from then on, with the same reason.
                let again = client.next_event().await.unwrap_err();
                assert!(again.to_string().contains(expected), "{what}: {again}");
                fake.abort();
            }
        }
    }
}
