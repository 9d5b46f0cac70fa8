//! Key-agreement measurements: the cost of each membership event, per protocol,
//! provider, DH group and group size, on the in-process engine (the conformance kit's
//! view-synchronous network).
//!
//! Each member runs its own state machine with its own provider instance. Times are
//! measured per step and composed along the messages: the *critical path* is the time
//! from the membership change until the last member holds the confirmed key if every
//! member had its own processor and the network added nothing; *CPU* is the sum over
//! all members. Exponentiations are counted the same two ways (serial and total).

use std::{collections::BTreeMap, time::Duration};

use conclave_conformance::key_agreement::{self as ka, Counted, Flush, Net, Setup};
use conclave_plugin_sdk::{Options, api::key_agreement::ViewCause, host::Provider};
use serde::{Deserialize, Serialize};

/// A membership event to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// One member joins a group of n-1.
    Join,
    /// A member other than the controller leaves a group of n+1.
    Leave,
    /// Two halves of a partitioned group of n merge again.
    Merge,
    /// A group of n splits into two halves (both sides rekey).
    Partition,
    /// The controller refreshes the key of a group of n.
    Refresh,
    /// The controller leaves a group of n+1.
    ControllerLeave,
}

impl Event {
    /// Every event, in the order they are measured.
    pub const ALL: [Event; 6] = [
        Event::Join,
        Event::Leave,
        Event::Merge,
        Event::Partition,
        Event::Refresh,
        Event::ControllerLeave,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Event::Join => "join",
            Event::Leave => "leave",
            Event::Merge => "merge",
            Event::Partition => "partition",
            Event::Refresh => "refresh",
            Event::ControllerLeave => "controller-leave",
        }
    }

    /// The event called `name`.
    pub fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// One combination of modules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Combo {
    /// The key-agreement plugin.
    pub key_agreement: String,
    /// The provider.
    pub provider: String,
    /// The DH group.
    pub dh_group: String,
}

impl Combo {
    /// `gdh/openssl/ffdhe2048`.
    pub fn label(&self) -> String {
        format!("{}/{}/{}", self.key_agreement, self.provider, self.dh_group)
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// The module combinations.
    pub combos: Vec<Combo>,
    /// The group sizes (after the event).
    pub sizes: Vec<usize>,
    /// The events.
    pub events: Vec<Event>,
    /// Repetitions of each measurement.
    pub runs: usize,
    /// Verify each distinct signature and compute each distinct exponentiation once per
    /// process, and charge every repeat its calibrated cost ([`crate::shared_work`]);
    /// `false`: every member does all its work itself.
    pub share_work: bool,
}

/// One measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// The modules.
    #[serde(flatten)]
    pub combo: Combo,
    /// The event.
    pub event: Event,
    /// The group size after the event.
    pub size: usize,
    /// The run.
    pub run: usize,
    /// Critical-path time, milliseconds.
    pub time_ms: f64,
    /// Processing time summed over members, milliseconds.
    pub cpu_ms: f64,
    /// Exponentiations on the critical path (known on the in-process engine only).
    pub serial_exponentiations: Option<u64>,
    /// The critical path's own mathematics: its exponentiations, element validations,
    /// signatures and verifications at the calibrated cost of one, milliseconds (in-process engine
    /// only). `time_ms / math_ms` is what the protocol machinery adds.
    pub math_ms: Option<f64>,
    /// The operations `math_ms` prices: those of the critical path with the most
    /// mathematics (in-process engine only).
    pub path_ops: Option<PathOps>,
    /// The cost of one operation as the measuring process calibrated it (in-process
    /// engine only): [`price_at_fastest`] prices samples of several processes alike.
    pub costs: Option<Costs>,
    /// Exponentiations at all members.
    pub total_exponentiations: u64,
    /// Signatures at all members.
    pub signatures: u64,
    /// Verifications at all members.
    pub verifications: u64,
    /// Protocol messages sent (unicasts and multicasts).
    pub messages: u64,
    /// Bytes of protocol messages sent.
    pub bytes: u64,
    /// Share of the CPU time spent in DH exponentiations (estimated from their count
    /// and the calibrated cost of one).
    pub dh_share: f64,
    /// Share spent in signatures and verifications (estimated likewise).
    pub signature_share: f64,
    /// Through a real engine: milliseconds from the membership change until the last
    /// member had its new view (the engine's membership and flush).
    pub engine_ms: Option<f64>,
    /// The measuring process's resident memory after the event, MiB (every member's
    /// state; Linux only).
    pub rss_mib: Option<f64>,
}

/// The mathematics of one critical path: what [`Sample::math_ms`] prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathOps {
    /// Exponentiations.
    pub exponentiations: u64,
    /// Validations of received group elements.
    pub validations: u64,
    /// Signatures.
    pub signatures: u64,
    /// Verifications.
    pub verifications: u64,
}

/// The cost of one operation on a combination's provider, measured before its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// One exponentiation with a fresh scalar, milliseconds.
    pub exponentiation_ms: f64,
    /// One exponentiation of the generator with a fresh scalar, milliseconds.
    pub generator_exponentiation_ms: f64,
    /// One validation of a received group element, milliseconds.
    pub validation_ms: f64,
    /// One Ed25519 signature, milliseconds.
    pub signature_ms: f64,
    /// One Ed25519 verification, milliseconds.
    pub verification_ms: f64,
}

impl Costs {
    /// What `ops` cost at these prices, milliseconds.
    pub fn price(&self, ops: &PathOps) -> f64 {
        ops.exponentiations as f64 * self.exponentiation_ms
            + ops.validations as f64 * self.validation_ms
            + ops.signatures as f64 * self.signature_ms
            + ops.verifications as f64 * self.verification_ms
    }

    /// Each operation at the lower of the two prices.
    pub fn cheapest(&self, other: &Costs) -> Costs {
        Costs {
            exponentiation_ms: self.exponentiation_ms.min(other.exponentiation_ms),
            generator_exponentiation_ms: self
                .generator_exponentiation_ms
                .min(other.generator_exponentiation_ms),
            validation_ms: self.validation_ms.min(other.validation_ms),
            signature_ms: self.signature_ms.min(other.signature_ms),
            verification_ms: self.verification_ms.min(other.verification_ms),
        }
    }

    /// The shares of `cpu_ms` spent in `exponentiations`, and in `signatures` and
    /// `verifications`, estimated from the cost of one of each (each at most 1).
    pub fn shares(
        &self,
        exponentiations: u64,
        signatures: u64,
        verifications: u64,
        cpu_ms: f64,
    ) -> (f64, f64) {
        let share = |ms: f64| {
            if cpu_ms > 0.0 {
                (ms / cpu_ms).min(1.0)
            } else {
                0.0
            }
        };
        (
            share(exponentiations as f64 * self.exponentiation_ms),
            share(
                signatures as f64 * self.signature_ms + verifications as f64 * self.verification_ms,
            ),
        )
    }
}

/// Measures the costs of `combo`'s primitives (median of 15 of each).
pub fn calibrate(combo: &Combo) -> Result<Costs, String> {
    let p = crate::provider(&combo.provider).map_err(|e| e.to_string())?;
    let g = p.dh_group(&combo.dh_group).map_err(|e| e.to_string())?;
    let e = |x: conclave_plugin_sdk::PluginError| x.to_string();
    let x = g.random_scalar().map_err(e)?;
    let y = g
        .exp_generator(g.random_scalar().map_err(e)?.expose())
        .map_err(e)?;
    let sk = p.generate_signing_key("ed25519").map_err(e)?;
    let signer = p.signer("ed25519", sk.expose()).map_err(e)?;
    let pk = signer.public_key();
    let msg = [7u8; 200];
    let sig = signer.sign(&msg).map_err(e)?;
    let time = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
        let mut v = Vec::with_capacity(15);
        for _ in 0..15 {
            // CPU time, as the steps are measured (see the conformance kit's `Net`).
            let t = cpu_time::ThreadTime::now();
            f()?;
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(median(v))
    };
    Ok(Costs {
        exponentiation_ms: time(&mut || g.exp(&y, x.expose()).map(drop).map_err(e))?,
        generator_exponentiation_ms: time(&mut || {
            g.exp_generator(x.expose()).map(drop).map_err(e)
        })?,
        validation_ms: time(&mut || g.validate_element(&y).map_err(e))?,
        signature_ms: time(&mut || signer.sign(&msg).map(drop).map_err(e))?,
        verification_ms: time(&mut || p.verify("ed25519", &pk, &msg, &sig).map_err(e))?,
    })
}

fn module(name: &str) -> Result<conclave_plugin_sdk::api::PluginModuleRef, String> {
    Ok(match name {
        "gdh" => conclave_plugin_gdh::plugin_module(),
        "ckd" => conclave_plugin_ckd::plugin_module(),
        "tgdh" => conclave_plugin_tgdh::plugin_module(),
        "str" => conclave_plugin_str::plugin_module(),
        "bd" => conclave_plugin_bd::plugin_module(),
        other => return Err(format!("no key-agreement plugin named {other:?}")),
    })
}

fn rustcrypto() -> Provider {
    crate::provider("rustcrypto").unwrap_or_else(|e| unreachable!("the built-in provider: {e}"))
}

fn openssl() -> Provider {
    crate::provider("openssl").unwrap_or_else(|e| unreachable!("the built-in provider: {e}"))
}

fn shared_rustcrypto() -> Provider {
    crate::shared_work::provider(Box::new(
        conclave_provider_rustcrypto::RustCryptoProvider::new(),
    ))
}

fn shared_openssl() -> Provider {
    crate::shared_work::provider(Box::new(conclave_provider_openssl::OpensslProvider::new()))
}

fn setup(combo: &Combo, share_work: bool) -> Result<Setup, String> {
    Ok(Setup {
        module: module(&combo.key_agreement)?,
        algorithm: combo.key_agreement.clone(),
        provider: match (combo.provider.as_str(), share_work) {
            ("rustcrypto", false) => rustcrypto,
            ("openssl", false) => openssl,
            ("rustcrypto", true) => shared_rustcrypto,
            ("openssl", true) => shared_openssl,
            (other, _) => return Err(format!("no provider named {other:?}")),
        },
        dh_group: combo.dh_group.clone(),
        options: Options::default(),
    })
}

/// The member that starts a refresh and whose departure is a controller leave.
pub fn controller(combo: &Combo, members: &[String]) -> String {
    let pick = if combo.key_agreement == "gdh" {
        members.last()
    } else {
        members.first()
    };
    pick.cloned().unwrap_or_default()
}

struct Runner<'a> {
    net: Net,
    combo: &'a Combo,
    costs: Costs,
    next: usize,
}

impl Runner<'_> {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("m{:04}", self.next)
    }

    fn members(&self) -> Vec<String> {
        self.net.components[0].members.clone()
    }

    /// Runs `change`, lets the network settle, and returns what it cost.
    fn measure(
        &mut self,
        event: Event,
        size: usize,
        run: usize,
        change: impl FnOnce(&mut Runner<'_>) -> Result<(), String>,
    ) -> Result<Sample, String> {
        self.net.reset_clocks();
        // What was verified or computed while the group grew is done again in this event.
        crate::shared_work::clear();
        let before = self.net.stats();
        change(self)?;
        ka::settle(&mut self.net)?;
        let counted = self.net.counted_since(&before);
        let total = counted.values().fold(Counted::default(), |a, c| Counted {
            exponentiations: a.exponentiations + c.exponentiations,
            inversions: a.inversions + c.inversions,
            signatures: a.signatures + c.signatures,
            verifications: a.verifications + c.verifications,
            unicasts: a.unicasts + c.unicasts,
            multicasts: a.multicasts + c.multicasts,
            bytes_sent: a.bytes_sent + c.bytes_sent,
        });
        let live: Vec<usize> = (0..self.net.components.len())
            .filter(|&c| !self.net.components[c].members.is_empty())
            .collect();
        let paths: Vec<_> = live
            .iter()
            .filter_map(|&c| self.net.critical_path(c))
            .collect();
        let time = paths.iter().map(|p| p.time).max().unwrap_or_default();
        let serial = paths.iter().map(|p| p.exponentiations).max().unwrap_or(0);
        let path_ops = paths
            .iter()
            .map(|p| PathOps {
                exponentiations: p.exponentiations,
                validations: p.validations,
                signatures: p.signatures,
                verifications: p.verifications,
            })
            .max_by(|a, b| self.costs.price(a).total_cmp(&self.costs.price(b)))
            .unwrap_or_default();
        let cpu: Duration = self.net.members.values().map(|m| m.busy).sum();
        let cpu_ms = cpu.as_secs_f64() * 1e3;
        let (dh_share, signature_share) = self.costs.shares(
            total.exponentiations,
            total.signatures,
            total.verifications,
            cpu_ms,
        );
        Ok(Sample {
            combo: self.combo.clone(),
            event,
            size,
            run,
            time_ms: time.as_secs_f64() * 1e3,
            cpu_ms: cpu.as_secs_f64() * 1e3,
            serial_exponentiations: Some(serial),
            math_ms: Some(self.costs.price(&path_ops)),
            path_ops: Some(path_ops),
            costs: Some(self.costs),
            total_exponentiations: total.exponentiations,
            signatures: total.signatures,
            verifications: total.verifications,
            messages: total.unicasts + total.multicasts,
            bytes: total.bytes_sent,
            dh_share,
            signature_share,
            engine_ms: None,
            rss_mib: resident_mib(),
        })
    }

    /// Brings the group to `size` members with one agreement: every new member joins in
    /// the same view (nothing if it is that large already).
    fn grow_to(&mut self, size: usize) -> Result<(), String> {
        let have = self.members().len();
        if have >= size {
            return Ok(());
        }
        let names: Vec<String> = (have..size).map(|_| self.fresh()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.net
            .join_many(0, &refs, Flush::All)
            .map_err(|e| e.to_string())?;
        ka::settle(&mut self.net)
    }

    fn restore(&mut self, size: usize) -> Result<(), String> {
        while self.members().len() < size {
            let name = self.fresh();
            self.net
                .join(0, &name, Flush::All)
                .map_err(|e| e.to_string())?;
            ka::settle(&mut self.net)?;
        }
        Ok(())
    }
}

/// Measures `config`, calling `progress` after each measurement with a label.
pub fn run(config: &Config, mut progress: impl FnMut(&str)) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for combo in &config.combos {
        let costs = calibrate(combo)?;
        let ms = |v: f64| Duration::from_secs_f64(v / 1e3);
        crate::shared_work::set_costs(crate::shared_work::Costs {
            verification: ms(costs.verification_ms),
            exponentiation: ms(costs.exponentiation_ms),
            generator_exponentiation: ms(costs.generator_exponentiation_ms),
        });
        for run in 0..config.runs {
            let mut r = Runner {
                net: Net::new(setup(combo, config.share_work)?),
                combo,
                costs,
                next: 0,
            };
            let first = r.fresh();
            r.net
                .join(0, &first, Flush::All)
                .map_err(|e| e.to_string())?;
            ka::settle(&mut r.net)?;
            let mut sizes: Vec<usize> = config.sizes.iter().copied().filter(|&n| n >= 2).collect();
            sizes.sort_unstable();
            sizes.dedup();
            for n in sizes {
                // Up to n - 1 in one agreement (all the new members in one view), not
                // one per member: a group of 1,000 is then a few agreements away.
                r.grow_to(n - 1)?;
                let name = r.fresh();
                if config.events.contains(&Event::Join) {
                    samples.push(r.measure(Event::Join, n, run, |r| {
                        r.net.join(0, &name, Flush::All).map_err(|e| e.to_string())
                    })?);
                    progress(&format!("{} join n={n}", combo.label()));
                } else {
                    r.net
                        .join(0, &name, Flush::All)
                        .map_err(|e| e.to_string())?;
                    ka::settle(&mut r.net)?;
                }
                let mut split_and_merged = false;
                for &event in &config.events {
                    let sample = match event {
                        Event::Join => continue,
                        Event::Refresh => {
                            let who = controller(combo, &r.members());
                            r.measure(event, n, run, |r| {
                                r.net.refresh(&who).map_err(|e| e.to_string())
                            })?
                        }
                        Event::Leave | Event::ControllerLeave => {
                            // From n+1 down to n.
                            r.restore(n + 1)?;
                            let members = r.members();
                            let ctl = controller(combo, &members);
                            let gone = if event == Event::Leave {
                                members
                                    .iter()
                                    .find(|m| **m != ctl && **m != members[0])
                                    .cloned()
                                    .unwrap_or_else(|| members[members.len() / 2].clone())
                            } else {
                                ctl
                            };
                            let cause = if event == Event::Leave {
                                ViewCause::Leave
                            } else {
                                ViewCause::Disconnect
                            };
                            r.measure(event, n, run, |r| {
                                r.net.remove(&[&gone], cause, Flush::All);
                                Ok(())
                            })?
                        }
                        Event::Partition | Event::Merge => {
                            // Both in one go, whichever comes first: the group splits
                            // in two halves (both rekey) and the halves merge again,
                            // each measured if asked for.
                            if n < 2 || split_and_merged {
                                continue;
                            }
                            split_and_merged = true;
                            let members = r.members();
                            let away: Vec<String> = members.iter().skip(n / 2).cloned().collect();
                            if config.events.contains(&Event::Partition) {
                                samples.push(r.measure(Event::Partition, n, run, |r| {
                                    r.net.partition(0, &away, Flush::All);
                                    Ok(())
                                })?);
                                progress(&format!("{} partition n={n}", combo.label()));
                            } else {
                                r.net.partition(0, &away, Flush::All);
                                ka::settle(&mut r.net)?;
                            }
                            let b = r.net.components.len() - 1;
                            if config.events.contains(&Event::Merge) {
                                samples.push(r.measure(Event::Merge, n, run, |r| {
                                    r.net.merge(0, b, Flush::All);
                                    Ok(())
                                })?);
                                progress(&format!("{} merge n={n}", combo.label()));
                            } else {
                                r.net.merge(0, b, Flush::All);
                                ka::settle(&mut r.net)?;
                            }
                            continue;
                        }
                    };
                    samples.push(sample);
                    progress(&format!("{} {} n={n}", combo.label(), event.name()));
                }
            }
        }
    }
    Ok(samples)
}

/// The runs of one combination, event and size: their typical figure and spread.
///
/// On the in-process network (`engine_ms` none) a run's time is a critical path of
/// per-step thread CPU times, a cost: what disturbs it (a migration, a cold cache, a
/// page fault) only adds, so the typical figure is the fastest run, which repeats
/// between invocations far better than the median. Through a real engine the time
/// is wall time on shared cores, and the typical figure is the median.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The modules.
    #[serde(flatten)]
    pub combo: Combo,
    /// The event.
    pub event: Event,
    /// The group size after the event.
    pub size: usize,
    /// Runs.
    pub runs: usize,
    /// Critical-path time, milliseconds: the fastest run on the in-process network,
    /// the median run through a real engine (see [`Row`]).
    pub time_ms: f64,
    /// Fastest run.
    pub time_ms_min: f64,
    /// Slowest run.
    pub time_ms_max: f64,
    /// CPU time over all members, milliseconds: the least of the runs on the
    /// in-process network (a cost, like the time), the median through a real engine.
    pub cpu_ms: f64,
    /// Exponentiations on the critical path (the same in every run; known on the
    /// in-process engine only).
    pub serial_exponentiations: Option<u64>,
    /// Median of the critical path's mathematics at calibrated cost, milliseconds.
    pub math_ms: Option<f64>,
    /// Critical-path time / its mathematics, of the run taken as [`Row::time_ms`]'s
    /// (fastest or median ratio; 1.0: the protocol costs nothing beyond its
    /// exponentiations, signatures and verifications).
    pub over_math: Option<f64>,
    /// Exponentiations at all members.
    pub total_exponentiations: u64,
    /// Signatures.
    pub signatures: u64,
    /// Verifications.
    pub verifications: u64,
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
    /// Median share of CPU in DH exponentiations.
    pub dh_share: f64,
    /// Median share of CPU in signatures and verifications.
    pub signature_share: f64,
    /// Through a real engine: median milliseconds until the last member had its view.
    pub engine_ms: Option<f64>,
    /// The resident memory of the measuring process after the event, MiB, the smallest
    /// over the runs (every member's state in one process; Linux only). Sizes come in
    /// increasing order and the allocator keeps what it frees (`bench keys` turns
    /// mimalloc's purging off), so a run's figure is the most memory its process needed
    /// up to that size; where runs share a process (through a real engine), later
    /// runs' figures are the peak so far, and the first run's is the smallest.
    pub rss_mib: Option<f64>,
}

/// This process's resident memory, MiB (`VmRSS` of `/proc/self/status`; `None` where
/// there is no such file).
pub fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The median of `v` (0 if empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Prices every in-process sample's mathematics, and its shares of CPU in
/// exponentiations and signatures, at the lowest cost of each operation that any of
/// the samples' processes calibrated for its combination.
///
/// A process runs fast or slow as a whole (the same command's figures came out 1.35 to
/// 1.9 times apart between invocations on this project's VMs, while within one
/// process the fastest of several runs repeated well), and its calibration at start
/// does not always share its speed: `bench keys` therefore measures each run in a
/// process of its own, takes the fastest run, and prices them all at the cheapest
/// calibration, so that `x math` compares a fastest path with fastest operations.
pub fn price_at_fastest(samples: &mut [Sample]) {
    let mut cheapest: BTreeMap<Combo, Costs> = BTreeMap::new();
    for s in samples.iter() {
        if let Some(c) = s.costs {
            cheapest
                .entry(s.combo.clone())
                .and_modify(|best| *best = best.cheapest(&c))
                .or_insert(c);
        }
    }
    for s in samples.iter_mut() {
        let (Some(ops), Some(costs)) = (s.path_ops, cheapest.get(&s.combo)) else {
            continue;
        };
        s.math_ms = Some(costs.price(&ops));
        (s.dh_share, s.signature_share) = costs.shares(
            s.total_exponentiations,
            s.signatures,
            s.verifications,
            s.cpu_ms,
        );
        s.costs = Some(*costs);
    }
}

/// One row per combination, event and size.
pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    let mut groups: BTreeMap<(Combo, Event, usize), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.combo.clone(), s.event, s.size))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .map(|((combo, event, size), v)| {
            let times: Vec<f64> = v.iter().map(|s| s.time_ms).collect();
            let fastest = v.iter().all(|s| s.engine_ms.is_none());
            let typical = |x: Vec<f64>| {
                if fastest {
                    x.into_iter().fold(f64::INFINITY, f64::min)
                } else {
                    median(x)
                }
            };
            Row {
                combo,
                event,
                size,
                runs: v.len(),
                time_ms: typical(times.clone()),
                time_ms_min: times.iter().copied().fold(f64::INFINITY, f64::min),
                time_ms_max: times.iter().copied().fold(0.0, f64::max),
                cpu_ms: typical(v.iter().map(|s| s.cpu_ms).collect()),
                serial_exponentiations: v[0].serial_exponentiations,
                math_ms: {
                    let m: Vec<f64> = v.iter().filter_map(|s| s.math_ms).collect();
                    (!m.is_empty()).then(|| median(m))
                },
                over_math: {
                    let r: Vec<f64> = v
                        .iter()
                        .filter_map(|s| s.math_ms.filter(|m| *m > 0.0).map(|m| s.time_ms / m))
                        .collect();
                    (!r.is_empty()).then(|| typical(r))
                },
                total_exponentiations: v[0].total_exponentiations,
                signatures: v[0].signatures,
                verifications: v[0].verifications,
                messages: v[0].messages,
                bytes: v[0].bytes,
                dh_share: median(v.iter().map(|s| s.dh_share).collect()),
                signature_share: median(v.iter().map(|s| s.signature_share).collect()),
                engine_ms: {
                    let e: Vec<f64> = v.iter().filter_map(|s| s.engine_ms).collect();
                    (!e.is_empty()).then(|| median(e))
                },
                rss_mib: v.iter().filter_map(|s| s.rss_mib).reduce(f64::min),
            }
        })
        .collect()
}

/// The serial exponentiations the papers give for an event at group size `n`, where
/// they give one: the ICDCS 2000 paper's Table 4 for `gdh` and `ckd`; TISSEC 2004 (Kim,
/// Perrig, Tsudik) for `tgdh` (`3h/2` for a join or a leave, with the tree's height
/// `h = ceil(log2 n)` of a balanced tree), `str` (7 for a join, `3n/2 + 2` for a
/// leave) and `bd` (3 for every event; its `n - 1` small-exponent exponentiations are
/// multiplications here).
pub fn paper_serial(key_agreement: &str, event: Event, n: usize) -> Option<u64> {
    let n = n as u64;
    let h = u64::from(n.max(1).next_power_of_two().trailing_zeros());
    Some(match (key_agreement, event) {
        ("gdh", Event::Join) => 3 * n,
        ("gdh", Event::Leave) | ("gdh", Event::ControllerLeave) => n,
        ("ckd", Event::Join) => n + 6,
        ("ckd", Event::Leave) => n.saturating_sub(1),
        ("ckd", Event::ControllerLeave) => (3 * n).saturating_sub(5),
        ("tgdh", Event::Join | Event::Leave | Event::ControllerLeave) => (3 * h).div_ceil(2),
        ("str", Event::Join) => 7,
        ("str", Event::Leave | Event::ControllerLeave) => 3 * n / 2 + 2,
        ("bd", _) => 3,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(run: usize, time_ms: f64, engine_ms: Option<f64>) -> Sample {
        Sample {
            combo: Combo {
                key_agreement: "gdh".into(),
                provider: "rustcrypto".into(),
                dh_group: "ristretto255".into(),
            },
            event: Event::Join,
            size: 4,
            run,
            time_ms,
            cpu_ms: time_ms * 2.0,
            serial_exponentiations: Some(8),
            math_ms: Some(1.0),
            path_ops: None,
            costs: None,
            total_exponentiations: 20,
            signatures: 4,
            verifications: 12,
            messages: 8,
            bytes: 1000,
            dh_share: 0.5,
            signature_share: 0.3,
            engine_ms,
            rss_mib: Some(10.0 + run as f64),
        }
    }

    #[test]
    fn a_cost_is_its_fastest_run_and_a_wall_time_its_median() {
        let cost = summarize(&[
            sample(0, 1.3, None),
            sample(1, 1.0, None),
            sample(2, 4.0, None),
        ]);
        assert_eq!(cost.len(), 1);
        assert_eq!(cost[0].time_ms, 1.0);
        assert_eq!(cost[0].over_math, Some(1.0));
        assert_eq!((cost[0].time_ms_min, cost[0].time_ms_max), (1.0, 4.0));
        // CPU over all members is a cost too (the least); memory is the first
        // (smallest) run's.
        assert_eq!(cost[0].cpu_ms, 2.0);
        assert_eq!(cost[0].rss_mib, Some(10.0));
        let wall = summarize(&[
            sample(0, 1.3, Some(0.5)),
            sample(1, 1.0, Some(0.4)),
            sample(2, 4.0, Some(0.6)),
        ]);
        assert_eq!(wall[0].time_ms, 1.3);
        assert_eq!(wall[0].over_math, Some(1.3));
        assert_eq!(wall[0].engine_ms, Some(0.5));
        assert_eq!(wall[0].cpu_ms, 2.6);
    }

    /// Samples of two processes that calibrated differently are priced alike, at each
    /// operation's cheaper cost; a sample through a real engine keeps its figures.
    #[test]
    fn samples_of_several_processes_are_priced_at_the_cheapest_calibration() {
        let ops = PathOps {
            exponentiations: 10,
            validations: 2,
            signatures: 1,
            verifications: 3,
        };
        let costs = |exp: f64, verify: f64| Costs {
            exponentiation_ms: exp,
            generator_exponentiation_ms: exp,
            validation_ms: 0.01,
            signature_ms: 0.02,
            verification_ms: verify,
        };
        let priced = |run, c: Costs| Sample {
            path_ops: Some(ops),
            math_ms: Some(c.price(&ops)),
            costs: Some(c),
            ..sample(run, 4.0, None)
        };
        // The first process was slow at exponentiations, the second at verifications.
        let mut samples = vec![
            priced(0, costs(0.2, 0.05)),
            priced(1, costs(0.1, 0.08)),
            sample(2, 1.0, Some(0.5)),
        ];
        price_at_fastest(&mut samples);
        let math = 10.0 * 0.1 + 2.0 * 0.01 + 0.02 + 3.0 * 0.05;
        for s in &samples[..2] {
            assert!((s.math_ms.unwrap() - math).abs() < 1e-12, "{s:?}");
            assert_eq!(s.costs, Some(costs(0.1, 0.05)));
            // 20 exponentiations at 0.1 ms of 8 ms of CPU; 4 x 0.02 + 12 x 0.05 ms.
            assert!((s.dh_share - 0.25).abs() < 1e-12, "{s:?}");
            assert!((s.signature_share - 0.085).abs() < 1e-12, "{s:?}");
        }
        assert_eq!(samples[2].math_ms, Some(1.0));
        assert_eq!(samples[2].dh_share, 0.5);
        assert_eq!(samples[2].costs, None);
    }

    #[test]
    fn resident_memory_grows_with_what_the_process_holds() {
        let before = resident_mib().expect("Linux has /proc/self/status");
        let held: Vec<u8> = vec![1; 64 << 20];
        let after = resident_mib().expect("Linux has /proc/self/status");
        assert!(after - before > 48.0, "{before} MiB, then {after} MiB");
        drop(std::hint::black_box(held));
    }
}
