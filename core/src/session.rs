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
//! While a group has no key for its current view, the application's sends are held and
//! go out sealed under the new key once every member has confirmed it; older epochs'
//! keys are retired when the new key is ready (every message of the old view was
//! delivered before the view changed). A message that cannot be opened is reported as a
//! [`SessionEvent::SecurityError`], never dropped silently.
//!
//! The modules of a group (key agreement, cipher, DH group, signature, plugin versions)
//! are bound into every key-agreement message, and the group's oldest member announces
//! them when members join: a member whose policy disagrees gets a security error and
//! leaves the group, so that the others can go on.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use conclave_gcs::{
    Address, Cause, Client, Connection, Delivery, Event, GcsError, GroupName, MemberName,
    SendOptions, Service, View,
};
use conclave_plugin_sdk::{
    ErrorCode, Options, PluginError, SecretBytes,
    api::{
        cipher::CipherConfig,
        key_agreement::{Action, KeyAgreementConfig, MembershipView, ViewCause},
    },
    host::{Cipher, KeyAgreement, Provider},
    ka_kit::MapTrustStore,
};
use serde::{Deserialize, Serialize};

use crate::{
    identity::Identity,
    plugins::{LoadError, Registry},
    settings::{GroupSettings, PolicySource, Security},
};

/// Payload tags of the messages the core sends through the engine.
mod tag {
    pub const KEY_AGREEMENT: u8 = 1;
    pub const SEALED: u8 = 2;
    pub const PLAIN: u8 = 3;
    pub const MODULES: u8 = 4;
    pub const SWITCH: u8 = 5;
}

const AAD_DOMAIN: &[u8] = b"conclave/app/v1\0";

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
    /// The group refused this member's modules; it left the group.
    #[error("group {0} uses other modules than this member's policy allows")]
    Refused(String),
    /// The engine connection was made under another name than the identity's.
    #[error("the engine connection is member {connection}, the identity is {identity}")]
    IdentityMismatch {
        /// The connection's member name.
        connection: String,
        /// The identity's name.
        identity: String,
    },
}

fn crypto(context: impl Into<String>) -> impl FnOnce(PluginError) -> CoreError {
    let context = context.into();
    move |source| CoreError::Crypto { context, source }
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
    /// The members that hold the key, in join order.
    pub members: Vec<String>,
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
        group: String,
        /// The sender.
        sender: String,
        /// `fifo`, `causal`, `agreed` or `unicast`.
        service: String,
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
    /// A command sent through a [`SessionHandle`] failed.
    CommandFailed {
        /// The command.
        command: String,
        /// Why.
        message: String,
    },
    /// This member is out of the group.
    Left {
        /// The group.
        group: String,
        /// Why.
        cause: String,
    },
}

fn cause_name(c: Cause) -> &'static str {
    match c {
        Cause::Join => "join",
        Cause::Leave => "leave",
        Cause::Disconnect => "disconnect",
        Cause::Partition => "partition",
        Cause::Merge => "merge",
    }
}

fn view_cause(c: Cause) -> ViewCause {
    match c {
        Cause::Join => ViewCause::Join,
        Cause::Leave => ViewCause::Leave,
        Cause::Disconnect => ViewCause::Disconnect,
        Cause::Partition => ViewCause::Partition,
        Cause::Merge => ViewCause::Merge,
    }
}

fn service_name(s: Service) -> &'static str {
    match s {
        Service::Fifo => "fifo",
        Service::Causal => "causal",
        Service::Agreed => "agreed",
    }
}

/// The modules of a secure group, instantiated.
struct Secured {
    provider: Provider,
    ka: KeyAgreement,
    cipher: Cipher,
    /// Added to the key agreement's epochs: the group's epoch when these modules started.
    epoch_base: u64,
    /// The group epoch of the current key, if the current view has one.
    current: Option<u64>,
    installed: Vec<u64>,
    started: Instant,
    last_key: Instant,
    /// Synthetic views of module switches within the current engine view.
    switches: u32,
}

struct GroupState {
    name: GroupName,
    settings: GroupSettings,
    descriptor: Vec<u8>,
    /// Settings from a reloaded policy, for the next agreement.
    pending: Option<GroupSettings>,
    secured: Option<Secured>,
    view: Option<View>,
    flushing: bool,
    held: VecDeque<(Delivery, Vec<u8>)>,
    refused: bool,
    last_epoch: u64,
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
/// members, Corosync).
pub struct Session<C: Connection = Client> {
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    handle: tokio::sync::mpsc::UnboundedSender<Command>,
    client: C,
    identity: Identity,
    registry: Arc<Registry>,
    policy: Arc<dyn PolicySource>,
    trust: MapTrustStore,
    groups: BTreeMap<String, GroupState>,
    events: VecDeque<SessionEvent>,
}

impl<C: Connection> std::fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("member", &self.identity.name())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
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
        let member = MemberName::new(identity.name()).map_err(GcsError::from)?;
        let client = Client::connect(address, member).await?;
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
            identity,
            registry,
            policy,
            trust,
            groups: BTreeMap::new(),
            events: VecDeque::new(),
        })
    }

    /// A handle for other tasks: their commands run inside [`Session::next_event`].
    pub fn handle(&self) -> SessionHandle {
        SessionHandle(self.handle.clone())
    }

    async fn execute(&mut self, command: Command) -> Result<(), CoreError> {
        match command {
            Command::Join(g) => self.join(&g).await,
            Command::Leave(g) => self.leave(&g).await,
            Command::Multicast {
                group,
                service,
                data,
            } => self.multicast(&group, service, &data).await,
            Command::Unicast { group, to, data } => self.unicast(&group, &to, &data).await,
            Command::Refresh(g) => self.refresh(&g).await,
            Command::ReloadPolicy(p) => {
                self.reload_policy(p);
                Ok(())
            }
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
        self.identity.name()
    }

    /// The settings a group runs with.
    pub fn settings(&self, group: &str) -> Option<&GroupSettings> {
        self.groups.get(group).map(|g| &g.settings)
    }

    /// Replaces the policy: each group picks its new settings at its next key agreement,
    /// or at once with [`Session::refresh`].
    pub fn reload_policy(&mut self, policy: Arc<dyn PolicySource>) {
        self.policy = policy;
        let mut changed = Vec::new();
        for (name, g) in &mut self.groups {
            match self.policy.settings(name) {
                Ok(new) => {
                    g.pending = (new != g.settings).then_some(new);
                    if g.pending.is_some() {
                        changed.push(name.clone());
                    }
                }
                Err(why) => {
                    tracing::error!(group = %name, %why, "the reloaded policy gives no settings; keeping the current ones");
                }
            }
        }
        self.events
            .push_back(SessionEvent::PolicyReloaded { changed });
    }

    fn instantiate(
        &self,
        group: &str,
        settings: &GroupSettings,
        descriptor: &[u8],
    ) -> Result<Secured, CoreError> {
        let provider = self
            .registry
            .new_provider(&settings.provider, Options::default())?;
        let cipher_plugin = self
            .registry
            .get_kind(&settings.cipher, conclave_plugin_sdk::PluginKind::Cipher)?;
        let cipher = cipher_plugin.new_cipher(&CipherConfig {
            algorithm: settings.cipher_algorithm.as_str().into(),
            group: group.into(),
            local_member: self.identity.name().into(),
            provider: provider.to_abi(),
            options: Options::default(),
        })?;
        let ka_plugin = self.registry.get_kind(
            &settings.key_agreement,
            conclave_plugin_sdk::PluginKind::KeyAgreement,
        )?;
        let ka = ka_plugin.new_key_agreement(&KeyAgreementConfig {
            algorithm: settings.key_agreement.as_str().into(),
            group: group.into(),
            local_member: self.identity.name().into(),
            dh_group: settings.dh_group.as_str().into(),
            provider: provider.to_abi(),
            key_len: cipher.key_len(),
            signature_algorithm: settings.signature.as_str().into(),
            identity_key: self.identity.secret().clone(),
            trust: self.trust.clone().into_abi(),
            context: descriptor.to_vec().into(),
            options: Options::default(),
        })?;
        Ok(Secured {
            provider,
            ka,
            cipher,
            epoch_base: 0,
            current: None,
            installed: Vec::new(),
            started: Instant::now(),
            last_key: Instant::now(),
            switches: 0,
        })
    }

    /// Joins `group` with the settings the policy gives it. The first view, and for a
    /// secure group the first key, follow as events.
    pub async fn join(&mut self, group: &str) -> Result<(), CoreError> {
        let name = GroupName::new(group).map_err(GcsError::from)?;
        let me = self.identity.name().to_string();
        let settings = self
            .policy
            .settings(group)
            .map_err(|why| CoreError::NotAllowed {
                group: group.into(),
                identity: me.clone(),
                why,
            })?;
        if let Some(allowed) = &settings.members
            && !allowed.contains(&me)
        {
            return Err(CoreError::NotAllowed {
                group: group.into(),
                identity: me,
                why: format!("the policy admits only {}", allowed.join(", ")),
            });
        }
        let descriptor = settings.descriptor(&self.registry);
        let secured = match settings.security {
            Security::None => None,
            Security::Required => {
                if self.trust.lookup_key(&me).is_none() {
                    return Err(CoreError::NotAllowed {
                        group: group.into(),
                        identity: me,
                        why: "its public key is not in the trust store".into(),
                    });
                }
                Some(self.instantiate(group, &settings, &descriptor)?)
            }
        };
        self.client.join(&name).await?;
        self.groups.insert(
            group.to_string(),
            GroupState {
                name,
                settings,
                descriptor,
                pending: None,
                secured,
                view: None,
                flushing: false,
                held: VecDeque::new(),
                refused: false,
                last_epoch: 0,
            },
        );
        Ok(())
    }

    /// Leaves `group`; [`SessionEvent::Left`] confirms it.
    pub async fn leave(&mut self, group: &str) -> Result<(), CoreError> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        let name = g.name.clone();
        self.client.leave(&name).await?;
        Ok(())
    }

    /// Multicasts `data` to `group` with `service` (sealed in a secure group; held while
    /// the group rekeys).
    pub async fn multicast(
        &mut self,
        group: &str,
        service: Service,
        data: &[u8],
    ) -> Result<(), CoreError> {
        self.send(group, Delivery::Multicast(service), data).await
    }

    /// Sends `data` to one member of `group` (FIFO; sealed in a secure group).
    pub async fn unicast(&mut self, group: &str, to: &str, data: &[u8]) -> Result<(), CoreError> {
        let to = MemberName::new(to).map_err(GcsError::from)?;
        self.send(group, Delivery::Unicast(to), data).await
    }

    async fn send(
        &mut self,
        group: &str,
        delivery: Delivery,
        data: &[u8],
    ) -> Result<(), CoreError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        if g.refused {
            return Err(CoreError::Refused(group.into()));
        }
        g.held.push_back((delivery, data.to_vec()));
        self.release(group).await
    }

    /// Sends what is held, if the group may send now.
    async fn release(&mut self, group: &str) -> Result<(), CoreError> {
        loop {
            let Some(g) = self.groups.get_mut(group) else {
                return Ok(());
            };
            let ready = g.view.is_some()
                && !g.flushing
                && g.secured.as_ref().is_none_or(|s| s.current.is_some());
            if !ready {
                return Ok(());
            }
            let Some((delivery, data)) = g.held.pop_front() else {
                return Ok(());
            };
            let payload = match &mut g.secured {
                None => [&[tag::PLAIN][..], &data].concat(),
                Some(s) => {
                    let epoch = s.current.unwrap_or_default();
                    let aad = [AAD_DOMAIN, group.as_bytes()].concat();
                    let sealed = s
                        .cipher
                        .seal(epoch, &aad, &data)
                        .map_err(crypto(format!("sealing for group {group}")))?;
                    [&[tag::SEALED][..], &sealed].concat()
                }
            };
            let name = g.name.clone();
            match self
                .client
                .send(
                    &name,
                    delivery.clone(),
                    payload.into(),
                    SendOptions::default(),
                )
                .await
            {
                Ok(()) => {}
                Err(GcsError::Flushing { .. }) => {
                    // Acknowledged a flush meanwhile: keep it for the next view.
                    if let Some(g) = self.groups.get_mut(group) {
                        g.held.push_front((delivery, data));
                        g.flushing = true;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Forces a new key for `group` now: with the new modules if a reloaded policy changed
    /// them (every member must have reloaded), else a key refresh by this member (which
    /// the protocol may reserve to its controller: an `OUT_OF_STEP` error then).
    pub async fn refresh(&mut self, group: &str) -> Result<(), CoreError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        if let Some(pending) = &g.pending {
            let descriptor = pending.descriptor(&self.registry);
            let name = g.name.clone();
            let payload = [&[tag::SWITCH][..], &descriptor].concat();
            self.client
                .multicast(&name, Service::Agreed, payload.into())
                .await?;
            return Ok(());
        }
        let s = g.secured.as_mut().ok_or_else(|| CoreError::NotAllowed {
            group: group.into(),
            identity: String::new(),
            why: "a plain group has no key to refresh".into(),
        })?;
        s.started = Instant::now();
        let actions =
            s.ka.refresh()
                .map_err(crypto(format!("refreshing group {group}")))?;
        self.perform(group, actions).await
    }

    /// The next event. This call also runs the groups' key agreements: call it in a loop.
    pub async fn next_event(&mut self) -> Result<SessionEvent, CoreError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            let deadline = self
                .next_rekey()
                .map(|(g, at)| (g, tokio::time::Instant::from_std(at)));
            let (group, at) = match deadline {
                Some((g, at)) => (Some(g), at),
                None => (
                    None,
                    tokio::time::Instant::now() + Duration::from_secs(3600),
                ),
            };
            // Each branch is cancel-safe (a channel receive, a timer): whichever wins is
            // then processed to the end.
            let event = tokio::select! {
                e = self.client.next_event() => e?,
                Some(command) = self.commands.recv() => {
                    let what = format!("{command:?}");
                    if let Err(e) = self.execute(command).await {
                        self.events.push_back(SessionEvent::CommandFailed {
                            command: what,
                            message: e.to_string(),
                        });
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(at) => {
                    if let Some(group) = group {
                        self.timed_refresh(&group).await?;
                    }
                    continue;
                }
            };
            self.dispatch(event).await?;
        }
    }

    fn next_rekey(&self) -> Option<(String, Instant)> {
        self.groups
            .iter()
            .filter_map(|(name, g)| {
                let interval = g.settings.rekey_interval?;
                let s = g.secured.as_ref()?;
                s.current?;
                Some((name.clone(), s.last_key + interval))
            })
            .min_by_key(|(_, at)| *at)
    }

    async fn timed_refresh(&mut self, group: &str) -> Result<(), CoreError> {
        // A reloaded policy takes effect at this periodic agreement too: every member's
        // timer asks for the switch; the first request in the total order wins and the
        // others find the modules already in place.
        if self.groups.get(group).is_some_and(|g| g.pending.is_some()) {
            if let Some(s) = self.groups.get_mut(group).and_then(|g| g.secured.as_mut()) {
                s.last_key = Instant::now();
            }
            return self.refresh(group).await;
        }
        let Some(s) = self.groups.get_mut(group).and_then(|g| g.secured.as_mut()) else {
            return Ok(());
        };
        // Only the protocol's controller may start a refresh; the others wait for it.
        s.last_key = Instant::now();
        s.started = Instant::now();
        match s.ka.refresh() {
            Ok(actions) => self.perform(group, actions).await,
            Err(e) if e.code == ErrorCode::OUT_OF_STEP => Ok(()),
            Err(e) => Err(crypto(format!("refreshing group {group}"))(e)),
        }
    }

    async fn dispatch(&mut self, event: Event) -> Result<(), CoreError> {
        match event {
            Event::FlushRequest { group } => {
                if let Some(g) = self.groups.get_mut(group.as_str()) {
                    g.flushing = true;
                }
                self.client.flush_ok(&group).await?;
                Ok(())
            }
            Event::View(view) => self.on_view(view).await,
            Event::Message {
                group,
                sender,
                service,
                unicast,
                payload,
                ..
            } => {
                let service = if unicast {
                    "unicast"
                } else {
                    service_name(service)
                };
                self.on_message(group.as_str(), sender.as_str(), service, &payload)
                    .await
            }
            Event::Left { group, cause } => {
                self.groups.remove(group.as_str());
                self.events.push_back(SessionEvent::Left {
                    group: group.as_str().into(),
                    cause: cause_name(cause).into(),
                });
                Ok(())
            }
        }
    }

    async fn on_view(&mut self, view: View) -> Result<(), CoreError> {
        let group = view.group.as_str().to_string();
        let me = self.identity.name().to_string();
        let Some(g) = self.groups.get_mut(&group) else {
            return Ok(());
        };
        g.flushing = false;
        g.view = Some(view.clone());
        let names = |v: &[MemberName]| v.iter().map(|m| m.as_str().to_string()).collect::<Vec<_>>();
        self.events.push_back(SessionEvent::Membership {
            group: group.clone(),
            view_id: hex::encode(view.id.to_bytes()),
            members: names(&view.members),
            joined: names(&view.joined),
            left: names(&view.left),
            cause: cause_name(view.cause).into(),
        });
        // A reloaded policy takes effect at this agreement.
        if let Some(new) = g.pending.take() {
            let descriptor = new.descriptor(&self.registry);
            let mut secured = match new.security {
                Security::None => None,
                Security::Required => Some(self.instantiate(&group, &new, &descriptor)?),
            };
            let g = self
                .groups
                .get_mut(&group)
                .ok_or_else(|| CoreError::NotJoined(group.clone()))?;
            if let Some(s) = &mut secured {
                s.epoch_base = g.last_epoch;
            }
            g.settings = new;
            g.descriptor = descriptor;
            g.secured = secured;
        }
        // Members the policy does not admit: no key for this view (sends stay held).
        let intruders: Vec<String> = self
            .groups
            .get(&group)
            .filter(|g| g.secured.is_some())
            .and_then(|g| g.settings.members.as_ref())
            .map(|allowed| {
                view.members
                    .iter()
                    .map(|m| m.as_str().to_string())
                    .filter(|m| !allowed.contains(m))
                    .collect()
            })
            .unwrap_or_default();
        if !intruders.is_empty() {
            if let Some(s) = self.groups.get_mut(&group).and_then(|g| g.secured.as_mut()) {
                s.current = None;
            }
            let e = PluginError::new(
                ErrorCode::NOT_A_MEMBER,
                format!(
                    "group {group}: {} may not join under this member's policy; no key until the view changes",
                    intruders.join(", ")
                ),
            );
            self.security_error(&group, None, &e);
            return Ok(());
        }
        let g = self
            .groups
            .get_mut(&group)
            .ok_or_else(|| CoreError::NotJoined(group.clone()))?;
        let Some(s) = g.secured.as_mut() else {
            return self.release(&group).await;
        };
        s.current = None;
        s.started = Instant::now();
        s.switches = 0;
        let membership = MembershipView {
            group: group.as_str().into(),
            view_id: view.id.to_bytes().to_vec().into(),
            members: view.members.iter().map(|m| m.as_str().into()).collect(),
            joined: view.joined.iter().map(|m| m.as_str().into()).collect(),
            left: view.left.iter().map(|m| m.as_str().into()).collect(),
            cause: view_cause(view.cause),
        };
        let actions = s.ka.on_view(&membership);
        // The oldest member announces the group's modules to the members that joined.
        let oldest = view
            .members
            .first()
            .map(|m| m.as_str() == me)
            .unwrap_or(false);
        if oldest && !view.joined.is_empty() && view.members.len() > 1 {
            let payload = [&[tag::MODULES][..], &g.descriptor].concat();
            let name = g.name.clone();
            self.client
                .multicast(&name, Service::Agreed, payload.into())
                .await?;
        }
        match actions {
            Ok(actions) => self.perform(&group, actions).await,
            Err(e) => {
                self.security_error(&group, None, &e);
                Ok(())
            }
        }
    }

    fn security_error(&mut self, group: &str, sender: Option<&str>, e: &PluginError) {
        tracing::warn!(group, sender, error = %e, "security error");
        self.events.push_back(SessionEvent::SecurityError {
            group: group.into(),
            sender: sender.map(str::to_string),
            error: e.into(),
        });
    }

    async fn perform(&mut self, group: &str, actions: Vec<Action>) -> Result<(), CoreError> {
        for action in actions {
            let Some(g) = self.groups.get_mut(group) else {
                return Ok(());
            };
            let name = g.name.clone();
            let sent = match action {
                Action::Unicast { to, payload } => {
                    let to = MemberName::new(to.as_str()).map_err(GcsError::from)?;
                    let payload = [&[tag::KEY_AGREEMENT][..], payload.as_slice()].concat();
                    self.client
                        .send(
                            &name,
                            Delivery::Unicast(to),
                            payload.into(),
                            SendOptions::default(),
                        )
                        .await
                }
                Action::Multicast { payload } => {
                    let payload = [&[tag::KEY_AGREEMENT][..], payload.as_slice()].concat();
                    self.client
                        .multicast(&name, Service::Agreed, payload.into())
                        .await
                }
                Action::KeyReady(ready) => {
                    self.key_ready(group, ready)?;
                    Ok(())
                }
                Action::Failure(e) => {
                    self.security_error(group, None, &e);
                    Ok(())
                }
            };
            match sent {
                Ok(()) => {}
                // After the flush acknowledgement the agreement is moot: the next view
                // starts another.
                Err(GcsError::Flushing { .. })
                | Err(GcsError::NotMember { .. })
                | Err(GcsError::Leaving { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.release(group).await
    }

    fn key_ready(
        &mut self,
        group: &str,
        ready: conclave_plugin_sdk::api::key_agreement::KeyReady,
    ) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let Some(s) = g.secured.as_mut() else {
            return Ok(());
        };
        let epoch = s.epoch_base + ready.epoch;
        s.cipher
            .install_key(epoch, ready.key.expose())
            .map_err(crypto(format!("installing the key of group {group}")))?;
        // Every message of older epochs was delivered before this view: retire them.
        for old in std::mem::take(&mut s.installed) {
            s.cipher.retire_key(old);
        }
        s.installed.push(epoch);
        s.current = Some(epoch);
        g.last_epoch = epoch;
        let took = s.started.elapsed();
        s.last_key = Instant::now();
        let fingerprint = fingerprint(&s.provider, &ready.key)?;
        let stats = s.ka.stats();
        let counts = AgreementCounts {
            exponentiations: stats.crypto.exponentiations,
            signatures: stats.crypto.signatures,
            verifications: stats.crypto.verifications,
            messages: stats.unicasts + stats.multicasts,
            bytes: stats.bytes_sent,
        };
        let settings = &g.settings;
        self.events
            .push_back(SessionEvent::KeyEstablished(KeyEstablished {
                group: group.into(),
                epoch,
                key_agreement: settings.key_agreement.clone(),
                cipher: format!("{} ({})", settings.cipher, settings.cipher_algorithm),
                dh_group: settings.dh_group.clone(),
                provider: settings.provider.clone(),
                members: ready.members.iter().map(|m| m.to_string()).collect(),
                took,
                fingerprint,
                counts,
            }));
        Ok(())
    }

    async fn on_message(
        &mut self,
        group: &str,
        sender: &str,
        service: &str,
        payload: &[u8],
    ) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let Some((&kind, body)) = payload.split_first() else {
            let e = PluginError::new(ErrorCode::BAD_MESSAGE, "empty message");
            self.security_error(group, Some(sender), &e);
            return Ok(());
        };
        match kind {
            tag::PLAIN if g.secured.is_none() => {
                self.events.push_back(SessionEvent::Message {
                    group: group.into(),
                    sender: sender.into(),
                    service: service.into(),
                    epoch: None,
                    data: body.to_vec(),
                });
                Ok(())
            }
            tag::SEALED if g.secured.is_some() => {
                let s = g
                    .secured
                    .as_mut()
                    .ok_or_else(|| CoreError::NotJoined(group.into()))?;
                let aad = [AAD_DOMAIN, group.as_bytes()].concat();
                match s.cipher.open(sender, &aad, body) {
                    Ok(opened) => self.events.push_back(SessionEvent::Message {
                        group: group.into(),
                        sender: sender.into(),
                        service: service.into(),
                        epoch: Some(opened.epoch),
                        data: opened.plaintext.to_vec(),
                    }),
                    Err(e) => self.security_error(group, Some(sender), &e),
                }
                Ok(())
            }
            tag::KEY_AGREEMENT if g.secured.is_some() => {
                let s = g
                    .secured
                    .as_mut()
                    .ok_or_else(|| CoreError::NotJoined(group.into()))?;
                match s.ka.on_message(sender, body) {
                    Ok(actions) => self.perform(group, actions).await,
                    Err(e) => {
                        self.security_error(group, Some(sender), &e);
                        Ok(())
                    }
                }
            }
            tag::MODULES => {
                let oldest = g
                    .view
                    .as_ref()
                    .and_then(|v| v.members.first())
                    .map(|m| m.as_str() == sender);
                if oldest == Some(true) && body != g.descriptor.as_slice() && !g.refused {
                    self.refuse(group, body).await?;
                }
                Ok(())
            }
            tag::SWITCH => self.on_switch(group, sender, body).await,
            _ => {
                let e = PluginError::new(
                    ErrorCode::BAD_MESSAGE,
                    format!(
                        "unexpected message kind {kind} in a {} group",
                        if g.secured.is_some() {
                            "secure"
                        } else {
                            "plain"
                        }
                    ),
                );
                self.security_error(group, Some(sender), &e);
                Ok(())
            }
        }
    }

    /// The group's modules differ from this member's policy: report, send nothing more,
    /// and leave so that the others can agree on a key.
    async fn refuse(&mut self, group: &str, theirs: &[u8]) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        g.refused = true;
        g.held.clear();
        let e = PluginError::new(
            ErrorCode::PARAMETER_MISMATCH,
            format!(
                "group {group} uses modules this member's policy does not allow: the group has [{}], the policy says [{}]; leaving the group",
                describe(theirs),
                describe(&g.descriptor)
            ),
        );
        let name = g.name.clone();
        self.security_error(group, None, &e);
        match self.client.leave(&name).await {
            Ok(()) | Err(GcsError::Leaving { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A member asked every member to switch to new modules now.
    async fn on_switch(
        &mut self,
        group: &str,
        sender: &str,
        descriptor: &[u8],
    ) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let Some(view) = g.view.clone() else {
            return Ok(());
        };
        if g.pending.is_none() && descriptor == g.descriptor.as_slice() {
            // Another member's request for the switch this member already made.
            return Ok(());
        }
        let new = g.pending.clone().unwrap_or_else(|| g.settings.clone());
        let ours = new.descriptor(&self.registry);
        if ours != descriptor {
            tracing::warn!(
                group,
                sender,
                "module switch to modules this member's policy does not give"
            );
            return self.refuse(group, descriptor).await;
        }
        let switches = g.secured.as_ref().map(|s| s.switches).unwrap_or(0) + 1;
        let mut secured = match new.security {
            Security::None => None,
            Security::Required => Some(self.instantiate(group, &new, &ours)?),
        };
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        if let Some(s) = &mut secured {
            s.epoch_base = g.last_epoch;
            s.switches = switches;
        }
        // Keep the old cipher's keys? No: messages of the old modules were all delivered
        // before this switch in the total order, except the ones racing with it, which
        // the new cipher reports as unknown epochs.
        g.settings = new;
        g.descriptor = ours;
        g.pending = None;
        g.secured = secured;
        let Some(s) = g.secured.as_mut() else {
            return self.release(group).await;
        };
        // A synthetic view: the same members, a fresh id that every member derives alike.
        let mut id = view.id.to_bytes().to_vec();
        id.extend_from_slice(b"/switch/");
        id.extend_from_slice(&switches.to_be_bytes());
        let membership = MembershipView {
            group: group.into(),
            view_id: id.into(),
            members: view.members.iter().map(|m| m.as_str().into()).collect(),
            joined: view.members.iter().map(|m| m.as_str().into()).collect(),
            left: Default::default(),
            cause: ViewCause::Join,
        };
        s.started = Instant::now();
        match s.ka.on_view(&membership) {
            Ok(actions) => self.perform(group, actions).await,
            Err(e) => {
                self.security_error(group, Some(sender), &e);
                Ok(())
            }
        }
    }

    /// Counters of a group's key agreement (for benchmarks and tests).
    pub fn key_agreement_stats(
        &self,
        group: &str,
    ) -> Option<conclave_plugin_sdk::api::key_agreement::KeyAgreementStats> {
        self.groups
            .get(group)?
            .secured
            .as_ref()
            .map(|s| s.ka.stats())
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

fn describe(descriptor: &[u8]) -> String {
    String::from_utf8_lossy(descriptor)
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A one-way fingerprint of a key: 8 bytes of SHA-256 over a label and the key, in hex.
fn fingerprint(provider: &Provider, key: &SecretBytes) -> Result<String, CoreError> {
    let digest = provider
        .hash("sha256", &[b"conclave/key-fingerprint/v1\0", key.expose()])
        .map_err(crypto("fingerprinting a key"))?;
    Ok(hex::encode(&digest[..8.min(digest.len())]))
}
