//! The RustCrypto provider: Conclave's pure-Rust crypto back end.
//!
//! | class | algorithms |
//! |---|---|
//! | DH groups | `modp2048`, `modp3072` (RFC 3526), `ffdhe2048`, `ffdhe3072`, `ffdhe4096` (RFC 7919) on `num-bigint`; `ristretto255` on `curve25519-dalek` |
//! | AEAD | `aes-128-gcm`, `aes-256-gcm` (`aes-gcm`), `chacha20-poly1305` (`chacha20poly1305`) |
//! | block ciphers | `aes-128`, `aes-256` (`aes`), `blowfish` (`blowfish`); raw ECB and CBC (`cbc`) |
//! | hashes | `sha256`, `sha384`, `sha512` (`sha2`) |
//! | MAC | `hmac-sha256`, `hmac-sha384`, `hmac-sha512` (`hmac`) |
//! | KDF | `hkdf-sha256`, `hkdf-sha384`, `hkdf-sha512` (`hkdf`) |
//! | signature | `ed25519` (`ed25519-dalek`, strict verification) |
//! | RNG | `os` (`getrandom`) |
//!
//! Each provider instance counts its exponentiations, inversions, validations,
//! signatures, verifications and symmetric operations (one relaxed atomic add each).
//! See [`modp`] for the caveats of the finite-field back end.

pub mod modp;
pub mod ristretto;
pub mod rng;
pub mod sign;
pub mod symmetric;

use std::sync::Arc;

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, PluginError, PluginKind, SecretBytes,
    api::{ProviderConfig, provider::OpCounters},
    counters::Counters,
    implement::{
        AeadImpl, BlockCipherImpl, DhGroupImpl, MacImpl, Plugin, ProviderImpl, SignerImpl,
    },
};

type Result<T> = std::result::Result<T, PluginError>;

/// The provider's name.
pub const NAME: &str = "rustcrypto";

/// The plugin (marker type).
pub struct RustCryptoPlugin;

fn algorithm_list() -> Vec<Algorithm> {
    use AlgorithmClass::*;
    let mut v: Vec<Algorithm> = modp::GROUPS
        .iter()
        .map(|g| Algorithm::new(DhGroup, g.name))
        .collect();
    v.push(Algorithm::new(DhGroup, "ristretto255"));
    for (class, names) in [
        (
            Aead,
            &["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"][..],
        ),
        (BlockCipher, &["aes-128", "aes-256", "blowfish"]),
        (Hash, &["sha256", "sha384", "sha512"]),
        (Mac, &["hmac-sha256", "hmac-sha384", "hmac-sha512"]),
        (Kdf, &["hkdf-sha256", "hkdf-sha384", "hkdf-sha512"]),
        (Signature, &["ed25519"]),
        (Rng, &["os"]),
    ] {
        v.extend(names.iter().map(|n| Algorithm::new(class, n)));
    }
    v
}

impl Plugin for RustCryptoPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Provider;
    const DESCRIPTION: &'static str = "pure-Rust primitives: num-bigint MODP/ffdhe, Ristretto255, AES-GCM, ChaCha20-Poly1305, Blowfish, SHA-2, HMAC, HKDF, Ed25519";

    fn algorithms() -> Vec<Algorithm> {
        algorithm_list()
    }

    fn new_provider(config: &ProviderConfig) -> Result<Box<dyn ProviderImpl>> {
        if let Some(entry) = config.options.entries.first() {
            return Err(PluginError::new(
                conclave_plugin_sdk::ErrorCode::BAD_CONFIG,
                format!("rustcrypto: unknown option {:?}", entry.key.as_str()),
            ));
        }
        Ok(Box::new(RustCryptoProvider::new()))
    }
}

conclave_plugin_sdk::builtin_plugin!(RustCryptoPlugin);

/// One provider instance, with its counters.
#[derive(Default)]
pub struct RustCryptoProvider {
    counters: Arc<Counters>,
    /// Identity keys parsed once, for the many verifications under each.
    ed25519_keys: conclave_plugin_sdk::key_cache::ParsedKeys<ed25519_dalek::VerifyingKey>,
}

impl RustCryptoProvider {
    /// A new instance with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ProviderImpl for RustCryptoProvider {
    fn name(&self) -> String {
        NAME.into()
    }

    fn algorithms(&self) -> Vec<Algorithm> {
        algorithm_list()
    }

    fn dh_group(&self, name: &str) -> Result<Box<dyn DhGroupImpl>> {
        if name == "ristretto255" {
            return Ok(Box::new(ristretto::Ristretto255::new(
                self.counters.clone(),
            )));
        }
        modp::GROUPS
            .iter()
            .find(|g| g.name == name)
            .map(|spec| {
                Box::new(modp::ModpGroup::new(*spec, self.counters.clone())) as Box<dyn DhGroupImpl>
            })
            .ok_or_else(|| PluginError::unsupported(format!("rustcrypto: DH group {name:?}")))
    }

    fn aead(&self, name: &str, key: &[u8]) -> Result<Box<dyn AeadImpl>> {
        symmetric::aead(name, key, self.counters.clone())
    }

    fn block_cipher(&self, name: &str, key: &[u8]) -> Result<Box<dyn BlockCipherImpl>> {
        symmetric::block(name, key, self.counters.clone())
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

    fn generate_signing_key(&self, name: &str) -> Result<SecretBytes> {
        match name {
            "ed25519" => sign::generate(&self.counters),
            _ => Err(PluginError::unsupported(format!(
                "rustcrypto: signature {name:?}"
            ))),
        }
    }

    fn signer(&self, name: &str, secret_key: &[u8]) -> Result<Box<dyn SignerImpl>> {
        match name {
            "ed25519" => Ok(Box::new(sign::signer(secret_key, self.counters.clone())?)),
            _ => Err(PluginError::unsupported(format!(
                "rustcrypto: signature {name:?}"
            ))),
        }
    }

    fn verify(
        &self,
        name: &str,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        match name {
            "ed25519" => sign::verify(
                public_key,
                message,
                signature,
                &self.ed25519_keys,
                &self.counters,
            ),
            _ => Err(PluginError::unsupported(format!(
                "rustcrypto: signature {name:?}"
            ))),
        }
    }

    fn random_bytes(&self, len: usize) -> Result<SecretBytes> {
        rng::random(len, &self.counters)
    }

    fn counters(&self) -> OpCounters {
        self.counters.snapshot()
    }

    fn reset_counters(&self) {
        self.counters.reset()
    }
}
