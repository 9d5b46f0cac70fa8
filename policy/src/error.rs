//! Errors and the positions they point at.

use std::fmt;
use std::path::PathBuf;

use crate::catalog::Kind;

/// Where a setting comes from: a line of a file, an environment variable, or the
/// built-in defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    /// A line (1-based) of a file: the policy file or a public-key file.
    File {
        /// The file, as it was named to the loader.
        file: PathBuf,
        /// The line, 1-based.
        line: usize,
    },
    /// An environment variable (an override of the policy file).
    Env {
        /// The variable's name, e.g. `CONCLAVE_POLICY__DEFAULTS__CIPHER`.
        var: String,
    },
    /// Conclave's built-in defaults.
    BuiltIn,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::File { file, line } => write!(f, "{}:{line}", file.display()),
            Position::Env { var } => write!(f, "environment variable {var}"),
            Position::BuiltIn => f.write_str("built-in default"),
        }
    }
}

/// A value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was set.
    pub at: Position,
}

impl<T> Located<T> {
    /// A value set at `at`.
    pub fn new(value: T, at: Position) -> Self {
        Self { value, at }
    }
}

/// Joins names for a "(known: ...)" list.
pub(crate) struct Known<'a>(pub &'a [String]);

impl fmt::Display for Known<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("none installed")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

/// One thing wrong with a policy. The `Display` form is `FILE:LINE: what is wrong`
/// (or `environment variable NAME: ...` for an override), naming the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy file cannot be read.
    #[error("{}: cannot read the policy file: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("{at}: TOML syntax error: {message}")]
    Syntax {
        /// The line of the error.
        at: Position,
        /// The parser's message.
        message: String,
    },
    /// A key that the format does not have.
    #[error("{at}: unknown key \"{key}\" in {table} (known: {})", Known(known))]
    UnknownKey {
        /// The line of the key (or its variable).
        at: Position,
        /// The key as written.
        key: String,
        /// The table it is in, e.g. `[defaults]`.
        table: String,
        /// The keys that table has.
        known: Vec<String>,
    },
    /// A value of the wrong TOML type.
    #[error("{at}: \"{key}\" in {table} must be {expected}, not {found}")]
    WrongType {
        /// The line of the value.
        at: Position,
        /// The key.
        key: String,
        /// The table it is in.
        table: String,
        /// What the format wants, e.g. `a string`.
        expected: String,
        /// What the file has, e.g. `an integer (5)`.
        found: String,
    },
    /// A required key is missing.
    #[error("{at}: {table} has no \"{key}\" key")]
    MissingKey {
        /// The line of the table's header.
        at: Position,
        /// The missing key.
        key: String,
        /// The table, e.g. `[[group]] #2`.
        table: String,
    },
    /// A setting is empty.
    #[error("{at}: \"{key}\" in {table} is empty")]
    Empty {
        /// The line of the value.
        at: Position,
        /// The key.
        key: String,
        /// The table it is in.
        table: String,
    },
    /// `rekey_interval` is not a duration.
    #[error(
        "{at}: rekey_interval \"{value}\" is not a positive duration ({reason}; e.g. \"30s\", \"10m\", \"1h 30m\")"
    )]
    BadDuration {
        /// The line of the value.
        at: Position,
        /// The value as written.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `agreement_timeout` is not a duration, is zero, or is longer than
    /// [`crate::MAX_AGREEMENT_TIMEOUT`].
    #[error(
        "{at}: agreement_timeout \"{value}\" is not a positive duration of at most {} ({reason}; e.g. \"5s\", \"1500ms\", \"1m\")",
        humantime::format_duration(crate::MAX_AGREEMENT_TIMEOUT)
    )]
    BadAgreementTimeout {
        /// The line of the value.
        at: Position,
        /// The value as written.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A group rule's `match` is not a valid glob.
    #[error("{at}: match pattern \"{value}\" is not a valid glob: {reason}")]
    BadGlob {
        /// The line of the pattern.
        at: Position,
        /// The pattern as written.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A plugin pin is malformed, or pins a path instead of a file name.
    #[error("{at}: pin for \"{file}\": {reason}, not \"{value}\"")]
    BadPin {
        /// The line of the pin.
        at: Position,
        /// The pinned file name.
        file: String,
        /// The pin as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `security` is neither `required` nor `none`.
    #[error("{at}: security \"{value}\" must be \"required\" or \"none\"")]
    BadSecurity {
        /// The line of the value.
        at: Position,
        /// The value as written.
        value: String,
    },
    /// The trust directory cannot be read.
    #[error("{at}: trust key directory \"{}\" cannot be read: {reason}", path.display())]
    MissingTrustDir {
        /// The line of `keys`.
        at: Position,
        /// The directory, resolved against the policy file's directory.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The trust directory or a key file in it (or a directory or link on their way)
    /// could be changed by someone else: anyone could add or replace a trusted key.
    #[error("{at}: \"{}\": {reason}: someone else could change the trusted keys", path.display())]
    InsecureTrust {
        /// The line of `keys` (for the directory) or the key file.
        at: Position,
        /// The directory or file.
        path: PathBuf,
        /// What is wrong (see [`crate::files`]).
        reason: String,
    },
    /// A public key (in a `.pub` file or inline) is malformed.
    #[error("{at}: public key of \"{identity}\" is malformed: {reason}")]
    BadPublicKey {
        /// The key file's line, or the line of the inline key.
        at: Position,
        /// The identity the key is for.
        identity: String,
        /// What is wrong.
        reason: String,
    },
    /// An identity name that cannot be used.
    #[error("{at}: identity name \"{name}\" is invalid: {reason}")]
    BadIdentity {
        /// Where the name appears.
        at: Position,
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The same identity has two different keys.
    #[error("{at}: identity \"{identity}\" has another key at {other}")]
    ConflictingKey {
        /// One place.
        at: Position,
        /// The identity.
        identity: String,
        /// The other place.
        other: Position,
    },
    /// An environment variable that cannot override the policy.
    #[error("{at}: {what} cannot be set from the environment")]
    NotOverridable {
        /// The variable.
        at: Position,
        /// What it tried to set, e.g. `[[group]] rules`.
        what: String,
    },
    /// A plugin name that no installed plugin of that kind has.
    #[error(
        "{at}: {key} \"{value}\" is not an installed {kind} plugin (known: {})",
        Known(known)
    )]
    UnknownPlugin {
        /// The line of the value.
        at: Position,
        /// The key (`key_agreement`, `provider`).
        key: String,
        /// The kind the key names.
        kind: Kind,
        /// The name as written.
        value: String,
        /// The installed plugins of that kind.
        known: Vec<String>,
    },
    /// Options for a plugin that is not installed.
    #[error(
        "{at}: options for \"{plugin}\", which is not an installed plugin (known: {})",
        Known(known)
    )]
    UnknownOptionsPlugin {
        /// The line of the plugin's options.
        at: Position,
        /// The plugin name as written.
        plugin: String,
        /// The installed plugins.
        known: Vec<String>,
    },
    /// Options the plugin itself refused (checked by the plugin, through the ABI).
    #[error("{at}: options for \"{plugin}\" refused by the plugin: {reason}")]
    BadOptions {
        /// The line of the plugin's options.
        at: Position,
        /// The plugin.
        plugin: String,
        /// The plugin's reason.
        reason: String,
    },
    /// A cipher that is neither an installed cipher plugin nor an algorithm one offers.
    #[error(
        "{at}: cipher \"{value}\" is not an installed cipher plugin or algorithm (known: {})",
        Known(known)
    )]
    UnknownCipher {
        /// The line of the value.
        at: Position,
        /// The name as written.
        value: String,
        /// Installed cipher plugins, each followed by its algorithms.
        known: Vec<String>,
    },
    /// An algorithm (DH group, signature) that the provider does not offer.
    #[error(
        "{at}: {key} \"{value}\" is not offered by provider \"{provider}\" ({scope}; known: {})",
        Known(known)
    )]
    UnknownAlgorithm {
        /// The line of the value (or of the provider when the value is built in).
        at: Position,
        /// The key (`dh_group`, `signature`).
        key: String,
        /// The name.
        value: String,
        /// The provider that would compute it.
        provider: String,
        /// Which settings combine here: `[defaults]` or `group rule #2 ("ops-*")`.
        scope: String,
        /// What the provider offers in that class.
        known: Vec<String>,
    },
    /// A cipher plugin that cannot run on the provider that would compute it (the
    /// provider lacks the primitive it needs), as the plugin itself says.
    #[error(
        "{at}: cipher \"{cipher}\" ({algorithm}) cannot run on provider \"{provider}\" ({scope}): {reason}"
    )]
    CipherUnavailable {
        /// The line of `cipher_provider` (or of `cipher`, or `provider`, whichever the
        /// scope sets).
        at: Position,
        /// The cipher plugin.
        cipher: String,
        /// Its algorithm.
        algorithm: String,
        /// The provider of the cipher (`cipher_provider`, else `provider`).
        provider: String,
        /// Which settings combine here: `[defaults]` or `group rule #2 ("ops-*")`.
        scope: String,
        /// The plugin's reason.
        reason: String,
    },
    /// A group's `members` names an identity the trust store does not hold.
    #[error(
        "{at}: member \"{name}\" is not in the trust store (known: {})",
        Known(known)
    )]
    UnknownMember {
        /// The line of the name.
        at: Position,
        /// The identity.
        name: String,
        /// The identities the trust store holds.
        known: Vec<String>,
    },
    /// `[trust] admins` names an identity the trust store does not hold.
    #[error(
        "{at}: administrator \"{name}\" is not in the trust store (known: {})",
        Known(known)
    )]
    UnknownAdmin {
        /// The line of the name.
        at: Position,
        /// The identity.
        name: String,
        /// The identities the trust store holds.
        known: Vec<String>,
    },
    /// A published policy holds what only a member's own file may hold.
    #[error("{at}: a published policy may not set {what}: it stays in each member's own file")]
    NotPublishable {
        /// The line of the section.
        at: Position,
        /// The section, e.g. `[plugins]`.
        what: String,
    },
    /// Anything else (not expected from a well-formed file: a guard against surprises
    /// of the configuration layer).
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: Position,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    /// Where the error is, when it has a position (all but [`PolicyError::Io`]).
    pub fn position(&self) -> Option<&Position> {
        use PolicyError::*;
        match self {
            Io { .. } => None,
            Syntax { at, .. }
            | UnknownKey { at, .. }
            | WrongType { at, .. }
            | MissingKey { at, .. }
            | Empty { at, .. }
            | BadDuration { at, .. }
            | BadAgreementTimeout { at, .. }
            | BadGlob { at, .. }
            | BadPin { at, .. }
            | BadSecurity { at, .. }
            | MissingTrustDir { at, .. }
            | InsecureTrust { at, .. }
            | BadPublicKey { at, .. }
            | BadIdentity { at, .. }
            | ConflictingKey { at, .. }
            | NotOverridable { at, .. }
            | UnknownPlugin { at, .. }
            | UnknownOptionsPlugin { at, .. }
            | BadOptions { at, .. }
            | UnknownCipher { at, .. }
            | UnknownAlgorithm { at, .. }
            | CipherUnavailable { at, .. }
            | UnknownMember { at, .. }
            | UnknownAdmin { at, .. }
            | NotPublishable { at, .. }
            | Invalid { at, .. } => Some(at),
        }
    }
}

/// One or more [`PolicyError`]s, in file order. `Display` writes one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// Errors sorted by position: file lines in order, then environment variables.
    pub(crate) fn sorted(mut errors: Vec<PolicyError>) -> Self {
        errors.sort_by_key(|e| match e.position() {
            None => (0, String::new(), 0),
            Some(Position::File { file, line }) => (1, file.display().to_string(), *line),
            Some(Position::Env { var }) => (2, var.clone(), 0),
            Some(Position::BuiltIn) => (3, String::new(), 0),
        });
        PolicyErrors(errors)
    }

    /// The errors.
    pub fn into_vec(self) -> Vec<PolicyError> {
        self.0
    }
}

impl From<PolicyError> for PolicyErrors {
    fn from(e: PolicyError) -> Self {
        PolicyErrors(vec![e])
    }
}

impl std::ops::Deref for PolicyErrors {
    type Target = [PolicyError];
    fn deref(&self) -> &[PolicyError] {
        &self.0
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}
