//! The whole system over the daemon: members join secure groups, agree on keys, exchange
//! sealed messages, leave, disagree, and switch modules without recompiling.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use conclave::{
    FixedPolicy, GroupSettings, Identity, PolicySource, PrefixPolicy, Session, SessionEvent,
    plugins::Registry,
    sdk::{Options, host::Provider, ka_kit::MapTrustStore},
    session::{Command, KeyEstablished, SessionHandle},
};
use conclave_gcs::{Address, Daemon, DaemonConfig, Service};
use tokio::sync::mpsc;

struct Net {
    daemon: Option<Daemon>,
    address: Address,
    registry: Arc<Registry>,
    trust: MapTrustStore,
    provider: Provider,
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    handle: SessionHandle,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    /// Events received but not yet picked by a wait.
    backlog: Vec<SessionEvent>,
    task: tokio::task::JoinHandle<()>,
}

const WAIT: Duration = Duration::from_secs(30);

impl Net {
    async fn new() -> Self {
        conclave_builtins::link();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.sock");
        let address: Address = format!("unix:{}", path.display()).parse().unwrap();
        let daemon = Daemon::bind(DaemonConfig {
            listen: address.clone(),
            ..DaemonConfig::default()
        })
        .await
        .unwrap();
        let registry = Arc::new(Registry::with_builtins().unwrap());
        let provider = registry
            .new_provider("rustcrypto", Options::default())
            .unwrap();
        Self {
            daemon: Some(daemon),
            address,
            registry,
            trust: MapTrustStore::new(),
            provider,
            _dir: dir,
        }
    }

    async fn member(&self, name: &str, policy: Arc<dyn PolicySource>) -> Member {
        let identity = Identity::generate(&self.provider, name, "ed25519").unwrap();
        self.trust.insert(name, "ed25519", identity.public_key());
        let mut session = Session::connect(
            &self.address,
            identity,
            self.registry.clone(),
            policy,
            self.trust.clone(),
        )
        .await
        .unwrap();
        let handle = session.handle();
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(e) = session.next_event().await {
                if tx.send(e).is_err() {
                    break;
                }
            }
        });
        Member {
            name: name.into(),
            handle,
            events,
            backlog: Vec::new(),
            task,
        }
    }
}

impl Member {
    fn send(&self, c: Command) {
        assert!(self.handle.send(c), "{} is gone", self.name);
    }

    /// The first event that `pick` accepts (earlier ones it skipped stay available for
    /// later waits); panics after WAIT.
    async fn until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&SessionEvent) -> Option<T>,
    ) -> T {
        if let Some((i, t)) = self
            .backlog
            .iter()
            .enumerate()
            .find_map(|(i, e)| pick(e).map(|t| (i, t)))
        {
            self.backlog.remove(i);
            return t;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: no {what} within {WAIT:?}", self.name))
                .unwrap_or_else(|| panic!("{}: session ended waiting for {what}", self.name));
            if std::env::var_os("CONCLAVE_TEST_TRACE").is_some() {
                eprintln!("{} <- {e:?}", self.name);
            }
            if let SessionEvent::SecurityError { error, .. } = &e
                && (what.starts_with("key") || what.starts_with("message"))
            {
                panic!(
                    "{}: security error while waiting for {what}: {error:?}",
                    self.name
                );
            }
            if let Some(t) = pick(&e) {
                return t;
            }
            self.backlog.push(e);
        }
    }

    /// The key for a view of exactly `members`.
    async fn key_for(&mut self, group: &str, members: &[&str]) -> KeyEstablished {
        self.until(&format!("key of {group} for {members:?}"), |e| match e {
            SessionEvent::KeyEstablished(k) if k.group == group && k.members == members => {
                Some(k.clone())
            }
            _ => None,
        })
        .await
    }

    async fn messages(&mut self, group: &str, n: usize) -> Vec<(String, u64, Vec<u8>)> {
        let mut got = Vec::new();
        while got.len() < n {
            let m = self
                .until(&format!("message in {group}"), |e| match e {
                    SessionEvent::Message {
                        group: g,
                        sender,
                        epoch,
                        data,
                        ..
                    } if g == group => Some((sender.clone(), epoch.unwrap_or(0), data.clone())),
                    _ => None,
                })
                .await;
            got.push(m);
        }
        got
    }
}

fn policy(settings: GroupSettings) -> Arc<dyn PolicySource> {
    Arc::new(FixedPolicy(settings))
}

async fn agreed(members: &mut [Member], group: &str, names: &[&str]) -> KeyEstablished {
    let mut keys = Vec::new();
    for m in members.iter_mut() {
        if names.contains(&m.name.as_str()) {
            keys.push(m.key_for(group, names).await);
        }
    }
    for k in &keys {
        assert_eq!(k.fingerprint, keys[0].fingerprint, "{k:?} vs {:?}", keys[0]);
        assert_eq!(k.epoch, keys[0].epoch);
    }
    keys.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_agree_exchange_sealed_messages_and_rekey_on_leave() {
    let net = Net::new().await;
    let names = ["alice", "bob", "carol", "dave"];
    let mut members = Vec::new();
    let mut key = None;
    for n in names {
        let m = net.member(n, policy(GroupSettings::default())).await;
        m.send(Command::Join("chat".into()));
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
        let m = net.member(n, rules.clone()).await;
        m.send(Command::Join("ops-room".into()));
        m.send(Command::Join("lobby".into()));
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
async fn a_reloaded_policy_switches_modules_at_the_forced_refresh() {
    let net = Net::new().await;
    let mut members = Vec::new();
    let all = ["alice", "bob", "carol"];
    for n in all {
        let m = net.member(n, policy(GroupSettings::default())).await;
        m.send(Command::Join("team".into()));
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
    for m in &members {
        m.send(Command::ReloadPolicy(policy(new.clone())));
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
async fn a_member_with_a_disagreeing_policy_is_told_and_the_group_goes_on() {
    let net = Net::new().await;
    let mut members = Vec::new();
    for n in ["alice", "bob"] {
        let m = net.member(n, policy(GroupSettings::default())).await;
        m.send(Command::Join("g".into()));
        members.push(m);
    }
    agreed(&mut members, "g", &["alice", "bob"]).await;
    let odd = GroupSettings {
        cipher: "chacha20-poly1305".into(),
        cipher_algorithm: "chacha20-poly1305".into(),
        ..GroupSettings::default()
    };
    let mut mallory = net.member("mallory", policy(odd)).await;
    mallory.send(Command::Join("g".into()));
    let error = mallory
        .until("security error", |e| match e {
            SessionEvent::SecurityError { error, .. } if error.code == "parameter-mismatch" => {
                Some(error.clone())
            }
            _ => None,
        })
        .await;
    assert!(
        error.message.contains("chacha20-poly1305"),
        "{}",
        error.message
    );
    mallory
        .until("left", |e| {
            matches!(e, SessionEvent::Left { .. }).then_some(())
        })
        .await;
    // The others end up with a key for the view without mallory.
    for m in members.iter_mut() {
        m.until("key without mallory", |e| match e {
            SessionEvent::KeyEstablished(k) if k.members == ["alice", "bob"] && k.epoch > 1 => {
                Some(())
            }
            SessionEvent::SecurityError { .. } => None,
            _ => None,
        })
        .await;
    }
    net.daemon.unwrap().shutdown().await;
}
