//! The daemon engine over real loopback sockets, with clients in tasks.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use conclave_gcs::wire::{Frame, MAX_FRAME_LEN};
use conclave_gcs::{
    Address, Cause, Client, Connection, Daemon, DaemonConfig, Delivery, Event, GcsError, GroupName,
    MAX_MESSAGE_SIZE, SendOptions, Service, View,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

mod common;
use common::{WAIT, daemon, m, next, raw_connect, raw_member};

fn g() -> GroupName {
    GroupName::new("room").unwrap()
}

async fn connect(d: &Daemon, name: &str) -> Client {
    Client::connect(d.address(), m(name)).await.unwrap()
}

/// Reads events (answering flush requests) until a view of `n` members; returns the
/// view and the events before it.
async fn until_view(c: &mut Client, n: usize) -> (View, Vec<Event>) {
    let mut before = Vec::new();
    loop {
        match next(c).await {
            Event::View(v) if v.members.len() == n => return (v, before),
            Event::FlushRequest { group } => {
                c.flush_ok(&group).await.unwrap();
                before.push(Event::FlushRequest { group });
            }
            e => before.push(e),
        }
    }
}

/// Drives every client concurrently until it sees a view of `n` members.
async fn settle(clients: Vec<Client>, n: usize) -> Vec<(Client, View, Vec<Event>)> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let (v, before) = until_view(&mut c, n).await;
                (c, v, before)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Members join one after the other; every one answers flushes. Returns the clients.
async fn group_of(d: &Daemon, names: &[&str]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let c = connect(d, name).await;
        clients.push(c);
        clients[i].join(&g()).await.unwrap();
        clients = settle(clients, i + 1)
            .await
            .into_iter()
            .map(|(c, _, _)| c)
            .collect();
    }
    clients
}

fn payload_of(e: &Event) -> Option<(String, Bytes)> {
    match e {
        Event::Message {
            sender, payload, ..
        } => Some((sender.to_string(), payload.clone())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreed_order_is_identical_with_three_concurrent_senders() {
    let d = daemon(DaemonConfig::default()).await;
    let clients = group_of(&d, &["a", "b", "c"]).await;
    const N: u32 = 300;
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                c.multicast(&g(), Service::Agreed, Bytes::from(i.to_be_bytes().to_vec()))
                    .await
                    .unwrap();
            }
            let mut got = Vec::new();
            while got.len() < 3 * N as usize {
                let e = next(&mut c).await;
                if let Some((sender, p)) = payload_of(&e) {
                    let i = u32::from_be_bytes(p[..4].try_into().unwrap());
                    got.push((sender, i));
                }
            }
            got
        }));
    }
    let mut orders = Vec::new();
    for t in tasks {
        orders.push(t.await.unwrap());
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    // FIFO per sender, nothing lost or duplicated.
    let mut last: BTreeMap<&str, Option<u32>> = BTreeMap::new();
    for (sender, i) in &orders[0] {
        let prev = last.entry(sender.as_str()).or_default();
        assert_eq!(*prev, i.checked_sub(1), "FIFO broken for {sender}");
        *prev = Some(*i);
    }
    assert!(last.values().all(|l| *l == Some(N - 1)));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_and_unicast_and_self_delivery() {
    let d = daemon(DaemonConfig::default()).await;
    let mut cs = group_of(&d, &["a", "b"]).await;
    let (a, rest) = cs.split_first_mut().unwrap();
    let b = &mut rest[0];
    for i in 0..50u8 {
        a.send(
            &g(),
            Delivery::Multicast(Service::Fifo),
            vec![i],
            SendOptions {
                self_delivery: false,
            },
        )
        .await
        .unwrap();
    }
    a.unicast(&g(), &m("b"), "to b").await.unwrap();
    a.multicast(&g(), Service::Causal, "mark").await.unwrap();
    for i in 0..50u8 {
        let e = next(b).await;
        assert_eq!(payload_of(&e).unwrap().1, Bytes::from(vec![i]));
    }
    let e = next(b).await;
    assert!(
        matches!(&e, Event::Message { unicast: true, service: Service::Fifo, payload, .. } if payload == "to b")
    );
    // a skipped its own FIFO messages and got only the causal one.
    let e = next(a).await;
    assert!(
        matches!(&e, Event::Message { service: Service::Causal, payload, .. } if payload == "mark")
    );
    assert!(matches!(
        a.unicast(&g(), &m("nobody"), "x").await,
        Err(GcsError::NotMember { .. })
    ));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_and_disconnect_are_reported_with_their_causes() {
    let d = daemon(DaemonConfig::default()).await;
    let mut cs = group_of(&d, &["a", "b", "c"]).await;
    let c = cs.pop().unwrap();
    let mut b = cs.pop().unwrap();
    let a = cs.pop().unwrap();

    b.leave(&g()).await.unwrap();
    let mut ac = settle(vec![a, c], 2).await;
    let (c, v, _) = ac.pop().unwrap();
    let (mut a, va, _) = ac.pop().unwrap();
    assert_eq!(v, va);
    assert_eq!((v.cause, v.left.clone()), (Cause::Leave, vec![m("b")]));
    loop {
        match next(&mut b).await {
            Event::Left { group, cause } => {
                assert_eq!((group, cause), (g(), Cause::Leave));
                break;
            }
            Event::FlushRequest { .. } | Event::Message { .. } => {}
            e => panic!("unexpected {e:?}"),
        }
    }
    assert!(matches!(
        b.multicast(&g(), Service::Agreed, "x").await,
        Err(GcsError::NotMember { .. })
    ));

    drop(c); // the connection is dropped without a word
    let (v, _) = until_view(&mut a, 1).await;
    assert_eq!((v.cause, v.left), (Cause::Disconnect, vec![m("c")]));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_before_flush_ok_is_delivered_in_the_old_view_to_all_survivors() {
    let d = daemon(DaemonConfig::default()).await;
    let mut cs = group_of(&d, &["a", "b"]).await;
    let old = cs[0].view(&g()).unwrap().id;
    let mut c = connect(&d, "c").await;
    c.join(&g()).await.unwrap();
    for (i, cl) in cs.iter_mut().enumerate() {
        assert_eq!(next(cl).await, Event::FlushRequest { group: g() });
        cl.multicast(&g(), Service::Agreed, format!("last words {i}"))
            .await
            .unwrap();
        cl.flush_ok(&g()).await.unwrap();
        assert_eq!(
            cl.multicast(&g(), Service::Agreed, "too late").await,
            Err(GcsError::Flushing { group: g() })
        );
    }
    let mut orders = Vec::new();
    for (_, v, before) in settle(cs, 3).await {
        assert_eq!(v.joined, vec![m("c")]);
        let msgs: Vec<_> = before
            .iter()
            .filter_map(|e| match e {
                Event::Message {
                    view_id, payload, ..
                } => Some((*view_id, payload.clone())),
                _ => None,
            })
            .collect();
        let mut sorted = msgs.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                (old, Bytes::from("last words 0")),
                (old, Bytes::from("last words 1"))
            ]
        );
        orders.push(msgs);
    }
    assert_eq!(orders[0], orders[1], "agreed order differs");
    let (_, before) = until_view(&mut c, 3).await;
    assert!(before.is_empty(), "the joiner saw the old view's traffic");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_acknowledges_is_removed_after_the_flush_timeout() {
    let d = daemon(DaemonConfig {
        flush_timeout: Duration::from_millis(300),
        ..DaemonConfig::default()
    })
    .await;
    let mut cs = group_of(&d, &["a", "b"]).await;
    let mut c = connect(&d, "c").await;
    c.join(&g()).await.unwrap();
    let started = std::time::Instant::now();
    let (v, _) = until_view(&mut cs[0], 2).await; // a answers, b does not
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(v.members, vec![m("a"), m("c")]);
    assert_eq!((v.cause, v.left.clone()), (Cause::Disconnect, vec![m("b")]));
    let b = &mut cs[1];
    assert_eq!(next(b).await, Event::FlushRequest { group: g() });
    assert_eq!(
        next(b).await,
        Event::Left {
            group: g(),
            cause: Cause::Disconnect
        }
    );
    // b is still connected and may join again.
    b.join(&g()).await.unwrap();
    // c's first view is the one without b.
    let (cv, _) = until_view(&mut c, 2).await;
    assert_eq!(cv, v);
    cs.push(c);
    for (_, v, _) in settle(cs, 3).await {
        assert_eq!((v.cause, v.joined), (Cause::Join, vec![m("b")]));
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_1_byte_1_mib_and_16_mib() {
    let d = daemon(DaemonConfig::default()).await;
    let mut cs = group_of(&d, &["a", "b", "c"]).await;
    let sizes = [1usize, 1 << 20, MAX_MESSAGE_SIZE];
    let payloads: Vec<Bytes> = sizes
        .iter()
        .map(|&n| Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>()))
        .collect();
    let (a, others) = cs.split_first_mut().unwrap();
    for p in &payloads {
        a.multicast(&g(), Service::Agreed, p.clone()).await.unwrap();
    }
    assert!(matches!(
        a.multicast(&g(), Service::Agreed, vec![0u8; MAX_MESSAGE_SIZE + 1])
            .await,
        Err(GcsError::TooLarge { .. })
    ));
    for cl in others.iter_mut().chain(std::iter::once(a)) {
        for p in &payloads {
            let e = next(cl).await;
            assert_eq!(&payload_of(&e).unwrap().1, p);
        }
    }
    d.shutdown().await;
}

/// Reads until the daemon closes; returns everything read.
async fn read_to_close(s: &mut UnixStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = timeout(WAIT, s.read_to_end(&mut all))
        .await
        .expect("daemon kept the connection open");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_and_oversized_frames_close_only_their_connection() {
    let d = daemon(DaemonConfig::default()).await;
    let cs = group_of(&d, &["a", "b"]).await;
    // Steady traffic between a and b while the attacks run.
    const N: u32 = 400;
    let mut tasks = Vec::new();
    for mut c in cs {
        tasks.push(tokio::spawn(async move {
            for i in 0..N {
                c.multicast(&g(), Service::Agreed, Bytes::from(i.to_be_bytes().to_vec()))
                    .await
                    .unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let mut n = 0;
            while n < 2 * N {
                if payload_of(&next(&mut c).await).is_some() {
                    n += 1;
                }
            }
            c
        }));
    }

    // Garbage instead of a Hello: refused with a reason.
    let mut s = raw_connect(&d).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s).await;
    let mut buf = bytes::BytesMut::from(&answer[..]);
    match Frame::decode(&mut buf) {
        Ok(Some(Frame::Error {
            fatal: true,
            reason,
        })) => {
            assert!(reason.contains("malformed frame"), "{reason}")
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }

    // An oversized length prefix after a valid handshake.
    let mut s = raw_member(&d, "evil1").await;
    s.write_all(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes())
        .await
        .unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(String::from_utf8_lossy(&answer).contains("exceeds the limit"));

    // A truncated frame, then the client hangs up.
    let mut s = raw_member(&d, "evil2").await;
    let join = Frame::Join { group: g() }.encode().to_vec();
    s.write_all(&join[..join.len() - 2]).await.unwrap();
    drop(s);

    // Random bytes after the handshake, and an unknown frame type.
    let mut s = raw_member(&d, "evil3").await;
    s.write_all(&[0, 0, 0, 3, 0x7f, 1, 2]).await.unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(String::from_utf8_lossy(&answer).contains("unknown frame type"));

    // A daemon frame sent by a client.
    let mut s = raw_member(&d, "evil4").await;
    s.write_all(&Frame::Welcome { version: 1 }.encode().to_vec())
        .await
        .unwrap();
    let answer = read_to_close(&mut s).await;
    assert!(String::from_utf8_lossy(&answer).contains("protocol error"));

    // The others lost nothing, and the daemon still accepts members.
    for t in tasks {
        let mut c = timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!(c.view(&g()).unwrap().members.len(), 2);
        c.multicast(&g(), Service::Agreed, "still here")
            .await
            .unwrap();
    }
    let mut late = connect(&d, "late").await;
    late.join(&g()).await.unwrap();
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_in_use_unix_sockets_and_graceful_shutdown() {
    let dir = std::env::temp_dir().join(format!("conclave-gcs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("daemon.sock");
    let addr: Address = format!("unix:{}", path.display()).parse().unwrap();
    let d = Daemon::bind(DaemonConfig {
        listen: addr.clone(),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let mut a = Client::connect(&addr, m("a")).await.unwrap();
    assert_eq!(
        Client::connect(&addr, m("a")).await.unwrap_err(),
        GcsError::NameInUse(m("a"))
    );
    a.join(&g()).await.unwrap();
    let (v, _) = until_view(&mut a, 1).await;
    assert_eq!(v.cause, Cause::Join);
    a.multicast(&g(), Service::Agreed, "x").await.unwrap();
    assert!(payload_of(&next(&mut a).await).is_some());
    d.shutdown().await;
    match timeout(WAIT, a.next_event()).await.unwrap() {
        Err(GcsError::Disconnected { reason }) => assert_eq!(reason, "daemon shutting down"),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(!path.exists(), "socket file left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Not a test on its own: the member process that
/// `a_killed_client_process_is_seen_as_a_disconnect` starts and kills.
#[test]
#[ignore = "helper process of a_killed_client_process_is_seen_as_a_disconnect"]
fn helper_member_process() {
    let Ok(addr) = std::env::var("CONCLAVE_GCS_HELPER_ADDR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr: Address = addr.parse().unwrap();
        let mut c = Client::connect(&addr, m("proc")).await.unwrap();
        c.join(&g()).await.unwrap();
        until_view(&mut c, 2).await;
        println!("joined");
        std::future::pending::<()>().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_process_is_seen_as_a_disconnect() {
    use std::io::BufRead;
    let d = daemon(DaemonConfig::default()).await;
    let mut cs = group_of(&d, &["a"]).await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "helper_member_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CONCLAVE_GCS_HELPER_ADDR", d.address().to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let joined = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l == "joined")
    });
    let (v, _) = until_view(&mut cs[0], 2).await;
    assert_eq!(v.members, vec![m("a"), m("proc")]);
    assert!(timeout(WAIT, joined).await.unwrap().unwrap());
    child.kill().unwrap(); // SIGKILL: no goodbye
    let _ = child.wait();
    let (v, _) = until_view(&mut cs[0], 1).await;
    assert_eq!((v.cause, v.left), (Cause::Disconnect, vec![m("proc")]));
    d.shutdown().await;
}

/// One protocol, written once against [`Connection`], run on both engines.
async fn two_members<C: Connection>(mut a: C, mut b: C) {
    async fn until_view_of<C: Connection>(c: &mut C, n: usize) -> View {
        loop {
            match c.next_event().await.unwrap() {
                Event::View(v) if v.members.len() == n => return v,
                Event::FlushRequest { group } => c.flush_ok(&group).await.unwrap(),
                _ => {}
            }
        }
    }
    a.join(&g()).await.unwrap();
    until_view_of(&mut a, 1).await;
    b.join(&g()).await.unwrap();
    let (va, vb) = tokio::join!(until_view_of(&mut a, 2), until_view_of(&mut b, 2));
    assert_eq!(va, vb);
    assert_eq!(va.members, vec![m("a"), m("b")]);
    assert_eq!(b.current_view(&g()), Some(vb));
    a.multicast(&g(), Service::Agreed, Bytes::from_static(b"hi"))
        .await
        .unwrap();
    a.unicast(&g(), &m("b"), Bytes::from_static(b"psst"))
        .await
        .unwrap();
    let got: Vec<Bytes> = [b.next_event().await.unwrap(), b.next_event().await.unwrap()]
        .iter()
        .filter_map(payload_of)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(got, [Bytes::from("hi"), Bytes::from("psst")]);
    b.leave(&g()).await.unwrap();
    let va = until_view_of(&mut a, 1).await;
    assert_eq!((va.cause, va.left), (Cause::Leave, vec![m("b")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_trait_runs_one_protocol_on_the_daemon() {
    let d = daemon(DaemonConfig::default()).await;
    two_members(connect(&d, "a").await, connect(&d, "b").await).await;
    d.shutdown().await;
}

#[test]
fn the_connection_trait_runs_one_protocol_on_the_simulator() {
    use conclave_gcs::sim::{SimConfig, Simulator};
    let sim = Simulator::new(3, SimConfig::default());
    let a = sim.add_member(&m("a"), 0).unwrap();
    let b = sim.add_member(&m("b"), 1).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(two_members(a, b));
    sim.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_leaves_at_its_end_whole_and_in_order() {
    let d = daemon(DaemonConfig::default()).await;
    let mut cs = group_of(&d, &["a", "b"]).await;
    let mut b = cs.pop().unwrap();
    let mut a = cs.pop().unwrap();
    // Small sends in a batch stay in the sender's buffer until the batch ends.
    a.begin_batch();
    const N: u32 = 200;
    for i in 0..N {
        a.multicast(&g(), Service::Agreed, Bytes::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    assert!(
        timeout(Duration::from_millis(200), b.next_event())
            .await
            .is_err(),
        "b heard from a batch before it ended"
    );
    a.end_batch().await.unwrap();
    // Then every one arrives, in order; and a send after the batch goes out at once.
    for i in 0..N {
        let (sender, p) = loop {
            if let Some(x) = payload_of(&next(&mut b).await) {
                break x;
            }
        };
        assert_eq!((sender.as_str(), p.as_ref()), ("a", &i.to_be_bytes()[..]));
    }
    a.multicast(&g(), Service::Agreed, Bytes::from_static(b"after"))
        .await
        .unwrap();
    let (_, p) = loop {
        if let Some(x) = payload_of(&next(&mut b).await) {
            break x;
        }
    };
    assert_eq!(p.as_ref(), b"after");
    d.shutdown().await;
}

/// The status document counts every message in and every delivery out, per group, and
/// every view; a second group's traffic stays in its own row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_every_message_in_and_out_per_group() {
    let d = daemon(DaemonConfig::default()).await;
    let mut a = connect(&d, "a").await;
    a.join(&g()).await.unwrap();
    until_view(&mut a, 1).await;
    let mut b = connect(&d, "b").await;
    b.join(&g()).await.unwrap();
    let mut c = connect(&d, "c").await;
    c.join(&g()).await.unwrap();
    tokio::join!(
        until_view(&mut a, 3),
        until_view(&mut b, 3),
        until_view(&mut c, 3)
    );
    let other = GroupName::new("other").unwrap();
    c.join(&other).await.unwrap();
    until_view(&mut c, 1).await;
    const N: u64 = 50;
    for i in 0..N {
        a.multicast(&g(), Service::Agreed, Bytes::from(vec![i as u8; 100]))
            .await
            .unwrap();
    }
    c.multicast(&other, Service::Fifo, Bytes::from_static(b"elsewhere"))
        .await
        .unwrap();
    // Everyone has everything once c has its own message in the other group, after
    // the N in room (one total order).
    for client in [&mut a, &mut b] {
        let mut got = 0;
        while got < N {
            if let Event::Message { .. } = next(client).await {
                got += 1;
            }
        }
    }
    let mut got = 0;
    while got < N + 1 {
        if let Event::Message { .. } = next(&mut c).await {
            got += 1;
        }
    }
    let json = a.status().await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let row = |name: &str| {
        doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == name)
            .cloned()
            .unwrap()
    };
    let room = row("room");
    assert_eq!(room["messages_in"], N, "{doc:#}");
    assert_eq!(room["bytes_in"], N * 100);
    assert_eq!(room["messages_out"], 3 * N, "self-delivered too: {doc:#}");
    assert_eq!(room["bytes_out"], 3 * N * 100);
    // a alone, then b and c (in one view or two: joins during a flush fold).
    let views = room["views"].as_u64().unwrap();
    assert!((2..=3).contains(&views), "{views}");
    assert_eq!(room["members"], serde_json::json!(["a", "b", "c"]));
    let elsewhere = row("other");
    assert_eq!(
        (
            elsewhere["messages_in"].as_u64(),
            elsewhere["messages_out"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(doc["daemon"]["connections"], 3);
    d.shutdown().await;
}
