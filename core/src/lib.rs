//! Conclave: secure group communication with pluggable key management and ciphers.
//!
//! This crate is the secure-group core:
//!
//! * [`Session`]: one member's Spread-like connection: join and leave groups, multicast
//!   and unicast, and events (views, keys, messages, security errors); each group
//!   secured by the key-agreement and cipher plugins its [`GroupSettings`] name;
//! * [`plugins::Registry`]: the loaded plugins (built-ins registered with `inventory`,
//!   shared libraries loaded from paths or directories), all through the same ABI;
//! * [`plugins::LoadError`]: the typed reasons a plugin is refused;
//! * [`Identity`]: a member's name and long-term signing key;
//! * handles to plugin objects, re-exported from the SDK ([`Provider`], [`Cipher`],
//!   [`KeyAgreement`]).
#![forbid(unsafe_code)]

pub mod identity;
pub mod plugins;
pub mod policy;
pub mod secure;
pub mod session;
pub mod settings;

pub use identity::Identity;
pub use policy::{PolicyFile, PolicyLoadError};
pub use secure::Exclusion;
pub use secure::publish::{PolicyRefusal, SignedPolicy};
pub use session::{
    AgreementCounts, CoreError, KeyEstablished, SecurityError, Session, SessionEvent,
};
pub use settings::{FixedPolicy, GroupSettings, PolicySource, PrefixPolicy, Security};

pub use conclave_plugin_sdk::{
    self as sdk, ErrorCode, PluginError, PluginKind, SecretBytes,
    host::{Cipher, KeyAgreement, Provider},
};
