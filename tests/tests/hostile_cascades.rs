//! Random cascades of membership changes with hostile members mixed in, on the
//! simulator, in virtual time: honest members are [`SecureLayer`]s (the whole secure
//! layer with the real gdh key agreement, signatures and cipher) driven tick by tick;
//! hostile members are bare engine handles:
//!
//! * **silent**: a trusted name that joins and answers the engine's flushes, and says
//!   nothing in the secure layer;
//! * **forger**: an untrusted name that multicasts forged control, key-agreement and
//!   sealed messages (old unsigned formats, signatures by keys nobody trusts, junk);
//! * **replayer**: a trusted identity that announces itself properly in every view,
//!   never runs the key agreement, and multicasts again everything it received
//!   (others' announcements, cuts, key-agreement messages, sealed messages), in the
//!   same view and in later ones;
//! * **frozen**: an honest member that stops at a random moment, as a stopped process.
//!
//! Per seed, after the chaos and a quiet period, the checks are:
//!
//! * one key per secure view: members that report a key for the same epoch and
//!   members report the same fingerprint, and a fingerprint means one epoch and one
//!   member list;
//! * no key for anyone outside it: every key's members are honest members (no hostile
//!   name is ever in a secure view that keys), and each reporter is among them;
//! * liveness: the live honest members of a view end with the same key, whose secure
//!   view holds every one of them and no hostile member;
//! * nothing lost in silence: each accepted send of a live honest member was either
//!   delivered back to it or returned as undelivered;
//! * the simulator's own view-synchrony check.
//!
//! `CONCLAVE_HOSTILE_SEEDS` sets how many seeds run (default 1,000), `CONCLAVE_HOSTILE_SEED`
//! runs one.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use conclave::{
    FixedPolicy, GroupSettings, Identity, SessionEvent,
    plugins::Registry,
    sdk::{Options, ka_kit::MapTrustStore},
    secure::{
        control::{Body, Control},
        layer::{EngineOp, SecureLayer},
    },
};
use conclave_conformance::key_agreement::Schedule;
use conclave_gcs::{
    Delivery, Event, GroupName, MemberName, SendOptions, Service,
    sim::{MemberHandle, SimConfig, Simulator},
};

const TICK: Duration = Duration::from_millis(1);
const TIMEOUT: Duration = Duration::from_millis(120);
const CHAOS: u64 = 1_200;
const QUIET: u64 = 1_500;
const GROUP: &str = "g";

struct Honest {
    name: String,
    handle: MemberHandle,
    layer: SecureLayer,
    frozen: bool,
    crashed: bool,
    joined: bool,
    keys: Vec<conclave::session::KeyEstablished>,
    sent: BTreeSet<u64>,
    delivered_back: BTreeSet<Vec<u8>>,
    undelivered: BTreeSet<u64>,
    /// Payloads of its own accepted sends, by id.
    payloads: BTreeMap<u64, Vec<u8>>,
    left_unasked: bool,
    /// Exclusions and security errors it reported, by reason or code.
    reports: BTreeMap<String, u64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Silent,
    Forger,
    Replayer,
}

struct Hostile {
    role: Role,
    handle: MemberHandle,
    identity: Option<Identity>,
    recorded: Vec<Vec<u8>>,
}

struct World {
    sim: Simulator,
    base: Instant,
    registry: Arc<Registry>,
    honest: Vec<Honest>,
    hostile: Vec<Hostile>,
    rng: Schedule,
    group: GroupName,
}

fn settings() -> GroupSettings {
    GroupSettings {
        agreement_timeout: TIMEOUT,
        ..GroupSettings::default()
    }
}

impl World {
    fn now(&self) -> Instant {
        self.base + TICK * u32::try_from(self.sim.now()).unwrap()
    }

    fn new(seed: u64) -> World {
        conclave_builtins::link();
        let registry = Arc::new(Registry::with_builtins().unwrap());
        let provider = registry
            .new_provider("rustcrypto", Options::default())
            .unwrap();
        let trust = MapTrustStore::new();
        let sim = Simulator::new(
            seed,
            SimConfig {
                daemons: 3,
                flush_timeout: Some(400),
                max_delay: 3,
            },
        );
        let mut rng = Schedule::new(seed ^ 0x5eed);
        let base = Instant::now();
        let n = 3 + rng.below(3);
        let mut honest = Vec::new();
        for i in 0..n {
            let name = format!("h{i}");
            let identity = Identity::generate(&provider, &name, "ed25519").unwrap();
            trust.insert(&name, "ed25519", identity.public_key());
            let handle = sim
                .add_member(&MemberName::new(&name).unwrap(), i % 3)
                .unwrap();
            let layer = SecureLayer::new(
                identity,
                registry.clone(),
                Arc::new(FixedPolicy(settings())),
                trust.clone(),
                base,
            );
            honest.push(Honest {
                name,
                handle,
                layer,
                frozen: false,
                crashed: false,
                joined: false,
                keys: Vec::new(),
                sent: BTreeSet::new(),
                delivered_back: BTreeSet::new(),
                undelivered: BTreeSet::new(),
                payloads: BTreeMap::new(),
                left_unasked: false,
                reports: BTreeMap::new(),
            });
        }
        let mut roles = vec![Role::Silent, Role::Forger, Role::Replayer];
        let keep = 1 + rng.below(3);
        while roles.len() > keep {
            roles.remove(rng.below(roles.len()));
        }
        let mut hostile = Vec::new();
        for (i, role) in roles.into_iter().enumerate() {
            let name = match role {
                Role::Silent => "silent",
                Role::Forger => "forger",
                Role::Replayer => "replayer",
            };
            let identity = Identity::generate(&provider, name, "ed25519").unwrap();
            if role != Role::Forger {
                trust.insert(name, "ed25519", identity.public_key());
            }
            let handle = sim
                .add_member(&MemberName::new(name).unwrap(), (i + 1) % 3)
                .unwrap();
            hostile.push(Hostile {
                role,
                handle,
                identity: (role == Role::Replayer).then_some(identity),
                recorded: Vec::new(),
            });
        }
        World {
            sim,
            base,
            registry,
            honest,
            hostile,
            rng,
            group: GroupName::new(GROUP).unwrap(),
        }
    }

    /// Runs one honest member: its events, its timers, its operations.
    fn drive(&mut self, i: usize) {
        let now = self.now();
        let group = self.group.clone();
        let h = &mut self.honest[i];
        if h.frozen || h.crashed {
            return;
        }
        if !h.handle.is_alive() {
            h.crashed = true;
            return;
        }
        while let Some(e) = h.handle.next_event() {
            if let Event::Left { .. } = &e
                && h.joined
            {
                h.left_unasked = true;
            }
            h.layer.handle_event(e, now).unwrap();
        }
        if h.layer.poll_timeout().is_some_and(|at| at <= now) {
            h.layer.handle_timeout(now).unwrap();
        }
        while let Some(op) = h.layer.poll_op() {
            let r = match &op {
                EngineOp::Join(g) => h.handle.join(g),
                EngineOp::Leave(g) => h.handle.leave(g),
                EngineOp::FlushOk(g) => h.handle.flush_ok(g),
                EngineOp::Send {
                    group,
                    delivery,
                    payload,
                    ..
                } => h.handle.send(
                    group,
                    delivery.clone(),
                    payload.clone(),
                    SendOptions::default(),
                ),
            };
            if let Err(e) = r {
                h.layer.op_failed(op, &e, true);
            }
        }
        while let Some(e) = h.layer.poll_event() {
            if std::env::var_os("CONCLAVE_HOSTILE_TRACE").is_some()
                && !matches!(
                    e,
                    SessionEvent::Message { .. } | SessionEvent::SecurityError { .. }
                )
            {
                eprintln!("[{}] {} <- {e:?}", self.sim.now(), h.name);
            }
            match &e {
                SessionEvent::KeyEstablished(k) => h.keys.push(k.clone()),
                SessionEvent::Message { sender, data, .. } if *sender == h.name => {
                    h.delivered_back.insert(data.clone());
                }
                SessionEvent::Undelivered { sends, .. } => h.undelivered.extend(sends),
                SessionEvent::Left { .. } => h.joined = false,
                SessionEvent::Excluded { reason, .. } => {
                    *h.reports.entry(reason.name().into()).or_default() += 1;
                }
                SessionEvent::SecurityError { error, sender, .. } => {
                    if std::env::var_os("CONCLAVE_HOSTILE_TRACE").is_some() {
                        eprintln!("[{}] {} <- {sender:?}: {error:?}", self.sim.now(), h.name);
                    }
                    *h.reports.entry(error.code.clone()).or_default() += 1;
                }
                _ => {}
            }
        }
        let _ = group;
    }

    /// Runs the hostile members for one tick.
    fn hostile(&mut self, active: bool) {
        let group = self.group.clone();
        for k in 0..self.hostile.len() {
            let mut views = Vec::new();
            {
                let x = &mut self.hostile[k];
                while let Some(e) = x.handle.next_event() {
                    match e {
                        Event::FlushRequest { group } => {
                            let _ = x.handle.flush_ok(&group);
                        }
                        Event::View(v) => views.push(v),
                        Event::Message { payload, .. } => {
                            if x.recorded.len() < 512 {
                                x.recorded.push(payload.to_vec());
                            }
                        }
                        Event::Left { .. } | Event::Refused { .. } => {}
                    }
                }
            }
            let role = self.hostile[k].role;
            for v in &views {
                if role == Role::Replayer {
                    let x = &self.hostile[k];
                    let identity = x.identity.as_ref().unwrap();
                    let provider = self
                        .registry
                        .new_provider("rustcrypto", Options::default())
                        .unwrap();
                    let signer = provider
                        .signer("ed25519", identity.secret().expose())
                        .unwrap();
                    let announce = Control {
                        group: GROUP.into(),
                        view_id: v.id.to_bytes().to_vec(),
                        stage: 0,
                        round: 0,
                        sender: "replayer".into(),
                        body: Body::Announce {
                            descriptor: settings().descriptor(&self.registry),
                            last_epoch: 0,
                        },
                    };
                    let sealed = [&[4u8][..], &announce.seal(&signer).unwrap()].concat();
                    let _ = x
                        .handle
                        .multicast(&group, Service::Agreed, bytes::Bytes::from(sealed));
                }
            }
            if !active || self.rng.below(15) != 0 {
                continue;
            }
            let payload = match role {
                Role::Silent => continue,
                Role::Forger => forgery(&mut self.rng, &self.registry),
                Role::Replayer => {
                    let x = &self.hostile[k];
                    if x.recorded.is_empty() {
                        continue;
                    }
                    x.recorded[self.rng.below(x.recorded.len())].clone()
                }
            };
            let x = &self.hostile[k];
            let delivery = if self.rng.below(4) == 0 {
                let to = &self.honest[self.rng.below(self.honest.len())].name;
                Delivery::Unicast(MemberName::new(to).unwrap())
            } else {
                Delivery::Multicast(Service::Agreed)
            };
            let _ = x.handle.send(
                &group,
                delivery,
                bytes::Bytes::from(payload),
                SendOptions::default(),
            );
        }
    }

    fn live(&self, i: usize) -> bool {
        let h = &self.honest[i];
        !h.frozen && !h.crashed && h.handle.is_alive()
    }

    fn chaos(&mut self) {
        let now = self.now();
        let n = self.honest.len();
        let r = self.rng.below(1_000);
        let i = self.rng.below(n);
        let live = (0..n).filter(|&j| self.live(j)).count();
        match r {
            // An honest member joins (or comes back).
            0..=9 if self.live(i) && !self.honest[i].joined => {
                let h = &mut self.honest[i];
                if h.layer.join(GROUP, now).is_ok() {
                    h.joined = true;
                }
            }
            // One leaves.
            10..=12 if self.live(i) && self.honest[i].joined => {
                let h = &mut self.honest[i];
                if h.layer.leave(GROUP).is_ok() {
                    h.joined = false;
                }
            }
            // One crashes, or stops for good.
            13 if self.live(i) && live > 2 => {
                self.sim
                    .crash_member(&MemberName::new(&self.honest[i].name).unwrap());
                self.honest[i].crashed = true;
            }
            14 if self.live(i) && live > 2 => self.honest[i].frozen = true,
            // The network partitions, or heals.
            15..=16 => {
                let a = self.rng.below(3);
                let rest: Vec<usize> = (0..3).filter(|&d| d != a).collect();
                let _ = self.sim.set_network(&[vec![a], rest]);
            }
            17..=18 => {
                let _ = self.sim.set_network(&[vec![0, 1, 2]]);
            }
            // Someone sends.
            19..=80 if self.live(i) && self.honest[i].joined => self.send(i),
            _ => {}
        }
    }

    fn send(&mut self, i: usize) {
        let h = &mut self.honest[i];
        let data = format!("{} #{}", h.name, h.payloads.len()).into_bytes();
        if let Ok(id) = h.layer.multicast(GROUP, Service::Agreed, &data) {
            h.sent.insert(id);
            h.payloads.insert(id, data);
        }
    }

    fn tick(&mut self, active: bool) {
        self.sim.step();
        for i in 0..self.honest.len() {
            self.drive(i);
        }
        self.hostile(active);
    }
}

fn forgery(rng: &mut Schedule, registry: &Registry) -> Vec<u8> {
    let descriptor = settings().descriptor(registry);
    match rng.below(7) {
        0 => [&[5u8][..], &descriptor].concat(),
        1 => [&[4u8][..], &descriptor].concat(),
        2 => {
            let mut b = vec![1u8];
            b.extend((0..40).map(|_| rng.below(256) as u8));
            b
        }
        3 => {
            let mut b = vec![2u8];
            b.extend((0..60).map(|_| rng.below(256) as u8));
            b
        }
        4 => (0..rng.below(50)).map(|_| rng.below(256) as u8).collect(),
        _ => {
            let provider = registry
                .new_provider("rustcrypto", Options::default())
                .unwrap();
            let secret = provider.generate_signing_key("ed25519").unwrap();
            let signer = provider.signer("ed25519", secret.expose()).unwrap();
            let body = match rng.below(3) {
                0 => Body::Switch,
                1 => Body::Cut(vec!["forger".into()]),
                _ => Body::Alive,
            };
            let claimed = ["forger", "h0", "h1"][rng.below(3)];
            let c = Control {
                group: GROUP.into(),
                view_id: vec![0; 12],
                stage: rng.below(3) as u32,
                round: rng.below(3) as u32,
                sender: claimed.into(),
                body,
            };
            [&[4u8][..], &c.seal(&signer).unwrap()].concat()
        }
    }
}

/// What a run did, summed over its honest members (so that a test that passes is seen
/// to have exercised something).
#[derive(Default, Debug)]
struct Totals {
    keys: u64,
    sends: u64,
    reports: BTreeMap<String, u64>,
}

fn run(seed: u64, totals: &mut Totals) -> Result<(), String> {
    let mut w = World::new(seed);
    let now = w.now();
    // Everyone joins at the start, the hostile members first or interleaved.
    for x in &w.hostile {
        x.handle.join(&w.group).unwrap();
    }
    for h in &mut w.honest {
        h.layer.join(GROUP, now).unwrap();
        h.joined = true;
    }
    for _ in 0..CHAOS {
        w.chaos();
        w.tick(true);
    }
    // Quiet: the network heals, live members are in the group, the hostile ones go on.
    let _ = w.sim.set_network(&[vec![0, 1, 2]]);
    let now = w.now();
    for i in 0..w.honest.len() {
        if w.live(i) && !w.honest[i].joined {
            let h = &mut w.honest[i];
            if h.layer.join(GROUP, now).is_ok() {
                h.joined = true;
            }
        }
    }
    for _ in 0..QUIET {
        w.tick(true);
    }
    // Let the last hostile messages and sends settle without new ones.
    for _ in 0..QUIET / 2 {
        w.tick(false);
    }
    w.sim
        .check()
        .map_err(|v| format!("view synchrony: {v:?}"))?;
    for h in &w.honest {
        totals.keys += h.keys.len() as u64;
        totals.sends += h.sent.len() as u64;
        for (k, v) in &h.reports {
            *totals.reports.entry(k.clone()).or_default() += v;
        }
    }
    check(&w)
}

fn check(w: &World) -> Result<(), String> {
    let honest: BTreeSet<&str> = w.honest.iter().map(|h| h.name.as_str()).collect();
    // One key per secure view; no key for anyone outside it.
    type SecureViewKey = (String, u64, Vec<String>);
    let mut by_view: BTreeMap<SecureViewKey, BTreeSet<String>> = BTreeMap::new();
    let mut by_fp: BTreeMap<String, BTreeSet<SecureViewKey>> = BTreeMap::new();
    for h in &w.honest {
        for k in &h.keys {
            if !k.members.contains(&h.name) {
                return Err(format!("{} reported a key without itself: {k:?}", h.name));
            }
            if let Some(x) = k.members.iter().find(|m| !honest.contains(m.as_str())) {
                return Err(format!("{x} is in a keyed secure view: {k:?}"));
            }
            let at = (k.view_id.clone(), k.epoch, k.members.clone());
            by_view
                .entry(at.clone())
                .or_default()
                .insert(k.fingerprint.clone());
            by_fp.entry(k.fingerprint.clone()).or_default().insert(at);
        }
    }
    if let Some((v, fps)) = by_view.iter().find(|(_, f)| f.len() > 1) {
        return Err(format!("secure view {v:?} has several keys: {fps:?}"));
    }
    if let Some((fp, vs)) = by_fp.iter().find(|(_, v)| v.len() > 1) {
        return Err(format!(
            "key {fp} was reported for several secure views: {vs:?}"
        ));
    }
    // Liveness: the live honest members of each final view share a key holding them.
    let mut views: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
    for (i, h) in w.honest.iter().enumerate() {
        if !w.live(i) || !h.joined {
            continue;
        }
        let Some(view) = h.handle.view(&w.group) else {
            continue;
        };
        let members: Vec<String> = view.members.iter().map(|m| m.to_string()).collect();
        views.entry(members).or_default().push(i);
    }
    for (view, idx) in &views {
        let live: BTreeSet<&str> = idx.iter().map(|&i| w.honest[i].name.as_str()).collect();
        let last: Vec<_> = idx
            .iter()
            .map(|&i| (w.honest[i].name.clone(), w.honest[i].keys.last().cloned()))
            .collect();
        let Some(first) = last[0].1.clone() else {
            return Err(format!("{} holds no key in view {view:?}", last[0].0));
        };
        for (name, k) in &last {
            let Some(k) = k else {
                return Err(format!("{name} holds no key in view {view:?}"));
            };
            if k.fingerprint != first.fingerprint {
                return Err(format!(
                    "live members of view {view:?} end with different keys: {last:?}"
                ));
            }
        }
        let keyed: BTreeSet<&str> = first.members.iter().map(String::as_str).collect();
        if !live.is_subset(&keyed) {
            return Err(format!(
                "the last key of view {view:?} leaves out live members: key {:?}, live {live:?}",
                first.members
            ));
        }
    }
    // Nothing lost in silence.
    for (i, h) in w.honest.iter().enumerate() {
        if !w.live(i) || h.left_unasked {
            continue;
        }
        for id in &h.sent {
            let back = h.delivered_back.contains(&h.payloads[id]);
            let returned = h.undelivered.contains(id);
            if back == returned && h.joined {
                return Err(format!(
                    "{}'s send {id} was {} (delivered back: {back}, returned: {returned})",
                    h.name,
                    if back {
                        "both delivered and returned"
                    } else {
                        "neither delivered nor returned"
                    }
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn hostile_members_in_random_cascades() {
    let seeds: Vec<u64> = match std::env::var("CONCLAVE_HOSTILE_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => {
            let n: u64 = std::env::var("CONCLAVE_HOSTILE_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1000);
            (1..=n).collect()
        }
    };
    let mut failures = Vec::new();
    let mut totals = Totals::default();
    for &seed in &seeds {
        if let Err(e) = run(seed, &mut totals) {
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    eprintln!("{} seeds: {totals:?}", seeds.len());
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    if seeds.len() >= 20 {
        // Every hostile role showed up and was refused, keys were made, sends went out.
        for reason in ["silent", "untrusted"] {
            assert!(
                totals.reports.get(reason).is_some_and(|n| *n > 0),
                "{totals:?}"
            );
        }
        assert!(
            totals.keys > seeds.len() as u64 && totals.sends > 0,
            "{totals:?}"
        );
    }
}
