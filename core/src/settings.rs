//! What secures a group: the modules and parameters a policy picks for it.

use std::time::Duration;

use serde::Serialize;

use crate::plugins::Registry;

/// Whether a group is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// A key agreement keys the group and every message is sealed.
    Required,
    /// A plain view-synchronous group: messages travel unencrypted.
    None,
}

/// The modules and parameters of one group, as resolved from a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupSettings {
    /// Secured or plain.
    pub security: Security,
    /// The key-agreement plugin (`gdh`, `ckd`).
    pub key_agreement: String,
    /// The cipher plugin (`aes-gcm`, ...).
    pub cipher: String,
    /// The cipher's algorithm (`aes-256-gcm`, ...).
    pub cipher_algorithm: String,
    /// The DH group.
    pub dh_group: String,
    /// The provider this member uses (others may use another: the names and encodings
    /// are the same): the key agreement's, the signatures', and the cipher's unless
    /// [`GroupSettings::cipher_provider`] names another.
    pub provider: String,
    /// The cipher plugin's provider when it is not [`GroupSettings::provider`] (a
    /// provider of symmetric primitives only, such as `aws-lc`). Local too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_provider: Option<String>,
    /// The signature algorithm of identities.
    pub signature: String,
    /// Refresh the key this often, if set.
    #[serde(with = "duration_secs")]
    pub rekey_interval: Option<Duration>,
    /// The identities allowed to join (any trusted one if `None`).
    pub members: Option<Vec<String>>,
    /// How long an agreement may wait for a member of the secure view: a member that has
    /// not taken part by then is left out (by a signed decision delivered in agreed
    /// order), and the others key without it.
    #[serde(serialize_with = "secs")]
    pub agreement_timeout: Duration,
    /// Options for the cipher plugin, from the policy (`options.PLUGIN`), as text.
    #[serde(default)]
    pub cipher_options: Vec<(String, String)>,
    /// Options for the key-agreement plugin.
    #[serde(default)]
    pub key_agreement_options: Vec<(String, String)>,
    /// Options for the provider plugin (local: not part of what members agree on).
    #[serde(default)]
    pub provider_options: Vec<(String, String)>,
    /// Options for the cipher's provider when it is another one (local as well).
    #[serde(default)]
    pub cipher_provider_options: Vec<(String, String)>,
}

/// Options as the plugin ABI carries them.
pub(crate) fn abi_options(options: &[(String, String)]) -> conclave_plugin_sdk::api::Options {
    let mut out = conclave_plugin_sdk::api::Options::default();
    for (k, v) in options {
        out = out.with(k.as_str(), v.as_str());
    }
    out
}

/// The default [`GroupSettings::agreement_timeout`].
pub const DEFAULT_AGREEMENT_TIMEOUT: Duration = Duration::from_secs(5);

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            security: Security::Required,
            key_agreement: "gdh".into(),
            cipher: "aes-gcm".into(),
            cipher_algorithm: "aes-256-gcm".into(),
            dh_group: "ristretto255".into(),
            provider: "rustcrypto".into(),
            cipher_provider: None,
            signature: "ed25519".into(),
            rekey_interval: None,
            members: None,
            agreement_timeout: DEFAULT_AGREEMENT_TIMEOUT,
            cipher_options: Vec::new(),
            key_agreement_options: Vec::new(),
            provider_options: Vec::new(),
            cipher_provider_options: Vec::new(),
        }
    }
}

impl GroupSettings {
    /// The provider the cipher plugin computes on.
    pub fn cipher_provider(&self) -> &str {
        self.cipher_provider.as_deref().unwrap_or(&self.provider)
    }

    /// The bytes every member of the group must agree on: the protocols, algorithms and
    /// plugin versions (not the provider, which may differ between members). They are
    /// bound into every key-agreement message and announced by the oldest member.
    pub fn descriptor(&self, registry: &Registry) -> Vec<u8> {
        let version = |name: &str| {
            registry
                .get(name)
                .map(|p| p.info().version.clone())
                .unwrap_or_default()
        };
        let mut text = format!(
            "conclave/group-modules/v1\nsecurity={:?}\nkey_agreement={} {}\ncipher={} {} {}\ndh_group={}\nsignature={}\n",
            self.security,
            self.key_agreement,
            version(&self.key_agreement),
            self.cipher,
            version(&self.cipher),
            self.cipher_algorithm,
            self.dh_group,
            self.signature,
        );
        // Options that change what travels are part of what members must agree on
        // (present only when the policy sets some, so that other descriptors are as
        // before).
        for (name, options) in [
            ("key_agreement_options", &self.key_agreement_options),
            ("cipher_options", &self.cipher_options),
        ] {
            if !options.is_empty() {
                let joined: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                text.push_str(&format!("{name}={}\n", joined.join(",")));
            }
        }
        text.into_bytes()
    }

    /// A one-line summary for errors and logs.
    pub fn summary(&self) -> String {
        match self.security {
            Security::None => "security none".into(),
            Security::Required => {
                let cipher_provider = match self.cipher_provider() {
                    p if p != self.provider => format!(" (cipher on {p})"),
                    _ => String::new(),
                };
                format!(
                    "{} + {} ({}) on {}, {}{cipher_provider}",
                    self.key_agreement,
                    self.cipher,
                    self.cipher_algorithm,
                    self.dh_group,
                    self.provider
                )
            }
        }
    }
}

/// Where a session gets each group's settings and the trusted keys.
pub trait PolicySource: Send + Sync {
    /// The settings of `group`, or why the policy gives none.
    fn settings(&self, group: &str) -> Result<GroupSettings, String>;

    /// The policy's version (`[policy] version`; 0 when it has none): a policy that an
    /// administrator publishes must carry a higher one.
    fn version(&self) -> u64 {
        0
    }

    /// Whether `identity` is one of the administrators (`[trust] admins`) whose signed
    /// policies this member adopts. Administrators take no part in groups' keys.
    fn is_admin(&self, identity: &str) -> bool {
        let _ = identity;
        false
    }

    /// Reads a policy an administrator published (`text`, named `origin` in messages)
    /// in this policy's context (its plugins, trust store and administrators) and
    /// checks it against `registry`: the source a group adopts, or why not.
    fn adopt(
        &self,
        text: &str,
        origin: &str,
        registry: &crate::plugins::Registry,
    ) -> Result<std::sync::Arc<dyn PolicySource>, String> {
        let _ = (text, origin, registry);
        Err("this member's policy is not a policy file: it adopts no published policy".into())
    }
}

/// The same settings for every group.
#[derive(Clone, Debug, Default)]
pub struct FixedPolicy(pub GroupSettings);

impl PolicySource for FixedPolicy {
    fn settings(&self, _group: &str) -> Result<GroupSettings, String> {
        Ok(self.0.clone())
    }
}

/// Settings by group-name prefix, first match wins, then a default.
#[derive(Clone, Debug, Default)]
pub struct PrefixPolicy {
    /// `(prefix, settings)` rules, in order.
    pub rules: Vec<(String, GroupSettings)>,
    /// Settings of groups no rule matches.
    pub default: GroupSettings,
}

impl PolicySource for PrefixPolicy {
    fn settings(&self, group: &str) -> Result<GroupSettings, String> {
        Ok(self
            .rules
            .iter()
            .find(|(p, _)| group.starts_with(p.as_str()))
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| self.default.clone()))
    }
}
