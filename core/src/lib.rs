//! Conclave: secure group communication with pluggable key management and ciphers.
//!
//! This crate is the secure-group core. Today it holds the plugin machinery every other
//! part builds on:
//!
//! * [`plugins::Registry`]: the loaded plugins (built-ins registered with `inventory`,
//!   shared libraries loaded from paths or directories), all through the same ABI;
//! * [`plugins::LoadError`]: the typed reasons a plugin is refused;
//! * handles to plugin objects, re-exported from the SDK ([`Provider`], [`Cipher`],
//!   [`KeyAgreement`]).
#![forbid(unsafe_code)]

pub mod plugins;

pub use conclave_plugin_sdk::{
    self as sdk, ErrorCode, PluginError, PluginKind, SecretBytes,
    host::{Cipher, KeyAgreement, Provider},
};
