//! Building blocks for key-agreement plugins: what every protocol shares, so that a
//! protocol plugin (`gdh`, `ckd`, ...) is only its arithmetic and its state machine.
//!
//! * [`Envelope`]: the signed wire format of protocol messages. Every message binds the
//!   protocol, the group, the view id, the run (the agreement's number within the view),
//!   the step, the sender, the receiver (none for a multicast), a hash of the protocol's
//!   parameters and the host's context, and an epoch; the signature covers all of it.
//!   A protocol's key confirmations ([`Session::with_mac_confirmation`]) carry an empty
//!   signature instead: their MAC under the new key covers every field.
//! * [`Session`]: one member's identity, trust store, provider, current view and replay
//!   memory. [`Session::open`] checks a received message in a fixed order and returns
//!   a typed error for each way it can be wrong; [`Session::seal`] makes the action that
//!   sends one.
//! * [`KeySchedule`]: group secret to cipher key and key-confirmation key (HKDF-SHA256
//!   over the group, epoch, view and members), and [`Confirmation`]: the key-confirmation
//!   round, after which a key may be reported.
//! * [`MapTrustStore`]: a simple trust store (member name to public key) for hosts and
//!   tests.
//!
//! # Wire format (version 1)
//!
//! ```text
//! "CKA" 0x01
//! u8 len, protocol        u16 len, group          u16 len, view id
//! u32 run                 u8 step                 u8 len, sender
//! u8 len, receiver (0 = multicast)                32 bytes, parameters hash
//! u64 epoch               u32 len, body           u16 len, signature
//! ```
//!
//! All integers are big-endian. The signature is over `"conclave/ka/v1\0"` followed by
//! every byte before the signature's length.

use std::collections::{BTreeMap, HashSet};

use abi_stable::{
    sabi_trait::prelude::TD_Opaque,
    std_types::{RArc, ROption, RStr},
};
use conclave_plugin_api::{
    ErrorCode, PluginError, SecretBytes, abi_stable,
    key_agreement::{
        Action, KeyAgreementConfig, KeyAgreementStats, KeyReady, MembershipView, TrustStore,
        TrustStore_TO, TrustStoreArc, TrustedKey,
    },
    provider::share_provider,
};

use crate::host::{DhGroup, Mac, Provider, Signer};

type Result<T> = std::result::Result<T, PluginError>;

const MAGIC: &[u8; 4] = b"CKA\x01";
const SIGN_DOMAIN: &[u8] = b"conclave/ka/v1\0";
/// Epochs in messages must stay below this: no group makes 2^63 keys, and the `+ 1` of a
/// new key's epoch can then never overflow. A member that announced one at or past it
/// (an insider pushing the group's epoch to the end of the range, where no later key
/// could be numbered) is refused with `BAD_MESSAGE`.
pub const EPOCH_LIMIT: u64 = 1 << 63;
/// The KDF every key schedule uses.
pub const KDF: &str = "hkdf-sha256";
/// The MAC of key confirmation.
pub const CONFIRM_MAC: &str = "hmac-sha256";
/// The hash of transcripts and parameters.
pub const HASH: &str = "sha256";

fn err(code: ErrorCode, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

// ---------------------------------------------------------------------------------------
// Trust store

/// A trust store backed by a map from member name to long-term public key. Clones share
/// the map: a key inserted later is seen by every state machine already holding the
/// store (as when a host reloads its trust directory).
#[derive(Debug, Clone, Default)]
pub struct MapTrustStore {
    keys: std::sync::Arc<std::sync::RwLock<BTreeMap<String, TrustedKey>>>,
}

impl MapTrustStore {
    /// An empty store: it trusts nobody.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `public_key` (of signature `algorithm`) for `member`, replacing any key it
    /// had.
    pub fn insert(&self, member: &str, algorithm: &str, public_key: &[u8]) {
        let key = TrustedKey {
            algorithm: algorithm.into(),
            public_key: public_key.to_vec().into(),
        };
        // A poisoned lock only means a panic elsewhere while inserting: the map itself is
        // still a valid map.
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.insert(member.to_string(), key);
    }

    /// The key trusted for `member`, if any.
    pub fn lookup_key(&self, member: &str) -> Option<TrustedKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(member).cloned()
    }

    /// How many members are trusted.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces every trusted key by those of `keys` (as after reloading a trust
    /// directory): state machines holding the store see the new set at once.
    pub fn replace_all<'a>(&self, keys: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) {
        let mut fresh = BTreeMap::new();
        for (member, algorithm, public_key) in keys {
            fresh.insert(
                member.to_string(),
                TrustedKey {
                    algorithm: algorithm.into(),
                    public_key: public_key.to_vec().into(),
                },
            );
        }
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        *current = fresh;
    }

    /// Stops trusting `member`.
    pub fn remove(&self, member: &str) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.remove(member);
    }

    /// The store as an ABI object to put in a [`KeyAgreementConfig`].
    pub fn into_abi(self) -> TrustStoreArc {
        TrustStore_TO::from_ptr(RArc::new(self), TD_Opaque)
    }
}

impl TrustStore for MapTrustStore {
    fn lookup(&self, member: RStr<'_>) -> ROption<TrustedKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(member.as_str()).cloned().into()
    }
}

// ---------------------------------------------------------------------------------------
// Wire format

/// A protocol message, before signing or after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The protocol's name (`gdh`, `ckd`, ...).
    pub protocol: String,
    /// The group.
    pub group: String,
    /// The view the message belongs to.
    pub view_id: Vec<u8>,
    /// The agreement's number within the view (0 for the view's own agreement, then one
    /// more for each refresh).
    pub run: u32,
    /// The protocol step.
    pub step: u8,
    /// The sender.
    pub sender: String,
    /// The receiver of a unicast; `None` for a multicast.
    pub to: Option<String>,
    /// Hash of the protocol's parameters and the host's context.
    pub params: [u8; 32],
    /// An epoch: its meaning is the step's (the sender's latest, or the new key's).
    pub epoch: u64,
    /// The step's payload.
    pub body: Vec<u8>,
}

/// A cursor over received bytes that fails with `BAD_MESSAGE`, never panics.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`; errors name `what` (the message kind).
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn short(&self) -> PluginError {
        err(
            ErrorCode::BAD_MESSAGE,
            format!("{}: truncated message", self.what),
        )
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// Bytes prefixed by a `u8` length.
    pub fn bytes8(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// Bytes prefixed by a `u16` length.
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// Bytes prefixed by a `u32` length.
    pub fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A UTF-8 string prefixed by a `u8` length.
    pub fn str8(&mut self) -> Result<String> {
        let what = self.what;
        String::from_utf8(self.bytes8()?.to_vec()).map_err(|_| {
            err(
                ErrorCode::BAD_MESSAGE,
                format!("{what}: a name is not UTF-8"),
            )
        })
    }

    /// A list of names: `u16` count, then each as [`Reader::str8`].
    pub fn names(&mut self) -> Result<Vec<String>> {
        let n = self.u16()? as usize;
        (0..n).map(|_| self.str8()).collect()
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(err(
                ErrorCode::BAD_MESSAGE,
                format!("{}: {} trailing bytes", self.what, self.buf.len()),
            ))
        }
    }
}

/// Builds messages; lengths that do not fit their prefix are an `INVALID_ARGUMENT`
/// error, never a truncation.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    fn too_long(what: &str, len: usize) -> PluginError {
        PluginError::invalid_argument(format!("{what} of {len} bytes is too long to encode"))
    }

    /// Appends bytes with a `u8` length.
    pub fn bytes8(&mut self, b: &[u8]) -> Result<&mut Self> {
        let n = u8::try_from(b.len()).map_err(|_| Self::too_long("a name", b.len()))?;
        Ok(self.u8(n).raw(b))
    }

    /// Appends bytes with a `u16` length.
    pub fn bytes16(&mut self, b: &[u8]) -> Result<&mut Self> {
        let n = u16::try_from(b.len()).map_err(|_| Self::too_long("a field", b.len()))?;
        Ok(self.u16(n).raw(b))
    }

    /// Appends bytes with a `u32` length.
    pub fn bytes32(&mut self, b: &[u8]) -> Result<&mut Self> {
        let n = u32::try_from(b.len()).map_err(|_| Self::too_long("a body", b.len()))?;
        Ok(self.u32(n).raw(b))
    }

    /// Appends a list of names.
    pub fn names<S: AsRef<str>>(&mut self, names: &[S]) -> Result<&mut Self> {
        let n = u16::try_from(names.len()).map_err(|_| Self::too_long("a list", names.len()))?;
        self.u16(n);
        for name in names {
            self.bytes8(name.as_ref().as_bytes())?;
        }
        Ok(self)
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

impl Envelope {
    fn signed_part(&self) -> Result<Vec<u8>> {
        self.encode_with_body(&self.body)
    }

    /// The message on the wire, signed by `signer` as a member signs its own (a test
    /// or tool that acts as an insider builds its messages with this).
    pub fn sign(&self, signer: &Signer) -> Result<Vec<u8>> {
        let mut bytes = self.signed_part()?;
        let signature = signer.sign(&[SIGN_DOMAIN, &bytes].concat())?;
        let sig_len = u16::try_from(signature.len())
            .map_err(|_| PluginError::invalid_argument("signature too long"))?;
        bytes.extend_from_slice(&sig_len.to_be_bytes());
        bytes.extend_from_slice(&signature);
        Ok(bytes)
    }

    /// Every field but the body, as encoded before the signature (with an empty body):
    /// what a key-confirmation MAC covers besides the transcript.
    pub fn header(&self) -> Result<Vec<u8>> {
        self.encode_with_body(&[])
    }

    fn encode_with_body(&self, body: &[u8]) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.bytes8(self.protocol.as_bytes())?;
        w.bytes16(self.group.as_bytes())?;
        w.bytes16(&self.view_id)?;
        w.u32(self.run).u8(self.step);
        w.bytes8(self.sender.as_bytes())?;
        w.bytes8(self.to.as_deref().unwrap_or("").as_bytes())?;
        w.raw(&self.params).u64(self.epoch);
        w.bytes32(body)?;
        Ok(w.finish())
    }

    /// Parses a message without checking anything but its syntax. Returns the envelope,
    /// the signed bytes and the signature.
    pub fn parse(bytes: &[u8]) -> Result<(Envelope, &[u8], &[u8])> {
        let mut r = Reader::new(bytes, "key-agreement message");
        if r.take(4)? != MAGIC {
            return Err(err(
                ErrorCode::BAD_MESSAGE,
                "not a key-agreement message of wire version 1",
            ));
        }
        let protocol = r.str8()?;
        let group = String::from_utf8(r.bytes16()?.to_vec())
            .map_err(|_| err(ErrorCode::BAD_MESSAGE, "group name is not UTF-8"))?;
        let view_id = r.bytes16()?.to_vec();
        let run = r.u32()?;
        let step = r.u8()?;
        let sender = r.str8()?;
        let to = r.str8()?;
        let mut params = [0u8; 32];
        params.copy_from_slice(r.take(32)?);
        let epoch = r.u64()?;
        if epoch >= EPOCH_LIMIT {
            return Err(err(
                ErrorCode::BAD_MESSAGE,
                format!("key-agreement message with epoch {epoch}, past the limit 2^63"),
            ));
        }
        let body = r.bytes32()?.to_vec();
        let signed_len = bytes.len() - r.buf.len();
        let signature = r.bytes16()?;
        r.finish()?;
        Ok((
            Envelope {
                protocol,
                group,
                view_id,
                run,
                step,
                sender,
                to: (!to.is_empty()).then_some(to),
                params,
                epoch,
                body,
            },
            &bytes[..signed_len],
            signature,
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Session

/// Message counters of a key-agreement object (the provider counts the rest).
#[derive(Debug, Default, Clone, Copy)]
struct MessageStats {
    unicasts: u64,
    multicasts: u64,
    bytes_sent: u64,
    accepted: u64,
    rejected: u64,
    keys: u64,
}

/// The current view, as a member sees it.
///
/// Made by the [`Session`] (or [`ViewInfo::new`]), which indexes the member lists by
/// name: [`ViewInfo::contains`], [`ViewInfo::rank`] and [`ViewInfo::was_member`] are
/// binary searches, so a protocol that asks about every member of a large group does not
/// go quadratic. The lists are public to read; changed afterwards, the index would not
/// follow.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    /// The view as the engine delivered it.
    pub view: MembershipView,
    /// The members, in join order (oldest first).
    pub members: Vec<String>,
    /// The members of this member's previous view (empty for its first view).
    pub previous: Vec<String>,
    /// Positions in `members`, sorted by name.
    by_name: Vec<u32>,
    /// Positions in `previous`, sorted by name.
    previous_by_name: Vec<u32>,
}

/// The positions of `names`, sorted by name.
fn index_by_name(names: &[String]) -> Vec<u32> {
    let mut index: Vec<u32> = (0..names.len())
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    index.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
    index
}

/// The position of `name` in `names`, through their index.
fn find(names: &[String], index: &[u32], name: &str) -> Option<usize> {
    index
        .binary_search_by(|&i| names[i as usize].as_str().cmp(name))
        .ok()
        .map(|at| index[at] as usize)
}

impl ViewInfo {
    /// A view with its members (join order) and this member's previous members.
    pub fn new(view: MembershipView, members: Vec<String>, previous: Vec<String>) -> Self {
        Self {
            by_name: index_by_name(&members),
            previous_by_name: index_by_name(&previous),
            view,
            members,
            previous,
        }
    }

    /// The oldest member.
    pub fn oldest(&self) -> &str {
        self.members.first().map(String::as_str).unwrap_or("")
    }

    /// The newest member.
    pub fn newest(&self) -> &str {
        self.members.last().map(String::as_str).unwrap_or("")
    }

    /// Whether `m` is a member.
    pub fn contains(&self, m: &str) -> bool {
        self.rank(m).is_some()
    }

    /// Position of `m` in join order.
    pub fn rank(&self, m: &str) -> Option<usize> {
        find(&self.members, &self.by_name, m)
    }

    /// Whether `m` was a member of this member's previous view.
    pub fn was_member(&self, m: &str) -> bool {
        find(&self.previous, &self.previous_by_name, m).is_some()
    }

    /// Whether this member came into the view together with the oldest member, i.e.
    /// belongs to the oldest member's component (the base group of the agreement).
    ///
    /// View synchrony makes this consistent: members that move together from one view to
    /// the next had the same previous view and delivered the same messages in it.
    pub fn with_oldest(&self) -> bool {
        self.previous.iter().any(|m| m == self.oldest())
    }

    /// The members that came from this member's previous view (the base group, when
    /// [`with_oldest`](Self::with_oldest) holds), in join order.
    pub fn stayed(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| self.was_member(m))
            .cloned()
            .collect()
    }
}

/// One member's side of a key agreement: identity, peers' keys, provider, current view,
/// replay memory and counters.
pub struct Session {
    protocol: &'static str,
    group: String,
    me: String,
    provider: Provider,
    dh: DhGroup,
    signer: Signer,
    signature_algorithm: String,
    trust: TrustStoreArc,
    params: [u8; 32],
    key_len: usize,
    view: Option<ViewInfo>,
    run: u32,
    seen: HashSet<(String, u32, u8)>,
    /// The MAC-authenticated messages accepted in the current view (their bytes before
    /// the empty signature, a header and a MAC, about 150 bytes each): they are told
    /// apart by content, not by (sender, run, step), because one that came before the
    /// key is held unchecked and must not shut out the genuine one (docs/protocols.md).
    seen_mac: HashSet<Vec<u8>>,
    /// The current view's members, for a membership check per message in O(1).
    member_set: HashSet<String>,
    /// Hashes of the multicasts this member sent in the current view (checked on their
    /// self-delivery instead of a signature verification).
    sent: HashSet<Vec<u8>>,
    stats: MessageStats,
    last_epoch: u64,
    /// The step whose messages carry a key-confirmation MAC instead of a signature.
    mac_step: Option<u8>,
}

impl Session {
    /// A session for `config`, of the protocol `protocol`. `extra_params` are the
    /// protocol's own parameters (options), bound into every message with the DH group,
    /// key length, signature algorithm and the host's context.
    pub fn new(
        protocol: &'static str,
        config: &KeyAgreementConfig,
        extra_params: &[u8],
    ) -> Result<Self> {
        let provider = Provider::from_abi(share_provider(&config.provider));
        let dh = provider.dh_group(config.dh_group.as_str())?;
        let signer = provider.signer(
            config.signature_algorithm.as_str(),
            config.identity_key.expose(),
        )?;
        if config.key_len == 0 || config.key_len > 64 {
            return Err(PluginError::invalid_argument(format!(
                "{protocol}: key length {} is not in 1..=64",
                config.key_len
            )));
        }
        let key_len = (config.key_len as u64).to_be_bytes();
        let params_vec = provider.hash(
            HASH,
            &[
                b"conclave/ka/params/v2\0",
                protocol.as_bytes(),
                b"\0",
                config.dh_group.as_bytes(),
                b"\0",
                config.signature_algorithm.as_bytes(),
                b"\0",
                &key_len,
                extra_params,
                b"\0",
                config.context.as_slice(),
            ],
        )?;
        let mut params = [0u8; 32];
        params.copy_from_slice(
            params_vec
                .get(..32)
                .ok_or_else(|| err(ErrorCode::BACKEND, "sha256 returned fewer than 32 bytes"))?,
        );
        Ok(Self {
            protocol,
            group: config.group.to_string(),
            me: config.local_member.to_string(),
            provider,
            dh,
            signer,
            signature_algorithm: config.signature_algorithm.to_string(),
            trust: crate::api::key_agreement::share_trust_store(&config.trust),
            params,
            key_len: config.key_len,
            view: None,
            run: 0,
            seen: HashSet::new(),
            seen_mac: HashSet::new(),
            member_set: Default::default(),
            sent: HashSet::new(),
            stats: MessageStats::default(),
            last_epoch: 0,
            mac_step: None,
        })
    }

    /// Declares `step` as the protocol's key-confirmation step: its messages are sent
    /// without a signature (an empty signature field), and [`open`](Self::open) checks no
    /// signature on them, because [`Phase::confirm`] / [`Phase::on_confirm`] authenticate
    /// them by their MAC under the new key's confirmation key, which covers every field of
    /// the envelope. This saves one signature per member and `n - 1` verifications at
    /// every member per agreement; the price is that a member holding the new key could
    /// forge another member's confirmation (docs/protocols.md). Without this call every
    /// message is signed.
    pub fn with_mac_confirmation(mut self, step: u8) -> Self {
        self.mac_step = Some(step);
        self
    }

    /// The envelope of a message of the current view and run.
    fn envelope(&self, step: u8, to: Option<&str>, epoch: u64, body: Vec<u8>) -> Result<Envelope> {
        Ok(Envelope {
            protocol: self.protocol.to_string(),
            group: self.group.clone(),
            view_id: self.current()?.view.view_id.to_vec(),
            run: self.run,
            step,
            sender: self.me.clone(),
            to: to.map(str::to_string),
            params: self.params,
            epoch,
            body,
        })
    }

    /// This member's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The DH group.
    pub fn dh(&self) -> &DhGroup {
        &self.dh
    }

    /// The hash of the parameters every message binds.
    pub fn params(&self) -> &[u8; 32] {
        &self.params
    }

    /// The current view, if any.
    pub fn view(&self) -> Option<&ViewInfo> {
        self.view.as_ref()
    }

    /// The current view, or an error if none was installed.
    pub fn current(&self) -> Result<&ViewInfo> {
        self.view.as_ref().ok_or_else(|| {
            err(
                ErrorCode::OUT_OF_STEP,
                format!("{}: no view yet", self.protocol),
            )
        })
    }

    /// The current run within the view.
    pub fn run(&self) -> u32 {
        self.run
    }

    /// The epoch of the last key reported (0 before the first).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// Installs a new view: forgets the replay memory of the old one and starts at run 0.
    /// Fails if the view does not list this member, or lists someone twice.
    pub fn install_view(&mut self, view: &MembershipView) -> Result<&ViewInfo> {
        if view.group.as_str() != self.group {
            return Err(err(
                ErrorCode::MISROUTED,
                format!(
                    "{}: view of group {:?}, not {:?}",
                    self.protocol,
                    view.group.as_str(),
                    self.group
                ),
            ));
        }
        let members: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
        let unique: HashSet<&String> = members.iter().collect();
        if unique.len() != members.len() {
            return Err(PluginError::invalid_argument(format!(
                "{}: the view lists a member twice",
                self.protocol
            )));
        }
        if !members.contains(&self.me) {
            return Err(err(
                ErrorCode::NOT_A_MEMBER,
                format!("{}: the view does not include {}", self.protocol, self.me),
            ));
        }
        let previous = self.view.take().map(|v| v.members).unwrap_or_default();
        self.run = 0;
        self.seen.clear();
        self.seen_mac.clear();
        self.member_set = members.iter().cloned().collect();
        self.sent.clear();
        Ok(self
            .view
            .insert(ViewInfo::new(view.clone(), members, previous)))
    }

    /// Checks that this member may start a refresh now: it holds a key of the current
    /// view (`keyed_view` is the view of its last key), no agreement is under way, and it
    /// is the `controller` unless `anyone` may refresh. Each refusal is `OUT_OF_STEP`.
    pub fn may_refresh(
        &self,
        keyed_view: Option<&[u8]>,
        idle: bool,
        controller: &str,
        anyone: bool,
    ) -> Result<()> {
        let p = self.protocol;
        let current = self.current()?.view.view_id.as_slice();
        if keyed_view != Some(current) {
            return Err(err(
                ErrorCode::OUT_OF_STEP,
                format!("{p}: no key of the current view to refresh yet"),
            ));
        }
        if !idle {
            return Err(err(
                ErrorCode::OUT_OF_STEP,
                format!("{p}: an agreement is under way; refresh after it"),
            ));
        }
        if !anyone && controller != self.me {
            return Err(err(
                ErrorCode::OUT_OF_STEP,
                format!("{p}: only the controller ({controller}) may refresh"),
            ));
        }
        Ok(())
    }

    /// Moves to the next run of the same view (a refresh).
    pub fn next_run(&mut self) {
        self.run += 1;
    }

    /// Signs a message of the current view and run, counts it, and returns the action that
    /// sends it (a unicast to `to`, or a multicast).
    pub fn seal(
        &mut self,
        step: u8,
        to: Option<&str>,
        epoch: u64,
        body: Vec<u8>,
    ) -> Result<Action> {
        let env = self.envelope(step, to, epoch, body)?;
        let bytes = if self.mac_step == Some(step) {
            // A key confirmation: its MAC is in the body, its signature empty.
            let mut bytes = env.signed_part()?;
            bytes.extend_from_slice(&0u16.to_be_bytes());
            bytes
        } else {
            env.sign(&self.signer)?
        };
        self.stats.bytes_sent += bytes.len() as u64;
        Ok(match to {
            Some(to) => {
                self.stats.unicasts += 1;
                Action::Unicast {
                    to: to.into(),
                    payload: bytes.into(),
                }
            }
            None => {
                self.stats.multicasts += 1;
                let digest = self.provider.hash(HASH, &[&bytes])?;
                self.sent.insert(digest);
                Action::Multicast {
                    payload: bytes.into(),
                }
            }
        })
    }

    /// Checks a received message, in this order, each failure with its own code:
    /// syntax (`BAD_MESSAGE`); protocol, parameters and context (`PARAMETER_MISMATCH`);
    /// group (`MISROUTED`); the claimed sender is the one the engine reports
    /// (`BAD_MESSAGE`); view (`STALE_VIEW`); receiver (`MISROUTED`); sender in the view
    /// (`NOT_A_MEMBER`); sender trusted (`UNTRUSTED_SENDER`); signature
    /// (`BAD_SIGNATURE`); run (`OUT_OF_STEP`); not seen before (`REPLAYED_MESSAGE`).
    ///
    /// `run_ahead` allows a message of the next run (a refresh that another member
    /// started). The caller decides whether the step fits its state, then calls
    /// [`accepted`](Self::accepted) or [`rejected`](Self::rejected). Nothing changes here
    /// but the rejection counter.
    pub fn open(&mut self, sender: &str, bytes: &[u8], run_ahead: bool) -> Result<Envelope> {
        let r = self.check(sender, bytes, run_ahead);
        if r.is_err() {
            self.stats.rejected += 1;
        }
        r
    }

    fn check(&self, sender: &str, bytes: &[u8], run_ahead: bool) -> Result<Envelope> {
        let p = self.protocol;
        let (env, signed, signature) = Envelope::parse(bytes)?;
        if env.protocol != self.protocol {
            return Err(err(
                ErrorCode::PARAMETER_MISMATCH,
                format!(
                    "{p}: message of protocol {:?}: members disagree on the protocol",
                    env.protocol
                ),
            ));
        }
        if env.group != self.group {
            return Err(err(
                ErrorCode::MISROUTED,
                format!("{p}: message for group {:?}", env.group),
            ));
        }
        if env.params != self.params {
            return Err(err(
                ErrorCode::PARAMETER_MISMATCH,
                format!(
                    "{p}: {} uses other parameters (DH group, key length, signature algorithm, options or the group's modules differ)",
                    env.sender
                ),
            ));
        }
        if env.sender != sender {
            return Err(err(
                ErrorCode::BAD_MESSAGE,
                format!(
                    "{p}: message claims sender {:?} but came from {sender:?}",
                    env.sender
                ),
            ));
        }
        let view = self.current()?;
        if env.view_id.as_slice() != view.view.view_id.as_slice() {
            return Err(err(
                ErrorCode::STALE_VIEW,
                format!("{p}: message of another view from {sender}"),
            ));
        }
        if let Some(to) = &env.to
            && to != &self.me
        {
            return Err(err(
                ErrorCode::MISROUTED,
                format!("{p}: unicast for {to}, delivered to {}", self.me),
            ));
        }
        if !self.member_set.contains(sender) {
            return Err(err(
                ErrorCode::NOT_A_MEMBER,
                format!("{p}: {sender} is not a member of the view"),
            ));
        }
        if sender == self.me {
            // Self-delivery of a multicast: it must be one this member sent in this view.
            let digest = self.provider.hash(HASH, &[bytes])?;
            if !self.sent.contains(&digest) {
                return Err(err(
                    ErrorCode::BAD_SIGNATURE,
                    format!("{p}: a message in this member's name that it did not send"),
                ));
            }
        } else if self.mac_step == Some(env.step) {
            // Authenticated by the protocol's confirmation MAC; a signature here would be
            // a message of another wire format.
            if !signature.is_empty() {
                return Err(err(
                    ErrorCode::BAD_SIGNATURE,
                    format!("{p}: a key confirmation from {sender} carries a signature"),
                ));
            }
        } else {
            self.verify_signature(sender, signed, signature)?;
        }
        let run_ok = env.run == self.run || (run_ahead && env.run == self.run + 1);
        if !run_ok {
            return Err(err(
                ErrorCode::OUT_OF_STEP,
                format!(
                    "{p}: message of run {} from {sender}, this member is at run {}",
                    env.run, self.run
                ),
            ));
        }
        let replayed = if self.mac_step == Some(env.step) {
            self.seen_mac.contains(signed)
        } else {
            self.seen.contains(&(env.sender.clone(), env.run, env.step))
        };
        if replayed {
            return Err(err(
                ErrorCode::REPLAYED_MESSAGE,
                format!(
                    "{p}: step {} of run {} from {sender} was already received",
                    env.step, env.run
                ),
            ));
        }
        Ok(env)
    }

    fn verify_signature(&self, sender: &str, signed: &[u8], signature: &[u8]) -> Result<()> {
        let p = self.protocol;
        let key = match self.trust.lookup(RStr::from_str(sender)) {
            ROption::RSome(k) => k,
            ROption::RNone => {
                return Err(err(
                    ErrorCode::UNTRUSTED_SENDER,
                    format!("{p}: no trusted key for {sender}"),
                ));
            }
        };
        if key.algorithm.as_str() != self.signature_algorithm {
            return Err(err(
                ErrorCode::UNTRUSTED_SENDER,
                format!(
                    "{p}: {sender}'s trusted key is {}, the group uses {}",
                    key.algorithm, self.signature_algorithm
                ),
            ));
        }
        self.provider
            .verify(
                &self.signature_algorithm,
                &key.public_key,
                &[SIGN_DOMAIN, signed].concat(),
                signature,
            )
            .map_err(|e| {
                err(
                    ErrorCode::BAD_SIGNATURE,
                    format!(
                        "{p}: message from {sender} fails its signature: {}",
                        e.message
                    ),
                )
            })
    }

    /// Records that the protocol accepted `env` (a replay of it will be refused).
    pub fn accepted(&mut self, env: &Envelope) {
        if self.mac_step == Some(env.step) {
            // The same bytes `open` read (the encoding is canonical).
            if let Ok(signed) = env.signed_part() {
                self.seen_mac.insert(signed);
            }
        } else {
            self.seen.insert((env.sender.clone(), env.run, env.step));
        }
        self.stats.accepted += 1;
    }

    /// Records that the protocol refused a message that passed [`open`](Self::open).
    pub fn rejected(&mut self) {
        self.stats.rejected += 1;
    }

    /// An `OUT_OF_STEP` error for a step that does not fit the state.
    pub fn out_of_step(&self, env: &Envelope, expecting: &str) -> PluginError {
        err(
            ErrorCode::OUT_OF_STEP,
            format!(
                "{}: step {} from {} does not fit: this member is {expecting}",
                self.protocol, env.step, env.sender
            ),
        )
    }

    /// Validates a received group element (`INVALID_ELEMENT` names the sender).
    pub fn validate(&self, element: &[u8], from: &str) -> Result<()> {
        self.dh.validate_element(element).map_err(|e| {
            err(
                e.code,
                format!(
                    "{}: invalid element from {from}: {}",
                    self.protocol, e.message
                ),
            )
        })
    }

    /// The key schedule for a group secret of the current view.
    pub fn schedule(&self, secret: &[u8], epoch: u64, members: &[String]) -> Result<KeySchedule> {
        let view = self.current()?;
        let mut info = Writer::new();
        info.bytes8(self.protocol.as_bytes())?;
        info.bytes16(self.group.as_bytes())?;
        info.u64(epoch);
        info.bytes16(&view.view.view_id)?;
        info.names(members)?;
        info.raw(&self.params);
        let info = info.finish();
        let okm = self.provider.hkdf(
            KDF,
            b"conclave/ka/key-schedule/v1",
            secret,
            &info,
            self.key_len + 32,
        )?;
        let (key, confirm) = okm.expose().split_at(self.key_len);
        Ok(KeySchedule {
            epoch,
            key: SecretBytes::copy_from(key),
            confirm_key: SecretBytes::copy_from(confirm),
            members: members.to_vec(),
        })
    }

    /// Reports a confirmed key and remembers its epoch.
    pub fn key_ready(&mut self, schedule: KeySchedule) -> Result<Action> {
        let view = self.current()?;
        if schedule.epoch <= self.last_epoch {
            return Err(err(
                ErrorCode::INTERNAL,
                format!(
                    "{}: epoch {} is not after {}",
                    self.protocol, schedule.epoch, self.last_epoch
                ),
            ));
        }
        let action = Action::KeyReady(KeyReady {
            epoch: schedule.epoch,
            key: schedule.key.clone(),
            view_id: view.view.view_id.clone(),
            members: schedule.members.iter().map(|m| m.as_str().into()).collect(),
        });
        self.last_epoch = schedule.epoch;
        self.stats.keys += 1;
        Ok(action)
    }

    /// The counters: the provider's plus this session's messages and keys.
    pub fn stats(&self) -> KeyAgreementStats {
        KeyAgreementStats {
            crypto: self.provider.counters(),
            unicasts: self.stats.unicasts,
            multicasts: self.stats.multicasts,
            bytes_sent: self.stats.bytes_sent,
            messages_accepted: self.stats.accepted,
            messages_rejected: self.stats.rejected,
            keys: self.stats.keys,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Key schedule and confirmation

/// The keys derived from one group secret.
#[derive(Debug, Clone)]
pub struct KeySchedule {
    /// The key's epoch.
    pub epoch: u64,
    /// The cipher key.
    pub key: SecretBytes,
    /// The key of the confirmation MACs (never used for anything else).
    pub confirm_key: SecretBytes,
    /// The members that share it.
    pub members: Vec<String>,
}

/// The key-confirmation round: every member multicasts a MAC, under the confirmation
/// key, of the transcript and its message's header (protocol, group, view, run, step,
/// its own name, parameters, epoch); a member reports the key once it holds a valid MAC
/// from every member of the view, *its own included*: its own counts when the engine
/// delivers it back (self-delivery), so that members that move together to the next view
/// agree on whether the round completed (view synchrony gives them the same messages,
/// the member's own among them).
///
/// Bookkeeping is O(1) per confirmation (hash-set lookups: at n = 1,000 an ordered set's
/// ten string comparisons per lookup were ten cache misses each), so a round costs O(n)
/// at each member, not O(n^2).
pub struct Confirmation {
    schedule: KeySchedule,
    transcript: Vec<u8>,
    mac: Mac,
    members: HashSet<String>,
    confirmed: HashSet<String>,
}

const CONFIRM_DOMAIN: &[u8] = b"conclave/ka/confirm/v2\0";

impl Confirmation {
    /// Starts confirming `schedule` over `transcript` (a hash of the message that fixed
    /// the key, which every member holds); `header` is this member's confirmation
    /// envelope without its body ([`Envelope::header`]). Returns the round and this
    /// member's MAC.
    pub fn start(
        session: &Session,
        schedule: KeySchedule,
        transcript: Vec<u8>,
        header: &[u8],
    ) -> Result<(Self, Vec<u8>)> {
        let mut mac = session
            .provider()
            .mac(CONFIRM_MAC, schedule.confirm_key.expose())?;
        let tag = mac.compute(&[CONFIRM_DOMAIN, &transcript, header])?;
        let members = schedule.members.iter().cloned().collect();
        Ok((
            Self {
                schedule,
                transcript,
                mac,
                members,
                confirmed: HashSet::new(),
            },
            tag,
        ))
    }

    /// Checks `from`'s MAC over its message's `header` (`KEY_CONFIRMATION_FAILED` if it
    /// does not match: that member holds another key, or the message was altered).
    /// Nothing changes on failure.
    pub fn check(&mut self, from: &str, tag: &[u8], header: &[u8]) -> Result<()> {
        if !self.members.contains(from) {
            return Err(err(
                ErrorCode::NOT_A_MEMBER,
                format!("confirmation from {from}, who does not share this key"),
            ));
        }
        self.mac
            .verify(&[CONFIRM_DOMAIN, &self.transcript, header], tag)
            .map_err(|_| {
                err(
                    ErrorCode::KEY_CONFIRMATION_FAILED,
                    format!("{from} confirmed another key (or the transcript differs)"),
                )
            })?;
        self.confirmed.insert(from.to_string());
        Ok(())
    }

    /// Whether every member has confirmed.
    pub fn complete(&self) -> bool {
        // Only members are ever inserted (checked above).
        self.confirmed.len() == self.members.len()
    }

    /// The schedule being confirmed.
    pub fn schedule(&self) -> &KeySchedule {
        &self.schedule
    }

    /// Ends the round, returning the schedule to report.
    pub fn into_schedule(self) -> KeySchedule {
        self.schedule
    }
}

/// One confirmation that arrived before this member had the key.
#[derive(Debug)]
struct EarlyConfirmation {
    from: String,
    source: String,
    tag: Vec<u8>,
    header: Vec<u8>,
}

/// Key-confirmation MACs that arrived before this member had the key: they are kept and
/// checked when the key is known.
///
/// A confirmation cannot be checked before the key, so a copy altered on the way would be
/// held as well; several per member are held (up to [`EarlyConfirmations::PER_MEMBER`])
/// so that an altered copy does not shut out the genuine one, and the valid one counts
/// once the key is known.
#[derive(Debug, Default)]
pub struct EarlyConfirmations {
    list: Vec<EarlyConfirmation>,
    from: BTreeMap<String, usize>,
}

impl EarlyConfirmations {
    /// How many confirmations are held per member before the key.
    pub const PER_MEMBER: usize = 4;

    /// Keeps the confirmation `env` (`OUT_OF_STEP` beyond [`Self::PER_MEMBER`] from one
    /// member).
    pub fn stash(&mut self, env: &Envelope) -> Result<()> {
        let held = self.from.get(&env.sender).copied().unwrap_or(0);
        if held >= Self::PER_MEMBER {
            return Err(err(
                ErrorCode::OUT_OF_STEP,
                format!(
                    "holding {held} confirmations from {} already before the key",
                    env.sender
                ),
            ));
        }
        let (source, tag) = parse_confirmation(&env.body)?;
        self.list.push(EarlyConfirmation {
            from: env.sender.clone(),
            source,
            tag,
            header: env.header()?,
        });
        self.from.insert(env.sender.clone(), held + 1);
        Ok(())
    }
}

/// The body of a confirmation message: who fixed the key (`source`) and the MAC.
pub fn confirmation_body(source: &str, tag: &[u8]) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    w.bytes8(source.as_bytes())?;
    w.bytes16(tag)?;
    Ok(w.finish())
}

/// Parses [`confirmation_body`].
pub fn parse_confirmation(body: &[u8]) -> Result<(String, Vec<u8>)> {
    let mut r = Reader::new(body, "key confirmation");
    let source = r.str8()?;
    let tag = r.bytes16()?.to_vec();
    r.finish()?;
    Ok((source, tag))
}

/// A confirmation round in progress, with the state to keep once it completes.
pub struct Confirming<S> {
    /// The round.
    pub round: Confirmation,
    /// The member whose message fixed the key.
    pub source: String,
    /// What the protocol keeps when the key is confirmed.
    pub pending: S,
}

impl<S> Confirming<S> {
    /// Starts confirming the key of `schedule`, fixed by `source`'s message whose body
    /// was `fixing_message`: returns the round (with the early MACs already checked) and
    /// the action that multicasts this member's MAC as step `confirm_step`.
    pub fn start(
        session: &mut Session,
        schedule: KeySchedule,
        source: &str,
        fixing_message: &[u8],
        early: EarlyConfirmations,
        confirm_step: u8,
        pending: S,
    ) -> Result<(Self, Action)> {
        let transcript = session.provider().hash(
            HASH,
            &[
                session.protocol.as_bytes(),
                b"\0",
                source.as_bytes(),
                b"\0",
                fixing_message,
            ],
        )?;
        let epoch = schedule.epoch;
        let header = session
            .envelope(confirm_step, None, epoch, Vec::new())?
            .header()?;
        let (mut round, tag) = Confirmation::start(session, schedule, transcript, &header)?;
        for e in early.list {
            if e.source == source {
                // A wrong early MAC only means that member holds another key: the round
                // then does not complete, which is the point.
                let _ = round.check(&e.from, &e.tag, &e.header);
            }
        }
        let action = session.seal(confirm_step, None, epoch, confirmation_body(source, &tag)?)?;
        Ok((
            Self {
                round,
                source: source.to_string(),
                pending,
            },
            action,
        ))
    }

    /// Checks a confirmation message's body from `from`.
    pub fn check(&mut self, session: &Session, env: &Envelope) -> Result<()> {
        let (source, tag) = parse_confirmation(&env.body)?;
        if source != self.source {
            return Err(session.out_of_step(env, "confirming another member's key"));
        }
        self.round.check(&env.sender, &tag, &env.header()?)
    }
}

/// The options check of a protocol that takes none (`tgdh`, `str`, `bd`): the first
/// option given is a `BAD_CONFIG` error naming `protocol`.
pub fn refuse_options(protocol: &str, options: &conclave_plugin_api::Options) -> Result<()> {
    match options.entries.iter().next() {
        Some(e) => Err(err(
            ErrorCode::BAD_CONFIG,
            format!(
                "{protocol}: unknown option {:?} (it has none)",
                e.key.as_str()
            ),
        )),
        None => Ok(()),
    }
}

/// Feeds a received message to a protocol: [`Session::open`], then `handle`, then
/// [`Session::accepted`] or [`Session::rejected`].
pub fn receive<T>(
    state: &mut T,
    session: fn(&mut T) -> &mut Session,
    sender: &str,
    payload: &[u8],
    run_ahead: bool,
    handle: fn(&mut T, &Envelope) -> Result<Vec<Action>>,
) -> Result<Vec<Action>> {
    let env = session(state).open(sender, payload, run_ahead)?;
    match handle(state, &env) {
        Ok(actions) => {
            session(state).accepted(&env);
            Ok(actions)
        }
        Err(e) => {
            session(state).rejected();
            Err(e)
        }
    }
}

/// A running agreement's state, as far as the kit needs it: where early confirmations
/// wait.
pub trait Running {
    /// The confirmations that arrived before the key.
    fn early(&mut self) -> &mut EarlyConfirmations;
}

/// Where one member's agreement stands: idle, running (protocol state `R`), or
/// confirming a key (with the state `S` to keep once it is confirmed).
pub enum Phase<R, S> {
    /// No agreement under way.
    Idle,
    /// An agreement under way.
    Running(R),
    /// A key computed, its confirmation round under way.
    Confirming(Box<Confirming<S>>),
}

impl<R: Running, S> Phase<R, S> {
    /// Whether no agreement is under way.
    pub fn is_idle(&self) -> bool {
        matches!(self, Phase::Idle)
    }

    /// The running agreement's state (`INTERNAL` error if there is none).
    pub fn running(&mut self) -> Result<&mut R> {
        match self {
            Phase::Running(r) => Ok(r),
            _ => Err(err(ErrorCode::INTERNAL, "no agreement is running")),
        }
    }

    /// Starts confirming the key of `schedule`, fixed by `source`'s message
    /// `fixing_message`: multicasts this member's MAC (step `confirm_step`), checks the
    /// confirmations that came early. Returns the actions; if the round is already
    /// complete, the state to keep is stored in `kept`.
    #[allow(clippy::too_many_arguments)]
    pub fn confirm(
        &mut self,
        session: &mut Session,
        schedule: KeySchedule,
        source: &str,
        fixing_message: &[u8],
        confirm_step: u8,
        pending: S,
        kept: &mut Option<S>,
    ) -> Result<Vec<Action>> {
        let early = match std::mem::replace(self, Phase::Idle) {
            Phase::Running(mut r) => std::mem::take(r.early()),
            _ => EarlyConfirmations::default(),
        };
        let (round, send) = Confirming::start(
            session,
            schedule,
            source,
            fixing_message,
            early,
            confirm_step,
            pending,
        )?;
        *self = Phase::Confirming(Box::new(round));
        let mut actions = vec![send];
        self.finish(session, &mut actions, kept)?;
        Ok(actions)
    }

    /// Handles a confirmation message: checked while confirming (a member's own
    /// confirmation of a key it gave up is ignored), held while running, out of step
    /// otherwise. Returns the actions; once the round completes, the state to keep is
    /// stored in `kept`.
    pub fn on_confirm(
        &mut self,
        session: &mut Session,
        env: &Envelope,
        kept: &mut Option<S>,
    ) -> Result<Vec<Action>> {
        let run = session.run();
        match self {
            Phase::Confirming(c) if env.run == run => {
                if env.sender == session.me() && parse_confirmation(&env.body)?.0 != c.source {
                    return Ok(Vec::new());
                }
                c.check(session, env)?;
                let mut actions = Vec::new();
                self.finish(session, &mut actions, kept)?;
                Ok(actions)
            }
            Phase::Running(r) if env.run == run => {
                r.early().stash(env)?;
                Ok(Vec::new())
            }
            _ => Err(session.out_of_step(env, "not confirming a key")),
        }
    }

    /// If the confirmation round is complete: reports the key (appended to `actions`),
    /// goes idle and stores the state to keep in `kept`.
    fn finish(
        &mut self,
        session: &mut Session,
        actions: &mut Vec<Action>,
        kept: &mut Option<S>,
    ) -> Result<()> {
        if !matches!(self, Phase::Confirming(c) if c.round.complete()) {
            return Ok(());
        }
        let Phase::Confirming(c) = std::mem::replace(self, Phase::Idle) else {
            return Ok(());
        };
        let c = *c;
        actions.push(session.key_ready(c.round.into_schedule())?);
        *kept = Some(c.pending);
        Ok(())
    }
}

#[cfg(test)]
mod view_info_tests {
    use conclave_plugin_api::key_agreement::{MembershipView, ViewCause};

    use super::ViewInfo;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The by-name index answers as a scan of the join-ordered lists would.
    #[test]
    fn lookups_by_name_agree_with_the_lists() {
        let members = names(&["m07", "a", "zed", "m10", "b2", "m1"]);
        let previous = names(&["zed", "gone", "a", "m07"]);
        let view = MembershipView {
            group: "g".into(),
            view_id: b"v".to_vec().into(),
            members: members.iter().map(|m| m.as_str().into()).collect(),
            joined: Default::default(),
            left: Default::default(),
            cause: ViewCause::Join,
        };
        let info = ViewInfo::new(view, members.clone(), previous.clone());
        for probe in [
            "m07", "a", "zed", "m10", "b2", "m1", "gone", "m", "", "zed2", "A",
        ] {
            assert_eq!(
                info.rank(probe),
                members.iter().position(|m| m == probe),
                "{probe}"
            );
            assert_eq!(info.contains(probe), members.iter().any(|m| m == probe));
            assert_eq!(info.was_member(probe), previous.iter().any(|m| m == probe));
        }
        assert_eq!(info.stayed(), names(&["m07", "a", "zed"]));
    }
}

#[cfg(test)]
mod envelope_tests {
    use conclave_plugin_api::ErrorCode;

    use super::{EPOCH_LIMIT, Envelope};

    fn envelope(epoch: u64) -> Envelope {
        Envelope {
            protocol: "gdh".into(),
            group: "g".into(),
            view_id: b"v".to_vec(),
            run: 0,
            step: 1,
            sender: "alice".into(),
            to: None,
            params: [7; 32],
            epoch,
            body: b"body".to_vec(),
        }
    }

    /// The last epoch below the limit parses; the limit and past it are refused as
    /// malformed, whoever signed them.
    #[test]
    fn epochs_at_or_past_the_limit_are_refused() {
        let mut bytes = envelope(EPOCH_LIMIT - 1).signed_part().unwrap();
        bytes.extend_from_slice(&0u16.to_be_bytes());
        let (parsed, _, _) = Envelope::parse(&bytes).unwrap();
        assert_eq!(parsed.epoch, EPOCH_LIMIT - 1);
        for epoch in [EPOCH_LIMIT, EPOCH_LIMIT + 1, u64::MAX] {
            let mut bytes = envelope(epoch).signed_part().unwrap();
            bytes.extend_from_slice(&0u16.to_be_bytes());
            let e = Envelope::parse(&bytes).err().unwrap();
            assert_eq!(e.code, ErrorCode::BAD_MESSAGE, "{epoch}");
        }
    }
}
