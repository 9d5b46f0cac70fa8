//! The AWS-LC provider: the symmetric primitives of [AWS-LC] (through `aws-lc-rs`),
//! for the data path.
//!
//! | class | algorithms |
//! |---|---|
//! | AEAD | `aes-128-gcm`, `aes-256-gcm`, `chacha20-poly1305` |
//! | hashes | `sha256`, `sha384`, `sha512` |
//! | MAC | `hmac-sha256`, `hmac-sha384`, `hmac-sha512` |
//! | KDF | `hkdf-sha256`, `hkdf-sha384`, `hkdf-sha512` |
//! | RNG | `os` (AWS-LC's DRBG, seeded by the operating system) |
//!
//! It offers **no DH group and no signature**: the key agreements need groups in which
//! any element can be raised to any scalar, and AWS-LC's key agreement is ephemeral
//! X25519/ECDH only. A policy therefore names it as a group's `cipher_provider` (the
//! provider of the cipher plugin), next to a `provider` (`rustcrypto`, `openssl`) that
//! computes the key agreement: AWS-LC's AES-GCM is the fastest of the three back ends
//! on x86-64 with AES-NI and VAES (docs/benchmarks.md).
//!
//! Secrets: AWS-LC allocates every keyed context (AEAD, HMAC) itself and wipes it
//! (`OPENSSL_cleanse`) when it is freed; plaintexts and derived keys this crate hands
//! out are [`SecretBytes`], wiped on drop.
//!
//! Each provider instance counts its symmetric operations (one relaxed atomic add each).
//!
//! [AWS-LC]: https://github.com/aws/aws-lc

pub mod symmetric;

use std::sync::Arc;

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::{ProviderConfig, provider::OpCounters},
    counters::Counters,
    implement::{AeadImpl, MacImpl, Plugin, ProviderImpl},
};

type Result<T> = std::result::Result<T, PluginError>;

/// The provider's name.
pub const NAME: &str = "aws-lc";

/// The plugin (marker type).
pub struct AwsLcPlugin;

fn algorithm_list() -> Vec<Algorithm> {
    use AlgorithmClass::*;
    let mut v = Vec::new();
    for (class, names) in [
        (
            Aead,
            &["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"][..],
        ),
        (Hash, &["sha256", "sha384", "sha512"]),
        (Mac, &["hmac-sha256", "hmac-sha384", "hmac-sha512"]),
        (Kdf, &["hkdf-sha256", "hkdf-sha384", "hkdf-sha512"]),
        (Rng, &["os"]),
    ] {
        v.extend(names.iter().map(|n| Algorithm::new(class, n)));
    }
    v
}

impl Plugin for AwsLcPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Provider;
    const DESCRIPTION: &'static str = "AWS-LC's symmetric primitives (AES-GCM, ChaCha20-Poly1305, SHA-2, HMAC, HKDF) for the data path; no DH groups: name it as a cipher_provider";

    fn algorithms() -> Vec<Algorithm> {
        algorithm_list()
    }

    fn new_provider(config: &ProviderConfig) -> Result<Box<dyn ProviderImpl>> {
        if let Some(entry) = config.options.entries.first() {
            return Err(PluginError::new(
                ErrorCode::BAD_CONFIG,
                format!("aws-lc: unknown option {:?}", entry.key.as_str()),
            ));
        }
        Ok(Box::new(AwsLcProvider::new()))
    }
}

conclave_plugin_sdk::builtin_plugin!(AwsLcPlugin);

/// One provider instance, with its counters.
#[derive(Default)]
pub struct AwsLcProvider {
    counters: Arc<Counters>,
}

impl AwsLcProvider {
    /// A new instance with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ProviderImpl for AwsLcProvider {
    fn name(&self) -> String {
        NAME.into()
    }

    fn algorithms(&self) -> Vec<Algorithm> {
        algorithm_list()
    }

    fn dh_group(&self, name: &str) -> Result<Box<dyn conclave_plugin_sdk::implement::DhGroupImpl>> {
        Err(PluginError::unsupported(format!(
            "aws-lc: DH group {name:?} (aws-lc offers no DH groups: name it as a group's cipher_provider, next to a provider that computes the key agreement)"
        )))
    }

    fn block_cipher(
        &self,
        name: &str,
        _key: &[u8],
    ) -> Result<Box<dyn conclave_plugin_sdk::implement::BlockCipherImpl>> {
        Err(PluginError::unsupported(format!(
            "aws-lc: block cipher {name:?} (aws-lc offers AEADs only: aes-128-gcm, aes-256-gcm, chacha20-poly1305)"
        )))
    }

    fn aead(&self, name: &str, key: &[u8]) -> Result<Box<dyn AeadImpl>> {
        symmetric::aead(name, key, self.counters.clone())
    }

    fn hash(&self, name: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
        symmetric::hash(name, parts, &self.counters)
    }

    fn mac(&self, name: &str, key: &[u8]) -> Result<Box<dyn MacImpl>> {
        symmetric::hmac(name, key, self.counters.clone())
    }

    fn hkdf(
        &self,
        name: &str,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<SecretBytes> {
        symmetric::hkdf(name, salt, ikm, info, len, &self.counters)
    }

    fn random_bytes(&self, len: usize) -> Result<SecretBytes> {
        let mut buf = SecretBytes::new(vec![0u8; len]);
        aws_lc_rs::rand::fill(buf.expose_mut()).map_err(|_| {
            PluginError::new(ErrorCode::RNG_FAILURE, "aws-lc: random generator failed")
        })?;
        self.counters.add_random(len);
        Ok(buf)
    }

    fn counters(&self) -> OpCounters {
        self.counters.snapshot()
    }

    fn reset_counters(&self) {
        self.counters.reset()
    }
}
