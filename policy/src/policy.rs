//! The policy model and its entry points.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Located, PolicyError, PolicyErrors, Position};
use crate::load::{Input, parse};
use crate::trust::Trust;

/// The default prefix of environment overrides: `CONCLAVE_POLICY__SECTION__KEY`.
pub const ENV_PREFIX: &str = "CONCLAVE_POLICY";

/// The longest `agreement_timeout` a policy may set: a member that keeps a key
/// agreement waiting longer than this stalls its group for too long.
pub const MAX_AGREEMENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Whether a group is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// A shared key from the key agreement, every message sealed by the cipher; only
    /// trusted identities join.
    Required,
    /// A plain group: view-synchronous, unencrypted, unauthenticated.
    None,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Required => "required",
            Security::None => "none",
        })
    }
}

/// The settings of `[defaults]` or of one `[[group]]` rule: each one that the file
/// (or the environment) sets, with where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Key-agreement plugin (`gdh`, `ckd`).
    pub key_agreement: Option<Located<String>>,
    /// Cipher: a cipher plugin's name or an algorithm one offers.
    pub cipher: Option<Located<String>>,
    /// DH group, a name the provider offers (`ffdhe3072`, `ristretto255`, ...).
    pub dh_group: Option<Located<String>>,
    /// Crypto provider plugin (`rustcrypto`, `openssl`): computes the key agreement
    /// and signatures, and the cipher's primitives unless `cipher_provider` says.
    pub provider: Option<Located<String>>,
    /// Crypto provider of the cipher plugin only (`aws-lc`, say): the data path's
    /// AEAD and key derivation. Defaults to `provider`.
    pub cipher_provider: Option<Located<String>>,
    /// Rekey at least this often (besides every membership change).
    pub rekey_interval: Option<Located<Duration>>,
    /// How long a key agreement may wait for a member of the secure view: a member
    /// that has not taken part by then is left out (by a signed decision delivered in
    /// agreed order), and the others key without it. Positive, at most
    /// [`MAX_AGREEMENT_TIMEOUT`].
    pub agreement_timeout: Option<Located<Duration>>,
    /// `required` or `none`.
    pub security: Option<Located<Security>>,
    /// Signature algorithm of identity keys (`ed25519`).
    pub signature: Option<Located<String>>,
    /// Options by plugin name (`options.padme = { padding = "none" }`): each plugin in
    /// use gets its own table, which it checks itself. Values are kept as text.
    pub options: BTreeMap<String, Located<Vec<(String, String)>>>,
}

/// One `[[group]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// Its number in the file, from 1.
    pub index: usize,
    /// Its `match` glob, as written.
    pub pattern: Located<String>,
    pub(crate) glob: glob::Pattern,
    /// What it sets.
    pub settings: Settings,
    /// The identities allowed to join; `None`: any trusted identity.
    pub members: Option<Vec<Located<String>>>,
}

impl GroupRule {
    /// Whether the rule's glob matches `group` (case-sensitive; `*`, `?`, `[...]`).
    pub fn matches(&self, group: &str) -> bool {
        self.glob.matches(group)
    }
}

/// A loaded, checked policy file (with its environment overrides applied).
///
/// Loading checks syntax, keys, types and each value's form, reads the trust
/// directory, and resolves relative paths against the policy file's directory. What
/// depends on installed plugins is checked by [`Policy::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) file: PathBuf,
    pub(crate) env_prefix: Option<String>,
    pub(crate) version: Option<Located<u64>>,
    pub(crate) admins: Vec<Located<String>>,
    pub(crate) plugin_paths: Vec<Located<PathBuf>>,
    pub(crate) pins: BTreeMap<String, Located<[u8; 32]>>,
    pub(crate) trust_dir: Option<Located<PathBuf>>,
    pub(crate) trust: Arc<Trust>,
    pub(crate) defaults: Settings,
    pub(crate) groups: Vec<GroupRule>,
}

impl Policy {
    /// Loads `path` with the environment overrides of prefix [`ENV_PREFIX`]
    /// (`CONCLAVE_POLICY__DEFAULTS__CIPHER=blowfish`, ...).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyErrors> {
        Self::load_with_env(path, ENV_PREFIX)
    }

    /// Loads `path` with the environment overrides of `env_prefix`
    /// (`PREFIX__SECTION__KEY`, case-insensitive).
    pub fn load_with_env(path: impl AsRef<Path>, env_prefix: &str) -> Result<Self, PolicyErrors> {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self::load_inner(path.as_ref(), Some((env_prefix, vars)))
    }

    /// Loads `path` alone, without environment overrides.
    pub fn load_file(path: impl AsRef<Path>) -> Result<Self, PolicyErrors> {
        Self::load_inner(path.as_ref(), None)
    }

    fn load_inner(
        path: &Path,
        env: Option<(&str, BTreeMap<String, String>)>,
    ) -> Result<Self, PolicyErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        parse(Input {
            text: &text,
            file: path,
            env,
        })
    }

    /// Parses `text` as if read from `origin`: messages name `origin`, and relative
    /// paths resolve against its directory. No environment overrides.
    pub fn from_str(text: &str, origin: impl AsRef<Path>) -> Result<Self, PolicyErrors> {
        parse(Input {
            text,
            file: origin.as_ref(),
            env: None,
        })
    }

    /// Like [`Policy::from_str`], with overrides from `vars` (name, value) whose names
    /// start with `PREFIX__` (case-insensitive); other variables are ignored.
    pub fn from_str_with_env<I, K, V>(
        text: &str,
        origin: impl AsRef<Path>,
        env_prefix: &str,
        vars: I,
    ) -> Result<Self, PolicyErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        parse(Input {
            text,
            file: origin.as_ref(),
            env: Some((
                env_prefix,
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            )),
        })
    }

    /// Reads the same file again, with the same environment prefix (from the process's
    /// environment now), including the trust directory. The caller swaps the result in
    /// when it is `Ok` (and valid for its catalog) and keeps the old policy otherwise.
    pub fn reload(&self) -> Result<Self, PolicyErrors> {
        match &self.env_prefix {
            Some(prefix) => Self::load_with_env(&self.file, prefix),
            None => Self::load_file(&self.file),
        }
    }

    /// Parses a policy that an administrator published into a group (`text`, named
    /// `origin` in messages) in the context of this member's own policy: it may set
    /// `[policy]`, `[defaults]` and `[[group]]` rules, while plugin files, pins and the
    /// trust store (keys and administrators) stay this member's own, taken from
    /// `self`. Whether its modules are installed is checked by [`Policy::validate`].
    pub fn published(&self, text: &str, origin: &str) -> Result<Policy, PolicyErrors> {
        let mut theirs = Policy::from_str(text, origin)?;
        let mut refused = Vec::new();
        let mut refuse = |at: Option<&Position>, what: &str| {
            if let Some(at) = at {
                refused.push(PolicyError::NotPublishable {
                    at: at.clone(),
                    what: what.into(),
                });
            }
        };
        refuse(
            theirs.plugin_paths.first().map(|p| &p.at),
            "[plugins] paths",
        );
        refuse(theirs.pins.values().next().map(|p| &p.at), "[plugins] pins");
        refuse(theirs.trust_dir.as_ref().map(|d| &d.at), "[trust] keys");
        refuse(
            theirs
                .trust
                .names()
                .next()
                .and_then(|n| theirs.trust.entry(n))
                .map(|e| &e.at),
            "[trust] members",
        );
        refuse(theirs.admins.first().map(|a| &a.at), "[trust] admins");
        if !refused.is_empty() {
            return Err(PolicyErrors::sorted(refused));
        }
        theirs.trust = self.trust.clone();
        theirs.admins = self.admins.clone();
        Ok(theirs)
    }

    /// The policy's version (`[policy] version`; 0 when unset): a published policy
    /// must carry a higher one than the policy a member holds.
    pub fn version(&self) -> u64 {
        self.version.as_ref().map_or(0, |v| v.value)
    }

    /// The administrators (`[trust] admins`): the identities whose signed policies
    /// this member adopts.
    pub fn admins(&self) -> impl Iterator<Item = &str> {
        self.admins.iter().map(|a| a.value.as_str())
    }

    /// The policy file, as named to the loader.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The plugin search paths (directories or files), resolved, in the file's order.
    pub fn plugin_paths(&self) -> Vec<PathBuf> {
        self.plugin_paths.iter().map(|p| p.value.clone()).collect()
    }

    /// The plugin search paths with where each was set.
    pub fn plugin_paths_located(&self) -> &[Located<PathBuf>] {
        &self.plugin_paths
    }

    /// The SHA-256 pin of a plugin library, looked up by file name (a path's last
    /// component is used: `/usr/lib/x/libacme.so` finds the pin of `libacme.so`).
    pub fn pin_for(&self, file_name: impl AsRef<Path>) -> Option<[u8; 32]> {
        let name = file_name.as_ref().file_name()?.to_str()?;
        self.pins.get(name).map(|p| p.value)
    }

    /// The pin of a plugin library by file name, with the line that sets it.
    pub fn pin_located(&self, file_name: impl AsRef<Path>) -> Option<&Located<[u8; 32]>> {
        let name = file_name.as_ref().file_name()?.to_str()?;
        self.pins.get(name)
    }

    /// Every pin: file name → SHA-256.
    pub fn pins(&self) -> impl Iterator<Item = (&str, &[u8; 32])> {
        self.pins.iter().map(|(k, v)| (k.as_str(), &v.value))
    }

    /// The trust store: the keys of the trust directory and the inline members.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The trust store, shared (what a [`crate::Resolved`] holds).
    pub fn trust_arc(&self) -> Arc<Trust> {
        self.trust.clone()
    }

    /// The trust directory, resolved, if the policy names one.
    pub fn trust_dir(&self) -> Option<&Path> {
        self.trust_dir.as_ref().map(|d| d.value.as_path())
    }

    /// `[defaults]`.
    pub fn defaults(&self) -> &Settings {
        &self.defaults
    }

    /// The `[[group]]` rules, in file order.
    pub fn groups(&self) -> &[GroupRule] {
        &self.groups
    }

    /// The first rule whose glob matches `group`.
    pub fn rule_for(&self, group: &str) -> Option<&GroupRule> {
        self.groups.iter().find(|r| r.matches(group))
    }
}
