//! Throughput and latency through the daemon on loopback, and simulator speed.
//!
//! `cargo bench -p conclave-gcs --bench daemon` prints a Markdown report (the results
//! are kept in `gcs/BENCHMARKS.md`). A plain harness (no criterion) keeps the
//! dependency tree small and reports what matters here: messages/s, MB/s, p50/p99.
//! `CONCLAVE_BENCH_QUICK=1` runs a short smoke version.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use conclave_gcs::noise::{TcpIdentity, TcpTrust};
use conclave_gcs::sim::Simulator;
use conclave_gcs::{
    Address, Client, Daemon, DaemonConfig, Delivery, Event, GroupName, MemberName, SendOptions,
    Service, TcpCredentials, TcpSecurity,
};

fn g() -> GroupName {
    GroupName::new("bench").expect("name")
}

/// The members' names, and the identities they prove over TCP (bench keys: a seed
/// made of the name).
const NAMES: [&str; 6] = ["sender", "r1", "r2", "lsender", "l1", "l2"];
const DAEMON: &str = "conclave-daemon";

fn identity(name: &str) -> TcpIdentity {
    let mut seed = [0u8; 32];
    seed[..name.len()].copy_from_slice(name.as_bytes());
    TcpIdentity::from_seed(name, &seed).expect("identity")
}

fn tcp_security() -> TcpSecurity {
    let mut clients = TcpTrust::new();
    for name in NAMES {
        clients
            .insert(name, &identity(name).public_key())
            .expect("key");
    }
    TcpSecurity {
        identity: Arc::new(identity(DAEMON)),
        clients,
    }
}

async fn connect(addr: &Address, name: &str) -> Client {
    let mut daemon = TcpTrust::new();
    daemon
        .insert(DAEMON, &identity(DAEMON).public_key())
        .expect("key");
    let credentials = TcpCredentials {
        identity: Arc::new(identity(name)),
        daemon,
    };
    Client::connect_with(
        addr,
        MemberName::new(name).expect("name"),
        Some(&credentials),
    )
    .await
    .expect("connect")
}

/// Joins `clients` to the group one by one, answering flushes, until all see `n`.
async fn form_group(clients: &mut [Client]) {
    for i in 0..clients.len() {
        clients[i].join(&g()).await.expect("join");
        // Every old member answers the flush first, then all wait for the view.
        for c in clients[..i].iter_mut() {
            loop {
                if let Event::FlushRequest { group } = c.next_event().await.expect("event") {
                    c.flush_ok(&group).await.expect("flush");
                    break;
                }
            }
        }
        for c in clients[..=i].iter_mut() {
            while !matches!(c.next_event().await.expect("event"), Event::View(v) if v.members.len() == i + 1)
            {
            }
        }
    }
}

/// Reads until `n` messages arrived; returns one-way latencies (from the timestamp in
/// the first 8 bytes, nanoseconds since `base`).
async fn receive(mut c: Client, n: usize, base: Instant) -> (Client, Vec<u64>) {
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        if let Event::Message { payload, .. } = c.next_event().await.expect("event") {
            let sent = u64::from_be_bytes(payload[..8].try_into().expect("stamp"));
            lat.push((base.elapsed().as_nanos() as u64).saturating_sub(sent));
        }
    }
    (c, lat)
}

fn stamped(size: usize, base: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(base.elapsed().as_nanos() as u64);
    b.resize(size.max(8), 0xab);
    b.freeze()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn throughput(addr: &Address, size: usize, count: usize) -> (f64, f64, f64, f64) {
    let mut cs = vec![
        connect(addr, "sender").await,
        connect(addr, "r1").await,
        connect(addr, "r2").await,
    ];
    form_group(&mut cs).await;
    let base = Instant::now();
    let mut sender = cs.remove(0);
    let receivers: Vec<_> = cs
        .into_iter()
        .map(|c| tokio::spawn(receive(c, count, base)))
        .collect();
    let start = Instant::now();
    for _ in 0..count {
        sender
            .send(
                &g(),
                Delivery::Multicast(Service::Agreed),
                stamped(size, base),
                SendOptions {
                    self_delivery: false,
                },
            )
            .await
            .expect("send");
    }
    let mut lat = Vec::new();
    for r in receivers {
        let (c, l) = r.await.expect("receiver");
        c.close().await;
        lat.extend(l);
    }
    let secs = start.elapsed().as_secs_f64();
    sender.close().await;
    lat.sort_unstable();
    let msgs = count as f64 / secs;
    (
        msgs,
        msgs * size as f64 / 1e6,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    )
}

/// One message in flight at a time: the sender waits for its own copy.
async fn latency(addr: &Address, size: usize, count: usize) -> (f64, f64) {
    let mut cs = vec![
        connect(addr, "lsender").await,
        connect(addr, "l1").await,
        connect(addr, "l2").await,
    ];
    form_group(&mut cs).await;
    let base = Instant::now();
    let mut sender = cs.remove(0);
    let receivers: Vec<_> = cs
        .into_iter()
        .map(|c| tokio::spawn(receive(c, count, base)))
        .collect();
    for _ in 0..count {
        sender
            .multicast(&g(), Service::Agreed, stamped(size, base))
            .await
            .expect("send");
        while !matches!(
            sender.next_event().await.expect("event"),
            Event::Message { .. }
        ) {}
    }
    let mut lat = Vec::new();
    for r in receivers {
        let (c, l) = r.await.expect("receiver");
        c.close().await;
        lat.extend(l);
    }
    sender.close().await;
    lat.sort_unstable();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn main() {
    let quick = std::env::var_os("CONCLAVE_BENCH_QUICK").is_some();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("conclave-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    rt.block_on(async {
        let addrs: Vec<Address> = vec![
            "tcp:127.0.0.1:0".parse().expect("addr"),
            format!("unix:{}", dir.join("d.sock").display())
                .parse()
                .expect("addr"),
        ];
        println!("## Daemon on loopback: 1 sender, 2 receivers, agreed multicast\n");
        println!("| transport | size | messages/s | MB/s (payload, per receiver) | p50 µs | p99 µs | idle p50 µs | idle p99 µs |");
        println!("|---|---|---|---|---|---|---|---|");
        for listen in addrs {
            let d = Daemon::bind(DaemonConfig {
                listen,
                tcp: Some(tcp_security()),
                ..DaemonConfig::default()
            })
            .await
            .expect("bind");
            let addr = d.address().clone();
            let transport = match addr {
                Address::Tcp(_) => "tcp (noise)",
                Address::Unix(_) => "unix",
            };
            for size in [100usize, 1000, 10_000] {
                let total_mb = if quick { 2.0 } else { 200.0 };
                let count = ((total_mb * 1e6 / size as f64) as usize).clamp(1000, 400_000);
                let (mps, mbs, p50, p99) = throughput(&addr, size, count).await;
                let (i50, i99) = latency(&addr, size, if quick { 200 } else { 5000 }).await;
                println!(
                    "| {transport} | {size} B | {mps:.0} | {mbs:.1} | {p50:.0} | {p99:.0} | {i50:.0} | {i99:.0} |"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            d.shutdown().await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);

    let seeds = if quick { 50 } else { 1000 };
    let start = Instant::now();
    for seed in 0..seeds {
        Simulator::run(seed).expect("schedule");
    }
    let secs = start.elapsed().as_secs_f64();
    println!("\n## Simulator\n");
    println!(
        "{seeds} random schedules (checked) in {secs:.2} s: {:.0} schedules/minute",
        seeds as f64 * 60.0 / secs
    );
}
