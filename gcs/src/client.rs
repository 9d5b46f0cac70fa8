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

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::daemon::{Address, read_frame, write_encoded};
use crate::noise::{self, TcpIdentity, TcpTrust};
use crate::session::Session;
use crate::types::{Delivery, Event, GcsError, GroupName, MemberName, SendOptions, Service, View};
use crate::wire::{Frame, NameCache, VERSION};

type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// How many received events may wait in the client before it stops reading (and the
/// daemon's flow control takes over), and how many payload bytes.
const EVENT_QUEUE: usize = 256;
const EVENT_QUEUE_BYTES: usize = 32 << 20;
/// The client's write buffer: a batch of requests leaves in writes of this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// What the reader task hands over.
enum Incoming {
    /// An event, holding its share of the byte bound until it is taken.
    Event(Event, Option<OwnedSemaphorePermit>),
    /// The daemon's answer to a status request.
    Status(Bytes),
    /// The connection ended, with the reason.
    Closed(String),
}

/// A connection to a daemon, as one member.
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
    events: mpsc::Receiver<Incoming>,
    /// Events that arrived while [`Client::status`] waited for its answer.
    stashed: std::collections::VecDeque<Event>,
    closed: Option<String>,
    reader: JoinHandle<()>,
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
        // The groups and senders of the events, decoded once each.
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
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let bytes = Arc::new(Semaphore::new(EVENT_QUEUE_BYTES));
        let reader = tokio::spawn(async move {
            let reason = loop {
                match read_frame(&mut rd, &mut buf, &mut names).await {
                    Ok(Some(Frame::Event(event))) => {
                        let size = match &event {
                            Event::Message { payload, .. } => payload.len(),
                            _ => 0,
                        };
                        let permit = if size == 0 {
                            None
                        } else {
                            let n = size.min(EVENT_QUEUE_BYTES) as u32;
                            match Arc::clone(&bytes).acquire_many_owned(n).await {
                                Ok(p) => Some(p),
                                Err(_) => return,
                            }
                        };
                        if tx.send(Incoming::Event(event, permit)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Frame::Status { json })) => {
                        if tx.send(Incoming::Status(json)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Frame::Error {
                        fatal: false,
                        reason,
                    })) => {
                        tracing::debug!(%reason, "request refused by the daemon");
                    }
                    Ok(Some(Frame::Error {
                        fatal: true,
                        reason,
                    })) => break reason,
                    Ok(Some(_)) => break "protocol error: unexpected frame from the daemon".into(),
                    Ok(None) => break "connection closed by the daemon".into(),
                    Err(reason) => break reason,
                }
            };
            let _ = tx.send(Incoming::Closed(reason)).await;
        });
        Ok(Client {
            session: Session::new(member),
            writer: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, writer),
            batching: false,
            events,
            stashed: Default::default(),
            closed: None,
            reader,
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
            match self.events.recv().await {
                Some(Incoming::Status(json)) => return Ok(json),
                Some(Incoming::Event(event, _permit)) => self.stashed.push_back(event),
                Some(Incoming::Closed(reason)) => {
                    self.closed = Some(reason.clone());
                    return Err(GcsError::Disconnected { reason });
                }
                None => {
                    let reason = "connection closed".to_string();
                    self.closed = Some(reason.clone());
                    return Err(GcsError::Disconnected { reason });
                }
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
    /// (for example a queue of sends); an event is never lost by a cancelled call.
    pub async fn next_event(&mut self) -> Result<Event, GcsError> {
        // Completes in one poll, so this stays cancel-safe.
        if let Some(event) = self.ready_event().await? {
            return Ok(event);
        }
        let incoming = loop {
            match self.events.recv().await {
                // An answer nobody waits for any more (a cancelled status call).
                Some(Incoming::Status(_)) => continue,
                other => break other,
            }
        };
        self.take(incoming)
    }

    /// The next event if one has arrived, without waiting: `Ok(None)` if none has (the
    /// connection's end then shows at [`next_event`](Client::next_event)). Never parks
    /// the thread (see [`crate::channel`]).
    pub async fn ready_event(&mut self) -> Result<Option<Event>, GcsError> {
        if let Some(event) = self.stashed.pop_front() {
            self.session.observe(&event);
            return Ok(Some(event));
        }
        self.check_open()?;
        loop {
            match crate::channel::take_ready(&mut self.events).await {
                Some(Incoming::Status(_)) => continue,
                Some(other) => return self.take(Some(other)).map(Some),
                None => return Ok(None),
            }
        }
    }

    /// What the reader task handed over, as the next event or the connection's end.
    fn take(&mut self, incoming: Option<Incoming>) -> Result<Event, GcsError> {
        match incoming {
            Some(Incoming::Event(event, _permit)) => {
                self.session.observe(&event);
                Ok(event)
            }
            Some(Incoming::Closed(reason)) => {
                self.closed = Some(reason.clone());
                Err(GcsError::Disconnected { reason })
            }
            Some(Incoming::Status(_)) | None => {
                let reason = "connection closed".to_string();
                self.closed = Some(reason.clone());
                Err(GcsError::Disconnected { reason })
            }
        }
    }

    /// Closes the connection (the daemon reports a disconnect to the groups).
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
        self.reader.abort();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
