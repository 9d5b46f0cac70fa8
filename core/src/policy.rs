//! Policy files ([`conclave_policy`]) put to work: the plugins they name are loaded
//! (with their pins), the policy is checked against what is installed, and each group's
//! settings and the trust store come from it.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use conclave_plugin_sdk::PluginKind;
use conclave_plugin_sdk::ka_kit::MapTrustStore;
use conclave_policy::{Catalog, CatalogPlugin, Kind, Policy, PolicyErrors, Resolved};

use crate::{
    plugins::{LoadError, Registry, Sha256Pin},
    settings::{GroupSettings, PolicySource, Security},
};

/// Why a policy cannot be put to work.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The file itself is wrong (each error with `FILE:LINE`).
    #[error("{0}")]
    Policy(#[from] PolicyErrors),
    /// The built-in plugins could not be registered.
    #[error("{0}")]
    Plugin(#[from] LoadError),
    /// A plugin library it names (or a pin it sets) was refused: at the line of the
    /// pin for a digest mismatch, else at the line of the path.
    #[error("{at}: {source}")]
    PluginAt {
        /// The line of the pin or of the plugin path.
        at: conclave_policy::Position,
        /// Why the library was refused.
        source: LoadError,
    },
}

/// What the registry offers, in the policy's terms.
pub fn catalog(registry: &Registry) -> Vec<CatalogPlugin> {
    registry
        .plugins()
        .iter()
        .map(|p| CatalogPlugin {
            name: p.name().to_string(),
            kind: match p.kind() {
                PluginKind::Provider => Kind::Provider,
                PluginKind::Cipher => Kind::Cipher,
                _ => Kind::KeyAgreement,
            },
            algorithms: p
                .info()
                .algorithms
                .iter()
                .map(|a| (a.class.to_string(), a.name.clone()))
                .collect(),
        })
        .collect()
}

/// The built-in plugins plus every library the policy's `[plugins] paths` name (files,
/// or directories of `.so` files), each checked against its pin.
pub fn registry_for(policy: &Policy) -> Result<Registry, PolicyLoadError> {
    let mut registry = Registry::with_builtins()?;
    let pins: BTreeMap<String, Sha256Pin> = policy
        .pins()
        .map(|(name, pin)| (name.to_string(), Sha256Pin(*pin)))
        .collect();
    let at = |line: &conclave_policy::Position, file: &Path, source: LoadError| {
        let at = match &source {
            LoadError::PinMismatch { .. } => policy
                .pin_located(file)
                .map_or_else(|| line.clone(), |p| p.at.clone()),
            _ => line.clone(),
        };
        PolicyLoadError::PluginAt { at, source }
    };
    for located in policy.plugin_paths_located() {
        let path = &located.value;
        if path.is_dir() {
            let results = registry
                .load_dir(path, &pins)
                .map_err(|e| at(&located.at, path, e))?;
            for (file, result) in results {
                result.map_err(|e| at(&located.at, &file, e))?;
            }
        } else {
            let pin = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| pins.get(n));
            registry
                .load_file(path, pin)
                .map_err(|e| at(&located.at, path, e))?;
        }
    }
    Ok(registry)
}

/// The trust store of the policy (its key directory and inline keys).
pub fn trust_for(policy: &Policy) -> MapTrustStore {
    let store = MapTrustStore::new();
    for (name, key) in policy.trust().iter() {
        store.insert(name, key.algorithm(), key.bytes());
    }
    store
}

/// A loaded, validated policy: group settings for sessions.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    policy: Policy,
    catalog: Vec<CatalogPlugin>,
}

impl PolicyFile {
    /// Checks `policy` against `registry`.
    pub fn new(policy: Policy, registry: &Registry) -> Result<Self, PolicyErrors> {
        let catalog = catalog(registry);
        policy.validate(registry)?;
        Ok(Self { policy, catalog })
    }

    /// Loads the file at `path` (with environment overrides), loads the plugins it
    /// names and checks it: the registry, the policy and the trust store, ready for a
    /// [`crate::Session`].
    pub fn load(path: &Path) -> Result<(Arc<Registry>, Self, MapTrustStore), PolicyLoadError> {
        let policy = Policy::load(path)?;
        let registry = registry_for(&policy)?;
        let file = Self::new(policy, &registry)?;
        let trust = trust_for(&file.policy);
        Ok((Arc::new(registry), file, trust))
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// What `group` gets, with where each setting comes from.
    pub fn resolve(&self, group: &str) -> Result<Resolved, PolicyErrors> {
        self.policy.resolve(group, &self.catalog)
    }
}

// The policy crate's built-in agreement timeout (it does not depend on this crate) is
// the one sessions use without a policy.
const _: () = assert!(
    conclave_policy::builtin::AGREEMENT_TIMEOUT.as_nanos()
        == crate::settings::DEFAULT_AGREEMENT_TIMEOUT.as_nanos()
);

impl From<&Resolved> for GroupSettings {
    fn from(r: &Resolved) -> Self {
        GroupSettings {
            security: match r.security {
                conclave_policy::Security::Required => Security::Required,
                conclave_policy::Security::None => Security::None,
            },
            key_agreement: r.key_agreement.clone(),
            cipher: r.cipher.clone(),
            cipher_algorithm: r.cipher_algorithm.clone(),
            dh_group: r.dh_group.clone(),
            provider: r.provider.clone(),
            cipher_provider: (r.cipher_provider != r.provider).then(|| r.cipher_provider.clone()),
            signature: r.signature.clone(),
            rekey_interval: r.rekey_interval,
            members: r.members.clone(),
            agreement_timeout: r.agreement_timeout,
            cipher_options: r.options_for(&r.cipher).to_vec(),
            key_agreement_options: r.options_for(&r.key_agreement).to_vec(),
            provider_options: r.options_for(&r.provider).to_vec(),
            cipher_provider_options: r.options_for(&r.cipher_provider).to_vec(),
        }
    }
}

impl PolicySource for PolicyFile {
    fn settings(&self, group: &str) -> Result<GroupSettings, String> {
        self.resolve(group)
            .map(|r| GroupSettings::from(&r))
            .map_err(|e| e.to_string())
    }

    fn version(&self) -> u64 {
        self.policy.version()
    }

    fn is_admin(&self, identity: &str) -> bool {
        self.policy.admins().any(|a| a == identity)
    }

    fn adopt(
        &self,
        text: &str,
        origin: &str,
        registry: &Registry,
    ) -> Result<Arc<dyn PolicySource>, String> {
        let published = self
            .policy
            .published(text, origin)
            .map_err(|e| e.to_string())?;
        let file = PolicyFile::new(published, registry).map_err(|e| e.to_string())?;
        Ok(Arc::new(file))
    }
}

impl Catalog for Registry {
    fn plugins(&self) -> Vec<CatalogPlugin> {
        catalog(self)
    }

    /// The plugin itself checks the options (through the ABI).
    fn check_options(&self, plugin: &str, options: &[(String, String)]) -> Result<(), String> {
        let p = self
            .get(plugin)
            .ok_or_else(|| format!("no plugin named {plugin}"))?;
        p.check_options(&crate::settings::abi_options(options))
            .map_err(|e| e.message.to_string())
    }

    /// The cipher plugin is made on a fresh instance of the provider, as a group
    /// would make it: its constructor asks the provider for what it needs.
    fn check_cipher(
        &self,
        (cipher, algorithm, cipher_options): (&str, &str, &[(String, String)]),
        (provider, provider_options): (&str, &[(String, String)]),
    ) -> Result<(), String> {
        let reason = |e: LoadError| match e {
            LoadError::Instantiate { source, .. } => source.message.to_string(),
            other => other.to_string(),
        };
        let provider = self
            .new_provider(provider, crate::settings::abi_options(provider_options))
            .map_err(reason)?;
        self.get_kind(cipher, PluginKind::Cipher)
            .and_then(|p| {
                p.new_cipher(&conclave_plugin_sdk::api::cipher::CipherConfig {
                    algorithm: algorithm.into(),
                    group: "policy-check".into(),
                    local_member: "policy-check".into(),
                    provider: provider.to_abi(),
                    options: crate::settings::abi_options(cipher_options),
                })
            })
            .map(drop)
            .map_err(reason)
    }
}
