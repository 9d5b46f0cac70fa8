//! A deterministic simulator of daemons, members and a network that fails.
//!
//! The simulator runs in virtual time (one [`Simulator::step`] is one tick) and draws
//! every choice from a ChaCha generator seeded by the caller, so a schedule is replayed
//! exactly from its seed. It models:
//!
//! * several daemons, each with members; the network is a set of *components* of
//!   daemons, and each component orders its traffic with one [`Domain`] (a sequencer);
//! * delays: every request travels from its member to the component, and every event
//!   from the component to its member, in FIFO order with a random delay of
//!   `0..=max_delay` ticks;
//! * failures: member crashes, daemon crashes (all its members at once), partitions of
//!   the network into any components and merges of components (see
//!   [`Simulator::set_network`]); a change that arrives while an earlier one is being
//!   flushed joins that flush (a cascade).
//!
//! Members are driven through [`MemberHandle`]s, which offer the operations of a real
//! connection (join, leave, send, flush_ok, events), or by the random agents of
//! [`Simulator::run`], which also checks the view-synchrony invariants of the schedule
//! (see [`Simulator::check`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::rc::Rc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::session::Session;
use crate::types::{
    Cause, Delivery, Event, GcsError, GroupName, MemberName, SendOptions, Service, View, ViewId,
};
use crate::vs::{Domain, Outgoing};

/// The shape of a simulated system.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many daemons (numbered from 0).
    pub daemons: usize,
    /// Ticks after which a member that has not answered a flush request is removed.
    pub flush_timeout: Option<u64>,
    /// The largest delay of a request or an event, in ticks.
    pub max_delay: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            daemons: 3,
            flush_timeout: Some(500),
            max_delay: 3,
        }
    }
}

/// A request on its way from a member to its component.
#[derive(Clone, Debug)]
enum Op {
    Join(GroupName),
    Leave(GroupName),
    FlushOk(GroupName),
    Send {
        group: GroupName,
        delivery: Delivery,
        payload: Bytes,
        options: SendOptions,
        msg: u64,
    },
}

/// What a member received, as the checker sees it.
#[derive(Clone, Debug)]
enum Rec {
    View(View),
    Msg {
        group: GroupName,
        view: ViewId,
        sender: MemberName,
        msg: u64,
    },
    Flush(GroupName),
    Left(GroupName),
}

impl Rec {
    /// What the checker keeps of `event`; `msg` numbers a message.
    fn of(event: &Event, msg: u64) -> Rec {
        match event {
            Event::View(v) => Rec::View(v.clone()),
            Event::FlushRequest { group } => Rec::Flush(group.clone()),
            Event::Left { group, .. } | Event::Refused { group, .. } => Rec::Left(group.clone()),
            Event::Message {
                group,
                sender,
                view_id,
                ..
            } => Rec::Msg {
                group: group.clone(),
                view: *view_id,
                sender: sender.clone(),
                msg,
            },
        }
    }
}

/// A message a member handed to the engine.
#[derive(Clone, Debug)]
struct Sent {
    msg: u64,
    sender: usize,
    group: GroupName,
    view: ViewId,
    delivery: Delivery,
    self_delivery: bool,
}

#[derive(Debug)]
struct Member {
    name: MemberName,
    daemon: usize,
    alive: bool,
    session: Session,
    ops: VecDeque<(u64, Op)>,
    inbox: VecDeque<(u64, Event, Option<u64>)>,
    received: VecDeque<Event>,
    log: Vec<Rec>,
}

#[derive(Debug)]
struct Component {
    daemons: Vec<usize>,
    domain: Domain,
}

#[derive(Debug)]
struct Net {
    rng: ChaCha8Rng,
    now: u64,
    config: SimConfig,
    daemon_alive: Vec<bool>,
    components: Vec<Component>,
    members: Vec<Member>,
    by_name: BTreeMap<MemberName, usize>,
    next_msg: u64,
    /// The last origin given to a domain (view ids are unique per origin).
    next_origin: u32,
    sent: Vec<Sent>,
    /// Requests the domain refused with [`GcsError::Flushing`]: the member-side rules
    /// and FIFO channels make these impossible, so any is a violation.
    flushing_refusals: usize,
}

impl Net {
    fn component_of(&self, daemon: usize) -> usize {
        self.components
            .iter()
            .position(|c| c.daemons.contains(&daemon))
            .unwrap_or(0)
    }

    fn delay(&mut self) -> u64 {
        self.rng.random_range(0..=self.config.max_delay)
    }

    fn route(&mut self, out: Vec<Outgoing>, msg: Option<u64>) {
        for o in out {
            let Some(&idx) = self.by_name.get(&o.to) else {
                continue;
            };
            if !self.members[idx].alive {
                continue;
            }
            let at = self.now + self.delay();
            let m = &mut self.members[idx];
            let at = m.inbox.back().map_or(at, |(last, _, _)| at.max(*last));
            m.inbox.push_back((at, o.event, msg));
        }
    }

    fn submit(&mut self, idx: usize, op: Op) {
        let at = self.now + self.delay();
        let m = &mut self.members[idx];
        let at = m.ops.back().map_or(at, |(last, _)| at.max(*last));
        m.ops.push_back((at, op));
    }

    fn apply(&mut self, idx: usize, op: Op) {
        let c = self.component_of(self.members[idx].daemon);
        let name = self.members[idx].name.clone();
        let domain = &mut self.components[c].domain;
        let (result, msg) = match op {
            Op::Join(g) => (domain.join(&name, &g), None),
            Op::Leave(g) => (domain.leave(&name, &g), None),
            Op::FlushOk(g) => (domain.flush_ok(&name, &g), None),
            Op::Send {
                group,
                delivery,
                payload,
                options,
                msg,
            } => (
                domain.send(&name, &group, &delivery, payload, options),
                Some(msg),
            ),
        };
        if let Err(error) = result {
            tracing::trace!(member = %name, %error, "request refused by the domain");
            if matches!(error, GcsError::Flushing { .. }) {
                self.flushing_refusals += 1;
            }
        }
        let out = self.components[c].domain.drain();
        self.route(out, msg);
    }

    fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        for idx in 0..self.members.len() {
            while self.members[idx]
                .ops
                .front()
                .is_some_and(|(at, _)| *at <= now)
            {
                if let Some((_, op)) = self.members[idx].ops.pop_front() {
                    self.apply(idx, op);
                }
            }
        }
        for c in 0..self.components.len() {
            self.components[c].domain.advance(now);
            let out = self.components[c].domain.drain();
            self.route(out, None);
        }
        for m in &mut self.members {
            while m.inbox.front().is_some_and(|(at, _, _)| *at <= now) {
                let Some((_, event, msg)) = m.inbox.pop_front() else {
                    break;
                };
                m.session.observe(&event);
                m.log.push(Rec::of(&event, msg.unwrap_or(u64::MAX)));
                m.received.push_back(event);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.ops.is_empty() && m.inbox.is_empty())
    }

    fn crash(&mut self, idx: usize) {
        let m = &mut self.members[idx];
        if !m.alive {
            return;
        }
        m.alive = false;
        m.ops.clear();
        m.inbox.clear();
        let name = m.name.clone();
        let daemon = m.daemon;
        let c = self.component_of(daemon);
        self.components[c].domain.disconnect(&name);
        let out = self.components[c].domain.drain();
        self.route(out, None);
    }

    fn set_network(&mut self, parts: &[Vec<usize>]) -> Result<(), SimError> {
        let mut seen = BTreeSet::new();
        for part in parts {
            for &d in part {
                if d >= self.config.daemons || !seen.insert(d) {
                    return Err(SimError::BadNetwork(format!(
                        "daemon {d} is unknown or listed twice"
                    )));
                }
            }
        }
        if seen.len() != self.config.daemons || parts.iter().any(|p| p.is_empty()) {
            return Err(SimError::BadNetwork(
                "every daemon must be in exactly one non-empty component".into(),
            ));
        }
        // Events the old domains produced are already routed; split and merge.
        let by_daemon: BTreeMap<usize, MemberDaemons> = self
            .members
            .iter()
            .map(|m| (m.name.clone(), m.daemon))
            .fold(BTreeMap::new(), |mut acc, (name, d)| {
                acc.entry(d).or_insert_with(Vec::new).push(name);
                acc
            });
        // Every domain that may install views gets an origin of its own, so view ids
        // stay unique however the network splits and heals.
        let mut next = Vec::new();
        for part in parts {
            let mut part = part.clone();
            part.sort_unstable();
            let members: BTreeSet<&MemberName> = part
                .iter()
                .filter_map(|d| by_daemon.get(d))
                .flatten()
                .collect();
            let mut pieces = Vec::new();
            for c in self
                .components
                .iter()
                .filter(|c| c.daemons.iter().any(|d| part.contains(d)))
            {
                self.next_origin += 1;
                pieces.push(
                    c.domain
                        .split(&|m: &MemberName| members.contains(m), self.next_origin),
                );
            }
            self.next_origin += 1;
            next.push(Component {
                daemons: part,
                domain: Domain::merge(pieces, self.next_origin),
            });
        }
        next.sort_by_key(|c| c.daemons[0]);
        self.components = next;
        for c in 0..self.components.len() {
            let out = self.components[c].domain.drain();
            self.route(out, None);
        }
        Ok(())
    }
}

type MemberDaemons = Vec<MemberName>;

/// Errors of the simulator's own API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The requested network is not a partition of the daemons.
    #[error("bad network: {0}")]
    BadNetwork(String),
    /// The daemon does not exist or crashed.
    #[error("daemon {0} does not exist or crashed")]
    NoDaemon(usize),
    /// The member name is taken.
    #[error(transparent)]
    Gcs(#[from] GcsError),
    /// Traffic was still in flight after the step limit.
    #[error("still busy after {0} steps")]
    NotQuiet(u64),
}

/// A broken view-synchrony invariant, with the seed that replays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The seed of the schedule, if it came from [`Simulator::run`].
    pub seed: Option<u64>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seed {
            Some(seed) => write!(
                f,
                "seed {seed}: {} (replay with Simulator::run({seed}))",
                self.message
            ),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Violation {}

/// What a random schedule did, for coverage assertions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Ticks run.
    pub ticks: u64,
    /// Views delivered (counted per recipient).
    pub views: u64,
    /// Messages delivered (counted per recipient).
    pub deliveries: u64,
    /// Views with cause `Merge` and at least two joiners (per recipient).
    pub merge_views: u64,
    /// Views with cause `Partition` (per recipient).
    pub partition_views: u64,
    /// Views that combined at least three joins and leaves (cascades, per recipient).
    pub cascade_views: u64,
    /// Members removed by a flush timeout.
    pub flush_timeouts: u64,
    /// Member and daemon crashes.
    pub crashes: u64,
}

/// The deterministic simulator. Cheap to clone: clones share the same simulation.
#[derive(Clone, Debug)]
pub struct Simulator {
    net: Rc<RefCell<Net>>,
}

/// One simulated member, with the operations of a connection to a real engine.
#[derive(Clone, Debug)]
pub struct MemberHandle {
    net: Rc<RefCell<Net>>,
    idx: usize,
    name: MemberName,
}

impl MemberHandle {
    /// The member's name.
    pub fn name(&self) -> &MemberName {
        &self.name
    }

    fn with_live<T>(&self, f: impl FnOnce(&mut Net) -> Result<T, GcsError>) -> Result<T, GcsError> {
        let mut net = self.net.borrow_mut();
        if !net.members[self.idx].alive {
            return Err(GcsError::Disconnected {
                reason: "the member crashed".into(),
            });
        }
        f(&mut net)
    }

    /// Asks to join `group`; the member's next view of it follows as an event.
    pub fn join(&self, group: &GroupName) -> Result<(), GcsError> {
        self.with_live(|net| {
            net.members[self.idx].session.join(group)?;
            net.submit(self.idx, Op::Join(group.clone()));
            Ok(())
        })
    }

    /// Leaves `group`; [`Event::Left`] confirms it.
    pub fn leave(&self, group: &GroupName) -> Result<(), GcsError> {
        self.with_live(|net| {
            net.members[self.idx].session.leave(group)?;
            net.submit(self.idx, Op::Leave(group.clone()));
            Ok(())
        })
    }

    /// Acknowledges the pending flush request of `group`.
    pub fn flush_ok(&self, group: &GroupName) -> Result<(), GcsError> {
        self.with_live(|net| {
            net.members[self.idx].session.flush_ok(group)?;
            net.submit(self.idx, Op::FlushOk(group.clone()));
            Ok(())
        })
    }

    /// Sends `payload` to `group`.
    pub fn send(
        &self,
        group: &GroupName,
        delivery: Delivery,
        payload: impl Into<Bytes>,
        options: SendOptions,
    ) -> Result<(), GcsError> {
        let payload = payload.into();
        self.with_live(|net| {
            let session = &net.members[self.idx].session;
            session.check_send(group, &delivery, payload.len())?;
            let view = session
                .view(group)
                .map(|v| v.id)
                .ok_or_else(|| GcsError::NotMember {
                    group: group.clone(),
                    member: self.name.clone(),
                })?;
            let msg = net.next_msg;
            net.next_msg += 1;
            net.sent.push(Sent {
                msg,
                sender: self.idx,
                group: group.clone(),
                view,
                delivery: delivery.clone(),
                self_delivery: options.self_delivery,
            });
            net.submit(
                self.idx,
                Op::Send {
                    group: group.clone(),
                    delivery,
                    payload,
                    options,
                    msg,
                },
            );
            Ok(())
        })
    }

    /// Multicasts `payload` to `group` with `service`, delivered to the sender too.
    pub fn multicast(
        &self,
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
    }

    /// Sends `payload` to one member of `group`.
    pub fn unicast(
        &self,
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
    }

    /// The next event received and not yet taken.
    pub fn next_event(&self) -> Option<Event> {
        self.net.borrow_mut().members[self.idx].received.pop_front()
    }

    /// Every event received and not yet taken, in order.
    pub fn events(&self) -> Vec<Event> {
        self.net.borrow_mut().members[self.idx]
            .received
            .drain(..)
            .collect()
    }

    /// The member's current view of `group`.
    pub fn view(&self, group: &GroupName) -> Option<View> {
        self.net.borrow().members[self.idx]
            .session
            .view(group)
            .cloned()
    }

    /// Whether the member is still alive.
    pub fn is_alive(&self) -> bool {
        self.net.borrow().members[self.idx].alive
    }

    /// Whether nothing is in flight in the whole simulation.
    pub(crate) fn simulation_idle(&self) -> bool {
        self.net.borrow().is_idle()
    }

    /// Advances the whole simulation by one tick.
    pub(crate) fn step_simulation(&self) {
        self.net.borrow_mut().step();
    }
}

impl Simulator {
    /// A simulation of `config.daemons` daemons in one component, no members yet.
    pub fn new(seed: u64, config: SimConfig) -> Self {
        let daemons = config.daemons.max(1);
        let config = SimConfig { daemons, ..config };
        let domain = Domain::new(0, config.flush_timeout);
        Self {
            net: Rc::new(RefCell::new(Net {
                rng: ChaCha8Rng::seed_from_u64(seed),
                now: 0,
                daemon_alive: vec![true; daemons],
                components: vec![Component {
                    daemons: (0..daemons).collect(),
                    domain,
                }],
                members: Vec::new(),
                by_name: BTreeMap::new(),
                next_msg: 0,
                next_origin: 0,
                sent: Vec::new(),
                flushing_refusals: 0,
                config,
            })),
        }
    }

    /// Connects a new member to `daemon`.
    pub fn add_member(&self, name: &MemberName, daemon: usize) -> Result<MemberHandle, SimError> {
        let mut net = self.net.borrow_mut();
        if !net.daemon_alive.get(daemon).copied().unwrap_or(false) {
            return Err(SimError::NoDaemon(daemon));
        }
        if net.by_name.contains_key(name) {
            return Err(GcsError::NameInUse(name.clone()).into());
        }
        let idx = net.members.len();
        net.members.push(Member {
            name: name.clone(),
            daemon,
            alive: true,
            session: Session::new(name.clone()),
            ops: VecDeque::new(),
            inbox: VecDeque::new(),
            received: VecDeque::new(),
            log: Vec::new(),
        });
        net.by_name.insert(name.clone(), idx);
        Ok(MemberHandle {
            net: Rc::clone(&self.net),
            idx,
            name: name.clone(),
        })
    }

    /// Crashes a member: its requests and events in flight are lost, and the others see
    /// it leave with cause `Disconnect`.
    pub fn crash_member(&self, member: &MemberName) {
        let mut net = self.net.borrow_mut();
        if let Some(&idx) = net.by_name.get(member) {
            net.crash(idx);
        }
    }

    /// Crashes a daemon and every member on it, in one change.
    pub fn crash_daemon(&self, daemon: usize) {
        let mut net = self.net.borrow_mut();
        if let Some(alive) = net.daemon_alive.get_mut(daemon) {
            *alive = false;
        }
        let victims: Vec<usize> = (0..net.members.len())
            .filter(|&i| net.members[i].daemon == daemon)
            .collect();
        for idx in victims {
            net.crash(idx);
        }
    }

    /// Makes the network exactly these components of daemons (each daemon in one):
    /// members cut off from each other see a view with cause `Partition`, components
    /// that come together see one view with cause `Merge`.
    pub fn set_network(&self, components: &[Vec<usize>]) -> Result<(), SimError> {
        self.net.borrow_mut().set_network(components)
    }

    /// The current components of daemons.
    pub fn network(&self) -> Vec<Vec<usize>> {
        self.net
            .borrow()
            .components
            .iter()
            .map(|c| c.daemons.clone())
            .collect()
    }

    /// Advances virtual time by one tick: requests and events due are delivered.
    pub fn step(&self) {
        self.net.borrow_mut().step();
    }

    /// The current virtual time.
    pub fn now(&self) -> u64 {
        self.net.borrow().now
    }

    /// Steps until no request or event is in flight (at most `max_steps`). Flushes that
    /// wait for a member's `flush_ok` do not count as traffic: the driver answers them.
    pub fn run_until_quiet(&self, max_steps: u64) -> Result<u64, SimError> {
        for n in 0..max_steps {
            if self.net.borrow().is_idle() {
                return Ok(n);
            }
            self.step();
        }
        if self.net.borrow().is_idle() {
            Ok(max_steps)
        } else {
            Err(SimError::NotQuiet(max_steps))
        }
    }

    /// Checks the view-synchrony invariants on everything delivered so far: views are
    /// well formed (joined and left relative to the member's previous view, join order
    /// kept) and identical everywhere; members install common views in the same order;
    /// members that move together from a view to the next (or are both still in it)
    /// delivered the same messages in it in the same order; agreed order is never
    /// contradicted; every message is delivered in the view it was sent in, to every
    /// member that moves with its sender (itself included unless self-delivery was
    /// off, and never otherwise); FIFO per sender; no event of a group between a
    /// member's `Left` and its next view.
    pub fn check(&self) -> Result<(), Violation> {
        check(&self.net.borrow()).map_err(|message| Violation {
            seed: None,
            message,
        })
    }

    /// Runs the random schedule of `seed` and checks it; the error names the seed.
    pub fn run(seed: u64) -> Result<RunStats, Violation> {
        run_random(seed).map_err(|message| Violation {
            seed: Some(seed),
            message,
        })
    }
}

/// One member's stay in one view.
#[derive(Debug)]
struct Epoch {
    member: usize,
    view: View,
    msgs: Vec<u64>,
    next: Next,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Left, crashed or was removed: moved with nobody.
    Gone,
    /// Still in the view at the end of the run.
    End,
    /// Installed this view next.
    View(ViewId),
}

fn check(net: &Net) -> Result<(), String> {
    if net.flushing_refusals > 0 {
        return Err(format!(
            "{} sends reached the engine after the sender's flush_ok",
            net.flushing_refusals
        ));
    }
    let members: Vec<MemberLog<'_>> = net
        .members
        .iter()
        .map(|m| MemberLog {
            name: &m.name,
            log: &m.log,
            alive: m.alive,
        })
        .collect();
    check_logs(&members, &net.sent)
}

/// One member's record, as the checker reads it.
struct MemberLog<'a> {
    name: &'a MemberName,
    log: &'a [Rec],
    alive: bool,
}

fn check_logs(members: &[MemberLog<'_>], sent_list: &[Sent]) -> Result<(), String> {
    let mut epochs: Vec<Epoch> = Vec::new();
    // (member, view) -> epoch
    let mut index: BTreeMap<(usize, ViewId), usize> = BTreeMap::new();
    let mut canonical: BTreeMap<ViewId, &View> = BTreeMap::new();
    // member -> group -> view ids in order
    let mut orders: Vec<BTreeMap<&GroupName, Vec<ViewId>>> = Vec::new();
    for (idx, m) in members.iter().enumerate() {
        let mut current: BTreeMap<&GroupName, usize> = BTreeMap::new();
        let mut fifo: BTreeMap<&MemberName, u64> = BTreeMap::new();
        let mut order: BTreeMap<&GroupName, Vec<ViewId>> = BTreeMap::new();
        let who = m.name;
        for rec in m.log {
            match rec {
                Rec::View(v) => {
                    if !v.contains(who) {
                        return Err(format!("{who} got view {} without itself", v.id));
                    }
                    match canonical.get(&v.id) {
                        Some(c)
                            if c.members != v.members
                                || c.cause != v.cause
                                || c.group != v.group =>
                        {
                            return Err(format!(
                                "view {} differs between members: {:?} {:?} vs {who}'s {:?} {:?}",
                                v.id, c.members, c.cause, v.members, v.cause
                            ));
                        }
                        Some(_) => {}
                        None => {
                            canonical.insert(v.id, v);
                        }
                    }
                    if index.contains_key(&(idx, v.id)) {
                        return Err(format!("{who} installed view {} twice", v.id));
                    }
                    if let Some(&prev) = current.get(&v.group) {
                        let before = &epochs[prev].view.members;
                        let joined: Vec<_> = v
                            .members
                            .iter()
                            .filter(|x| !before.contains(x))
                            .cloned()
                            .collect();
                        let left: Vec<_> = before
                            .iter()
                            .filter(|x| !v.members.contains(x))
                            .cloned()
                            .collect();
                        if joined != v.joined || left != v.left {
                            return Err(format!(
                                "{who}: view {} says joined {:?} left {:?}, expected {joined:?} {left:?}",
                                v.id, v.joined, v.left
                            ));
                        }
                        let kept_before: Vec<_> =
                            before.iter().filter(|x| v.members.contains(x)).collect();
                        let kept_after: Vec<_> =
                            v.members.iter().filter(|x| before.contains(x)).collect();
                        if kept_before != kept_after {
                            return Err(format!("{who}: view {} reorders members", v.id));
                        }
                        epochs[prev].next = Next::View(v.id);
                    } else if !v.joined.contains(who) {
                        return Err(format!("{who}: first view {} omits it from joined", v.id));
                    }
                    index.insert((idx, v.id), epochs.len());
                    current.insert(&v.group, epochs.len());
                    order.entry(&v.group).or_default().push(v.id);
                    epochs.push(Epoch {
                        member: idx,
                        view: v.clone(),
                        msgs: Vec::new(),
                        next: Next::Gone,
                    });
                }
                Rec::Msg {
                    group,
                    view,
                    sender,
                    msg,
                } => {
                    let Some(&e) = current.get(group) else {
                        return Err(format!("{who} got message {msg} of {group} outside a view"));
                    };
                    if epochs[e].view.id != *view {
                        return Err(format!(
                            "{who} got message {msg} of view {view} in view {}",
                            epochs[e].view.id
                        ));
                    }
                    if let Some(last) = fifo.insert(sender, *msg)
                        && last >= *msg
                    {
                        return Err(format!(
                            "{who}: FIFO broken, {sender}'s message {msg} after {last}"
                        ));
                    }
                    epochs[e].msgs.push(*msg);
                }
                Rec::Flush(group) => {
                    if !current.contains_key(group) {
                        return Err(format!(
                            "{who} got a flush request of {group} outside a view"
                        ));
                    }
                }
                Rec::Left(group) => {
                    current.remove(group);
                }
            }
        }
        if m.alive {
            for e in current.values() {
                epochs[*e].next = Next::End;
            }
        }
        orders.push(order);
    }

    // The same views in the same order.
    for a in 0..orders.len() {
        for b in a + 1..orders.len() {
            for (group, va) in &orders[a] {
                let Some(vb) = orders[b].get(group) else {
                    continue;
                };
                let fa: Vec<_> = va.iter().filter(|v| vb.contains(v)).collect();
                let fb: Vec<_> = vb.iter().filter(|v| va.contains(v)).collect();
                if fa != fb {
                    return Err(format!(
                        "{} and {} installed views of {group} in different orders: {fa:?} vs {fb:?}",
                        members[a].name, members[b].name
                    ));
                }
            }
        }
    }

    // Per view: same messages for members that move together; one agreed order.
    let sent: BTreeMap<u64, &Sent> = sent_list.iter().map(|s| (s.msg, s)).collect();
    let mut by_view: BTreeMap<ViewId, Vec<usize>> = BTreeMap::new();
    for (i, e) in epochs.iter().enumerate() {
        by_view.entry(e.view.id).or_default().push(i);
    }
    for (id, list) in &by_view {
        for (k, &x) in list.iter().enumerate() {
            for &y in &list[k + 1..] {
                let (ex, ey) = (&epochs[x], &epochs[y]);
                let (nx, ny) = (&members[ex.member].name, &members[ey.member].name);
                // The multicasts meant for both.
                let common = |e: &Epoch| -> Vec<u64> {
                    e.msgs
                        .iter()
                        .copied()
                        .filter(|m| {
                            sent.get(m).is_some_and(|s| {
                                matches!(s.delivery, Delivery::Multicast(_))
                                    && (s.self_delivery
                                        || (s.sender != ex.member && s.sender != ey.member))
                            })
                        })
                        .collect()
                };
                if ex.next == ey.next && ex.next != Next::Gone && common(ex) != common(ey) {
                    return Err(format!(
                        "{nx} and {ny} moved together from view {id} with different messages: {:?} vs {:?}",
                        common(ex),
                        common(ey)
                    ));
                }
                let sx: BTreeSet<_> = ex.msgs.iter().collect();
                let sy: BTreeSet<_> = ey.msgs.iter().collect();
                let fx: Vec<_> = ex.msgs.iter().filter(|m| sy.contains(m)).collect();
                let fy: Vec<_> = ey.msgs.iter().filter(|m| sx.contains(m)).collect();
                if fx != fy {
                    return Err(format!(
                        "{nx} and {ny} delivered view {id}'s messages in different orders"
                    ));
                }
            }
        }
    }

    // Every message reaches, in its view, every member that moves with its sender.
    for s in sent.values() {
        let Some(&se) = index.get(&(s.sender, s.view)) else {
            return Err(format!(
                "message {} sent in view {} unknown to its sender",
                s.msg, s.view
            ));
        };
        let sender_next = epochs[se].next;
        for &e in by_view.get(&s.view).into_iter().flatten() {
            let ep = &epochs[e];
            let who = &members[ep.member].name;
            let expected = match &s.delivery {
                Delivery::Multicast(_) => ep.member != s.sender || s.self_delivery,
                Delivery::Unicast(to) => to == *who,
            };
            let got = ep.msgs.contains(&s.msg);
            if got && !expected {
                return Err(format!("{who} got message {} not meant for it", s.msg));
            }
            if expected && !got && sender_next != Next::Gone && ep.next == sender_next {
                return Err(format!(
                    "{who} moved with {} from view {} without its message {} ({})",
                    members[s.sender].name, s.view, s.msg, s.group
                ));
            }
        }
    }
    Ok(())
}

/// A record of what the members of any engine sent and received, checked with the
/// simulator's invariants ([`Simulator::check`]). Messages are identified by an id
/// the recorder chooses (unique per message, growing per sender, for example sender
/// index and sequence number in the payload).
#[derive(Clone, Debug, Default)]
pub struct Trace {
    members: Vec<(MemberName, Vec<Rec>, bool)>,
    sent: Vec<Sent>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member (one per connection) and returns its index.
    pub fn add_member(&mut self, name: MemberName) -> usize {
        self.members.push((name, Vec::new(), true));
        self.members.len() - 1
    }

    /// Records an event received by `member`; `msg` is the message's id (for
    /// [`Event::Message`]).
    pub fn received(&mut self, member: usize, event: &Event, msg: u64) {
        let Some((_, log, _)) = self.members.get_mut(member) else {
            return;
        };
        log.push(Rec::of(event, msg));
    }

    /// Records a message `member` handed to the engine while in view `view`.
    pub fn sent(
        &mut self,
        member: usize,
        msg: u64,
        group: &GroupName,
        view: ViewId,
        delivery: &Delivery,
        self_delivery: bool,
    ) {
        self.sent.push(Sent {
            msg,
            sender: member,
            group: group.clone(),
            view,
            delivery: delivery.clone(),
            self_delivery,
        });
    }

    /// Marks `member` as gone (crashed or disconnected): it moves with nobody.
    pub fn gone(&mut self, member: usize) {
        if let Some((_, _, alive)) = self.members.get_mut(member) {
            *alive = false;
        }
    }

    /// Checks the invariants listed at [`Simulator::check`]. Members still alive are
    /// taken to have received everything (the engine was quiet when recording
    /// stopped).
    pub fn check(&self) -> Result<(), Violation> {
        let members: Vec<MemberLog<'_>> = self
            .members
            .iter()
            .map(|(name, log, alive)| MemberLog {
                name,
                log,
                alive: *alive,
            })
            .collect();
        check_logs(&members, &self.sent).map_err(|message| Violation {
            seed: None,
            message,
        })
    }
}

/// A random member's behaviour.
#[derive(Debug, Default)]
struct Agent {
    /// Never answers flush requests (so a flush timeout removes it).
    lazy: bool,
    /// flush_ok to send: (when, group).
    acks: Vec<(u64, GroupName)>,
}

fn run_random(seed: u64) -> Result<RunStats, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed);
    let daemons = rng.random_range(2..=4usize);
    let config = SimConfig {
        daemons,
        flush_timeout: Some(rng.random_range(60..=200)),
        max_delay: rng.random_range(0..=6),
    };
    let timeout = config.flush_timeout.unwrap_or(u64::MAX);
    let sim = Simulator::new(seed, config);
    let groups: Vec<GroupName> = (0..rng.random_range(1..=2))
        .map(|g| GroupName::new(format!("g{g}")).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut handles: Vec<MemberHandle> = Vec::new();
    let mut agents: Vec<Agent> = Vec::new();
    let mut stats = RunStats::default();
    let spawn = |rng: &mut ChaCha8Rng,
                 handles: &mut Vec<MemberHandle>,
                 agents: &mut Vec<Agent>|
     -> Result<(), String> {
        let alive: Vec<usize> = (0..daemons)
            .filter(|&d| sim.net.borrow().daemon_alive[d])
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        let daemon = alive[rng.random_range(0..alive.len())];
        let name =
            MemberName::new(format!("m{}#d{daemon}", handles.len())).map_err(|e| e.to_string())?;
        handles.push(sim.add_member(&name, daemon).map_err(|e| e.to_string())?);
        agents.push(Agent {
            lazy: rng.random_bool(0.05),
            acks: Vec::new(),
        });
        Ok(())
    };
    for _ in 0..rng.random_range(3..=9) {
        spawn(&mut rng, &mut handles, &mut agents)?;
    }
    let horizon = rng.random_range(300..=700u64);
    let ack_delay = rng.random_range(0..=25u64);
    let fault_rate = rng.random_range(0.002..0.012);
    let mut t = 0u64;
    loop {
        let active = t < horizon;
        if !active && sim.net.borrow().is_idle() && {
            let net = sim.net.borrow();
            net.components.iter().all(|c| c.domain.is_quiet())
        } {
            break;
        }
        if t > horizon + 20 * timeout + 1000 {
            return Err(format!("no quiescence by tick {t}"));
        }
        // Faults.
        if active && rng.random_bool(fault_rate) {
            match rng.random_range(0..10) {
                0 | 1 => {
                    let alive: Vec<usize> = (0..handles.len())
                        .filter(|&i| handles[i].is_alive())
                        .collect();
                    if !alive.is_empty() {
                        let i = alive[rng.random_range(0..alive.len())];
                        sim.crash_member(handles[i].name());
                        stats.crashes += 1;
                    }
                }
                2 => {
                    let d = rng.random_range(0..daemons);
                    if sim.net.borrow().daemon_alive[d] {
                        sim.crash_daemon(d);
                        stats.crashes += 1;
                    }
                }
                3..=5 => {
                    // Any components: scatter the daemons.
                    let k = rng.random_range(1..=daemons);
                    let mut parts: Vec<Vec<usize>> = vec![Vec::new(); k];
                    for d in 0..daemons {
                        parts[rng.random_range(0..k)].push(d);
                    }
                    parts.retain(|p| !p.is_empty());
                    sim.set_network(&parts).map_err(|e| e.to_string())?;
                }
                6 | 7 => {
                    // Heal: merge two components.
                    let mut parts = sim.network();
                    if parts.len() > 1 {
                        let b = parts.remove(rng.random_range(1..parts.len()));
                        let a = rng.random_range(0..parts.len());
                        parts[a].extend(b);
                        sim.set_network(&parts).map_err(|e| e.to_string())?;
                    }
                }
                _ => spawn(&mut rng, &mut handles, &mut agents)?,
            }
        }
        sim.step();
        t += 1;
        let now = sim.now();
        // Agents.
        for (i, h) in handles.iter().enumerate() {
            if !h.is_alive() {
                continue;
            }
            let agent = &mut agents[i];
            for event in h.events() {
                if let Event::FlushRequest { group } = event {
                    if !agent.lazy {
                        agent
                            .acks
                            .push((now + rng.random_range(0..=ack_delay), group));
                    }
                } else if let Event::Left {
                    cause: Cause::Disconnect,
                    ..
                } = event
                {
                    stats.flush_timeouts += 1;
                }
            }
            let due: Vec<GroupName> = {
                let (due, later): (Vec<_>, Vec<_>) =
                    agent.acks.drain(..).partition(|(at, _)| *at <= now);
                agent.acks = later;
                due.into_iter().map(|(_, g)| g).collect()
            };
            for g in due {
                let pending = h.net.borrow().members[h.idx].session.flush_pending(&g);
                if pending {
                    h.flush_ok(&g).map_err(|e| format!("{}: {e}", h.name()))?;
                }
            }
            if !active {
                continue;
            }
            let group = &groups[rng.random_range(0..groups.len())];
            let roll = rng.random_range(0..1000);
            let view = h.view(group);
            match (roll, view) {
                (0..=14, None) => {
                    // Joining twice or while leaving is refused by the session.
                    let _ = h.join(group);
                }
                (15..=16, Some(_)) => h.leave(group).map_err(|e| e.to_string())?,
                (100..=199, Some(v)) => {
                    let payload = vec![0u8; rng.random_range(0..16)];
                    let delivery = if rng.random_bool(0.2) {
                        Delivery::Unicast(v.members[rng.random_range(0..v.members.len())].clone())
                    } else {
                        Delivery::Multicast(
                            [Service::Fifo, Service::Causal, Service::Agreed]
                                [rng.random_range(0..3)],
                        )
                    };
                    let options = SendOptions {
                        self_delivery: rng.random_bool(0.8),
                    };
                    match h.send(group, delivery, payload, options) {
                        Ok(()) | Err(GcsError::Flushing { .. }) => {}
                        Err(e) => return Err(format!("{}: unexpected {e}", h.name())),
                    }
                }
                _ => {}
            }
        }
    }
    stats.ticks = t;
    {
        let net = sim.net.borrow();
        for m in &net.members {
            for rec in &m.log {
                match rec {
                    Rec::View(v) => {
                        stats.views += 1;
                        match v.cause {
                            Cause::Merge if v.joined.len() >= 2 => stats.merge_views += 1,
                            Cause::Partition => stats.partition_views += 1,
                            _ => {}
                        }
                        if v.joined.len() + v.left.len() >= 3 {
                            stats.cascade_views += 1;
                        }
                    }
                    Rec::Msg { .. } => stats.deliveries += 1,
                    _ => {}
                }
            }
        }
        check(&net)?;
        // Liveness: after quiescence every live member's last view is its component's.
        for m in net.members.iter().filter(|m| m.alive) {
            let c = net.component_of(m.daemon);
            for g in &groups {
                let members = net.components[c].domain.members(g);
                let view = m.session.view(g);
                match view {
                    Some(v) if v.members != members => {
                        return Err(format!(
                            "{}: final view {} of {g} is {:?}, the component has {members:?}",
                            m.name, v.id, v.members
                        ));
                    }
                    None if members.contains(&m.name) => {
                        return Err(format!("{} is in {g} but has no view", m.name));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> GroupName {
        GroupName::new("g").unwrap()
    }

    /// A small scripted run, then the checker must notice tampering with its trace.
    fn scripted() -> Simulator {
        let sim = Simulator::new(1, SimConfig::default());
        let a = sim.add_member(&MemberName::new("a").unwrap(), 0).unwrap();
        let b = sim.add_member(&MemberName::new("b").unwrap(), 1).unwrap();
        a.join(&g()).unwrap();
        sim.run_until_quiet(100).unwrap();
        b.join(&g()).unwrap();
        sim.run_until_quiet(100).unwrap();
        assert!(
            a.events()
                .iter()
                .any(|e| matches!(e, Event::FlushRequest { .. }))
        );
        a.multicast(&g(), Service::Agreed, &b"1"[..]).unwrap();
        a.flush_ok(&g()).unwrap();
        assert!(matches!(
            a.multicast(&g(), Service::Agreed, &b"2"[..]),
            Err(GcsError::Flushing { .. })
        ));
        sim.run_until_quiet(100).unwrap();
        let v = b.view(&g()).unwrap();
        assert_eq!(v.members.len(), 2);
        for i in 0..4u8 {
            a.multicast(&g(), Service::Agreed, vec![i]).unwrap();
            b.multicast(&g(), Service::Fifo, vec![i]).unwrap();
        }
        b.unicast(&g(), a.name(), &b"u"[..]).unwrap();
        sim.run_until_quiet(100).unwrap();
        let got: Vec<_> = a
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .collect();
        assert_eq!(got.len(), 10, "\"1\", 4 + 4 multicasts and a unicast");
        sim.check().unwrap();
        sim
    }

    #[test]
    fn checker_accepts_a_scripted_run() {
        scripted();
    }

    #[test]
    fn checker_catches_a_lost_message() {
        let sim = scripted();
        {
            let mut net = sim.net.borrow_mut();
            let log = &mut net.members[1].log;
            let i = log
                .iter()
                .rposition(|r| matches!(r, Rec::Msg { .. }))
                .unwrap();
            log.remove(i);
        }
        let err = sim.check().unwrap_err();
        assert!(err.message.contains("different messages"), "{err}");
    }

    #[test]
    fn checker_catches_a_reordering() {
        let sim = scripted();
        {
            let mut net = sim.net.borrow_mut();
            let log = &mut net.members[1].log;
            let msgs: Vec<usize> = (0..log.len())
                .filter(|&i| matches!(&log[i], Rec::Msg { sender, .. } if sender.as_str() == "a"))
                .collect();
            log.swap(msgs[1], msgs[2]);
        }
        let err = sim.check().unwrap_err();
        assert!(err.message.contains("FIFO"), "{err}");
    }

    #[test]
    fn checker_catches_a_message_in_the_wrong_view() {
        let sim = scripted();
        {
            let mut net = sim.net.borrow_mut();
            let log = &mut net.members[0].log;
            if let Some(Rec::Msg { view, .. }) =
                log.iter_mut().rev().find(|r| matches!(r, Rec::Msg { .. }))
            {
                view.counter += 100;
            }
        }
        let err = sim.check().unwrap_err();
        assert!(err.message.contains("in view"), "{err}");
    }

    #[test]
    fn changes_during_a_flush_cascade_into_one_view() {
        let sim = Simulator::new(
            11,
            SimConfig {
                daemons: 3,
                ..SimConfig::default()
            },
        );
        let hs: Vec<MemberHandle> = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                sim.add_member(&MemberName::new(*n).unwrap(), [0, 1, 2, 0][i])
                    .unwrap()
            })
            .collect();
        // a, b, c form the group, answering flushes.
        for h in &hs[..3] {
            h.join(&g()).unwrap();
            for _ in 0..10 {
                sim.run_until_quiet(100).unwrap();
                for h in &hs[..3] {
                    for e in h.events() {
                        if let Event::FlushRequest { group } = e {
                            h.flush_ok(&group).unwrap();
                        }
                    }
                }
            }
        }
        assert_eq!(hs[0].view(&g()).unwrap().members.len(), 3);
        // d joins; while a answers, b's daemon crashes and c is cut off.
        hs[3].join(&g()).unwrap();
        sim.run_until_quiet(100).unwrap();
        assert!(hs[0].events().contains(&Event::FlushRequest { group: g() }));
        hs[0].flush_ok(&g()).unwrap();
        sim.crash_daemon(1);
        sim.set_network(&[vec![0, 1], vec![2]]).unwrap();
        sim.run_until_quiet(100).unwrap();
        let v = hs[0].view(&g()).unwrap();
        let events = hs[3].events();
        let views: Vec<&View> = events
            .iter()
            .filter_map(|e| match e {
                Event::View(v) => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(views.len(), 1, "one view for three changes: {views:?}");
        let names = |v: &[MemberName]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&views[0].members), ["a", "d"]);
        assert_eq!(views[0].cause, Cause::Partition, "the strongest cause");
        assert_eq!(v.id, views[0].id);
        assert_eq!(names(&v.left), ["b", "c"]);
        assert_eq!(names(&v.joined), ["d"]);
        sim.check().unwrap();
    }

    #[test]
    fn merge_after_partition_is_one_view_with_several_joiners() {
        let sim = Simulator::new(
            7,
            SimConfig {
                daemons: 2,
                ..SimConfig::default()
            },
        );
        let names = ["a", "b", "c", "d"];
        let hs: Vec<MemberHandle> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                sim.add_member(&MemberName::new(*n).unwrap(), i % 2)
                    .unwrap()
            })
            .collect();
        let settle = |hs: &[MemberHandle]| {
            for _ in 0..20 {
                sim.run_until_quiet(100).unwrap();
                for h in hs {
                    for e in h.events() {
                        if let Event::FlushRequest { group } = e {
                            h.flush_ok(&group).unwrap();
                        }
                    }
                }
            }
        };
        for h in &hs {
            h.join(&g()).unwrap();
            settle(&hs);
        }
        sim.set_network(&[vec![0], vec![1]]).unwrap();
        settle(&hs);
        let v = hs[0].view(&g()).unwrap();
        assert_eq!(v.cause, Cause::Partition);
        assert_eq!(v.members.len(), 2);
        sim.set_network(&[vec![0, 1]]).unwrap();
        settle(&hs);
        let va = hs[0].view(&g()).unwrap();
        let vb = hs[1].view(&g()).unwrap();
        assert_eq!(va.cause, Cause::Merge);
        assert_eq!(va.id, vb.id);
        assert_eq!(va.joined.len(), 2);
        assert_eq!(
            va.members.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"],
            "by join age, not by component"
        );
        sim.check().unwrap();
        assert!(sim.set_network(&[vec![0]]).is_err());
    }
}
