//! `conclave bench keys --engine daemon`: every membership event timed through a real
//! daemon, with every member a full [`Session`] (policy, plugins, signatures, the
//! engine's flush), all in this process.
//!
//! The time of an event runs from the request (join, leave, refresh; a crash for the
//! controller leave) until the last member reports the new key; the engine's share is
//! the part until the last member has its new view (membership and flush). CPU time is
//! the whole process's (members and daemon). Exponentiations and the other counts are
//! the members' own key-agreement counters. Partitions and merges need several daemons:
//! they are measured on the simulator.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use conclave::{
    AgreementCounts, GroupSettings, SessionEvent,
    plugins::Registry,
    sdk::ka_kit::MapTrustStore,
    session::{Command, SessionHandle},
};
use conclave_benches::keys::{self, Combo, Config, Costs, Event, Sample};
use conclave_gcs::Address;
use cpu_time::ProcessTime;
use tokio::sync::mpsc;

const GROUP: &str = "bench";

/// How long any member may take to reach a key before the run fails.
const PATIENCE: Duration = Duration::from_secs(120);

struct Member {
    handle: SessionHandle,
    events: mpsc::UnboundedReceiver<(Instant, SessionEvent)>,
    task: tokio::task::JoinHandle<()>,
    /// The counters of this member's last key.
    counts: AgreementCounts,
}

/// What one event cost, as seen by the members.
struct Settled {
    key_at: Instant,
    view_at: Option<Instant>,
    counts: AgreementCounts,
}

struct Runner<'a> {
    registry: Arc<Registry>,
    trust: MapTrustStore,
    settings: GroupSettings,
    address: Address,
    combo: &'a Combo,
    costs: Costs,
    /// In join order.
    members: BTreeMap<String, Member>,
    order: Vec<String>,
    next: usize,
}

impl Runner<'_> {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("m{:03}", self.next)
    }

    /// Connects `name` (not yet joined).
    async fn connect(&mut self, name: &str) -> Result<(), String> {
        let session = crate::embedded::session(
            &self.address,
            &self.registry,
            &self.settings,
            &self.trust,
            name,
        )
        .await?;
        let (tx, events) = mpsc::unbounded_channel();
        let (handle, task) = session.spawn(tx, |at, e| (at, e));
        self.members.insert(
            name.to_owned(),
            Member {
                handle,
                events,
                task,
                counts: AgreementCounts::default(),
            },
        );
        Ok(())
    }

    /// Waits until every current member holds a key for exactly the current members.
    async fn settle(&mut self) -> Result<Settled, String> {
        let mut expected = self.order.clone();
        expected.sort();
        let mut out = Settled {
            key_at: Instant::now(),
            view_at: None,
            counts: AgreementCounts::default(),
        };
        let mut first = true;
        for name in &self.order {
            let m = self.members.get_mut(name).ok_or("a member went missing")?;
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let (at, e) = tokio::time::timeout_at(deadline, m.events.recv())
                    .await
                    .map_err(|_| format!("{name}: no key within {PATIENCE:?}"))?
                    .ok_or_else(|| format!("{name}: the session ended"))?;
                match e {
                    SessionEvent::Membership { members, .. } if same(&members, &expected) => {
                        out.view_at = Some(out.view_at.map_or(at, |v| v.max(at)));
                    }
                    SessionEvent::KeyEstablished(k) if same(&k.members, &expected) => {
                        out.key_at = if first { at } else { out.key_at.max(at) };
                        first = false;
                        let d = k.counts.since(&m.counts);
                        m.counts = k.counts;
                        out.counts += d;
                        break;
                    }
                    SessionEvent::SecurityError { error, .. } => {
                        return Err(format!("{name}: {} {}", error.code, error.message));
                    }
                    SessionEvent::CommandFailed { command, message } => {
                        return Err(format!("{name}: {command}: {message}"));
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    async fn join(&mut self, name: String) -> Result<(), String> {
        self.connect(&name).await?;
        self.order.push(name.clone());
        self.command(&name, Command::Join(GROUP.into()))
    }

    fn command(&self, name: &str, command: Command) -> Result<(), String> {
        let m = self.members.get(name).ok_or("no such member")?;
        if m.handle.send(command) {
            Ok(())
        } else {
            Err(format!("{name}: the session ended"))
        }
    }

    /// Removes `name`: a leave, or a crash (its connection dropped).
    fn remove(&mut self, name: &str, crash: bool) -> Result<(), String> {
        if !crash {
            self.command(name, Command::Leave(GROUP.into()))?;
        }
        self.order.retain(|m| m != name);
        if let Some(m) = self.members.remove(name) {
            if crash {
                m.task.abort();
            } else {
                // The leave is queued before the session is dropped: let it finish.
                tokio::spawn(async move {
                    let mut m = m;
                    while let Some((_, e)) = m.events.recv().await {
                        if matches!(e, SessionEvent::Left { .. }) {
                            break;
                        }
                    }
                    m.task.abort();
                });
            }
        }
        Ok(())
    }

    /// Runs `change`, waits for the new key everywhere, and returns what it cost.
    async fn measure(
        &mut self,
        event: Event,
        size: usize,
        run: usize,
        change: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<Sample, String> {
        let cpu = ProcessTime::now();
        let start = Instant::now();
        change(self)?;
        let settled = self.settle().await?;
        let cpu_ms = cpu.elapsed().as_secs_f64() * 1e3;
        let time = settled.key_at.saturating_duration_since(start);
        let engine = settled.view_at.map(|v| v.saturating_duration_since(start));
        let c = &settled.counts;
        let (dh_share, signature_share) =
            self.costs
                .shares(c.exponentiations, c.signatures, c.verifications, cpu_ms);
        Ok(Sample {
            combo: self.combo.clone(),
            event,
            size,
            run,
            time_ms: time.as_secs_f64() * 1e3,
            cpu_ms,
            serial_exponentiations: None,
            math_ms: None,
            path_ops: None,
            costs: None,
            total_exponentiations: c.exponentiations,
            signatures: c.signatures,
            verifications: c.verifications,
            messages: c.messages,
            bytes: c.bytes,
            dh_share,
            signature_share,
            engine_ms: engine.map(|e| e.as_secs_f64() * 1e3),
            rss_mib: conclave_benches::keys::resident_mib(),
        })
    }

    async fn restore(&mut self, size: usize) -> Result<(), String> {
        while self.order.len() < size {
            let name = self.fresh();
            self.join(name).await?;
            self.settle().await?;
        }
        Ok(())
    }

    async fn shutdown(self) {
        for (_, m) in self.members {
            m.task.abort();
        }
    }
}

fn same(members: &[String], sorted: &[String]) -> bool {
    let mut m = members.to_vec();
    m.sort();
    m == sorted
}

fn settings(combo: &Combo) -> GroupSettings {
    GroupSettings {
        key_agreement: combo.key_agreement.clone(),
        provider: combo.provider.clone(),
        dh_group: combo.dh_group.clone(),
        ..GroupSettings::default()
    }
}

async fn run_combo(
    registry: &Arc<Registry>,
    combo: &Combo,
    costs: Costs,
    config: &Config,
    run: usize,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<Sample>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (daemon, address) = crate::embedded::daemon(dir.path(), None).await?;
    let mut r = Runner {
        registry: registry.clone(),
        trust: MapTrustStore::new(),
        settings: settings(combo),
        address,
        combo,
        costs,
        members: BTreeMap::new(),
        order: Vec::new(),
        next: 0,
    };
    let result = measure_all(&mut r, config, run, progress).await;
    r.shutdown().await;
    daemon.shutdown().await;
    result
}

async fn measure_all(
    r: &mut Runner<'_>,
    config: &Config,
    run: usize,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<Sample>, String> {
    let max = config.sizes.iter().copied().max().unwrap_or(0);
    let label = r.combo.label();
    let mut samples = Vec::new();
    r.restore(1).await?;
    for n in 2..=max {
        let measured = config.sizes.contains(&n);
        if measured && config.events.contains(&Event::Join) {
            // Connected beforehand: the event is the join request.
            let name = r.fresh();
            r.connect(&name).await?;
            samples.push(
                r.measure(Event::Join, n, run, |r| {
                    r.order.push(name.clone());
                    r.command(&name, Command::Join(GROUP.into()))
                })
                .await?,
            );
            progress(&format!("{label} join n={n}"));
        } else {
            r.restore(n).await?;
        }
        if !measured {
            continue;
        }
        for &event in &config.events {
            let sample = match event {
                Event::Join | Event::Partition | Event::Merge => continue,
                Event::Refresh => {
                    let who = keys::controller(r.combo, &r.order);
                    r.measure(event, n, run, |r| {
                        r.command(&who, Command::Refresh(GROUP.into()))
                    })
                    .await?
                }
                Event::Leave | Event::ControllerLeave => {
                    // From n+1 down to n.
                    r.restore(n + 1).await?;
                    let ctl = keys::controller(r.combo, &r.order);
                    let gone = if event == Event::Leave {
                        r.order
                            .iter()
                            .find(|m| **m != ctl && **m != r.order[0])
                            .cloned()
                            .unwrap_or_else(|| r.order[r.order.len() / 2].clone())
                    } else {
                        ctl
                    };
                    // The controller crashes (its connection drops), as in the paper's
                    // controller leave; a member leaves politely.
                    let crash = event == Event::ControllerLeave;
                    r.measure(event, n, run, |r| r.remove(&gone, crash)).await?
                }
            };
            samples.push(sample);
            progress(&format!("{label} {} n={n}", event.name()));
        }
    }
    Ok(samples)
}

/// Measures `config` through an embedded daemon, calling `progress` after each
/// measurement (partitions and merges are not measured: see the module's text).
pub fn run(config: &Config, mut progress: impl FnMut(&str)) -> Result<Vec<Sample>, String> {
    let registry = Arc::new(Registry::with_builtins().map_err(|e| e.to_string())?);
    let runtime = crate::embedded::runtime().map_err(|e| e.to_string())?;
    let mut samples = Vec::new();
    for combo in &config.combos {
        let costs = keys::calibrate(combo)?;
        for run in 0..config.runs {
            samples.extend(runtime.block_on(run_combo(
                &registry,
                combo,
                costs,
                config,
                run,
                &mut progress,
            ))?);
        }
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(samples)
}
