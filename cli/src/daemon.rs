//! `conclave daemon`: the group-communication daemon (view-synchronous groups over
//! Unix or TCP sockets; protocol in `gcs/PROTOCOL.md`).

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use conclave_gcs::{Address, Daemon, DaemonConfig};

/// Options of `conclave daemon`. Every value is checked against its range.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Take the settings from this TOML file instead of the flags (listener, limits,
    /// who may use which member names and join which groups; see docs/daemon.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "flush_timeout_ms", "queue_limit_mib", "stall_timeout_ms", "frame_timeout_ms", "receive_budget_mib", "max_connections", "threads", "socket_mode", "tcp_identity", "tcp_trust"])]
    config: Option<std::path::PathBuf>,
    /// Check this configuration file, print every error as FILE:LINE, and exit
    /// (status 0 if it is valid, 2 if not).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<std::path::PathBuf>,
    /// Where to listen: `unix:PATH` or `tcp:IP:PORT` (port 0 picks one; the address is
    /// printed on stdout). Default: `conclave.sock` in `$XDG_RUNTIME_DIR`, else in
    /// `/tmp/conclave-UID` (a directory of this user's own).
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<Address>,
    /// Milliseconds a member may take to answer a flush request before it is removed.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    flush_timeout_ms: u64,
    /// Bound of each client's outbound queue, in MiB (at least one 16 MiB message): an
    /// event that does not fit disconnects that client alone.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(17..=65_536))]
    queue_limit_mib: u64,
    /// Milliseconds the daemon may make no progress writing to a client (it reads
    /// nothing) before that client is disconnected.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    stall_timeout_ms: u64,
    /// Milliseconds a frame may take to arrive once its first byte did.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    frame_timeout_ms: u64,
    /// MiB of incomplete frames the daemon buffers for all clients together.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(17..=65_536))]
    receive_budget_mib: u64,
    /// The most connections at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_connections: u64,
    /// Threads the daemon runs on: 1 serves Unix-socket clients best (Spread's design
    /// too); more help many TCP clients, whose traffic the daemon decrypts and
    /// encrypts, on a machine of many cores.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    /// Permission bits of the Unix socket, in octal (owner and group by default).
    #[arg(long, value_name = "OCTAL", default_value = "660", value_parser = parse_mode)]
    socket_mode: u32,
    /// The daemon's identity file (from `conclave keygen`, Ed25519), which TCP clients
    /// pin: needed with a `tcp:` address (TCP is authenticated and encrypted, Noise).
    #[arg(long, value_name = "FILE", requires = "tcp_trust")]
    tcp_identity: Option<std::path::PathBuf>,
    /// The directory of the public keys (`NAME.pub`) of the clients that may connect
    /// over TCP; each may use only its own name as member name.
    #[arg(long, value_name = "DIR", requires = "tcp_identity")]
    tcp_trust: Option<std::path::PathBuf>,
}

/// An octal mode of at most 777 that lets the owner read and write.
fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if mode > 0o777 || mode & 0o600 != 0o600 {
        return Err(format!(
            "{s} must be at most 777 and let the owner read and write (6xx)"
        ));
    }
    Ok(mode)
}

impl DaemonArgs {
    fn config(&self) -> Result<DaemonConfig, String> {
        let mib = |m: u64| {
            usize::try_from(m)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20)
        };
        let defaults = DaemonConfig::default();
        let tcp = match (&self.tcp_identity, &self.tcp_trust) {
            (Some(identity), Some(trust)) => {
                Some(crate::daemon_config::tcp_security(identity, trust)?)
            }
            _ => None,
        };
        let listen = self.listen.clone().unwrap_or(defaults.listen.clone());
        if matches!(listen, Address::Tcp(_)) && tcp.is_none() {
            return Err(format!(
                "--listen {listen} needs --tcp-identity FILE and --tcp-trust DIR: TCP clients are authenticated and encrypted with Noise"
            ));
        }
        Ok(DaemonConfig {
            listen,
            tcp,
            flush_timeout: Duration::from_millis(self.flush_timeout_ms),
            queue_limit: mib(self.queue_limit_mib),
            stall_timeout: Duration::from_millis(self.stall_timeout_ms),
            frame_timeout: Duration::from_millis(self.frame_timeout_ms),
            receive_budget: mib(self.receive_budget_mib),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            threads: usize::try_from(self.threads).unwrap_or(usize::MAX),
            socket_mode: self.socket_mode,
            ..defaults
        })
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts it down gracefully.
pub fn run(args: DaemonArgs) -> ExitCode {
    if let Some(path) = &args.check_config {
        return match crate::daemon_config::load(path) {
            Ok(config) => {
                let tcp = config.tcp.as_ref().map_or(String::new(), |t| {
                    format!(
                        ", tcp as {} for {} client key(s)",
                        t.identity.name(),
                        t.clients.len()
                    )
                });
                println!(
                    "{}: ok (listen {}, {} name rule(s), {} group rule(s){tcp})",
                    path.display(),
                    config.listen,
                    config.access.names.len(),
                    config.access.groups.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    let config = match &args.config {
        Some(path) => match crate::daemon_config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                eprintln!("conclave daemon: the configuration has errors:\n{errors}");
                return ExitCode::from(2);
            }
        },
        None => match args.config() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("conclave daemon: {e}");
                return ExitCode::from(2);
            }
        },
    };
    // One thread: a current-thread runtime (no wake-ups between threads at all).
    let mut builder = if config.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conclave daemon: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(serve(config, termination()))
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Where a client command reaches the daemon: `connect` (default: the address a plain
/// `conclave daemon` of this user listens on) and the daemon's public key read from
/// `daemon_key`, which a `tcp:` address needs (the daemon must prove that key).
pub fn target(
    connect: Option<&Address>,
    daemon_key: Option<&std::path::Path>,
) -> Result<(Address, Option<conclave_policy::PublicKeyFile>), String> {
    let address = connect
        .cloned()
        .unwrap_or_else(conclave_gcs::daemon::default_address);
    let key = match daemon_key {
        Some(path) => Some(conclave_policy::PublicKeyFile::read(path).map_err(|e| e.to_string())?),
        None if matches!(address, Address::Tcp(_)) => {
            return Err(format!(
                "{address} is TCP: give the daemon's public key with --daemon-key FILE"
            ));
        }
        None => None,
    };
    Ok((address, key))
}

/// Binds, prints the address, serves until `stop` resolves, then shuts down.
async fn serve(config: DaemonConfig, stop: impl Future<Output = ()>) -> ExitCode {
    let listen = config.listen.clone();
    // A socket handed over by the service manager (systemd's conclave-daemon.socket:
    // LISTEN_FDS and LISTEN_PID) takes the place of `listen`.
    let inherited = match listenfd::ListenFd::from_env().take_unix_listener(0) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("conclave daemon: the socket passed by the service manager is unusable: {e}");
            return ExitCode::from(2);
        }
    };
    let bound = match inherited {
        Some(listener) => Daemon::bind_inherited(config, listener).await,
        None => Daemon::bind(config).await,
    };
    let daemon = match bound {
        Ok(d) => d,
        Err(e) => {
            eprintln!("conclave daemon: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("listening on {}", daemon.address());
    stop.await;
    daemon.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_gcs::{Client, Event, GcsError, GroupName, MemberName};

    #[test]
    fn serves_until_stopped_then_tells_clients() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let addr: Address = format!("unix:{}", dir.path().join("d.sock").display())
                .parse()
                .unwrap();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let config = DaemonConfig {
                listen: addr.clone(),
                ..DaemonConfig::default()
            };
            let server = tokio::spawn(serve(config, async {
                let _ = stop_rx.await;
            }));
            let mut client = loop {
                match Client::connect(&addr, MemberName::new("a").unwrap()).await {
                    Ok(c) => break c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let group = GroupName::new("g").unwrap();
            client.join(&group).await.unwrap();
            assert!(matches!(client.next_event().await, Ok(Event::View(_))));
            stop_tx.send(()).unwrap();
            assert_eq!(server.await.unwrap(), ExitCode::SUCCESS);
            assert_eq!(
                client.next_event().await,
                Err(GcsError::Disconnected {
                    reason: "daemon shutting down".into()
                })
            );
        });
    }

    #[test]
    fn a_busy_address_is_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // A socket another daemon answers on.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("d.sock");
            let _taken = std::os::unix::net::UnixListener::bind(&path).unwrap();
            let config = DaemonConfig {
                listen: Address::Unix(path),
                ..DaemonConfig::default()
            };
            assert_eq!(serve(config, async {}).await, ExitCode::from(2));
        });
    }
}
