//! A harness for end-to-end tests: a daemon, members as tasks, waits on their events.

use std::{sync::Arc, time::Duration};

use conclave::{
    Identity, PolicySource, Session, SessionEvent,
    plugins::Registry,
    sdk::{Options, host::Provider, ka_kit::MapTrustStore},
    session::{Command, KeyEstablished, SessionHandle},
};
use conclave_gcs::{Address, Daemon, DaemonConfig};
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
        let session = Session::connect(&self.address, identity, registry, policy, trust)
            .await
            .unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        let (handle, task) = session.spawn(tx, |_, e| e);
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

    /// Every event received so far and not yet picked (the backlog and what is queued),
    /// without waiting.
    pub fn drain_now(&mut self) -> Vec<SessionEvent> {
        let mut all = std::mem::take(&mut self.backlog);
        while let Ok(e) = self.events.try_recv() {
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
                    } if g == group => Some((sender.clone(), epoch.unwrap_or(0), data.clone())),
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
