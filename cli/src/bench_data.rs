//! `conclave bench data`: sealed multicast through the engine, per cipher and message
//! size, with `none` (a plain view-synchronous group) as the baseline.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use conclave::{
    FixedPolicy, GroupSettings, Security, Session, SessionEvent, plugins::Registry,
    sdk::ka_kit::MapTrustStore, session::Command,
};
use conclave_gcs::{
    Address, Daemon, MemberName, Service,
    sim::{SimConfig, Simulator},
};
use serde::Serialize;
use std::{cell::RefCell, rc::Rc};

use tokio::sync::mpsc;

/// Arguments of `conclave bench data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Cipher plugins, comma-separated; `none` is a plain group (the baseline).
    #[arg(
        long,
        default_value = "none,aes-gcm,chacha20-poly1305,blowfish",
        value_delimiter = ','
    )]
    cipher: Vec<String>,
    /// Message sizes in bytes, comma-separated.
    #[arg(long, default_value = "100,1024,10240", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Members in the group (one sender, the others receive).
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// The providers of the ciphers, comma-separated: each sealed row is measured on
    /// each of them (side by side, in turns). The key agreement runs on the same
    /// provider, or on `rustcrypto` when it offers no DH group (`aws-lc`).
    #[arg(long, default_value = "openssl", value_delimiter = ',')]
    provider: Vec<String>,
    /// Messages per measurement (with every message queued at once, `--window 0` in a
    /// flood, fewer for large messages: about 32 MB in all).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// The engine: `daemon`, an embedded daemon on a private Unix socket (every message
    /// crosses the socket twice); `sim`, the in-process simulator (three simulated
    /// daemons, no sockets: the cost of the secure layer and the ordering alone);
    /// `corosync`, this machine's corosync (with `--processes`; each size is measured
    /// first as `raw-cpg`, members on CPG alone with nothing of Conclave, the baseline).
    #[arg(long, default_value = "daemon", value_parser = ["daemon", "sim", "corosync"])]
    engine: String,
    /// Messages per second the sender sends (0: as fast as it can, a flood: latency is
    /// then mostly queueing).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    rate: u64,
    /// Measure each row twice in one run: alone, and with a client that stopped reading
    /// in another group of the same daemon while a second sender floods that group
    /// (daemon engine only).
    #[arg(long)]
    stopped_client: bool,
    /// In a flood (`--rate 0`), at most this many messages in flight: sent but not yet
    /// delivered to every receiver (0: no bound, every message queued at once).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Rounds: every row is measured this many times, the rows taking turns (so that a
    /// slow spell of the machine falls on all of them), and the median is shown.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=99))]
    rounds: u32,
    /// Run the daemon and every member as processes of their own (`conclave daemon`, and
    /// one process per member), as users run them; reports the daemon's CPU per message
    /// apart (daemon engine only; no `--stopped-client`). Each size is measured first as
    /// `raw-relay`: a relay process in the daemon's place and members with nothing of
    /// Conclave, the machine's floor.
    #[arg(long, conflicts_with = "stopped_client")]
    processes: bool,
    /// Write the rows as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct DataRow {
    /// The cipher (`none`: plain group).
    pub cipher: String,
    /// The provider the cipher computed on (empty for a plain group and raw CPG).
    #[serde(default)]
    pub provider: String,
    /// Payload bytes.
    pub size: usize,
    /// Messages sent.
    pub messages: usize,
    /// Messages per second delivered to each receiver.
    pub messages_per_s: f64,
    /// Payload megabytes per second delivered to each receiver.
    pub mb_per_s: f64,
    /// One-way latency, median, microseconds.
    pub p50_us: f64,
    /// One-way latency, 99th percentile, microseconds.
    pub p99_us: f64,
    /// One-way latency, 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// CPU time of the whole process (daemon, sender, receivers) per message sent,
    /// microseconds (with `--processes`: of all of them together).
    pub cpu_us_per_message: f64,
    /// With `--processes`: the daemon's CPU time per message sent, microseconds.
    pub daemon_cpu_us_per_message: Option<f64>,
    /// With `--processes`: the daemon's wake-ups per message sent (its threads'
    /// voluntary context switches: each a sleep, to wait for something, then a wake-up).
    pub daemon_wakeups_per_message: Option<f64>,
    /// The send window of a flood (0: none).
    pub window: usize,
    /// Rounds measured (the figures are their medians).
    pub rounds: u32,
    /// Messages per second asked for (0: a flood).
    pub rate: u64,
    /// Whether a stopped client sat in another group, flooded by another sender.
    pub stopped_client: bool,
}

struct Member {
    handle: conclave::session::SessionHandle,
    events: mpsc::UnboundedReceiver<(Instant, SessionEvent)>,
    task: tokio::task::JoinHandle<()>,
}

/// Where the members connect.
enum Engine {
    Daemon(Daemon, Address),
    Sim(Simulator),
}

impl Engine {
    async fn start(kind: &str, dir: &std::path::Path) -> Result<Engine, String> {
        if kind == "sim" {
            return Ok(Engine::Sim(Simulator::new(1, SimConfig::default())));
        }
        let (daemon, address) = crate::embedded::daemon(dir, None).await?;
        Ok(Engine::Daemon(daemon, address))
    }

    async fn stop(self) {
        if let Engine::Daemon(daemon, _) = self {
            daemon.shutdown().await;
        }
    }
}

async fn member(
    engine: &Engine,
    index: usize,
    registry: &Arc<Registry>,
    trust: &MapTrustStore,
    settings: &GroupSettings,
    name: &str,
) -> Result<Member, String> {
    let identity = crate::embedded::identity(registry, settings, trust, name)?;
    let policy = Arc::new(FixedPolicy(settings.clone()));
    let (tx, events) = mpsc::unbounded_channel();
    let (handle, task) = match engine {
        Engine::Daemon(_, address) => {
            Session::connect(address, identity, registry.clone(), policy, trust.clone())
                .await
                .map_err(|e| e.to_string())?
                .spawn(tx, |at, e| (at, e))
        }
        Engine::Sim(sim) => {
            let name = MemberName::new(name).map_err(|e| e.to_string())?;
            // The members spread over the simulated daemons.
            let connection = sim
                .add_member(&name, index % SimConfig::default().daemons)
                .map_err(|e| e.to_string())?;
            Session::over(
                connection,
                identity,
                registry.clone(),
                policy,
                trust.clone(),
            )
            .map_err(|e| e.to_string())?
            .spawn_local(tx, |at, e| (at, e))
        }
    };
    Ok(Member {
        handle,
        events,
        task,
    })
}

async fn wait(
    m: &mut Member,
    what: &str,
    mut f: impl FnMut(&SessionEvent) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, e) = tokio::time::timeout_at(deadline, m.events.recv())
            .await
            .map_err(|_| format!("no {what} within 60 s"))?
            .ok_or("a member's session ended")?;
        match &e {
            SessionEvent::SecurityError { error, .. } => {
                return Err(format!("security error: {} {}", error.code, error.message));
            }
            SessionEvent::CommandFailed { command, message } => {
                return Err(format!("{command}: {message}"));
            }
            _ => {}
        }
        if f(&e) {
            return Ok(());
        }
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A client that joins `group` and then reads nothing, and a flooder that sends 48 MiB
/// to that group: the load of another group that a slow reader must not spread.
async fn disturb(
    address: &Address,
) -> Result<(conclave_gcs::Client, tokio::task::JoinHandle<()>), String> {
    use conclave_gcs::{Client, Delivery, Event, GroupName, SendOptions};
    let group = GroupName::new("other").map_err(|e| e.to_string())?;
    let name = |n: &str| MemberName::new(n).map_err(|e| e.to_string());
    let mut flooder = Client::connect(address, name("flooder")?)
        .await
        .map_err(|e| e.to_string())?;
    flooder.join(&group).await.map_err(|e| e.to_string())?;
    let mut stopped = Client::connect(address, name("stopped")?)
        .await
        .map_err(|e| e.to_string())?;
    stopped.join(&group).await.map_err(|e| e.to_string())?;
    // Both answer flushes until both are in one view; only then does the stopped client
    // stop reading (were it asked to flush for its own join and not answer, the daemon
    // would remove it and the view of two would never come). Bounded: a view that never
    // comes is an error, not a hang.
    async fn in_view(c: &mut Client) -> Result<(), String> {
        loop {
            match c.next_event().await.map_err(|e| e.to_string())? {
                Event::FlushRequest { group } => {
                    c.flush_ok(&group).await.map_err(|e| e.to_string())?;
                }
                Event::View(v) if v.members.len() == 2 => return Ok(()),
                _ => {}
            }
        }
    }
    let both = async {
        let (f, s) = tokio::join!(in_view(&mut flooder), in_view(&mut stopped));
        f.and(s)
    };
    tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .map_err(|_| "the stopped client did not join the other group within 30 s".to_string())??;
    // The measurement starts once the flood is held back (the stopped client's queue is
    // more than half full): the steady state of a daemon with a stopped client.
    let (held, held_back) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![0u8; 64 << 10]);
        let mut held = Some(held);
        let sends = async {
            for _ in 0..(48 << 20) / chunk.len() {
                let t = Instant::now();
                let sent = flooder
                    .send(
                        &group,
                        Delivery::Multicast(Service::Agreed),
                        chunk.clone(),
                        SendOptions {
                            self_delivery: false,
                        },
                    )
                    .await;
                if sent.is_err() {
                    break;
                }
                if t.elapsed() > Duration::from_millis(100)
                    && let Some(h) = held.take()
                {
                    let _ = h.send(());
                }
            }
            if let Some(h) = held.take() {
                let _ = h.send(());
            }
        };
        sends.await;
        // Then it stays, answering flushes.
        while let Ok(e) = flooder.next_event().await {
            if let Event::FlushRequest { group } = e {
                let _ = flooder.flush_ok(&group).await;
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(30), held_back).await;
    Ok((stopped, task))
}

/// What one row measures, in either setup (one process, or a process each).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec<'a> {
    /// The cipher plugin (`none`: a plain group).
    pub cipher: &'a str,
    /// The provider of the cipher.
    pub provider: &'a str,
    /// Payload bytes.
    pub size: usize,
    /// Members (one sender, the others receive).
    pub members: usize,
    /// Messages asked for.
    pub messages: usize,
    /// Messages per second (0: a flood).
    pub rate: u64,
    /// A flood's send window (0: none).
    pub window: usize,
}

impl Spec<'_> {
    /// Messages sent: as asked, at least 100. A flood with no window queues every
    /// message at once, so there large payloads are cut to about 32 MB in all; paced or
    /// windowed, the messages in flight are bounded whatever the count.
    pub fn count(&self) -> usize {
        let unbounded = self.rate == 0 && self.window == 0;
        let asked = if unbounded {
            self.messages.min((32 << 20) / self.size.max(1))
        } else {
            self.messages
        };
        asked.max(100)
    }

    /// The row of a measurement: `latencies` sorted (µs), `elapsed` seconds from the
    /// first send to the last delivery, `cpu` seconds of everything, `daemon_cpu`
    /// seconds of the daemon if measured apart.
    pub fn row(
        &self,
        latencies: &[f64],
        elapsed: f64,
        cpu: f64,
        daemon_cpu: Option<f64>,
        stopped_client: bool,
    ) -> DataRow {
        let count = self.count();
        let elapsed = elapsed.max(1e-9);
        let per_message = |seconds: f64| seconds * 1e6 / count as f64;
        DataRow {
            cipher: self.cipher.into(),
            provider: self.provider.into(),
            size: self.size,
            messages: count,
            messages_per_s: count as f64 / elapsed,
            mb_per_s: (count * self.size) as f64 / elapsed / 1e6,
            p50_us: percentile(latencies, 0.5),
            p99_us: percentile(latencies, 0.99),
            p999_us: percentile(latencies, 0.999),
            cpu_us_per_message: per_message(cpu),
            daemon_cpu_us_per_message: daemon_cpu.map(per_message),
            daemon_wakeups_per_message: None,
            window: if self.rate == 0 { self.window } else { 0 },
            rounds: 1,
            rate: self.rate,
            stopped_client,
        }
    }
}

/// The settings of the benchmark's group: plain for `none`, else `cipher` on
/// `provider`, and the key agreement on it too, or on the built-in default provider
/// when it offers no DH group (the key agreement is not what is measured).
pub(crate) fn group_settings(
    registry: &Registry,
    cipher: &str,
    provider: &str,
) -> Result<GroupSettings, String> {
    Ok(if cipher == "none" {
        GroupSettings {
            security: Security::None,
            ..GroupSettings::default()
        }
    } else {
        let algorithm = registry
            .get(cipher)
            .and_then(|p| p.info().algorithms.first().map(|a| a.name.clone()))
            .ok_or_else(|| format!("no cipher plugin named {cipher:?}"))?;
        // Both DH providers offer it; the key agreement is not what is measured.
        let dh_group = "ffdhe2048";
        let offers_dh = registry
            .get(provider)
            .ok_or_else(|| format!("no provider named {provider:?}"))?
            .info()
            .algorithms
            .iter()
            .any(|a| {
                a.class == conclave::sdk::AlgorithmClass::DhGroup.as_str() && a.name == dh_group
            });
        let defaults = GroupSettings::default();
        GroupSettings {
            cipher: cipher.into(),
            cipher_algorithm: algorithm,
            provider: if offers_dh {
                provider.into()
            } else {
                defaults.provider.clone()
            },
            cipher_provider: Some(provider.into()),
            dh_group: dh_group.into(),
            ..defaults
        }
    })
}

async fn measure(
    engine: &str,
    registry: &Arc<Registry>,
    spec: Spec<'_>,
    stopped_client: bool,
) -> Result<DataRow, String> {
    let Spec {
        cipher,
        provider,
        size,
        members,
        rate,
        window,
        ..
    } = spec;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let engine = Engine::start(engine, dir.path()).await?;
    let disturbance = match (&engine, stopped_client) {
        (Engine::Daemon(_, address), true) => Some(disturb(address).await?),
        (Engine::Sim(_), true) => return Err("--stopped-client needs the daemon engine".into()),
        _ => None,
    };
    let settings = group_settings(registry, cipher, provider)?;
    let trust = MapTrustStore::new();
    let mut group = Vec::new();
    for i in 0..members.max(2) {
        let mut m = member(&engine, i, registry, &trust, &settings, &format!("m{i}")).await?;
        m.handle.send(Command::Join("bench".into()));
        wait(&mut m, "view", |e| {
            matches!(e, SessionEvent::Membership { .. })
        })
        .await?;
        group.push(m);
    }
    let n = group.len();
    for (i, m) in group.iter_mut().enumerate() {
        if cipher == "none" {
            // The last member's own join already showed it everyone.
            if i + 1 < n {
                wait(
                    m,
                    "full view",
                    |e| matches!(e, SessionEvent::Membership { members, .. } if members.len() == n),
                )
                .await?;
            }
        } else {
            wait(
                m,
                "key",
                |e| matches!(e, SessionEvent::KeyEstablished(k) if k.members.len() == n),
            )
            .await?;
        }
    }
    let count = spec.count();
    let base = Instant::now();
    let start = Instant::now();
    let cpu_start = cpu_time::ProcessTime::now();
    // Each receiver counts its deliveries; a flood's sender keeps at most `window`
    // messages ahead of the slowest receiver.
    let delivered = Rc::new(RefCell::new(vec![0usize; n - 1]));
    let progress = Rc::new(tokio::sync::Notify::new());
    let mut receivers = Vec::new();
    for (r, m) in group.iter_mut().skip(1).enumerate() {
        let (_, placeholder) = mpsc::unbounded_channel();
        let mut events = std::mem::replace(&mut m.events, placeholder);
        let delivered = delivered.clone();
        let progress = progress.clone();
        receivers.push(tokio::task::spawn_local(async move {
            let mut latencies = Vec::with_capacity(count);
            let mut last = start;
            while latencies.len() < count {
                let got = latencies.len();
                // An event already waiting is taken without arming a timer.
                let next = match conclave_gcs::channel::take_ready_unbounded(&mut events).await {
                    Some(e) => Some(e),
                    None => tokio::time::timeout(Duration::from_secs(60), events.recv())
                        .await
                        .map_err(|_| format!("{got} of {count} messages arrived"))?,
                };
                let (at, e) = next.ok_or("a member's session ended")?;
                match e {
                    SessionEvent::Message { data, .. } => {
                        let mut t = [0u8; 8];
                        t.copy_from_slice(&data[..8]);
                        let sent = Duration::from_nanos(u64::from_be_bytes(t));
                        let lat = at.duration_since(base).saturating_sub(sent);
                        latencies.push(lat.as_secs_f64() * 1e6);
                        last = last.max(at);
                        delivered.borrow_mut()[r] += 1;
                        progress.notify_one();
                    }
                    SessionEvent::SecurityError { error, .. } => {
                        return Err(format!("security error: {} {}", error.code, error.message));
                    }
                    _ => {}
                }
            }
            Ok::<_, String>((latencies, last))
        }));
    }
    // The sender's own events (the self-delivery of each message) are read and
    // dropped, as an application would, rather than left to pile up in its queue.
    let (_, placeholder) = mpsc::unbounded_channel();
    let mut own = std::mem::replace(&mut group[0].events, placeholder);
    tokio::task::spawn_local(async move { while own.recv().await.is_some() {} });
    let sender = group[0].handle.clone();
    let size = size.max(8);
    let send_one = move |sender: &conclave::session::SessionHandle| {
        let mut data = vec![0u8; size];
        let t = base.elapsed().as_nanos() as u64;
        data[..8].copy_from_slice(&t.to_be_bytes());
        sender.send(Command::Multicast {
            group: "bench".into(),
            service: Service::Agreed,
            data,
        });
    };
    if rate == 0 {
        let delivered = delivered.clone();
        tokio::task::spawn_local(async move {
            for sent in 0..count {
                while window > 0
                    && sent - delivered.borrow().iter().copied().min().unwrap_or(sent) >= window
                {
                    progress.notified().await;
                }
                send_one(&sender);
            }
        });
    } else {
        // Paced from a task of its own, so that receiving runs meanwhile.
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        tokio::task::spawn_local(async move {
            let mut next = tokio::time::Instant::now();
            for _ in 0..count {
                tokio::time::sleep_until(next).await;
                send_one(&sender);
                next += period;
            }
        });
    }
    let mut latencies = Vec::with_capacity(count * (n - 1));
    let mut last = start;
    for r in receivers {
        let (l, at) = r.await.map_err(|e| e.to_string())??;
        latencies.extend(l);
        last = last.max(at);
    }
    let cpu = cpu_start.elapsed();
    latencies.sort_by(f64::total_cmp);
    for m in group {
        m.task.abort();
    }
    if let Some((stopped, flooder)) = disturbance {
        flooder.abort();
        drop(stopped);
    }
    engine.stop().await;
    Ok(spec.row(
        &latencies,
        last.duration_since(start).as_secs_f64(),
        cpu.as_secs_f64(),
        None,
        stopped_client,
    ))
}

/// The median of each figure over the rounds of one row.
fn median_row(mut runs: Vec<DataRow>) -> DataRow {
    use conclave_benches::keys::median as median_of;
    let median = |f: fn(&DataRow) -> f64, runs: &[DataRow]| median_of(runs.iter().map(f).collect());
    let messages_per_s = median(|r| r.messages_per_s, &runs);
    let mb_per_s = median(|r| r.mb_per_s, &runs);
    let p50_us = median(|r| r.p50_us, &runs);
    let p99_us = median(|r| r.p99_us, &runs);
    let p999_us = median(|r| r.p999_us, &runs);
    let cpu_us_per_message = median(|r| r.cpu_us_per_message, &runs);
    // A figure measured in every round (the engine's, when it could be seen).
    let measured = |f: fn(&DataRow) -> Option<f64>, runs: &[DataRow]| {
        runs.iter()
            .map(f)
            .collect::<Option<Vec<f64>>>()
            .map(median_of)
    };
    let daemon_cpu = measured(|r| r.daemon_cpu_us_per_message, &runs);
    let daemon_wakeups = measured(|r| r.daemon_wakeups_per_message, &runs);
    let rounds = runs.len() as u32;
    let mut row = runs.swap_remove(0);
    row.messages_per_s = messages_per_s;
    row.mb_per_s = mb_per_s;
    row.p50_us = p50_us;
    row.p99_us = p99_us;
    row.p999_us = p999_us;
    row.cpu_us_per_message = cpu_us_per_message;
    row.daemon_cpu_us_per_message = daemon_cpu;
    row.daemon_wakeups_per_message = daemon_wakeups;
    row.rounds = rounds;
    row
}

/// Runs `conclave bench data`.
pub fn run(args: DataArgs) -> Result<(), String> {
    conclave_builtins::link();
    if args.processes && args.engine == "sim" {
        return Err(
            "--processes runs the members as processes: it needs --engine daemon or corosync"
                .into(),
        );
    }
    if args.engine == "corosync" && !args.processes {
        return Err("--engine corosync runs one member per process (CPG admits one member of a group per process): add --processes".into());
    }
    // The Corosync engine is read against CPG alone, measured first in each round.
    let mut ciphers = args.cipher.clone();
    // The daemon's processes, against the raw relay in the same place (nothing of
    // Conclave: what the machine's sockets and process wake-ups allow).
    let baseline = match args.engine.as_str() {
        "corosync" => Some(crate::bench_processes::RAW_CPG),
        "daemon" if args.processes => Some(crate::bench_relay::RAW_RELAY),
        _ => None,
    };
    if let Some(baseline) = baseline {
        ciphers.retain(|c| c != baseline);
        ciphers.insert(0, baseline.to_string());
    }
    // The simulator's members live on one thread (a LocalSet); the daemon's clients and
    // the daemon share two worker threads.
    let runtime = if args.engine == "sim" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        crate::embedded::runtime()
    }
    .map_err(|e| e.to_string())?;
    let registry = Arc::new(Registry::with_builtins().map_err(|e| e.to_string())?);
    let mut rows: Vec<DataRow> = Vec::new();
    let mut measured: Vec<Vec<DataRow>> = Vec::new();
    for round in 0..args.rounds {
        let mut at = 0;
        for cipher in &ciphers {
            // A plain group and CPG alone seal nothing: measured once.
            let plain = [String::new()];
            let providers = if cipher == "none" || Some(cipher.as_str()) == baseline {
                &plain[..]
            } else {
                &args.provider[..]
            };
            for (provider, &size) in providers
                .iter()
                .flat_map(|p| args.sizes.iter().map(move |s| (p, s)))
            {
                let variants: &[bool] = if args.stopped_client {
                    &[false, true]
                } else {
                    &[false]
                };
                for &stopped in variants {
                    let with = if stopped {
                        " with a stopped client elsewhere"
                    } else {
                        ""
                    };
                    let on = if provider.is_empty() {
                        String::new()
                    } else {
                        format!(" on {provider}")
                    };
                    eprintln!(
                        "measuring {cipher}{on} at {size} B{with} (round {} of {}) ...",
                        round + 1,
                        args.rounds
                    );
                    let spec = Spec {
                        cipher,
                        provider,
                        size,
                        members: args.members,
                        messages: args.messages,
                        rate: args.rate,
                        window: args.window,
                    };
                    let row = if args.processes {
                        crate::bench_processes::measure(&registry, &args.engine, spec)?
                    } else {
                        let local = tokio::task::LocalSet::new();
                        local.block_on(&runtime, measure(&args.engine, &registry, spec, stopped))?
                    };
                    if round == 0 {
                        measured.push(Vec::new());
                    }
                    measured[at].push(row);
                    at += 1;
                }
            }
        }
    }
    for runs in measured {
        rows.push(median_row(runs));
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec![
        "cipher",
        "provider",
        "size B",
        "stopped client elsewhere",
        "messages",
        "msg/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU µs/msg",
    ];
    if args.processes {
        header.extend(if args.engine == "corosync" {
            ["corosync CPU µs/msg", "corosync wake-ups/msg"]
        } else {
            ["daemon CPU µs/msg", "daemon wake-ups/msg"]
        });
    }
    t.set_header(header);
    for r in &rows {
        let mut row = vec![
            r.cipher.clone(),
            if r.provider.is_empty() {
                "-".into()
            } else {
                r.provider.clone()
            },
            r.size.to_string(),
            if r.stopped_client { "yes" } else { "no" }.into(),
            r.messages.to_string(),
            format!("{:.0}", r.messages_per_s),
            format!("{:.1}", r.mb_per_s),
            format!("{:.0}", r.p50_us),
            format!("{:.0}", r.p99_us),
            format!("{:.0}", r.p999_us),
            format!("{:.1}", r.cpu_us_per_message),
        ];
        if args.processes {
            // None: corosync not visible from here (another namespace, another user's).
            for figure in [r.daemon_cpu_us_per_message, r.daemon_wakeups_per_message] {
                row.push(figure.map_or("-".into(), |d| format!("{d:.1}")));
            }
        }
        t.add_row(row);
    }
    crate::out!("{t}");
    let through = if args.engine == "sim" {
        "the in-process simulator (3 simulated daemons, no sockets)"
    } else if args.engine == "corosync" {
        "this machine's corosync (CPG), every member a process of its own; raw-cpg: CPG alone, no Conclave layer"
    } else if args.processes {
        "a daemon process (Unix socket), every member a process of its own; raw-relay: a relay process in the daemon's place and members with nothing of Conclave (the machine's floor)"
    } else {
        "an embedded daemon (Unix socket)"
    };
    crate::out!(
        "1 sender, {} receivers, agreed multicast through {through}; {}; rates per receiver; latency one-way{}",
        args.members.max(2) - 1,
        if args.rate == 0 && args.window > 0 {
            format!(
                "as fast as the sender can, at most {} messages in flight",
                args.window
            )
        } else if args.rate == 0 {
            "as fast as the sender can, no window".to_string()
        } else {
            format!("paced at {} msg/s", args.rate)
        },
        if args.rate == 0 {
            " under load (queueing included)"
        } else {
            ""
        }
    );
    if args.processes && args.engine == "daemon" {
        crate::out!("{}", crate::bench_processes::orderer_priority());
    }
    crate::out!(
        "CPU µs/msg: CPU time of the daemon and the members together per message sent{}{}",
        if args.processes {
            "; wake-ups/msg: the engine's per message sent (its threads' voluntary context switches)"
        } else {
            ""
        },
        if args.rounds > 1 {
            format!(
                "; each figure the median of {} interleaved rounds",
                args.rounds
            )
        } else {
            String::new()
        }
    );
    if args.stopped_client {
        crate::out!(
            "stopped client elsewhere: in another group of the same daemon, a client that reads nothing while a second sender floods that group with 48 MiB"
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Spec;

    fn spec(size: usize, messages: usize, rate: u64, window: usize) -> Spec<'static> {
        Spec {
            cipher: "none",
            provider: "openssl",
            size,
            members: 3,
            messages,
            rate,
            window,
        }
    }

    #[test]
    fn only_a_flood_without_a_window_is_cut_to_32_mb() {
        // Everything queued at once: 1 KB messages stop at 32,768.
        assert_eq!(spec(1024, 500_000, 0, 0).count(), 32_768);
        // A window or a pace bounds what is in flight: the count is as asked.
        assert_eq!(spec(1024, 500_000, 0, 256).count(), 500_000);
        assert_eq!(spec(1024, 500_000, 2000, 0).count(), 500_000);
        // Never fewer than 100, whatever the size.
        assert_eq!(spec(1 << 30, 10, 0, 0).count(), 100);
        assert_eq!(spec(100, 10, 0, 256).count(), 100);
    }
}
