//! The Conclave plugin SDK: everything a plugin author, and the host, needs on top of
//! the raw ABI of [`conclave_plugin_api`].
//!
//! * [`implement`]: plain Rust traits (`ProviderImpl`, `GroupCipherImpl`, ...) to
//!   implement, and [`export_plugin!`] to publish them. The SDK adapts them to the ABI and
//!   catches every panic at the boundary: a panicking call returns
//!   [`ErrorCode::PANIC`](api::ErrorCode::PANIC) and poisons the object, whose later calls
//!   return [`ErrorCode::POISONED`](api::ErrorCode::POISONED).
//! * [`host`]: typed wrappers (`Provider`, `DhGroup`, `Cipher`, `KeyAgreement`, ...) for
//!   code that *uses* plugin objects: the host, and plugins that use their provider.
//! * [`cipher_kit`]: a complete group cipher over any provider AEAD (per-sender keys,
//!   counter nonces, replay window, epochs), so a new cipher plugin is a few lines.
//! * [`ka_kit`]: what every key-agreement protocol shares: the signed message format,
//!   the checks on received messages, the key schedule and key confirmation.
//! * [`counters`]: cheap operation counters for providers.
//!
//! See `docs/plugins.md` in the repository for a walk-through from `cargo new` to a
//! loaded plugin.

pub mod cipher_kit;
pub mod counters;
#[doc(hidden)]
pub mod export;
pub mod groups;
pub mod guard;
pub mod host;
pub mod implement;
pub mod ka_kit;
pub mod key_cache;

pub use conclave_plugin_api as api;
/// The growable byte buffer of the ABI, in which the `*_into` methods append their
/// output (the caller's buffer: a plugin grows it through its own vtable, safely).
pub use conclave_plugin_api::abi_stable::std_types::RVec;
pub use conclave_plugin_api::{
    Algorithm, AlgorithmClass, ErrorCode, Options, PluginError, PluginKind, PluginMetadata,
    SecretBytes,
};
pub use implement::Plugin;

#[doc(hidden)]
pub use inventory;
