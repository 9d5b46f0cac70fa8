//! What the demo, the chat and the benchmarks share: their runtime, an embedded daemon,
//! and members with fresh identities that trust each other.

use std::{path::Path, sync::Arc, time::Duration};

use conclave::{
    FixedPolicy, GroupSettings, Identity, Session,
    plugins::Registry,
    sdk::{Options, ka_kit::MapTrustStore},
};
use conclave_gcs::{Address, Daemon, DaemonConfig};

/// The runtime of a command's members: two worker threads (this project's machines have
/// two cores).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A daemon inside this process on a private Unix socket in `dir`.
pub async fn daemon(
    dir: &Path,
    flush_timeout: Option<Duration>,
) -> Result<(Daemon, Address), String> {
    let address: Address = format!("unix:{}", dir.join("engine.sock").display())
        .parse()
        .map_err(|e| format!("{e:?}"))?;
    let defaults = DaemonConfig::default();
    let daemon = Daemon::bind(DaemonConfig {
        listen: address.clone(),
        flush_timeout: flush_timeout.unwrap_or(defaults.flush_timeout),
        ..defaults
    })
    .await
    .map_err(|e| format!("cannot start the embedded engine: {e}"))?;
    Ok((daemon, address))
}

/// A fresh identity for `name` (the signature of `settings` on its provider), added
/// to `trust`.
pub fn identity(
    registry: &Registry,
    settings: &GroupSettings,
    trust: &MapTrustStore,
    name: &str,
) -> Result<Identity, String> {
    let provider = registry
        .new_provider(&settings.provider, Options::default())
        .map_err(|e| format!("{name}: {e}"))?;
    let identity = Identity::generate(&provider, name, &settings.signature)
        .map_err(|e| format!("{name}: {e}"))?;
    trust.insert(name, identity.signature(), identity.public_key());
    Ok(identity)
}

/// `name`, with a fresh trusted identity, connected to the daemon at `address` with
/// the fixed `settings`.
pub async fn session(
    address: &Address,
    registry: &Arc<Registry>,
    settings: &GroupSettings,
    trust: &MapTrustStore,
    name: &str,
) -> Result<Session, String> {
    let identity = identity(registry, settings, trust, name)?;
    Session::connect(
        address,
        identity,
        registry.clone(),
        Arc::new(FixedPolicy(settings.clone())),
        trust.clone(),
    )
    .await
    .map_err(|e| format!("{name}: {e}"))
}
