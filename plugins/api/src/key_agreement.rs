//! Key-agreement plugins: per-member state machines that turn membership views and
//! protocol messages into actions.
//!
//! A key agreement does no I/O and reads no clock: the host (the secure-group core, a
//! simulator, a benchmark) feeds it every view of the group and every protocol message
//! addressed to the member, and carries out the [`Action`]s it returns. The same object
//! therefore runs unchanged on every group-communication engine.
//!
//! Rules every implementation keeps:
//!
//! * all arithmetic goes through the provider and DH group of the configuration;
//! * every message it sends is authenticated with the member's identity key and binds the
//!   group, the view, the epoch, the sender, the step, the protocol and
//!   [`KeyAgreementConfig::context`];
//! * a message that is forged, replayed, for another view, misrouted or out of step is
//!   refused with a typed error and leaves the state unchanged;
//! * a view that arrives during an agreement abandons it and starts over from that view;
//! * a key is reported ([`Action::KeyReady`]) only once the member knows that every other
//!   member of the view holds the same key (key confirmation).

use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RArc, RBox, ROption, RSlice, RStr, RString, RVec},
};

use crate::{
    Options, PluginError, PluginResult, SecretBytes,
    provider::{CryptoProviderArc, OpCounters},
};

/// An owned key-agreement object.
pub type KeyAgreementBox = KeyAgreement_TO<'static, RBox<()>>;
/// A shared trust store.
pub type TrustStoreArc = TrustStore_TO<'static, RArc<()>>;

/// Why the membership of a group changed.
#[repr(u8)]
#[derive(StableAbi, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ViewCause {
    /// One or more members joined.
    Join = 1,
    /// One or more members left voluntarily.
    Leave = 2,
    /// One or more members disconnected or crashed.
    Disconnect = 3,
    /// The network partitioned: the members on the other side are gone.
    Partition = 4,
    /// Components merged after a partition: several members joined at once.
    Merge = 5,
}

/// One view of a group's membership, as the group-communication engine delivered it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct MembershipView {
    /// The group's name.
    pub group: RString,
    /// The engine's identifier of this view: opaque, unique, compared for equality and
    /// bound into every protocol message.
    pub view_id: RVec<u8>,
    /// The members in join order, the oldest first.
    pub members: RVec<RString>,
    /// The members that are new in this view.
    pub joined: RVec<RString>,
    /// The members of the previous view that are not in this one.
    pub left: RVec<RString>,
    /// Why the view changed.
    pub cause: ViewCause,
}

/// A long-term public key that the trust store holds for a member.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// The signature algorithm (`ed25519`, ...).
    pub algorithm: RString,
    /// The encoded public key.
    pub public_key: RVec<u8>,
}

/// The host's answer to "which key authenticates this member?".
#[sabi_trait]
pub trait TrustStore: Send + Sync {
    /// The long-term key of `member`, if the member is trusted.
    #[sabi(last_prefix_field)]
    fn lookup(&self, member: RStr<'_>) -> ROption<TrustedKey>;
}

/// What a key-agreement constructor receives.
#[repr(C)]
#[derive(StableAbi)]
pub struct KeyAgreementConfig {
    /// The protocol asked for (`gdh`, `ckd`, ...).
    pub algorithm: RString,
    /// The group's name.
    pub group: RString,
    /// The local member's name, as the engine reports it in views.
    pub local_member: RString,
    /// The DH group to compute in (a name the provider offers).
    pub dh_group: RString,
    /// The provider of every primitive.
    pub provider: CryptoProviderArc,
    /// Length in bytes of the key to derive for the group's cipher.
    pub key_len: usize,
    /// The signature algorithm of identity keys.
    pub signature_algorithm: RString,
    /// The local member's long-term secret signing key.
    pub identity_key: SecretBytes,
    /// The long-term public keys of the other members.
    pub trust: TrustStoreArc,
    /// Bytes that every member must agree on and that every protocol message binds: the
    /// host puts there the group's modules, versions and parameters, so that members
    /// whose policies disagree detect it instead of deriving different keys.
    pub context: RVec<u8>,
    /// Protocol-specific options from the policy.
    pub options: Options,
}

/// A key that the whole view now shares.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct KeyReady {
    /// The epoch of the key: strictly increasing at each member.
    pub epoch: u64,
    /// The cipher key, `key_len` bytes.
    pub key: SecretBytes,
    /// The view the key belongs to.
    pub view_id: RVec<u8>,
    /// The members that hold the key, in join order.
    pub members: RVec<RString>,
}

/// What the host must do after feeding a key agreement.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug)]
pub enum Action {
    /// Send `payload` to one member of the group (FIFO, within the current view).
    Unicast {
        /// The receiver.
        to: RString,
        /// The protocol message.
        payload: RVec<u8>,
    },
    /// Send `payload` to every member of the group in agreed order, *this member
    /// included*: the host feeds the self-delivered copy back to `on_message`, in its
    /// place in the order. Protocols rely on it to know which of their own messages the
    /// view delivered (view synchrony then makes members that move together agree).
    Multicast {
        /// The protocol message.
        payload: RVec<u8>,
    },
    /// A new group key is ready.
    KeyReady(KeyReady),
    /// The agreement failed in a way the host should report (the input that caused it
    /// was still accepted, unlike an `Err` return).
    Failure(PluginError),
}

/// Counters of a key-agreement object: the provider's operations plus its messages.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Default, Debug, PartialEq, Eq)]
pub struct KeyAgreementStats {
    /// The primitives used, as counted by the provider.
    pub crypto: OpCounters,
    /// Unicast messages sent.
    pub unicasts: u64,
    /// Multicast messages sent.
    pub multicasts: u64,
    /// Bytes of protocol messages sent.
    pub bytes_sent: u64,
    /// Protocol messages received and accepted.
    pub messages_accepted: u64,
    /// Protocol messages refused.
    pub messages_rejected: u64,
    /// Keys reported.
    pub keys: u64,
}

/// A per-member key-agreement state machine.
#[sabi_trait]
pub trait KeyAgreement: Send {
    /// The protocol's canonical name.
    fn algorithm(&self) -> RString;

    /// A new view of the group (the first one includes the local member as a joiner).
    fn on_view(&mut self, view: &MembershipView) -> PluginResult<RVec<Action>>;

    /// A protocol message from `sender`, received in the current view.
    fn on_message(
        &mut self,
        sender: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> PluginResult<RVec<Action>>;

    /// Asks for a new key without a membership change (if this member may start one).
    fn refresh(&mut self) -> PluginResult<RVec<Action>>;

    /// The counters of this object.
    #[sabi(last_prefix_field)]
    fn stats(&self) -> KeyAgreementStats;
}

/// Another handle to the same trust store.
pub fn share_trust_store(trust: &TrustStoreArc) -> TrustStoreArc {
    TrustStore_TO::from_sabi(trust.obj.shallow_clone())
}

impl Clone for KeyAgreementConfig {
    fn clone(&self) -> Self {
        Self {
            algorithm: self.algorithm.clone(),
            group: self.group.clone(),
            local_member: self.local_member.clone(),
            dh_group: self.dh_group.clone(),
            provider: crate::provider::share_provider(&self.provider),
            key_len: self.key_len,
            signature_algorithm: self.signature_algorithm.clone(),
            identity_key: self.identity_key.clone(),
            trust: share_trust_store(&self.trust),
            context: self.context.clone(),
            options: self.options.clone(),
        }
    }
}
