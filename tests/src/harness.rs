//! A harness for end-to-end tests: a daemon, members as tasks, waits on their events.

use std::{sync::Arc, time::Duration};

use conclave::{
    Identity, PolicySource, Session, SessionEvent,
    plugins::Registry,
    sdk::{Options, host::Provider, ka_kit::MapTrustStore},
    session::{Command, KeyEstablished, SessionHandle},
};
use conclave_gcs::{
    Address, Client, Daemon, DaemonConfig, Event, GroupName, MemberName, Service, View,
};
use tokio::sync::mpsc;

/// A daemon on a private socket, the built-in plugins and a shared trust store.
pub struct Net {
    /// The daemon.
    pub daemon: Option<Daemon>,
    /// Its address.
    pub address: Address,
    /// The plugins.
    pub registry: Arc<Registry>,
    /// Every member's trusted key.
    pub trust: MapTrustStore,
    provider: Provider,
    _dir: tempfile::TempDir,
}

/// A member: a session driven by its own task, and the events it reported.
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its session's handle.
    pub handle: SessionHandle,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    /// Events received but not yet picked by a wait.
    backlog: Vec<SessionEvent>,
    /// The task running its session.
    pub task: tokio::task::JoinHandle<()>,
    /// Whether a security error while waiting for a key or a message is expected (a
    /// test with hostile members); by default it fails the wait.
    pub tolerant: bool,
}

/// A raw engine client: a member of the engine's view that speaks none of the secure
/// layer unless told to (see [`Net::raw`]).
pub struct Raw {
    /// Payloads to multicast (agreed), as they are: tag byte first.
    pub send: mpsc::UnboundedSender<Vec<u8>>,
    /// The views it got.
    pub views: mpsc::UnboundedReceiver<View>,
    /// Its task (abort it to close the connection).
    pub task: tokio::task::JoinHandle<()>,
}

impl Raw {
    /// Multicasts `payload` as it is.
    pub fn multicast(&self, payload: Vec<u8>) {
        self.send.send(payload).unwrap();
    }

    /// The next view it gets.
    pub async fn view(&mut self) -> View {
        tokio::time::timeout(WAIT, self.views.recv())
            .await
            .expect("no view for the raw client")
            .expect("raw client gone")
    }
}

/// How long a wait may take.
pub const WAIT: Duration = Duration::from_secs(30);

impl Net {
    /// A daemon on a private Unix socket.
    pub async fn new() -> Self {
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

    /// A member with a new identity, trusted by all, connected with `policy`.
    pub async fn member(&self, name: &str, policy: Arc<dyn PolicySource>) -> Member {
        self.member_with(name, policy, self.registry.clone(), self.trust.clone())
            .await
    }

    /// A member whose identity the others do not trust: it trusts every member the
    /// shared store holds now, and itself; the shared store does not learn its key.
    pub async fn untrusted_member(&self, name: &str, policy: Arc<dyn PolicySource>) -> Member {
        let identity = Identity::generate(&self.provider, name, "ed25519").unwrap();
        let trust = MapTrustStore::new();
        for other in ["alice", "bob", "carol", "dave"] {
            if let Some(k) = self.trust.lookup_key(other) {
                trust.insert(other, k.algorithm.as_str(), &k.public_key);
            }
        }
        trust.insert(name, "ed25519", identity.public_key());
        self.start(identity, policy, self.registry.clone(), trust)
            .await
    }

    /// A new identity that every member trusts, without a session (for a raw client).
    pub fn trusted_identity(&self, name: &str) -> Identity {
        let identity = Identity::generate(&self.provider, name, "ed25519").unwrap();
        self.trust.insert(name, "ed25519", identity.public_key());
        identity
    }

    /// A raw engine client in `group`: it answers flush requests and sends what it is
    /// told, nothing of the secure layer (see [`Raw`]).
    pub async fn raw(&self, name: &str, group: &str) -> Raw {
        let mut client = Client::connect(&self.address, MemberName::new(name).unwrap())
            .await
            .unwrap();
        let group = GroupName::new(group).unwrap();
        client.join(&group).await.unwrap();
        let (send, mut outbox) = mpsc::unbounded_channel::<Vec<u8>>();
        let (views_tx, views) = mpsc::unbounded_channel::<View>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = client.next_event() => match e {
                        Ok(Event::FlushRequest { group }) => {
                            let _ = client.flush_ok(&group).await;
                        }
                        Ok(Event::View(v)) => {
                            let _ = views_tx.send(v);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                    Some(payload) = outbox.recv() => {
                        let _ = client.multicast(&group, Service::Agreed, bytes::Bytes::from(payload)).await;
                    }
                }
            }
        });
        Raw { send, views, task }
    }

    /// A member with its own plugins and trust store (its identity is added to both
    /// `trust` and the shared store).
    pub async fn member_with(
        &self,
        name: &str,
        policy: Arc<dyn PolicySource>,
        registry: Arc<Registry>,
        trust: MapTrustStore,
    ) -> Member {
        let identity = Identity::generate(&self.provider, name, "ed25519").unwrap();
        self.trust.insert(name, "ed25519", identity.public_key());
        trust.insert(name, "ed25519", identity.public_key());
        self.start(identity, policy, registry, trust).await
    }

    async fn start(
        &self,
        identity: Identity,
        policy: Arc<dyn PolicySource>,
        registry: Arc<Registry>,
        trust: MapTrustStore,
    ) -> Member {
        let name = identity.name().to_string();
        let session = Session::connect(&self.address, identity, registry, policy, trust)
            .await
            .unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let (handle, task) = session.spawn(tx, |_, e| e);
        Member {
            name,
            handle,
            events,
            backlog: Vec::new(),
            task,
            tolerant: false,
        }
    }
}

impl Member {
    /// Joins `group` and waits until the engine put this member in a view, so that
    /// members joined one after the other are in that join order.
    pub async fn join(&mut self, group: &str) {
        self.send(Command::Join(group.into()));
        let me = self.name.clone();
        self.until(&format!("view of {group}"), |e| match e {
            SessionEvent::Membership {
                group: g, members, ..
            } if g == group && members.contains(&me) => Some(()),
            _ => None,
        })
        .await;
    }

    /// How many keys among the events received but not yet picked match `pick`.
    pub fn backlog_keys(&self, pick: impl Fn(&KeyEstablished) -> bool) -> usize {
        self.backlog
            .iter()
            .filter(|e| matches!(e, SessionEvent::KeyEstablished(k) if pick(k)))
            .count()
    }

    /// Queues a command.
    pub fn send(&self, c: Command) {
        assert!(self.handle.send(c), "{} is gone", self.name);
    }

    /// The first event that `pick` accepts (earlier ones it skipped stay available for
    /// later waits); panics after WAIT.
    pub async fn until<T>(
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
                && !self.tolerant
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

    /// Moves the events queued so far into the backlog, without waiting (for
    /// [`Member::backlog_keys`]; later waits still find them).
    pub async fn pull_now(&mut self) {
        while let Some(e) = conclave_gcs::channel::take_ready_unbounded(&mut self.events).await {
            self.backlog.push(e);
        }
    }

    /// Every event received so far and not yet picked (the backlog and what is queued),
    /// without waiting.
    pub async fn drain_now(&mut self) -> Vec<SessionEvent> {
        let mut all = std::mem::take(&mut self.backlog);
        while let Some(e) = conclave_gcs::channel::take_ready_unbounded(&mut self.events).await {
            all.push(e);
        }
        all
    }

    /// The key for a view of exactly `members`.
    pub async fn key_for(&mut self, group: &str, members: &[&str]) -> KeyEstablished {
        self.until(&format!("key of {group} for {members:?}"), |e| match e {
            SessionEvent::KeyEstablished(k) if k.group == group && k.members == members => {
                Some(k.clone())
            }
            _ => None,
        })
        .await
    }

    /// The next `n` messages of `group`: (sender, epoch, data).
    pub async fn messages(&mut self, group: &str, n: usize) -> Vec<(String, u64, Vec<u8>)> {
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
                    } if g == group => Some((sender.to_string(), epoch.unwrap_or(0), data.clone())),
                    _ => None,
                })
                .await;
            got.push(m);
        }
        got
    }
}

/// Waits until each member named in `names` holds a key for exactly that membership;
/// checks they agree, and returns one.
pub async fn agreed(members: &mut [Member], group: &str, names: &[&str]) -> KeyEstablished {
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
