//! The secure layer of one member, sans-IO: every group's views, secure view, key
//! agreement, cipher and held sends, with no engine connection, no clock and no task.
//!
//! [`SecureLayer`] takes inputs (the engine's events with
//! [`handle_event`](SecureLayer::handle_event), the passing of time with
//! [`handle_timeout`](SecureLayer::handle_timeout), the application's commands) and
//! queues outputs, which the driver takes after every input, in this order:
//!
//! 1. [`poll_op`](SecureLayer::poll_op): operations for the engine (join, leave, flush
//!    acknowledgement, sends), to carry out in order; an operation the engine refuses
//!    goes back through [`op_failed`](SecureLayer::op_failed);
//! 2. [`poll_event`](SecureLayer::poll_event): events for the application;
//! 3. [`poll_timeout`](SecureLayer::poll_timeout): when to call
//!    [`handle_timeout`](SecureLayer::handle_timeout) next.
//!
//! A peer's input never makes an input method fail: what a member refuses becomes a
//! [`SessionEvent::SecurityError`] or [`SessionEvent::Excluded`]. Errors are the
//! application's own (a group it did not join) or local (a plugin that cannot be made).
//! [`Session`](crate::Session) is the async driver over a real engine; tests drive the
//! layer over the simulator in virtual time.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use conclave_gcs::{
    Cause, Delivery, Event, GcsError, GroupName, MemberName, Service, View, ViewId,
};
use conclave_plugin_sdk::{
    ErrorCode, PluginError, RVec, SecretBytes,
    api::{
        cipher::CipherConfig,
        key_agreement::{Action, KeyAgreementConfig, MembershipView, ViewCause},
    },
    host::{Cipher, KeyAgreement, Provider, Signer},
    ka_kit::MapTrustStore,
};

use crate::settings::abi_options;
use crate::{
    identity::Identity,
    plugins::Registry,
    secure::publish::{PolicyRefusal, SignedPolicy},
    secure::status::{GroupStatus, SecureStatus},
    secure::{
        AgreementId, Exclusion, Output, SecureView,
        control::{Body, Control},
    },
    session::{AgreementCounts, CoreError, KeyEstablished, SessionEvent, crypto},
    settings::{GroupSettings, PolicySource, Security},
};

/// Payload tags of the messages the core sends through the engine.
pub(crate) mod tag {
    /// A key-agreement message: the agreement's stage and round (u32 each, big endian),
    /// then the plugin's message.
    pub const KEY_AGREEMENT: u8 = 1;
    pub const SEALED: u8 = 2;
    pub const PLAIN: u8 = 3;
    /// A signed control message ([`crate::secure::control`]).
    pub const CONTROL: u8 = 4;
    /// A policy an administrator published ([`crate::secure::publish`]).
    pub const POLICY: u8 = 5;
}

/// How many key-agreement messages of a round not yet started a group keeps.
const MAX_EARLY: usize = 1024;
/// How many bytes of such messages a group keeps from all senders together.
const EARLY_BYTES: usize = 64 << 20;
/// How many bytes of such messages a group keeps from one sender: a member that sends
/// ahead of the others cannot take the room of the rest (an honest member's messages
/// of one round are far smaller: all of GDH's messages of a join at n = 100 on
/// ffdhe2048 come to 64 KiB, `conclave bench keys`).
const EARLY_SENDER_BYTES: usize = 4 << 20;

const AAD_DOMAIN: &[u8] = b"conclave/app/v1\0";

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

/// The members that hold one epoch's key: in join order (for the status) and as a set
/// (a received message's sender is checked against it, once per message: log n
/// comparisons instead of n).
struct EpochMembers {
    in_order: Vec<String>,
    set: std::collections::BTreeSet<String>,
}

impl EpochMembers {
    fn new(members: &[String]) -> Self {
        Self {
            in_order: members.to_vec(),
            set: members.iter().cloned().collect(),
        }
    }

    fn holds(&self, member: &str) -> bool {
        self.set.contains(member)
    }
}

/// The modules of a secure group, instantiated.
struct Secured {
    provider: Provider,
    ka: KeyAgreement,
    cipher: Cipher,
    /// This member's identity key, for control messages.
    signer: Signer,
    /// The group epoch of the current key, if the current secure view has one.
    current: Option<u64>,
    installed: Vec<u64>,
    /// The members that hold each installed epoch's key.
    epoch_members: BTreeMap<u64, EpochMembers>,
    started: Instant,
    last_key: Instant,
    /// The agreement the key agreement runs (or last ran).
    agreement: Option<AgreementId>,
    /// The epoch the next key counts up from, if the stage has no key yet.
    base: Option<u64>,
    /// The members of the key agreement's last view.
    ka_members: Vec<String>,
    /// The engine view of the key agreement's last view, if it had one.
    ka_engine_view: Option<ViewId>,
    /// Key-agreement messages of an agreement not started yet here (at most
    /// [`MAX_EARLY`] messages and [`EARLY_BYTES`] bytes, [`EARLY_SENDER_BYTES`] from one
    /// sender).
    early: Vec<(String, AgreementId, Vec<u8>)>,
    /// This member's sealed multicasts not yet delivered back to it, with their
    /// plaintext: its own message comes back as sent, so it is matched here instead of
    /// opened (one AEAD operation less per message). Emptied at each view (a message of
    /// the view is delivered within it, or never).
    own: std::collections::VecDeque<OwnSend>,
    /// Plaintext bytes held in `own` (at most [`OWN_SENDS_MAX_BYTES`]).
    own_bytes: usize,
    /// The authenticated data of the group's application messages:
    /// [`AAD_DOMAIN`] then the group's name.
    aad: Vec<u8>,
    /// The cipher of the modules a published policy replaced, with its keys, until the
    /// first key of these modules.
    retiring: Option<Retiring>,
}

/// The cipher and keys of the modules before a switch. Members sealed messages under
/// them until they took the switch themselves, and those messages may be delivered
/// after this member took it (a switch moves the secure view at its point of the
/// agreed stream, not the messages sent before it there); they are delivered before
/// the senders' part in the new key, so the first key of the new modules retires this.
struct Retiring {
    cipher: Cipher,
    epoch_members: BTreeMap<u64, EpochMembers>,
}

/// A sealed multicast of this member on its way back to it.
struct OwnSend {
    /// The payload as sent (tag and sealed body).
    payload: Bytes,
    /// What was sealed.
    data: Vec<u8>,
    /// The epoch it was sealed under.
    epoch: u64,
}

/// At most this many plaintext bytes are kept for matching own messages; beyond, own
/// messages are opened like the others.
const OWN_SENDS_MAX_BYTES: usize = 8 << 20;
/// How far into the own-sends queue a delivery is matched (multicast services deliver
/// one sender's messages in order, so the first is the one but for lost ones).
const OWN_SENDS_SEARCH: usize = 64;

/// A send accepted and not yet given to the engine.
struct Held {
    id: u64,
    delivery: Delivery,
    data: Vec<u8>,
}

struct GroupState {
    name: GroupName,
    settings: GroupSettings,
    descriptor: Vec<u8>,
    /// Settings from a reloaded or published policy, for the next agreement.
    pending: Option<GroupSettings>,
    /// Whether the settings come from a policy an administrator published into the
    /// group (adopted), rather than from this member's file.
    published: bool,
    /// The version of the policy in force for the group (published or the file's).
    policy_version: u64,
    secured: Option<Secured>,
    /// The secure view (secure groups only).
    sv: Option<SecureView>,
    view: Option<View>,
    /// The engine view before `view`.
    previous_view: Option<ViewId>,
    flushing: bool,
    held: VecDeque<Held>,
    last_epoch: u64,
    /// (sender, error code) pairs reported in this view: each is reported once.
    reported: BTreeSet<(String, u32)>,
    /// The last modules each member announced in this view (for reports).
    announced: BTreeMap<String, Vec<u8>>,
    /// The stage in which this member asked for a rekey (its sender key ran out).
    rekey_asked: Option<(Vec<u8>, u32)>,
    /// Messages refused without a report (their sender was already reported).
    refused: u64,
}

/// An operation for the engine, from [`SecureLayer::poll_op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineOp {
    /// Join the group.
    Join(GroupName),
    /// Leave the group.
    Leave(GroupName),
    /// Acknowledge the group's flush request.
    FlushOk(GroupName),
    /// Send a payload (agreed multicasts are self-delivered).
    Send {
        /// The group.
        group: GroupName,
        /// To whom, how.
        delivery: Delivery,
        /// The payload.
        payload: Bytes,
        /// The application's send id, for the application's own messages.
        send: Option<u64>,
    },
}

/// One member's secure layer (see the module documentation).
pub struct SecureLayer {
    identity: Identity,
    registry: Arc<Registry>,
    policy: Arc<dyn PolicySource>,
    trust: MapTrustStore,
    groups: BTreeMap<String, GroupState>,
    events: VecDeque<SessionEvent>,
    ops: VecDeque<EngineOp>,
    /// The id of the last send accepted.
    last_send: u64,
    /// The time of the input being handled.
    now: Instant,
}

impl std::fmt::Debug for SecureLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureLayer")
            .field("member", &self.identity.name())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl SecureLayer {
    /// The secure layer of `identity`, with the plugins of `registry`, the settings of
    /// `policy` and the keys of `trust`.
    pub fn new(
        identity: Identity,
        registry: Arc<Registry>,
        policy: Arc<dyn PolicySource>,
        trust: MapTrustStore,
        now: Instant,
    ) -> Self {
        Self {
            identity,
            registry,
            policy,
            trust,
            groups: BTreeMap::new(),
            events: VecDeque::new(),
            ops: VecDeque::new(),
            last_send: 0,
            now,
        }
    }

    /// How many messages of `group` were refused without a report (their sender's
    /// exclusion or the same error from it was already reported), since it was joined.
    pub fn refused(&self, group: &str) -> Option<u64> {
        self.groups.get(group).map(|g| g.refused)
    }

    /// The next operation for the engine.
    pub fn poll_op(&mut self) -> Option<EngineOp> {
        self.ops.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// A command from another task failed: reported as [`SessionEvent::CommandFailed`].
    pub fn command_failed(&mut self, command: String, error: &CoreError) {
        self.events.push_back(SessionEvent::CommandFailed {
            command,
            message: error.to_string(),
        });
    }

    /// The engine refused `op` with `error`: an application message is returned as
    /// [`SessionEvent::Undelivered`]; a refused join forgets the group; the secure
    /// layer's own messages are moot once the group flushes or is left (the next view
    /// starts over). A refused join or leave is reported as
    /// [`SessionEvent::CommandFailed`] if `report` (else the caller reports it).
    pub fn op_failed(&mut self, op: EngineOp, error: &GcsError, report: bool) {
        match op {
            EngineOp::Send {
                group,
                send: Some(id),
                ..
            } => self.undelivered(group.as_str(), vec![id], error.to_string()),
            EngineOp::Join(group) => {
                if self
                    .groups
                    .get(group.as_str())
                    .is_some_and(|g| g.view.is_none())
                {
                    self.groups.remove(group.as_str());
                }
                if report {
                    self.command_failed(format!("join {group}"), &CoreError::Engine(error.clone()));
                }
            }
            EngineOp::Leave(group) if report => {
                self.command_failed(format!("leave {group}"), &CoreError::Engine(error.clone()));
            }
            op => tracing::debug!(?op, %error, "engine operation refused"),
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
    /// or at once with [`Session::refresh`](crate::session::Session::refresh).
    pub fn reload_policy(&mut self, policy: Arc<dyn PolicySource>) {
        self.policy = policy;
        let mut changed = Vec::new();
        let version = self.policy.version();
        for (name, g) in &mut self.groups {
            if g.published && g.policy_version >= version {
                // A published policy stays until the file catches up with it.
                continue;
            }
            g.published = false;
            g.policy_version = version;
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
            .new_provider(&settings.provider, abi_options(&settings.provider_options))?;
        // The cipher computes on a provider of its own when the policy names one.
        let cipher_provider = match &settings.cipher_provider {
            Some(name) if *name != settings.provider => self
                .registry
                .new_provider(name, abi_options(&settings.cipher_provider_options))?,
            _ => provider.clone(),
        };
        let cipher_plugin = self
            .registry
            .get_kind(&settings.cipher, conclave_plugin_sdk::PluginKind::Cipher)?;
        let cipher = cipher_plugin.new_cipher(&CipherConfig {
            algorithm: settings.cipher_algorithm.as_str().into(),
            group: group.into(),
            local_member: self.identity.name().into(),
            provider: cipher_provider.to_abi(),
            options: abi_options(&settings.cipher_options),
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
            options: abi_options(&settings.key_agreement_options),
        })?;
        let signer = provider
            .signer(&settings.signature, self.identity.secret().expose())
            .map_err(crypto(format!(
                "making a {} signer for group {group}",
                settings.signature
            )))?;
        Ok(Secured {
            provider,
            ka,
            cipher,
            signer,
            current: None,
            installed: Vec::new(),
            epoch_members: BTreeMap::new(),
            started: self.now,
            last_key: self.now,
            agreement: None,
            base: None,
            ka_members: Vec::new(),
            ka_engine_view: None,
            early: Vec::new(),
            own: Default::default(),
            own_bytes: 0,
            aad: [AAD_DOMAIN, group.as_bytes()].concat(),
            retiring: None,
        })
    }

    /// Joins `group` with the settings the policy gives it. The first view, and for a
    /// secure group the first key, follow as events.
    pub fn join(&mut self, group: &str, now: Instant) -> Result<(), CoreError> {
        self.now = now;
        let name = GroupName::new(group).map_err(GcsError::from)?;
        let me = self.identity.name().to_string();
        if self.groups.contains_key(group) {
            // Joined, or still leaving: one membership at a time.
            return Err(GcsError::AlreadyMember {
                group: name,
                member: MemberName::new(&me).map_err(GcsError::from)?,
            }
            .into());
        }
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
        let (secured, sv) = match settings.security {
            Security::None => (None, None),
            Security::Required => {
                if self.trust.lookup_key(&me).is_none() {
                    return Err(CoreError::NotAllowed {
                        group: group.into(),
                        identity: me,
                        why: "its public key is not in the trust store".into(),
                    });
                }
                (
                    Some(self.instantiate(group, &settings, &descriptor)?),
                    Some(SecureView::new(&me, settings.agreement_timeout, self.now)),
                )
            }
        };
        self.ops.push_back(EngineOp::Join(name.clone()));
        self.groups.insert(
            group.to_string(),
            GroupState {
                name,
                settings,
                descriptor,
                pending: None,
                published: false,
                policy_version: self.policy.version(),
                secured,
                sv,
                view: None,
                previous_view: None,
                flushing: false,
                held: VecDeque::new(),
                last_epoch: 0,
                reported: BTreeSet::new(),
                announced: BTreeMap::new(),
                rekey_asked: None,
                refused: 0,
            },
        );
        Ok(())
    }

    /// Leaves `group`; [`SessionEvent::Left`] confirms it (with
    /// [`SessionEvent::Undelivered`] before it for sends still held).
    pub fn leave(&mut self, group: &str) -> Result<(), CoreError> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        self.ops.push_back(EngineOp::Leave(g.name.clone()));
        Ok(())
    }

    /// Multicasts `data` to `group` with `service` (sealed in a secure group; held while
    /// the group rekeys). Returns the send's id, increasing in this session: a send
    /// that is held and can then not go out is reported with it in
    /// [`SessionEvent::Undelivered`].
    pub fn multicast(
        &mut self,
        group: &str,
        service: Service,
        data: &[u8],
    ) -> Result<u64, CoreError> {
        self.send(group, Delivery::Multicast(service), data)
    }

    /// Sends `data` to one member of `group` (FIFO; sealed in a secure group). Returns
    /// the send's id, as [`Session::multicast`](crate::session::Session::multicast) does.
    pub fn unicast(&mut self, group: &str, to: &str, data: &[u8]) -> Result<u64, CoreError> {
        let to = MemberName::new(to).map_err(GcsError::from)?;
        self.send(group, Delivery::Unicast(to), data)
    }

    fn send(&mut self, group: &str, delivery: Delivery, data: &[u8]) -> Result<u64, CoreError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        if let Some(sv) = &g.sv
            && sv.is_out()
        {
            return Err(CoreError::Excluded {
                group: group.into(),
                reason: sv
                    .exclusion(self.identity.name())
                    .map_or("left out", Exclusion::name)
                    .into(),
            });
        }
        self.last_send += 1;
        let id = self.last_send;
        // One byte of room for a plain group's tag, put in front without a second
        // buffer; a secure group keeps this copy for its own delivery.
        let mut copy = Vec::with_capacity(1 + data.len());
        copy.extend_from_slice(data);
        g.held.push_back(Held {
            id,
            delivery,
            data: copy,
        });
        self.release(group)?;
        Ok(id)
    }

    fn undelivered(&mut self, group: &str, sends: Vec<u64>, reason: impl Into<String>) {
        if sends.is_empty() {
            return;
        }
        let reason = reason.into();
        tracing::warn!(group, count = sends.len(), %reason, "sends not delivered");
        self.events.push_back(SessionEvent::Undelivered {
            group: group.into(),
            sends,
            reason,
        });
    }

    /// Sends what is held, if the group may send now.
    fn release(&mut self, group: &str) -> Result<(), CoreError> {
        loop {
            let Some(g) = self.groups.get_mut(group) else {
                return Ok(());
            };
            let ready = g.view.is_some()
                && !g.flushing
                && match (&g.secured, &g.sv) {
                    (None, _) => true,
                    (Some(s), Some(sv)) => sv.keyed() && s.current.is_some(),
                    (Some(_), None) => false,
                };
            if !ready {
                return Ok(());
            }
            let Some(mut held) = g.held.pop_front() else {
                return Ok(());
            };
            let payload: Bytes = match &mut g.secured {
                None => {
                    let mut payload = std::mem::take(&mut held.data);
                    payload.insert(0, tag::PLAIN);
                    payload.into()
                }
                Some(s) => {
                    let epoch = s.current.unwrap_or_default();
                    // Sealed straight into the payload's buffer, after its tag byte.
                    let mut payload =
                        RVec::with_capacity(1 + s.cipher.overhead() + held.data.len());
                    payload.push(tag::SEALED);
                    match s.cipher.seal_into(epoch, &s.aad, &held.data, &mut payload) {
                        Ok(()) => {
                            let payload = Bytes::from(payload.into_vec());
                            if matches!(held.delivery, Delivery::Multicast(_))
                                && s.own_bytes + held.data.len() <= OWN_SENDS_MAX_BYTES
                            {
                                s.own_bytes += held.data.len();
                                s.own.push_back(OwnSend {
                                    payload: payload.clone(),
                                    data: std::mem::take(&mut held.data),
                                    epoch,
                                });
                            }
                            payload
                        }
                        Err(e) if e.code == ErrorCode::KEY_EXHAUSTED => {
                            // This member's sender key is used up: the send waits for
                            // the next key, which this member asks for now.
                            g.held.push_front(held);
                            return self.ask_rekey(group);
                        }
                        Err(e) => {
                            let id = held.id;
                            self.undelivered(group, vec![id], format!("sealing failed: {e}"));
                            continue;
                        }
                    }
                }
            };
            let op = EngineOp::Send {
                group: g.name.clone(),
                delivery: held.delivery,
                payload,
                send: Some(held.id),
            };
            self.ops.push_back(op);
        }
    }

    /// Asks every member for a new key (a switch of the current stage), once per stage.
    fn ask_rekey(&mut self, group: &str) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let Some(sv) = &g.sv else {
            return Ok(());
        };
        let at = (sv.view_id().to_vec(), sv.current().stage);
        if g.rekey_asked.as_ref() == Some(&at) {
            return Ok(());
        }
        g.rekey_asked = Some(at);
        tracing::info!(group, "sender key used up: asking for a new key");
        self.send_control(group, Body::Switch)
    }

    /// Forces a new key for `group` now: with the new modules if a reloaded policy changed
    /// them (every member applies its own reloaded policy at the same point of the order
    /// and announces again), else a key refresh by this member (which the protocol may
    /// reserve to its controller: an `OUT_OF_STEP` error then).
    pub fn refresh(&mut self, group: &str, now: Instant) -> Result<(), CoreError> {
        self.now = now;
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        if g.pending.is_some() || g.sv.as_ref().is_some_and(SecureView::is_out) {
            // A switch: everyone announces again (and a member left out comes back).
            if g.sv.is_some() {
                return self.send_control(group, Body::Switch);
            }
            // A plain group moving to a secure one: at the next view.
            return Ok(());
        }
        let s = g.secured.as_mut().ok_or_else(|| CoreError::NotAllowed {
            group: group.into(),
            identity: String::new(),
            why: "a plain group has no key to refresh".into(),
        })?;
        s.started = self.now;
        let actions =
            s.ka.refresh()
                .map_err(crypto(format!("refreshing group {group}")))?;
        self.perform(group, actions)
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to do: the
    /// earliest of the groups' periodic rekeys and agreement timeouts.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| {
                let rekey = g.settings.rekey_interval.and_then(|interval| {
                    let s = g.secured.as_ref()?;
                    s.current?;
                    Some(s.last_key + interval)
                });
                let timeout = g.sv.as_ref().and_then(SecureView::poll_timeout);
                [rekey, timeout]
            })
            .flatten()
            .min()
    }

    /// Time passes: runs the timers that are due at `now` (none may be).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), CoreError> {
        self.now = now;
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for group in names {
            let Some(g) = self.groups.get_mut(&group) else {
                continue;
            };
            if let Some(sv) = g.sv.as_mut()
                && sv.poll_timeout().is_some_and(|at| at <= now)
            {
                sv.on_timeout(now);
                self.drain(&group)?;
            }
            let due = self.groups.get(&group).is_some_and(|g| {
                g.settings.rekey_interval.is_some_and(|interval| {
                    g.secured
                        .as_ref()
                        .is_some_and(|s| s.current.is_some() && s.last_key + interval <= now)
                })
            });
            if due {
                self.timed_refresh(&group)?;
            }
        }
        Ok(())
    }

    fn timed_refresh(&mut self, group: &str) -> Result<(), CoreError> {
        // A reloaded policy takes effect at this periodic agreement too: every member's
        // timer asks for the switch; the first request in the total order wins and the
        // others' requests are moot.
        if self.groups.get(group).is_some_and(|g| g.pending.is_some()) {
            if let Some(s) = self.groups.get_mut(group).and_then(|g| g.secured.as_mut()) {
                s.last_key = self.now;
            }
            return self.refresh(group, self.now);
        }
        let Some(s) = self.groups.get_mut(group).and_then(|g| g.secured.as_mut()) else {
            return Ok(());
        };
        // Only the protocol's controller may start a refresh; the others wait for it.
        s.last_key = self.now;
        s.started = self.now;
        match s.ka.refresh() {
            Ok(actions) => self.perform(group, actions),
            Err(e) if e.code == ErrorCode::OUT_OF_STEP => Ok(()),
            Err(e) => Err(crypto(format!("refreshing group {group}"))(e)),
        }
    }

    /// An event from the engine, at `now`.
    pub fn handle_event(&mut self, event: Event, now: Instant) -> Result<(), CoreError> {
        self.now = now;
        match event {
            Event::FlushRequest { group } => {
                if let Some(g) = self.groups.get_mut(group.as_str()) {
                    g.flushing = true;
                }
                self.ops.push_back(EngineOp::FlushOk(group));
                Ok(())
            }
            Event::View(view) => self.on_view(view),
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
                self.on_message(&group, &sender, service, &payload)
            }
            Event::Left { group, cause } => {
                if let Some(g) = self.groups.remove(group.as_str()) {
                    let sends = g.held.iter().map(|h| h.id).collect();
                    self.undelivered(
                        group.as_str(),
                        sends,
                        format!("this member left the group ({})", cause_name(cause)),
                    );
                }
                self.events.push_back(SessionEvent::Left {
                    group: group.as_str().into(),
                    cause: cause_name(cause).into(),
                });
                Ok(())
            }
            Event::Refused { group, reason } => {
                if let Some(g) = self.groups.remove(group.as_str()) {
                    let sends = g.held.iter().map(|h| h.id).collect();
                    self.undelivered(
                        group.as_str(),
                        sends,
                        format!("the join was refused: {reason}"),
                    );
                }
                self.events.push_back(SessionEvent::Refused {
                    group: group.as_str().into(),
                    reason,
                });
                Ok(())
            }
        }
    }

    /// Applies a reloaded policy's settings to `group`, if it has some.
    fn apply_pending(&mut self, group: &str) -> Result<(), CoreError> {
        let Some(new) = self.groups.get_mut(group).and_then(|g| g.pending.take()) else {
            return Ok(());
        };
        let descriptor = new.descriptor(&self.registry);
        let mut secured = match new.security {
            Security::None => None,
            Security::Required => Some(self.instantiate(group, &new, &descriptor)?),
        };
        let me = self.identity.name().to_string();
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        // Messages sealed under the old modules may still come: their cipher and keys
        // stay until the new modules' first key, and this member's own messages on
        // their way back stay matched.
        if let (Some(new), Some(old)) = (secured.as_mut(), g.secured.take()) {
            new.own = old.own;
            new.own_bytes = old.own_bytes;
            if !old.epoch_members.is_empty() {
                new.retiring = Some(Retiring {
                    cipher: old.cipher,
                    epoch_members: old.epoch_members,
                });
            }
        }
        match (&secured, &mut g.sv) {
            (None, _) => g.sv = None,
            (Some(_), Some(sv)) => sv.set_timeout(new.agreement_timeout),
            (Some(_), None) => {
                g.sv = Some(SecureView::new(&me, new.agreement_timeout, self.now));
            }
        }
        g.settings = new;
        g.descriptor = descriptor;
        g.secured = secured;
        Ok(())
    }

    /// The exclusions this member's policy gives members of `group` without hearing
    /// from them.
    fn refusals(&self, g: &GroupState, members: &[MemberName]) -> BTreeMap<String, Exclusion> {
        let mut refused = BTreeMap::new();
        for m in members.iter().map(MemberName::as_str) {
            let trusted = self
                .trust
                .lookup_key(m)
                .is_some_and(|k| k.algorithm.as_str() == g.settings.signature);
            if !trusted {
                refused.insert(m.to_string(), Exclusion::Untrusted);
            } else if self.policy.is_admin(m) {
                refused.insert(m.to_string(), Exclusion::Administrator);
            } else if let Some(allowed) = &g.settings.members
                && !allowed.iter().any(|a| a == m)
            {
                refused.insert(m.to_string(), Exclusion::NotAllowed);
            }
        }
        refused
    }

    fn on_view(&mut self, view: View) -> Result<(), CoreError> {
        let group = view.group.as_str().to_string();
        let Some(g) = self.groups.get_mut(&group) else {
            return Ok(());
        };
        g.flushing = false;
        if let Some(s) = g.secured.as_mut() {
            s.own.clear();
            s.own_bytes = 0;
        }
        g.previous_view = g.view.as_ref().map(|v| v.id);
        g.view = Some(view.clone());
        // Reports stand while their member stays in the group.
        g.reported
            .retain(|(m, _)| m.is_empty() || view.members.iter().any(|x| x.as_str() == m));
        g.announced.clear();
        let names = |v: &[MemberName]| v.iter().map(|m| m.as_str().to_string()).collect::<Vec<_>>();
        self.events.push_back(SessionEvent::Membership {
            group: group.clone(),
            view_id: hex::encode(view.id.to_bytes()),
            members: names(&view.members),
            joined: names(&view.joined),
            left: names(&view.left),
            cause: cause_name(view.cause).into(),
        });
        // A plain group takes a reloaded policy at the view; a secure group when its
        // members announce (or by a switch, see below).
        if self.groups.get(&group).is_some_and(|g| g.sv.is_none()) {
            self.apply_pending(&group)?;
        }
        let Some(g) = self.groups.get(&group) else {
            return Ok(());
        };
        if g.sv.is_none() {
            return self.release(&group);
        }
        let refused = self.refusals(g, &view.members);
        let g = self
            .groups
            .get_mut(&group)
            .ok_or_else(|| CoreError::NotJoined(group.clone()))?;
        if let Some(s) = g.secured.as_mut() {
            s.current = None;
            s.early.clear();
        }
        if let Some(sv) = g.sv.as_mut() {
            sv.on_view(
                &view.id.to_bytes(),
                &names(&view.members),
                &names(&view.joined),
                &refused,
                self.now,
            );
        }
        self.drain(&group)?;
        // The fast path kept the secure view without announcements, or the keyed secure
        // view's oldest member announces for this one: a reloaded policy then takes
        // effect by a switch, where everyone announces itself again.
        let switch = self.groups.get(&group).is_some_and(|g| {
            g.pending.is_some()
                && g.sv
                    .as_ref()
                    .is_some_and(|sv| sv.spoken_for() && !sv.is_out())
        });
        if switch {
            self.send_control(&group, Body::Switch)?;
        }
        Ok(())
    }

    /// Carries out what the group's secure view decided, then sends what may go.
    fn drain(&mut self, group: &str) -> Result<(), CoreError> {
        while let Some(out) = self
            .groups
            .get_mut(group)
            .and_then(|g| g.sv.as_mut())
            .and_then(SecureView::poll_output)
        {
            match out {
                Output::Announce { .. } => {
                    // A reloaded policy takes effect here, at every member alike.
                    self.apply_pending(group)?;
                    let Some(g) = self.groups.get(group) else {
                        break;
                    };
                    let body = Body::Announce {
                        descriptor: g.descriptor.clone(),
                        last_epoch: g.last_epoch,
                    };
                    self.send_control(group, body)?;
                }
                Output::AnnounceFor(members) => {
                    // For members of the keyed secure view: the modules they keyed
                    // with (a reloaded policy waits for the switch that follows).
                    let Some(g) = self.groups.get(group) else {
                        break;
                    };
                    let body = Body::AnnounceFor {
                        descriptor: g.descriptor.clone(),
                        last_epoch: g.last_epoch,
                        from_view: view_bytes(g.previous_view),
                        members,
                    };
                    self.send_control(group, body)?;
                }
                Output::Alive => self.send_control(group, Body::Alive)?,
                Output::Cut(keep) => self.send_control(group, Body::Cut(keep))?,
                Output::Rejoin => self.send_control(group, Body::Switch)?,
                Output::Diverged => {
                    tracing::info!(
                        group,
                        "a member of the secure view kept without announcements announced: asking for a switch"
                    );
                    self.send_control(group, Body::Switch)?;
                }
                Output::Start { id, members, base } => {
                    self.start_agreement(group, id, members, base)?;
                }
                Output::Excluded { member, reason } => {
                    self.report_exclusion(group, &member, reason)
                }
                Output::Out { reason } => self.left_out(group, reason)?,
            }
        }
        self.release(group)
    }

    fn report_exclusion(&mut self, group: &str, member: &str, reason: Exclusion) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let detail = match reason {
            Exclusion::Untrusted => format!(
                "the trust store has no {} key for {member}",
                g.settings.signature
            ),
            Exclusion::NotAllowed => {
                format!("{member} is not among the members the policy admits to {group}")
            }
            Exclusion::OtherModules => format!(
                "{member} announced [{}], this member's policy gives [{}]",
                g.announced
                    .get(member)
                    .map(|d| describe(d))
                    .unwrap_or_default(),
                describe(&g.descriptor)
            ),
            Exclusion::Silent => format!(
                "{member} did not take part within the agreement timeout ({:?})",
                g.settings.agreement_timeout
            ),
            Exclusion::Administrator => format!(
                "{member} is an administrator: it publishes policies and takes no part in keys"
            ),
        };
        tracing::warn!(group, member, reason = reason.name(), %detail, "member excluded from the secure view");
        self.events.push_back(SessionEvent::Excluded {
            group: group.into(),
            member: member.into(),
            reason,
            detail,
        });
    }

    /// This member is not in its group's secure view: it drops its keys (a fresh key
    /// agreement and cipher) and returns its held sends.
    fn left_out(&mut self, group: &str, reason: Exclusion) -> Result<(), CoreError> {
        let Some(g) = self.groups.get(group) else {
            return Ok(());
        };
        let (settings, descriptor) = (g.settings.clone(), g.descriptor.clone());
        let fresh = self.instantiate(group, &settings, &descriptor)?;
        let me = self.identity.name().to_string();
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        g.secured = Some(fresh);
        let sends: Vec<u64> = g.held.drain(..).map(|h| h.id).collect();
        self.undelivered(
            group,
            sends,
            format!(
                "this member is left out of the secure view ({})",
                reason.name()
            ),
        );
        self.report_exclusion(group, &me, reason);
        Ok(())
    }

    /// Signs and multicasts a control message for the group's current stage and round.
    fn send_control(&mut self, group: &str, body: Body) -> Result<(), CoreError> {
        let Some(g) = self.groups.get(group) else {
            return Ok(());
        };
        let (Some(sv), Some(s)) = (&g.sv, &g.secured) else {
            return Ok(());
        };
        let id = sv.current();
        let control = Control {
            group: group.into(),
            view_id: sv.view_id().to_vec(),
            stage: id.stage,
            round: id.round,
            sender: self.identity.name().into(),
            body,
        };
        tracing::debug!(group, me = self.identity.name(), ?control.body, stage = id.stage, round = id.round, "control out");
        let sealed = control.seal(&s.signer).map_err(crypto(format!(
            "signing a control message of group {group}"
        )))?;
        let payload = [&[tag::CONTROL][..], &sealed].concat();
        self.ops.push_back(EngineOp::Send {
            group: g.name.clone(),
            delivery: Delivery::Multicast(Service::Agreed),
            payload: payload.into(),
            send: None,
        });
        Ok(())
    }

    /// Runs the key agreement `id` among `members`, then the messages of it that came
    /// early.
    fn start_agreement(
        &mut self,
        group: &str,
        id: AgreementId,
        members: Vec<String>,
        base: Option<u64>,
    ) -> Result<(), CoreError> {
        // The key agreement relies on view synchrony: members that move together from
        // one of its views to the next delivered the same messages. That holds if its
        // last view was of this engine view or the one just before; a member whose
        // last agreement is older (its secure view never closed in between) starts
        // afresh, as a joiner, like the others take it.
        let stale = self.groups.get(group).is_some_and(|g| {
            let ka_view = g.secured.as_ref().and_then(|s| s.ka_engine_view);
            ka_view.is_some()
                && ka_view != g.view.as_ref().map(|v| v.id)
                && ka_view != g.previous_view
        });
        if stale && let Some(g) = self.groups.get(group) {
            let (settings, descriptor) = (g.settings.clone(), g.descriptor.clone());
            let fresh = self.instantiate(group, &settings, &descriptor)?;
            if let Some(s) = self.groups.get_mut(group).and_then(|g| g.secured.as_mut()) {
                s.ka = fresh.ka;
                s.ka_members.clear();
            }
        }
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let Some(view) = g.view.clone() else {
            return Ok(());
        };
        let Some(s) = g.secured.as_mut() else {
            return Ok(());
        };
        s.current = None;
        s.started = self.now;
        s.agreement = Some(id);
        s.ka_engine_view = Some(view.id);
        if base.is_some() {
            s.base = base;
        }
        // Every member of the secure view derives the same id for the agreement.
        let mut view_id = view.id.to_bytes().to_vec();
        view_id.extend_from_slice(b"/stage/");
        view_id.extend_from_slice(&id.stage.to_be_bytes());
        view_id.extend_from_slice(b"/round/");
        view_id.extend_from_slice(&id.round.to_be_bytes());
        let previous = std::mem::replace(&mut s.ka_members, members.clone());
        let (before, now): (BTreeSet<&String>, BTreeSet<&String>) =
            (previous.iter().collect(), members.iter().collect());
        let joined: Vec<&String> = members.iter().filter(|m| !before.contains(m)).collect();
        let left: Vec<&String> = previous.iter().filter(|m| !now.contains(m)).collect();
        let cause = if id == AgreementId::default() && members.len() == view.members.len() {
            view_cause(view.cause)
        } else if !joined.is_empty() {
            if left.is_empty() {
                ViewCause::Join
            } else {
                ViewCause::Merge
            }
        } else {
            ViewCause::Leave
        };
        let membership = MembershipView {
            group: group.into(),
            view_id: view_id.into(),
            members: members.iter().map(|m| m.as_str().into()).collect(),
            joined: joined.iter().map(|m| m.as_str().into()).collect(),
            left: left.iter().map(|m| m.as_str().into()).collect(),
            cause,
        };
        let actions = s.ka.on_view(&membership);
        let early: Vec<_> = std::mem::take(&mut s.early);
        match actions {
            Ok(actions) => self.perform(group, actions)?,
            Err(e) => self.security_error(group, None, &e),
        }
        for (sender, at, payload) in early {
            if at == id {
                self.on_key_agreement(group, &sender, at, &payload)?;
            } else if at > id
                && let Some(s) = self.groups.get_mut(group).and_then(|g| g.secured.as_mut())
            {
                s.early.push((sender, at, payload));
            }
        }
        Ok(())
    }

    /// Reports a refused message or a failed step: once per sender and error code in a
    /// view, then only counted.
    fn security_error(&mut self, group: &str, sender: Option<&str>, e: &PluginError) {
        metrics::counter!("conclave_security_errors_total", "code" => e.code.name()).increment(1);
        if let Some(g) = self.groups.get_mut(group)
            && !g
                .reported
                .insert((sender.unwrap_or_default().to_string(), e.code.0))
        {
            g.refused += 1;
            tracing::debug!(group, sender, error = %e, "security error (already reported)");
            return;
        }
        tracing::warn!(group, sender, error = %e, "security error");
        self.events.push_back(SessionEvent::SecurityError {
            group: group.into(),
            sender: sender.map(str::to_string),
            error: e.into(),
        });
    }

    /// Refuses a message from a member outside the secure view: silently if its
    /// exclusion was reported, else once as a security error.
    fn refuse_outsider(&mut self, group: &str, sender: &str, what: &str) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if g.sv.as_ref().and_then(|sv| sv.exclusion(sender)).is_some() {
            g.refused += 1;
            tracing::debug!(group, sender, what, "refused: sender excluded");
            return;
        }
        let e = PluginError::new(
            ErrorCode::NOT_A_MEMBER,
            format!("{what} from {sender}, who is not in the secure view of {group}"),
        );
        self.security_error(group, Some(sender), &e);
    }

    fn perform(&mut self, group: &str, actions: Vec<Action>) -> Result<(), CoreError> {
        for action in actions {
            let Some(g) = self.groups.get_mut(group) else {
                return Ok(());
            };
            let name = g.name.clone();
            let id = g
                .secured
                .as_ref()
                .and_then(|s| s.agreement)
                .unwrap_or_default();
            let header = |payload: &[u8]| {
                let mut b = Vec::with_capacity(9 + payload.len());
                b.push(tag::KEY_AGREEMENT);
                b.extend_from_slice(&id.stage.to_be_bytes());
                b.extend_from_slice(&id.round.to_be_bytes());
                b.extend_from_slice(payload);
                b
            };
            match action {
                Action::Unicast { to, payload } => {
                    let to = MemberName::new(to.as_str()).map_err(GcsError::from)?;
                    self.ops.push_back(EngineOp::Send {
                        group: name,
                        delivery: Delivery::Unicast(to),
                        payload: header(&payload).into(),
                        send: None,
                    });
                }
                Action::Multicast { payload } => {
                    self.ops.push_back(EngineOp::Send {
                        group: name,
                        delivery: Delivery::Multicast(Service::Agreed),
                        payload: header(&payload).into(),
                        send: None,
                    });
                }
                Action::KeyReady(ready) => self.key_ready(group, ready)?,
                Action::Failure(e) => self.security_error(group, None, &e),
            }
        }
        Ok(())
    }

    fn key_ready(
        &mut self,
        group: &str,
        ready: conclave_plugin_sdk::api::key_agreement::KeyReady,
    ) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let (Some(s), Some(sv)) = (g.secured.as_mut(), g.sv.as_mut()) else {
            return Ok(());
        };
        let members: Vec<String> = ready.members.iter().map(|m| m.to_string()).collect();
        // A key is held, checked against the secure view, and only then installed.
        if sv.secure() != Some(members.as_slice()) {
            let e = PluginError::new(
                ErrorCode::NOT_A_MEMBER,
                format!(
                    "the key agreement produced a key for [{}], the secure view is [{}]; not installed",
                    members.join(", "),
                    sv.secure().unwrap_or_default().join(", ")
                ),
            );
            self.security_error(group, None, &e);
            return Ok(());
        }
        let epoch = match s.base.take() {
            Some(base) => base.max(g.last_epoch) + 1,
            None => g.last_epoch + 1,
        };
        s.cipher
            .install_key(epoch, ready.key.expose())
            .map_err(crypto(format!("installing the key of group {group}")))?;
        // Two key slots, as knet keeps them: the new key and the one before it. A new
        // agreement holds sends, but a refresh within a secure view runs while members
        // still send under the current key, and those messages may arrive after the
        // new key; anything older was delivered before (every member of the secure view
        // sent it before its confirmation of the previous key).
        while s.installed.len() > 1 {
            let old = s.installed.remove(0);
            s.cipher.retire_key(old);
            s.epoch_members.remove(&old);
        }
        s.installed.push(epoch);
        s.epoch_members.insert(epoch, EpochMembers::new(&members));
        s.current = Some(epoch);
        // Every member of this key took the switch before its part in it, and sent
        // what it sealed under the old modules before that.
        s.retiring = None;
        if let Some(id) = s.agreement {
            sv.on_key(id);
        }
        g.last_epoch = epoch;
        let took = self.now.saturating_duration_since(s.started);
        s.last_key = self.now;
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
        metrics::counter!("conclave_rekeys_total", "protocol" => settings.key_agreement.clone())
            .increment(1);
        metrics::histogram!("conclave_rekey_seconds", "protocol" => settings.key_agreement.clone())
            .record(took.as_secs_f64());
        self.events
            .push_back(SessionEvent::KeyEstablished(KeyEstablished {
                group: group.into(),
                epoch,
                key_agreement: settings.key_agreement.clone(),
                cipher: format!("{} ({})", settings.cipher, settings.cipher_algorithm),
                dh_group: settings.dh_group.clone(),
                provider: settings.provider.clone(),
                cipher_provider: settings.cipher_provider().to_string(),
                members,
                view_id: hex::encode(ready.view_id.as_slice()),
                took,
                fingerprint,
                counts,
            }));
        Ok(())
    }

    fn on_message(
        &mut self,
        group_name: &GroupName,
        sender_name: &MemberName,
        service: &'static str,
        payload: &[u8],
    ) -> Result<(), CoreError> {
        let (group, sender) = (group_name.as_str(), sender_name.as_str());
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        if let Some(why) = g.sv.as_ref().and_then(|sv| sv.exclusion(sender)) {
            // Excluded and reported: refused without effect (a member on other modules
            // is still heard on control messages: it may switch to this member's).
            let heard = match payload.first() {
                Some(&tag::CONTROL) => why == Exclusion::OtherModules,
                Some(&tag::POLICY) => why == Exclusion::Administrator,
                _ => false,
            };
            if why != Exclusion::Silent && !heard {
                g.refused += 1;
                return Ok(());
            }
        }
        let Some((&kind, body)) = payload.split_first() else {
            let e = PluginError::new(ErrorCode::BAD_MESSAGE, "empty message");
            self.security_error(group, Some(sender), &e);
            return Ok(());
        };
        let secure = g.secured.is_some();
        match kind {
            tag::PLAIN if !secure => {
                self.events.push_back(SessionEvent::Message {
                    group: group_name.clone(),
                    sender: sender_name.clone(),
                    service: service.into(),
                    epoch: None,
                    data: body.to_vec(),
                });
                Ok(())
            }
            tag::SEALED if secure => {
                self.on_sealed(group_name, sender_name, service, body);
                self.release(group)
            }
            tag::KEY_AGREEMENT if secure => {
                let Some((id, ka_body)) = parse_agreement(body) else {
                    let e = PluginError::new(
                        ErrorCode::BAD_MESSAGE,
                        "key-agreement message without its agreement id",
                    );
                    self.security_error(group, Some(sender), &e);
                    return Ok(());
                };
                self.on_key_agreement(group, sender, id, ka_body)?;
                self.release(group)
            }
            tag::CONTROL if secure => {
                self.on_control(group, sender, body)?;
                self.drain(group)
            }
            tag::POLICY if secure => {
                self.on_policy(group, sender, body)?;
                self.drain(group)
            }
            _ => {
                let e = PluginError::new(
                    ErrorCode::BAD_MESSAGE,
                    format!(
                        "unexpected message kind {kind} in a {} group",
                        if secure { "secure" } else { "plain" }
                    ),
                );
                self.security_error(group, Some(sender), &e);
                Ok(())
            }
        }
    }

    fn on_sealed(
        &mut self,
        group_name: &GroupName,
        sender_name: &MemberName,
        service: &'static str,
        body: &[u8],
    ) {
        let (group, sender) = (group_name.as_str(), sender_name.as_str());
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let (Some(s), Some(sv)) = (g.secured.as_mut(), g.sv.as_ref()) else {
            return;
        };
        // This member's own message, as it sent it: no need to open it.
        if sender == self.identity.name()
            && let Some(at) = s
                .own
                .iter()
                .take(OWN_SENDS_SEARCH)
                .position(|o| o.payload.get(1..) == Some(body))
            && let Some(own) = s.own.remove(at)
        {
            s.own_bytes -= own.data.len();
            let known = s.epoch_members.contains_key(&own.epoch)
                || s.retiring
                    .as_ref()
                    .is_some_and(|r| r.epoch_members.contains_key(&own.epoch));
            if known {
                self.events.push_back(SessionEvent::Message {
                    group: group_name.clone(),
                    sender: sender_name.clone(),
                    service: service.into(),
                    epoch: Some(own.epoch),
                    data: own.data,
                });
                return;
            }
        }
        // Senders excluded for good were refused in `on_message`, before opening.
        // Opened straight into the buffer the application receives.
        let mut plaintext = RVec::with_capacity(body.len());
        let mut opened = s.cipher.open_into(sender, &s.aad, body, &mut plaintext);
        let mut members = &s.epoch_members;
        if let (Err(e), Some(r)) = (&opened, s.retiring.as_mut())
            && e.code == ErrorCode::UNKNOWN_EPOCH
        {
            // Sealed before its sender took the switch.
            plaintext.clear();
            opened = r.cipher.open_into(sender, &s.aad, body, &mut plaintext);
            members = &r.epoch_members;
        }
        match opened {
            Ok(opened) if members.get(&opened.epoch).is_some_and(|m| m.holds(sender)) => {
                self.events.push_back(SessionEvent::Message {
                    group: group_name.clone(),
                    sender: sender_name.clone(),
                    service: service.into(),
                    epoch: Some(opened.epoch),
                    data: plaintext.into_vec(),
                });
            }
            Ok(opened) => {
                let e = PluginError::new(
                    ErrorCode::NOT_A_MEMBER,
                    format!(
                        "{sender} sealed a message under epoch {} without being among its members",
                        opened.epoch
                    ),
                );
                self.security_error(group, Some(sender), &e);
            }
            Err(e) => {
                if sv.exclusion(sender).is_some() {
                    g.refused += 1;
                } else {
                    self.security_error(group, Some(sender), &e);
                }
            }
        }
    }

    fn on_key_agreement(
        &mut self,
        group: &str,
        sender: &str,
        id: AgreementId,
        body: &[u8],
    ) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let (Some(s), Some(sv)) = (g.secured.as_mut(), g.sv.as_ref()) else {
            return Ok(());
        };
        if sv.exclusion(sender).is_some_and(|e| e != Exclusion::Silent) {
            g.refused += 1;
            return Ok(());
        }
        let running = s.agreement.filter(|_| sv.secure().is_some());
        if running == Some(id) {
            if !sv.admits(sender) {
                self.refuse_outsider(group, sender, "key-agreement message");
                return Ok(());
            }
            return match s.ka.on_message(sender, body) {
                Ok(actions) => self.perform(group, actions),
                Err(e) => {
                    self.security_error(group, Some(sender), &e);
                    Ok(())
                }
            };
        }
        let current = sv.current();
        if id < current || running.is_some_and(|r| id < r) {
            // Of an agreement that a cut or a switch ended: moot.
            tracing::debug!(
                group,
                sender,
                ?id,
                "key-agreement message of an earlier round"
            );
            return Ok(());
        }
        // Of the current round, whose agreement has not started here yet, or of a later
        // one: a member that already delivered the cut or switch that starts it may
        // send its unicasts before this member delivers that (agreed) message.
        let (all, theirs) = s.early.iter().fold((0, 0), |(all, theirs), (who, _, b)| {
            (
                all + b.len(),
                theirs + if who == sender { b.len() } else { 0 },
            )
        });
        let over = if s.early.len() >= MAX_EARLY {
            Some(format!("{MAX_EARLY} messages"))
        } else if all + body.len() > EARLY_BYTES {
            Some(format!("{EARLY_BYTES} bytes from all senders"))
        } else if theirs + body.len() > EARLY_SENDER_BYTES {
            Some(format!("{EARLY_SENDER_BYTES} bytes from one sender"))
        } else {
            None
        };
        if let Some(limit) = over {
            let e = PluginError::new(
                ErrorCode::OUT_OF_STEP,
                format!("key-agreement messages before the agreement started exceed {limit}"),
            );
            self.security_error(group, Some(sender), &e);
            return Ok(());
        }
        s.early.push((sender.into(), id, body.to_vec()));
        Ok(())
    }

    fn on_control(&mut self, group: &str, sender: &str, body: &[u8]) -> Result<(), CoreError> {
        let Some(g) = self.groups.get_mut(group) else {
            return Ok(());
        };
        let (Some(s), Some(sv)) = (g.secured.as_ref(), g.sv.as_ref()) else {
            return Ok(());
        };
        // Untrusted and not-allowed senders were refused in `on_message`, before any
        // signature check.
        let control = match Control::open(
            body,
            group,
            sender,
            &self.trust,
            &s.provider,
            &g.settings.signature,
        ) {
            Ok(c) => c,
            Err(e) => {
                self.security_error(group, Some(sender), &e);
                return Ok(());
            }
        };
        if control.view_id != sv.view_id() {
            let e = PluginError::new(
                ErrorCode::STALE_VIEW,
                format!("{} from {sender} of another view", control.body.name()),
            );
            self.security_error(group, Some(sender), &e);
            return Ok(());
        }
        let now = self.now;
        let id = AgreementId {
            stage: control.stage,
            round: control.round,
        };
        let descriptor = g.descriptor.clone();
        let last = g.last_epoch;
        let previous = view_bytes(g.previous_view);
        let mut switch = false;
        let Some(sv) = g.sv.as_mut() else {
            return Ok(());
        };
        tracing::debug!(group, me = self.identity.name(), sender, ?control.body, stage = control.stage, round = control.round, "control in");
        let result = match control.body {
            Body::Announce {
                descriptor: theirs,
                last_epoch,
            } => {
                let same = theirs == descriptor;
                let r = sv.on_announce(sender, control.stage, same, last_epoch, now);
                g.announced.insert(sender.into(), theirs);
                r
            }
            Body::AnnounceFor {
                descriptor: theirs,
                last_epoch,
                from_view,
                members,
            } => {
                let same = theirs == descriptor;
                let r = sv.on_announce_for(sender, control.stage, same, last_epoch, &members, now);
                // What it said of this member stands for everyone: if this member's
                // modules, last epoch or previous view differ (it moved through views
                // the sender did not see, or the announcement is forged), a switch has
                // everyone announce itself; it goes out before this member's part in
                // any agreement, so no key comes of what was said.
                switch = r.as_ref().is_ok_and(|mine| *mine)
                    && (!same || last_epoch != last || from_view != previous);
                if !same {
                    for m in members {
                        g.announced.insert(m, theirs.clone());
                    }
                }
                r.map(|_| ())
            }
            Body::Switch => sv.on_switch(sender, control.stage, now),
            Body::Cut(keep) => sv.on_cut(sender, id, &keep, now),
            Body::Alive => sv.on_alive(sender, id),
        };
        if let Err(e) = result {
            self.security_error(group, Some(sender), &e);
        }
        if switch {
            tracing::info!(
                group,
                sender,
                "announced for with other modules, last epoch or previous view than this member's: asking for a switch"
            );
            self.send_control(group, Body::Switch)?;
        }
        Ok(())
    }

    /// A policy published into `group` by `sender` (see [`crate::secure::publish`]).
    fn on_policy(&mut self, group: &str, sender: &str, body: &[u8]) -> Result<(), CoreError> {
        let (admin, result) = self.check_policy(group, sender, body);
        match result {
            Ok((version, settings)) => {
                let Some(g) = self.groups.get_mut(group) else {
                    return Ok(());
                };
                g.policy_version = version;
                g.published = true;
                let changed = settings != g.settings;
                g.pending = changed.then_some(settings);
                tracing::info!(group, %admin, version, changed, "published policy adopted");
                self.events.push_back(SessionEvent::PolicyAdopted {
                    group: group.into(),
                    admin,
                    version,
                    changed,
                });
                if changed {
                    // Every member that adopted it asks; the first switch in the
                    // agreed order moves the whole secure view, the others are moot.
                    self.send_control(group, Body::Switch)?;
                }
            }
            Err(refusal) => {
                tracing::warn!(group, sender, %admin, %refusal, "published policy refused");
                metrics::counter!("conclave_security_errors_total", "code" => refusal.code().name())
                    .increment(1);
                self.events.push_back(SessionEvent::PolicyRefused {
                    group: group.into(),
                    admin,
                    refusal,
                });
            }
        }
        Ok(())
    }

    /// Checks a published policy in order (syntax, group, sender, administrator, key,
    /// signature, version, the policy itself): whom it claims, and the version and
    /// settings to adopt, or why not.
    fn check_policy(
        &self,
        group: &str,
        sender: &str,
        body: &[u8],
    ) -> (String, Result<(u64, GroupSettings), PolicyRefusal>) {
        let (published, signed, signature) = match SignedPolicy::parse(body) {
            Ok(p) => p,
            Err(e) => {
                let detail = e.message.to_string();
                return (sender.into(), Err(PolicyRefusal::Malformed { detail }));
            }
        };
        let admin = published.admin.clone();
        let result = (|| {
            let forged = |detail: String| PolicyRefusal::Forged {
                admin: admin.clone(),
                detail,
            };
            if published.group != group {
                return Err(PolicyRefusal::Misrouted {
                    group: published.group.clone(),
                });
            }
            if published.admin != sender {
                return Err(forged(format!("it was sent by {sender}")));
            }
            let key = self.trust.lookup_key(&admin);
            let (true, Some(key)) = (self.policy.is_admin(&admin), key) else {
                return Err(PolicyRefusal::NotAdministrator {
                    admin: admin.clone(),
                });
            };
            if key.algorithm.as_str() != published.algorithm {
                return Err(forged(format!(
                    "it is signed with {}, {admin}'s trusted key is {}",
                    published.algorithm, key.algorithm
                )));
            }
            let g = self
                .groups
                .get(group)
                .ok_or_else(|| PolicyRefusal::Misrouted {
                    group: group.into(),
                })?;
            let s = g.secured.as_ref().ok_or_else(|| PolicyRefusal::Misrouted {
                group: group.into(),
            })?;
            s.provider
                .verify(
                    &published.algorithm,
                    &key.public_key,
                    &[crate::secure::publish::SIGN_DOMAIN, signed].concat(),
                    signature,
                )
                .map_err(|e| forged(format!("its signature fails: {}", e.message)))?;
            let version = published.version;
            if version <= g.policy_version {
                return Err(PolicyRefusal::Stale {
                    version,
                    current: g.policy_version,
                });
            }
            let invalid = |detail: String| PolicyRefusal::Invalid { version, detail };
            let origin = format!("policy v{version} published by {admin}");
            let source = self
                .policy
                .adopt(&published.text, &origin, &self.registry)
                .map_err(invalid)?;
            if source.version() != version {
                return Err(invalid(format!(
                    "its text says version {}, its signed envelope {version}",
                    source.version()
                )));
            }
            let settings = source.settings(group).map_err(invalid)?;
            if settings.security != Security::Required {
                return Err(invalid(
                    "it makes the group plain: a published policy keeps a secure group secure"
                        .into(),
                ));
            }
            Ok((version, settings))
        })();
        (admin, result)
    }

    /// What this member knows of `group` now: its view, and for a secure group the
    /// modules in force, the epoch, the secure view and how long ago the key came.
    pub fn status(&self, group: &str, now: Instant) -> Option<GroupStatus> {
        let g = self.groups.get(group)?;
        let secure = g.secured.as_ref().map(|s| {
            let settings = &g.settings;
            SecureStatus {
                key_agreement: settings.key_agreement.clone(),
                cipher: format!("{} ({})", settings.cipher, settings.cipher_algorithm),
                dh_group: settings.dh_group.clone(),
                provider: settings.provider.clone(),
                cipher_provider: settings.cipher_provider().to_string(),
                epoch: s.current,
                keyed: s
                    .current
                    .and_then(|e| s.epoch_members.get(&e))
                    .map(|m| m.in_order.clone())
                    .unwrap_or_default(),
                since_key_ms: s
                    .current
                    .map(|_| now.saturating_duration_since(s.last_key).as_millis() as u64),
                policy_version: g.policy_version,
            }
        });
        Some(GroupStatus {
            group: group.into(),
            member: self.identity.name().into(),
            view_id: g.view.as_ref().map(|v| hex::encode(v.id.to_bytes())),
            members: g
                .view
                .as_ref()
                .map(|v| v.members.iter().map(|m| m.as_str().to_string()).collect())
                .unwrap_or_default(),
            secure,
        })
    }

    /// Reports this member's status of `group` as [`SessionEvent::Status`].
    pub fn report_status(&mut self, group: &str, now: Instant) -> Result<(), CoreError> {
        let status = self
            .status(group, now)
            .ok_or_else(|| CoreError::NotJoined(group.into()))?;
        self.events.push_back(SessionEvent::Status(status));
        Ok(())
    }

    /// This member's status of `group`, signed with its identity key, for the engine to
    /// show ([`GroupStatus::open_note`] checks one).
    pub fn signed_note(&self, group: &str, now: Instant) -> Option<Vec<u8>> {
        let status = self.status(group, now)?;
        let s = self.groups.get(group)?.secured.as_ref()?;
        status.seal_note(&s.signer).ok()
    }

    /// The version of the policy in force for `group` (the file's, or the last one an
    /// administrator published there that this member adopted).
    pub fn policy_version(&self, group: &str) -> Option<u64> {
        self.groups.get(group).map(|g| g.policy_version)
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

/// A view id's encoding, empty for none.
fn view_bytes(view: Option<ViewId>) -> Vec<u8> {
    view.map(|v| v.to_bytes().to_vec()).unwrap_or_default()
}

/// The agreement id and the plugin's message of a key-agreement payload.
fn parse_agreement(body: &[u8]) -> Option<(AgreementId, &[u8])> {
    let stage = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    let round = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
    Some((AgreementId { stage, round }, &body[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::FixedPolicy;
    use conclave_plugin_sdk::ka_kit::EPOCH_LIMIT;
    use std::time::Duration;

    const GROUP: &str = "g";

    /// alice's secure layer in group `g`, in a view with alice and `others` (all
    /// trusted), and the view's id.
    fn alice_with(others: &[&str]) -> (SecureLayer, ViewId) {
        conclave_builtins::link();
        let registry = Arc::new(Registry::with_builtins().unwrap());
        let provider = registry
            .new_provider("rustcrypto", Default::default())
            .unwrap();
        let trust = MapTrustStore::default();
        let mut identity = None;
        for name in std::iter::once(&"alice").chain(others) {
            let id = Identity::generate(&provider, name, "ed25519").unwrap();
            trust.insert(name, "ed25519", id.public_key());
            identity.get_or_insert(id);
        }
        let now = Instant::now();
        let mut layer = SecureLayer::new(
            identity.unwrap(),
            registry,
            Arc::new(FixedPolicy(GroupSettings::default())),
            trust,
            now,
        );
        layer.join(GROUP, now).unwrap();
        let members: Vec<MemberName> = std::iter::once(&"alice")
            .chain(others)
            .map(|n| MemberName::new(n).unwrap())
            .collect();
        let id = ViewId {
            origin: 1,
            counter: 1,
        };
        let view = View {
            group: GroupName::new(GROUP).unwrap(),
            id,
            joined: members.clone(),
            members,
            left: Vec::new(),
            cause: Cause::Join,
        };
        layer.handle_event(Event::View(view), now).unwrap();
        while layer.poll_event().is_some() {}
        (layer, id)
    }

    /// `sender`'s key-agreement message of an agreement far ahead, `len` bytes long.
    fn early(sender: &str, view: ViewId, len: usize) -> Event {
        let mut payload = vec![tag::KEY_AGREEMENT];
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.resize(9 + len, 0x42);
        Event::Message {
            group: GroupName::new(GROUP).unwrap(),
            sender: MemberName::new(sender).unwrap(),
            service: Service::Agreed,
            view_id: view,
            unicast: false,
            payload: payload.into(),
        }
    }

    /// The bytes of early messages the layer holds, per sender.
    fn held(layer: &SecureLayer) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (who, _, body) in &layer.groups[GROUP].secured.as_ref().unwrap().early {
            *out.entry(who.clone()).or_default() += body.len();
        }
        out
    }

    /// The security errors reported since the last call, as (sender, code).
    fn errors(layer: &mut SecureLayer) -> Vec<(String, String)> {
        std::iter::from_fn(|| layer.poll_event())
            .filter_map(|e| match e {
                SessionEvent::SecurityError {
                    sender: Some(s),
                    error,
                    ..
                } => Some((s, error.code)),
                _ => None,
            })
            .collect()
    }

    fn out_of_step(senders: &[&str]) -> Vec<(String, String)> {
        senders
            .iter()
            .map(|s| (s.to_string(), ErrorCode::OUT_OF_STEP.to_string()))
            .collect()
    }

    /// Secure layers of several members over an in-memory engine that delivers every
    /// send in one order, as the daemon's sequencer does; members named in `stopped`
    /// neither send nor receive (a stopped process).
    struct Lab {
        layers: BTreeMap<String, SecureLayer>,
        identities: BTreeMap<String, Identity>,
        trust: MapTrustStore,
        registry: Arc<Registry>,
        /// Each member's last view.
        seen: BTreeMap<String, Vec<String>>,
        view: ViewId,
        members: Vec<String>,
        queue: VecDeque<(String, Delivery, Bytes)>,
        /// The control messages multicast since the last view, in order.
        controls: Vec<Control>,
        stopped: BTreeSet<String>,
        now: Instant,
    }

    impl Lab {
        fn new() -> Self {
            conclave_builtins::link();
            Self {
                layers: BTreeMap::new(),
                identities: BTreeMap::new(),
                trust: MapTrustStore::default(),
                registry: Arc::new(Registry::with_builtins().unwrap()),
                seen: BTreeMap::new(),
                view: ViewId {
                    origin: 1,
                    counter: 0,
                },
                members: Vec::new(),
                queue: VecDeque::new(),
                controls: Vec::new(),
                stopped: BTreeSet::new(),
                now: Instant::now(),
            }
        }

        fn provider(&self) -> Provider {
            self.registry
                .new_provider("rustcrypto", Default::default())
                .unwrap()
        }

        /// A trusted member that joined `g` and has no view yet.
        fn add(&mut self, name: &str) {
            let id = Identity::generate(&self.provider(), name, "ed25519").unwrap();
            self.trust.insert(name, "ed25519", id.public_key());
            self.identities.insert(name.into(), id.clone());
            let mut layer = SecureLayer::new(
                id,
                self.registry.clone(),
                Arc::new(FixedPolicy(GroupSettings::default())),
                self.trust.clone(),
                self.now,
            );
            layer.join(GROUP, self.now).unwrap();
            while layer.poll_op().is_some() {}
            self.layers.insert(name.into(), layer);
        }

        /// Installs a view of `members` (oldest first) at each of them, then runs until
        /// nothing is left to send.
        fn view(&mut self, members: &[&str]) {
            self.view_with(members, |_| Vec::new());
        }

        /// [`view`](Self::view), with raw payloads (and their engine senders) that
        /// `forged` makes for the new view id delivered before anything the members
        /// send in it.
        fn view_with(
            &mut self,
            members: &[&str],
            forged: impl FnOnce(ViewId) -> Vec<(&'static str, Vec<u8>)>,
        ) {
            self.queue.clear();
            self.controls.clear();
            self.view.counter += 1;
            self.members = members.iter().map(|m| m.to_string()).collect();
            let name = |m: &str| MemberName::new(m).unwrap();
            for m in members {
                let before = self.seen.insert(m.to_string(), self.members.clone());
                let before = before.unwrap_or_default();
                let view = View {
                    group: GroupName::new(GROUP).unwrap(),
                    id: self.view,
                    members: members.iter().map(|x| name(x)).collect(),
                    joined: members
                        .iter()
                        .filter(|x| !before.iter().any(|b| b == *x))
                        .map(|x| name(x))
                        .collect(),
                    left: before
                        .iter()
                        .filter(|b| !members.contains(&b.as_str()))
                        .map(|b| name(b))
                        .collect(),
                    cause: Cause::Join,
                };
                if !self.stopped.contains(*m) {
                    let now = self.now;
                    self.layers
                        .get_mut(*m)
                        .unwrap()
                        .handle_event(Event::View(view), now)
                        .unwrap();
                }
            }
            for (sender, payload) in forged(self.view) {
                let delivery = Delivery::Multicast(Service::Agreed);
                self.queue
                    .push_back((sender.into(), delivery, payload.into()));
            }
            self.run();
        }

        /// Delivers what the members send, in one order, until nothing is left.
        fn run(&mut self) {
            loop {
                for (name, layer) in &mut self.layers {
                    while let Some(op) = layer.poll_op() {
                        if let EngineOp::Send {
                            delivery, payload, ..
                        } = op
                            && !self.stopped.contains(name)
                        {
                            if payload[0] == tag::CONTROL {
                                self.controls.push(Control::parse(&payload[1..]).unwrap().0);
                            }
                            self.queue.push_back((name.clone(), delivery, payload));
                        }
                    }
                }
                let Some((sender, delivery, payload)) = self.queue.pop_front() else {
                    return;
                };
                self.deliver(&sender, delivery, payload);
            }
        }

        /// Delivers one message from `sender`, as sent, to its receivers in the view.
        fn deliver(&mut self, sender: &str, delivery: Delivery, payload: Bytes) {
            let (to, unicast, service) = match &delivery {
                Delivery::Multicast(service) => (self.members.clone(), false, *service),
                Delivery::Unicast(to) => (vec![to.as_str().to_string()], true, Service::Fifo),
            };
            for m in to.iter().filter(|m| !self.stopped.contains(*m)) {
                let event = Event::Message {
                    group: GroupName::new(GROUP).unwrap(),
                    sender: MemberName::new(sender).unwrap(),
                    service,
                    view_id: self.view,
                    unicast,
                    payload: payload.clone(),
                };
                let now = self.now;
                self.layers
                    .get_mut(m)
                    .unwrap()
                    .handle_event(event, now)
                    .unwrap();
            }
        }

        /// Time passes for every member, then what they send is delivered.
        fn advance(&mut self, by: Duration) {
            self.now += by;
            let now = self.now;
            for (name, layer) in &mut self.layers {
                if !self.stopped.contains(name) {
                    layer.handle_timeout(now).unwrap();
                }
            }
            self.run();
        }

        /// The events each member reported since the last call.
        fn events(&mut self) -> BTreeMap<String, Vec<SessionEvent>> {
            self.layers
                .iter_mut()
                .map(|(name, layer)| {
                    (
                        name.clone(),
                        std::iter::from_fn(|| layer.poll_event()).collect(),
                    )
                })
                .collect()
        }

        /// The last key each member reported since the last call: (epoch, fingerprint,
        /// members); the other events are dropped.
        fn keys(&mut self) -> BTreeMap<String, (u64, String, Vec<String>)> {
            keys_in(&self.events())
        }

        /// Who sent which control messages since the last view, in order.
        fn said(&self) -> Vec<(String, &'static str)> {
            self.controls
                .iter()
                .map(|c| (c.sender.clone(), c.body.name()))
                .collect()
        }
    }

    /// The last key in each member's events: (epoch, fingerprint, members).
    fn keys_in(
        events: &BTreeMap<String, Vec<SessionEvent>>,
    ) -> BTreeMap<String, (u64, String, Vec<String>)> {
        let mut out = BTreeMap::new();
        for (name, events) in events {
            for e in events {
                if let SessionEvent::KeyEstablished(k) = e {
                    out.insert(
                        name.clone(),
                        (k.epoch, k.fingerprint.clone(), k.members.clone()),
                    );
                }
            }
        }
        out
    }

    /// Asserts that exactly `members` report one key since the last call, the same
    /// key, of exactly those members, one epoch past `after`; returns its epoch.
    fn same_key(lab: &mut Lab, members: &[&str], after: u64) -> u64 {
        same_key_in(lab.keys(), members, after)
    }

    fn same_key_in(
        keys: BTreeMap<String, (u64, String, Vec<String>)>,
        members: &[&str],
        after: u64,
    ) -> u64 {
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert_eq!(names, members, "who reported a key");
        let first = keys.values().next().unwrap();
        for (who, key) in &keys {
            assert_eq!(key, first, "{who}'s key");
        }
        assert_eq!(first.2, members);
        assert_eq!(first.0, after + 1);
        first.0
    }

    fn announce(who: &str) -> (String, &'static str) {
        (who.into(), "announcement")
    }

    fn announce_for(who: &str) -> (String, &'static str) {
        (who.into(), "announcement for a keyed secure view")
    }

    #[test]
    fn a_join_or_merge_costs_one_announcement_per_keyed_secure_view_and_per_joiner() {
        let mut lab = Lab::new();
        for m in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            lab.add(m);
        }
        // A group starts with one member; then two join, who held no key: everyone
        // announces itself.
        lab.view(&["alice"]);
        assert_eq!(lab.said(), [announce("alice")]);
        let epoch = same_key(&mut lab, &["alice"], 0);
        lab.view(&["alice", "bob", "carol"]);
        assert_eq!(
            lab.said(),
            [announce("alice"), announce("bob"), announce("carol")]
        );
        let epoch = same_key(&mut lab, &["alice", "bob", "carol"], epoch);
        // dave joins: alice announces for the keyed secure view, dave for himself.
        lab.view(&["alice", "bob", "carol", "dave"]);
        assert_eq!(lab.said(), [announce_for("alice"), announce("dave")]);
        let epoch = same_key(&mut lab, &["alice", "bob", "carol", "dave"], epoch);
        // Another component keys on its own, at a lower epoch; then the two merge: one
        // announcement for each keyed secure view, and the merged key counts on from
        // the higher epoch.
        lab.view(&["erin"]);
        let other = same_key(&mut lab, &["erin"], 0);
        lab.view(&["erin", "frank"]);
        assert_eq!(lab.said(), [announce("erin"), announce("frank")]);
        same_key(&mut lab, &["erin", "frank"], other);
        lab.view(&["alice", "bob", "carol", "dave", "erin", "frank"]);
        assert_eq!(lab.said(), [announce_for("alice"), announce_for("erin")]);
        same_key(
            &mut lab,
            &["alice", "bob", "carol", "dave", "erin", "frank"],
            epoch,
        );
    }

    /// alice, bob and carol keyed together (alice alone first), and their epoch.
    fn keyed_three() -> (Lab, u64) {
        let mut lab = Lab::new();
        for m in ["alice", "bob", "carol", "dave"] {
            lab.add(m);
        }
        lab.view(&["alice"]);
        let epoch = same_key(&mut lab, &["alice"], 0);
        lab.view(&["alice", "bob", "carol"]);
        let epoch = same_key(&mut lab, &["alice", "bob", "carol"], epoch);
        (lab, epoch)
    }

    #[test]
    fn members_whose_oldest_is_stopped_announce_themselves_and_key_at_the_timeout() {
        let (mut lab, epoch) = keyed_three();
        // alice, who would announce for bob and carol, stops as dave joins.
        lab.stopped.insert("alice".into());
        lab.view(&["alice", "bob", "carol", "dave"]);
        assert_eq!(lab.said(), [announce("dave")]);
        assert!(lab.keys().is_empty());
        // Half-way to the timeout bob and carol announce themselves (dave says he is
        // alive); at the timeout the first cut leaves alice out, and the others key.
        let timeout = GroupSettings::default().agreement_timeout;
        lab.advance(timeout / 2);
        let said = lab.said();
        assert_eq!(said[1..3], [announce_for("bob"), announce_for("carol")]);
        assert!(lab.keys().is_empty());
        lab.advance(timeout / 2);
        same_key(&mut lab, &["bob", "carol", "dave"], epoch);
    }

    /// A raw control message on dave's connection in `view`, at `stage`, saying
    /// `body`; with a signature by a fresh key if `signed` (announcements carry none).
    fn dave_frame(lab: &Lab, view: ViewId, stage: u32, body: Body, signed: bool) -> Vec<u8> {
        let control = Control {
            group: GROUP.into(),
            view_id: view.to_bytes().to_vec(),
            stage,
            round: 0,
            sender: "dave".into(),
            body,
        };
        let provider = lab.provider();
        let key = provider.generate_signing_key("ed25519").unwrap();
        let signer = provider.signer("ed25519", key.expose()).unwrap();
        let mut sealed = control.seal(&signer).unwrap();
        if signed {
            // The empty signature's length, then a signature of the signed part.
            sealed.truncate(sealed.len() - 2);
            let signature = signer.sign(&sealed).unwrap();
            sealed.extend_from_slice(&u16::try_from(signature.len()).unwrap().to_be_bytes());
            sealed.extend_from_slice(&signature);
        }
        [&[tag::CONTROL][..], &sealed].concat()
    }

    /// A raw announcement from "dave" for `members`, with the default modules and
    /// `last_epoch`, and dave's previous view (none); signed if `signed`.
    fn announce_for_frame(
        lab: &Lab,
        view: ViewId,
        stage: u32,
        members: &[&str],
        last_epoch: u64,
        signed: bool,
    ) -> Vec<u8> {
        let body = Body::AnnounceFor {
            descriptor: GroupSettings::default().descriptor(&lab.registry),
            last_epoch,
            from_view: Vec::new(),
            members: members.iter().map(|m| m.to_string()).collect(),
        };
        dave_frame(lab, view, stage, body, signed)
    }

    /// The security errors in each member's events, as (sender, code).
    fn refusals_in(
        events: &BTreeMap<String, Vec<SessionEvent>>,
    ) -> BTreeMap<String, Vec<(Option<String>, String)>> {
        events
            .iter()
            .map(|(who, events)| {
                let refusals = events
                    .iter()
                    .filter_map(|e| match e {
                        SessionEvent::SecurityError { sender, error, .. } => {
                            Some((sender.clone(), error.code.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                (who.clone(), refusals)
            })
            .collect()
    }

    fn from_dave(code: ErrorCode) -> (Option<String>, String) {
        (Some("dave".to_string()), code.to_string())
    }

    #[test]
    fn malformed_announcements_for_a_keyed_secure_view_change_nothing() {
        let (mut lab, epoch) = keyed_three();
        // Raw frames on dave's connection (he joins; his key is trusted), delivered
        // before any member's own announcement.
        let frames = |lab: &Lab, view| {
            let frame = |stage, members: &[&str], signed| {
                announce_for_frame(lab, view, stage, members, 1 << 40, signed)
            };
            vec![
                // With a signature, where none belongs.
                ("dave", frame(0, &["dave"], true)),
                // For members of the keyed view, its sender not the first of them.
                ("dave", frame(0, &["alice", "bob", "carol", "dave"], false)),
                // Out of view order; with a name outside the view.
                ("dave", frame(0, &["dave", "alice"], false)),
                ("dave", frame(0, &["dave", "zed"], false)),
                // For a stage that has not begun.
                ("dave", frame(1, &["dave"], false)),
                // With the last epoch there is (no later key could be numbered).
                (
                    "dave",
                    announce_for_frame(lab, view, 0, &["dave"], u64::MAX, false),
                ),
            ]
        };
        let frames = frames(
            &lab,
            ViewId {
                counter: lab.view.counter + 1,
                ..lab.view
            },
        );
        lab.view_with(&["alice", "bob", "carol", "dave"], |_| frames);
        // Nothing waited for the timeout, nothing asked for a switch: everyone keyed
        // on the genuine announcements, at the epoch after the keyed view's (not the
        // frames' one), each reporting each kind of refusal once.
        assert_eq!(lab.said(), [announce_for("alice"), announce("dave")]);
        let events = lab.events();
        same_key_in(keys_in(&events), &["alice", "bob", "carol", "dave"], epoch);
        for (who, refusals) in refusals_in(&events) {
            assert_eq!(
                refusals,
                [
                    from_dave(ErrorCode::BAD_SIGNATURE),
                    from_dave(ErrorCode::BAD_MESSAGE),
                    from_dave(ErrorCode::OUT_OF_STEP),
                ],
                "{who}"
            );
        }
    }

    #[test]
    fn announced_epochs_at_or_past_the_limit_are_malformed() {
        let lab = Lab::new();
        let view = ViewId {
            origin: 1,
            counter: 1,
        };
        for (epoch, ok) in [
            (EPOCH_LIMIT - 1, true),
            (EPOCH_LIMIT, false),
            (u64::MAX, false),
        ] {
            let frame = announce_for_frame(&lab, view, 0, &["dave"], epoch, false);
            match Control::parse(&frame[1..]) {
                Ok(_) => assert!(ok, "{epoch}"),
                Err(e) => {
                    assert!(!ok, "{epoch}: {e}");
                    assert_eq!(e.code, ErrorCode::BAD_MESSAGE);
                }
            }
        }
    }

    /// An announcement from "dave" for himself alone, unsigned, saying these things.
    fn dave_said(
        lab: &Lab,
        view: ViewId,
        descriptor: Vec<u8>,
        last_epoch: u64,
        from_view: &[u8],
    ) -> Vec<u8> {
        let body = Body::AnnounceFor {
            descriptor,
            last_epoch,
            from_view: from_view.to_vec(),
            members: vec!["dave".into()],
        };
        dave_frame(lab, view, 0, body, false)
    }

    #[test]
    fn an_announcement_that_misstates_a_member_makes_it_ask_for_a_switch() {
        // Before anyone else's announcement, one on dave's connection says something
        // wrong of dave (a forger on his name; or a member that came by other views
        // than dave): his last epoch is 2^40; he runs other modules; he moved from a
        // view he never saw. It stands for everyone, so dave asks for a switch, and
        // everyone announces itself again: one more round, and the epoch does not move.
        let right = GroupSettings::default().descriptor(&Lab::new().registry);
        let mut other = right.clone();
        other.extend_from_slice(b"\ncipher=something-else");
        let lies: [(&str, Vec<u8>, u64, &[u8]); 3] = [
            ("epoch", right.clone(), 1 << 40, b""),
            ("modules", other, 0, b""),
            ("previous view", right, 0, b"a view dave never saw"),
        ];
        for (lie, descriptor, last_epoch, from_view) in lies {
            let (mut lab, epoch) = keyed_three();
            let view = ViewId {
                counter: lab.view.counter + 1,
                ..lab.view
            };
            let forged = dave_said(&lab, view, descriptor, last_epoch, from_view);
            lab.view_with(&["alice", "bob", "carol", "dave"], |_| {
                vec![("dave", forged)]
            });
            let said = lab.said();
            assert_eq!(
                said[..3],
                [
                    announce_for("alice"),
                    announce("dave"),
                    ("dave".to_string(), "switch")
                ],
                "{lie}"
            );
            let again: BTreeSet<_> = said[3..].iter().cloned().collect();
            let all = ["alice", "bob", "carol", "dave"];
            assert_eq!(again, all.iter().map(|m| announce(m)).collect(), "{lie}");
            let events = lab.events();
            same_key_in(keys_in(&events), &all, epoch);
            // Nothing in it was malformed (dave's own announcement came after the
            // stage closed, moot): no refusal.
            for (who, refusals) in refusals_in(&events) {
                assert!(refusals.is_empty(), "{lie}: {who}: {refusals:?}");
            }
        }
    }

    #[test]
    fn a_member_announced_for_with_a_reloaded_policy_asks_for_a_switch() {
        let (mut lab, epoch) = keyed_three();
        // bob reloads a policy that gives the group other modules, then dave joins.
        // alice announces for bob too (the modules they keyed with, which bob still
        // runs); bob asks for a switch at once, and in the next stage everyone
        // announces itself, bob with his new modules: he keys on his own, the others
        // without him, as a rollout does (docs/operations.md).
        let other = GroupSettings {
            cipher: "chacha20-poly1305".into(),
            cipher_algorithm: "chacha20-poly1305".into(),
            ..GroupSettings::default()
        };
        lab.layers
            .get_mut("bob")
            .unwrap()
            .reload_policy(Arc::new(FixedPolicy(other)));
        lab.view(&["alice", "bob", "carol", "dave"]);
        let said = lab.said();
        assert_eq!(
            said[..3],
            [
                announce_for("alice"),
                ("bob".to_string(), "switch"),
                announce("dave"),
            ],
            "{said:?}"
        );
        let again: BTreeSet<_> = said[3..].iter().cloned().collect();
        let all = ["alice", "bob", "carol", "dave"];
        assert_eq!(again, all.iter().map(|m| announce(m)).collect());
        let keys = lab.keys();
        let (bobs, others): (BTreeMap<_, _>, BTreeMap<_, _>) =
            keys.into_iter().partition(|(who, _)| who == "bob");
        same_key_in(bobs, &["bob"], epoch);
        same_key_in(others, &["alice", "carol", "dave"], epoch);
    }

    #[test]
    fn members_that_came_into_a_view_by_different_paths_switch_and_key_at_once() {
        let mut lab = Lab::new();
        for m in ["alice", "bob"] {
            lab.add(m);
        }
        lab.view(&["alice"]);
        let epoch = same_key(&mut lab, &["alice"], 0);
        lab.view(&["alice", "bob"]);
        let epoch = same_key(&mut lab, &["alice", "bob"], epoch);
        // bob goes through a view of his own that alice never sees (a partition that
        // healed before her engine noticed), and keys there alone.
        lab.view(&["bob"]);
        let bobs = same_key(&mut lab, &["bob"], epoch);
        // Back together: alice takes the fast path (nobody joined her view, everyone
        // was in her keyed secure view), bob sees her join and announces. His
        // announcement tells alice that they came by different paths: she asks for a
        // switch, both announce, and they key without waiting for the timeout.
        lab.view(&["alice", "bob"]);
        let said = lab.said();
        assert_eq!(
            said[..2],
            [announce("bob"), ("alice".to_string(), "switch")],
            "{said:?}"
        );
        let again: BTreeSet<_> = said[2..].iter().cloned().collect();
        assert_eq!(again, [announce("alice"), announce("bob")].into());
        same_key(&mut lab, &["alice", "bob"], bobs);
    }

    #[test]
    fn a_member_sending_ahead_keeps_its_share_of_early_messages_and_no_more() {
        let (mut alice, view) = alice_with(&["bob", "dave"]);
        let now = Instant::now();
        // dave sends 64 MiB ahead of an agreement that has not started.
        for _ in 0..256 {
            alice
                .handle_event(early("dave", view, 256 << 10), now)
                .unwrap();
        }
        assert_eq!(held(&alice)["dave"], EARLY_SENDER_BYTES);
        assert_eq!(errors(&mut alice), out_of_step(&["dave"]));
        // bob's message of the same round still finds room.
        alice
            .handle_event(early("bob", view, 300 << 10), now)
            .unwrap();
        assert_eq!(held(&alice)["bob"], 300 << 10);
        assert!(errors(&mut alice).is_empty());
    }

    #[test]
    fn early_messages_of_all_senders_stay_within_their_total() {
        let names: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        let others: Vec<&str> = names.iter().map(String::as_str).collect();
        let (mut alice, view) = alice_with(&others);
        let now = Instant::now();
        for name in &others {
            for _ in 0..4 {
                alice.handle_event(early(name, view, 1 << 20), now).unwrap();
            }
        }
        let held = held(&alice);
        assert_eq!(held.values().sum::<usize>(), EARLY_BYTES);
        // The first 16 senders' messages were kept whole, the rest refused, each
        // sender reported once.
        assert_eq!(held.len(), 16);
        assert_eq!(errors(&mut alice), out_of_step(&others[16..]));
    }
}
