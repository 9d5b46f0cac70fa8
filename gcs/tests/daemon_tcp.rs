//! The daemon over TCP: authenticated and encrypted (Noise) with the members' identity
//! keys. Hostile clients speak raw bytes or raw Noise, not through `Client`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_gcs::noise::{self, TcpIdentity, TcpTrust};
use conclave_gcs::wire::{Frame, VERSION};
use conclave_gcs::{
    Address, Client, Daemon, DaemonConfig, Event, GcsError, GroupName, MemberName, Service,
    TcpCredentials, TcpSecurity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use common::{m, next};

const DAEMON: &str = "conclave-daemon";

fn identity(name: &str, seed: u8) -> TcpIdentity {
    TcpIdentity::from_seed(name, &[seed; 32]).unwrap()
}

/// The members the daemon trusts, with their seeds.
const MEMBERS: [(&str, u8); 3] = [("alice", 1), ("bob", 2), ("carol", 3)];

fn member(name: &str) -> TcpIdentity {
    let (_, seed) = MEMBERS.iter().find(|(n, _)| *n == name).unwrap();
    identity(name, *seed)
}

fn daemon_trust(daemon: &TcpIdentity) -> TcpTrust {
    let mut t = TcpTrust::new();
    t.insert(daemon.name(), &daemon.public_key()).unwrap();
    t
}

async fn tcp_daemon(config: DaemonConfig) -> Daemon {
    let mut clients = TcpTrust::new();
    for (name, seed) in MEMBERS {
        clients
            .insert(name, &identity(name, seed).public_key())
            .unwrap();
    }
    Daemon::bind(DaemonConfig {
        listen: "tcp:127.0.0.1:0".parse().unwrap(),
        tcp: Some(TcpSecurity {
            identity: Arc::new(identity(DAEMON, 100)),
            clients,
        }),
        ..config
    })
    .await
    .unwrap()
}

fn credentials(who: TcpIdentity) -> TcpCredentials {
    TcpCredentials {
        identity: Arc::new(who),
        daemon: daemon_trust(&identity(DAEMON, 100)),
    }
}

async fn connect_as(addr: &Address, who: TcpIdentity) -> Result<Client, GcsError> {
    let name = MemberName::new(who.name()).unwrap();
    Client::connect_with(addr, name, Some(&credentials(who))).await
}

fn g() -> GroupName {
    GroupName::new("confidential-group").unwrap()
}

/// Joins `names` to the group; returns the clients once all see the full view.
async fn group_of(addr: &Address, names: &[&str]) -> Vec<Client> {
    let mut cs: Vec<Client> = Vec::new();
    for name in names {
        let mut c = connect_as(addr, member(name)).await.unwrap();
        c.join(&g()).await.unwrap();
        cs.push(c);
        let n = cs.len();
        for c in cs.iter_mut() {
            loop {
                match next(c).await {
                    Event::FlushRequest { group } => c.flush_ok(&group).await.unwrap(),
                    Event::View(v) if v.members.len() == n => break,
                    _ => {}
                }
            }
        }
    }
    cs
}

/// `from` multicasts `text`; `to` receives it; how long that took.
async fn round(from: &mut Client, to: &mut Client, text: &str) -> Duration {
    let started = Instant::now();
    from.multicast(&g(), Service::Agreed, Bytes::from(text.to_owned()))
        .await
        .unwrap();
    loop {
        if let Event::Message { payload, .. } = next(to).await
            && payload == text.as_bytes()
        {
            return started.elapsed();
        }
    }
}

/// A TCP relay in front of `target` that records what passes each way.
type Log = Arc<Mutex<Vec<u8>>>;

struct Tap {
    addr: Address,
    up: Log,
    down: Log,
}

async fn tap(target: &Address) -> Tap {
    let Address::Tcp(target) = *target else {
        unreachable!()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = Address::Tcp(listener.local_addr().unwrap());
    let (up, down): (Log, Log) = (Arc::default(), Arc::default());
    let (u, d) = (Arc::clone(&up), Arc::clone(&down));
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(target).await.unwrap();
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                    mut w: tokio::net::tcp::OwnedWriteHalf,
                    log: Log| async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        };
        let a = tokio::spawn(pump(cr, sw, u));
        let b = tokio::spawn(pump(sr, cw, d));
        let _ = tokio::join!(a, b);
    });
    Tap { addr, up, down }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_credentials_on_both_sides() {
    let e = Daemon::bind(DaemonConfig {
        listen: "tcp:127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    })
    .await
    .err()
    .unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("Noise"), "{e}");

    let d = tcp_daemon(DaemonConfig::default()).await;
    let e = Client::connect(d.address(), m("alice")).await.unwrap_err();
    assert!(matches!(e, GcsError::Authentication(_)), "{e}");
    // An identity is only good for its own member name, checked before connecting.
    let e = Client::connect_with(d.address(), m("bob"), Some(&credentials(member("alice"))))
        .await
        .unwrap_err();
    assert!(matches!(e, GcsError::Authentication(_)), "{e}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_over_noise_and_the_wire_shows_no_plaintext() {
    let d = tcp_daemon(DaemonConfig::default()).await;
    let mut alice = group_of(d.address(), &["alice"]).await.remove(0);
    // Bob goes through a tap that records his traffic both ways.
    let t = tap(d.address()).await;
    let mut bob = connect_as(&t.addr, member("bob")).await.unwrap();
    bob.join(&g()).await.unwrap();
    for c in [&mut alice, &mut bob] {
        loop {
            match next(c).await {
                Event::FlushRequest { group } => c.flush_ok(&group).await.unwrap(),
                Event::View(v) if v.members.len() == 2 => break,
                _ => {}
            }
        }
    }
    let secret = "attack at dawn 0xC0FFEE";
    round(&mut alice, &mut bob, secret).await;
    round(&mut bob, &mut alice, "and bob's reply 0xBEEF").await;
    bob.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (up, down) = (t.up.lock().unwrap().clone(), t.down.lock().unwrap().clone());
    assert!(
        up.len() > 100 && down.len() > 100,
        "{} {}",
        up.len(),
        down.len()
    );
    for wire in [&up, &down] {
        for plain in [
            secret.as_bytes(),
            b"0xBEEF".as_slice(),
            b"confidential-group",
            b"alice",
            b"bob",
            b"conclave-daemon",
        ] {
            assert!(
                !contains(wire, plain),
                "{:?} on the wire",
                String::from_utf8_lossy(plain)
            );
        }
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_impostor_and_misnamed_clients_are_told_why_and_others_keep_working() {
    let d = tcp_daemon(DaemonConfig::default()).await;
    let addr = d.address().clone();
    let mut cs = group_of(&addr, &["alice", "bob"]).await;
    let (mut alice, mut bob) = (cs.remove(0), cs.remove(0));

    // An identity the daemon does not know.
    let started = Instant::now();
    let e = connect_as(&addr, identity("mallory", 66))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("\"mallory\", which is not trusted"),
        "{e}"
    );
    // A trusted name with another key: a squatter on bob's name.
    let e = connect_as(&addr, identity("bob", 67)).await.unwrap_err();
    assert!(e.to_string().contains("did not prove it"), "{e}");
    // Carol, authenticated, asks for alice's member name in a raw Hello.
    let Address::Tcp(sock) = addr else {
        unreachable!()
    };
    let (mut s, _) = noise::connect(
        TcpStream::connect(sock).await.unwrap(),
        &member("carol"),
        &daemon_trust(&identity(DAEMON, 100)),
    )
    .await
    .unwrap();
    let hello = Frame::Hello {
        version: VERSION,
        member: m("alice"),
    }
    .encode()
    .to_vec();
    s.write_all(&hello).await.unwrap();
    s.flush().await.unwrap();
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("may only use the member name of its identity (carol), not alice"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Alice and bob are still there, and still talk.
    assert!(round(&mut alice, &mut bob, "still here").await < Duration::from_secs(1));
    assert!(alice.view(&g()).unwrap().members.len() == 2);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_daemon_that_is_not_the_pinned_one() {
    // An impostor daemon with the same name but another key, where the client expects
    // the real one.
    let mut clients = TcpTrust::new();
    clients
        .insert("alice", &member("alice").public_key())
        .unwrap();
    let fake = Daemon::bind(DaemonConfig {
        listen: "tcp:127.0.0.1:0".parse().unwrap(),
        tcp: Some(TcpSecurity {
            identity: Arc::new(identity(DAEMON, 99)),
            clients,
        }),
        ..DaemonConfig::default()
    })
    .await
    .unwrap();
    let e = connect_as(fake.address(), member("alice"))
        .await
        .unwrap_err();
    assert!(matches!(e, GcsError::Authentication(_)), "{e}");
    assert!(e.to_string().contains("did not prove it"), "{e}");
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_garbage_silent_and_replayed_connections_are_dropped_within_the_handshake_timeout() {
    let d = tcp_daemon(DaemonConfig {
        handshake_timeout: Duration::from_secs(1),
        ..DaemonConfig::default()
    })
    .await;
    let addr = d.address().clone();
    let Address::Tcp(sock) = addr else {
        unreachable!()
    };

    // Record a whole client session (bob connects, joins, leaves) to replay it later.
    let t = tap(&addr).await;
    let mut cs = group_of(&addr, &["alice"]).await;
    let mut alice = cs.remove(0);
    {
        let mut bob = connect_as(&t.addr, member("bob")).await.unwrap();
        bob.join(&g()).await.unwrap();
        loop {
            match next(&mut alice).await {
                Event::FlushRequest { group } => alice.flush_ok(&group).await.unwrap(),
                Event::View(v) if v.members.len() == 2 => break,
                _ => {}
            }
        }
        bob.close().await;
    }
    let recorded = t.up.lock().unwrap().clone();
    let mut bob = connect_as(&addr, member("bob")).await.unwrap();
    bob.join(&g()).await.unwrap();
    for c in [&mut alice, &mut bob] {
        loop {
            match next(c).await {
                Event::FlushRequest { group } => c.flush_ok(&group).await.unwrap(),
                Event::View(v) if v.members.len() == 2 && v.members.contains(&m("bob")) => {
                    break;
                }
                _ => {}
            }
        }
    }

    // The attackers: a plain-protocol Hello, garbage, 40 silent connections, one that
    // sends one byte and stops, and the replayed session.
    let mut attackers = Vec::new();
    let plain = Frame::Hello {
        version: VERSION,
        member: m("alice"),
    }
    .encode()
    .to_vec();
    for bytes in [plain, b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0], recorded] {
        let mut s = TcpStream::connect(sock).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        attackers.push(s);
    }
    for _ in 0..40 {
        attackers.push(TcpStream::connect(sock).await.unwrap());
    }
    let started = Instant::now();
    // Meanwhile alice and bob keep talking, with no delay to speak of.
    for i in 0..20 {
        let took = round(&mut alice, &mut bob, &format!("during {i}")).await;
        assert!(took < Duration::from_millis(500), "round {i}: {took:?}");
    }
    // Every attacker is dropped by the handshake timeout (1 s) plus a margin, without a
    // single frame in clear: whatever comes back is no `Error` frame they can read.
    for mut s in attackers {
        let mut rest = Vec::new();
        let read = timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "an attacker still connected after {:?}",
            started.elapsed()
        );
        assert!(!contains(&rest, b"CONCLAVE"), "a plain frame went back");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // The replay did not take bob's name or disturb the group.
    assert!(round(&mut bob, &mut alice, "after").await < Duration::from_secs(1));
    assert_eq!(alice.view(&g()).unwrap().members.len(), 2);
    d.shutdown().await;
}
