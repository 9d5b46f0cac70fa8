//! `conclave demo`: the whole system at work, on the embedded engine or on Corosync.
//!
//! On the embedded engine (the default) a daemon runs inside the process on a private
//! Unix socket and N members connect to it; with `--engine corosync` each member is a
//! `conclave chat --engine corosync` process on this machine's corosync (CPG admits one
//! member of a group per process). The members join a secure group one by one,
//! exchange messages, and then one leaves, one crashes and a new one joins. Every view,
//! key and message is printed as a timeline.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use conclave::{
    GroupSettings, Identity, SessionEvent,
    plugins::Registry,
    sdk::{Options, ka_kit::MapTrustStore},
    session::{Command, SessionHandle},
};
use conclave_gcs::{Address, Service};
use serde::Serialize;
use tokio::sync::mpsc;

/// Arguments of `conclave demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many members start in the group (at least 3).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(3..=64))]
    members: u16,
    /// The group's key agreement (`gdh`, `ckd`, `tgdh`, `str`, `bd`).
    #[arg(long, default_value = "gdh")]
    key_agreement: String,
    /// The group's cipher plugin (`aes-gcm`, `chacha20-poly1305`, `blowfish`).
    #[arg(long, default_value = "aes-gcm")]
    cipher: String,
    /// The DH group.
    #[arg(long, default_value = "ristretto255")]
    dh_group: String,
    /// The provider.
    #[arg(long, default_value = "rustcrypto")]
    provider: String,
    /// Take the group's modules (and plugin libraries) from this policy file instead
    /// of the options above; the group is named `demo`.
    #[arg(long, value_name = "FILE")]
    policy: Option<std::path::PathBuf>,
    /// Print one JSON object instead of the timeline.
    #[arg(long)]
    json: bool,
    /// The engine: `embedded` (a daemon inside this process) or `corosync` (the
    /// corosync of this machine; one member process each).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "corosync"])]
    engine: String,
}

const GROUP: &str = "demo";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
struct Entry {
    /// Milliseconds since the start.
    at_ms: f64,
    member: String,
    #[serde(flatten)]
    event: SessionEvent,
}

#[derive(Debug, Serialize)]
struct Report {
    group: String,
    settings: GroupSettings,
    members: Vec<String>,
    timeline: Vec<Entry>,
    epochs: Vec<EpochSummary>,
    messages_sent: u64,
    messages_received: u64,
    security_errors: u64,
    total_ms: f64,
}

#[derive(Debug, Serialize)]
struct EpochSummary {
    epoch: u64,
    members: Vec<String>,
    fingerprint: String,
    /// The slowest member's time from view to key, in milliseconds.
    rekey_ms: f64,
    agreed: bool,
}

/// Member processes (`conclave chat --engine corosync`), for the Corosync engine.
struct Processes {
    dir: std::path::PathBuf,
    children: BTreeMap<String, (std::process::Child, std::process::ChildStdin)>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, (mut c, _)) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Demo {
    start: Instant,
    address: Address,
    processes: Option<Processes>,
    registry: Arc<Registry>,
    trust: MapTrustStore,
    settings: GroupSettings,
    handles: BTreeMap<String, (SessionHandle, tokio::task::JoinHandle<()>)>,
    tx: mpsc::UnboundedSender<(String, Instant, SessionEvent)>,
    rx: mpsc::UnboundedReceiver<(String, Instant, SessionEvent)>,
    timeline: Vec<Entry>,
    sent: u64,
    json: bool,
}

fn names(n: u16) -> Vec<String> {
    const NAMES: [&str; 12] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj",
    ];
    (0..n as usize)
        .map(|i| match NAMES.get(i) {
            Some(n) => n.to_string(),
            None => format!("member{i}"),
        })
        .collect()
}

impl Demo {
    async fn connect(&mut self, name: &str) -> Result<(), String> {
        if self.processes.is_some() {
            return self.spawn_member(name);
        }
        let session = crate::embedded::session(
            &self.address,
            &self.registry,
            &self.settings,
            &self.trust,
            name,
        )
        .await?;
        let who = name.to_string();
        let (handle, task) = session.spawn(self.tx.clone(), move |at, e| (who.clone(), at, e));
        self.handles.insert(name.into(), (handle, task));
        Ok(())
    }

    /// Starts `name` as a member process (it joins the group at once).
    fn spawn_member(&mut self, name: &str) -> Result<(), String> {
        use std::io::BufRead;
        let Some(p) = self.processes.as_mut() else {
            return Err("no member processes here".into());
        };
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .args(["chat", "--engine", "corosync", "--json", "--group", GROUP])
            .arg("--identity")
            .arg(p.dir.join("keys").join(format!("{name}.key")))
            .arg("--policy")
            .arg(p.dir.join("policy.toml"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{name}: cannot start a member process: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("{name}: no pipes to the member process"));
        };
        let tx = self.tx.clone();
        let who = name.to_string();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let Ok(mut event) = serde_json::from_value::<SessionEvent>(value.clone()) else {
                    continue;
                };
                if let SessionEvent::Message { data, .. } = &mut event {
                    *data = value["text"].as_str().unwrap_or("").as_bytes().to_vec();
                }
                if tx.send((who.clone(), Instant::now(), event)).is_err() {
                    break;
                }
            }
        });
        p.children.insert(name.into(), (child, stdin));
        Ok(())
    }

    fn command(&mut self, name: &str, c: Command) {
        use std::io::Write;
        if let Some(p) = self.processes.as_mut() {
            let Some((_, stdin)) = p.children.get_mut(name) else {
                return;
            };
            // A member process joins when it starts; text lines are multicast.
            let line = match c {
                Command::Multicast { data, .. } => String::from_utf8_lossy(&data).into_owned(),
                Command::Leave(_) => "/leave".into(),
                Command::Refresh(_) => "/refresh".into(),
                _ => return,
            };
            let _ = writeln!(stdin, "{line}");
            return;
        }
        if let Some((h, _)) = self.handles.get(name) {
            h.send(c);
        }
    }

    /// Kills `name`'s task or process: its connection drops.
    fn crash(&mut self, name: &str) {
        if let Some((_, task)) = self.handles.remove(name) {
            task.abort();
        }
        if let Some(p) = self.processes.as_mut()
            && let Some((mut child, _)) = p.children.remove(name)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn record(&mut self, member: String, at: Instant, event: SessionEvent) {
        let at_ms = at.duration_since(self.start).as_secs_f64() * 1e3;
        if !self.json {
            out!("{}", line(at_ms, &member, &event));
        }
        self.timeline.push(Entry {
            at_ms,
            member,
            event,
        });
    }

    /// The error that ends the demo at once, if `e` is one: a command that failed (a
    /// send, a join) would otherwise be noticed only at the end of a wait.
    fn failed(who: &str, e: &SessionEvent) -> Result<(), String> {
        match e {
            SessionEvent::CommandFailed { .. } | SessionEvent::Refused { .. } => {
                Err(format!("{who}: {}", crate::render::describe(e)))
            }
            _ => Ok(()),
        }
    }

    /// Records events until every member of `members` holds a key for exactly that
    /// membership.
    async fn until_keyed(&mut self, members: &[String]) -> Result<(), String> {
        let mut keyed: BTreeMap<String, bool> =
            members.iter().map(|m| (m.clone(), false)).collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        while keyed.values().any(|k| !k) {
            let (who, at, e) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| format!("no key for {members:?} within {WAIT:?}"))?
                .ok_or("every member task ended")?;
            Self::failed(&who, &e)?;
            if let SessionEvent::KeyEstablished(k) = &e
                && k.members == members
                && let Some(done) = keyed.get_mut(&who)
            {
                *done = true;
            }
            self.record(who, at, e);
        }
        Ok(())
    }

    /// Records events until `n` messages have been received in all.
    async fn until_messages(&mut self, n: usize) -> Result<(), String> {
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + WAIT;
        while got < n {
            let (who, at, e) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| format!("only {got} of {n} messages arrived within {WAIT:?}"))?
                .ok_or("every member task ended")?;
            Self::failed(&who, &e)?;
            if matches!(e, SessionEvent::Message { .. }) {
                got += 1;
            }
            self.record(who, at, e);
        }
        Ok(())
    }

    fn say(&mut self, from: &str, text: &str) {
        self.sent += 1;
        if !self.json {
            let at = self.start.elapsed().as_secs_f64() * 1e3;
            out!("{at:>9.1} ms  {from:<8} sends    {text:?}");
        }
        self.command(
            from,
            Command::Multicast {
                group: GROUP.into(),
                service: Service::Agreed,
                data: text.as_bytes().to_vec(),
            },
        );
    }

    fn note(&self, text: &str) {
        if !self.json {
            let at = self.start.elapsed().as_secs_f64() * 1e3;
            out!("{at:>9.1} ms  --- {text}");
        }
    }
}

fn line(at_ms: f64, member: &str, e: &SessionEvent) -> String {
    format!(
        "{at_ms:>9.1} ms  {member:<8} {}",
        crate::render::describe(e)
    )
}

fn summarize(timeline: &[Entry]) -> Vec<EpochSummary> {
    let mut by_epoch: BTreeMap<u64, Vec<&conclave::KeyEstablished>> = BTreeMap::new();
    for e in timeline {
        if let SessionEvent::KeyEstablished(k) = &e.event {
            by_epoch.entry(k.epoch).or_default().push(k);
        }
    }
    by_epoch
        .into_iter()
        .map(|(epoch, keys)| EpochSummary {
            epoch,
            members: keys[0].members.clone(),
            fingerprint: keys[0].fingerprint.clone(),
            rekey_ms: keys
                .iter()
                .map(|k| k.took.as_secs_f64() * 1e3)
                .fold(0.0, f64::max),
            agreed: keys.iter().all(|k| k.fingerprint == keys[0].fingerprint)
                && keys.len() == keys[0].members.len(),
        })
        .collect()
}

/// Identities and a policy file for member processes: the demo's settings, every
/// member trusted.
fn member_files(
    dir: &std::path::Path,
    registry: &Registry,
    settings: &GroupSettings,
    members: &[String],
) -> Result<(), String> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| format!("{}: {e}", keys.display()))?;
    let provider = registry
        .new_provider(&settings.provider, Options::default())
        .map_err(|e| e.to_string())?;
    for name in members {
        Identity::generate(&provider, name, &settings.signature)
            .map_err(|e| format!("{name}: {e}"))?
            .write_files(&keys)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    let policy = format!(
        "[trust]\nkeys = {keys:?}\n\n[defaults]\nkey_agreement = {:?}\ncipher = {:?}\ndh_group = {:?}\nprovider = {:?}\nsignature = {:?}\n",
        settings.key_agreement,
        settings.cipher_algorithm,
        settings.dh_group,
        settings.provider,
        settings.signature,
        keys = keys.display().to_string(),
    );
    std::fs::write(dir.join("policy.toml"), policy).map_err(|e| e.to_string())
}

async fn run_demo(args: DemoArgs) -> Result<Report, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let address: Address = format!("unix:{}", dir.path().join("engine.sock").display())
        .parse()
        .map_err(|e| format!("{e:?}"))?;
    let corosync = args.engine == "corosync";
    let daemon = if corosync {
        None
    } else {
        Some(
            crate::embedded::daemon(dir.path(), Some(Duration::from_secs(5)))
                .await?
                .0,
        )
    };
    let (registry, settings) = match &args.policy {
        Some(file) => {
            let (registry, policy, _) =
                conclave::PolicyFile::load(file).map_err(|e| e.to_string())?;
            let resolved = policy.resolve(GROUP).map_err(|e| e.to_string())?;
            (registry, GroupSettings::from(&resolved))
        }
        None => {
            let registry = Arc::new(Registry::with_builtins().map_err(|e| e.to_string())?);
            let cipher_algorithm = registry
                .get(&args.cipher)
                .and_then(|p| p.info().algorithms.first().map(|a| a.name.clone()))
                .ok_or_else(|| format!("no cipher plugin named {:?}", args.cipher))?;
            let settings = GroupSettings {
                key_agreement: args.key_agreement,
                cipher: args.cipher,
                cipher_algorithm,
                dh_group: args.dh_group,
                provider: args.provider,
                ..GroupSettings::default()
            };
            (registry, settings)
        }
    };
    if settings.members.is_some() {
        return Err(
            "the policy restricts who may join group \"demo\"; the demo needs its own members"
                .into(),
        );
    }
    if corosync && args.policy.is_some() {
        return Err(
            "--policy is not taken with --engine corosync: the member processes use the demo's own policy (pick the modules with --key-agreement, --cipher, ...)".into(),
        );
    }
    let all = names(args.members);
    let processes = if corosync {
        // Fails early, with corosync's reason, if it is not reachable here.
        conclave_corosync::CpgConnection::connect(
            conclave_gcs::MemberName::new("probe").map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        member_files(dir.path(), &registry, &settings, &all)?;
        Some(Processes {
            dir: dir.path().to_path_buf(),
            children: BTreeMap::new(),
        })
    } else {
        None
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut demo = Demo {
        start: Instant::now(),
        address,
        processes,
        registry,
        trust: MapTrustStore::new(),
        settings: settings.clone(),
        handles: BTreeMap::new(),
        tx,
        rx,
        timeline: Vec::new(),
        sent: 0,
        json: args.json,
    };
    if !demo.json {
        out!(
            "conclave demo: {} members in group {GROUP:?}, {}",
            args.members,
            settings.summary()
        );
        if corosync {
            out!("engine: this machine's corosync (CPG), one member process each\n");
        } else {
            out!(
                "embedded engine on {}\n",
                dir.path().join("engine.sock").display()
            );
        }
    }
    let mut present: Vec<String> = Vec::new();
    demo.note("members join one by one");
    for name in &all {
        demo.connect(name).await?;
        demo.command(name, Command::Join(GROUP.into()));
        present.push(name.clone());
        demo.until_keyed(&present).await?;
    }
    demo.note("everyone says hello");
    for name in &all {
        demo.say(name, &format!("hello from {name}"));
    }
    demo.until_messages(all.len() * all.len()).await?;

    let leaver = all[all.len() - 1].clone();
    demo.note(&format!("{leaver} leaves"));
    demo.command(&leaver, Command::Leave(GROUP.into()));
    present.retain(|m| *m != leaver);
    demo.until_keyed(&present).await?;

    let crasher = all[1].clone();
    demo.note(&format!("{crasher} crashes (its connection drops)"));
    demo.crash(&crasher);
    present.retain(|m| *m != crasher);
    demo.until_keyed(&present).await?;

    demo.note(&format!("{crasher} comes back"));
    demo.connect(&crasher).await?;
    demo.command(&crasher, Command::Join(GROUP.into()));
    present.push(crasher.clone());
    demo.until_keyed(&present).await?;

    demo.note("a last round of messages");
    let speakers = present.clone();
    for name in &speakers {
        demo.say(name, &format!("{name} is still here"));
    }
    demo.until_messages(speakers.len() * present.len()).await?;

    let total_ms = demo.start.elapsed().as_secs_f64() * 1e3;
    for (_, (_, task)) in std::mem::take(&mut demo.handles) {
        task.abort();
    }
    demo.processes = None;
    if let Some(daemon) = daemon {
        daemon.shutdown().await;
    }
    let epochs = summarize(&demo.timeline);
    let received = demo
        .timeline
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::Message { .. }))
        .count() as u64;
    let errors = demo
        .timeline
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::SecurityError { .. }))
        .count() as u64;
    Ok(Report {
        group: GROUP.into(),
        settings,
        members: all,
        timeline: demo.timeline,
        epochs,
        messages_sent: demo.sent,
        messages_received: received,
        security_errors: errors,
        total_ms,
    })
}

/// Runs `conclave demo`.
pub fn run(args: DemoArgs) -> ExitCode {
    let json = args.json;
    let runtime = match crate::embedded::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conclave demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_demo(args)) {
        Ok(report) => {
            let ok = report.epochs.iter().all(|e| e.agreed) && report.security_errors == 0;
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => out!("{s}"),
                    Err(e) => {
                        eprintln!("conclave demo: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                out!("\nepochs:");
                for e in &report.epochs {
                    out!(
                        "  {:>3}  fp {}  rekey {:>6.1} ms  {}  [{}]",
                        e.epoch,
                        e.fingerprint,
                        e.rekey_ms,
                        if e.agreed {
                            "agreed by all"
                        } else {
                            "NOT AGREED"
                        },
                        e.members.join(" ")
                    );
                }
                out!(
                    "\n{} messages sent, {} received, {} security errors, {:.0} ms in all",
                    report.messages_sent,
                    report.messages_received,
                    report.security_errors,
                    report.total_ms
                );
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("conclave demo: {e}");
            ExitCode::from(1)
        }
    }
}
