//! The whole system over the daemon: members join secure groups, agree on keys, exchange
//! sealed messages, leave, disagree, and switch modules without recompiling.

use std::{collections::BTreeMap, sync::Arc};

use conclave::{
    Exclusion, FixedPolicy, GroupSettings, PolicySource, PrefixPolicy, SessionEvent,
    session::{Command, KeyEstablished},
};
use conclave_gcs::Service;
use conclave_tests::harness::{Member, Net, agreed};

fn policy(settings: GroupSettings) -> Arc<dyn PolicySource> {
    Arc::new(FixedPolicy(settings))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_agree_exchange_sealed_messages_and_rekey_on_leave() {
    let net = Net::new().await;
    let names = ["alice", "bob", "carol", "dave"];
    let mut members = Vec::new();
    let mut key = None;
    for n in names {
        let mut m = net.member(n, policy(GroupSettings::default())).await;
        m.join("chat").await;
        members.push(m);
        let joined: Vec<&str> = names[..members.len()].to_vec();
        key = Some(agreed(&mut members, "chat", &joined).await);
    }
    let key = key.unwrap();
    assert_eq!(key.key_agreement, "gdh");

    // Everyone multicasts; everyone receives all four, opened under the current epoch.
    for m in &members {
        m.send(Command::Multicast {
            group: "chat".into(),
            service: Service::Agreed,
            data: format!("hello from {}", m.name).into_bytes(),
        });
    }
    let mut orders = Vec::new();
    for m in members.iter_mut() {
        let got = m.messages("chat", 4).await;
        assert!(got.iter().all(|(_, epoch, _)| *epoch == key.epoch));
        let mut senders: Vec<String> = got.iter().map(|(s, _, _)| s.clone()).collect();
        orders.push(senders.clone());
        senders.sort();
        assert_eq!(senders, ["alice", "bob", "carol", "dave"]);
    }
    assert!(
        orders.iter().all(|o| *o == orders[0]),
        "agreed order differs: {orders:?}"
    );

    // Carol leaves: the others rekey to a new epoch and a new key.
    members[2].send(Command::Leave("chat".into()));
    members[2]
        .until("left", |e| {
            matches!(e, SessionEvent::Left { .. }).then_some(())
        })
        .await;
    let carol = members.remove(2);
    let after = agreed(&mut members, "chat", &["alice", "bob", "dave"]).await;
    assert!(after.epoch > key.epoch);
    assert_ne!(after.fingerprint, key.fingerprint);
    members[0].send(Command::Multicast {
        group: "chat".into(),
        service: Service::Fifo,
        data: b"after carol".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages("chat", 1).await;
        assert_eq!(got[0].1, after.epoch);
    }
    carol.task.abort();
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_with_different_modules_in_one_connection() {
    let net = Net::new().await;
    let ops = GroupSettings {
        key_agreement: "ckd".into(),
        cipher: "blowfish".into(),
        cipher_algorithm: "blowfish-cbc-hmac-sha256".into(),
        dh_group: "ffdhe2048".into(),
        provider: "openssl".into(),
        ..GroupSettings::default()
    };
    let rules = Arc::new(PrefixPolicy {
        rules: vec![("ops-".into(), ops)],
        default: GroupSettings::default(),
    });
    let mut members = Vec::new();
    for n in ["alice", "bob", "carol"] {
        let mut m = net.member(n, rules.clone()).await;
        m.join("ops-room").await;
        m.join("lobby").await;
        members.push(m);
    }
    let all = ["alice", "bob", "carol"];
    let mut seen: BTreeMap<String, KeyEstablished> = BTreeMap::new();
    for m in members.iter_mut() {
        for g in ["ops-room", "lobby"] {
            let k = m.key_for(g, &all).await;
            if let Some(prev) = seen.get(g) {
                assert_eq!(prev.fingerprint, k.fingerprint);
            }
            seen.insert(g.into(), k);
        }
    }
    assert_eq!(seen["ops-room"].key_agreement, "ckd");
    assert!(seen["ops-room"].cipher.starts_with("blowfish"));
    assert_eq!(seen["lobby"].key_agreement, "gdh");
    assert!(seen["lobby"].cipher.starts_with("aes-gcm"));
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_whose_ciphers_compute_on_different_providers_share_one_group() {
    // The cipher's provider is local: alice seals with AWS-LC, bob with RustCrypto,
    // carol with OpenSSL (its key agreement on OpenSSL too); they agree on one key and
    // each opens what the others seal.
    let net = Net::new().await;
    let on = |provider: &str, cipher_provider: Option<&str>| GroupSettings {
        cipher: "aes-gcm".into(),
        cipher_algorithm: "aes-128-gcm".into(),
        dh_group: "ffdhe2048".into(),
        provider: provider.into(),
        cipher_provider: cipher_provider.map(Into::into),
        ..GroupSettings::default()
    };
    let mut members = Vec::new();
    for (n, settings) in [
        ("alice", on("rustcrypto", Some("aws-lc"))),
        ("bob", on("rustcrypto", None)),
        ("carol", on("openssl", Some("openssl"))),
    ] {
        let mut m = net.member(n, policy(settings)).await;
        m.join("mixed").await;
        members.push(m);
    }
    let key = agreed(&mut members, "mixed", &["alice", "bob", "carol"]).await;
    assert_eq!(
        (key.provider.as_str(), key.cipher_provider.as_str()),
        ("rustcrypto", "aws-lc"),
        "alice's key"
    );
    for m in &members {
        m.send(Command::Multicast {
            group: "mixed".into(),
            service: Service::Agreed,
            data: format!("sealed by {}", m.name).into_bytes(),
        });
    }
    for m in members.iter_mut() {
        let mut got: Vec<(String, Vec<u8>)> = m
            .messages("mixed", 3)
            .await
            .into_iter()
            .map(|(sender, epoch, data)| {
                assert_eq!(epoch, key.epoch);
                (sender, data)
            })
            .collect();
        got.sort();
        let want: Vec<(String, Vec<u8>)> = ["alice", "bob", "carol"]
            .iter()
            .map(|s| (s.to_string(), format!("sealed by {s}").into_bytes()))
            .collect();
        assert_eq!(got, want, "{}", m.name);
        let errors: Vec<_> = m
            .drain_now()
            .await
            .into_iter()
            .filter(|e| matches!(e, SessionEvent::SecurityError { .. }))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", m.name);
    }
    // The cipher really is made on the cipher's provider: Blowfish on AWS-LC (which
    // has no Blowfish) is refused when the group is joined, with the reason.
    let blowfish = GroupSettings {
        cipher: "blowfish".into(),
        cipher_algorithm: "blowfish-cbc-hmac-sha256".into(),
        ..on("rustcrypto", Some("aws-lc"))
    };
    let mut dave = net.member("dave", policy(blowfish)).await;
    dave.send(Command::Join("fish".into()));
    let why = dave
        .until("the join refused", |e| match e {
            SessionEvent::CommandFailed { message, .. } => Some(message.clone()),
            _ => None,
        })
        .await;
    assert!(
        why.contains("aws-lc") && why.contains("blowfish"),
        "refused for: {why}"
    );
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_policy_switches_modules_at_the_forced_refresh() {
    let net = Net::new().await;
    let mut members = Vec::new();
    let all = ["alice", "bob", "carol"];
    for n in all {
        let mut m = net.member(n, policy(GroupSettings::default())).await;
        m.join("team").await;
        members.push(m);
    }
    let first = agreed(&mut members, "team", &all).await;
    assert_eq!(
        (first.key_agreement.as_str(), first.cipher.as_str()),
        ("gdh", "aes-gcm (aes-256-gcm)")
    );
    let new = GroupSettings {
        key_agreement: "ckd".into(),
        cipher: "blowfish".into(),
        cipher_algorithm: "blowfish-cbc-hmac-sha256".into(),
        ..GroupSettings::default()
    };
    for m in members.iter_mut() {
        m.send(Command::ReloadPolicy(policy(new.clone())));
        m.until("reload", |e| {
            matches!(e, SessionEvent::PolicyReloaded { .. }).then_some(())
        })
        .await;
    }
    members[1].send(Command::Refresh("team".into()));
    let second = agreed(&mut members, "team", &all).await;
    assert_eq!(second.key_agreement, "ckd");
    assert_eq!(second.cipher, "blowfish (blowfish-cbc-hmac-sha256)");
    assert!(second.epoch > first.epoch);
    members[2].send(Command::Multicast {
        group: "team".into(),
        service: Service::Agreed,
        data: b"under blowfish".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages("team", 1).await;
        assert_eq!(
            got[0],
            (
                "carol".to_string(),
                second.epoch,
                b"under blowfish".to_vec()
            )
        );
    }
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_other_modules_is_left_out_without_leaving_and_the_group_goes_on() {
    let net = Net::new().await;
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let mut m = net.member(n, policy(GroupSettings::default())).await;
        m.join("g").await;
        members.push(m);
    }
    let before = agreed(&mut members, "g", &["alice", "bob"]).await;
    let odd = GroupSettings {
        cipher: "chacha20-poly1305".into(),
        cipher_algorithm: "chacha20-poly1305".into(),
        ..GroupSettings::default()
    };
    let mut mallory = net.member("mallory", policy(odd)).await;
    mallory.join("g").await;
    // Each side reports the other once, naming both module sets; nobody leaves.
    for m in members.iter_mut() {
        let (reason, detail) = m
            .until("exclusion of mallory", |e| match e {
                SessionEvent::Excluded {
                    member,
                    reason,
                    detail,
                    ..
                } if member == "mallory" => Some((*reason, detail.clone())),
                _ => None,
            })
            .await;
        assert_eq!(reason, Exclusion::OtherModules);
        assert!(detail.contains("chacha20-poly1305"), "{detail}");
    }
    let after = agreed(&mut members, "g", &["alice", "bob"]).await;
    assert!(after.epoch > before.epoch);
    assert_ne!(after.fingerprint, before.fingerprint);
    // mallory keys alone, on its own modules, and is told who is on others.
    let own = mallory.key_for("g", &["mallory"]).await;
    assert!(own.cipher.starts_with("chacha20-poly1305"), "{own:?}");
    for m in &members {
        assert_ne!(own.fingerprint, after.fingerprint, "{}", m.name);
    }
    // The group goes on; mallory's messages reach nobody.
    mallory.send(Command::Multicast {
        group: "g".into(),
        service: Service::Agreed,
        data: b"from the other side".to_vec(),
    });
    members[0].send(Command::Multicast {
        group: "g".into(),
        service: Service::Agreed,
        data: b"hello bob".to_vec(),
    });
    let got = members[1].messages("g", 1).await;
    assert_eq!(got[0].0, "alice");
    assert_eq!(got[0].2, b"hello bob");
    assert_eq!(got[0].1, after.epoch);
    for m in members.iter_mut().chain(std::iter::once(&mut mallory)) {
        let lefts = m
            .drain_now()
            .await
            .into_iter()
            .filter(|e| {
                matches!(e, SessionEvent::Left { .. })
                    || matches!(e, SessionEvent::Message { sender, .. }
                        if sender == "mallory" && m.name != "mallory")
            })
            .count();
        assert_eq!(lefts, 0, "{} left or got mallory's message", m.name);
    }
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_key_without_an_identity_their_policy_does_not_admit() {
    let net = Net::new().await;
    let closed = GroupSettings {
        members: Some(vec!["alice".into(), "bob".into()]),
        ..GroupSettings::default()
    };
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let mut m = net.member(n, policy(closed.clone())).await;
        m.join("board").await;
        members.push(m);
    }
    let before = agreed(&mut members, "board", &["alice", "bob"]).await;
    // carol's own policy lets anyone in; the members' policy does not.
    let mut carol = net.member("carol", policy(GroupSettings::default())).await;
    carol.join("board").await;
    for m in members.iter_mut() {
        let reason = m
            .until("exclusion of carol", |e| match e {
                SessionEvent::Excluded { member, reason, .. } if member == "carol" => Some(*reason),
                _ => None,
            })
            .await;
        assert_eq!(reason, Exclusion::NotAllowed);
    }
    // With carol still in the view, alice and bob hold a new key.
    let after = agreed(&mut members, "board", &["alice", "bob"]).await;
    assert!(after.epoch > before.epoch);
    // No key was ever reported for a view with carol.
    for m in members.iter_mut() {
        let with_carol = m.backlog_keys(|k| k.members.iter().any(|x| x == "carol"));
        assert_eq!(with_carol, 0);
    }
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_group_delivers_without_keys_where_the_policy_says_so() {
    let net = Net::new().await;
    let plain = GroupSettings {
        security: conclave::Security::None,
        ..GroupSettings::default()
    };
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let mut m = net.member(n, policy(plain.clone())).await;
        m.join("public").await;
        members.push(m);
    }
    members[1].send(Command::Multicast {
        group: "public".into(),
        service: Service::Causal,
        data: b"in the clear".to_vec(),
    });
    for m in members.iter_mut() {
        let got = m.messages("public", 1).await;
        assert_eq!(got[0], ("bob".into(), 0, b"in the clear".to_vec()));
        assert_eq!(m.backlog_keys(|_| true), 0, "no key in a plain group");
    }
    net.daemon.unwrap().shutdown().await;
}

/// Alice and Bob in `group`, whose policy refreshes the key every `interval_ms`, keyed.
async fn periodic_pair(net: &Net, group: &str, interval_ms: u64) -> (Vec<Member>, KeyEstablished) {
    let periodic = GroupSettings {
        rekey_interval: Some(std::time::Duration::from_millis(interval_ms)),
        ..GroupSettings::default()
    };
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let mut m = net.member(n, policy(periodic.clone())).await;
        m.join(group).await;
        members.push(m);
    }
    let first = agreed(&mut members, group, &["alice", "bob"]).await;
    (members, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rekey_interval_refreshes_the_key_on_its_own() {
    let net = Net::new().await;
    let (mut members, first) = periodic_pair(&net, "clock", 200).await;
    // Nobody asks: the controller's timer refreshes, and both members follow.
    for m in members.iter_mut() {
        let k = m
            .until("key of clock for a later epoch", |e| match e {
                SessionEvent::KeyEstablished(k) if k.group == "clock" && k.epoch > first.epoch => {
                    Some(k.clone())
                }
                _ => None,
            })
            .await;
        assert_eq!(k.members, ["alice", "bob"]);
        assert_ne!(k.fingerprint, first.fingerprint);
    }
    net.daemon.unwrap().shutdown().await;
}

/// A session that always has input waiting (a sender with a hundred thousand sends
/// queued, a receiver with deliveries arriving back to back) takes it without waiting;
/// its timers must still fire: the rekey interval refreshes the key in the middle of
/// the flood, not after it. (Messages already sealed keep their epoch, so the proof is
/// where the new key shows among the deliveries, not the messages' epochs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rekey_interval_holds_in_the_middle_of_a_flood() {
    const COUNT: u64 = 100_000;
    let net = Net::new().await;
    let (mut members, first) = periodic_pair(&net, "flood", 50).await;
    let start = std::time::Instant::now();
    for i in 0..COUNT {
        members[0].send(Command::Multicast {
            group: "flood".into(),
            service: Service::Agreed,
            data: i.to_be_bytes().to_vec(),
        });
    }
    // Bob's deliveries in order: messages by number, and where new keys came.
    let mut next = 0u64;
    let mut keys_during = Vec::new();
    while next < COUNT {
        let got = members[1]
            .until("a message or a key in flood", |e| match e {
                SessionEvent::Message { group, data, .. } if group == "flood" => {
                    Some(Ok(u64::from_be_bytes(data[..8].try_into().unwrap())))
                }
                SessionEvent::KeyEstablished(k) if k.group == "flood" => Some(Err(k.epoch)),
                _ => None,
            })
            .await;
        match got {
            Ok(n) => {
                assert_eq!(n, next, "message {next} out of order");
                next += 1;
            }
            Err(epoch) => {
                assert!(epoch > first.epoch);
                keys_during.push((next, epoch));
            }
        }
    }
    // Before, a sender ran ahead of its own deliveries (64 sends to 1 event), and the
    // one refresh of a 2 s flood waited behind them for over a second.
    let took = start.elapsed();
    assert!(
        keys_during.len() >= 2 && keys_during[0].0 < COUNT / 2,
        "new keys at (message, epoch) {keys_during:?} during a flood of {COUNT} messages over {took:?} (rekey interval 50 ms)"
    );
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blowfish_group_carries_64_mib_from_one_sender_over_its_key_limit() {
    // Blowfish stops a sender key at 32 MiB (Sweet32): the secure layer rekeys before
    // the application sees it, and the sends wait for the new key.
    let net = Net::new().await;
    let blowfish = GroupSettings {
        cipher: "blowfish".into(),
        cipher_algorithm: "blowfish-cbc-hmac-sha256".into(),
        ..GroupSettings::default()
    };
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let mut m = net.member(n, policy(blowfish.clone())).await;
        m.join("bulk").await;
        members.push(m);
    }
    let first = agreed(&mut members, "bulk", &["alice", "bob"]).await;
    const CHUNK: usize = 64 * 1024;
    const COUNT: usize = 64 * 1024 * 1024 / CHUNK;
    for i in 0..COUNT {
        let mut data = vec![(i % 251) as u8; CHUNK];
        data[..8].copy_from_slice(&(i as u64).to_be_bytes());
        members[0].send(Command::Multicast {
            group: "bulk".into(),
            service: Service::Agreed,
            data,
        });
    }
    let got = members[1].messages("bulk", COUNT).await;
    let mut epochs = std::collections::BTreeSet::new();
    for (i, (sender, epoch, data)) in got.iter().enumerate() {
        assert_eq!(sender, "alice");
        assert_eq!(data.len(), CHUNK);
        assert_eq!(
            data[..8],
            (i as u64).to_be_bytes(),
            "message {i} out of order"
        );
        assert!(data[8..].iter().all(|b| *b == (i % 251) as u8));
        epochs.insert(*epoch);
    }
    assert!(epochs.len() > 1, "all under one epoch: {epochs:?}");
    assert!(epochs.iter().all(|e| *e >= first.epoch));
    // No send failed, none was returned.
    for m in members.iter_mut() {
        let failed: Vec<_> = m
            .drain_now()
            .await
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    SessionEvent::CommandFailed { .. }
                        | SessionEvent::Undelivered { .. }
                        | SessionEvent::SecurityError { .. }
                )
            })
            .collect();
        assert!(failed.is_empty(), "{}: {failed:?}", m.name);
    }
    net.daemon.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_and_ring_protocols_key_a_group_through_the_daemon_and_rekey_on_leave() {
    for protocol in ["tgdh", "str", "bd"] {
        let net = Net::new().await;
        let settings = GroupSettings {
            key_agreement: protocol.into(),
            dh_group: "ristretto255".into(),
            provider: "rustcrypto".into(),
            ..GroupSettings::default()
        };
        let names = ["alice", "bob", "carol", "dave", "erin"];
        let mut members = Vec::new();
        let mut key = None;
        for n in names {
            let mut m = net.member(n, policy(settings.clone())).await;
            m.join("tree").await;
            members.push(m);
            let joined: Vec<&str> = names[..members.len()].to_vec();
            let k = agreed(&mut members, "tree", &joined).await;
            assert_eq!(k.key_agreement, protocol);
            if let Some(prev) = &key {
                let prev: &KeyEstablished = prev;
                assert!(k.epoch > prev.epoch, "{protocol}: epochs grow");
                assert_ne!(k.fingerprint, prev.fingerprint, "{protocol}: a new key");
            }
            key = Some(k);
        }
        // Bob (in the middle of the tree) leaves: the others rekey and talk under it.
        members[1].send(Command::Leave("tree".into()));
        members[1]
            .until("left", |e| {
                matches!(e, SessionEvent::Left { .. }).then_some(())
            })
            .await;
        let bob = members.remove(1);
        let after = agreed(&mut members, "tree", &["alice", "carol", "dave", "erin"]).await;
        assert!(after.epoch > key.as_ref().unwrap().epoch);
        members[3].send(Command::Multicast {
            group: "tree".into(),
            service: Service::Agreed,
            data: b"after bob".to_vec(),
        });
        for m in members.iter_mut() {
            let got = m.messages("tree", 1).await;
            assert_eq!(got[0].1, after.epoch, "{protocol}");
            assert_eq!(got[0].2, b"after bob", "{protocol}");
        }
        bob.task.abort();
        net.daemon.unwrap().shutdown().await;
    }
}
