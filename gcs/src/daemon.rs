//! The daemon engine: one [`Domain`] served to clients over Unix or TCP sockets with the
//! [wire protocol](crate::wire).
//!
//! # Isolation: one slow client hurts no one else
//!
//! The daemon orders everything in one task, which never waits for a client. Every
//! client has an outbound queue bounded in bytes ([`DaemonConfig::queue_limit`]); the
//! slow-consumer rule is explicit: an event that does not fit in its recipient's queue,
//! or a queue whose writer makes no progress for [`DaemonConfig::stall_timeout`],
//! disconnects that client alone, with a fatal `Error` frame that says why (when the
//! connection can still take it); the others see it leave with cause `Disconnect`, and
//! messages are delivered to the members that stay, as view synchrony requires. A
//! client that stops reading therefore delays its own group's view changes by at most
//! [`DaemonConfig::flush_timeout`] (it does not answer flushes) and other groups not at
//! all.
//!
//! # Limits
//!
//! Connections are capped ([`DaemonConfig::max_connections`]; past it a connection gets
//! an `Error` frame and is closed at once). Bytes of incomplete frames are accounted
//! against one budget for all clients ([`DaemonConfig::receive_budget`]), and a frame
//! whose first byte arrived must be complete within [`DaemonConfig::frame_timeout`].
//! Accept errors (out of file descriptors) back off instead of spinning, and their log
//! lines are rate-limited. Every value of the configuration is checked against its
//! range ([`DaemonConfig::validate`]).
//!
//! # Access
//!
//! A Unix socket is created with an explicit mode ([`DaemonConfig::socket_mode`], owner
//! and group by default) whatever the umask, and each client's peer credentials (uid,
//! gid, pid) are recorded and logged. The default address is a Unix socket in a
//! directory of the user's own ([`default_address`]); TCP is used only when asked for.
//! Stale-socket cleanup removes only a socket that nobody answers on, never another
//! kind of file.
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

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::noise::{self, NoiseStream, TcpIdentity, TcpTrust};
use crate::types::{Event, GcsError, GroupName, MemberName, SendOptions};
use crate::vs::{Domain, Outgoing};
use crate::wire::{Encoded, Frame, MAX_FRAME_LEN, MIN_VERSION, NameCache, VERSION};

/// Where a daemon listens, and where a client connects: `unix:PATH` or `tcp:ADDR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Unix-domain socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// The default address: a Unix socket named `conclave.sock` in `$XDG_RUNTIME_DIR` when
/// it is set (a directory of the user's own), else in `/tmp/conclave-UID` (created mode
/// 0710 by the daemon, which refuses it if another user owns it or others may write
/// to it).
pub fn default_address() -> Address {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(format!("/tmp/conclave-{}", current_uid())),
    };
    Address::Unix(dir.join("conclave.sock"))
}

/// This process's user id (the owner of `/proc/self`), read once.
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UID.get_or_init(|| std::fs::metadata("/proc/self").map_or(0, |m| m.uid()))
}

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
    /// frame): an event that does not fit disconnects that client.
    pub queue_limit: usize,
    /// How long the writer of a client's queue may make no progress (the client reads
    /// nothing) before the client is disconnected.
    pub stall_timeout: Duration,
    /// How long a new connection may take to send its `Hello`.
    pub handshake_timeout: Duration,
    /// How long a frame may take to arrive once its first byte did.
    pub frame_timeout: Duration,
    /// The most bytes of incomplete frames the daemon buffers for all clients together
    /// (each client's first 64 KiB are not counted).
    pub receive_budget: usize,
    /// The most connections at once.
    pub max_connections: usize,
    /// The permission bits of a Unix socket (and of the directory of the default
    /// address when the daemon creates it, with the group's read bit cleared).
    pub socket_mode: u32,
    /// Who may use which member names and join which groups.
    pub access: Access,
    /// The daemon's identity and the clients' keys for TCP (needed to listen on TCP:
    /// TCP connections are authenticated and encrypted, see [`crate::noise`]).
    pub tcp: Option<TcpSecurity>,
    /// The origin in this daemon's view ids (default: derived from the clock and the
    /// process id, so that a restarted daemon does not reuse view ids).
    pub origin: Option<u32>,
    /// How many threads a process that hosts only the daemon (`conclave daemon`) runs
    /// it on. One (the default) serves Unix-socket clients best: every message is one
    /// read and a few writes, and a second thread only adds wake-ups between threads.
    /// More help TCP clients on a machine of many cores, whose bytes the daemon
    /// decrypts and encrypts again per receiver (Noise). [`Daemon::bind`] itself runs
    /// on whatever runtime calls it.
    pub threads: usize,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: default_address(),
            flush_timeout: Duration::from_secs(10),
            queue_limit: 64 << 20,
            stall_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            receive_budget: 256 << 20,
            max_connections: 1024,
            socket_mode: 0o660,
            access: Access::default(),
            tcp: None,
            origin: None,
            threads: 1,
        }
    }
}

/// The daemon's side of authenticated TCP: its identity, and the clients' identities
/// it accepts (a TCP client may only use the member name of the identity it proved).
#[derive(Clone, Debug)]
pub struct TcpSecurity {
    /// The daemon's identity (the clients pin its public key).
    pub identity: Arc<TcpIdentity>,
    /// The clients' identities.
    pub clients: TcpTrust,
}

/// Who a rule lets in: Unix clients by user or group id, TCP clients by the identity
/// they proved (`identities`), or every authenticated TCP client (`tcp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principals {
    /// User ids.
    pub uids: Vec<u32>,
    /// Group ids (the client's primary group, as the kernel reports it).
    pub gids: Vec<u32>,
    /// Identities proved over TCP.
    pub identities: Vec<String>,
    /// Every authenticated TCP client.
    pub tcp: bool,
}

impl Principals {
    /// Whether `peer` is among them.
    pub fn admit(&self, peer: &Peer) -> bool {
        match (peer.uid, &peer.identity) {
            (Some(uid), _) => {
                self.uids.contains(&uid) || peer.gid.is_some_and(|g| self.gids.contains(&g))
            }
            (None, Some(identity)) => self.tcp || self.identities.contains(identity),
            (None, None) => false,
        }
    }
}

/// A rule over names (member or group names) matched by a glob (`*`, `?`, `[...]`).
#[derive(Clone, Debug)]
pub struct Rule {
    /// The glob.
    pub pattern: glob::Pattern,
    /// Who it lets in.
    pub who: Principals,
}

/// Access rules: who may use which member names, and join which groups. For each, the
/// first rule whose pattern matches decides; a name that no rule matches is refused,
/// unless there are no rules of that kind at all, in which case the default holds:
/// any member name for the daemon's own user, root and TCP clients (whose address the
/// administrator chose), any group for every client.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Member-name rules.
    pub names: Vec<Rule>,
    /// Group rules.
    pub groups: Vec<Rule>,
}

/// What the first rule matching a name says of a peer.
enum Verdict<'a> {
    Admitted,
    Refused(&'a Rule),
    Unmatched,
}

fn verdict<'a>(rules: &'a [Rule], name: &str, peer: &Peer) -> Verdict<'a> {
    match rules.iter().find(|r| r.pattern.matches(name)) {
        Some(r) if r.who.admit(peer) => Verdict::Admitted,
        Some(r) => Verdict::Refused(r),
        None => Verdict::Unmatched,
    }
}

impl Access {
    /// Why `peer` may not use the member name `member`, if it may not.
    pub fn refuse_name(&self, member: &MemberName, peer: &Peer) -> Option<String> {
        if let Some(identity) = &peer.identity
            && identity != member.as_str()
        {
            return Some(format!(
                "{peer} may only use the member name of its identity ({identity}), not {member}"
            ));
        }
        if self.names.is_empty() {
            let own = peer.uid.is_none_or(|uid| uid == 0 || uid == current_uid());
            return (!own).then(|| {
                format!(
                    "member names are this daemon's user's ({}): {peer} may not use {member}",
                    current_uid()
                )
            });
        }
        match verdict(&self.names, member.as_str(), peer) {
            Verdict::Admitted => None,
            Verdict::Refused(r) => Some(format!(
                "member name {member} is reserved (rule {:?}): {peer} may not use it",
                r.pattern.as_str()
            )),
            Verdict::Unmatched => Some(format!("no rule lets anyone use the member name {member}")),
        }
    }

    /// Why `peer` may not join `group`, if it may not.
    pub fn refuse_group(&self, group: &GroupName, peer: &Peer) -> Option<String> {
        if self.groups.is_empty() {
            return None;
        }
        match verdict(&self.groups, group.as_str(), peer) {
            Verdict::Admitted => None,
            Verdict::Refused(r) => Some(format!(
                "access denied: group {group} (rule {:?}) does not admit {peer}",
                r.pattern.as_str()
            )),
            Verdict::Unmatched => Some(format!(
                "access denied: no rule admits anyone to group {group}"
            )),
        }
    }
}

/// A configuration value out of its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{setting} = {value} is out of range: {range}")]
pub struct ConfigError {
    /// The setting.
    pub setting: &'static str,
    /// Its value, as given.
    pub value: String,
    /// The range it must be in.
    pub range: String,
}

/// The range of every duration setting.
pub const DURATION_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));
/// The largest outbound queue and receive budget: 64 GiB.
pub const MAX_BUFFER: usize = 64 << 30;
/// The most connections a daemon accepts.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// The most threads [`DaemonConfig::threads`] may ask for.
pub const MAX_THREADS: usize = 256;

impl DaemonConfig {
    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (lo, hi) = DURATION_RANGE;
        for (setting, d) in [
            ("flush_timeout", self.flush_timeout),
            ("stall_timeout", self.stall_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("frame_timeout", self.frame_timeout),
        ] {
            if d < lo || d > hi {
                return Err(ConfigError {
                    setting,
                    value: format!("{d:?}"),
                    range: format!("{lo:?} to {hi:?}"),
                });
            }
        }
        let min_queue = MAX_FRAME_LEN + 4;
        for (setting, v) in [
            ("queue_limit", self.queue_limit),
            ("receive_budget", self.receive_budget),
        ] {
            if !(min_queue..=MAX_BUFFER).contains(&v) {
                return Err(ConfigError {
                    setting,
                    value: format!("{v} bytes"),
                    range: format!(
                        "{min_queue} bytes (one maximal frame) to {MAX_BUFFER} bytes (64 GiB)"
                    ),
                });
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(ConfigError {
                setting: "max_connections",
                value: self.max_connections.to_string(),
                range: format!("1 to {MAX_CONNECTIONS}"),
            });
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(ConfigError {
                setting: "threads",
                value: self.threads.to_string(),
                range: format!("1 to {MAX_THREADS}"),
            });
        }
        if self.socket_mode & !0o777 != 0 || self.socket_mode & 0o600 != 0o600 {
            return Err(ConfigError {
                setting: "socket_mode",
                value: format!("{:o}", self.socket_mode),
                range: "permission bits (at most 777) that let the owner read and write".into(),
            });
        }
        Ok(())
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
        /// The frame's share of the bytes in flight to the ordering task.
        _inflight: Option<OwnedSemaphorePermit>,
    },
    Gone {
        conn: u64,
        member: MemberName,
        reason: String,
    },
    /// A congested client's queue went below a quarter of its bound.
    Drained { conn: u64, member: MemberName },
}

/// The groups whose senders wait because a member's outbound queue is more than half
/// full: shared by the ordering task (which sets it) and the connections' readers
/// (which hold back their clients' sends to those groups, and nothing else).
struct Pressure {
    groups: std::sync::Mutex<std::collections::BTreeSet<GroupName>>,
    changed: tokio::sync::Notify,
}

impl Pressure {
    fn new() -> Self {
        Self {
            groups: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn is_congested(&self, group: &GroupName) -> bool {
        self.groups.lock().is_ok_and(|g| g.contains(group))
    }

    fn set(&self, groups: std::collections::BTreeSet<GroupName>) {
        if let Ok(mut g) = self.groups.lock()
            && *g != groups
        {
            *g = groups;
            self.changed.notify_waiters();
        }
    }

    /// Waits until `group` is not congested.
    async fn clear(&self, group: &GroupName) {
        loop {
            let changed = self.changed.notified();
            if !self.is_congested(group) {
                return;
            }
            changed.await;
        }
    }
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
    /// Why the connection is being killed, for its writer's last frame.
    reason: Arc<std::sync::Mutex<Option<String>>>,
    peer: Peer,
    /// Since when its queue is more than half full (it holds back its groups' senders).
    congested_since: Option<Instant>,
    /// Set while congested: the writer reports when the queue drains.
    watch_drain: Arc<std::sync::atomic::AtomicBool>,
}

impl ClientOut {
    fn queued(&self, limit: usize) -> usize {
        limit.saturating_sub(self.credit.available_permits())
    }
}

/// The least time between two status documents for one connection.
const STATUS_INTERVAL: Duration = Duration::from_millis(10);

/// A running daemon.
pub struct Daemon {
    address: Address,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Daemon {
    /// Binds `config.listen` and starts serving. Fails if a value of `config` is out of
    /// range, or if the address is in use (for a Unix socket: if another daemon answers
    /// on it; a stale socket is replaced, any other file is left alone and refused).
    pub async fn bind(config: DaemonConfig) -> std::io::Result<Daemon> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = JoinSet::new();
        let (listener, address) = match &config.listen {
            Address::Tcp(_) if config.tcp.is_none() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "listening on TCP needs the daemon's identity and its clients' keys \
                     (TCP is authenticated and encrypted with Noise)",
                ));
            }
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                (Listener::Tcp(listener), Address::Tcp(local))
            }
            Address::Unix(path) => {
                let listener = bind_unix(path, &config).await?;
                (
                    Listener::Unix(listener, Some(path.clone())),
                    Address::Unix(path.clone()),
                )
            }
        };
        Ok(Self::serve(
            config,
            listener,
            address,
            shutdown,
            shutdown_rx,
            tasks,
        ))
    }

    /// Starts serving on a Unix socket that the caller bound (a service manager's socket
    /// activation, e.g. systemd's `conclave-daemon.socket`): `config.listen` is not
    /// bound, and the socket file is left in place at shutdown (its owner removes it).
    pub async fn bind_inherited(
        config: DaemonConfig,
        listener: std::os::unix::net::UnixListener,
    ) -> std::io::Result<Daemon> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        listener.set_nonblocking(true)?;
        let path = listener
            .local_addr()?
            .as_pathname()
            .map(std::path::Path::to_path_buf)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the inherited socket is not a Unix socket with a path",
                )
            })?;
        let listener = UnixListener::from_std(listener)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        Ok(Self::serve(
            config,
            Listener::Unix(listener, None),
            Address::Unix(path),
            shutdown,
            shutdown_rx,
            JoinSet::new(),
        ))
    }

    fn serve(
        config: DaemonConfig,
        listener: Listener,
        address: Address,
        shutdown: watch::Sender<bool>,
        shutdown_rx: watch::Receiver<bool>,
        mut tasks: JoinSet<()>,
    ) -> Daemon {
        let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>(64);
        let pressure = Arc::new(Pressure::new());
        let limits = Arc::new(Limits {
            pressure: Arc::clone(&pressure),
            inflight: Arc::new(Semaphore::new(INFLIGHT)),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            receive: Arc::new(Semaphore::new(config.receive_budget)),
        });
        tasks.spawn(accept_loop(
            listener,
            cmd_tx.clone(),
            config.clone(),
            limits,
            shutdown_rx.clone(),
        ));
        drop(cmd_tx);
        let origin = config.origin.unwrap_or_else(default_origin);
        tasks.spawn(order(config, origin, pressure, cmd_rx, shutdown_rx));
        info!(address = %address, origin, "daemon listening");
        Daemon {
            address,
            shutdown,
            tasks,
        }
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

/// The daemon's shared budgets.
struct Limits {
    /// The groups whose senders wait.
    pressure: Arc<Pressure>,
    /// Bytes of messages on their way from the readers to the ordering task: bounded
    /// in bytes, so that what is already in flight when a group becomes congested
    /// cannot overflow a healthy member's queue.
    inflight: Arc<Semaphore>,
    /// One permit per connection.
    connections: Arc<Semaphore>,
    /// One permit per byte of incomplete frames buffered (past each client's first
    /// [`FREE_RECEIVE`] bytes).
    receive: Arc<Semaphore>,
}

/// Bytes of messages in flight from all readers to the ordering task.
const INFLIGHT: usize = 4 << 20;

/// Bytes of an incomplete frame a client may have buffered without drawing on the
/// receive budget.
const FREE_RECEIVE: usize = 64 * 1024;

/// The most a reader draws from the receive budget at once, before reading that much
/// more of a frame larger than [`FREE_RECEIVE`].
const RECEIVE_STEP: usize = 64 * 1024;

enum Listener {
    Tcp(TcpListener),
    /// The listener, and the socket file to remove at shutdown (none if inherited).
    Unix(UnixListener, Option<PathBuf>),
}

/// Who is at the other end of a connection, as the kernel says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// The user id (Unix sockets).
    pub uid: Option<u32>,
    /// The group id (Unix sockets).
    pub gid: Option<u32>,
    /// The process id (Unix sockets, where the kernel gives it).
    pub pid: Option<i32>,
    /// The address (TCP).
    pub addr: Option<SocketAddr>,
    /// The identity it proved (TCP, once the Noise handshake succeeded).
    pub identity: Option<String>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.uid) {
            (Some(a), _) => match &self.identity {
                Some(identity) => write!(f, "identity {identity} at {a}"),
                None => write!(f, "{a}"),
            },
            (None, Some(uid)) => {
                write!(f, "uid {uid}")?;
                if let Some(gid) = self.gid {
                    write!(f, " gid {gid}")?;
                }
                if let Some(pid) = self.pid {
                    write!(f, " pid {pid}")?;
                }
                Ok(())
            }
            (None, None) => write!(f, "unknown peer"),
        }
    }
}

/// Binds a Unix socket at `path` with `config.socket_mode`, whatever the umask: it is
/// bound under a temporary name, given its mode, then renamed into place. A file at
/// `path` that is not a socket is refused; a socket that nobody answers on is replaced.
async fn bind_unix(path: &std::path::Path, config: &DaemonConfig) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if config.listen == default_address() {
        if !dir.exists() {
            // The default directory: made here, the owner's, reachable by the group only.
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))?;
        }
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() || meta.uid() != current_uid() || meta.mode() & 0o022 != 0 {
            return Err(invalid(format!(
                "{} must be a directory of this user (uid {}) that no one else may write to",
                dir.display(),
                current_uid()
            )));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        Ok(_) => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("a daemon already answers on {}", path.display()),
                ));
            }
            info!(path = %path.display(), "removing stale socket");
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path
        .file_name()
        .ok_or_else(|| invalid(format!("{} names no file", path.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let _ = std::fs::remove_file(&temp);
    let listener = UnixListener::bind(&temp)?;
    let placed =
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(config.socket_mode))
            .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(listener)
}

/// Accepts connections until shutdown, within the connection limit; accept errors back
/// off (10 ms doubling to 1 s) and are logged at most once a second.
async fn accept_loop(
    listener: Listener,
    core: mpsc::Sender<Cmd>,
    config: DaemonConfig,
    limits: Arc<Limits>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    let mut backoff = Duration::ZERO;
    let mut errors = RateLimited::new(Duration::from_secs(1));
    let mut refusals = RateLimited::new(Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = stop.changed() => break,
        };
        // Reap finished connections as we go.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::ZERO;
                x
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if let Some(more) = errors.hit() {
                    warn!(error = %e, retry_in = ?backoff, more, "accept failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limits.connections).try_acquire_owned() else {
            if let Some(more) = refusals.hit() {
                warn!(%peer, limit = config.max_connections, more, "connection refused: too many connections");
            }
            stream.refuse_now(&format!(
                "too many connections (the limit is {})",
                config.max_connections
            ));
            continue;
        };
        debug!(%peer, "connection accepted");
        let (tx, cfg, sd, lim) = (
            core.clone(),
            config.clone(),
            shutdown.clone(),
            Arc::clone(&limits),
        );
        match stream {
            Stream::Tcp(s) => conns.spawn(async move {
                if let Some((s, peer)) = secure_tcp(s, peer, &cfg).await {
                    let (rd, wr) = tokio::io::split(s);
                    serve(rd, wr, peer, tx, cfg, lim, sd).await;
                }
                drop(permit);
            }),
            Stream::Unix(rd, wr) => conns.spawn(async move {
                serve(rd, wr, peer, tx, cfg, lim, sd).await;
                drop(permit);
            }),
        };
    }
    drain_connections(conns).await;
    if let Listener::Unix(_, Some(path)) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

/// The Noise handshake of a TCP connection, within the handshake timeout: the secured
/// stream and the peer with the identity it proved, or `None` (the refusal logged and,
/// when there is a secure channel to say it in, told to the client).
async fn secure_tcp(
    stream: tokio::net::TcpStream,
    mut peer: Peer,
    config: &DaemonConfig,
) -> Option<(NoiseStream<tokio::net::TcpStream>, Peer)> {
    let tcp = config.tcp.as_ref()?;
    let handshake = noise::accept(stream, &tcp.identity, &tcp.clients);
    match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(Ok((stream, Ok(identity)))) => {
            peer.identity = Some(identity);
            Some((stream, peer))
        }
        Ok(Ok((mut stream, Err(refused)))) => {
            refuse(&mut stream, 0, format!("{peer}: {refused}")).await;
            None
        }
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "connection refused");
            None
        }
        Err(_) => {
            warn!(%peer, "connection refused: no noise handshake within the handshake timeout");
            None
        }
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    /// Split at once: each half registered only for what it waits for ([`crate::unix`]).
    Unix(crate::unix::ReadHalf, crate::unix::WriteHalf),
}

impl Stream {
    /// Writes a fatal `Error` frame if the socket takes it at once, and drops the
    /// connection: no task, no wait.
    fn refuse_now(self, reason: &str) {
        let frame = Frame::Error {
            fatal: true,
            reason: reason.into(),
        }
        .encode();
        let bytes = frame.to_vec();
        let _ = match &self {
            Stream::Tcp(s) => s.try_write(&bytes),
            Stream::Unix(_, w) => w.try_write(&bytes),
        };
    }
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, Peer)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, addr) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((
                Stream::Tcp(stream),
                Peer {
                    addr: Some(addr),
                    ..Peer::default()
                },
            ))
        }
        Listener::Unix(l, _) => {
            let (stream, _) = l.accept().await?;
            let peer = stream.peer_cred().map_or(Peer::default(), |c| Peer {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
                pid: c.pid(),
                ..Peer::default()
            });
            // A split that fails (no descriptor left for the second half) is a failed
            // accept: the connection is closed and accepting backs off.
            let (rd, wr) = crate::unix::split(stream)?;
            Ok((Stream::Unix(rd, wr), peer))
        }
    }
}

/// Counts events and lets one through per period: `Some(n)` with the number held back
/// since the last one.
struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimited {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            held: 0,
        }
    }

    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.period)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
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
    pressure: Arc<Pressure>,
    mut rx: mpsc::Receiver<Cmd>,
    mut shutdown: watch::Receiver<bool>,
) {
    let timeout_ms = config.flush_timeout.as_millis().min(u64::MAX as u128) as u64;
    let mut domain = Domain::new(origin, Some(timeout_ms));
    let mut clients: BTreeMap<MemberName, ClientOut> = BTreeMap::new();
    let mut o = Ordering {
        config: &config,
        pressure: &pressure,
        stats: Stats::default(),
    };
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
                let counts = !matches!(
                    &cmd,
                    Cmd::Request { frame: Frame::Send { .. } | Frame::FlushOk { .. }, .. }
                        | Cmd::Drained { .. }
                );
                o.handle(cmd, &mut domain, &mut clients);
                if counts {
                    Stats::counts(&domain, &clients);
                }
            }
            _ = tick.tick() => {
                domain.advance(start.elapsed().as_millis() as u64);
                o.relieve(&mut domain, &mut clients, true);
                o.dispatch(&mut domain, &mut clients);
                o.stats.tick(&domain, &clients, config.queue_limit);
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

/// The ordering task's settings and shared state.
struct Ordering<'a> {
    config: &'a DaemonConfig,
    pressure: &'a Pressure,
    stats: Stats,
}

/// One group's figures, and the members' notes about it.
struct GroupStats {
    messages_in: u64,
    bytes_in: u64,
    messages_out: u64,
    bytes_out: u64,
    views: u64,
    last_view: Option<crate::types::ViewId>,
    /// Since the first flush request of the view change under way.
    flush_since: Option<Instant>,
    last_flush: Option<Duration>,
    notes: BTreeMap<MemberName, Bytes>,
    metrics: GroupMetrics,
}

/// A group's metric handles (no-ops unless the process installed a recorder).
struct GroupMetrics {
    messages_in: metrics::Counter,
    bytes_in: metrics::Counter,
    messages_out: metrics::Counter,
    bytes_out: metrics::Counter,
    views: metrics::Counter,
    flush: metrics::Histogram,
}

impl GroupStats {
    fn new(group: &GroupName) -> Self {
        let label = group.as_str().to_string();
        GroupStats {
            messages_in: 0,
            bytes_in: 0,
            messages_out: 0,
            bytes_out: 0,
            views: 0,
            last_view: None,
            flush_since: None,
            last_flush: None,
            notes: BTreeMap::new(),
            metrics: GroupMetrics {
                messages_in: metrics::counter!("conclave_daemon_messages_in_total", "group" => label.clone()),
                bytes_in: metrics::counter!("conclave_daemon_bytes_in_total", "group" => label.clone()),
                messages_out: metrics::counter!("conclave_daemon_messages_out_total", "group" => label.clone()),
                bytes_out: metrics::counter!("conclave_daemon_bytes_out_total", "group" => label.clone()),
                views: metrics::counter!("conclave_daemon_views_total", "group" => label.clone()),
                flush: metrics::histogram!("conclave_daemon_flush_seconds", "group" => label),
            },
        }
    }
}

/// The daemon's own figures, kept by the ordering task: `Status` frames and metrics.
#[derive(Default)]
struct Stats {
    groups: std::collections::HashMap<GroupName, GroupStats>,
    /// Deliveries counted but not yet added to their group: (group, messages, bytes).
    /// A dispatch delivers runs of one group's messages, so a run costs one lookup.
    run: Option<(GroupName, u64, u64)>,
    /// Disconnects by cause.
    disconnects: BTreeMap<&'static str, u64>,
    connections: u64,
}

/// The kind of a disconnect, from its reason.
fn disconnect_cause(reason: &str) -> &'static str {
    if reason.starts_with("slow consumer") {
        "slow-consumer"
    } else if reason.starts_with("connection closed") {
        "closed"
    } else if reason.starts_with("protocol error") {
        "protocol-error"
    } else if reason.contains("timeout") || reason.contains(" within ") {
        "timeout"
    } else {
        "error"
    }
}

impl Stats {
    fn group(&mut self, group: &GroupName) -> &mut GroupStats {
        self.groups
            .entry(group.clone())
            .or_insert_with(|| GroupStats::new(group))
    }

    /// Counts a send accepted into `group` (the group's name is cloned only the first
    /// time: this runs for every message).
    fn sent(&mut self, group: &GroupName, len: u64) {
        let g = match self.groups.get_mut(group) {
            Some(g) => g,
            None => self
                .groups
                .entry(group.clone())
                .or_insert_with(|| GroupStats::new(group)),
        };
        g.messages_in += 1;
        g.bytes_in += len;
        g.metrics.messages_in.increment(1);
        g.metrics.bytes_in.increment(len);
    }

    fn disconnected(&mut self, reason: &str) {
        let cause = disconnect_cause(reason);
        *self.disconnects.entry(cause).or_default() += 1;
        metrics::counter!("conclave_daemon_disconnects_total", "cause" => cause).increment(1);
    }

    /// Counts an event on its way to a client.
    fn outgoing(&mut self, event: &Event) {
        match event {
            Event::Message { group, payload, .. } => {
                let len = payload.len() as u64;
                match &mut self.run {
                    Some((g, messages, bytes)) if g == group => {
                        *messages += 1;
                        *bytes += len;
                    }
                    _ => {
                        self.end_run();
                        self.run = Some((group.clone(), 1, len));
                    }
                }
            }
            Event::FlushRequest { group } => {
                self.group(group)
                    .flush_since
                    .get_or_insert_with(Instant::now);
            }
            Event::View(view) => {
                let g = self.group(&view.group);
                if g.last_view != Some(view.id) {
                    g.last_view = Some(view.id);
                    g.views += 1;
                    g.metrics.views.increment(1);
                    if let Some(since) = g.flush_since.take() {
                        let took = since.elapsed();
                        g.last_flush = Some(took);
                        g.metrics.flush.record(took.as_secs_f64());
                    }
                }
            }
            _ => {}
        }
    }

    /// Adds the current run of deliveries to its group.
    fn end_run(&mut self) {
        if let Some((group, messages, bytes)) = self.run.take() {
            let g = match self.groups.entry(group) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let stats = GroupStats::new(e.key());
                    e.insert(stats)
                }
            };
            g.messages_out += messages;
            g.bytes_out += bytes;
            g.metrics.messages_out.increment(messages);
            g.metrics.bytes_out.increment(bytes);
        }
    }

    /// Gauges, and forgets groups that have no members left.
    fn tick(&mut self, domain: &Domain, clients: &BTreeMap<MemberName, ClientOut>, limit: usize) {
        self.groups.retain(|g, _| !domain.members(g).is_empty());
        let queued: usize = clients.values().map(|c| c.queued(limit)).sum();
        let congested = clients
            .values()
            .filter(|c| c.congested_since.is_some())
            .count();
        Self::counts(domain, clients);
        metrics::gauge!("conclave_daemon_queued_bytes").set(queued as f64);
        metrics::gauge!("conclave_daemon_congested_clients").set(congested as f64);
    }

    /// The connection and group gauges (at each change of either, and each tick).
    fn counts(domain: &Domain, clients: &BTreeMap<MemberName, ClientOut>) {
        metrics::gauge!("conclave_daemon_connections").set(clients.len() as f64);
        metrics::gauge!("conclave_daemon_groups").set(domain.groups().count() as f64);
    }

    /// The `Status` document.
    fn status(
        &self,
        domain: &Domain,
        clients: &BTreeMap<MemberName, ClientOut>,
        limit: usize,
    ) -> serde_json::Value {
        let mut groups: Vec<&GroupName> = domain.groups().collect();
        groups.sort();
        let groups: Vec<serde_json::Value> = groups
            .into_iter()
            .map(|group| {
                let members = domain.members(group);
                let g = self.groups.get(group);
                let notes: serde_json::Map<String, serde_json::Value> = g
                    .map(|g| {
                        g.notes
                            .iter()
                            .filter(|(m, _)| members.contains(m))
                            .map(|(m, n)| (m.as_str().to_string(), hex::encode(n).into()))
                            .collect()
                    })
                    .unwrap_or_default();
                serde_json::json!({
                    "group": group.as_str(),
                    "view": g.and_then(|g| g.last_view).map(|v| hex::encode(v.to_bytes())),
                    "members": members.iter().map(MemberName::as_str).collect::<Vec<_>>(),
                    "messages_in": g.map_or(0, |g| g.messages_in),
                    "bytes_in": g.map_or(0, |g| g.bytes_in),
                    "messages_out": g.map_or(0, |g| g.messages_out),
                    "bytes_out": g.map_or(0, |g| g.bytes_out),
                    "views": g.map_or(0, |g| g.views),
                    "last_flush_ms": g.and_then(|g| g.last_flush).map(|d| d.as_secs_f64() * 1e3),
                    "notes": notes,
                })
            })
            .collect();
        let queues: serde_json::Map<String, serde_json::Value> = clients
            .iter()
            .map(|(m, c)| (m.as_str().to_string(), c.queued(limit).into()))
            .collect();
        serde_json::json!({
            "daemon": {
                "connections": clients.len(),
                "connections_total": self.connections,
                "groups": domain.groups().count(),
                "queue_limit": limit,
                "queued_bytes": queues,
                "congested": clients.values().filter(|c| c.congested_since.is_some()).count(),
                "disconnects": self.disconnects,
            },
            "groups": groups,
        })
    }
}

impl Ordering<'_> {
    fn handle(
        &mut self,
        cmd: Cmd,
        domain: &mut Domain,
        clients: &mut BTreeMap<MemberName, ClientOut>,
    ) {
        let config = self.config;
        match cmd {
            Cmd::Drained { conn, member } => {
                if clients.get(&member).is_some_and(|c| c.conn == conn) {
                    self.relieve(domain, clients, false);
                }
            }
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
                    info!(member = %e.key(), conn, peer = %client.peer, "member connected");
                    self.stats.connections += 1;
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
                    Self::remove_client(
                        &mut self.stats,
                        domain,
                        clients,
                        &member,
                        reason,
                        ConnState::Closing,
                    );
                    self.update_pressure(domain, clients);
                }
            }
            Cmd::Request {
                conn,
                member,
                frame,
                _inflight,
            } => {
                if clients.get(&member).is_none_or(|c| c.conn != conn) {
                    return;
                }
                if let Frame::Join { group } = &frame {
                    let refused = clients
                        .get(&member)
                        .and_then(|c| config.access.refuse_group(group, &c.peer));
                    if let Some(reason) = refused {
                        // That join alone is refused: the member's other groups and
                        // its connection go on.
                        warn!(%member, %group, %reason, "join refused");
                        if let Some(c) = clients.get(&member) {
                            let refusal = Frame::Event(Event::Refused {
                                group: group.clone(),
                                reason,
                            });
                            if !Self::queue(c, refusal.encode()) {
                                let reason =
                                    "slow consumer: no room in the outbound queue for a refusal"
                                        .to_string();
                                Self::remove_client(
                                    &mut self.stats,
                                    domain,
                                    clients,
                                    &member,
                                    reason,
                                    ConnState::Kill,
                                );
                                self.update_pressure(domain, clients);
                            }
                        }
                        self.dispatch(domain, clients);
                        return;
                    }
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
                    } => {
                        let len = payload.len() as u64;
                        let sent = domain.send(
                            &member,
                            &group,
                            &delivery,
                            payload,
                            SendOptions { self_delivery },
                        );
                        if sent.is_ok() {
                            self.stats.sent(&group, len);
                        }
                        sent
                    }
                    Frame::Note { group, note } => {
                        if domain.members(&group).contains(&member) {
                            self.stats.group(&group).notes.insert(member.clone(), note);
                            Ok(())
                        } else {
                            Err(GcsError::NotMember {
                                group,
                                member: member.clone(),
                            })
                        }
                    }
                    Frame::StatusRequest => {
                        let json = self.stats.status(domain, clients, config.queue_limit);
                        let frame = Frame::Status {
                            json: Bytes::from(json.to_string()),
                        };
                        if let Some(c) = clients.get(&member)
                            && !Self::queue(c, frame.encode())
                        {
                            warn!(%member, "no room in the outbound queue for a status");
                        }
                        Ok(())
                    }
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
                        // Best effort: a client whose queue is full loses the notice.
                        let _ = Self::queue(c, frame);
                    }
                }
            }
        }
        self.dispatch(domain, clients);
    }

    /// Clients whose queue went below a quarter of its bound stop holding back their
    /// groups; with `timers`, a client congested for longer than the stall timeout is
    /// disconnected (the slow-consumer rule's time bound).
    fn relieve(
        &mut self,
        domain: &mut Domain,
        clients: &mut BTreeMap<MemberName, ClientOut>,
        timers: bool,
    ) {
        let limit = self.config.queue_limit;
        let mut changed = false;
        let mut stalled = Vec::new();
        for (member, c) in clients.iter_mut() {
            let Some(since) = c.congested_since else {
                continue;
            };
            if c.queued(limit) < limit / 4 {
                c.congested_since = None;
                c.watch_drain
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                changed = true;
            } else if timers && since.elapsed() > self.config.stall_timeout {
                stalled.push(member.clone());
            }
        }
        for member in stalled {
            let reason = format!(
                "slow consumer: its outbound queue stayed more than half full ({} bytes) for {:?}",
                limit / 2,
                self.config.stall_timeout
            );
            warn!(%member, %reason, "disconnecting slow client");
            Self::remove_client(
                &mut self.stats,
                domain,
                clients,
                &member,
                reason,
                ConnState::Kill,
            );
            changed = true;
        }
        if changed {
            self.update_pressure(domain, clients);
        }
    }

    /// Recomputes the groups that wait for a congested member.
    fn update_pressure(&self, domain: &Domain, clients: &BTreeMap<MemberName, ClientOut>) {
        let congested: Vec<&MemberName> = clients
            .iter()
            .filter(|(_, c)| c.congested_since.is_some())
            .map(|(m, _)| m)
            .collect();
        let groups = if congested.is_empty() {
            Default::default()
        } else {
            domain
                .groups()
                .filter(|g| domain.members(g).iter().any(|m| congested.contains(&m)))
                .cloned()
                .collect()
        };
        self.pressure.set(groups);
    }

    /// Removes a client: from the domain (the others see a disconnect) and from the
    /// clients, telling its connection why.
    fn remove_client(
        stats: &mut Stats,
        domain: &mut Domain,
        clients: &mut BTreeMap<MemberName, ClientOut>,
        member: &MemberName,
        reason: String,
        state: ConnState,
    ) {
        domain.disconnect(member);
        if let Some(client) = clients.remove(member) {
            stats.disconnected(&reason);
            if let Ok(mut r) = client.reason.lock() {
                *r = Some(reason.clone());
            }
            let _ = client.tx.send(Out::Close(reason));
            let _ = client.state.send(state);
        }
    }

    /// Queues `frame` for `client` if its queue has room for it, without waiting; `false`
    /// if it has not (the slow-consumer rule) or the client is gone.
    fn queue(client: &ClientOut, frame: Encoded) -> bool {
        let Ok(need) = u32::try_from(frame.len()) else {
            return false;
        };
        match Arc::clone(&client.credit).try_acquire_many_owned(need) {
            Ok(permit) => client.tx.send(Out::Frame(frame, permit)).is_ok(),
            Err(_) => false,
        }
    }

    /// Delivers the domain's events; a client whose queue cannot take one is disconnected
    /// (alone: the others see it leave with cause `Disconnect`).
    fn dispatch(&mut self, domain: &mut Domain, clients: &mut BTreeMap<MemberName, ClientOut>) {
        let config = self.config;
        let mut changed = false;
        loop {
            let out: Vec<Outgoing> = domain.drain();
            if out.is_empty() {
                break;
            }
            // A sender's own copies go out after everyone else's: the sender knows what
            // it sent, and on a machine of few cores the process woken first takes the
            // core the other receivers are waiting for. Each client's events keep their
            // order (all of a deferred client's events move, in order, to the end).
            let mut deferred: Vec<MemberName> = Vec::new();
            for o in &out {
                let own = matches!(&o.event, Event::Message { sender, unicast: false, .. } if *sender == o.to);
                if own && !deferred.contains(&o.to) {
                    deferred.push(o.to.clone());
                }
            }
            let (later, now): (Vec<Outgoing>, Vec<Outgoing>) = if deferred.is_empty() {
                (Vec::new(), out)
            } else {
                out.into_iter().partition(|o| deferred.contains(&o.to))
            };
            let mut stalled = Vec::new();
            // A multicast's copies share one encoding (the recipients' frames are the
            // same bytes).
            let mut last: Option<(Event, Encoded)> = None;
            for o in now.into_iter().chain(later) {
                if stalled.contains(&o.to) {
                    continue;
                }
                let Some(client) = clients.get_mut(&o.to) else {
                    continue;
                };
                self.stats.outgoing(&o.event);
                let frame = match &last {
                    Some((event, frame)) if same_message(event, &o.event) => frame.clone(),
                    _ => {
                        let frame = Frame::Event(o.event.clone()).encode();
                        last = Some((o.event, frame.clone()));
                        frame
                    }
                };
                if !Self::queue(client, frame) {
                    stalled.push(o.to);
                    continue;
                }
                if client.congested_since.is_none()
                    && client.queued(config.queue_limit) > config.queue_limit / 2
                {
                    client.congested_since = Some(Instant::now());
                    client
                        .watch_drain
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    changed = true;
                }
            }
            for member in stalled {
                let reason = format!(
                    "slow consumer: the outbound queue ({} bytes) is full; the client does not read fast enough",
                    config.queue_limit
                );
                warn!(%member, %reason, "disconnecting slow client");
                Self::remove_client(
                    &mut self.stats,
                    domain,
                    clients,
                    &member,
                    reason,
                    ConnState::Kill,
                );
                changed = true;
            }
        }
        self.stats.end_run();
        if changed {
            self.update_pressure(domain, clients);
        }
    }
}

/// Whether `a` and `b` are copies of one message (the same payload buffer and
/// fields), which encode to the same frame.
fn same_message(a: &Event, b: &Event) -> bool {
    match (a, b) {
        (
            Event::Message {
                group,
                sender,
                service,
                view_id,
                unicast,
                payload,
            },
            Event::Message {
                group: group2,
                sender: sender2,
                service: service2,
                view_id: view_id2,
                unicast: unicast2,
                payload: payload2,
            },
        ) => {
            payload.as_ptr() == payload2.as_ptr()
                && payload.len() == payload2.len()
                && unicast == unicast2
                && service == service2
                && view_id == view_id2
                && group == group2
                && sender == sender2
        }
        _ => false,
    }
}

/// Serves one connection: handshake, then a reader loop here and a writer task.
async fn serve<R, W>(
    mut rd: R,
    mut wr: W,
    peer: Peer,
    core: mpsc::Sender<Cmd>,
    config: DaemonConfig,
    limits: Arc<Limits>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let conn = NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut inbound = Inbound::new(&config, &limits);

    // Handshake.
    let hello = tokio::time::timeout(config.handshake_timeout, inbound.next(&mut rd)).await;
    let (member, version) = match hello {
        Ok(Ok(Some(Frame::Hello { version, member })))
            if (MIN_VERSION..=VERSION).contains(&version) =>
        {
            if let Some(reason) = config.access.refuse_name(&member, &peer) {
                refuse(&mut wr, conn, reason).await;
                return;
            }
            (member, version)
        }
        Ok(Ok(Some(Frame::Hello { version, .. }))) => {
            let reason = format!(
                "unsupported protocol version {version} (this daemon speaks {MIN_VERSION} to {VERSION})"
            );
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
    let queue_limit = config.queue_limit;
    let (state_tx, mut state) = watch::channel(ConnState::Open);
    let (reply_tx, reply_rx) = oneshot::channel();
    let kill_reason = Arc::new(std::sync::Mutex::new(None::<String>));
    let watch_drain = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer_credit = Arc::clone(&credit);
    let hello = Cmd::Hello {
        conn,
        member: member.clone(),
        client: ClientOut {
            conn,
            tx,
            credit,
            state: state_tx,
            reason: Arc::clone(&kill_reason),
            peer,
            congested_since: None,
            watch_drain: Arc::clone(&watch_drain),
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
    let welcome = Frame::Welcome { version }.encode();
    let sent = async {
        write_encoded(&mut wr, &welcome).await?;
        wr.flush().await
    };
    if sent.await.is_err() {
        let _ = core
            .send(Cmd::Gone {
                conn,
                member,
                reason: "write failed during handshake".into(),
            })
            .await;
        return;
    }

    // Writer: frames in order, in batches of what is queued (one write each); a batch
    // that makes no progress for the stall timeout (the client reads nothing)
    // disconnects the client; a kill drops what is queued and, at a frame boundary,
    // says why in a last Error frame.
    let mut writer_state = state.clone();
    let (writer_core, writer_member, stall) = (core.clone(), member.clone(), config.stall_timeout);
    let writer = tokio::spawn(async move {
        let mut batch = Batch::default();
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = wait_for(&mut writer_state, ConnState::Kill) => {
                    // Between frames here: the last words cannot cut one in two.
                    if let Some(reason) = kill_reason.lock().ok().and_then(|r| r.clone()) {
                        last_words(&mut wr, reason, Duration::from_millis(200)).await;
                    }
                    break;
                }
            };
            let mut close = match item {
                Some(Out::Frame(frame, permit)) => {
                    batch.add(frame, permit);
                    None
                }
                Some(Out::Close(reason)) => Some(reason),
                None => break,
            };
            // Everything else already queued goes in the same write.
            while close.is_none() && batch.has_room() {
                match crate::channel::take_ready_unbounded(&mut rx).await {
                    Some(Out::Frame(frame, permit)) => batch.add(frame, permit),
                    Some(Out::Close(reason)) => close = Some(reason),
                    None => break,
                }
            }
            if !batch.is_empty() {
                let written = {
                    let mut write = std::pin::pin!(batch.write_to(&mut wr));
                    // Most writes complete at once: the stall timer is armed only for
                    // one that has to wait for the client.
                    let first =
                        std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx)))
                            .await;
                    match first {
                        std::task::Poll::Ready(r) => Written::Done(Ok(r)),
                        std::task::Poll::Pending => tokio::select! {
                            r = tokio::time::timeout(stall, &mut write) => Written::Done(r),
                            _ = wait_for(&mut writer_state, ConnState::Kill) => {
                                // Killed inside a write: finish it if the client takes
                                // it soon, so that the last words can follow it.
                                let finished =
                                    tokio::time::timeout(Duration::from_millis(200), &mut write)
                                        .await
                                        .is_ok_and(|r| r.is_ok());
                                Written::Killed { finished }
                            }
                        },
                    }
                };
                let written = match written {
                    Written::Done(r) => r,
                    Written::Killed { finished } => {
                        batch.clear();
                        let reason = kill_reason.lock().ok().and_then(|r| r.clone());
                        if let (true, Some(reason)) = (finished, reason) {
                            last_words(&mut wr, reason, Duration::from_millis(200)).await;
                        }
                        break;
                    }
                };
                batch.clear();
                if watch_drain.load(std::sync::atomic::Ordering::Relaxed)
                    && writer_credit.available_permits() > queue_limit - queue_limit / 4
                {
                    watch_drain.store(false, std::sync::atomic::Ordering::Relaxed);
                    let _ = writer_core.try_send(Cmd::Drained {
                        conn,
                        member: writer_member.clone(),
                    });
                }
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        let reason = format!(
                            "slow consumer: no progress writing to the client for {stall:?}"
                        );
                        warn!(member = %writer_member, %reason, "disconnecting slow client");
                        let _ = writer_core
                            .send(Cmd::Gone {
                                conn,
                                member: writer_member,
                                reason,
                            })
                            .await;
                        break;
                    }
                }
            }
            if let Some(reason) = close {
                last_words(&mut wr, reason, Duration::from_secs(1)).await;
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    });

    // Reader.
    let mut next_status = tokio::time::Instant::now();
    let reason = loop {
        let frame = tokio::select! {
            f = inbound.next(&mut rd) => f,
            _ = wait_for(&mut state, ConnState::Closing) => break None,
            _ = shutdown.changed() => break None,
        };
        if let Ok(Some(Frame::StatusRequest)) = &frame {
            // A status costs the ordering task a walk over every group: each
            // connection gets at most one per STATUS_INTERVAL (its further requests,
            // and everything after them, wait in its own socket).
            tokio::select! {
                _ = tokio::time::sleep_until(next_status) => {}
                _ = wait_for(&mut state, ConnState::Closing) => break None,
                _ = shutdown.changed() => break None,
            }
            next_status = tokio::time::Instant::now() + STATUS_INTERVAL;
        }
        match frame {
            Ok(Some(
                frame @ (Frame::Join { .. }
                | Frame::Leave { .. }
                | Frame::FlushOk { .. }
                | Frame::Send { .. }
                | Frame::Note { .. }
                | Frame::StatusRequest),
            )) => {
                let mut inflight = None;
                if let Frame::Send { group, payload, .. } = &frame {
                    // A member of the group reads slowly: hold this sender back (its
                    // other groups are not affected), then take the message's share of
                    // the bytes in flight.
                    let share = u32::try_from(payload.len().clamp(1, INFLIGHT)).unwrap_or(1);
                    let ready = async {
                        limits.pressure.clear(group).await;
                        Arc::clone(&limits.inflight).acquire_many_owned(share).await
                    };
                    let permit = tokio::select! {
                        p = ready => p.ok(),
                        _ = wait_for(&mut state, ConnState::Closing) => None,
                    };
                    let Some(permit) = permit else {
                        break None;
                    };
                    inflight = Some(permit);
                }
                let cmd = Cmd::Request {
                    conn,
                    member: member.clone(),
                    frame,
                    _inflight: inflight,
                };
                // Bounded: when the ordering task is busy, reading stops (backpressure
                // on the senders, never on the ordering task).
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
    drop(inbound);
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

/// A connection's inbound side: frames read with the receive budget and the frame
/// timeout applied.
struct Inbound {
    buf: BytesMut,
    /// The group names this client sends to, decoded once.
    names: NameCache,
    budget: Arc<Semaphore>,
    /// Permits held for the bytes buffered past [`FREE_RECEIVE`].
    held: Option<OwnedSemaphorePermit>,
    frame_timeout: Duration,
    total: usize,
}

impl Inbound {
    fn new(config: &DaemonConfig, limits: &Limits) -> Self {
        Self {
            buf: BytesMut::with_capacity(FREE_RECEIVE),
            names: NameCache::default(),
            budget: Arc::clone(&limits.receive),
            held: None,
            frame_timeout: config.frame_timeout,
            total: config.receive_budget,
        }
    }

    fn holding(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Gives back the permits the buffered bytes no longer need (a frame left the
    /// buffer).
    fn release(&mut self) {
        let need = self.buf.len().saturating_sub(FREE_RECEIVE);
        let have = self.holding();
        if need < have
            && let Some(held) = &mut self.held
        {
            drop(held.split(have - need));
        }
    }

    /// How many bytes the next read may take: what the free allowance and the permits
    /// held leave. When they leave nothing, the buffer holds an incomplete frame past
    /// the free allowance, and up to [`RECEIVE_STEP`] more of it are drawn from the
    /// receive budget first, waiting for them until `deadline`. The budget is thus
    /// drawn before bytes are read, never after: what all clients buffer stays within
    /// the budget plus their free allowances, however much their sockets hold.
    async fn room(&mut self, deadline: tokio::time::Instant) -> Result<usize, String> {
        let room = (FREE_RECEIVE + self.holding()).saturating_sub(self.buf.len());
        if room > 0 {
            return Ok(room);
        }
        let frame = self
            .buf
            .first_chunk::<4>()
            .map_or(MAX_FRAME_LEN, |head| u32::from_be_bytes(*head) as usize)
            + 4;
        let want = frame.saturating_sub(self.buf.len()).clamp(1, RECEIVE_STEP);
        let more = u32::try_from(want).map_err(|_| "frame too large".to_string())?;
        let acquire = Arc::clone(&self.budget).acquire_many_owned(more);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(p)) => match &mut self.held {
                Some(held) => held.merge(p),
                None => self.held = Some(p),
            },
            _ => {
                return Err(format!(
                    "receive budget exhausted: the daemon buffers at most {} bytes of incomplete frames for all clients",
                    self.total
                ));
            }
        }
        Ok(want)
    }

    /// The next frame: `Ok(None)` at a clean end of stream; `Err` with a reason for an
    /// I/O error, a malformed frame, a stream that ends inside a frame, a frame that
    /// does not complete in time, or an exhausted receive budget.
    async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Result<Option<Frame>, String> {
        let mut deadline = None;
        loop {
            match Frame::decode_cached(&mut self.buf, &mut self.names) {
                Ok(Some(frame)) => {
                    self.release();
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("malformed frame: {e}")),
            }
            if !self.buf.is_empty() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + self.frame_timeout);
            }
            // The clock is read for the budget only when there is a frame to wait for.
            let room = match deadline {
                Some(at) => self.room(at).await?,
                None => FREE_RECEIVE - self.buf.len(),
            };
            room_to_read(&mut self.buf);
            let mut limited = (&mut self.buf).limit(room);
            let read = rd.read_buf(&mut limited);
            let n = match deadline {
                Some(at) => tokio::time::timeout_at(at, read).await.map_err(|_| {
                    format!(
                        "a frame did not complete within {:?} ({} bytes of it arrived)",
                        self.frame_timeout,
                        self.buf.len()
                    )
                })?,
                None => read.await,
            };
            // A client that ends with events it never read resets its end (a Unix
            // socket closed with data left in it, a TCP reset): between frames that is
            // how a process that exits, or crashes, closes.
            if let Err(e) = &n
                && e.kind() == std::io::ErrorKind::ConnectionReset
                && self.buf.is_empty()
            {
                return Ok(None);
            }
            if !after_read(n, &self.buf)? {
                return Ok(None);
            }
        }
    }
}

/// The frames a connection's writer sends in one write: small frames are copied into
/// one buffer, a large payload (over [`COPY_LIMIT`]) is written from its own buffer
/// after the rest, and ends the batch. The queue credit of every frame is held until
/// the write is done.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    large: Option<Bytes>,
    permits: Vec<OwnedSemaphorePermit>,
}

/// How a batch's write ended.
enum Written {
    /// Written, failed, or timed out (no progress for the stall timeout).
    Done(Result<std::io::Result<()>, tokio::time::error::Elapsed>),
    /// The connection was killed during the write; `finished` if the write still
    /// completed within a short grace.
    Killed { finished: bool },
}

/// How many bytes a batch gathers before it is written.
const BATCH_BYTES: usize = 64 * 1024;
/// A payload larger than this is written from its own buffer, not copied (by the
/// writer's batches and by [`write_encoded`]).
const COPY_LIMIT: usize = 16 * 1024;

impl Batch {
    fn add(&mut self, frame: Encoded, permit: OwnedSemaphorePermit) {
        self.buf.extend_from_slice(&frame.head);
        if frame.payload.len() > COPY_LIMIT {
            self.large = Some(frame.payload);
        } else {
            self.buf.extend_from_slice(&frame.payload);
        }
        self.permits.push(permit);
    }

    fn has_room(&self) -> bool {
        self.large.is_none() && self.buf.len() < BATCH_BYTES
    }

    fn is_empty(&self) -> bool {
        self.permits.is_empty()
    }

    async fn write_to<W: AsyncWrite + Unpin>(&self, wr: &mut W) -> std::io::Result<()> {
        wr.write_all(&self.buf).await?;
        if let Some(large) = &self.large {
            wr.write_all(large).await?;
        }
        Ok(())
    }

    /// Empties the batch (its frames written or dropped), releasing their credit.
    fn clear(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > 4 * BATCH_BYTES {
            self.buf = Vec::new();
        }
        self.large = None;
        self.permits.clear();
    }
}

/// Writes a fatal `Error` frame saying `reason` and flushes it, giving up after
/// `within` (a client that reads nothing must not hold the writer).
async fn last_words<W: AsyncWrite + Unpin>(wr: &mut W, reason: String, within: Duration) {
    let frame = Frame::Error {
        fatal: true,
        reason,
    }
    .encode();
    let _ = tokio::time::timeout(within, async {
        write_encoded(wr, &frame).await?;
        wr.flush().await
    })
    .await;
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
        Frame::Note { .. } => "Note",
        Frame::StatusRequest => "StatusRequest",
        Frame::Status { .. } => "Status",
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
    if frame.payload.len() <= COPY_LIMIT {
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
    names: &mut NameCache,
) -> Result<Option<Frame>, String> {
    loop {
        match Frame::decode_cached(buf, names) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed frame: {e}")),
        }
        room_to_read(buf);
        if !after_read(rd.read_buf(buf).await, buf)? {
            return Ok(None);
        }
    }
}

/// Makes room in a frame buffer for the next read: 64 KiB more when less than 4 KiB is
/// left (frames already taken out of it keep their own part).
pub(crate) fn room_to_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
}

/// What one read into a frame buffer `buf` means: `Ok(true)` if bytes arrived,
/// `Ok(false)` at a clean end of stream (between frames), else why the stream broke.
pub(crate) fn after_read(read: std::io::Result<usize>, buf: &BytesMut) -> Result<bool, String> {
    match read {
        Ok(0) if buf.is_empty() => Ok(false),
        Ok(0) => Err(format!("stream ended inside a frame ({} bytes)", buf.len())),
        Ok(_) => Ok(true),
        Err(e) => Err(format!("read failed: {e}")),
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
        assert_eq!(default_address(), DaemonConfig::default().listen);
        assert!(
            matches!(default_address(), Address::Unix(p) if p.ends_with("conclave.sock")),
            "the default is a Unix socket"
        );
        for bad in ["", "unix:", "tcp:localhost", "udp:1.2.3.4:5", "/tmp/x"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_value_is_checked_against_its_range() {
        let ok = DaemonConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad = [
            DaemonConfig {
                flush_timeout: Duration::ZERO,
                ..ok.clone()
            },
            DaemonConfig {
                stall_timeout: Duration::from_secs(7200),
                ..ok.clone()
            },
            DaemonConfig {
                queue_limit: usize::MAX,
                ..ok.clone()
            },
            DaemonConfig {
                queue_limit: 1,
                ..ok.clone()
            },
            DaemonConfig {
                receive_budget: 1 << 62,
                ..ok.clone()
            },
            DaemonConfig {
                max_connections: 0,
                ..ok.clone()
            },
            DaemonConfig {
                socket_mode: 0o1777,
                ..ok.clone()
            },
            DaemonConfig {
                socket_mode: 0o066,
                ..ok.clone()
            },
        ];
        for config in bad {
            let e = config.validate().unwrap_err();
            assert!(e.to_string().contains("out of range"), "{e}");
        }
    }
}
