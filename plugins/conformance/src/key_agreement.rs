//! Key-agreement checks, on an in-process network that delivers protocol messages with
//! the guarantees of a view-synchronous engine: per component, one total order of
//! messages that respects causality, multicasts delivered to their sender too; a view
//! change delivers to every member that moves on (senders included) either all of the
//! old view's pending messages or a common prefix of them.
//!
//! [`Net`] is the driver: members join, leave, crash, partition and merge, changes can
//! cascade (arrive while an agreement is under way), and every key reported is recorded.
//! [`Net::check_agreed`] asserts that every member of every component holds the same key,
//! reported once for its current view, and [`Net::check_fresh`] that no key repeats. The
//! suites ([`all`], [`cascades`], [`attacks`]) run a plugin through them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use conclave_plugin_sdk::{
    ErrorCode, Options, PluginError, SecretBytes,
    api::{
        PluginModuleRef,
        key_agreement::{
            Action, KeyAgreementConfig, KeyAgreementStats, KeyReady, MembershipView, ViewCause,
        },
    },
    host::{KeyAgreement, Provider},
    ka_kit::{Envelope, MapTrustStore},
};

use crate::{Report, ensure};

/// A deterministic generator for schedules (splitmix64): reproducible from a seed,
/// not for cryptography.
#[derive(Debug, Clone)]
pub struct Schedule(u64);

impl Schedule {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What one member did for one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// DH exponentiations.
    pub exponentiations: u64,
    /// Scalar inversions.
    pub inversions: u64,
    /// Signatures made.
    pub signatures: u64,
    /// Signatures verified.
    pub verifications: u64,
    /// Unicasts sent.
    pub unicasts: u64,
    /// Multicasts sent.
    pub multicasts: u64,
    /// Bytes of protocol messages sent.
    pub bytes_sent: u64,
}

/// A position on the critical path of an agreement: the processing time and the
/// exponentiations, element validations, signatures and verifications that lead to it, when each member runs
/// on its own processor and the network adds no delay. A member's clock advances by what it computes, and a message
/// carries its sender's clock: the receiver's clock is the later of the two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Clock {
    /// Processing time (thread CPU time).
    pub time: std::time::Duration,
    /// Exponentiations.
    pub exponentiations: u64,
    /// Group-element validations.
    pub validations: u64,
    /// Signatures.
    pub signatures: u64,
    /// Signature verifications.
    pub verifications: u64,
}

impl Clock {
    /// The later of two positions: each count is the larger of the two (the longest
    /// chain of that operation that leads here).
    fn join(self, other: Clock) -> Clock {
        Clock {
            time: self.time.max(other.time),
            exponentiations: self.exponentiations.max(other.exponentiations),
            validations: self.validations.max(other.validations),
            signatures: self.signatures.max(other.signatures),
            verifications: self.verifications.max(other.verifications),
        }
    }
}

impl Counted {
    /// Counts of exponentiations, inversions, signatures, verifications, unicasts and
    /// multicasts (bytes are not compared by [`assert_counts`]).
    pub const fn new(e: u64, i: u64, s: u64, v: u64, u: u64, m: u64) -> Self {
        Self {
            exponentiations: e,
            inversions: i,
            signatures: s,
            verifications: v,
            unicasts: u,
            multicasts: m,
            bytes_sent: 0,
        }
    }
}

/// Asserts that every member of component 0 counted what `role` says for it (bytes
/// aside); `what` names the event in the failure message.
pub fn assert_counts(
    net: &Net,
    counted: &BTreeMap<String, Counted>,
    role: impl Fn(&str) -> Counted,
    what: &str,
) {
    for name in &net.components[0].members {
        let got = Counted {
            bytes_sent: 0,
            ..counted[name]
        };
        assert_eq!(got, role(name), "{what}: {name}");
    }
}

/// A protocol message in flight.
#[derive(Debug, Clone)]
pub struct Message {
    /// The sender.
    pub from: String,
    /// The receiver of a unicast.
    pub to: Option<String>,
    /// The bytes.
    pub payload: Vec<u8>,
    /// The sender's clock when it sent it.
    pub sent_at: Clock,
}

/// One member on the network.
pub struct Member {
    /// Its state machine.
    pub ka: KeyAgreement,
    /// Its own provider instance (so its counters are its own).
    pub provider: Provider,
    /// Every key it reported, in order.
    pub keys: Vec<KeyReady>,
    /// Every error its state machine returned.
    pub errors: Vec<PluginError>,
    /// Its position on the critical path (see [`Clock`]).
    pub clock: Clock,
    /// Its clock when it last reported a key.
    pub keyed_at: Option<Clock>,
    /// Its total processing time since the last [`Net::reset_clocks`].
    pub busy: std::time::Duration,
    previous: Vec<String>,
}

/// A connected component: its members in join order and its messages in flight.
#[derive(Debug, Clone, Default)]
pub struct Component {
    /// Members, oldest first.
    pub members: Vec<String>,
    /// The current view's id.
    pub view_id: Vec<u8>,
    queue: VecDeque<Message>,
}

/// How a view change treats the old view's messages still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Deliver all of them, and what they cause, until the old view is quiet.
    All,
    /// Deliver the first `k` of them (in the total order), drop the rest and whatever
    /// the delivered ones cause: as if the senders had acknowledged the flush first.
    Prefix(usize),
}

/// The protocol under test and how to build its members.
pub struct Setup {
    /// The plugin's root module.
    pub module: PluginModuleRef,
    /// The protocol (`gdh`, `ckd`, ...).
    pub algorithm: String,
    /// Makes one provider instance per member.
    pub provider: fn() -> Provider,
    /// The DH group.
    pub dh_group: String,
    /// Options for the protocol.
    pub options: Options,
}

/// The in-process network.
pub struct Net {
    setup: Setup,
    trust: MapTrustStore,
    identities: BTreeMap<String, SecretBytes>,
    joined_at: BTreeMap<String, u64>,
    views_joined: u64,
    /// The members, by name.
    pub members: BTreeMap<String, Member>,
    /// The components.
    pub components: Vec<Component>,
    views: u64,
    /// Every message sent, with the view it was sent in: what an eavesdropper sees.
    pub transcript: Vec<(Vec<u8>, Message)>,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Keys reported by state machines that were since dropped (members that left).
    pub retired: Vec<KeyReady>,
}

const GROUP: &str = "conformance";
const SIGNATURE: &str = "ed25519";
const KEY_LEN: usize = 32;

impl Net {
    /// An empty network with one (empty) component.
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            trust: MapTrustStore::new(),
            identities: BTreeMap::new(),
            joined_at: BTreeMap::new(),
            views_joined: 0,
            members: BTreeMap::new(),
            components: vec![Component::default()],
            views: 0,
            transcript: Vec::new(),
            delivered: 0,
            retired: Vec::new(),
        }
    }

    /// Creates the identity of `name` and trusts it (members created later are trusted
    /// by everyone, including members that already exist).
    pub fn enroll(&mut self, name: &str) -> Result<(), PluginError> {
        let p = (self.setup.provider)();
        let sk = p.generate_signing_key(SIGNATURE)?;
        let pk = p.signer(SIGNATURE, sk.expose())?.public_key();
        self.trust.insert(name, SIGNATURE, &pk);
        self.identities.insert(name.to_string(), sk);
        Ok(())
    }

    /// Removes `name`'s key from everyone's trust store (its identity stays valid).
    pub fn distrust(&mut self, name: &str) {
        self.trust.remove(name);
    }

    fn config(&self, name: &str, provider: &Provider) -> Result<KeyAgreementConfig, PluginError> {
        let identity = self
            .identities
            .get(name)
            .ok_or_else(|| PluginError::invalid_argument(format!("{name} is not enrolled")))?;
        Ok(KeyAgreementConfig {
            algorithm: self.setup.algorithm.as_str().into(),
            group: GROUP.into(),
            local_member: name.into(),
            dh_group: self.setup.dh_group.as_str().into(),
            provider: provider.to_abi(),
            key_len: KEY_LEN,
            signature_algorithm: SIGNATURE.into(),
            identity_key: identity.clone(),
            trust: self.trust.clone().into_abi(),
            context: b"conformance context".to_vec().into(),
            options: self.setup.options.clone(),
        })
    }

    /// A new member's state machine, not yet in any component.
    pub fn create(&mut self, name: &str) -> Result<(), PluginError> {
        if !self.identities.contains_key(name) {
            self.enroll(name)?;
        }
        let provider = (self.setup.provider)();
        let config = self.config(name, &provider)?;
        let new = self
            .setup
            .module
            .new_key_agreement()
            .ok_or_else(|| PluginError::unsupported("the module exports no key agreement"))?;
        let ka = KeyAgreement::from_abi(new(&config).into_result()?);
        self.views_joined += 1;
        self.joined_at.insert(name.to_string(), self.views_joined);
        if let Some(old) = self.members.remove(name) {
            self.retired.extend(old.keys);
        }
        self.members.insert(
            name.to_string(),
            Member {
                ka,
                provider,
                keys: Vec::new(),
                errors: Vec::new(),
                clock: Clock::default(),
                keyed_at: None,
                busy: std::time::Duration::ZERO,
                previous: Vec::new(),
            },
        );
        Ok(())
    }

    /// The component that holds `name`.
    pub fn component_of(&self, name: &str) -> Option<usize> {
        self.components
            .iter()
            .position(|c| c.members.iter().any(|m| m == name))
    }

    fn flush(&mut self, c: usize, flush: Flush) {
        match flush {
            Flush::All => {
                // The old view's agreement runs to its end before the change.
                while self.step(c) {}
            }
            Flush::Prefix(k) => {
                let pending = std::mem::take(&mut self.components[c].queue);
                for m in pending.into_iter().take(k) {
                    self.deliver(c, m);
                }
                // What members sent while flushing, they sent after acknowledging the
                // flush: the engine never delivers it in the old view, and the new
                // view's agreement starts without it.
                self.components[c].queue.clear();
            }
        }
    }

    /// Installs a new view of component `c` with `members` at each of them (the old
    /// view's messages flushed by `flush`, at the members of the old view).
    fn install(&mut self, c: usize, members: Vec<String>, cause: ViewCause) {
        self.views += 1;
        let view_id = format!("view-{}", self.views).into_bytes();
        self.components[c].members = members.clone();
        self.components[c].view_id = view_id.clone();
        // Sets, so that a view of n members costs O(n) per member, not O(n^2).
        let now: std::collections::HashSet<&str> = members.iter().map(String::as_str).collect();
        for name in &members {
            let Some(member) = self.members.get_mut(name) else {
                continue;
            };
            let before: std::collections::HashSet<&str> =
                member.previous.iter().map(String::as_str).collect();
            let joined: Vec<String> = members
                .iter()
                .filter(|m| !before.contains(m.as_str()))
                .cloned()
                .collect();
            let left: Vec<String> = member
                .previous
                .iter()
                .filter(|m| !now.contains(m.as_str()))
                .cloned()
                .collect();
            drop(before);
            let view = MembershipView {
                group: GROUP.into(),
                view_id: view_id.clone().into(),
                members: members.iter().map(|m| m.as_str().into()).collect(),
                joined: joined.iter().map(|m| m.as_str().into()).collect(),
                left: left.iter().map(|m| m.as_str().into()).collect(),
                cause,
            };
            member.previous = members.clone();
            let result = timed(member, |ka| ka.on_view(&view));
            self.apply(c, name, result);
        }
    }

    fn apply(&mut self, c: usize, name: &str, result: Result<Vec<Action>, PluginError>) {
        let view_id = self.components[c].view_id.clone();
        let actions = match result {
            Ok(a) => a,
            Err(e) => {
                if let Some(m) = self.members.get_mut(name) {
                    m.errors.push(e);
                }
                return;
            }
        };
        let sent_at = self.members.get(name).map(|m| m.clock).unwrap_or_default();
        for action in actions {
            let msg = match action {
                Action::Unicast { to, payload } => Message {
                    from: name.to_string(),
                    to: Some(to.to_string()),
                    payload: payload.to_vec(),
                    sent_at,
                },
                Action::Multicast { payload } => Message {
                    from: name.to_string(),
                    to: None,
                    payload: payload.to_vec(),
                    sent_at,
                },
                Action::KeyReady(k) => {
                    if let Some(m) = self.members.get_mut(name) {
                        m.keys.push(k);
                        m.keyed_at = Some(m.clock);
                    }
                    continue;
                }
                Action::Failure(e) => {
                    if let Some(m) = self.members.get_mut(name) {
                        m.errors.push(e);
                    }
                    continue;
                }
            };
            self.transcript.push((view_id.clone(), msg.clone()));
            self.components[c].queue.push_back(msg);
        }
    }

    fn deliver(&mut self, c: usize, msg: Message) {
        self.delivered += 1;
        let receivers: Vec<String> = match &msg.to {
            Some(to) => self.components[c]
                .members
                .iter()
                .filter(|m| *m == to)
                .cloned()
                .collect(),
            // Multicasts reach every member, the sender included (self-delivery).
            None => self.components[c].members.clone(),
        };
        for r in receivers {
            let Some(member) = self.members.get_mut(&r) else {
                continue;
            };
            member.clock = member.clock.join(msg.sent_at);
            let result = timed(member, |ka| ka.on_message(&msg.from, &msg.payload));
            self.apply(c, &r, result);
        }
    }

    /// Delivers the next message of component `c`; false if none is pending.
    pub fn step(&mut self, c: usize) -> bool {
        match self.components[c].queue.pop_front() {
            Some(m) => {
                self.deliver(c, m);
                true
            }
            None => false,
        }
    }

    /// Whether component `c` has messages in flight.
    pub fn busy(&self, c: usize) -> bool {
        !self.components[c].queue.is_empty()
    }

    /// Delivers every message of every component until none is left (bounded, so a
    /// livelock is a failure, not a hang).
    pub fn run(&mut self) -> Result<(), String> {
        for _ in 0..1_000_000 {
            let Some(c) = (0..self.components.len()).find(|&c| self.busy(c)) else {
                return Ok(());
            };
            self.step(c);
        }
        Err("the protocol did not quiesce after a million messages".into())
    }

    fn sorted(&self, mut members: Vec<String>) -> Vec<String> {
        members.sort_by_key(|m| self.joined_at.get(m).copied().unwrap_or(u64::MAX));
        members
    }

    /// `name` joins component `c`: a new state machine (a member that comes back after
    /// leaving is a new process, or at least a new key-agreement object).
    pub fn join(&mut self, c: usize, name: &str, flush: Flush) -> Result<(), PluginError> {
        self.create(name)?;
        self.flush(c, flush);
        let mut members = self.components[c].members.clone();
        members.push(name.to_string());
        let members = self.sorted(members);
        self.install(c, members, ViewCause::Join);
        Ok(())
    }

    /// Several members (created if needed) join component `c` in one view.
    pub fn join_many(&mut self, c: usize, names: &[&str], flush: Flush) -> Result<(), PluginError> {
        for n in names {
            self.create(n)?;
        }
        self.flush(c, flush);
        let mut members = self.components[c].members.clone();
        members.extend(names.iter().map(|n| n.to_string()));
        let members = self.sorted(members);
        self.install(c, members, ViewCause::Join);
        Ok(())
    }

    /// `names` leave (`cause` Leave) or crash (`Disconnect`) from their component.
    pub fn remove(&mut self, names: &[&str], cause: ViewCause, flush: Flush) {
        let Some(c) = names.first().and_then(|n| self.component_of(n)) else {
            return;
        };
        self.flush(c, flush);
        let members: Vec<String> = self.components[c]
            .members
            .iter()
            .filter(|m| !names.contains(&m.as_str()))
            .cloned()
            .collect();
        for n in names {
            if let Some(m) = self.members.remove(*n) {
                self.retired.extend(m.keys);
            }
        }
        if !members.is_empty() {
            self.install(c, members, cause);
        } else {
            self.components[c].members.clear();
        }
    }

    /// Splits component `c`: `away` form a new component. Returns its index.
    pub fn partition(&mut self, c: usize, away: &[String], flush: Flush) -> usize {
        self.flush(c, flush);
        let stay: Vec<String> = self.components[c]
            .members
            .iter()
            .filter(|m| !away.contains(m))
            .cloned()
            .collect();
        let gone: Vec<String> = self.components[c]
            .members
            .iter()
            .filter(|m| away.contains(m))
            .cloned()
            .collect();
        self.components.push(Component::default());
        let n = self.components.len() - 1;
        if !stay.is_empty() {
            self.install(c, stay, ViewCause::Partition);
        }
        if !gone.is_empty() {
            self.install(n, gone, ViewCause::Partition);
        }
        n
    }

    /// Merges component `b` into `a` (one view with every member of both).
    pub fn merge(&mut self, a: usize, b: usize, flush: Flush) {
        self.flush(a, flush);
        self.flush(b, flush);
        let mut members = self.components[a].members.clone();
        members.extend(self.components[b].members.clone());
        self.components[b] = Component::default();
        let members = self.sorted(members);
        self.install(a, members, ViewCause::Merge);
    }

    /// Asks `name` for a key refresh.
    pub fn refresh(&mut self, name: &str) -> Result<(), PluginError> {
        let c = self
            .component_of(name)
            .ok_or_else(|| PluginError::invalid_argument(format!("{name} is in no component")))?;
        let m = self
            .members
            .get_mut(name)
            .ok_or_else(|| PluginError::invalid_argument(format!("no member {name}")))?;
        let result = timed(m, |ka| ka.refresh());
        let err = result.as_ref().err().cloned();
        self.apply(c, name, result);
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Injects raw bytes as if `from` had sent them in component `c` (unicast to `to`, or
    /// multicast).
    pub fn inject(&mut self, c: usize, from: &str, to: Option<&str>, payload: Vec<u8>) {
        self.components[c].queue.push_back(Message {
            from: from.to_string(),
            to: to.map(str::to_string),
            payload,
            sent_at: Clock::default(),
        });
    }

    /// Every error any member's state machine returned, with the member.
    pub fn errors(&self) -> Vec<(String, PluginError)> {
        self.members
            .iter()
            .flat_map(|(n, m)| m.errors.iter().map(move |e| (n.clone(), e.clone())))
            .collect()
    }

    /// Every member of every non-empty component reported exactly one key for the
    /// component's current view, the same key and epoch, for exactly its members.
    pub fn check_agreed(&self) -> Result<(), String> {
        for comp in self.components.iter().filter(|c| !c.members.is_empty()) {
            let mut agreed: Option<(&KeyReady, &str)> = None;
            for name in &comp.members {
                let m = &self.members[name];
                let mine: Vec<&KeyReady> = m
                    .keys
                    .iter()
                    .filter(|k| k.view_id.as_slice() == comp.view_id.as_slice())
                    .collect();
                let Some(last) = mine.last() else {
                    return Err(format!(
                        "{name} has no key for view {} of {:?}",
                        String::from_utf8_lossy(&comp.view_id),
                        comp.members
                    ));
                };
                let listed: Vec<String> = last.members.iter().map(|m| m.to_string()).collect();
                ensure(listed == comp.members, || {
                    format!(
                        "{name}'s key lists {listed:?}, the view is {:?}",
                        comp.members
                    )
                })?;
                let epochs: BTreeSet<u64> = mine.iter().map(|k| k.epoch).collect();
                ensure(epochs.len() == mine.len(), || {
                    format!("{name} reported epoch twice in one view: {epochs:?}")
                })?;
                match agreed {
                    None => agreed = Some((last, name)),
                    Some((k, who)) => {
                        ensure(k.key == last.key && k.epoch == last.epoch, || {
                            format!(
                                "{name} (epoch {}) and {who} (epoch {}) hold different keys",
                                last.epoch, k.epoch
                            )
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// No two reports of different epochs or views share a key, and each member's
    /// epochs strictly increase.
    pub fn check_fresh(&self) -> Result<(), String> {
        let mut by_key: BTreeMap<Vec<u8>, (u64, Vec<u8>)> = BTreeMap::new();
        let retired = ("(departed)".to_string(), &self.retired);
        let live = self.members.iter().map(|(n, m)| (n.clone(), &m.keys));
        for (name, keys) in live.chain(std::iter::once(retired)) {
            let mut last = 0;
            for k in keys.iter() {
                if name != "(departed)" {
                    ensure(k.epoch > last, || {
                        format!("{name}'s epochs do not increase: {} after {last}", k.epoch)
                    })?;
                    last = k.epoch;
                }
                let id = (k.epoch, k.view_id.to_vec());
                if let Some(prev) = by_key.insert(k.key.expose().to_vec(), id.clone())
                    && prev != id
                {
                    return Err(format!(
                        "the same key was reported for epoch {} and epoch {}",
                        prev.0, id.0
                    ));
                }
            }
        }
        Ok(())
    }

    /// Starts a measurement: every member's clock at zero, no key yet.
    pub fn reset_clocks(&mut self) {
        for m in self.members.values_mut() {
            m.clock = Clock::default();
            m.keyed_at = None;
            m.busy = std::time::Duration::ZERO;
        }
    }

    /// The latest clock at which a member of component `c` reported its key since
    /// [`reset_clocks`](Self::reset_clocks): the agreement's critical path.
    pub fn critical_path(&self, c: usize) -> Option<Clock> {
        self.components[c]
            .members
            .iter()
            .map(|m| self.members.get(m).and_then(|m| m.keyed_at))
            .collect::<Option<Vec<Clock>>>()?
            .into_iter()
            .reduce(Clock::join)
    }

    /// Every live member's counters.
    pub fn stats(&self) -> BTreeMap<String, KeyAgreementStats> {
        self.members
            .iter()
            .map(|(n, m)| (n.clone(), m.ka.stats()))
            .collect()
    }

    /// What each live member counted since `before` (members absent from `before`
    /// count from zero).
    pub fn counted_since(
        &self,
        before: &BTreeMap<String, KeyAgreementStats>,
    ) -> BTreeMap<String, Counted> {
        self.stats()
            .into_iter()
            .map(|(n, now)| {
                let then = before.get(&n).copied().unwrap_or_default();
                let c = now.crypto.since(&then.crypto);
                (
                    n,
                    Counted {
                        exponentiations: c.exponentiations,
                        inversions: c.inversions,
                        signatures: c.signatures,
                        verifications: c.verifications,
                        unicasts: now.unicasts - then.unicasts,
                        multicasts: now.multicasts - then.multicasts,
                        bytes_sent: now.bytes_sent - then.bytes_sent,
                    },
                )
            })
            .collect()
    }

    /// The key of component `c`'s current view (after [`check_agreed`](Self::check_agreed)).
    pub fn key_of(&self, c: usize) -> Option<KeyReady> {
        let comp = &self.components[c];
        let first = comp.members.first()?;
        self.members[first]
            .keys
            .iter()
            .rfind(|k| k.view_id.as_slice() == comp.view_id.as_slice())
            .cloned()
    }
}

/// Runs `f` on the member's state machine and advances its clock by the CPU time (of
/// this thread: a step runs on it from start to end) and the exponentiations it took.
/// CPU time, not wall time: a step preempted by another process costs what it
/// computed, not how long it waited, so that runs on a busy machine agree.
///
/// Reading the thread's CPU clock is a system call (about a microsecond here); its own
/// cost, measured once, is taken off each step, so that thousands of small steps (the
/// confirmations of a large group) do not count the clock's cost as theirs.
fn timed<T>(member: &mut Member, f: impl FnOnce(&mut KeyAgreement) -> T) -> T {
    let before = member.provider.counters();
    OWED.with(|o| o.set(std::time::Duration::ZERO));
    let start = cpu_time::ThreadTime::now();
    let out = f(&mut member.ka);
    let took = start.elapsed().saturating_sub(clock_cost()) + OWED.with(|o| o.take());
    let after = member.provider.counters();
    member.clock.time += took;
    member.busy += took;
    member.clock.exponentiations += after.exponentiations.saturating_sub(before.exponentiations);
    member.clock.validations += after.validations.saturating_sub(before.validations);
    member.clock.signatures += after.signatures.saturating_sub(before.signatures);
    member.clock.verifications += after.verifications.saturating_sub(before.verifications);
    out
}

thread_local! {
    /// Time charged to the step running on this thread by [`charge`].
    static OWED: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// Charges `time` to the member step running on this thread, on top of the CPU time it
/// takes: for work a harness does once for several members and hands the others, so
/// that each still pays for it. `conclave bench keys` verifies each distinct signature
/// and computes each distinct exponentiation once per process (every receiver of a
/// multicast would verify the same bytes; every member below a key-tree node computes
/// its key from the same inputs) and charges each repeat its calibrated cost here.
pub fn charge(time: std::time::Duration) {
    OWED.with(|o| o.set(o.get() + time));
}

/// What one [`timed`] measurement of nothing reads: the median of 201 tries.
fn clock_cost() -> std::time::Duration {
    static COST: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *COST.get_or_init(|| {
        let mut tries: Vec<std::time::Duration> = (0..201)
            .map(|_| cpu_time::ThreadTime::now().elapsed())
            .collect();
        tries.sort();
        tries[tries.len() / 2]
    })
}

fn no_errors(net: &Net) -> Result<(), String> {
    let errors = net.errors();
    ensure(errors.is_empty(), || {
        format!(
            "{} errors, first: {} got {}",
            errors.len(),
            errors[0].0,
            errors[0].1
        )
    })
}

/// Runs the network quiet, then checks: no errors, one agreed key per component, all
/// keys fresh.
pub fn settle(net: &mut Net) -> Result<(), String> {
    net.run()?;
    no_errors(net)?;
    net.check_agreed()?;
    net.check_fresh()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

/// A group of `n` members built by `n` successive joins, settled after each.
pub fn grow(setup: Setup, n: usize) -> Result<Net, String> {
    let mut net = Net::new(setup);
    for name in names("m", n) {
        net.join(0, &name, Flush::All).map_err(|e| e.to_string())?;
        settle(&mut net)?;
    }
    Ok(net)
}

/// The membership events at group sizes `sizes`: join, leave, crash, merge of 1 to 4,
/// partition, controller leaves (oldest and newest), refresh by the newest and oldest
/// member. After each: every member holds the same fresh key, and no error happened.
pub fn all(setup: &dyn Fn() -> Setup, sizes: &[usize]) -> Report {
    let mut r = Report::default();
    for &n in sizes {
        r.check(
            format!("n={n}: join one by one"),
            grow(setup(), n).map(drop),
        );
        r.check(
            format!("n={n}: leave, crash, oldest and newest leave"),
            (|| {
                let mut net = grow(setup(), n + 3)?;
                let members = net.components[0].members.clone();
                net.remove(&[members[1].as_str()], ViewCause::Leave, Flush::All);
                settle(&mut net)?;
                net.remove(&[members[2].as_str()], ViewCause::Disconnect, Flush::All);
                settle(&mut net)?;
                net.remove(&[members[0].as_str()], ViewCause::Leave, Flush::All);
                settle(&mut net)?;
                let newest = net.components[0]
                    .members
                    .last()
                    .cloned()
                    .unwrap_or_default();
                net.remove(&[newest.as_str()], ViewCause::Leave, Flush::All);
                settle(&mut net)?;
                ensure(net.components[0].members.len() == n - 1, || {
                    "wrong size".into()
                })
            })(),
        );
        for m in 1..=4usize {
            r.check(
                format!("n={n}: {m} join at once"),
                (|| {
                    let mut net = grow(setup(), n)?;
                    let new = names("j", m);
                    let refs: Vec<&str> = new.iter().map(String::as_str).collect();
                    net.join_many(0, &refs, Flush::All)
                        .map_err(|e| e.to_string())?;
                    settle(&mut net)
                })(),
            );
        }
        r.check(
            format!("n={n}: partition, then merge"),
            (|| {
                let mut net = grow(setup(), n.max(2))?;
                let members = net.components[0].members.clone();
                let away: Vec<String> = members.iter().skip(1).step_by(2).cloned().collect();
                let b = net.partition(0, &away, Flush::All);
                settle(&mut net)?;
                let k_a = net.key_of(0).map(|k| k.key);
                let k_b = net.key_of(b).map(|k| k.key);
                ensure(k_a != k_b, || {
                    "both sides of a partition hold the same key".into()
                })?;
                net.merge(0, b, Flush::All);
                settle(&mut net)?;
                ensure(net.components[0].members == members, || {
                    "merge order".into()
                })
            })(),
        );
        r.check(
            format!("n={n}: refresh by the newest and by the oldest"),
            (|| {
                let mut net = grow(setup(), n)?;
                let members = net.components[0].members.clone();
                let newest = members.last().cloned().unwrap_or_default();
                // A protocol lets its controller refresh (the newest member in GDH, the
                // oldest in CKD), maybe anyone; the others get a typed refusal that
                // changes nothing.
                let mut refreshed = 0;
                for who in [newest, members[0].clone()] {
                    let before = net.members[&who].keys.len();
                    match net.refresh(&who) {
                        Ok(()) => {
                            settle(&mut net)?;
                            refreshed += 1;
                            ensure(net.members[&who].keys.len() == before + 1, || {
                                format!("{who}'s refresh gave no new key")
                            })?;
                        }
                        Err(e) => {
                            ensure(e.code == ErrorCode::OUT_OF_STEP, || format!("refusal: {e}"))?;
                            if let Some(m) = net.members.get_mut(&who) {
                                m.errors.clear();
                            }
                            net.run()?;
                            ensure(net.members[&who].keys.len() == before, || {
                                "a refused refresh changed the key".into()
                            })?;
                        }
                    }
                }
                ensure(refreshed > 0, || {
                    "neither the newest nor the oldest may refresh".into()
                })
            })(),
        );
    }
    r
}

/// Random schedules of joins, leaves, crashes, partitions, merges and refreshes, where
/// each change may arrive while the previous agreement is still running (a cascade), and
/// the in-flight messages are flushed whole or cut at a random point. After the last
/// change the network runs quiet: every component must then hold one agreed, fresh key.
/// Returns the failing seeds with the reason.
pub fn cascades(
    setup: &dyn Fn() -> Setup,
    seeds: std::ops::Range<u64>,
    max_members: usize,
) -> Report {
    let mut r = Report::default();
    for seed in seeds {
        r.check(
            format!("cascade seed {seed}"),
            cascade(setup(), seed, max_members),
        );
    }
    r
}

fn cascade(setup: Setup, seed: u64, max_members: usize) -> Result<(), String> {
    let mut rng = Schedule::new(seed);
    let mut net = Net::new(setup);
    let mut next = 0usize;
    let fresh = |next: &mut usize| {
        *next += 1;
        format!("p{:03}", *next)
    };
    for _ in 0..2 + rng.below(3) {
        let name = fresh(&mut next);
        net.join(0, &name, Flush::All).map_err(|e| e.to_string())?;
    }
    let events = 3 + rng.below(8);
    for _ in 0..events {
        // Let the current agreements progress a random amount: maybe not at all, maybe
        // to the end.
        let steps = rng.below(12);
        for _ in 0..steps {
            let busy: Vec<usize> = (0..net.components.len()).filter(|&c| net.busy(c)).collect();
            if busy.is_empty() {
                break;
            }
            let c = busy[rng.below(busy.len())];
            net.step(c);
        }
        let live: Vec<usize> = (0..net.components.len())
            .filter(|&c| !net.components[c].members.is_empty())
            .collect();
        let c = live[rng.below(live.len())];
        let size = net.components[c].members.len();
        let pending = net.components[c].queue.len();
        let flush = if rng.below(2) == 0 {
            Flush::All
        } else {
            Flush::Prefix(rng.below(pending + 1))
        };
        let total: usize = live.iter().map(|&c| net.components[c].members.len()).sum();
        match rng.below(6) {
            0 if total < max_members => {
                let name = fresh(&mut next);
                net.join(c, &name, flush).map_err(|e| e.to_string())?;
            }
            1 if total + 2 < max_members => {
                let (a, b) = (fresh(&mut next), fresh(&mut next));
                net.join_many(c, &[&a, &b], flush)
                    .map_err(|e| e.to_string())?;
            }
            2 if size > 1 => {
                let victim = net.components[c].members[rng.below(size)].clone();
                let cause = if rng.below(2) == 0 {
                    ViewCause::Leave
                } else {
                    ViewCause::Disconnect
                };
                net.remove(&[&victim], cause, flush);
            }
            3 if size > 1 => {
                let away: Vec<String> = net.components[c]
                    .members
                    .iter()
                    .filter(|_| rng.below(2) == 0)
                    .cloned()
                    .collect();
                if !away.is_empty() && away.len() < size {
                    net.partition(c, &away, flush);
                }
            }
            4 if live.len() > 1 => {
                let other = live[rng.below(live.len())];
                if other != c {
                    net.merge(c.min(other), c.max(other), flush);
                }
            }
            _ => {
                // A refresh, if the member may start one now; a typed refusal otherwise.
                let who = net.components[c].members[rng.below(size)].clone();
                if let Err(e) = net.refresh(&who) {
                    ensure(e.code == ErrorCode::OUT_OF_STEP, || format!("refresh: {e}"))?;
                    if let Some(m) = net.members.get_mut(&who) {
                        m.errors.pop();
                    }
                }
            }
        }
    }
    net.run()?;
    let errors = net.errors();
    // In a cascade, a message of an abandoned agreement may reach a member that already
    // moved on: it must be refused as stale or out of step, nothing else.
    for (who, e) in &errors {
        ensure(
            [ErrorCode::STALE_VIEW, ErrorCode::OUT_OF_STEP].contains(&e.code),
            || format!("{who}: unexpected error {e}"),
        )?;
    }
    net.check_agreed()?;
    net.check_fresh()
}

/// Forged, replayed, reordered, misrouted and stale messages: each refused with its
/// typed error, nothing changes, and the agreement still completes.
pub fn attacks(setup: &dyn Fn() -> Setup) -> Report {
    let mut r = Report::default();
    r.check(
        "attacks on a join of a 4-member group",
        attack_join(setup()),
    );
    r
}

fn attack_join(setup: Setup) -> Result<(), String> {
    let mut net = grow(setup, 4)?;
    let old_view = net.components[0].view_id.clone();
    let stale: Vec<Message> = net
        .transcript
        .iter()
        .filter(|(v, _)| *v == old_view)
        .map(|(_, m)| m.clone())
        .collect();
    net.enroll("eve").map_err(|e| e.to_string())?;
    net.join(0, "m04", Flush::All).map_err(|e| e.to_string())?;
    let members = net.components[0].members.clone();
    let victim = members[1].clone();
    // Deliver the agreement one message at a time; before each, attack the victim.
    let mut round = 0;
    let mut taken_early = 0;
    let mut reorders = 0;
    while net.busy(0) {
        let next = net.components[0].queue.front().cloned().ok_or("empty")?;
        round += 1;
        // Reordering (FIFO broken): a sender's later message for the victim, delivered
        // before its earlier one. It is refused as out of step, or held without any
        // action (a confirmation that arrived before the key), and then its real
        // delivery is a replay.
        let queue: Vec<Message> = net.components[0].queue.iter().cloned().collect();
        let for_victim =
            |m: &Message| m.from != victim && m.to.as_deref().is_none_or(|t| t == victim);
        let later = queue.iter().enumerate().skip(1).find_map(|(i, m)| {
            let earlier_same_sender = queue[..i].iter().any(|e| e.from == m.from && for_victim(e));
            (for_victim(m) && earlier_same_sender).then(|| m.clone())
        });
        if let Some(later) = later {
            reorders += 1;
            let m = net.members.get_mut(&victim).ok_or("victim")?;
            if Envelope::parse(&later.payload).is_ok_and(|(_, _, sig)| sig.is_empty()) {
                // A confirmation altered on the way, before the genuine one: held
                // unchecked if the key is not known yet, and then it must not keep the
                // genuine one out.
                let mut altered = later.payload.clone();
                let at = altered.len() - 4;
                altered[at] ^= 0x01;
                match m.ka.on_message(&later.from, &altered) {
                    Err(e) if e.code == ErrorCode::KEY_CONFIRMATION_FAILED => {}
                    Err(e) if e.code == ErrorCode::OUT_OF_STEP => {}
                    Ok(a) if a.is_empty() => {}
                    other => {
                        return Err(format!(
                            "round {round}: altered early confirmation: {other:?}"
                        ));
                    }
                }
            }
            match m.ka.on_message(&later.from, &later.payload) {
                Err(e) if e.code == ErrorCode::OUT_OF_STEP => {}
                Ok(a) if a.is_empty() => taken_early += 1,
                other => return Err(format!("round {round}: reordered message: {other:?}")),
            }
        }
        if next.from != victim && next.to.as_deref().is_none_or(|t| t == victim) {
            let other_member = members
                .iter()
                .find(|m| **m != next.from && **m != victim)
                .cloned()
                .ok_or("no third member")?;
            // A key confirmation carries a MAC under the new key in its body instead of a
            // signature: before the key it cannot be checked and may be held (the genuine
            // one must still count); after, an altered one fails the MAC.
            let mac_only = Envelope::parse(&next.payload)
                .map(|(_, _, signature)| signature.is_empty())
                .map_err(|e| format!("round {round}: {e}"))?;
            let attempts: Vec<(&str, String, Vec<u8>, ErrorCode)> = {
                // The last byte of the signature, and a byte of the body (just before the
                // signature's length and the 64-byte Ed25519 signature); for a
                // confirmation, the last byte of its MAC (before the empty signature).
                let mut flipped = next.payload.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1;
                let mut body_flipped = next.payload.clone();
                let in_body = body_flipped.len() - if mac_only { 3 } else { 67 };
                body_flipped[in_body] ^= 0x40;
                let mut truncated = next.payload.clone();
                truncated.truncate(truncated.len() / 2);
                let body_code = if mac_only {
                    ErrorCode::KEY_CONFIRMATION_FAILED
                } else {
                    ErrorCode::BAD_SIGNATURE
                };
                // The sender as an insider: its own message, signed with its own key,
                // with the last epoch that can be (every later key's number would
                // overflow).
                let mut at_the_end = Envelope::parse(&next.payload)
                    .map_err(|e| format!("round {round}: {e}"))?
                    .0;
                at_the_end.epoch = u64::MAX;
                let provider = (net.setup.provider)();
                let insider = net
                    .identities
                    .get(&next.from)
                    .ok_or("no identity for the sender")?;
                let signer = provider
                    .signer(SIGNATURE, insider.expose())
                    .map_err(|e| e.to_string())?;
                let at_the_end = at_the_end.sign(&signer).map_err(|e| e.to_string())?;
                vec![
                    (
                        "signed by its sender with an epoch past the limit",
                        next.from.clone(),
                        at_the_end,
                        ErrorCode::BAD_MESSAGE,
                    ),
                    (
                        "tampered signature",
                        next.from.clone(),
                        flipped,
                        // An empty signature's length made 1: the message is cut short.
                        if mac_only {
                            ErrorCode::BAD_MESSAGE
                        } else {
                            ErrorCode::BAD_SIGNATURE
                        },
                    ),
                    ("tampered body", next.from.clone(), body_flipped, body_code),
                    (
                        "truncated",
                        next.from.clone(),
                        truncated,
                        ErrorCode::BAD_MESSAGE,
                    ),
                    (
                        "relabelled as another member's",
                        other_member.clone(),
                        next.payload.clone(),
                        ErrorCode::BAD_MESSAGE,
                    ),
                ]
            };
            for (what, from, payload, code) in attempts {
                let m = net.members.get_mut(&victim).ok_or("victim")?;
                let result = m.ka.on_message(&from, &payload);
                match result {
                    // Held unchecked before the key (the genuine one still counts).
                    Ok(a)
                        if mac_only
                            && code == ErrorCode::KEY_CONFIRMATION_FAILED
                            && a.is_empty() => {}
                    Ok(a) => return Err(format!("round {round}: {what} message accepted: {a:?}")),
                    Err(e) if e.code == code => {}
                    Err(e) => {
                        return Err(format!("round {round}: {what}: expected {code}, got {e}"));
                    }
                }
            }
            // A message of the previous view, replayed now.
            if let Some(old) = stale.iter().find(|m| m.from != victim) {
                let m = net.members.get_mut(&victim).ok_or("victim")?;
                match m.ka.on_message(&old.from, &old.payload) {
                    Err(e) if e.code == ErrorCode::STALE_VIEW => {}
                    other => return Err(format!("round {round}: stale message: {other:?}")),
                }
            }
            // From a member that is not trusted (eve is enrolled but not in the view).
            let m = net.members.get_mut(&victim).ok_or("victim")?;
            match m.ka.on_message("eve", &next.payload) {
                Err(e) if e.code == ErrorCode::BAD_MESSAGE => {}
                other => {
                    return Err(format!(
                        "round {round}: message relabelled as eve's: {other:?}"
                    ));
                }
            }
        }
        net.step(0);
        // Replay what was just delivered to the victim: refused as a replay.
        if next.from != victim && next.to.as_deref().is_none_or(|t| t == victim) {
            let m = net.members.get_mut(&victim).ok_or("victim")?;
            match m.ka.on_message(&next.from, &next.payload) {
                Err(e) if e.code == ErrorCode::REPLAYED_MESSAGE => {}
                other => return Err(format!("round {round}: replay: {other:?}")),
            }
        }
        // A unicast for somebody else, delivered to the victim.
        if let Some(to) = next.to.as_deref()
            && to != victim
            && next.from != victim
        {
            let m = net.members.get_mut(&victim).ok_or("victim")?;
            match m.ka.on_message(&next.from, &next.payload) {
                Err(e) if e.code == ErrorCode::MISROUTED => {}
                other => return Err(format!("round {round}: misrouted unicast: {other:?}")),
            }
        }
    }
    ensure(reorders > 0, || "no message could be reordered".into())?;
    // Altered confirmations held before the key did not keep the genuine ones out: the
    // agreement completes all the same (check_agreed below).
    // Messages held early were then refused as replays at their real turn; nothing else.
    let victim_errors = net.members.get_mut(&victim).ok_or("victim")?;
    let replays = victim_errors
        .errors
        .iter()
        .filter(|e| e.code == ErrorCode::REPLAYED_MESSAGE)
        .count();
    ensure(replays == taken_early, || {
        format!("{taken_early} messages held early, {replays} replays refused")
    })?;
    victim_errors
        .errors
        .retain(|e| e.code != ErrorCode::REPLAYED_MESSAGE);
    no_errors(&net)?;
    net.check_agreed()?;
    net.check_fresh()?;
    // A message from the completed agreement replayed after it: refused, key unchanged.
    let last = net
        .transcript
        .last()
        .map(|(_, m)| m.clone())
        .ok_or("no transcript")?;
    let target = members
        .iter()
        .find(|m| **m != last.from)
        .cloned()
        .ok_or("no target")?;
    let keys_before = net.members[&target].keys.len();
    let m = net.members.get_mut(&target).ok_or("target")?;
    match m.ka.on_message(&last.from, &last.payload) {
        Err(e) if [ErrorCode::REPLAYED_MESSAGE, ErrorCode::OUT_OF_STEP].contains(&e.code) => {}
        other => return Err(format!("late replay: {other:?}")),
    }
    ensure(net.members[&target].keys.len() == keys_before, || {
        "late replay changed the key".into()
    })?;
    Ok(())
}

/// After `leaver` leaves a settled group, it is fed every message the others exchange
/// (as an eavesdropper with its old state would see them): it must refuse them all and
/// report no key, and the new key must not appear in any message.
pub fn leaver_learns_nothing(setup: Setup, n: usize) -> Result<(), String> {
    let mut net = grow(setup, n)?;
    let members = net.components[0].members.clone();
    let leaver = members[n / 2].clone();
    let sent_before = net.transcript.len();
    let mut gone = net.members.remove(&leaver).ok_or("no leaver")?;
    net.components[0].members.retain(|m| *m != leaver);
    let remaining = net.components[0].members.clone();
    net.install(0, remaining, ViewCause::Leave);
    settle(&mut net)?;
    let new_key = net.key_of(0).ok_or("no key")?;
    for (_, msg) in net.transcript[sent_before..].iter() {
        ensure(
            !msg.payload
                .windows(new_key.key.len())
                .any(|w| w == new_key.key.expose()),
            || "the key travels in clear".into(),
        )?;
        if let Ok(actions) = gone.ka.on_message(&msg.from, &msg.payload) {
            ensure(
                !actions.iter().any(|a| matches!(a, Action::KeyReady(_))),
                || "the leaver reported a key".into(),
            )?;
            return Err(format!(
                "the leaver accepted a message of the new view from {}",
                msg.from
            ));
        }
    }
    ensure(gone.keys.iter().all(|k| k.key != new_key.key), || {
        "the leaver holds the new key".into()
    })?;
    gone.errors.clear();
    Ok(())
}

/// Defines the standard test suite of a key-agreement plugin in the calling test file,
/// like RustCrypto's `dev` macros: every event at n = 1..32 on Ristretto255 (first
/// provider), every event and the attacks on ffdhe3072 (second provider), random
/// cascades (300 seeds; `CONCLAVE_SOAK=N` for more, failing seeds are printed), the
/// attacks, and what a leaver learns. It also defines `setup_ristretto()` and
/// `setup_ffdhe3072()` for the file's own tests.
///
/// ```ignore
/// conclave_conformance::key_agreement_suite! {
///     module: conclave_plugin_gdh::plugin_module,
///     algorithm: "gdh",
///     first: conclave_provider_rustcrypto::plugin_module,
///     second: conclave_provider_openssl::plugin_module,
/// }
/// ```
#[macro_export]
macro_rules! key_agreement_suite {
    (module: $module:path, algorithm: $alg:literal, first: $first:path, second: $second:path $(,)?) => {
        fn suite_first() -> $crate::__sdk::host::Provider {
            $crate::provider::from_module($first()).expect("first provider")
        }

        fn suite_second() -> $crate::__sdk::host::Provider {
            $crate::provider::from_module($second()).expect("second provider")
        }

        /// The plugin on Ristretto255 with the first provider.
        #[allow(dead_code)]
        fn setup_ristretto() -> $crate::key_agreement::Setup {
            $crate::key_agreement::Setup {
                module: $module(),
                algorithm: $alg.into(),
                provider: suite_first,
                dh_group: "ristretto255".into(),
                options: $crate::__sdk::Options::default(),
            }
        }

        /// The plugin on ffdhe3072 with the second provider.
        #[allow(dead_code)]
        fn setup_ffdhe3072() -> $crate::key_agreement::Setup {
            $crate::key_agreement::Setup {
                provider: suite_second,
                dh_group: "ffdhe3072".into(),
                ..setup_ristretto()
            }
        }

        #[test]
        fn every_event_small_sizes() {
            $crate::key_agreement::all(&setup_ristretto, &[1, 2, 3, 5]).assert_ok();
        }

        #[test]
        fn every_event_at_every_size_up_to_32() {
            let sizes: Vec<usize> = (1..=32).collect();
            $crate::key_agreement::all(&setup_ristretto, &sizes).assert_ok();
        }

        #[test]
        fn every_event_on_ffdhe3072_with_the_second_provider() {
            $crate::key_agreement::all(&setup_ffdhe3072, &[2, 4, 7]).assert_ok();
        }

        #[test]
        fn random_cascades() {
            let seeds: u64 = std::env::var("CONCLAVE_SOAK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300);
            let report = $crate::key_agreement::cascades(&setup_ristretto, 0..seeds, 12);
            assert!(
                report.failed.is_empty(),
                "replay with the failing seeds: {report}"
            );
        }

        #[test]
        fn random_cascades_on_ffdhe3072() {
            $crate::key_agreement::cascades(&setup_ffdhe3072, 1000..1040, 8).assert_ok();
        }

        #[test]
        fn forged_replayed_misrouted_and_stale_messages_are_refused() {
            $crate::key_agreement::attacks(&setup_ristretto).assert_ok();
            $crate::key_agreement::attacks(&setup_ffdhe3072).assert_ok();
        }

        #[test]
        fn a_leaver_learns_nothing_of_the_next_key() {
            for n in [3, 8] {
                $crate::key_agreement::leaver_learns_nothing(setup_ristretto(), n).expect("leaver");
            }
            $crate::key_agreement::leaver_learns_nothing(setup_ffdhe3072(), 4).expect("leaver");
        }
    };
}
