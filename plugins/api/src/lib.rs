//! The stable binary interface between the Conclave host and its plugins.
//!
//! Everything that crosses a shared-library boundary is declared here, on top of
//! [`abi_stable`]: `#[repr(C)]` data, `R*` standard types (`RVec`, `RSlice`, `RString`,
//! `RResult`) and `#[sabi_trait]` objects. The host checks the layout of every type
//! reachable from the root module when it loads a library, so a plugin built against an
//! incompatible version of this crate is refused with an error instead of crashing.
//!
//! Three kinds of plugin exist ([`PluginKind`]):
//!
//! * **crypto providers** ([`provider::CryptoProvider`]): named primitives (DH groups,
//!   AEADs, block ciphers, hashes, MACs, HKDF, signatures, randomness);
//! * **ciphers** ([`cipher::GroupCipher`]): seal and open group messages under a group
//!   key, an epoch, a sender and a sequence number;
//! * **key agreements** ([`key_agreement::KeyAgreement`]): per-member state machines fed
//!   with membership views and protocol messages, which return [`key_agreement::Action`]s.
//!
//! Ciphers and key agreements never carry their own primitives: they receive the provider
//! that the policy names ([`provider::CryptoProviderArc`]), so every cipher and every key
//! agreement runs on every provider.
//!
//! Plugin authors should not implement these traits by hand: the `conclave-plugin-sdk`
//! crate adapts plain Rust traits to them and guarantees that no panic crosses the
//! boundary.
//!
//! # Evolution rules
//!
//! The ABI version is [`ABI_VERSION`] (`major.minor`). Within one major version:
//!
//! * the root module [`PluginModule`] is a *prefix type*: fields are only ever **appended**
//!   after the field marked `#[sabi(last_prefix_field)]`, never removed, reordered or
//!   renamed, and a host reads appended fields as optional (a plugin built against an
//!   older minor version simply lacks them);
//! * `#[sabi_trait]` objects follow the same rule for their methods: new methods are
//!   appended after the method marked `#[sabi(last_prefix_field)]`, and must have a
//!   default implementation;
//! * plain `#[repr(C)]` structs and enums never change. Changing one, or moving a
//!   `last_prefix_field` marker, is a new **major** version; the loader then refuses
//!   plugins of the other major version with a typed error.
//!
//! Error codes ([`ErrorCode`]) are an open set of numbers: new codes may be added in a
//! minor version and hosts must treat an unknown code as an opaque failure.

// `#[sabi_trait]` and `#[derive(StableAbi)]` expand to `unsafe` layout glue; this crate
// is the plugin boundary, the one place where that is allowed. Hand-written code here
// contains no `unsafe` block.
#![allow(unsafe_code)]
// abi_stable 0.11 generates `impl` blocks inside constants (a lint newer than the crate).
#![allow(non_local_definitions)]

pub mod cipher;
pub mod error;
pub mod key_agreement;
pub mod module;
pub mod provider;
pub mod secret;

pub use abi_stable;
pub use error::{ErrorCode, PluginError, PluginResult};
pub use module::{
    ABI_VERSION, ABI_VERSION_MAJOR, ABI_VERSION_MINOR, Algorithm, AlgorithmClass, BuiltinPlugin,
    OptionEntry, Options, PluginKind, PluginMetadata, PluginModule, PluginModuleRef,
    ProviderConfig,
};
pub use secret::SecretBytes;
