//! Conclave's policy files: which plugins each group uses, who may join, and which
//! plugin libraries and keys are trusted.
//!
//! ```toml
//! [plugins]
//! paths = ["/usr/lib/conclave/plugins"]
//! [trust]
//! keys = "/etc/conclave/trusted"
//! [defaults]
//! key_agreement = "gdh"
//! cipher = "aes-gcm"
//! [[group]]
//! match = "ops-*"
//! key_agreement = "ckd"
//! members = ["alice", "bob"]
//! ```
//!
//! The host loads a file with [`Policy::load`] (the file plus `CONCLAVE_POLICY__...`
//! environment overrides), checks it against its plugin registry with
//! [`Policy::validate`] (through the [`Catalog`] trait), and asks
//! [`Policy::resolve`] what each group gets: a [`Resolved`] with every setting, its
//! [`Source`], [`Resolved::may_join`] and [`Resolved::context_bytes`]. Every error is
//! a [`PolicyError`] whose message is `FILE:LINE: what is wrong`. The format is
//! described in `docs/policy.md`.

// Errors are built on the cold path of loading a file, and carry what the message names.
#![allow(clippy::result_large_err)]

mod catalog;
mod error;
pub mod files;
mod load;
mod policy;
mod resolve;
mod trust;

pub use catalog::{Catalog, CatalogPlugin, Kind, class};
pub use error::{Located, PolicyError, PolicyErrors, Position};
pub use policy::{ENV_PREFIX, GroupRule, MAX_AGREEMENT_TIMEOUT, Policy, Security, Settings};
pub use resolve::{CONTEXT_LABEL, Resolved, Source, Sources, builtin, encode_context};
pub use trust::{
    DEFAULT_SIGNATURE, KeyFormatError, PublicKey, PublicKeyFile, Trust, TrustedIdentity,
    check_identity,
};
