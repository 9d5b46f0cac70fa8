//! Signed policy rollout: an administrator publishes a policy into a live group on the
//! daemon; the members that can adopt it switch together, one that cannot reports why
//! and is left out, and forged, replayed and older policies change nothing.

use std::sync::Arc;

use conclave::{
    Exclusion, Identity, PolicyFile, PolicyRefusal, PolicySource, SessionEvent, SignedPolicy,
    plugins::Registry,
    sdk::Options,
    secure::publish::{connect_admin, publish},
    session::{Command, KeyEstablished},
};
use conclave_gcs::Service;
use conclave_tests::harness::{Member, Net, agreed};

const GROUP: &str = "ops";

fn base_policy(admin: &Identity) -> String {
    format!(
        r#"
[policy]
version = 1

[trust]
admins = ["ops-admin"]
members = {{ ops-admin = "ed25519:{}" }}

[defaults]
key_agreement = "gdh"
cipher = "aes-gcm"
dh_group = "ristretto255"
provider = "rustcrypto"
"#,
        hex::encode(admin.public_key())
    )
}

fn published(version: u64) -> String {
    format!(
        r#"
[policy]
version = {version}

[defaults]
key_agreement = "ckd"
cipher = "chacha20-poly1305"
dh_group = "ristretto255"
provider = "rustcrypto"
"#
    )
}

fn load(text: &str, registry: &Registry) -> Arc<dyn PolicySource> {
    let policy = conclave_policy::Policy::from_str(text, "base.toml").unwrap();
    Arc::new(PolicyFile::new(policy, registry).unwrap())
}

/// `text` signed by `signer` in the name of `admin`.
fn seal(signer: &Identity, admin: &str, version: u64, text: &str) -> Vec<u8> {
    let registry = Registry::with_builtins().unwrap();
    let provider = registry
        .new_provider("rustcrypto", Options::default())
        .unwrap();
    let signer = provider
        .signer("ed25519", signer.secret().expose())
        .unwrap();
    SignedPolicy {
        group: GROUP.into(),
        version,
        admin: admin.into(),
        algorithm: "ed25519".into(),
        text: text.into(),
    }
    .seal(&signer)
    .unwrap()
}

/// Publishes `sealed` as the administrator's engine member (`as_identity` names it).
async fn publish_as(net: &Net, as_identity: &Identity, sealed: &[u8]) {
    let mut client = connect_admin(&net.address, as_identity, None)
        .await
        .unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        publish(&mut client, GROUP, sealed),
    )
    .await
    .expect("published within 20 s")
    .unwrap();
    conclave_gcs::Connection::close(client).await;
}

async fn refusal(m: &mut Member) -> PolicyRefusal {
    m.until("policy refusal", |e| match e {
        SessionEvent::PolicyRefused { group, refusal, .. } if group == GROUP => {
            Some(refusal.clone())
        }
        _ => None,
    })
    .await
}

async fn key_with(m: &mut Member, ka: &str, members: &[&str]) -> KeyEstablished {
    m.until(&format!("key with {ka}"), |e| match e {
        SessionEvent::KeyEstablished(k)
            if k.group == GROUP && k.key_agreement == ka && k.members == members =>
        {
            Some(k.clone())
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_moves_a_live_group_to_new_modules_and_forgeries_change_nothing() {
    let net = Net::new().await;
    let admin = net.trusted_identity("ops-admin");
    let base = base_policy(&admin);
    // Dave's installation lacks the new cipher.
    let mut lacking = Registry::with_builtins().unwrap();
    lacking.retain(|p| p.name() != "chacha20-poly1305");
    let lacking = Arc::new(lacking);

    let names = ["alice", "bob", "carol", "dave"];
    let mut members = Vec::new();
    for n in names {
        let registry = if n == "dave" {
            lacking.clone()
        } else {
            net.registry.clone()
        };
        let policy = load(&base, &registry);
        let mut m = net
            .member_with(n, policy, registry, net.trust.clone())
            .await;
        m.join(GROUP).await;
        members.push(m);
    }
    let first = agreed(&mut members, GROUP, &names).await;
    assert_eq!(first.key_agreement, "gdh");
    assert!(first.cipher.starts_with("aes-gcm"), "{}", first.cipher);

    // Messages before: everyone gets them.
    members[0].send(Command::Multicast {
        group: GROUP.into(),
        service: Service::Agreed,
        data: b"before".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages(GROUP, 1).await;
        assert_eq!(got[0].2, b"before");
    }

    // The administrator publishes version 2 while Alice keeps sending.
    let v2 = seal(&admin, "ops-admin", 2, &published(2));
    let publisher = {
        let address = net.address.clone();
        let admin = admin.clone();
        let sealed = v2.clone();
        tokio::spawn(async move {
            let mut client = connect_admin(&address, &admin, None).await.unwrap();
            publish(&mut client, GROUP, &sealed).await.unwrap();
            conclave_gcs::Connection::close(client).await;
        })
    };
    let during = 20;
    for i in 0..during {
        members[0].send(Command::Multicast {
            group: GROUP.into(),
            service: Service::Agreed,
            data: format!("during {i}").into_bytes(),
        });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::timeout(std::time::Duration::from_secs(20), publisher)
        .await
        .expect("published within 20 s")
        .unwrap();

    // Alice, Bob and Carol adopt it and key the group with the new modules, at the same
    // epoch; Dave reports what he lacks and is left out.
    let moved = ["alice", "bob", "carol"];
    let mut keys = Vec::new();
    for m in members[..3].iter_mut() {
        let adopted = m
            .until("adoption", |e| match e {
                SessionEvent::PolicyAdopted {
                    group,
                    admin,
                    version,
                    changed,
                } if group == GROUP => Some((admin.clone(), *version, *changed)),
                _ => None,
            })
            .await;
        assert_eq!(adopted, ("ops-admin".to_string(), 2, true), "{}", m.name);
        keys.push(key_with(m, "ckd", &moved).await);
    }
    for k in &keys {
        assert_eq!(
            (k.epoch, &k.fingerprint),
            (keys[0].epoch, &keys[0].fingerprint)
        );
        assert_eq!(k.cipher, "chacha20-poly1305 (chacha20-poly1305)");
        assert!(k.epoch > first.epoch);
    }
    match refusal(&mut members[3]).await {
        PolicyRefusal::Invalid { version: 2, detail } => {
            assert!(detail.contains("chacha20-poly1305"), "{detail}")
        }
        other => panic!("dave: {other:?}"),
    }
    for m in members[..3].iter_mut() {
        m.until("dave's exclusion", |e| match e {
            SessionEvent::Excluded { member, reason, .. }
                if member == "dave" && *reason == Exclusion::OtherModules =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    }
    // Every message sent during the switch reached Alice, Bob and Carol, in order.
    for m in members[..3].iter_mut() {
        let got = m.messages(GROUP, during).await;
        let texts: Vec<String> = got
            .iter()
            .map(|(_, _, d)| String::from_utf8_lossy(d).into_owned())
            .collect();
        let want: Vec<String> = (0..during).map(|i| format!("during {i}")).collect();
        assert_eq!(texts, want, "{}", m.name);
    }

    // Forged (signed by another key in the administrator's name), replayed (version 2
    // again) and older (a genuine version 1): refused with their typed errors, and
    // the group stays on the new modules.
    let mallory = Identity::generate(
        &net.registry
            .new_provider("rustcrypto", Options::default())
            .unwrap(),
        "ops-admin",
        "ed25519",
    )
    .unwrap();
    let forged = seal(&mallory, "ops-admin", 3, &published(3));
    let older = seal(&admin, "ops-admin", 1, &published(1));
    for (sealed, what) in [(forged, "forged"), (v2, "replayed"), (older, "older")] {
        publish_as(&net, &mallory, &sealed).await;
        for m in members[..3].iter_mut() {
            let r = refusal(m).await;
            let ok = match what {
                "forged" => {
                    matches!(&r, PolicyRefusal::Forged { admin, .. } if admin == "ops-admin")
                }
                "replayed" => {
                    r == PolicyRefusal::Stale {
                        version: 2,
                        current: 2,
                    }
                }
                _ => {
                    r == PolicyRefusal::Stale {
                        version: 1,
                        current: 2,
                    }
                }
            };
            assert!(ok, "{}: {what}: {r:?}", m.name);
        }
    }
    // Still on ckd + chacha20-poly1305, and talking.
    let after = key_with(&mut members[1], "ckd", &moved).await;
    members[1].send(Command::Multicast {
        group: GROUP.into(),
        service: Service::Agreed,
        data: b"after".to_vec(),
    });
    for m in members[..3].iter_mut() {
        let got = m.messages(GROUP, 1).await;
        assert_eq!(got[0].2, b"after", "{}", m.name);
        assert!(got[0].1 >= after.epoch);
    }
    // Nobody left the group.
    for m in members.iter_mut() {
        assert!(
            !m.drain_now()
                .await
                .iter()
                .any(|e| matches!(e, SessionEvent::Left { .. })),
            "{} left",
            m.name
        );
    }
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_policy_messages_from_the_engine_are_refused_with_their_reasons() {
    let net = Net::new().await;
    let admin = net.trusted_identity("ops-admin");
    let base = base_policy(&admin);
    let names = ["alice", "bob"];
    let mut members = Vec::new();
    for n in names {
        let policy = load(&base, &net.registry);
        let mut m = net.member(n, policy).await;
        m.join(GROUP).await;
        members.push(m);
    }
    let first = agreed(&mut members, GROUP, &names).await;

    // A raw engine client under the administrator's name, speaking none of our API.
    let mut raw = net.raw("ops-admin", GROUP).await;
    raw.view().await;
    let tagged = |body: &[u8]| SignedPolicy::payload(body).to_vec();
    let genuine = seal(&admin, "ops-admin", 2, &published(2));
    let mut truncated = genuine.clone();
    truncated.truncate(genuine.len() - 10);
    let mut flipped = genuine.clone();
    let at = genuine.len() / 2;
    flipped[at] ^= 1;
    let other_group = {
        let registry = Registry::with_builtins().unwrap();
        let provider = registry
            .new_provider("rustcrypto", Options::default())
            .unwrap();
        let signer = provider.signer("ed25519", admin.secret().expose()).unwrap();
        SignedPolicy {
            group: "elsewhere".into(),
            version: 2,
            admin: "ops-admin".into(),
            algorithm: "ed25519".into(),
            text: published(2),
        }
        .seal(&signer)
        .unwrap()
    };
    let claims_other_admin = seal(&admin, "root", 2, &published(2));
    let with_plugins = seal(
        &admin,
        "ops-admin",
        2,
        "[policy]\nversion = 2\n[plugins]\npaths = [\"/tmp/x\"]\n",
    );
    let mismatched_version = seal(&admin, "ops-admin", 5, &published(2));
    // A text over the 64 KiB bound, its length field honest.
    let mut oversized = genuine[..4 + 1].to_vec();
    oversized.extend_from_slice(&(GROUP.len() as u16).to_be_bytes());
    oversized.extend_from_slice(GROUP.as_bytes());
    oversized.extend_from_slice(&9u64.to_be_bytes());
    oversized.push(9);
    oversized.extend_from_slice(b"ops-admin");
    oversized.push(7);
    oversized.extend_from_slice(b"ed25519");
    let big = vec![b'#'; (64 << 10) + 1];
    oversized.extend_from_slice(&(big.len() as u32).to_be_bytes());
    oversized.extend_from_slice(&big);
    oversized.extend_from_slice(&0u16.to_be_bytes());

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tagged(b""), "malformed"),
        (tagged(b"CPOL\x01"), "malformed"),
        (tagged(&truncated), "malformed"),
        (tagged(&oversized), "malformed"),
        (tagged(&flipped), "forged"),
        (tagged(&other_group), "misrouted"),
        (tagged(&claims_other_admin), "forged"),
        (tagged(&with_plugins), "invalid"),
        (tagged(&mismatched_version), "invalid"),
    ];
    for (payload, want) in &cases {
        raw.multicast(payload.clone());
        for m in members.iter_mut() {
            let r = refusal(m).await;
            let kind = match &r {
                PolicyRefusal::Malformed { .. } => "malformed",
                PolicyRefusal::Forged { .. } => "forged",
                PolicyRefusal::Misrouted { .. } => "misrouted",
                PolicyRefusal::Invalid { .. } => "invalid",
                other => panic!("{other:?}"),
            };
            assert_eq!(kind, *want, "{}: {r:?}", m.name);
        }
    }
    // The group never switched: still gdh + aes-gcm, and talking.
    members[0].send(Command::Multicast {
        group: GROUP.into(),
        service: Service::Agreed,
        data: b"still here".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages(GROUP, 1).await;
        assert_eq!(got[0].2, b"still here");
        assert!(got[0].1 >= first.epoch);
        let events = m.drain_now().await;
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, SessionEvent::PolicyAdopted { .. })
                    || matches!(e, SessionEvent::KeyEstablished(k) if k.key_agreement != "gdh")),
            "{}: {events:?}",
            m.name
        );
    }
    raw.task.abort();
    net.daemon.unwrap().shutdown().await;
}

/// Messages sealed under the old modules by members that had not yet taken the switch
/// are delivered after others (and their senders) took it: they are opened with the old
/// cipher, which stays until the new modules' first key, and nothing is lost or refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sealed_just_before_a_switch_arrive_after_it_and_still_open() {
    let net = Net::new().await;
    let admin = net.trusted_identity("ops-admin");
    let base = base_policy(&admin);
    let names = ["alice", "bob", "carol"];
    let mut members = Vec::new();
    for n in names {
        let policy = load(&base, &net.registry);
        let mut m = net
            .member_with(n, policy, net.registry.clone(), net.trust.clone())
            .await;
        m.join(GROUP).await;
        members.push(m);
    }
    let first = agreed(&mut members, GROUP, &names).await;
    let v2 = seal(&admin, "ops-admin", 2, &published(2));
    let publisher = {
        let address = net.address.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            let mut client = connect_admin(&address, &admin, None).await.unwrap();
            publish(&mut client, GROUP, &v2).await.unwrap();
            conclave_gcs::Connection::close(client).await;
        })
    };
    // Alice and Bob send in bursts until well after carol holds the new modules' key:
    // many of their messages are sealed under the old key and delivered after the
    // switch.
    let mut burst = 0;
    let mut after = 0;
    while after < 30 && burst < 20_000 {
        for _ in 0..10 {
            for m in members[..2].iter_mut() {
                m.send(Command::Multicast {
                    group: GROUP.into(),
                    service: Service::Agreed,
                    data: format!("{} {burst}", m.name).into_bytes(),
                });
            }
            burst += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        members[2].pull_now().await;
        if after > 0 || members[2].backlog_keys(|k| k.epoch > first.epoch) > 0 {
            after += 1;
        }
    }
    tokio::time::timeout(std::time::Duration::from_secs(20), publisher)
        .await
        .expect("published within 20 s")
        .unwrap();
    for m in members.iter_mut() {
        // Any security error (an unknown epoch) fails here.
        let got = m.messages(GROUP, 2 * burst).await;
        for sender in ["alice", "bob"] {
            let texts: Vec<String> = got
                .iter()
                .filter(|(s, _, _)| s == sender)
                .map(|(_, _, d)| String::from_utf8_lossy(d).into_owned())
                .collect();
            let want: Vec<String> = (0..burst).map(|i| format!("{sender} {i}")).collect();
            assert_eq!(texts, want, "{} from {sender}", m.name);
        }
        // Sealed under two key agreements' keys: the switch came in the burst.
        let epochs: std::collections::BTreeSet<u64> = got.iter().map(|(_, e, _)| *e).collect();
        assert!(epochs.len() >= 2, "{}: epochs {epochs:?}", m.name);
    }
    net.daemon.unwrap().shutdown().await;
}
