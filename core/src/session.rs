//! The secure-group session: a Spread-like API over a group-communication engine, with
//! each group secured by the key-agreement and cipher plugins its policy picks.
//!
//! One [`Session`] is one member's connection. The application calls [`Session::join`],
//! [`Session::multicast`] and friends, and [`Session::next_event`] in a loop, as with
//! Spread's `SP_receive`: that call also drives the groups' key agreements. Event
//! dispatch follows Table 1 of the Secure Spread paper:
//!
//! | engine event | goes to |
//! |---|---|
//! | view (join, leave, disconnect, partition, merge) | the group's key agreement (a new agreement) |
//! | flush request | acknowledged at once; the key agreement abandons a running agreement at the next view |
//! | key-agreement message | the group's key agreement |
//! | application message | the group's cipher (opened under the epoch it names) |
//!
//! While a group has no key for its current secure view, the application's sends are
//! held and go out sealed under the new key once every member has confirmed it; older
//! epochs' keys are retired when the new key is ready (every message sealed under them
//! by a member of the new secure view was delivered before its confirmation). A held
//! send that cannot go out is returned as [`SessionEvent::Undelivered`]; a message that
//! cannot be opened is reported as a [`SessionEvent::SecurityError`] (once per sender
//! and reason in a view), never dropped silently.
//!
//! # The secure view
//!
//! The key agreement does not run among the engine's view but among its *secure view*
//! (see [`crate::secure`]): the members that this member's policy admits (a trusted
//! key, allowed by the rule's `members`) and that announced the same modules in a
//! signed announcement. Members left out are reported once each as
//! [`SessionEvent::Excluded`] and what they send is refused without effect. A member
//! that does not take part within the group's `agreement_timeout` is left out by a
//! signed cut that every member applies at the same point of the agreed order. Every
//! control message (announcement, switch, cut, liveness) is signed and bound to the
//! group, view, stage and round: nothing an outsider sends changes a member's state.
//!
//! A member on other modules is not thrown out: it forms a secure view with the
//! members on its modules (alone, if none), and each side reports the other once as
//! `other-modules`.

use std::{
    borrow::Cow,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use conclave_gcs::{
    Address, Client, Connection, GcsError, GroupName, MemberName, SendOptions, Service,
};

/// At most this many waiting commands are carried out (and their writes batched)
/// before the session looks at the engine's events again.
const COMMAND_BATCH: usize = 64;
use conclave_plugin_sdk::{PluginError, ka_kit::MapTrustStore};
use serde::{Deserialize, Serialize};

use crate::{
    identity::Identity,
    plugins::{LoadError, Registry},
    secure::{
        Exclusion,
        layer::{EngineOp, SecureLayer},
    },
    settings::{GroupSettings, PolicySource},
};

pub(crate) fn crypto(context: impl Into<String>) -> impl FnOnce(PluginError) -> CoreError {
    let context = context.into();
    move |source| CoreError::Crypto { context, source }
}

/// Errors of the session API.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The engine refused or lost the connection.
    #[error(transparent)]
    Engine(#[from] GcsError),
    /// A plugin could not be found or instantiated.
    #[error(transparent)]
    Plugin(#[from] LoadError),
    /// A plugin call failed.
    #[error("{context}: {source}")]
    Crypto {
        /// What was being done.
        context: String,
        /// The plugin's error.
        source: PluginError,
    },
    /// This member is not in the group.
    #[error("not a member of group {0}")]
    NotJoined(String),
    /// The policy does not let this identity into the group.
    #[error("identity {identity} may not join group {group}: {why}")]
    NotAllowed {
        /// The group.
        group: String,
        /// This member.
        identity: String,
        /// Why.
        why: String,
    },
    /// This member is left out of the group's secure view: it cannot send there.
    #[error("this member is left out of group {group}'s secure view ({reason})")]
    Excluded {
        /// The group.
        group: String,
        /// Why (`silent`, `other-modules`, ...).
        reason: String,
    },
    /// The engine connection was made under another name than the identity's.
    #[error("the engine connection is member {connection}, the identity is {identity}")]
    IdentityMismatch {
        /// The connection's member name.
        connection: String,
        /// The identity's name.
        identity: String,
    },
}

/// A key that a group now shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEstablished {
    /// The group.
    pub group: String,
    /// The group's epoch (strictly increasing).
    pub epoch: u64,
    /// The key-agreement plugin.
    pub key_agreement: String,
    /// The cipher plugin and algorithm.
    pub cipher: String,
    /// The DH group.
    pub dh_group: String,
    /// This member's provider.
    pub provider: String,
    /// The provider this member's cipher computes on (the provider unless the policy
    /// names a `cipher_provider`).
    #[serde(default)]
    pub cipher_provider: String,
    /// The members that hold the key (the secure view), in join order.
    pub members: Vec<String>,
    /// The agreement's view, in hex: the engine's view id, then the stage and round of
    /// the secure view within it (equal at every member that holds the key).
    #[serde(default)]
    pub view_id: String,
    /// From the view (or refresh) to the confirmed key.
    #[serde(serialize_with = "millis", deserialize_with = "from_millis")]
    pub took: Duration,
    /// A short one-way fingerprint of the key (equal at every member).
    pub fingerprint: String,
    /// What this member's key agreement of the group has done so far (cumulative, from
    /// its first view or policy switch): benchmarks take differences.
    pub counts: AgreementCounts,
}

/// Cumulative counters of one member's key agreement in one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementCounts {
    /// Modular exponentiations or scalar multiplications.
    pub exponentiations: u64,
    /// Signatures made.
    pub signatures: u64,
    /// Signatures verified.
    pub verifications: u64,
    /// Protocol messages sent (unicasts and multicasts).
    pub messages: u64,
    /// Bytes of protocol messages sent.
    pub bytes: u64,
}

impl std::ops::AddAssign for AgreementCounts {
    fn add_assign(&mut self, other: AgreementCounts) {
        self.exponentiations += other.exponentiations;
        self.signatures += other.signatures;
        self.verifications += other.verifications;
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

impl AgreementCounts {
    /// The counts done since `earlier` (saturating: a switch of plugins restarts them).
    pub fn since(&self, earlier: &AgreementCounts) -> AgreementCounts {
        AgreementCounts {
            exponentiations: self.exponentiations.saturating_sub(earlier.exponentiations),
            signatures: self.signatures.saturating_sub(earlier.signatures),
            verifications: self.verifications.saturating_sub(earlier.verifications),
            messages: self.messages.saturating_sub(earlier.messages),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

fn from_millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ms = f64::deserialize(d)?;
    Duration::try_from_secs_f64(ms / 1e3).map_err(serde::de::Error::custom)
}

/// A problem the security layer detected: a message it refused, or a module mismatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityError {
    /// The error code (`authentication-failed`, `parameter-mismatch`, ...).
    pub code: String,
    /// The numeric code.
    pub code_number: u32,
    /// What happened.
    pub message: String,
}

impl From<&PluginError> for SecurityError {
    fn from(e: &PluginError) -> Self {
        Self {
            code: e.code.to_string(),
            code_number: e.code.0,
            message: e.message.to_string(),
        }
    }
}

/// What [`Session::next_event`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SessionEvent {
    /// A new view of a group.
    Membership {
        /// The group.
        group: String,
        /// The view's id (hex).
        view_id: String,
        /// Members in join order.
        members: Vec<String>,
        /// New members (relative to this member's previous view).
        joined: Vec<String>,
        /// Members gone.
        left: Vec<String>,
        /// Why (`join`, `leave`, `disconnect`, `partition`, `merge`).
        cause: String,
    },
    /// A new group key.
    KeyEstablished(KeyEstablished),
    /// An application message.
    Message {
        /// The group.
        group: GroupName,
        /// The sender.
        sender: MemberName,
        /// `fifo`, `causal`, `agreed` or `unicast`.
        service: Cow<'static, str>,
        /// The epoch it was sealed under (none in a plain group).
        epoch: Option<u64>,
        /// The plaintext.
        #[serde(skip)]
        data: Vec<u8>,
    },
    /// A refused message or a policy mismatch.
    SecurityError {
        /// The group.
        group: String,
        /// The member whose message was refused, if any.
        sender: Option<String>,
        /// What.
        error: SecurityError,
    },
    /// A new policy is in place; the listed groups get new settings at their next key
    /// agreement (or at once with [`Session::refresh`]).
    PolicyReloaded {
        /// Groups whose settings change.
        changed: Vec<String>,
    },
    /// This member adopted a policy that an administrator published into the group:
    /// with `changed`, the group moves to its modules at the next switch (which this
    /// member asked for), and the next `key-established` names them.
    PolicyAdopted {
        /// The group.
        group: String,
        /// The administrator who signed it.
        admin: String,
        /// Its version.
        version: u64,
        /// Whether it changes the group's modules or settings.
        changed: bool,
    },
    /// This member refused a policy published into the group; it keeps the one it has
    /// (and, if the others adopt it, is left out of their secure view).
    PolicyRefused {
        /// The group.
        group: String,
        /// Whom it claims as its signer.
        admin: String,
        /// Why.
        refusal: crate::secure::publish::PolicyRefusal,
    },
    /// This member's status of a group, as asked by [`Command::Status`].
    Status(crate::secure::status::GroupStatus),
    /// A command sent through a [`SessionHandle`] failed.
    CommandFailed {
        /// The command.
        command: String,
        /// Why.
        message: String,
    },
    /// A member of the view is not in the group's secure view: it gets no key and what
    /// it sends is refused. Reported once per member and reason in a view; `member` is
    /// this member itself when it is the one left out.
    Excluded {
        /// The group.
        group: String,
        /// Who.
        member: String,
        /// Why.
        reason: Exclusion,
        /// Details.
        detail: String,
    },
    /// Sends that this member accepted (see [`Session::multicast`]) and will never send:
    /// it left the group or was left out while they were held.
    Undelivered {
        /// The group.
        group: String,
        /// The send ids.
        sends: Vec<u64>,
        /// Why.
        reason: String,
    },
    /// This member is out of the group.
    Left {
        /// The group.
        group: String,
        /// Why.
        cause: String,
    },
    /// The engine refused this member's join of the group (an access rule of the
    /// daemon): it is not in the group; its other groups go on.
    Refused {
        /// The group.
        group: String,
        /// Why, as the engine says it.
        reason: String,
    },
}

/// A request to a session from another task (see [`Session::handle`]).
#[derive(Clone)]
pub enum Command {
    /// [`Session::join`].
    Join(String),
    /// [`Session::leave`].
    Leave(String),
    /// [`Session::multicast`].
    Multicast {
        /// The group.
        group: String,
        /// The service.
        service: Service,
        /// The data.
        data: Vec<u8>,
    },
    /// [`Session::unicast`].
    Unicast {
        /// The group.
        group: String,
        /// The receiver.
        to: String,
        /// The data.
        data: Vec<u8>,
    },
    /// [`Session::refresh`].
    Refresh(String),
    /// [`Session::reload_policy`].
    ReloadPolicy(Arc<dyn PolicySource>),
    /// Report this member's status of the group ([`SessionEvent::Status`]).
    Status(String),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Join(g) => write!(f, "join {g}"),
            Command::Leave(g) => write!(f, "leave {g}"),
            Command::Multicast { group, data, .. } => {
                write!(f, "multicast {} bytes to {group}", data.len())
            }
            Command::Unicast { group, to, data } => {
                write!(f, "unicast {} bytes to {to} in {group}", data.len())
            }
            Command::Refresh(g) => write!(f, "refresh {g}"),
            Command::ReloadPolicy(_) => write!(f, "reload the policy"),
            Command::Status(g) => write!(f, "status of {g}"),
        }
    }
}

/// A cloneable handle that other tasks use to drive a session while one task runs its
/// [`Session::next_event`] loop; commands run inside that loop, in order.
#[derive(Clone, Debug)]
pub struct SessionHandle(tokio::sync::mpsc::UnboundedSender<Command>);

impl SessionHandle {
    /// Queues `command`; false if the session is gone.
    pub fn send(&self, command: Command) -> bool {
        self.0.send(command).is_ok()
    }
}

/// One member's connection to the secure-group layer, over the engine connection `C`:
/// the daemon's [`Client`] by default, or any other [`Connection`] (the simulator's
/// members, Corosync). The thin async driver of a [`SecureLayer`].
pub struct Session<C: Connection = Client> {
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    handle: tokio::sync::mpsc::UnboundedSender<Command>,
    client: C,
    layer: SecureLayer,
    /// The layer's next deadline, armed only while the session waits (made on the
    /// first wait: a timer needs the runtime), and reset only when it changes.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether ready commands go before ready events on the next turn (they take turns,
    /// so that a flood of either does not hold the other back).
    commands_first: bool,
    /// Turns of the loop, for the deadline check of a session that never waits.
    turns: u32,
}

impl<C: Connection> std::fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

/// Connects to the daemon at `address` as `identity` (over TCP, authenticated and
/// encrypted with the identity key, the daemon proving `daemon`'s key): the engine
/// connection of a [`Session`], or of an administrator's
/// [`publish`](crate::secure::publish::publish).
pub async fn connect_engine(
    address: &Address,
    identity: &Identity,
    daemon: Option<&conclave_policy::PublicKeyFile>,
) -> Result<Client, CoreError> {
    let member = MemberName::new(identity.name()).map_err(GcsError::from)?;
    let credentials = match daemon {
        Some(daemon) => {
            let mut pinned = conclave_gcs::noise::TcpTrust::new();
            pinned
                .insert(&daemon.identity, daemon.key.bytes())
                .map_err(|e| GcsError::Authentication(e.to_string()))?;
            let me = identity
                .tcp_identity()
                .map_err(|e| GcsError::Authentication(e.to_string()))?;
            Some(conclave_gcs::TcpCredentials {
                identity: Arc::new(me),
                daemon: pinned,
            })
        }
        None => None,
    };
    Ok(Client::connect_with(address, member, credentials.as_ref()).await?)
}

impl Session<Client> {
    /// Connects to the daemon at `address` as `identity`, with the plugins of `registry`,
    /// the settings of `policy` and the keys of `trust`.
    pub async fn connect(
        address: &Address,
        identity: Identity,
        registry: Arc<Registry>,
        policy: Arc<dyn PolicySource>,
        trust: MapTrustStore,
    ) -> Result<Self, CoreError> {
        Self::connect_pinned(address, identity, None, registry, policy, trust).await
    }

    /// [`Session::connect`], with the daemon's public key pinned: needed for a TCP
    /// address, where the connection is authenticated both ways and encrypted (Noise,
    /// see [`conclave_gcs::noise`]) and the daemon must prove `daemon`'s key.
    pub async fn connect_pinned(
        address: &Address,
        identity: Identity,
        daemon: Option<&conclave_policy::PublicKeyFile>,
        registry: Arc<Registry>,
        policy: Arc<dyn PolicySource>,
        trust: MapTrustStore,
    ) -> Result<Self, CoreError> {
        let client = connect_engine(address, &identity, daemon).await?;
        Self::over(client, identity, registry, policy, trust)
    }

    /// Runs this session's event loop in a task of its own, until the session ends or
    /// `events` is closed: each event goes to `events` as `wrap(arrival, event)`, and
    /// commands come in through the returned handle.
    pub fn spawn<T: Send + 'static>(
        self,
        events: tokio::sync::mpsc::UnboundedSender<T>,
        wrap: impl Fn(Instant, SessionEvent) -> T + Send + 'static,
    ) -> (SessionHandle, tokio::task::JoinHandle<()>) {
        let handle = self.handle();
        (handle, tokio::spawn(self.forward(events, wrap)))
    }
}

impl<C: Connection> Session<C> {
    /// A session over an engine connection already made, as `identity` (which must be
    /// the name the connection was made with), with the plugins of `registry`, the
    /// settings of `policy` and the keys of `trust`.
    pub fn over(
        connection: C,
        identity: Identity,
        registry: Arc<Registry>,
        policy: Arc<dyn PolicySource>,
        trust: MapTrustStore,
    ) -> Result<Self, CoreError> {
        if connection.member().as_str() != identity.name() {
            return Err(CoreError::IdentityMismatch {
                connection: connection.member().as_str().to_owned(),
                identity: identity.name().to_owned(),
            });
        }
        let (handle, commands) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            commands,
            handle,
            client: connection,
            layer: SecureLayer::new(identity, registry, policy, trust, Instant::now()),
            timer: None,
            commands_first: false,
            turns: 0,
        })
    }

    /// A handle for other tasks: their commands run inside [`Session::next_event`].
    pub fn handle(&self) -> SessionHandle {
        SessionHandle(self.handle.clone())
    }

    async fn execute(&mut self, command: &Command) -> Result<(), CoreError> {
        match command {
            Command::Join(g) => self.join(g).await,
            Command::Leave(g) => self.leave(g).await,
            Command::Multicast {
                group,
                service,
                data,
            } => self.multicast(group, *service, data).await.map(drop),
            Command::Unicast { group, to, data } => self.unicast(group, to, data).await.map(drop),
            Command::Refresh(g) => self.refresh(g).await,
            Command::ReloadPolicy(p) => {
                self.reload_policy(p.clone());
                Ok(())
            }
            Command::Status(g) => self.layer.report_status(g, Instant::now()),
        }
    }

    /// Runs this session's event loop in a task of the current [`tokio::task::LocalSet`]
    /// (for engines whose futures are not `Send`, such as the simulator's members), as
    /// [`Session::spawn`] does in a task of its own.
    pub fn spawn_local<T: 'static>(
        self,
        events: tokio::sync::mpsc::UnboundedSender<T>,
        wrap: impl Fn(Instant, SessionEvent) -> T + 'static,
    ) -> (SessionHandle, tokio::task::JoinHandle<()>)
    where
        C: 'static,
    {
        let handle = self.handle();
        (handle, tokio::task::spawn_local(self.forward(events, wrap)))
    }

    /// The event loop of [`Session::spawn`] and [`Session::spawn_local`]: until the
    /// session ends or `events` is closed.
    async fn forward<T>(
        mut self,
        events: tokio::sync::mpsc::UnboundedSender<T>,
        wrap: impl Fn(Instant, SessionEvent) -> T,
    ) {
        while let Ok(e) = self.next_event().await {
            if events.send(wrap(Instant::now(), e)).is_err() {
                break;
            }
        }
    }

    /// This member's name.
    pub fn member(&self) -> &str {
        self.layer.member()
    }

    /// The settings a group runs with.
    pub fn settings(&self, group: &str) -> Option<&GroupSettings> {
        self.layer.settings(group)
    }

    /// Replaces the policy: each group picks its new settings at its next key agreement,
    /// or at once with [`Session::refresh`].
    pub fn reload_policy(&mut self, policy: Arc<dyn PolicySource>) {
        self.layer.reload_policy(policy);
    }

    /// Carries out the secure layer's engine operations, in order. An operation the
    /// engine refuses goes back to the layer; a lost connection ends the session. When
    /// `strict`, a refused join or leave is also this call's error (the application's
    /// own call), else the layer reports it as an event.
    async fn run_ops(&mut self, strict: bool) -> Result<(), CoreError> {
        let mut refused = None;
        while let Some(op) = self.layer.poll_op() {
            let result = match &op {
                EngineOp::Join(g) => self.client.join(g).await,
                EngineOp::Leave(g) => self.client.leave(g).await,
                EngineOp::FlushOk(g) => self.client.flush_ok(g).await,
                EngineOp::Send {
                    group,
                    delivery,
                    payload,
                    ..
                } => {
                    self.client
                        .send(
                            group,
                            delivery.clone(),
                            payload.clone(),
                            SendOptions::default(),
                        )
                        .await
                }
            };
            let Err(e) = result else {
                continue;
            };
            let fatal = matches!(e, GcsError::Disconnected { .. } | GcsError::Protocol(_));
            let own = strict && matches!(op, EngineOp::Join(_) | EngineOp::Leave(_));
            self.layer.op_failed(op, &e, !own);
            if fatal {
                return Err(e.into());
            }
            if own && refused.is_none() {
                refused = Some(e);
            }
        }
        refused.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Joins `group` with the settings the policy gives it. The first view, and for a
    /// secure group the first key, follow as events.
    pub async fn join(&mut self, group: &str) -> Result<(), CoreError> {
        self.layer.join(group, Instant::now())?;
        self.run_ops(true).await
    }

    /// Leaves `group`; [`SessionEvent::Left`] confirms it (with
    /// [`SessionEvent::Undelivered`] before it for sends still held).
    pub async fn leave(&mut self, group: &str) -> Result<(), CoreError> {
        self.layer.leave(group)?;
        self.run_ops(true).await
    }

    /// Multicasts `data` to `group` with `service` (sealed in a secure group; held while
    /// the group rekeys). Returns the send's id, increasing in this session: a send
    /// that is held and can then not go out is reported with it in
    /// [`SessionEvent::Undelivered`].
    pub async fn multicast(
        &mut self,
        group: &str,
        service: Service,
        data: &[u8],
    ) -> Result<u64, CoreError> {
        let id = self.layer.multicast(group, service, data)?;
        self.run_ops(true).await?;
        Ok(id)
    }

    /// Sends `data` to one member of `group` (FIFO; sealed in a secure group). Returns
    /// the send's id, as [`Session::multicast`] does.
    pub async fn unicast(&mut self, group: &str, to: &str, data: &[u8]) -> Result<u64, CoreError> {
        let id = self.layer.unicast(group, to, data)?;
        self.run_ops(true).await?;
        Ok(id)
    }

    /// Forces a new key for `group` now: with the new modules if a reloaded policy changed
    /// them (every member applies its own reloaded policy at the same point of the order
    /// and announces again), else a key refresh by this member (which the protocol may
    /// reserve to its controller: an `OUT_OF_STEP` error then).
    pub async fn refresh(&mut self, group: &str) -> Result<(), CoreError> {
        self.layer.refresh(group, Instant::now())?;
        self.run_ops(true).await
    }

    /// The next event. This call also runs the groups' key agreements and timers: call
    /// it in a loop.
    pub async fn next_event(&mut self) -> Result<SessionEvent, CoreError> {
        loop {
            self.run_ops(false).await?;
            if let Some(e) = self.layer.poll_event() {
                if let SessionEvent::KeyEstablished(k) = &e {
                    // The new key's status, signed, for the engine to show (the
                    // daemon's `Status`); best effort: the key stands either way.
                    if let (Some(note), Ok(group)) = (
                        self.layer.signed_note(&k.group, Instant::now()),
                        conclave_gcs::GroupName::new(&k.group),
                    ) && let Err(error) = self.client.note(&group, note.into()).await
                    {
                        tracing::debug!(%error, "status note not left with the engine");
                    }
                }
                return Ok(e);
            }
            // What is ready now is taken without a timer or a select, commands and
            // events in turns. Every 64 turns a deadline that has passed is met: a
            // session that never has to wait (a flood) still meets its timeouts.
            self.turns = self.turns.wrapping_add(1);
            if self.turns.is_multiple_of(64) {
                let now = Instant::now();
                if self.layer.poll_timeout().is_some_and(|at| at <= now) {
                    self.layer.handle_timeout(now)?;
                    continue;
                }
            }
            self.commands_first = !self.commands_first;
            if self.commands_first && self.execute_ready().await? {
                continue;
            }
            // Up to a batch of events, as many as a batch of commands: a sender that
            // floods keeps up with its own deliveries (and the key agreement's
            // messages among them) instead of running ahead of them.
            let mut took = 0;
            while took < COMMAND_BATCH
                && let Some(event) = self.client.ready_event().await?
            {
                self.layer.handle_event(event, Instant::now())?;
                // What the event asks of the engine goes out before the next event
                // changes the engine's state (a send belongs to the view it was made
                // in).
                self.run_ops(false).await?;
                took += 1;
            }
            if took > 0 {
                continue;
            }
            if !self.commands_first && self.execute_ready().await? {
                continue;
            }
            // Nothing waiting: wait for the engine, a command or the layer's deadline.
            let at = self
                .layer
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let timer = match (&mut self.timer, at) {
                (Some(timer), Some(at)) => {
                    if timer.deadline() != at {
                        timer.as_mut().reset(at);
                    }
                    Some(timer.as_mut())
                }
                (slot @ None, Some(at)) => {
                    Some(slot.insert(Box::pin(tokio::time::sleep_until(at))).as_mut())
                }
                (_, None) => None,
            };
            // Each branch is cancel-safe (a channel receive, a timer): whichever wins is
            // then processed to the end.
            tokio::select! {
                biased;
                e = self.client.next_event() => {
                    let event = e?;
                    self.layer.handle_event(event, Instant::now())?;
                }
                Some(command) = self.commands.recv() => {
                    self.execute_batch(command).await?;
                }
                _ = async {
                    match timer {
                        Some(timer) => timer.await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.layer.handle_timeout(Instant::now())?;
                }
            }
        }
    }

    /// Carries out the commands already waiting, if any, as one batch; whether there
    /// were any.
    async fn execute_ready(&mut self) -> Result<bool, CoreError> {
        match conclave_gcs::channel::take_ready_unbounded(&mut self.commands).await {
            Some(command) => self.execute_batch(command).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Carries out `first` and the commands waiting behind it, as one batch of writes.
    async fn execute_batch(&mut self, first: Command) -> Result<(), CoreError> {
        self.client.begin_batch();
        let mut next = Some(first);
        let mut done = 0;
        while let Some(command) = next.take() {
            if let Err(e) = self.execute(&command).await {
                self.layer.command_failed(format!("{command:?}"), &e);
            }
            done += 1;
            if done < COMMAND_BATCH {
                next = conclave_gcs::channel::take_ready_unbounded(&mut self.commands).await;
            }
        }
        self.client.end_batch().await?;
        Ok(())
    }

    /// Counters of a group's key agreement (for benchmarks and tests).
    pub fn key_agreement_stats(
        &self,
        group: &str,
    ) -> Option<conclave_plugin_sdk::api::key_agreement::KeyAgreementStats> {
        self.layer.key_agreement_stats(group)
    }

    /// The secure layer this session drives.
    pub fn layer(&self) -> &SecureLayer {
        &self.layer
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.client.close().await;
    }

    /// The engine connection.
    pub fn connection(&self) -> &C {
        &self.client
    }
}
