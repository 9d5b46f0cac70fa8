//! Helpers shared by the daemon's integration tests.

use std::time::Duration;

use conclave_gcs::wire::{Frame, VERSION};
use conclave_gcs::{Address, Client, Daemon, DaemonConfig, Event, MemberName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long a wait for an event may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A member name.
pub fn m(s: &str) -> MemberName {
    MemberName::new(s).unwrap()
}

/// A daemon with `config`, on a free loopback TCP port.
pub async fn daemon(config: DaemonConfig) -> Daemon {
    Daemon::bind(DaemonConfig {
        listen: "tcp:127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .unwrap()
}

/// The next event; panics after [`WAIT`] or if the connection is lost.
pub async fn next(c: &mut Client) -> Event {
    timeout(WAIT, c.next_event())
        .await
        .expect("timed out waiting for an event")
        .expect("connection lost")
}

/// Opens a raw connection and completes the handshake as `name`.
pub async fn raw_member(d: &Daemon, name: &str) -> TcpStream {
    let Address::Tcp(addr) = d.address() else {
        unreachable!()
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
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
