//! `conclave bench cpg-member`: one member of the raw-CPG baseline of `conclave bench
//! data --engine corosync`. It talks to corosync through the `rust-corosync` crate
//! alone (no Conclave layer: no virtual synchrony on top, no session, no cipher), so
//! that the Corosync engine's rows can be read against what CPG itself moves on the same
//! machine in the same run.
//!
//! It speaks the same protocol with the parent as `bench data-member`: `ready`, then
//! `go` on standard input, then a JSON [`Report`](crate::bench_processes::Report) line,
//! then it stays in the group until standard input ends. One thread: sends and
//! `cpg_dispatch` take turns, and the callbacks (plain function pointers) record into
//! a thread-local.

use std::{cell::RefCell, time::Duration};

use clap::Args;
use rust_corosync::{
    CsError, DispatchFlags, NodeId,
    cpg::{self, Address, Guarantee, Handle, Model1Data, Model1Flags, ModelData},
};

use crate::bench_processes::{Report, Traffic, monotonic_ns, ready_then_go, report_then_wait};
use crate::bench_window::{PATIENCE, Reports, in_flight};

/// Arguments of the hidden `conclave bench cpg-member`.
#[derive(Debug, Args)]
pub struct CpgMemberArgs {
    /// The CPG group (raw: no `conclave:` prefix; unique per measurement).
    #[arg(long)]
    group: String,
    #[command(flatten)]
    traffic: Traffic,
}

/// What the callbacks record.
#[derive(Default)]
struct Seen {
    members: usize,
    sender: bool,
    /// Messages delivered (to the sender: its own, back).
    got: usize,
    latencies_us: Vec<f64>,
    first_sent_ns: u64,
    last_ns: u64,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen::default());
}

fn on_deliver(_h: &Handle, _group: String, _node: NodeId, _pid: u32, msg: &[u8], _len: usize) {
    let now = monotonic_ns();
    SEEN.with_borrow_mut(|s| {
        let Some(t) = msg.get(..8) else { return };
        let at = u64::from_be_bytes(t.try_into().unwrap_or_default());
        if s.got == 0 {
            s.first_sent_ns = at;
        }
        if !s.sender {
            s.latencies_us.push(now.saturating_sub(at) as f64 / 1e3);
        }
        s.last_ns = now;
        s.got += 1;
    });
}

fn on_confchg(
    _h: &Handle,
    _group: &str,
    members: Vec<Address>,
    _left: Vec<Address>,
    _joined: Vec<Address>,
) {
    SEEN.with_borrow_mut(|s| s.members = members.len());
}

fn cs(what: &str, e: CsError) -> String {
    format!("corosync: {what}: {e}")
}

/// Runs one raw CPG member.
pub fn member(args: CpgMemberArgs) -> Result<(), String> {
    let traffic = &args.traffic;
    let model = ModelData::ModelV1(Model1Data {
        flags: Model1Flags::None,
        deliver_fn: Some(on_deliver),
        confchg_fn: Some(on_confchg),
        totem_confchg_fn: None,
    });
    let handle = cpg::initialize(&model, 0).map_err(|e| cs("cannot connect", e))?;
    cpg::join(&handle, &args.group).map_err(|e| cs("join", e))?;
    SEEN.with_borrow_mut(|s| {
        s.sender = traffic.sender;
        s.latencies_us.reserve(traffic.count);
    });
    let started = std::time::Instant::now();
    while SEEN.with_borrow(|s| s.members) < traffic.members {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "fewer than {} members within 60 s",
                traffic.members
            ));
        }
        cpg::dispatch(&handle, DispatchFlags::One).map_err(|e| cs("dispatch", e))?;
    }
    // The window's reports: made before ready, reported to only after `go`.
    let mut reports = traffic.reports()?;
    ready_then_go()?;
    let mut progress = traffic.progress()?;
    let cpu = cpu_time::ProcessTime::now();
    let size = traffic.size.max(8);
    let mut payload = vec![0u8; size];
    let period = (traffic.rate > 0).then(|| Duration::from_secs_f64(1.0 / traffic.rate as f64));
    let mut next = std::time::Instant::now();
    let mut sent = 0;
    let got = || SEEN.with_borrow(|s| s.got);
    while got() < traffic.count {
        let mut blocked = !traffic.sender || sent == traffic.count;
        if traffic.sender && sent < traffic.count {
            match period {
                Some(p) => {
                    let now = std::time::Instant::now();
                    if now < next {
                        // Deliveries of earlier messages first, then sleep to the tick.
                        cpg::dispatch(&handle, DispatchFlags::All)
                            .map_err(|e| cs("dispatch", e))?;
                        std::thread::sleep(
                            next.saturating_duration_since(std::time::Instant::now()),
                        );
                    }
                    payload[..8].copy_from_slice(&monotonic_ns().to_be_bytes());
                    match cpg::mcast_joined(&handle, Guarantee::TypeAgreed, &payload) {
                        Ok(()) => {
                            sent += 1;
                            next += p;
                        }
                        Err(CsError::CsErrTryAgain) => blocked = true,
                        Err(e) => return Err(cs("multicast", e)),
                    }
                }
                None => {
                    if let Some(r) = &mut reports
                        && in_flight(sent, got(), Some(r.slowest())) >= traffic.window
                    {
                        r.drain()?;
                    }
                    let slowest = reports.as_ref().map(Reports::slowest);
                    while sent < traffic.count
                        && (traffic.window == 0 || in_flight(sent, got(), slowest) < traffic.window)
                    {
                        payload[..8].copy_from_slice(&monotonic_ns().to_be_bytes());
                        match cpg::mcast_joined(&handle, Guarantee::TypeAgreed, &payload) {
                            Ok(()) => sent += 1,
                            Err(CsError::CsErrTryAgain) => break,
                            Err(e) => return Err(cs("multicast", e)),
                        }
                    }
                    blocked = true;
                    if let Some(r) = &mut reports
                        && got() == sent
                        && in_flight(sent, got(), Some(r.slowest())) >= traffic.window
                    {
                        // Every copy of its own is back: only a receiver's report can
                        // open the window.
                        r.wait(PATIENCE)?;
                        continue;
                    }
                }
            }
        }
        // Block for a delivery when there is nothing to send now (the window is full,
        // corosync said try again, or this member only receives).
        let flags = if blocked {
            DispatchFlags::One
        } else {
            DispatchFlags::All
        };
        cpg::dispatch(&handle, flags).map_err(|e| cs("dispatch", e))?;
        if let Some(progress) = &mut progress {
            progress.taken(got())?;
        }
    }
    let report = SEEN.with_borrow_mut(|s| Report {
        latencies_us: std::mem::take(&mut s.latencies_us),
        first_sent_ns: s.first_sent_ns,
        last_ns: s.last_ns,
        cpu_s: cpu.elapsed().as_secs_f64(),
    });
    report_then_wait(&report)?;
    let _ = cpg::finalize(&handle);
    Ok(())
}
