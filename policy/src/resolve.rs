//! What a group gets: validation against the installed plugins, and resolution.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{Catalog, Installed, Kind, class};
use crate::error::{Located, PolicyError, PolicyErrors, Position};
use crate::policy::{GroupRule, Policy, Security};
use crate::trust::Trust;

/// Conclave's built-in defaults, used where neither a rule nor `[defaults]` says.
pub mod builtin {
    use std::time::Duration;

    use crate::policy::Security;

    /// Key agreement: Cliques group Diffie-Hellman.
    pub const KEY_AGREEMENT: &str = "gdh";
    /// Cipher: an algorithm name, so it resolves to the plugin offering it (`aes-gcm`).
    pub const CIPHER: &str = "aes-256-gcm";
    /// DH group: RFC 7919's 2048-bit group, offered by both providers (`rustcrypto`
    /// and `openssl`), so members on different providers interoperate.
    pub const DH_GROUP: &str = "ffdhe2048";
    /// Provider: pure Rust, no system library needed.
    pub const PROVIDER: &str = "rustcrypto";
    /// Signature algorithm of identity keys.
    pub const SIGNATURE: &str = crate::trust::DEFAULT_SIGNATURE;
    /// Groups are secured unless the policy says `security = "none"`.
    pub const SECURITY: Security = Security::Required;
    /// A key agreement waits 5 s for each member of the secure view before leaving it
    /// out (equal to `conclave::settings::DEFAULT_AGREEMENT_TIMEOUT`).
    pub const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(5);
}

/// Where a resolved setting comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `[[group]]` rule.
    Rule {
        /// The rule's number in the file, from 1.
        index: usize,
        /// Its `match` pattern.
        pattern: String,
        /// Where the setting is (a line, or an environment variable).
        at: Position,
    },
    /// `[defaults]` (in the file or from the environment).
    Defaults {
        /// Where the setting is.
        at: Position,
    },
    /// Conclave's built-in default ([`builtin`]).
    BuiltIn,
}

impl Source {
    /// The position of the setting ([`Position::BuiltIn`] for a built-in default).
    pub fn position(&self) -> Position {
        match self {
            Source::Rule { at, .. } | Source::Defaults { at } => at.clone(),
            Source::BuiltIn => Position::BuiltIn,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Rule { index, pattern, at } => {
                write!(f, "group rule #{index} (match \"{pattern}\") at {at}")
            }
            Source::Defaults { at } => write!(f, "[defaults] at {at}"),
            Source::BuiltIn => f.write_str("built-in default"),
        }
    }
}

/// For each resolved setting, where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Of [`Resolved::security`].
    pub security: Source,
    /// Of [`Resolved::key_agreement`].
    pub key_agreement: Source,
    /// Of [`Resolved::cipher`] and [`Resolved::cipher_algorithm`].
    pub cipher: Source,
    /// Of [`Resolved::dh_group`].
    pub dh_group: Source,
    /// Of [`Resolved::provider`].
    pub provider: Source,
    /// Of [`Resolved::cipher_provider`] (the provider's own source when the policy
    /// does not set it).
    pub cipher_provider: Source,
    /// Of [`Resolved::signature`].
    pub signature: Source,
    /// Of [`Resolved::rekey_interval`].
    pub rekey_interval: Source,
    /// Of [`Resolved::agreement_timeout`].
    pub agreement_timeout: Source,
    /// Of [`Resolved::members`].
    pub members: Source,
    /// Of each plugin's entry of [`Resolved::options`].
    pub options: BTreeMap<String, Source>,
}

/// What one group gets: every setting filled, and where each comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The group's name.
    pub group: String,
    /// The number of the rule that matched, if one did.
    pub rule: Option<usize>,
    /// The `match` pattern of that rule.
    pub rule_pattern: Option<String>,
    /// Secured or plain.
    pub security: Security,
    /// Key-agreement plugin.
    pub key_agreement: String,
    /// Cipher plugin.
    pub cipher: String,
    /// The algorithm asked of the cipher plugin (its `CipherConfig::algorithm`).
    pub cipher_algorithm: String,
    /// DH group.
    pub dh_group: String,
    /// Provider plugin: the key agreement's and the signatures', and the cipher's
    /// unless [`Resolved::cipher_provider`] differs.
    pub provider: String,
    /// The cipher plugin's provider: `cipher_provider` if the policy sets it, else
    /// [`Resolved::provider`]. Local, like the provider: members may differ.
    pub cipher_provider: String,
    /// Signature algorithm of identity keys.
    pub signature: String,
    /// Periodic rekey, if any.
    pub rekey_interval: Option<Duration>,
    /// How long a key agreement may wait for a member of the secure view before it is
    /// left out ([`builtin::AGREEMENT_TIMEOUT`] unless the policy says).
    pub agreement_timeout: Duration,
    /// The identities allowed to join; `None`: any trusted identity.
    pub members: Option<Vec<String>>,
    /// Options by plugin name (the rule's table for a plugin, else the defaults'),
    /// values as text.
    pub options: BTreeMap<String, Vec<(String, String)>>,
    /// Where each setting comes from.
    pub sources: Sources,
    trust: Arc<Trust>,
}

/// Label of the context encoding (version 1).
pub const CONTEXT_LABEL: &[u8] = b"conclave/group-context/v1";

/// Encodes `(name, value)` fields canonically: [`CONTEXT_LABEL`], then for each field
/// in order its name and its value, each as a 4-byte big-endian length and the bytes.
/// Anything the host wants bound beyond [`Resolved::context_fields`] (plugin versions,
/// say) is appended to those fields before encoding.
pub fn encode_context<N: AsRef<str>, V: AsRef<str>>(fields: &[(N, V)]) -> Vec<u8> {
    let mut out = CONTEXT_LABEL.to_vec();
    for (name, value) in fields {
        for part in [name.as_ref(), value.as_ref()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

impl Resolved {
    /// Whether `identity` may join: in a secured group it must be in the trust store;
    /// in any group, in the rule's `members` when the rule lists them.
    pub fn may_join(&self, identity: &str) -> bool {
        let listed = self
            .members
            .as_ref()
            .is_none_or(|m| m.iter().any(|n| n == identity));
        let trusted = self.security == Security::None || self.trust.contains(identity);
        listed && trusted
    }

    /// The trust store the group is checked against.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// A readable account of every setting and where it comes from, one per line
    /// (what `conclave policy explain FILE GROUP` prints):
    ///
    /// ```text
    /// group ops-1: group rule #1 (match "ops-*")
    ///   security          required                 built-in default
    ///   key_agreement     ckd                      group rule #1 (match "ops-*") at policy.toml:10
    ///   ...
    /// ```
    pub fn explain(&self) -> String {
        let rule = match (&self.rule, &self.rule_pattern) {
            (Some(i), Some(p)) => format!("group rule #{i} (match \"{p}\")"),
            _ => "no rule matches: [defaults] and built-in defaults".to_owned(),
        };
        let mut out = format!("group {}: {rule}\n", self.group);
        let members = self.members.as_ref().map_or_else(
            || match self.security {
                Security::Required => "any trusted identity".to_owned(),
                Security::None => "anyone".to_owned(),
            },
            |m| m.join(", "),
        );
        let rekey = self.rekey_interval.map_or_else(
            || "none".to_owned(),
            |d| humantime::format_duration(d).to_string(),
        );
        let rows: [(&str, String, &Source); 10] = [
            (
                "security",
                self.security.to_string(),
                &self.sources.security,
            ),
            (
                "key_agreement",
                self.key_agreement.clone(),
                &self.sources.key_agreement,
            ),
            (
                "cipher",
                format!("{} ({})", self.cipher, self.cipher_algorithm),
                &self.sources.cipher,
            ),
            ("dh_group", self.dh_group.clone(), &self.sources.dh_group),
            ("provider", self.provider.clone(), &self.sources.provider),
            (
                "cipher_provider",
                self.cipher_provider.clone(),
                &self.sources.cipher_provider,
            ),
            ("signature", self.signature.clone(), &self.sources.signature),
            ("rekey_interval", rekey, &self.sources.rekey_interval),
            (
                "agreement_timeout",
                humantime::format_duration(self.agreement_timeout).to_string(),
                &self.sources.agreement_timeout,
            ),
            ("members", members, &self.sources.members),
        ];
        for (key, value, source) in rows {
            out.push_str(&format!("  {key:<17} {value:<24} {source}\n"));
        }
        for (plugin, options) in &self.options {
            let value = options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let key = format!("options.{plugin}");
            let source = self
                .sources
                .options
                .get(plugin)
                .map_or_else(String::new, ToString::to_string);
            out.push_str(&format!("  {key:<17} {value:<24} {source}\n"));
        }
        out
    }

    /// The options the policy gives `plugin` (none if it gives none).
    pub fn options_for(&self, plugin: &str) -> &[(String, String)] {
        self.options.get(plugin).map_or(&[], Vec::as_slice)
    }

    /// The settings every member must agree on, in a fixed order: key agreement,
    /// cipher plugin, cipher algorithm, DH group, signature. Not the providers (members
    /// may compute on different ones) nor the rekey interval, agreement timeout or
    /// members list.
    ///
    /// The options of the cipher and of the key agreement change what travels, so
    /// they are part of it when the policy sets any (`k=v` pairs in key order, joined
    /// by newlines).
    pub fn context_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("key_agreement", self.key_agreement.clone()),
            ("cipher", self.cipher.clone()),
            ("cipher_algorithm", self.cipher_algorithm.clone()),
            ("dh_group", self.dh_group.clone()),
            ("signature", self.signature.clone()),
        ];
        let canonical = |options: &[(String, String)]| {
            options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        for (name, plugin) in [
            ("key_agreement_options", &self.key_agreement),
            ("cipher_options", &self.cipher),
        ] {
            let options = self.options_for(plugin);
            if !options.is_empty() {
                fields.push((name, canonical(options)));
            }
        }
        fields
    }

    /// [`Resolved::context_fields`] encoded by [`encode_context`]: the bytes for
    /// `KeyAgreementConfig::context`. Equal at two members exactly when they agree.
    pub fn context_bytes(&self) -> Vec<u8> {
        encode_context(&self.context_fields())
    }
}

/// A setting with its source, after rule → defaults → built-in.
struct Eff<T> {
    value: T,
    source: Source,
}

impl<T> Eff<T> {
    fn at(&self) -> Position {
        self.source.position()
    }
}

/// All settings of one scope: a rule (over the defaults) or the defaults alone.
struct Effective {
    scope: String,
    security: Eff<Security>,
    key_agreement: Eff<String>,
    cipher: Eff<String>,
    dh_group: Eff<String>,
    provider: Eff<String>,
    cipher_provider: Eff<String>,
    signature: Eff<String>,
    rekey_interval: Eff<Option<Duration>>,
    agreement_timeout: Eff<Duration>,
    members: Eff<Option<Vec<Located<String>>>>,
    options: BTreeMap<String, Eff<Vec<(String, String)>>>,
}

impl Policy {
    fn effective(&self, rule: Option<&GroupRule>) -> Effective {
        fn pick<T: Clone>(
            rule: Option<&GroupRule>,
            from_rule: Option<&Located<T>>,
            from_defaults: Option<&Located<T>>,
            builtin: T,
        ) -> Eff<T> {
            if let (Some(r), Some(v)) = (rule, from_rule) {
                return Eff {
                    value: v.value.clone(),
                    source: Source::Rule {
                        index: r.index,
                        pattern: r.pattern.value.clone(),
                        at: v.at.clone(),
                    },
                };
            }
            match from_defaults {
                Some(v) => Eff {
                    value: v.value.clone(),
                    source: Source::Defaults { at: v.at.clone() },
                },
                None => Eff {
                    value: builtin,
                    source: Source::BuiltIn,
                },
            }
        }
        let d = &self.defaults;
        let r = rule.map(|r| &r.settings);
        let s = |v: &str| v.to_owned();
        let rekey = pick(
            rule,
            r.and_then(|r| r.rekey_interval.as_ref()),
            d.rekey_interval.as_ref(),
            Duration::ZERO,
        );
        let provider = pick(
            rule,
            r.and_then(|r| r.provider.as_ref()),
            d.provider.as_ref(),
            s(builtin::PROVIDER),
        );
        // Unset, the cipher's provider is the group's, from wherever that comes.
        let cipher_provider = pick(
            rule,
            r.and_then(|r| r.cipher_provider.as_ref()),
            d.cipher_provider.as_ref(),
            String::new(),
        );
        let cipher_provider = match cipher_provider.source {
            Source::BuiltIn => Eff {
                value: provider.value.clone(),
                source: provider.source.clone(),
            },
            _ => cipher_provider,
        };
        Effective {
            scope: match rule {
                Some(r) => format!("group rule #{} (\"{}\")", r.index, r.pattern.value),
                None => "[defaults]".into(),
            },
            security: pick(
                rule,
                r.and_then(|r| r.security.as_ref()),
                d.security.as_ref(),
                builtin::SECURITY,
            ),
            key_agreement: pick(
                rule,
                r.and_then(|r| r.key_agreement.as_ref()),
                d.key_agreement.as_ref(),
                s(builtin::KEY_AGREEMENT),
            ),
            cipher: pick(
                rule,
                r.and_then(|r| r.cipher.as_ref()),
                d.cipher.as_ref(),
                s(builtin::CIPHER),
            ),
            dh_group: pick(
                rule,
                r.and_then(|r| r.dh_group.as_ref()),
                d.dh_group.as_ref(),
                s(builtin::DH_GROUP),
            ),
            provider,
            cipher_provider,
            signature: pick(
                rule,
                r.and_then(|r| r.signature.as_ref()),
                d.signature.as_ref(),
                s(builtin::SIGNATURE),
            ),
            rekey_interval: Eff {
                value: (rekey.source != Source::BuiltIn).then_some(rekey.value),
                source: rekey.source,
            },
            agreement_timeout: pick(
                rule,
                r.and_then(|r| r.agreement_timeout.as_ref()),
                d.agreement_timeout.as_ref(),
                builtin::AGREEMENT_TIMEOUT,
            ),
            options: d
                .options
                .keys()
                .chain(r.map(|r| r.options.keys()).into_iter().flatten())
                .map(|plugin| {
                    let eff = pick(
                        rule,
                        r.and_then(|r| r.options.get(plugin)),
                        d.options.get(plugin),
                        Vec::new(),
                    );
                    (plugin.clone(), eff)
                })
                .collect(),
            members: match rule.and_then(|r| r.members.as_ref().map(|m| (r, m))) {
                Some((r, m)) => Eff {
                    value: Some(m.clone()),
                    source: Source::Rule {
                        index: r.index,
                        pattern: r.pattern.value.clone(),
                        at: m.first().map_or(r.pattern.at.clone(), |n| n.at.clone()),
                    },
                },
                None => Eff {
                    value: None,
                    source: Source::BuiltIn,
                },
            },
        }
    }

    /// Checks the policy against what is installed: every key agreement, cipher and
    /// provider named (in `[defaults]`, in each rule, and the built-in defaults in
    /// use) is installed; for `[defaults]` and each secured rule, the DH group and
    /// signature algorithm are offered by the provider they combine with; each rule's
    /// `members` are in the trust store. Returns every error, each once.
    pub fn validate(&self, catalog: &dyn Catalog) -> Result<(), PolicyErrors> {
        let installed = Installed::new(catalog);
        let mut errors = Vec::new();
        let scopes = std::iter::once(None).chain(self.groups.iter().map(Some));
        for rule in scopes {
            let eff = self.effective(rule);
            check_scope(&eff, &installed, &mut errors);
            check_cipher(&eff, &installed, catalog, &mut errors);
        }
        // Every table of options, where it is written: its plugin is installed and
        // accepts it.
        let tables = std::iter::once(&self.defaults)
            .chain(self.groups.iter().map(|g| &g.settings))
            .flat_map(|s| s.options.iter());
        let names = installed.all_names();
        for (plugin, options) in tables {
            let error = if !names.contains(plugin) {
                PolicyError::UnknownOptionsPlugin {
                    at: options.at.clone(),
                    plugin: plugin.clone(),
                    known: names.clone(),
                }
            } else if let Err(reason) = catalog.check_options(plugin, &options.value) {
                PolicyError::BadOptions {
                    at: options.at.clone(),
                    plugin: plugin.clone(),
                    reason,
                }
            } else {
                continue;
            };
            push_once(&mut errors, error);
        }
        let known: Vec<String> = self.trust.names().map(str::to_owned).collect();
        for rule in &self.groups {
            for name in rule.members.iter().flatten() {
                if !self.trust.contains(&name.value) {
                    push_once(
                        &mut errors,
                        PolicyError::UnknownMember {
                            at: name.at.clone(),
                            name: name.value.clone(),
                            known: known.clone(),
                        },
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors::sorted(errors))
        }
    }

    /// What `group` gets: the first rule whose glob matches, then `[defaults]`, then
    /// the [`builtin`] defaults, field by field. The cipher setting resolves through
    /// `catalog`: a plugin name gives the plugin's preferred (first listed) algorithm,
    /// an algorithm name the plugin offering it. For a secured group, every setting is
    /// checked against `catalog` as in [`Policy::validate`]; a plain group is not
    /// checked (its modules are not used).
    pub fn resolve(&self, group: &str, catalog: &dyn Catalog) -> Result<Resolved, PolicyErrors> {
        let installed = Installed::new(catalog);
        let rule = self.rule_for(group);
        let eff = self.effective(rule);
        if eff.security.value == Security::Required {
            let mut errors = Vec::new();
            check_scope(&eff, &installed, &mut errors);
            check_cipher(&eff, &installed, catalog, &mut errors);
            if !errors.is_empty() {
                return Err(PolicyErrors::sorted(errors));
            }
        }
        let (cipher, cipher_algorithm) = installed
            .cipher(&eff.cipher.value)
            .unwrap_or_else(|| (eff.cipher.value.clone(), eff.cipher.value.clone()));
        Ok(Resolved {
            group: group.to_owned(),
            rule: rule.map(|r| r.index),
            rule_pattern: rule.map(|r| r.pattern.value.clone()),
            security: eff.security.value,
            key_agreement: eff.key_agreement.value,
            cipher,
            cipher_algorithm,
            dh_group: eff.dh_group.value,
            provider: eff.provider.value,
            cipher_provider: eff.cipher_provider.value,
            signature: eff.signature.value,
            rekey_interval: eff.rekey_interval.value,
            agreement_timeout: eff.agreement_timeout.value,
            members: eff
                .members
                .value
                .map(|m| m.into_iter().map(|n| n.value).collect()),
            options: eff
                .options
                .iter()
                .map(|(p, e)| (p.clone(), e.value.clone()))
                .collect(),
            sources: Sources {
                options: eff
                    .options
                    .iter()
                    .map(|(p, e)| (p.clone(), e.source.clone()))
                    .collect(),
                security: eff.security.source,
                key_agreement: eff.key_agreement.source,
                cipher: eff.cipher.source,
                dh_group: eff.dh_group.source,
                provider: eff.provider.source,
                cipher_provider: eff.cipher_provider.source,
                signature: eff.signature.source,
                rekey_interval: eff.rekey_interval.source,
                agreement_timeout: eff.agreement_timeout.source,
                members: eff.members.source,
            },
            trust: self.trust.clone(),
        })
    }
}

fn push_once(errors: &mut Vec<PolicyError>, e: PolicyError) {
    if !errors.contains(&e) {
        errors.push(e);
    }
}

/// The checks of one scope. Plugin names are checked in every scope (an unknown name
/// is an error even in a plain group's rule); algorithm combinations only in secured
/// scopes.
fn check_scope(eff: &Effective, installed: &Installed, errors: &mut Vec<PolicyError>) {
    for (key, kind, v) in [
        ("key_agreement", Kind::KeyAgreement, &eff.key_agreement),
        ("provider", Kind::Provider, &eff.provider),
        ("cipher_provider", Kind::Provider, &eff.cipher_provider),
    ] {
        // An unset cipher provider is the provider, reported as such.
        let inherited =
            key == "cipher_provider" && eff.cipher_provider.source == eff.provider.source;
        if !inherited && installed.find(kind, &v.value).is_none() {
            push_once(
                errors,
                PolicyError::UnknownPlugin {
                    at: v.at(),
                    key: key.into(),
                    kind,
                    value: v.value.clone(),
                    known: installed.names(kind),
                },
            );
        }
    }
    if installed.cipher(&eff.cipher.value).is_none() {
        push_once(
            errors,
            PolicyError::UnknownCipher {
                at: eff.cipher.at(),
                value: eff.cipher.value.clone(),
                known: installed.cipher_names(),
            },
        );
    }
    if eff.security.value != Security::Required {
        return;
    }
    let Some(provider) = installed.find(Kind::Provider, &eff.provider.value) else {
        return;
    };
    for (key, cls, v) in [
        ("dh_group", class::DH_GROUP, &eff.dh_group),
        ("signature", class::SIGNATURE, &eff.signature),
    ] {
        let offered = provider.offered(cls);
        if offered.contains(&v.value) {
            continue;
        }
        // A built-in value is blamed on the provider that lacks it.
        let at = match v.source {
            Source::BuiltIn => eff.provider.at(),
            _ => v.at(),
        };
        let e = PolicyError::UnknownAlgorithm {
            at,
            key: key.into(),
            value: v.value.clone(),
            provider: provider.name.clone(),
            scope: eff.scope.clone(),
            known: offered,
        };
        push_once_across_scopes(errors, e);
    }
}

/// Pushes `e` unless an error that differs from it only in its scope is there already:
/// a rule inheriting the defaults' mistake does not repeat it.
fn push_once_across_scopes(errors: &mut Vec<PolicyError>, e: PolicyError) {
    let unscoped = |e: &PolicyError| {
        let mut e = e.clone();
        if let PolicyError::UnknownAlgorithm { scope, .. }
        | PolicyError::CipherUnavailable { scope, .. } = &mut e
        {
            scope.clear();
        }
        e
    };
    let key = unscoped(&e);
    if !errors.iter().any(|old| unscoped(old) == key) {
        errors.push(e);
    }
}

/// In a secured scope whose cipher and cipher provider are installed: the cipher
/// plugin runs its algorithm on that provider (asked of the plugin through
/// `catalog`). Options the plugins refuse are reported by their own check.
fn check_cipher(
    eff: &Effective,
    installed: &Installed,
    catalog: &dyn Catalog,
    errors: &mut Vec<PolicyError>,
) {
    if eff.security.value != Security::Required {
        return;
    }
    let provider = &eff.cipher_provider;
    let (Some((cipher, algorithm)), Some(_)) = (
        installed.cipher(&eff.cipher.value),
        installed.find(Kind::Provider, &provider.value),
    ) else {
        return;
    };
    let options = |plugin: &str| {
        eff.options
            .get(plugin)
            .map_or(&[][..], |o| o.value.as_slice())
    };
    let (cipher_options, provider_options) = (options(&cipher), options(&provider.value));
    if catalog.check_options(&cipher, cipher_options).is_err()
        || catalog
            .check_options(&provider.value, provider_options)
            .is_err()
    {
        return;
    }
    let Err(reason) = catalog.check_cipher(
        (&cipher, &algorithm, cipher_options),
        (&provider.value, provider_options),
    ) else {
        return;
    };
    // Blamed on what the scope itself sets: the cipher's provider, else the cipher.
    let at = match (&provider.source, &eff.cipher.source) {
        (Source::BuiltIn, Source::BuiltIn) => Position::BuiltIn,
        (Source::BuiltIn, _) => eff.cipher.at(),
        _ => provider.at(),
    };
    push_once_across_scopes(
        errors,
        PolicyError::CipherUnavailable {
            at,
            cipher,
            algorithm,
            provider: provider.value.clone(),
            scope: eff.scope.clone(),
            reason,
        },
    );
}
