//! What the secure layer allocates per message, once a group is keyed: a sender's
//! `multicast` up to the engine operation that carries the sealed payload, and a
//! receiver's `handle_event` of the delivered message up to the application's
//! [`SessionEvent::Message`]. Counted by `allocation-counter` (the global allocator of
//! this test binary, per thread) around the layer's calls only: the simulator that
//! carries the messages between them is not counted. The layer is driven as in the
//! hostile-cascade tests (sans-IO, virtual time), with the real gdh key agreement and
//! the aes-gcm cipher on both providers.
//!
//! The bounds are those of the API: the application hands over a borrowed `&[u8]` and
//! receives an owned `Vec<u8>`, so a receiver allocates the plaintext it hands out
//! (one buffer, opened into), and a sender the payload it hands the engine (sealed
//! into) and, in a secure group, the copy of the plaintext it hands back at its own
//! delivery (which then opens nothing) with a shared handle on the payload to match
//! it. The event's names (shared, not copied) and everything else allocate nothing
//! per message.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use conclave::{
    FixedPolicy, GroupSettings, Identity, Security, SessionEvent,
    plugins::Registry,
    sdk::{Options, ka_kit::MapTrustStore},
    secure::layer::{EngineOp, SecureLayer},
};
use conclave_gcs::{
    Event, MemberName, SendOptions, Service,
    sim::{MemberHandle, SimConfig, Simulator},
};

const GROUP: &str = "g";
const MESSAGES: u64 = 1_000;

struct Member {
    handle: MemberHandle,
    layer: SecureLayer,
    keyed: bool,
}

fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

/// Runs every member's layer once: engine events in, operations out (not counted).
fn drive(members: &mut [Member], now: Instant, plain: bool) -> Vec<(usize, Event)> {
    let mut messages = Vec::new();
    for (i, m) in members.iter_mut().enumerate() {
        while let Some(e) = m.handle.next_event() {
            if matches!(e, Event::Message { .. }) && m.keyed {
                messages.push((i, e));
                continue;
            }
            m.layer.handle_event(e, now).expect("event");
        }
        if m.layer.poll_timeout().is_some_and(|at| at <= now) {
            m.layer.handle_timeout(now).expect("timeout");
        }
        send_ops(m);
        while let Some(e) = m.layer.poll_event() {
            match e {
                SessionEvent::KeyEstablished(k) if k.members.len() == 2 => m.keyed = true,
                SessionEvent::Membership { members, .. } if plain && members.len() == 2 => {
                    m.keyed = true
                }
                _ => {}
            }
        }
    }
    messages
}

fn send_ops(m: &mut Member) {
    while let Some(op) = m.layer.poll_op() {
        match op {
            EngineOp::Join(g) => m.handle.join(&g).expect("join"),
            EngineOp::Leave(g) => m.handle.leave(&g).expect("leave"),
            EngineOp::FlushOk(g) => m.handle.flush_ok(&g).expect("flush"),
            EngineOp::Send {
                group,
                delivery,
                payload,
                ..
            } => m
                .handle
                .send(&group, delivery, payload, SendOptions::default())
                .expect("send"),
        }
    }
}

fn check(provider: &str, security: Security) {
    conclave_builtins::link();
    let registry = Arc::new(Registry::with_builtins().expect("registry"));
    let p = registry
        .new_provider(provider, Options::default())
        .expect("provider");
    let trust = MapTrustStore::new();
    let sim = Simulator::new(
        7,
        SimConfig {
            daemons: 1,
            flush_timeout: Some(400),
            max_delay: 1,
        },
    );
    let base = Instant::now();
    let settings = GroupSettings {
        security,
        provider: provider.into(),
        cipher_algorithm: "aes-128-gcm".into(),
        dh_group: if provider == "openssl" {
            "ffdhe2048"
        } else {
            "ristretto255"
        }
        .into(),
        ..GroupSettings::default()
    };
    let mut members = Vec::new();
    for name in ["alice", "bob"] {
        let identity = Identity::generate(&p, name, "ed25519").expect("identity");
        trust.insert(name, "ed25519", identity.public_key());
        let handle = sim
            .add_member(&MemberName::new(name).expect("name"), 0)
            .expect("member");
        let mut layer = SecureLayer::new(
            identity,
            registry.clone(),
            Arc::new(FixedPolicy(settings.clone())),
            trust.clone(),
            base,
        );
        layer.join(GROUP, base).expect("join");
        members.push(Member {
            handle,
            layer,
            keyed: false,
        });
    }
    let now = |sim: &Simulator| base + Duration::from_millis(sim.now());
    let mut steps = 0;
    while !members.iter().all(|m| m.keyed) {
        sim.step();
        let stray = drive(&mut members, now(&sim), security == Security::None);
        assert!(stray.is_empty(), "no application message before the key");
        steps += 1;
        assert!(steps < 10_000, "the group keys");
    }

    let data = vec![0x5a_u8; 1024];
    let (mut sending, mut receiving, mut own) = (0, 0, 0);
    let mut delivered = 0;
    for round in 0..=MESSAGES {
        // The sender: multicast, up to the engine operation.
        let alice = &mut members[0];
        let mut op = None;
        let n = allocations(|| {
            alice
                .layer
                .multicast(GROUP, Service::Agreed, &data)
                .expect("multicast");
            op = alice.layer.poll_op();
        });
        let Some(EngineOp::Send {
            group,
            delivery,
            payload,
            ..
        }) = op
        else {
            panic!("a send operation");
        };
        alice
            .handle
            .send(&group, delivery, payload, SendOptions::default())
            .expect("send");
        // The first message of a sender derives its keys and builds its state.
        if round > 0 {
            sending += n;
        }
        let mut pending = Vec::new();
        while pending.len() < 2 {
            sim.step();
            pending.extend(drive(&mut members, now(&sim), security == Security::None));
        }
        for (i, event) in pending {
            let at = now(&sim);
            let m = &mut members[i];
            let mut got = None;
            let n = allocations(|| {
                m.layer.handle_event(event, at).expect("message");
                got = m.layer.poll_event();
            });
            match got {
                Some(SessionEvent::Message {
                    data: d, sender, ..
                }) => {
                    assert_eq!(d, data);
                    assert_eq!(sender, "alice");
                    delivered += 1;
                }
                other => panic!("expected the message, got {other:?}"),
            }
            if round > 0 {
                if i == 0 {
                    own += n;
                } else {
                    receiving += n;
                }
            }
        }
    }
    assert_eq!(delivered, 2 * (MESSAGES + 1));
    let per = |n: u64| n as f64 / MESSAGES as f64;
    eprintln!(
        "{provider} {security:?}: per message, sending {:.2}, receiving {:.2}, own delivery {:.2} allocations",
        per(sending),
        per(receiving),
        per(own),
    );
    // A secure group's sender: the copy of the plaintext it keeps for its own delivery
    // (the buffer the application gets back then), the sealed payload, and the shared
    // handle on it that the own delivery is matched against. A plain group's: the
    // payload, tagged in place.
    let (send_bound, own_bound) = match security {
        Security::Required => (3, 0),
        Security::None => (1, 1),
    };
    assert!(
        sending <= send_bound * MESSAGES,
        "{provider} {security:?}: {sending} allocations to send {MESSAGES} messages (at most {send_bound} each)"
    );
    assert!(
        receiving <= MESSAGES,
        "{provider} {security:?}: {receiving} allocations to receive {MESSAGES} messages (at most the plaintext each)"
    );
    assert!(
        own <= own_bound * MESSAGES,
        "{provider} {security:?}: {own} allocations to deliver {MESSAGES} own messages back (at most {own_bound} each)"
    );
}

#[test]
fn the_sealed_data_path_allocates_the_buffers_it_hands_over_rustcrypto() {
    check("rustcrypto", Security::Required);
}

#[test]
fn the_sealed_data_path_allocates_the_buffers_it_hands_over_openssl() {
    check("openssl", Security::Required);
}

#[test]
fn the_plain_data_path_allocates_the_buffers_it_hands_over() {
    check("rustcrypto", Security::None);
}
