//! The real daemon under churn, checked with the simulator's view-synchrony checker:
//! members in tasks send random FIFO/causal/agreed/unicast traffic, join, leave,
//! answer flushes late (flush timeouts), and crash, while new members arrive.
//! `CONCLAVE_CHURN_SEEDS=N` runs N schedules (default 1).

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use conclave_gcs::sim::Trace;
use conclave_gcs::{
    Address, Client, Daemon, DaemonConfig, Delivery, Event, GcsError, GroupName, MemberName,
    SendOptions, Service, ViewId,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::{sleep, timeout};

/// After the active period, a member stops once it has received nothing for this long
/// (everything sent has then arrived: the check takes live members as complete).
const QUIET: Duration = Duration::from_millis(1500);

fn g() -> GroupName {
    GroupName::new("churn").unwrap()
}

/// What one connection saw and sent.
struct Log {
    name: MemberName,
    events: Vec<(Event, u64)>,
    sends: Vec<(u64, ViewId, Delivery, bool)>,
    crashed: bool,
    /// Kept open until every member is done, so that late departures do not start
    /// view changes that the others would have to wait out.
    client: Option<Client>,
}

struct Plan {
    index: u64,
    start: Duration,
    crash_at: Option<Duration>,
    lazy: bool,
}

fn msg_id(e: &Event) -> u64 {
    match e {
        Event::Message { payload, .. } if payload.len() >= 8 => {
            u64::from_be_bytes(payload[..8].try_into().unwrap())
        }
        _ => u64::MAX,
    }
}

async fn member(addr: Address, plan: Plan, seed: u64, t0: Instant, active: Duration) -> Log {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ plan.index);
    sleep(plan.start).await;
    let name = MemberName::new(format!("m{}", plan.index)).unwrap();
    let mut c = Client::connect(&addr, name.clone()).await.unwrap();
    let mut log = Log {
        name,
        events: Vec::new(),
        sends: Vec::new(),
        crashed: false,
        client: None,
    };
    let mut seq = 0u64;
    let mut ack_at: Option<Instant> = None;
    let mut quiet_since = Instant::now();
    c.join(&g()).await.unwrap();
    loop {
        let now = Instant::now();
        let active_now = now < t0 + active;
        if plan.crash_at.is_some_and(|at| now >= t0 + at) {
            log.crashed = true;
            drop(c); // no goodbye
            return log;
        }
        if !active_now && now.duration_since(quiet_since) > QUIET {
            log.client = Some(c);
            return log;
        }
        match timeout(
            Duration::from_millis(rng.random_range(1..4)),
            c.next_event(),
        )
        .await
        {
            Ok(Ok(e)) => {
                quiet_since = Instant::now();
                if matches!(e, Event::FlushRequest { .. }) {
                    let delay = if plan.lazy && active_now {
                        400
                    } else {
                        rng.random_range(0..15)
                    };
                    ack_at = Some(Instant::now() + Duration::from_millis(delay));
                }
                let id = msg_id(&e);
                log.events.push((e, id));
            }
            Ok(Err(e)) => panic!("{}: connection lost: {e}", log.name),
            Err(_) => {}
        }
        if ack_at.is_some_and(|at| Instant::now() >= at) {
            ack_at = None;
            match c.flush_ok(&g()).await {
                Ok(()) | Err(GcsError::NotMember { .. } | GcsError::NoFlushPending { .. }) => {}
                Err(e) => panic!("flush_ok: {e}"),
            }
        }
        if !active_now {
            continue;
        }
        let Some(view) = c.view(&g()).cloned() else {
            if rng.random_bool(0.05) {
                let _ = c.join(&g()).await;
            }
            continue;
        };
        let roll = rng.random_range(0..1000);
        if roll < 4 {
            c.leave(&g()).await.unwrap();
            ack_at = None;
        } else if roll < 400 {
            let id = (plan.index << 32) | seq;
            let delivery = if rng.random_bool(0.2) {
                Delivery::Unicast(view.members[rng.random_range(0..view.members.len())].clone())
            } else {
                Delivery::Multicast(
                    [Service::Fifo, Service::Causal, Service::Agreed][rng.random_range(0..3)],
                )
            };
            let self_delivery = rng.random_bool(0.8);
            let mut p = BytesMut::new();
            p.put_u64(id);
            p.resize(8 + rng.random_range(0..64), 0);
            let p: Bytes = p.freeze();
            match c
                .send(&g(), delivery.clone(), p, SendOptions { self_delivery })
                .await
            {
                Ok(()) => {
                    seq += 1;
                    log.sends.push((id, view.id, delivery, self_delivery));
                }
                Err(GcsError::Flushing { .. }) => {}
                Err(e) => panic!("send: {e}"),
            }
        }
    }
}

async fn churn(seed: u64) {
    let d = Daemon::bind(DaemonConfig {
        listen: common::socket_address(),
        flush_timeout: Duration::from_millis(200),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let active = Duration::from_millis(1500);
    let t0 = Instant::now();
    let plans: Vec<Plan> = (0..8)
        .map(|i| Plan {
            index: i,
            start: Duration::from_millis(if i < 6 { 0 } else { rng.random_range(200..900) }),
            crash_at: (i == 1 || i == 4)
                .then(|| Duration::from_millis(rng.random_range(300..1300))),
            lazy: i == 2,
        })
        .collect();
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|p| tokio::spawn(member(d.address().clone(), p, seed, t0, active)))
        .collect();
    let mut trace = Trace::new();
    let mut totals = (0, 0, 0);
    let mut open = Vec::new();
    for t in tasks {
        let mut log = t.await.unwrap();
        open.extend(log.client.take());
        let idx = trace.add_member(log.name.clone());
        for (e, id) in &log.events {
            match e {
                Event::View(_) => totals.0 += 1,
                Event::Message { .. } => totals.1 += 1,
                Event::Left { .. } => totals.2 += 1,
                _ => {}
            }
            trace.received(idx, e, *id);
        }
        for (id, view, delivery, self_delivery) in &log.sends {
            trace.sent(idx, *id, &g(), *view, delivery, *self_delivery);
        }
        if log.crashed {
            trace.gone(idx);
        }
    }
    drop(open);
    d.shutdown().await;
    eprintln!(
        "seed {seed}: views {}, deliveries {}, lefts {}",
        totals.0, totals.1, totals.2
    );
    assert!(
        totals.0 >= 8 && totals.1 > 500,
        "too little happened: {totals:?}"
    );
    if let Err(v) = trace.check() {
        panic!("seed {seed}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_view_synchrony_under_churn() {
    let seeds: u64 = std::env::var("CONCLAVE_CHURN_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for seed in 1..=seeds {
        churn(seed).await;
    }
}
