//! `conclave bench data --processes`: the daemon and every member as processes of their
//! own, as users run them (`conclave daemon`, and one `conclave bench data-member` per
//! member: a Session that sends or receives and reports what it measured).
//!
//! Timestamps cross processes as CLOCK_MONOTONIC nanoseconds (one clock per machine).
//! CPU: each member reports its own process's CPU time from `go` to its last message;
//! the daemon's is read from `/proc/PID/stat` at the same two points.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio},
    sync::Arc,
    time::Duration,
};

use clap::Args;
use conclave::{
    FixedPolicy, Identity, Session, SessionEvent, plugins::Registry, sdk::ka_kit::MapTrustStore,
    session::Command,
};
use conclave_corosync::CpgConnection;
use conclave_gcs::{Address, Service};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    bench_data::{DataRow, Spec, group_settings},
    bench_relay::RAW_RELAY,
    bench_window::{AsyncReports, in_flight},
};

/// Arguments of the hidden `conclave bench data-member` (one member of `--processes`).
#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The daemon's socket (without it: this machine's corosync, the Corosync engine).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The directory of every member's identity file (`NAME.key`).
    #[arg(long)]
    dir: PathBuf,
    /// This member's name.
    #[arg(long)]
    name: String,
    /// The cipher plugin (`none`: a plain group).
    #[arg(long)]
    cipher: String,
    /// The provider.
    #[arg(long)]
    provider: String,
    #[command(flatten)]
    traffic: Traffic,
}

/// What every member process of a measurement is told about the traffic (the same for
/// `data-member` and `cpg-member`, and for every member of one measurement).
#[derive(Debug, Args)]
pub(crate) struct Traffic {
    /// Members in the group.
    #[arg(long)]
    pub members: usize,
    /// Messages.
    #[arg(long)]
    pub count: usize,
    /// Payload bytes (at least 8).
    #[arg(long)]
    pub size: usize,
    /// Messages per second (0: a flood).
    #[arg(long)]
    pub rate: u64,
    /// In a flood, messages in flight: sent, not yet delivered to every member.
    #[arg(long)]
    pub window: usize,
    /// Whether this member sends (else it receives).
    #[arg(long)]
    pub sender: bool,
    /// A flood with a window: the FIFO of the receivers' counts (`bench_window`); the
    /// sender makes it, the receivers report to it.
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// This member's number: 0 for the sender, 1 and up for the receivers.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
}

impl Traffic {
    /// The sender's end of the window's reports, made (a flood with a window only).
    pub(crate) fn reports(&self) -> Result<Option<crate::bench_window::Reports>, String> {
        match &self.reports {
            Some(path) if self.sender => {
                crate::bench_window::Reports::create(path, self.members.saturating_sub(1)).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A receiver's end of the window's reports (a flood with a window only).
    pub(crate) fn progress(&self) -> Result<Option<crate::bench_window::Progress>, String> {
        match &self.reports {
            Some(path) if !self.sender => {
                crate::bench_window::Progress::open(path, self.index, self.window, self.count)
                    .map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// What a member process reports at the end, as one JSON line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    /// One-way latencies, microseconds (receivers).
    pub latencies_us: Vec<f64>,
    /// When the first message was sent (CLOCK_MONOTONIC, ns), from its payload.
    pub first_sent_ns: u64,
    /// When the last message arrived (receivers) or came back (the sender).
    pub last_ns: u64,
    /// This process's CPU time from `go` to the end, seconds.
    pub cpu_s: f64,
}

pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Runs one member: joins, says `ready`, waits for `go` on standard input, sends or
/// receives, prints its [`Report`], and leaves at the end of standard input.
pub fn member(args: MemberArgs) -> Result<(), String> {
    conclave_builtins::link();
    // One thread: the session and this loop hand messages over without waking another
    // thread (a member is one process per core at most here).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // A LocalSet: the Corosync engine's connection is not `Send`.
    tokio::task::LocalSet::new().block_on(&runtime, run_member(args))
}

async fn run_member(args: MemberArgs) -> Result<(), String> {
    let traffic = &args.traffic;
    let registry = Arc::new(Registry::with_builtins().map_err(|e| e.to_string())?);
    let settings = group_settings(&registry, &args.cipher, &args.provider)?;
    let provider = registry
        .new_provider(&settings.provider, Default::default())
        .map_err(|e| e.to_string())?;
    // Every member's identity file is in the directory: trust them all.
    let trust = MapTrustStore::new();
    let mut me = None;
    for entry in std::fs::read_dir(&args.dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "key") {
            let id = Identity::read_file(&provider, &path).map_err(|e| e.to_string())?;
            trust.insert(id.name(), id.signature(), id.public_key());
            if id.name() == args.name {
                me = Some(id);
            }
        }
    }
    let identity = me.ok_or_else(|| format!("no identity file for {}", args.name))?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let policy = Arc::new(FixedPolicy(settings));
    let (handle, _task) = match &args.socket {
        Some(socket) => {
            let address: Address = format!("unix:{}", socket.display())
                .parse()
                .map_err(|e| format!("{e:?}"))?;
            Session::connect(&address, identity, registry.clone(), policy, trust)
                .await
                .map_err(|e| e.to_string())?
                .spawn_local(tx, |_, e| e)
        }
        None => {
            let name = conclave_gcs::MemberName::new(&args.name).map_err(|e| e.to_string())?;
            let connection = CpgConnection::connect(name).map_err(|e| e.to_string())?;
            Session::over(connection, identity, registry.clone(), policy, trust)
                .map_err(|e| e.to_string())?
                .spawn_local(tx, |_, e| e)
        }
    };
    handle.send(Command::Join("bench".into()));
    let plain = args.cipher == "none";
    // A member that cannot get into the group (or a message that never comes) ends the
    // process with an error, and the parent with it, instead of waiting forever.
    let patience = Duration::from_secs(60);
    loop {
        let e = tokio::time::timeout(patience, events.recv())
            .await
            .map_err(|_| {
                format!(
                    "{}: no key with {} members within 60 s",
                    args.name, traffic.members
                )
            })?
            .ok_or("the session ended")?;
        let ready = match &e {
            SessionEvent::Membership { members, .. } => plain && members.len() == traffic.members,
            SessionEvent::KeyEstablished(k) => k.members.len() == traffic.members,
            _ => false,
        };
        if ready {
            break;
        }
    }
    // The sender's end of the window is made before it says ready, and the
    // receivers report to it only after `go`, when every member is ready.
    let mut reports = traffic
        .reports()?
        .map(crate::bench_window::Reports::into_async)
        .transpose()?;
    println!("ready");
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    stdin
        .read_line(&mut line)
        .await
        .map_err(|e| e.to_string())?;
    let mut progress = traffic.progress()?;
    let cpu = cpu_time::ProcessTime::now();
    let size = traffic.size.max(8);
    let mut report = Report {
        latencies_us: Vec::with_capacity(if traffic.sender { 0 } else { traffic.count }),
        first_sent_ns: 0,
        last_ns: 0,
        cpu_s: 0.0,
    };
    let mut got = 0;
    let mut sent = 0;
    let period = (traffic.rate > 0).then(|| Duration::from_secs_f64(1.0 / traffic.rate as f64));
    let mut next = tokio::time::Instant::now();
    while got < traffic.count {
        // The sender sends while its window (or its pace) allows, then reads.
        if traffic.sender && sent < traffic.count {
            let may = match period {
                Some(_) => tokio::time::Instant::now() >= next,
                None if traffic.window == 0 => true,
                None => {
                    let full = |slowest| in_flight(sent, got, slowest) >= traffic.window;
                    if let Some(r) = &mut reports
                        && full(Some(r.slowest()))
                    {
                        r.drain()?;
                        if full(Some(r.slowest())) && got == sent {
                            // Every copy of its own is back: only a receiver's report
                            // can open the window.
                            r.ready(patience).await?;
                            continue;
                        }
                    }
                    !full(reports.as_ref().map(AsyncReports::slowest))
                }
            };
            if may {
                let mut data = vec![0u8; size];
                data[..8].copy_from_slice(&monotonic_ns().to_be_bytes());
                handle.send(Command::Multicast {
                    group: "bench".into(),
                    service: Service::Agreed,
                    data,
                });
                sent += 1;
                if let Some(p) = period {
                    next += p;
                }
                if period.is_none() {
                    // Give the session a turn now and then (it runs on the same runtime).
                    if sent % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
            }
        }
        // An event already waiting is taken without arming a timer.
        let e = if let Some(e) = conclave_gcs::channel::take_ready_unbounded(&mut events).await {
            Some(e)
        } else if traffic.sender && sent < traffic.count && period.is_some() {
            match tokio::time::timeout_at(next, events.recv()).await {
                Ok(e) => e,
                Err(_) => continue,
            }
        } else {
            tokio::time::timeout(patience, events.recv())
                .await
                .map_err(|_| {
                    format!(
                        "{}: {got} of {} messages, then none for 60 s",
                        args.name, traffic.count
                    )
                })?
        };
        match e.ok_or("the session ended")? {
            SessionEvent::Message { data, .. } if data.len() >= 8 => {
                let now = monotonic_ns();
                let mut t = [0u8; 8];
                t.copy_from_slice(&data[..8]);
                let at = u64::from_be_bytes(t);
                if got == 0 {
                    report.first_sent_ns = at;
                }
                if !traffic.sender {
                    report
                        .latencies_us
                        .push(now.saturating_sub(at) as f64 / 1e3);
                }
                report.last_ns = now;
                got += 1;
                if let Some(progress) = &mut progress {
                    progress.taken(got)?;
                }
            }
            SessionEvent::SecurityError { error, .. } => {
                return Err(format!("security error: {} {}", error.code, error.message));
            }
            _ => {}
        }
    }
    report.cpu_s = cpu.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    // Stay in the group until the parent is done with everyone.
    line.clear();
    let _ = stdin.read_line(&mut line).await;
    Ok(())
}

/// The start of a blocking member's exchange with the parent (`cpg-member`,
/// `relay-member`): says `ready` and waits for `go` on standard input.
pub(crate) fn ready_then_go() -> Result<(), String> {
    println!("ready");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The end of a blocking member's exchange with the parent: prints its [`Report`] as
/// one JSON line, then waits for the end of standard input (the member stays in its
/// group until the parent is done with everyone).
pub(crate) fn report_then_wait(report: &Report) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string(report).map_err(|e| e.to_string())?
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

/// A running child with its standard streams.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn line(&mut self, what: &str) -> Result<String, String> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| format!("{what}: {e}"))?;
        if n == 0 {
            let status = self.child.wait().map_err(|e| e.to_string())?;
            return Err(format!("{what}: the process ended ({status})"));
        }
        Ok(line.trim_end().to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String]) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Process::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.join(" ")))?;
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    Ok(Proc {
        child,
        stdin,
        stdout,
    })
}

/// What the scheduler says of a process so far, summed over its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sched {
    /// CPU time, seconds.
    cpu_s: f64,
    /// Times a thread went to sleep of its own accord (to wait for something), so
    /// was woken: its voluntary context switches.
    wakeups: u64,
}

impl std::ops::Sub for Sched {
    type Output = Sched;
    fn sub(self, before: Sched) -> Sched {
        Sched {
            cpu_s: self.cpu_s - before.cpu_s,
            wakeups: self.wakeups.saturating_sub(before.wakeups),
        }
    }
}

/// The nanoseconds on a processor of one thread's `schedstat`.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The voluntary context switches of one thread's `status`.
fn parse_voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// CPU time and wake-ups of process `pid` so far: the sum over its threads
/// (`/proc/PID/task/*/schedstat`, in nanoseconds, since `stat`'s ticks are 10 ms; and
/// `status`).
fn process_sched(pid: u32) -> Result<Sched, String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
    let (mut ns, mut wakeups) = (0u64, 0u64);
    for task in tasks {
        let dir = task.map_err(|e| e.to_string())?.path();
        // A thread that ended meanwhile has nothing to add.
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(dir.join("schedstat")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        ns += parse_schedstat(&stat).ok_or_else(|| format!("unreadable {}", dir.display()))?;
        wakeups += parse_voluntary_switches(&status)
            .ok_or_else(|| format!("unreadable {}/status", dir.display()))?;
    }
    Ok(Sched {
        cpu_s: ns as f64 / 1e9,
        wakeups,
    })
}

/// The scheduling priority (nice value) of the process that orders the messages in
/// `--processes` on the daemon engine, the daemon and the raw relay alike: the
/// packaged systemd unit runs the daemon at this priority (`Nice=-10`, like other
/// services that relay for many processes; corosync runs at a real-time priority). At
/// a paced rate it decides who runs first on a busy processor: a daemon at the default
/// priority is preempted by the first receiver it wakes, which then runs its whole
/// delivery before the daemon writes to the next receiver.
pub const ORDERER_NICE: i32 = -10;

/// Whether an orderer of this run could not be given [`ORDERER_NICE`] (raising a
/// priority needs root or `CAP_SYS_NICE`): it then ran at the default, and the caption
/// says so.
static ORDERER_NICE_REFUSED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// What the caption of `--processes` says of the orderer's priority in this run.
pub fn orderer_priority() -> String {
    if ORDERER_NICE_REFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        format!(
            "the daemon and the relay at the default priority (this run may not raise it to nice {ORDERER_NICE}, as the systemd unit does: that needs root or CAP_SYS_NICE)"
        )
    } else {
        format!(
            "the daemon and the relay at nice {ORDERER_NICE}, as the systemd unit runs the daemon"
        )
    }
}

/// Gives every thread of process `pid` the priority `nice` (on Linux a priority
/// belongs to a thread: the relay has one per connection). False if any refused.
fn set_priority(pid: u32, nice: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut all = true;
    for task in tasks.flatten() {
        let tid = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok());
        let Some(tid) = tid.and_then(rustix::process::Pid::from_raw) else {
            continue;
        };
        all &= rustix::process::setpriority_process(Some(tid), nice).is_ok();
    }
    all
}

/// The row name of the raw-CPG baseline of `--engine corosync` (no Conclave layer).
pub const RAW_CPG: &str = "raw-cpg";

/// One row measured with each member in a process of its own: through a daemon
/// process (`engine` `daemon`), or through this machine's corosync (`corosync`; the
/// cipher [`RAW_CPG`] is CPG alone, members that use the `rust-corosync` crate and
/// nothing of Conclave). On the daemon engine the cipher [`RAW_RELAY`] puts the
/// raw relay (`bench relay`, nothing of Conclave) where the daemon stands.
pub fn measure(registry: &Registry, engine: &str, spec: Spec<'_>) -> Result<DataRow, String> {
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
    let socket = dir.path().join("engine.sock");
    let keys = dir.path().join("keys");
    let n = members.max(2);
    let count = spec.count();
    let raw = cipher == RAW_CPG;
    let relay = cipher == RAW_RELAY;
    if !raw && !relay {
        std::fs::create_dir(&keys).map_err(|e| e.to_string())?;
        let settings = group_settings(registry, cipher, provider)?;
        let p = registry
            .new_provider(&settings.provider, Default::default())
            .map_err(|e| e.to_string())?;
        for i in 0..n {
            Identity::generate(&p, &format!("m{i}"), &settings.signature)
                .map_err(|e| e.to_string())?
                .write_files(&keys)
                .map_err(|e| e.to_string())?;
        }
    }
    // The process that orders the messages: our daemon, the raw relay, or this
    // namespace's corosync.
    let (orderer, engine_pid) = if engine == "corosync" {
        (None, corosync_pid())
    } else {
        let args: Vec<String> = if relay {
            vec![
                "bench".into(),
                "relay".into(),
                "--listen".into(),
                socket.display().to_string(),
                "--members".into(),
                n.to_string(),
            ]
        } else {
            vec![
                "daemon".into(),
                "--listen".into(),
                format!("unix:{}", socket.display()),
            ]
        };
        let orderer = spawn(&args)?;
        wait_for(&socket)?;
        let pid = orderer.child.id();
        (Some(orderer), Some(pid))
    };
    // A flood's window spans the receivers: they report their counts to the sender.
    let reports = (rate == 0 && window > 0).then(|| dir.path().join("reports"));
    let mut procs = Vec::new();
    for i in 0..n {
        let common = [
            "--members".to_string(),
            n.to_string(),
            "--count".into(),
            count.to_string(),
            "--size".into(),
            size.to_string(),
            "--rate".into(),
            rate.to_string(),
            "--window".into(),
            window.to_string(),
            "--index".into(),
            i.to_string(),
        ];
        let mut args: Vec<String> = if raw {
            let group = format!("conclave-bench-raw-{}", std::process::id());
            ["bench", "cpg-member", "--group", &group]
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else if relay {
            vec![
                "bench".into(),
                "relay-member".into(),
                "--socket".into(),
                socket.display().to_string(),
            ]
        } else {
            let mut a: Vec<String> = [
                "bench",
                "data-member",
                "--dir",
                &keys.display().to_string(),
                "--name",
                &format!("m{i}"),
                "--cipher",
                cipher,
                "--provider",
                provider,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if engine != "corosync" {
                a.extend(["--socket".to_string(), socket.display().to_string()]);
            }
            a
        };
        args.extend(common);
        if let Some(path) = &reports {
            args.extend(["--reports".to_string(), path.display().to_string()]);
        }
        if i == 0 {
            args.push("--sender".into());
        }
        procs.push(spawn(&args)?);
    }
    for (i, m) in procs.iter_mut().enumerate() {
        let line = m.line(&format!("member m{i}"))?;
        if line != "ready" {
            return Err(format!("member m{i} said {line:?}, not ready"));
        }
    }
    // Ours (the daemon or the relay), not this machine's corosync.
    if let Some(orderer) = &orderer
        && !set_priority(orderer.child.id(), ORDERER_NICE)
    {
        ORDERER_NICE_REFUSED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let engine_before = engine_pid.map(process_sched).transpose()?;
    // Receivers first, then the sender.
    for m in procs.iter_mut().rev() {
        let stdin = m.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "go").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
    }
    let mut reports = Vec::new();
    for (i, m) in procs.iter_mut().enumerate() {
        let line = m.line(&format!("member m{i}"))?;
        let r: Report =
            serde_json::from_str(&line).map_err(|e| format!("member m{i}: {e}: {line}"))?;
        reports.push(r);
    }
    let engine = match (engine_pid, engine_before) {
        (Some(pid), Some(before)) => Some(process_sched(pid)? - before),
        _ => None,
    };
    drop(procs);
    let first = reports[1..]
        .iter()
        .map(|r| r.first_sent_ns)
        .min()
        .unwrap_or(0);
    let last = reports[1..].iter().map(|r| r.last_ns).max().unwrap_or(0);
    let mut latencies: Vec<f64> = reports[1..]
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let members_cpu: f64 = reports.iter().map(|r| r.cpu_s).sum();
    let engine_cpu = engine.map(|e| e.cpu_s);
    let mut row = spec.row(
        &latencies,
        last.saturating_sub(first) as f64 / 1e9,
        members_cpu + engine_cpu.unwrap_or(0.0),
        engine_cpu,
        false,
    );
    row.daemon_wakeups_per_message = engine.map(|e| e.wakeups as f64 / spec.count() as f64);
    Ok(row)
}

/// The corosync of this network namespace (the one CPG clients here reach), if this
/// process may see it: its CPU is then counted as the daemon's.
fn corosync_pid() -> Option<u32> {
    let ours = std::fs::read_link("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
        (comm.trim_end() == "corosync" && net == ours).then_some(pid)
    })
}

fn wait_for(socket: &Path) -> Result<(), String> {
    for _ in 0..500 {
        if socket.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("the daemon did not listen on {}", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_cpu_time_and_wakeups_are_read_from_proc() {
        assert_eq!(parse_schedstat("1234567 890 42\n"), Some(1_234_567));
        assert_eq!(parse_schedstat("x 1 2"), None);
        let status =
            "Name:\tconclave\nvoluntary_ctxt_switches:\t173\nnonvoluntary_ctxt_switches:\t9\n";
        assert_eq!(parse_voluntary_switches(status), Some(173));
        assert_eq!(parse_voluntary_switches("Name:\tx\n"), None);
        let before = Sched {
            cpu_s: 1.0,
            wakeups: 10,
        };
        let after = Sched {
            cpu_s: 1.5,
            wakeups: 25,
        };
        assert_eq!(
            after - before,
            Sched {
                cpu_s: 0.5,
                wakeups: 15
            }
        );
    }

    /// The nice value of every thread of `pid` (field 19 of each `stat`).
    fn nice_of_threads(pid: u32) -> Vec<i32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .map(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap();
                // After the command name in parentheses: state is field 3, nice 19.
                let rest = &stat[stat.rfind(')').unwrap() + 2..];
                rest.split_whitespace().nth(16).unwrap().parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn the_priority_is_set_on_every_thread_of_the_process() {
        // Lowering a priority needs no privilege: the test runs as any user. Python
        // with a second thread stands for the relay's thread per connection.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import threading,time; threading.Thread(target=time.sleep, args=(30,)).start(); print('up', flush=True); time.sleep(30)",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/setup installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = child.id();
        assert_eq!(nice_of_threads(pid).len(), 2, "two threads");
        let ok = set_priority(pid, 7);
        let nice = nice_of_threads(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(ok);
        assert_eq!(nice, vec![7, 7]);
        // A process that is gone: refused, not a panic.
        assert!(!set_priority(pid, 7));
    }

    #[test]
    fn this_process_has_slept_and_used_cpu() {
        std::thread::sleep(std::time::Duration::from_millis(2));
        let s = process_sched(std::process::id()).expect("schedstat");
        assert!(s.wakeups > 0 && s.cpu_s > 0.0, "{s:?}");
    }
}
