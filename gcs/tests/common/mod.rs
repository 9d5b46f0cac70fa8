//! Helpers shared by the daemon's integration tests.
// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use conclave_gcs::wire::{Frame, VERSION};
use conclave_gcs::{Address, Client, Daemon, DaemonConfig, Event, MemberName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

/// How long a wait for an event may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A member name.
pub fn m(s: &str) -> MemberName {
    MemberName::new(s).unwrap()
}

/// A fresh Unix socket address in the temporary directory.
pub fn socket_address() -> Address {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("conclave-gcs-test-{}-{n}.sock", std::process::id()));
    Address::Unix(path)
}

/// A daemon with `config`, on a fresh Unix socket.
pub async fn daemon(config: DaemonConfig) -> Daemon {
    Daemon::bind(DaemonConfig {
        listen: socket_address(),
        ..config
    })
    .await
    .unwrap()
}

/// A raw connection to the daemon, nothing sent.
pub async fn raw_connect(d: &Daemon) -> UnixStream {
    let Address::Unix(path) = d.address() else {
        unreachable!()
    };
    UnixStream::connect(path).await.unwrap()
}

/// The next event; panics after [`WAIT`] or if the connection is lost.
pub async fn next(c: &mut Client) -> Event {
    timeout(WAIT, c.next_event())
        .await
        .expect("timed out waiting for an event")
        .expect("connection lost")
}

/// Opens a raw connection and completes the handshake as `name`.
pub async fn raw_member(d: &Daemon, name: &str) -> UnixStream {
    let mut s = raw_connect(d).await;
    let hello = Frame::Hello {
        version: VERSION,
        member: m(name),
    }
    .encode()
    .to_vec();
    s.write_all(&hello).await.unwrap();
    let mut welcome = [0u8; 7];
    s.read_exact(&mut welcome).await.unwrap();
    s
}
