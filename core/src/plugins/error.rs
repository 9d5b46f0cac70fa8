//! Why a plugin was refused.

use std::{io, path::PathBuf};

use conclave_policy::files::FileError;

use crate::PluginError;

/// A plugin that could not be loaded, registered or instantiated. Every variant names
/// the file (or the plugin) and the reason; none of them stops the process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// No file at the path.
    #[error("{path}: plugin not found")]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// Reading the file or directory failed.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is not a regular file.
    #[error("{path}: not a regular file (a {kind})")]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is: `directory`, `fifo`, `socket`, `device`.
        kind: &'static str,
    },
    /// The file could be swapped under us (a directory on its path, a link followed or
    /// the file itself is writable by group or others, or belongs to another user), is
    /// larger than the limit, or its path loops.
    #[error(transparent)]
    UnsafeFile(FileError),
    /// The file's SHA-256 differs from the pin.
    #[error("{path}: SHA-256 mismatch: pinned sha256:{expected}, file is sha256:{actual}")]
    PinMismatch {
        /// The plugin's path.
        path: PathBuf,
        /// The pinned digest, hex.
        expected: String,
        /// The file's digest, hex.
        actual: String,
    },
    /// The file is not a loadable shared library (corrupt, truncated, wrong format or
    /// architecture).
    #[error("{path}: not a loadable shared library: {reason}")]
    InvalidLibrary {
        /// The plugin's path.
        path: PathBuf,
        /// What the dynamic loader said.
        reason: String,
    },
    /// The library loads but exports no Conclave root module.
    #[error("{path}: not a Conclave plugin: {reason}")]
    NotAPlugin {
        /// The plugin's path.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The plugin's types do not have the layout the host expects (built against an
    /// incompatible `conclave-plugin-api` or `abi_stable`).
    #[error("{path}: ABI or layout mismatch: {reason}")]
    AbiMismatch {
        /// The plugin's path.
        path: PathBuf,
        /// abi_stable's explanation.
        reason: String,
    },
    /// The plugin was built against an incompatible ABI version.
    #[error("{path}: incompatible ABI version {plugin} (this host speaks {host})")]
    IncompatibleVersion {
        /// The plugin's path.
        path: PathBuf,
        /// The plugin's ABI version.
        plugin: String,
        /// The host's ABI version.
        host: String,
    },
    /// The plugin's metadata is unusable.
    #[error("{origin}: bad plugin metadata: {reason}")]
    BadMetadata {
        /// Where the plugin came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Another plugin with the same name is already registered.
    #[error("plugin {name:?} from {second} duplicates the one from {first}")]
    DuplicateName {
        /// The plugin name.
        name: String,
        /// Where the registered one came from.
        first: String,
        /// Where the refused one came from.
        second: String,
    },
    /// No registered plugin has this name.
    #[error("no plugin named {name:?}{}", if .known.is_empty() { String::new() } else { format!(" (known: {})", .known.join(", ")) })]
    UnknownPlugin {
        /// The name asked for.
        name: String,
        /// The names that are registered, of the kind asked for.
        known: Vec<String>,
    },
    /// The plugin is not of the kind asked for.
    #[error("plugin {name:?} is a {actual} plugin, not a {expected} plugin")]
    WrongKind {
        /// The plugin's name.
        name: String,
        /// The kind asked for.
        expected: &'static str,
        /// The plugin's kind.
        actual: &'static str,
    },
    /// The plugin's constructor refused.
    #[error("plugin {name:?} could not be instantiated: {source}")]
    Instantiate {
        /// The plugin's name.
        name: String,
        /// The plugin's error.
        #[source]
        source: PluginError,
    },
}

impl LoadError {
    /// A short kebab-case name of the refusal (for metrics and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::NotFound { .. } => "not-found",
            LoadError::Io { .. } => "io",
            LoadError::NotAFile { .. } => "not-a-file",
            LoadError::UnsafeFile(_) => "unsafe-file",
            LoadError::PinMismatch { .. } => "pin-mismatch",
            LoadError::InvalidLibrary { .. } => "invalid-library",
            LoadError::NotAPlugin { .. } => "not-a-plugin",
            LoadError::AbiMismatch { .. } => "abi-mismatch",
            LoadError::IncompatibleVersion { .. } => "incompatible-version",
            LoadError::BadMetadata { .. } => "bad-metadata",
            LoadError::DuplicateName { .. } => "duplicate-name",
            LoadError::UnknownPlugin { .. } => "unknown-plugin",
            LoadError::WrongKind { .. } => "wrong-kind",
            LoadError::Instantiate { .. } => "instantiate",
        }
    }
}
