//! The daemon engine: one [`Domain`] served to clients over Unix or TCP sockets with the
//! [wire protocol](crate::wire).
//!
//! # Flow control
//!
//! Every client has an outbound queue bounded in bytes ([`DaemonConfig::queue_limit`]).
//! The daemon orders everything in one task; when a recipient's queue is full, that task
//! waits for room, so it stops reading requests, and senders are slowed by TCP (or
//! Unix-socket) backpressure: a slow receiver slows the group rather than being
//! silently dropped. A client whose queue stays full for
//! [`DaemonConfig::stall_timeout`] is disconnected, and the others see it leave with
//! cause `Disconnect`. The reason is logged; the client, which reads nothing, gets its
//! connection closed mid-stream.
//!
//! # Failures
//!
//! A malformed or oversized frame closes only its connection, with the reason logged
//! and sent to the client in a fatal `Error` frame. A member that does not answer a
//! flush request within [`DaemonConfig::flush_timeout`] is removed from the group.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::types::{GcsError, MemberName, SendOptions};
use crate::vs::{Domain, Outgoing};
use crate::wire::{Encoded, Frame, MAX_FRAME_LEN, VERSION};

/// Where a daemon listens, and where a client connects: `unix:PATH` or `tcp:ADDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix-domain socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// The default address: TCP on the loopback interface, port 4804.
pub const DEFAULT_ADDRESS: &str = "tcp:127.0.0.1:4804";

/// An address that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {0:?}: expected unix:PATH or tcp:HOST:PORT (an IP address)")]
pub struct AddressError(pub String);

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, AddressError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError(s.into()));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            addr.parse()
                .map(Address::Tcp)
                .map_err(|_| AddressError(s.into()))
        } else {
            Err(AddressError(s.into()))
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// How a daemon runs.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Where to listen (TCP port 0 picks a free port; see [`Daemon::address`]).
    pub listen: Address,
    /// How long a member may take to answer a flush request before it is removed.
    pub flush_timeout: Duration,
    /// The bound of each client's outbound queue, in bytes (at least one maximal
    /// frame).
    pub queue_limit: usize,
    /// How long a client's queue may stay full before the client is disconnected.
    pub stall_timeout: Duration,
    /// How long a new connection may take to send its `Hello`.
    pub handshake_timeout: Duration,
    /// The origin in this daemon's view ids (default: derived from the clock and the
    /// process id, so that a restarted daemon does not reuse view ids).
    pub origin: Option<u32>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: Address::Tcp(SocketAddr::from(([127, 0, 0, 1], 4804))),
            flush_timeout: Duration::from_secs(10),
            queue_limit: 64 << 20,
            stall_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            origin: None,
        }
    }
}

/// A request from a connection to the ordering task.
enum Cmd {
    Hello {
        conn: u64,
        member: MemberName,
        client: ClientOut,
        reply: oneshot::Sender<Result<(), GcsError>>,
    },
    Request {
        conn: u64,
        member: MemberName,
        frame: Frame,
    },
    Gone {
        conn: u64,
        member: MemberName,
        reason: String,
    },
}

/// What the writer of a connection is told.
enum Out {
    Frame(Encoded, OwnedSemaphorePermit),
    /// Send a fatal error with this reason, then close.
    Close(String),
}

/// The connection's state, as the ordering task sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Open,
    /// Stop reading; the writer drains its queue, then closes.
    Closing,
    /// Stop everything now (the client does not read).
    Kill,
}

/// The ordering task's handle on one client.
struct ClientOut {
    conn: u64,
    tx: mpsc::UnboundedSender<Out>,
    credit: Arc<Semaphore>,
    state: watch::Sender<ConnState>,
}

/// A running daemon.
pub struct Daemon {
    address: Address,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Binds `config.listen` and starts serving. Fails if the address is in use (for a
    /// Unix socket: if another daemon answers on it; a stale socket file is replaced).
    pub async fn bind(config: DaemonConfig) -> std::io::Result<Daemon> {
        let queue_limit = config.queue_limit.max(MAX_FRAME_LEN + 4);
        let config = DaemonConfig {
            queue_limit,
            ..config
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>(64);
        let mut tasks = JoinSet::new();
        let address = match &config.listen {
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                let (cfg, tx, sd) = (config.clone(), cmd_tx.clone(), shutdown_rx.clone());
                tasks.spawn(async move {
                    let mut conns = JoinSet::new();
                    let mut sd2 = sd.clone();
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((stream, peer)) => {
                                    let _ = stream.set_nodelay(true);
                                    debug!(%peer, "connection accepted");
                                    conns.spawn(serve(stream, tx.clone(), cfg.clone(), sd.clone()));
                                }
                                Err(e) => warn!(error = %e, "accept failed"),
                            },
                            _ = sd2.changed() => break,
                        }
                    }
                    drain_connections(conns).await;
                });
                Address::Tcp(local)
            }
            Address::Unix(path) => {
                if path.exists() && tokio::net::UnixStream::connect(path).await.is_err() {
                    info!(path = %path.display(), "removing stale socket file");
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path)?;
                let (cfg, tx, sd) = (config.clone(), cmd_tx.clone(), shutdown_rx.clone());
                let socket = path.clone();
                tasks.spawn(async move {
                    let mut conns = JoinSet::new();
                    let mut sd2 = sd.clone();
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => {
                                    conns.spawn(serve(stream, tx.clone(), cfg.clone(), sd.clone()));
                                }
                                Err(e) => warn!(error = %e, "accept failed"),
                            },
                            _ = sd2.changed() => break,
                        }
                    }
                    drain_connections(conns).await;
                    let _ = std::fs::remove_file(&socket);
                });
                Address::Unix(path.clone())
            }
        };
        drop(cmd_tx);
        let origin = config.origin.unwrap_or_else(default_origin);
        tasks.spawn(order(config, origin, cmd_rx, shutdown_rx));
        info!(address = %address, origin, "daemon listening");
        Ok(Daemon {
            address,
            shutdown,
            tasks,
        })
    }

    /// The address the daemon listens on (with the port chosen for `tcp:...:0`).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Stops accepting, tells every client that the daemon shuts down (after the
    /// events already queued for it), and waits for the connections to close.
    pub async fn shutdown(mut self) {
        info!("daemon shutting down");
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn drain_connections(mut conns: JoinSet<()>) {
    let wait = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

fn default_origin() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u32) ^ (nanos >> 32) as u32 ^ std::process::id().rotate_left(16)
}

/// The ordering task: owns the domain and every client's outbound queue.
async fn order(
    config: DaemonConfig,
    origin: u32,
    mut rx: mpsc::Receiver<Cmd>,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout_ms = config.flush_timeout.as_millis().min(u64::MAX as u128) as u64;
    let mut domain = Domain::new(origin, Some(timeout_ms));
    let mut clients: BTreeMap<MemberName, ClientOut> = BTreeMap::new();
    let start = Instant::now();
    let period =
        (config.flush_timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                domain.advance(start.elapsed().as_millis() as u64);
                handle(cmd, &mut domain, &mut clients, &config).await;
            }
            _ = tick.tick() => {
                domain.advance(start.elapsed().as_millis() as u64);
                dispatch(&mut domain, &mut clients, &config).await;
            }
            _ = shutdown.changed() => break,
        }
    }
    for (member, client) in std::mem::take(&mut clients) {
        debug!(%member, "closing at shutdown");
        let _ = client.tx.send(Out::Close("daemon shutting down".into()));
        let _ = client.state.send(ConnState::Closing);
    }
}

async fn handle(
    cmd: Cmd,
    domain: &mut Domain,
    clients: &mut BTreeMap<MemberName, ClientOut>,
    config: &DaemonConfig,
) {
    match cmd {
        Cmd::Hello {
            conn,
            member,
            client,
            reply,
        } => match clients.entry(member) {
            std::collections::btree_map::Entry::Occupied(e) => {
                let _ = reply.send(Err(GcsError::NameInUse(e.key().clone())));
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                info!(member = %e.key(), conn, "member connected");
                e.insert(client);
                let _ = reply.send(Ok(()));
            }
        },
        Cmd::Gone {
            conn,
            member,
            reason,
        } => {
            if clients.get(&member).is_some_and(|c| c.conn == conn) {
                info!(%member, %reason, "member disconnected");
                remove_client(domain, clients, &member, reason, ConnState::Closing);
            }
        }
        Cmd::Request {
            conn,
            member,
            frame,
        } => {
            if clients.get(&member).is_none_or(|c| c.conn != conn) {
                return;
            }
            let result = match frame {
                Frame::Join { group } => domain.join(&member, &group),
                Frame::Leave { group } => domain.leave(&member, &group),
                Frame::FlushOk { group } => domain.flush_ok(&member, &group),
                Frame::Send {
                    group,
                    delivery,
                    self_delivery,
                    payload,
                } => domain.send(
                    &member,
                    &group,
                    &delivery,
                    payload,
                    SendOptions { self_delivery },
                ),
                _ => Ok(()),
            };
            if let Err(error) = result {
                // Races (a send that crossed the member's removal) and client bugs.
                debug!(%member, %error, "request refused");
                if let Some(c) = clients.get(&member) {
                    let frame = Frame::Error {
                        fatal: false,
                        reason: error.to_string(),
                    }
                    .encode();
                    queue(c, frame, config).await;
                }
            }
        }
    }
    dispatch(domain, clients, config).await;
}

/// Removes a client: from the domain (the others see a disconnect) and from the
/// clients, telling its connection why.
fn remove_client(
    domain: &mut Domain,
    clients: &mut BTreeMap<MemberName, ClientOut>,
    member: &MemberName,
    reason: String,
    state: ConnState,
) {
    domain.disconnect(member);
    if let Some(client) = clients.remove(member) {
        let _ = client.tx.send(Out::Close(reason));
        let _ = client.state.send(state);
    }
}

/// Waits for room in `client`'s queue and queues `frame`; `false` if the client stayed
/// full past the stall timeout or is gone.
async fn queue(client: &ClientOut, frame: Encoded, config: &DaemonConfig) -> bool {
    let need = frame.len().min(u32::MAX as usize) as u32;
    let acquire = Arc::clone(&client.credit).acquire_many_owned(need);
    match tokio::time::timeout(config.stall_timeout, acquire).await {
        Ok(Ok(permit)) => client.tx.send(Out::Frame(frame, permit)).is_ok(),
        _ => false,
    }
}

/// Delivers the domain's events, disconnecting clients that stay full.
async fn dispatch(
    domain: &mut Domain,
    clients: &mut BTreeMap<MemberName, ClientOut>,
    config: &DaemonConfig,
) {
    loop {
        let out: Vec<Outgoing> = domain.drain();
        if out.is_empty() {
            return;
        }
        let mut stalled = Vec::new();
        for o in out {
            if stalled.contains(&o.to) {
                continue;
            }
            let Some(client) = clients.get(&o.to) else {
                continue;
            };
            if !queue(client, Frame::Event(o.event).encode(), config).await {
                stalled.push(o.to);
            }
        }
        for member in stalled {
            let reason = format!(
                "outbound queue stayed full ({} bytes) for {:?}: client too slow",
                config.queue_limit, config.stall_timeout
            );
            warn!(%member, %reason, "disconnecting slow client");
            remove_client(domain, clients, &member, reason, ConnState::Kill);
        }
    }
}

/// Serves one connection: handshake, then a reader loop here and a writer task.
async fn serve<S>(
    stream: S,
    core: mpsc::Sender<Cmd>,
    config: DaemonConfig,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let conn = NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(64 * 1024);

    // Handshake.
    let hello = tokio::time::timeout(config.handshake_timeout, read_frame(&mut rd, &mut buf)).await;
    let member = match hello {
        Ok(Ok(Some(Frame::Hello { version, member }))) if version == VERSION => member,
        Ok(Ok(Some(Frame::Hello { version, .. }))) => {
            let reason =
                format!("unsupported protocol version {version} (this daemon speaks {VERSION})");
            refuse(&mut wr, conn, reason).await;
            return;
        }
        Ok(Ok(Some(other))) => {
            refuse(
                &mut wr,
                conn,
                format!("expected Hello, got {}", frame_name(&other)),
            )
            .await;
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            refuse(&mut wr, conn, e).await;
            return;
        }
        Err(_) => {
            refuse(
                &mut wr,
                conn,
                "no Hello within the handshake timeout".into(),
            )
            .await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let credit = Arc::new(Semaphore::new(config.queue_limit));
    let (state_tx, mut state) = watch::channel(ConnState::Open);
    let (reply_tx, reply_rx) = oneshot::channel();
    let hello = Cmd::Hello {
        conn,
        member: member.clone(),
        client: ClientOut {
            conn,
            tx,
            credit,
            state: state_tx,
        },
        reply: reply_tx,
    };
    if core.send(hello).await.is_err() {
        refuse(&mut wr, conn, "daemon shutting down".into()).await;
        return;
    }
    match reply_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            refuse(&mut wr, conn, e.to_string()).await;
            return;
        }
        Err(_) => return,
    }
    let welcome = Frame::Welcome { version: VERSION }.encode();
    if write_encoded(&mut wr, &welcome).await.is_err() {
        let _ = core
            .send(Cmd::Gone {
                conn,
                member,
                reason: "write failed during handshake".into(),
            })
            .await;
        return;
    }

    // Writer.
    let mut writer_state = state.clone();
    let writer = tokio::spawn(async move {
        // Small frames are batched; the buffer is flushed whenever the queue is empty.
        let mut wr = tokio::io::BufWriter::with_capacity(64 * 1024, wr);
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = wait_for(&mut writer_state, ConnState::Kill) => None,
            };
            match item {
                Some(Out::Frame(frame, permit)) => {
                    let write = async {
                        write_encoded(&mut wr, &frame).await?;
                        if rx.is_empty() {
                            wr.flush().await?;
                        }
                        Ok::<_, std::io::Error>(())
                    };
                    let written = tokio::select! {
                        r = write => r.is_ok(),
                        _ = wait_for(&mut writer_state, ConnState::Kill) => false,
                    };
                    drop(permit);
                    if !written {
                        break;
                    }
                }
                Some(Out::Close(reason)) => {
                    let frame = Frame::Error {
                        fatal: true,
                        reason,
                    }
                    .encode();
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        write_encoded(&mut wr, &frame).await?;
                        wr.flush().await
                    })
                    .await;
                    break;
                }
                None => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    });

    // Reader.
    let reason = loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd, &mut buf) => f,
            _ = wait_for(&mut state, ConnState::Closing) => break None,
            _ = shutdown.changed() => break None,
        };
        match frame {
            Ok(Some(
                frame @ (Frame::Join { .. }
                | Frame::Leave { .. }
                | Frame::FlushOk { .. }
                | Frame::Send { .. }),
            )) => {
                let cmd = Cmd::Request {
                    conn,
                    member: member.clone(),
                    frame,
                };
                // Bounded: when the ordering task waits, reading stops (backpressure).
                let sent = tokio::select! {
                    r = core.send(cmd) => r.is_ok(),
                    _ = wait_for(&mut state, ConnState::Closing) => false,
                };
                if !sent {
                    break None;
                }
            }
            Ok(Some(other)) => {
                break Some(format!(
                    "protocol error: unexpected {} frame",
                    frame_name(&other)
                ));
            }
            Ok(None) => break Some("connection closed by the client".into()),
            Err(reason) => break Some(reason),
        }
    };
    if let Some(reason) = reason {
        if reason.starts_with("connection closed") {
            debug!(%member, conn, %reason, "connection ended");
        } else {
            warn!(%member, conn, %reason, "closing connection");
        }
        let _ = core
            .send(Cmd::Gone {
                conn,
                member,
                reason,
            })
            .await;
    }
    let _ = writer.await;
}

/// Resolves once the connection state is at least `level`.
async fn wait_for(state: &mut watch::Receiver<ConnState>, level: ConnState) {
    let at_least = |s: &ConnState| match level {
        ConnState::Open => true,
        ConnState::Closing => *s != ConnState::Open,
        ConnState::Kill => *s == ConnState::Kill,
    };
    if state.wait_for(at_least).await.is_err() {
        // The ordering task is gone: treat as closing, never as kill.
        if level == ConnState::Kill {
            std::future::pending::<()>().await;
        }
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Join { .. } => "Join",
        Frame::Leave { .. } => "Leave",
        Frame::FlushOk { .. } => "FlushOk",
        Frame::Send { .. } => "Send",
        Frame::Welcome { .. } => "Welcome",
        Frame::Event(_) => "event",
        Frame::Error { .. } => "Error",
    }
}

/// Sends a fatal error before the connection is established, and logs it.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, conn: u64, reason: String) {
    warn!(conn, %reason, "connection refused");
    let frame = Frame::Error {
        fatal: true,
        reason,
    }
    .encode();
    let _ = tokio::time::timeout(Duration::from_secs(1), write_encoded(wr, &frame)).await;
    let _ = wr.shutdown().await;
}

/// Writes one encoded frame.
pub(crate) async fn write_encoded<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frame: &Encoded,
) -> std::io::Result<()> {
    if frame.payload.len() <= 16 * 1024 {
        // One write for a small frame; a large payload is written without a copy.
        let mut whole = Vec::with_capacity(frame.len());
        whole.extend_from_slice(&frame.head);
        whole.extend_from_slice(&frame.payload);
        return wr.write_all(&whole).await;
    }
    wr.write_all(&frame.head).await?;
    wr.write_all(&frame.payload).await
}

/// Reads one frame: `Ok(None)` at a clean end of stream; `Err` with a reason for an I/O
/// error, a malformed frame, or a stream that ends inside a frame.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, String> {
    loop {
        match Frame::decode(buf) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed frame: {e}")),
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(format!("stream ended inside a frame ({} bytes)", buf.len())),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Address>(),
            Ok(Address::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:4804".parse::<Address>().unwrap().to_string(),
            "tcp:127.0.0.1:4804"
        );
        assert_eq!(
            DEFAULT_ADDRESS.parse::<Address>().unwrap(),
            DaemonConfig::default().listen
        );
        for bad in ["", "unix:", "tcp:localhost", "udp:1.2.3.4:5", "/tmp/x"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }
}
